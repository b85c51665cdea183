"""Inbound throughput: events/s and p50/p99 latency through the full path, and a bare handler for a ratio.

Two kinds of event, each its own run:
- commands: HR's `/offboard` (the heaviest event: it opens a case) through the emulator's send API
  -> router (dedup lookup, actor, HR check) -> handler -> one transaction (case, steps, audit,
  outbox rows, timers, inbox row) -> commit -> HTTP answer;
- taps: each employee then taps "submit" on the card the relay delivered (most of a case's
  events are taps) through the click API -> card and holder checks -> one transaction (step
  rows, audit, the manager's card, timers, HR summary update, inbox row) -> commit -> answer.

The server is the real application (`python -m bot serve`, outbox relay
and timers running) in its own process, so the load generator does not share its CPU time slice
with the server's event loop. The bare server parses the same JSON and answers; nothing else.

    .venv/bin/python bench/inbound.py [--events 2000] [--clients 50] [--pg URL]

PostgreSQL runs against a database named `bench` (created when absent; its public schema is
reset), never against `test`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp

if __package__ in (None, ""):  # run as `python bench/X.py`: the project's root first, not bench/
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import pg_url, size

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
TARGET_SQLITE_EPS = 500
TARGET_RATIO = 0.30
# The emulator API wants its token on every call; the bare server gets the same header and ignores it.
EMULATOR_TOKEN = "bench-emulator-token-0123456789"
AUTH = {"Authorization": f"Bearer {EMULATOR_TOKEN}"}

BARE_SERVER = """
import sys
from aiohttp import web

async def handle(request):
    data = await request.json()
    return web.json_response({"ok": True, "user": data.get("user")})

app = web.Application()
app.router.add_post("/emulator/api/send", handle)
app.router.add_post("/emulator/api/click", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def directory_csv(n: int) -> str:
    lines = ["employee_id,name,department,position,manager_id,roles,city,hire_date,contract_start,contract_end,"
             "monthly_wage,dingtalk_userid,wecom_userid,phone",
             "H001,人事甲,人力资源部,HRBP,,hr,beijing,2019-03-01,2019-03-01,,18000.00,,,",
             "M001,经理乙,销售部,总监,,,beijing,2018-03-01,2018-03-01,,30000.00,,,"]
    lines += [f"B{i:05d},员工{i},销售部,销售代表,M001,,beijing,2025-05-06,2025-05-06,2028-05-05,5000.00,,,"
              for i in range(n)]
    return "\n".join(lines) + "\n"


def prepare(env: dict[str, str], n: int, workdir: Path, root: Path = ROOT) -> None:
    csv = workdir / "org.csv"
    csv.write_text(directory_csv(n), encoding="utf-8")
    for args in (["migrate"], ["directory", "import", str(csv)]):
        subprocess.run([PY, "-m", "bot", *args], cwd=root, env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)


def reset_pg(url: str, name: str = "bench") -> str:
    """Create database `name` beside the given one when absent and empty its public schema."""
    import asyncpg

    if not name.replace("_", "").isalnum():
        raise ValueError(f"not a plain database name: {name!r}")
    base, _, _ = url.rpartition("/")
    bench_url = f"{base}/{name}"

    async def go() -> None:
        admin = await asyncpg.connect(f"{base}/postgres")
        try:
            if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        conn = await asyncpg.connect(bench_url)
        try:
            await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
        finally:
            await conn.close()

    asyncio.run(go())
    return bench_url


async def wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            if proc.poll() is not None:
                raise RuntimeError("server exited during start-up")
            try:
                async with http.get(url) as r:
                    if r.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"server at {url} did not come up")


async def load(base: str, bodies: list[dict], clients: int, path: str = "/emulator/api/send",
               ) -> tuple[float, list[float], int]:
    queue: asyncio.Queue[dict] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    latencies: list[float] = []
    failures = 0
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, headers=AUTH) as http:
        async def client() -> None:
            nonlocal failures
            while True:
                try:
                    body = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                t0 = time.perf_counter()
                async with http.post(f"{base}{path}", json=body) as r:
                    data = await r.json()
                latencies.append(time.perf_counter() - t0)
                if r.status != 200 or not data.get("ok"):
                    failures += 1

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - start
    return elapsed, latencies, failures


async def tap_bodies(base: str, n: int, wait_seconds: float = 120.0) -> list[dict]:
    """One 'submit' tap per employee, on the card the relay delivered to them (waits for delivery)."""
    users = [f"B{i:05d}" for i in range(n)]
    found: dict[str, str] = {}
    deadline = time.monotonic() + wait_seconds
    async with aiohttp.ClientSession(headers=AUTH) as http:
        while len(found) < n:
            for user in users:
                if user in found:
                    continue
                async with http.get(f"{base}/emulator/api/cards", params={"user": user}) as r:
                    for card in (await r.json())["cards"]:
                        if any(b.get("action") == "submit" and b.get("enabled") for b in card["buttons"]):
                            found[user] = card["card_id"]
            if len(found) < n:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {len(found)} of {n} cards delivered in {wait_seconds:.0f} s")
                await asyncio.sleep(0.5)
    return [{"user": u, "card_id": found[u], "action": "submit", "event_id": f"tap-{u}",
             "form": {"last_working_day": "2025-08-31", "reason": "个人原因"}} for u in users]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] * 1000


