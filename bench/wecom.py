"""WeCom: inbound callbacks beside the emulator path, and outbound cards against a slow fake.

Inbound, side by side in one run on one server (`python -m bot serve` with PLATFORMS=wecom,emulator
in its own process): N `/offboard` commands as encrypted WeCom callbacks (signature, replay window,
decryption, hardened XML parse, dedup, the case's transaction, outbox rows, commit, empty 200) and N
more through the emulator's API, both at C concurrent clients; events/s, p50/p99 and the server's
CPU per event. The callbacks are encrypted with wechatpy's crypto before the clock starts, as WeCom
would send them. The fake WeCom API the relay delivers to runs in its own process.

Outbound: the relay and the WeCom connector deliver 600 cards (600 members) to a fake that answers
after 100 ms and enforces WeCom's limits (45033 above 10 concurrent calls, a message dropped above
30 a minute to one member); the rate achieved against WECOM_RATE_PER_SECOND, limit errors,
duplicates.

    .venv/bin/python bench/wecom.py [--events 1000] [--clients 50] [--cards 600]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

if __package__ in (None, ""):  # run as `python bench/X.py`: the project's root first, not bench/
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import inbound as ib
from bench import size
from tests.platforms.wecom.rig import AES_KEY, TOKEN, encrypt, settings_for, text_xml

ROOT = ib.ROOT
TARGET_SQLITE_EPS = 500
TARGET_P99_MS = 100.0
TARGET_CPU_EXTRA_MS = 0.3
TARGET_RATE_SHARE = 0.90

FAKE_SERVER = """
import sys
sys.path.insert(0, sys.argv[2])
from aiohttp import web
from tests.platforms.wecom.fake_wecom import FakeWeCom
fake = FakeWeCom()
app = fake.app()
async def stats(request):
    return web.json_response(dict(fake.calls))
app.router.add_get("/_stats", stats)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


async def api_calls(fake_base: str) -> int:
    """WeCom API calls the server has made so far (the fake counts them)."""
    async with aiohttp.ClientSession() as http, http.get(f"{fake_base}/_stats") as r:
        return sum((await r.json()).values())


def directory_csv(n: int) -> str:
    """HR on each platform, and 2n employees: the first n on WeCom, the others on the emulator."""
    lines = ["employee_id,name,department,position,manager_id,roles,city,hire_date,contract_start,contract_end,"
             "monthly_wage,dingtalk_userid,wecom_userid,phone",
             "H001,人事甲,人力资源部,HRBP,,hr,beijing,2019-03-01,2019-03-01,,18000.00,,h001,",
             "H002,人事乙,人力资源部,HRBP,,hr,beijing,2019-03-01,2019-03-01,,18000.00,,,",
             "M001,经理乙,销售部,总监,,,beijing,2018-03-01,2018-03-01,,30000.00,,m001,"]
    lines += [f"B{i:05d},员工{i},销售部,销售代表,M001,,beijing,2025-05-06,2025-05-06,2028-05-05,5000.00,,"
              f"{f'b{i:05d}' if i < n else ''}," for i in range(2 * n)]
    return "\n".join(lines) + "\n"


async def post_callbacks(url: str, requests: list[tuple[dict[str, str], str]], clients: int,
                         ) -> tuple[float, list[float], int]:
    queue: asyncio.Queue[tuple[dict[str, str], str]] = asyncio.Queue()
    for r in requests:
        queue.put_nowait(r)
    latencies: list[float] = []
    failures = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as http:
        async def client() -> None:
            nonlocal failures
            while True:
                try:
                    query, body = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                t0 = time.perf_counter()
                async with http.post(url, params=query, data=body) as r:
                    text = await r.text()
                latencies.append(time.perf_counter() - t0)
                if r.status != 200 or text:
                    failures += 1

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - start
    return elapsed, latencies, failures


