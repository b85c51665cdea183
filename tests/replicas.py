"""Several real `python -m bot serve` processes on one PostgreSQL database, and due timers for them.

Used by tests/foundation/test_timer_replicas.py (correctness) and bench/timers.py (throughput).
Cases are cloned from one real case (its row and step states, an empty audit chain) so that a
thousand of them cost one statement each, not a workflow each; each timer targets a step that is
not active, so the engine decides "nothing to do" and the service commits just the compare-and-set
of the case version with the timer's `done`: every fire is exactly one version step of its case,
which is how a test counts fires without trusting the timer rows alone.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tortoise import connections

from cases.service import CaseService
from storage import audit, casestore, queue
from storage.models import Case, CaseStep, Employee
from storage.rows import insert_rows

ROOT = Path(__file__).resolve().parent.parent


async def clone_cases(service: CaseService, n: int, prefix: str = "OB-R") -> tuple[list[str], str]:
    """`n` cases like a freshly opened probation case; (their ids, a step none of them has active)."""
    emp = await Employee.get(employee_id="E003")
    base = await service.start_case(employee=emp, template_id="probation", last_day=None, reason="replicas",
                                    created_by="E001")
    conn = connections.get("default")
    loaded = await casestore.load(conn, base.case_id)
    assert loaded is not None
    case, state = loaded
    idle = next(sid for sid, st in reversed(state.steps.items()) if st.status == "locked")
    row = {c: getattr(case, f) for f, c in ((f, case._meta.fields_db_projection[f]) for f in case._meta.db_fields)}
    ids = [f"{prefix}{i:06d}" for i in range(n)]
    for start in range(0, n, 500):
        chunk = ids[start:start + 500]
        await insert_rows(conn, Case, [{**row, "id": cid, "open_key": None, "version": 1, "audit_seq": 0,
                                        "audit_head": audit.GENESIS} for cid in chunk])
        await insert_rows(conn, CaseStep, [
            {"case_id": cid, "step_id": sid, "position": pos, **casestore.step_values(st)}
            for cid in chunk for pos, (sid, st) in enumerate(state.steps.items())])
    return ids, idle


async def add_timers(case_ids: list[str], step_id: str, n: int, first_due: datetime, spread: float) -> None:
    """`n` timers due between `first_due` and `spread` seconds later, in due order cycling through
    the cases (neighbours in the queue belong to different cases, as in life)."""
    rows = []
    for i in range(n):
        due = first_due + timedelta(seconds=spread * i / max(1, n - 1))
        rows.append({"key": f"replica-timer-{i}", "case_id": case_ids[i % len(case_ids)], "step_id": step_id,
                     "kind": "remind", "due_at": due})
    conn = connections.get("default")
    for start in range(0, n, 2000):
        await queue.insert_timers(conn, rows[start:start + 2000])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Replicas:
    """`n` serve processes on `db_url`, each with its own port, sharing a data directory."""

    db_url: str
    workdir: Path
    secret: str
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def env(self, port: int | None = None) -> dict[str, str]:
        return {**({"HTTP_PORT": str(port)} if port else {}), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "PYTHONPATH": str(ROOT),
                "DATABASE_URL": self.db_url, "DATA_DIR": str(self.workdir / "data"), "SECRET_KEY": self.secret,
                "PLATFORMS": "emulator", "HTTP_HOST": "127.0.0.1", "LOG_LEVEL": "WARNING",
                "EMULATOR_TOKEN": "replicas-emulator-token-0123456789",
                # Never quiet: these runs prove firing across replicas at any hour, not the quiet-hours rule.
                "QUIET_HOURS": "00:00-00:00", **self.extra_env}

    def start(self, n: int) -> None:
        # As a real install: the root CA made offline, only the seal on the server (serve refuses without it).
        subprocess.run([sys.executable, "-m", "bot", "keys", "--root-dir", str(self.workdir / "offline-root")],
                       cwd=ROOT, env=self.env(), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ports = [_free_port() for _ in range(n)]
        # Each process's log to a file (a pipe nobody reads would stall a process that logs a lot).
        self.logs = [self.workdir / f"serve-{i}.log" for i in range(n)]
        self.procs = []
        for port, log in zip(ports, self.logs, strict=True):
            with log.open("wb") as out:
                self.procs.append(subprocess.Popen([sys.executable, "-m", "bot", "serve"], cwd=ROOT, env=self.env(port),
                                                   stdout=subprocess.DEVNULL, stderr=out))
        deadline = time.monotonic() + 60
        for proc, port, log in zip(self.procs, ports, self.logs, strict=True):
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"serve exited: {log.read_text(errors='replace')[-2000:]}")
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"serve on {port} did not come up") from None
                    time.sleep(0.1)

    def log_lines(self, word: str) -> int:
        """Lines of the processes' logs that mention `word`."""
        return sum(line.count(word) for log in self.logs if log.exists()
                   for line in log.read_text(errors="replace").splitlines())

    def kill(self, i: int) -> None:
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait(timeout=10)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


async def done_count() -> int:
    _, rows = await connections.get("default").execute_query(
        "SELECT count(*) FROM \"timer\" WHERE \"key\" LIKE 'replica-timer-%' AND \"status\" = 'done'")
    return int(rows[0][0])


async def wait_done(n: int, deadline: float, on_progress: Any = None) -> int:
    """Poll until `n` timers are done or the monotonic `deadline` passes; the count done."""
    done = 0
    while time.monotonic() < deadline:
        done = await done_count()
        if on_progress is not None:
            on_progress(done)
        if done >= n:
            return done
        await asyncio.sleep(0.1)
    return done


@dataclass(frozen=True)
class Tally:
    timers: int
    done: int
    fires: int  # version steps of the cases: one per committed fire
    worst_late_s: float
    by_worker: dict[str, int]
    attempts_over_one: int  # timers claimed more than once (a dead claimer's, or a lease that ran out)


async def tally(case_ids: list[str]) -> Tally:
    conn = connections.get("default")
    _, rows = await conn.execute_query(
        "SELECT count(*), count(*) FILTER (WHERE \"status\" = 'done'), "
        "coalesce(max(extract(epoch FROM \"fired_at\" - \"due_at\")), 0), "
        "count(*) FILTER (WHERE \"attempts\" > 1) FROM \"timer\" WHERE \"key\" LIKE 'replica-timer-%'")
    total, done, late, retried = rows[0][0], rows[0][1], float(rows[0][2]), rows[0][3]
    _, workers = await conn.execute_query(
        "SELECT \"claimed_by\", count(*) FROM \"timer\" WHERE \"key\" LIKE 'replica-timer-%' "
        "AND \"status\" = 'done' GROUP BY \"claimed_by\"")
    versions = await Case.filter(id__in=case_ids).values_list("version", flat=True)
    return Tally(total, done, sum(v - 1 for v in versions), late, {w[0]: w[1] for w in workers}, retried)


def now_utc() -> datetime:
    return datetime.now(UTC)