def offboard_bodies(n: int) -> list[dict[str, str]]:
    return [{"user": "H001", "text": f"/offboard B{i:05d} probation 2025-08-31", "event_id": f"bench-{i}"}
            for i in range(n)]


def run_server(cmd: list[str], env: dict[str, str], root: Path = ROOT) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def report(label: str, elapsed: float, lat: list[float], failures: int, cpu: float | None = None) -> float:
    """Print one line. `cpu`: the server's CPU seconds during the run: per event it is the cost
    that does not depend on how fast the load generator is (it shares this machine's cores)."""
    eps = len(lat) / elapsed
    per_event = f"   server CPU {cpu / len(lat) * 1000:5.2f} ms/event" if cpu is not None and lat else ""
    print(f"{label:<34} {eps:8.0f} events/s   p50 {pct(lat, 50):7.1f} ms   p99 {pct(lat, 99):7.1f} ms"
          f"   failures {failures}{per_event}")
    return eps


def measured(proc: subprocess.Popen[bytes], run: Callable[[], tuple[float, list[float], int]],
             ) -> tuple[float, list[float], int, float | None]:
    before = cpu_seconds(proc.pid)
    elapsed, lat, failures = run()
    after = cpu_seconds(proc.pid)
    return elapsed, lat, failures, None if before is None or after is None else after - before


def bench_full(label: str, db_url: str, n: int, clients: int, workdir: Path, root: Path = ROOT,
               cpu: dict[str, float] | None = None) -> tuple[float, float]:
    """(commands/s, taps/s) through the real server of the source tree `root` (bench/compare.py runs
    an older tree beside this one); `cpu` receives the server's CPU ms per event of each kind."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(root), "DATABASE_URL": db_url, "HTTP_PORT": str(port),
           "PLATFORMS": "emulator",
           "DATA_DIR": str(workdir / "data"), "LOG_LEVEL": "WARNING", "SECRET_KEY": "bench-secret-0123456789abcdef",
           "EMULATOR_TOKEN": EMULATOR_TOKEN}
    prepare(env, n, workdir, root)
    # As a real install: the root CA made offline, only the seal on the server (serve refuses without it).
    subprocess.run([PY, "-m", "bot", "keys", "--root-dir", str(workdir / "offline-root")], cwd=root, env=env,
                   check=True, stdout=subprocess.DEVNULL)
    proc = run_server([PY, "-m", "bot", "serve"], env, root)
    base = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(wait_up(f"{base}/healthz", proc))
        result = measured(proc, lambda: asyncio.run(load(base, offboard_bodies(n), clients)))
        commands = report(f"{label}, commands", *result)
        if cpu is not None and result[3] is not None:
            cpu["commands"] = result[3] / len(result[1]) * 1000
        taps = asyncio.run(tap_bodies(base, n))
        result = measured(proc, lambda: asyncio.run(load(base, taps, clients, "/emulator/api/click")))
        tapped = report(f"{label}, taps", *result)
        if cpu is not None and result[3] is not None:
            cpu["taps"] = result[3] / len(result[1]) * 1000
    finally:
        stop(proc)
    return commands, tapped


def bench_bare(n: int, clients: int, workdir: Path) -> float:
    port = free_port()
    script = workdir / "bare.py"
    script.write_text(BARE_SERVER)
    proc = run_server([PY, str(script), str(port)], dict(os.environ))
    try:
        asyncio.run(wait_up(f"http://127.0.0.1:{port}/", proc))
        result = measured(proc, lambda: asyncio.run(load(f"http://127.0.0.1:{port}", offboard_bodies(n), clients)))
    finally:
        stop(proc)
    return report("bare aiohttp handler", *result)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=size(2000, 60))
    ap.add_argument("--clients", type=int, default=size(50, 10))
    ap.add_argument("--pg", default=pg_url("postgres://postgres@127.0.0.1:5432/test"),
                    help="any URL on the PostgreSQL server; the bench uses database 'bench' beside it ('': none)")
    ap.add_argument("--no-pg", action="store_true")
    args = ap.parse_args()
    print(f"inbound path: {args.events} events of each kind, {args.clients} concurrent clients, loopback HTTP")
    results: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "sqlite").mkdir()
        results["SQLite"] = bench_full("full path, SQLite", f"sqlite://{work}/sqlite/bench.sqlite3",
                                       args.events, args.clients, work / "sqlite")
        if args.no_pg or not args.pg:
            print("PostgreSQL skipped (--no-pg, or no BENCH_PG_URL in quick mode)")
        else:
            try:
                url = reset_pg(args.pg)
            except Exception as exc:  # no server: say so, keep the SQLite figures
                print(f"PostgreSQL skipped: {exc}")
            else:
                (work / "pg").mkdir()
                results["PostgreSQL"] = bench_full("full path, PostgreSQL", url, args.events, args.clients,
                                                   work / "pg")
        bare = bench_bare(args.events, args.clients, work)
    for name, (commands, taps) in results.items():
        print(f"ratio full/bare, {name}: commands {commands / bare:.2f}, taps {taps / bare:.2f}"
              f"  (target >= {TARGET_RATIO:.2f})")
    commands, taps = results["SQLite"]
    for kind, eps in (("commands", commands), ("taps", taps)):
        met = "met" if eps >= TARGET_SQLITE_EPS else "NOT met"
        print(f"SQLite target >= {TARGET_SQLITE_EPS} events/s, {kind}: {met}")


if __name__ == "__main__":
    main()
