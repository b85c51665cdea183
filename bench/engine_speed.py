"""Events per second: the pure engine alone, and through the transactional service layer on
SQLite and PostgreSQL (create a case, run it to completion). Prints figures and their ratio.

    .venv/bin/python bench/engine_speed.py [cases]    # PostgreSQL part skipped when BENCH_PG_URL=""
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/X.py`: the project's root first, not bench/
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from tortoise import Tortoise, connections
from tortoise.backends.base.executor import EXECUTOR_CACHE

from bench import org_csv, pg_url, size
from bot.app import build_service
from config.settings import load_settings
from storage import crypto
from storage.db import close_db, init_db, migrate
from storage.directory import import_csv
from storage.models import Case, Employee
from workflow import engine
from workflow.events import Act, DocumentSigned
from workflow.model import Role
from workflow.templates import load_templates

ROOT = Path(__file__).resolve().parent.parent
PG_URL = pg_url("postgres://postgres@127.0.0.1:5432/bench")
T0 = datetime(2025, 7, 1, 2, 0, tzinfo=UTC)
E, M, HR, FIN, HO = (frozenset({r}) for r in (Role.EMPLOYEE, Role.MANAGER, Role.HR, Role.FINANCE, Role.HANDOVER))


def case_b_events(at: datetime) -> list:
    """Case B from the first step to completion: 10 events after the start."""
    t = [at + timedelta(minutes=i) for i in range(10)]
    return [
        Act("application", "submit", "E", E, {"last_working_day": "2025-07-31", "reason": "x"}, at=t[0]),
        Act("performance_review", "approve", "M", M, {"result": "60%"}, at=t[1]),
        Act("hr_check", "complete", "H", HR, {"unpaid_months": 2}, at=t[2]),
        DocumentSigned("handover", "handover_confirmation", "E", E, at=t[3]),
        DocumentSigned("handover", "handover_confirmation", "O", HO, at=t[4]),
        DocumentSigned("guarantee", "guarantee_letter", "E", E, at=t[5]),
        Act("backpay", "confirm", "F", FIN, {"payment_reference": "P1"}, at=t[6]),
        DocumentSigned("separation_certificate", "separation_certificate", "E", E, at=t[7]),
        DocumentSigned("rights_notice", "rights_notice", "E", E, at=t[8]),
        Act("rights_notice", "acknowledge", "E", E, {}, at=t[9]),
    ]


def bench_pure(n_cases: int) -> float:
    tpl = load_templates()["probation"]
    events = case_b_events(T0)
    count = 0
    start = time.perf_counter()
    for i in range(n_cases):
        d = engine.start(tpl, f"C{i}", T0)
        state = d.state
        count += 1
        for ev in events:
            res = engine.apply(tpl, state, ev)
            assert isinstance(res, engine.Decision), res
            state = res.state
            count += 1
        assert state.status == "completed"
    return count / (time.perf_counter() - start)


async def bench_db(url: str, n_cases: int) -> float:
    data = Path(tempfile.mkdtemp(prefix="bench-"))
    # Tortoise caches each model's INSERT text per connection name, across re-inits; a second
    # backend in the same process would otherwise get the first one's placeholders.
    EXECUTOR_CACHE.clear()
    settings = load_settings(database_url=url, data_dir=data, secret_key="bench-secret-0123456789abcdef",
                             _env_file=None)
    if url.startswith("postgres"):
        await Tortoise.init(config={"connections": {"default": url},
                                   "apps": {"models": {"models": ["storage.models"]}}})
        await connections.get("default").execute_script("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
        await Tortoise.close_connections()
    await migrate(url)
    crypto.configure(settings.secret_bytes())
    await init_db(url)
    try:
        rows = [f"E{i},员工{i},d,p,M,,beijing,2025-01-01,,,5000,,," for i in range(n_cases)]
        assert (await import_csv(org_csv(rows))).applied
        svc = build_service(settings)
        emps = {e.employee_id: e for e in await Employee.all()}
        count = 0
        start = time.perf_counter()
        for i in range(n_cases):
            out = await svc.start_case(employee=emps[f"E{i}"], template_id="probation", last_day=None, reason="",
                                       created_by="H", handover_id="O", at=T0)
            count += 1
            for ev in case_b_events(T0):
                actor = {"E": f"E{i}"}.get(ev.actor_id, ev.actor_id)
                ev = dataclasses.replace(ev, actor_id=actor)
                res = await svc.apply(out.case_id, lambda c, s, ev=ev: ev, actor=actor)
                assert res.ok, res.refusal
                count += 1
        elapsed = time.perf_counter() - start
        assert await Case.filter(status="completed").count() == n_cases
        return count / elapsed
    finally:
        await close_db()


async def pg_available() -> bool:
    if not PG_URL:
        return False
    import asyncpg

    try:
        admin = await asyncpg.connect(PG_URL.rsplit("/", 1)[0] + "/postgres")
    except (OSError, asyncpg.PostgresError):
        return False
    try:
        db = PG_URL.rsplit("/", 1)[1]
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname=$1", db):
            await admin.execute(f'CREATE DATABASE "{db}"')
    finally:
        await admin.close()
    return True


async def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else size(100, 10)
    pure = bench_pure(max(n, size(200, 20)) * 5)
    print(f"pure engine:                 {pure:10.0f} events/s")
    tmp = Path(tempfile.mkdtemp(prefix="bench-sqlite-"))
    sqlite = await bench_db(f"sqlite://{tmp}/bench.sqlite3", n)
    print(f"service layer, SQLite:       {sqlite:10.0f} events/s   "
          f"(target >= 1,000; ratio to pure {sqlite / pure:.4f})")
    if await pg_available():
        pg = await bench_db(PG_URL, n)
        print(f"service layer, PostgreSQL:   {pg:10.0f} events/s   (ratio to pure {pg / pure:.4f}, "
              f"to SQLite {pg / sqlite:.2f})")
    else:
        print("service layer, PostgreSQL:   skipped (no server at BENCH_PG_URL, or not set in quick mode)")


if __name__ == "__main__":
    asyncio.run(main())