def bench_inbound(n: int, clients: int, workdir: Path, rounds: int = 2) -> dict[str, tuple[float, float, float]]:
    fake_port, port = ib.free_port(), ib.free_port()
    script = workdir / "fake_wecom.py"
    script.write_text(FAKE_SERVER)
    fake = ib.run_server([ib.PY, str(script), str(fake_port), str(ROOT)], dict(os.environ))
    wecom = {k.upper(): str(v) for k, v in settings_for(f"http://127.0.0.1:{fake_port}").items()}
    env = {**os.environ, **wecom, "DATABASE_URL": f"sqlite://{workdir}/bench.sqlite3", "HTTP_PORT": str(port),
           "PLATFORMS": "wecom,emulator", "DATA_DIR": str(workdir / "data"), "LOG_LEVEL": "WARNING",
           "SECRET_KEY": "bench-secret-0123456789abcdef", "EMULATOR_TOKEN": ib.EMULATOR_TOKEN,
           "COMPANY_NAME": "基准测试有限公司", "WECOM_MAX_CLOCK_SKEW_SECONDS": "3600"}
    csv = workdir / "org.csv"
    csv.write_text(directory_csv(n), encoding="utf-8")
    for args in (["migrate"], ["directory", "import", str(csv)]):
        subprocess.run([ib.PY, "-m", "bot", *args], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    subprocess.run([ib.PY, "-m", "bot", "keys", "--root-dir", str(workdir / "offline-root")], cwd=ROOT, env=env,
                   check=True, stdout=subprocess.DEVNULL)
    proc = ib.run_server([ib.PY, "-m", "bot", "serve"], env)
    base = f"http://127.0.0.1:{port}"
    results: dict[str, tuple[float, float, float]] = {}
    try:
        asyncio.run(ib.wait_up(f"{base}/healthz", proc))
        # Alternating rounds (emulator, WeCom, emulator, WeCom): the database grows and the machine's
        # load changes during the run, and neither path should get the better half of either.
        url = f"{base}/wecom/callback"
        totals: dict[str, list] = {"emulator": [0.0, [], 0, 0.0], "wecom": [0.0, [], 0, 0.0]}
        calls = {"emulator": 0, "wecom": 0}
        fake_base = f"http://127.0.0.1:{fake_port}"
        per_round = n // rounds
        for r in range(rounds):
            ids = range(r * per_round, (r + 1) * per_round)
            emulator = [{"user": "H002", "text": f"/offboard B{n + i:05d} probation 2025-08-31", "event_id": f"e-{i}"}
                        for i in ids]
            callbacks = [encrypt(text_xml("h001", f"/offboard B{i:05d} probation 2025-08-31", msg_id=f"bench{i}"))
                         for i in ids]
            for path, run in (("emulator", lambda e=emulator: asyncio.run(ib.load(base, e, clients))),
                              ("wecom", lambda c=callbacks: asyncio.run(post_callbacks(url, c, clients)))):
                calls_before = asyncio.run(api_calls(fake_base))
                elapsed, lat, failures, cpu = ib.measured(proc, run)
                calls[path] += asyncio.run(api_calls(fake_base)) - calls_before
                t = totals[path]
                t[0] += elapsed
                t[1].extend(lat)
                t[2] += failures
                t[3] += cpu or 0.0
        for path, label in (("emulator", "emulator path, commands"), ("wecom", "WeCom path, encrypted callbacks")):
            elapsed, lat, failures, cpu = totals[path]
            ib.report(label, elapsed, lat, failures, cpu)
            print(f"{'':<34} WeCom API calls made by the server meanwhile: {calls[path] / len(lat):.2f} per event "
                  "(answers, cards, updates: outbound HTTP the emulator path does not make)")
            results[path] = (len(lat) / elapsed, ib.pct(lat, 99), cpu / len(lat) * 1000)
    finally:
        ib.stop(proc)
        ib.stop(fake)
    return results


async def bench_outbound(cards: int, db_url: str) -> None:
    from aiohttp.test_utils import TestServer

    from bot.outbox import Relay, RetryPolicy
    from bot.platforms.wecom.connector import WeComConnector
    from bot.platforms.wecom.settings import load as load_wecom_settings
    from cards.model import Button, Card
    from chat.connector import ConnectorEnv
    from storage import crypto
    from storage.addresses import AddressBook
    from storage.db import close_db, init_db, migrate
    from storage.models import Employee, OutboxMessage
    from tests.platforms.wecom.fake_wecom import FakeWeCom

    crypto.configure(b"bench-secret-0123456789abcdef")
    await migrate(db_url)
    await init_db(db_url)
    fake = FakeWeCom(delay=0.1, max_concurrent=10)
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    connector = WeComConnector(load_wecom_settings(settings_for(str(server.make_url("/")).rstrip("/")), None),
                               ConnectorEnv(public_base_url="http://127.0.0.1:8080", language="zh", env_file=None))
    rate = connector.limits.rate_per_second
    card = Card(title="离职交接确认", summary="员工 · 销售部", status="等待你操作",
                buttons=(Button("确认", action="approve", style="primary"),))

    async def render(row: OutboxMessage) -> Card:
        return card

    try:
        now = time.time()
        from datetime import UTC, datetime

        at = datetime.fromtimestamp(now, UTC)
        await Employee.bulk_create([Employee(employee_id=f"C{i:05d}", name=f"收件人{i}", wecom_userid=f"c{i:05d}")
                                    for i in range(cards)])
        await OutboxMessage.bulk_create([
            OutboxMessage(key=f"bench:{i}", platform="wecom", recipient=f"C{i:05d}", kind="card", payload={},
                          next_attempt_at=at, created_at=at, status="pending", attempts=0) for i in range(cards)])
        relay = Relay({"wecom": connector}, render, addresses=AddressBook.of(["wecom"], {"wecom": "wecom_userid"}),
                      retry=RetryPolicy(base=0.05, cap=1.0), batch=100)
        await connector.start(lambda e: None)  # type: ignore[arg-type,return-value]
        start = time.perf_counter()
        while await OutboxMessage.filter(status="sent").count() < cards:
            if not await relay.run_once():
                await asyncio.sleep(0.01)
            if time.perf_counter() - start > 120:
                break
        elapsed = time.perf_counter() - start
        await connector.stop()
        sent = await OutboxMessage.filter(status="sent").count()
        tasks = [m["template_card"]["task_id"] for m in fake.sent]
        dup = len(tasks) - len(set(tasks))
        achieved = sent / elapsed
        print(f"outbound: {sent}/{cards} cards in {elapsed:5.2f} s = {achieved:5.1f}/s against a fake answering "
              f"after 100 ms; configured {rate:.0f}/s, concurrency {connector.limits.concurrency}: "
              f"{achieved / rate:.0%} of the rate (target >= {TARGET_RATE_SHARE:.0%}); "
              f"limit errors {fake.limit_errors}, dropped over quota {len(fake.dropped)}, duplicates {dup}")
    finally:
        await server.close()
        await close_db()


def bench_connector_cost(n: int = 2000) -> float:
    """CPU of the WeCom-only part of a callback, in process: signature, replay window, AES
    decryption, hardened XML parse, typed event (what the emulator path does not do)."""
    from bot.platforms.wecom import callback
    from tests.platforms.wecom.fake_wecom import CORP_ID

    cfg = callback.CallbackConfig(token=TOKEN, aes_key=AES_KEY, corp_id=CORP_ID)
    crypto = cfg.crypto()
    requests = [encrypt(text_xml("h001", f"/offboard B{i:05d} probation 2025-08-31", msg_id=f"c{i}"))
                for i in range(n)]
    now = time.time()
    start = time.process_time()
    for query, body in requests:
        callback.classify(callback.decrypt(crypto, cfg, query, body.encode(), now=now))
    per = (time.process_time() - start) / n * 1000
    print(f"WeCom-only work per callback (verify, replay check, decrypt, parse, classify): {per:.3f} ms CPU")
    return per


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=size(1000, 60))
    ap.add_argument("--clients", type=int, default=size(50, 10))
    ap.add_argument("--cards", type=int, default=size(600, 40))
    args = ap.parse_args()
    print(f"WeCom inbound: {args.events} events per path, {args.clients} concurrent clients, loopback HTTP, SQLite")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} (other processes share the cores)")
    bench_connector_cost(size(2000, 200))
    with tempfile.TemporaryDirectory() as tmp:
        res = bench_inbound(args.events, args.clients, Path(tmp))
        eps, p99, cpu = res["wecom"]
        extra = cpu - res["emulator"][2]
        def met(ok: bool) -> str:
            return "met" if ok else "NOT met"

        print(f"WeCom path: {eps:.0f} events/s (target >= {TARGET_SQLITE_EPS}: {met(eps >= TARGET_SQLITE_EPS)}), "
              f"p99 {p99:.1f} ms (target <= {TARGET_P99_MS:.0f}: {met(p99 <= TARGET_P99_MS)}), "
              f"CPU {extra:+.2f} ms/event vs the emulator path (target <= +{TARGET_CPU_EXTRA_MS}: "
              f"{met(extra <= TARGET_CPU_EXTRA_MS)})")
        (Path(tmp) / "out").mkdir()
        asyncio.run(bench_outbound(args.cards, f"sqlite://{tmp}/out/outbound.sqlite3"))


if __name__ == "__main__":
    main()
