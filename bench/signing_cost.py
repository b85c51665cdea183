"""What the most expensive accepted signature costs: CPU time and peak memory, alone and 20 at once.

Three figures, each against its target (issue 11, finding 3):
- signature work: what the server does with the strokes of the worst payload the limits accept
  (`tests/signing/cost_payloads.worst_accepted`: the most points, the longest drawn length, the
  thickest pen, the largest image at full scale): JSON parse, validation, cost plan, render in the
  pool, the sealing pipeline's image check. Measured in a fresh process. Targets <= 0.5 s, <= 50 MB.
- one request: the same payload posted to the real server (`python -m bot serve` in its own process,
  SQLite) on a valid link: the whole request, i.e. the above plus the commit, the signed render, the
  completion page and the PAdES seal. Measured on the server process (/proc: CPU of all its threads,
  peak RSS growth after resetting the peak). Reported against the same targets.
- 20 parallel: 20 submissions of that payload at once on one link (one renders, the rest are answered
  "in progress"/"used"). Target: the server's peak RSS growth under 200 MB.

Peak RSS growth needs Linux (/proc/<pid>/clear_refs); elsewhere only CPU is printed.

    .venv/bin/python bench/signing_cost.py
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

if __package__ in (None, ""):  # run as `python bench/X.py`: the project's root first, not bench/
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import quick, size

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
SECRET = "bench-secret-key-0123456789abcdef"
TARGET_CPU_S = 0.5
TARGET_MB = 50.0
TARGET_PARALLEL_MB = 200.0
PARALLEL = size(20, 4)  # quick mode: fewer at once (the growth figure then says little)
CONSENT = {"consent": True, "consent_version": "2025-01"}


# ---------------------------------------------------------------- /proc of another process

def _ticks(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _kb(pid: int | str, key: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def _reset_peak(pid: int | str) -> bool:
    try:
        with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Meter:
    """CPU seconds and peak RSS growth (MB) of process `pid` between start() and stop()."""

    def __init__(self, pid: int | str = "self") -> None:
        self.pid = pid

    def start(self) -> None:
        self.exact = _reset_peak(self.pid)
        self.rss0 = _kb(self.pid, "VmRSS")
        self.cpu0 = self._cpu()

    def _cpu(self) -> float:
        if self.pid == "self":
            return time.process_time()
        return _ticks(int(self.pid))

    def stop(self) -> tuple[float, float | None]:
        cpu = self._cpu() - self.cpu0
        if not self.exact:
            return cpu, None
        return cpu, max(0, _kb(self.pid, "VmHWM") - self.rss0) / 1024


def verdict(cpu: float, mb: float | None, cpu_target: float | None, mb_target: float) -> str:
    parts = []
    if cpu_target is not None:
        parts.append(f"CPU {cpu:.3f} s (target <= {cpu_target} s: {'met' if cpu <= cpu_target else 'NOT met'})")
    else:
        parts.append(f"CPU {cpu:.3f} s")
    if mb is None:
        parts.append("peak RSS growth: not measurable here")
    else:
        parts.append(f"peak RSS growth {mb:.1f} MB (target <= {mb_target:.0f} MB: "
                     f"{'met' if mb <= mb_target else 'NOT met'})")
    return ", ".join(parts)


# ---------------------------------------------------------------- 1. the signature work, in-process

def signature_work() -> None:
    """Run in a fresh interpreter (`--work`): the server's steps for one submission's strokes."""
    from handlers.signing_web import _check_body, _parse_json, _render_sealable
    from signing.strokes import parse_strokes, plan
    from tests.signing.cost_payloads import worst_accepted
    from tests.signing_flow.conftest import signature_strokes

    async def once(raw: bytes) -> bytes:
        return await _render_sealable(_check_body(_parse_json(raw), "t"))

    # Warm up with an ordinary signature: imports, the pool's threads, PIL's PNG plugin.
    asyncio.run(once(json.dumps({"token": "t", **CONSENT, "strokes": signature_strokes()}).encode()))
    payload = worst_accepted()
    raw = json.dumps({"token": "t", **CONSENT, "strokes": payload}).encode()
    p = plan(parse_strokes(payload))
    meter = Meter()
    meter.start()
    png = asyncio.run(once(raw))
    cpu, mb = meter.stop()
    print(f"worst accepted payload: {len(raw):,} bytes, {sum(len(s) for s in payload['strokes'])} points, "
          f"drawn length {p.path_length:,.0f} px, {p.sample_count:,} samples, image {p.out_w}x{p.out_h} px "
          f"at scale {p.scale}, PNG {len(png):,} bytes")
    print(f"signature work (parse, limits, render, image check): {verdict(cpu, mb, TARGET_CPU_S, TARGET_MB)}")


# ---------------------------------------------------------------- 2./3. the real server

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def prepare(db_url: str, data_dir: Path) -> str:
    """A migrated database with the demo organisation and one probation case at its signing steps."""
    from bot.app import build_service
    from config.settings import load_settings
    from storage import crypto
    from storage.db import close_db, init_db, migrate
    from storage.directory import import_csv
    from tests.signing_flow.conftest import start_probation, to_guarantee_step

    settings = load_settings(database_url=db_url, data_dir=data_dir, secret_key=SECRET, _env_file=None)
    await migrate(db_url)
    crypto.configure(settings.secret_bytes())
    await init_db(db_url)
    try:
        report = await import_csv((ROOT / "bot" / "demo_data" / "org.csv").read_text(encoding="utf-8"))
        assert report.applied, report.errors
        service = build_service(settings)
        case_id = await start_probation(service)
        await to_guarantee_step(service, case_id)
    finally:
        await close_db()
    return case_id


def token(case_id: str, step: str, data_dir: Path, signer: str = "E003") -> str:
    from datetime import UTC, datetime, timedelta

    from config.settings import load_settings
    from signing.links import make_token, new_nonce

    settings = load_settings(data_dir=data_dir, secret_key=SECRET, _env_file=None)
    return make_token(settings.secret_bytes(), case_id=case_id, step_id=step, signer_id=signer,
                      expires_at=datetime.now(UTC) + timedelta(hours=1), nonce=new_nonce())


def start_server(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([PY, "-m", "bot", "serve"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


async def _open(http: aiohttp.ClientSession, base: str, tok: str) -> str:
    async with http.get(f"{base}/sign/{tok}") as r:
        page = await r.text()
        assert r.status == 200, page[:500]
    found = re.search(r'\?h=([0-9a-f]{64})"', page)
    assert found, page[:500]
    return found.group(1)


async def _post(http: aiohttp.ClientSession, base: str, tok: str, h: str, strokes: dict) -> tuple[int, dict]:
    body = json.dumps({"token": tok, **CONSENT, "strokes": strokes}).encode()
    async with http.post(f"{base}/sign/{tok}?h={h}", data=body,
                         headers={"Content-Type": "application/json"}) as r:
        return r.status, await r.json()


async def server_run(parallel: int, *, ordinary: bool = False) -> None:
    from tests.signing.cost_payloads import worst_accepted
    from tests.signing_flow.conftest import signature_strokes

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data_dir = work / "data"
        data_dir.mkdir()
        db_url = f"sqlite://{work / 'bot.sqlite3'}"
        case_id = await prepare(db_url, data_dir)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {**os.environ, "DATABASE_URL": db_url, "DATA_DIR": str(data_dir), "SECRET_KEY": SECRET,
               "HTTP_HOST": "127.0.0.1", "HTTP_PORT": str(port), "PUBLIC_BASE_URL": base, "PLATFORMS": "emulator",
               "LOG_LEVEL": "WARNING", "SIGNING_SWEEP_SECONDS": "3600"}
        # As a real install: the root CA made offline, only the seal on the server (serve refuses without it).
        keys = await asyncio.create_subprocess_exec(PY, "-m", "bot", "keys", "--root-dir", str(work / "offline-root"),
                                                    cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        assert await keys.wait() == 0, "python -m bot keys failed"
        proc = start_server(env)
        try:
            async with aiohttp.ClientSession() as http:
                for _ in range(300):
                    try:
                        async with http.get(f"{base}/sign-assets/signpad.css") as r:
                            if r.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.1)
                # Warm-up: ordinary signatures on the other signing step (keys, fonts, first seal): the
                # handover sheet, by the employee and then the receiving colleague.
                for signer in ("E003", "E006"):
                    warm = token(case_id, "handover", data_dir, signer)
                    status, answer = await _post(http, base, warm, await _open(http, base, warm),
                                                 signature_strokes())
                    assert status == 200, answer
                tok = token(case_id, "guarantee", data_dir)
                h = await _open(http, base, tok)
                payload = signature_strokes() if ordinary else worst_accepted()
                await asyncio.sleep(0.5)
                meter = Meter(proc.pid)
                meter.start()
                answers = await asyncio.gather(*(_post(http, base, tok, h, payload) for _ in range(parallel)))
                await asyncio.sleep(0.2)  # let the server finish logging/cleanup of the burst
                cpu, mb = meter.stop()
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    codes: dict[str, int] = {}
    for status, data in answers:
        key = f"{status} {data.get('status') or data.get('code')}"
        codes[key] = codes.get(key, 0) + 1
    outcome = ", ".join(f"{n} x {k}" for k, n in sorted(codes.items()))
    if ordinary:
        print(f"for reference, an ordinary signature (180 points) on the server, whole request incl. seal "
              f"({outcome}): {verdict(cpu, mb, None, TARGET_MB)}")
    elif parallel == 1:
        print(f"one worst-case request on the server (whole request incl. seal; {outcome}): "
              f"{verdict(cpu, mb, TARGET_CPU_S, TARGET_MB)}")
    else:
        print(f"{parallel} parallel worst-case submissions on one link ({outcome}): "
              f"{verdict(cpu, mb, None, TARGET_PARALLEL_MB)}")


def main() -> None:
    if "--work" in sys.argv:
        signature_work()
        return
    subprocess.run([PY, __file__, "--work"], cwd=ROOT, check=True)
    if not quick():
        asyncio.run(server_run(1, ordinary=True))
    asyncio.run(server_run(1))
    asyncio.run(server_run(PARALLEL))


if __name__ == "__main__":
    main()
