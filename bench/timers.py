"""Timers on PostgreSQL: fired per second by 1 and by 3 `serve` processes, and the cost of the due scan.

- fired per second: N timers (default 3,000, over 600 cases cloned from a real one, each timer on a
  step that is not active, so a fire is the claim, the engine's decision and the compare-and-set of
  the case with the timer's `done`) all due at once; the rate is timers done / seconds from the
  first due to the last done, with 1 and then 3 real `python -m bot serve` processes.
- the due scan: with 100,000 timers pending for later, the claim statement is EXPLAINed (its plan:
  the (status, due_at) index, no walk of the table) and timed with 0, 50 and 1,000 of them due:
  its cost follows what is due, not what is pending. It runs on the database only, nothing fires.

    .venv/bin/python bench/timers.py [--timers 3000] [--pg URL]

Runs against database `bench_timers` beside --pg (created when absent, emptied each run).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as `python bench/X.py`: the project's root first, not bench/
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import pg_url, size  # noqa: E402

SECRET = "bench-secret-key-0123456789abcdef"
ENV = {"TIMER_POLL_SECONDS": "0.2", "TIMER_LEASE_SECONDS": "5", "OUTBOX_POLL_SECONDS": "5",
       "SIGNING_SWEEP_SECONDS": "3600"}


async def _fresh(url: str) -> None:
    from tortoise import connections

    from storage.db import close_db, init_db, migrate

    await migrate(url)
    await init_db(url)
    await connections.get("default").execute_script(
        "TRUNCATE timer, outbox, inbox, audit_entry, case_step, \"case\", employee RESTART IDENTITY CASCADE")
    await close_db()


async def fire_rate(url: str, processes: int, timers: int, cases: int) -> tuple[float, float]:
    """(timers fired per second, worst lateness in s) with `processes` serve processes."""
    from bot.app import build_service
    from config.settings import load_settings
    from storage import crypto
    from storage.db import close_db, init_db
    from storage.directory import import_csv
    from tests.conftest import DEMO_CSV
    from tests.replicas import Replicas, add_timers, clone_cases, now_utc, tally, wait_done

    await _fresh(url)
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(database_url=url, data_dir=Path(tmp) / "data", secret_key=SECRET, _env_file=None)
        crypto.configure(settings.secret_bytes())
        await init_db(url)
        try:
            assert (await import_csv(DEMO_CSV.read_text(encoding="utf-8"))).applied
            ids, idle = await clone_cases(build_service(settings), cases)
            replicas = Replicas(url, Path(tmp), SECRET, ENV)
            replicas.start(processes)
            try:
                due = now_utc() + timedelta(seconds=1)
                await add_timers(ids, idle, timers, due, 0.0)
                await asyncio.sleep(max(0.0, (due - now_utc()).total_seconds()))
                start = time.monotonic()
                done = await wait_done(timers, start + 600)
                elapsed = time.monotonic() - start
            finally:
                replicas.stop()
            t = await tally(ids)
            assert t.done == done == t.fires == timers, t
        finally:
            await close_db()
    return timers / elapsed, t.worst_late_s


class _Rollback(Exception):
    pass


async def due_scan(url: str, pending: int) -> None:
    from tortoise import connections
    from tortoise.transactions import in_transaction

    from bot.app import build_service
    from config.settings import load_settings
    from storage import crypto, queue
    from storage.db import close_db, init_db
    from storage.dialect import dialect_of
    from storage.directory import import_csv
    from tests.conftest import DEMO_CSV
    from tests.replicas import clone_cases, now_utc

    await _fresh(url)
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(database_url=url, data_dir=Path(tmp), secret_key=SECRET, _env_file=None)
        crypto.configure(settings.secret_bytes())
        await init_db(url)
        try:
            assert (await import_csv(DEMO_CSV.read_text(encoding="utf-8"))).applied
            ids, idle = await clone_cases(build_service(settings), 1000)
            now = now_utc()
            rows = [{"key": f"later-{i}", "case_id": ids[i % len(ids)], "step_id": idle, "kind": "remind",
                     "due_at": now + timedelta(days=1, seconds=i)} for i in range(pending)]
            conn = connections.get("default")
            for i in range(0, pending, 5000):
                await queue.insert_timers(conn, rows[i:i + 5000])
            print(f"due scan: {pending:,} timers pending for later")
            d = dialect_of(conn)
            due_before = 0
            for due in (0, 50, 1000):
                await queue.insert_timers(conn, [
                    {"key": f"due-{i}", "case_id": ids[i % len(ids)], "step_id": idle, "kind": "remind",
                     "due_at": now - timedelta(seconds=i)} for i in range(due_before, due)])
                due_before = due
                await conn.execute_script("ANALYZE timer")
                sql, values = queue.claim_statement(queue.TIMERS, conn, now, worker="bench", lease=timedelta(0),
                                                    limit=50)
                # EXPLAIN ANALYZE runs the claim: in a transaction rolled back, so nothing is claimed.
                plan: list[str] = []
                times = []
                for _ in range(5):
                    try:
                        async with in_transaction() as tx:
                            out = await tx.execute_query_dict("EXPLAIN (ANALYZE, BUFFERS) " + d.sql(sql), values)
                            raise _Rollback
                    except _Rollback:
                        pass
                    plan = [r["QUERY PLAN"] for r in out]
                    times.append(float(plan[-1].split(":")[1].split()[0]))
                index = any("idx_timer_status_" in line for line in plan)
                seq = any("Seq Scan on timer" in line for line in plan)
                print(f"  {due:5d} due: claim of up to 50 {sorted(times)[2]:7.3f} ms (median of 5)  "
                      f"(status, due_at) index {'yes' if index else 'NO'}  seq scan {'YES' if seq else 'no'}")
                if due == 1000:
                    print("  plan (1,000 due):")
                    for line in plan:
                        print("    " + line)
        finally:
            await close_db()


def main() -> None:
    from bench.inbound import reset_pg

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timers", type=int, default=size(3000, 200))
    ap.add_argument("--cases", type=int, default=size(600, 40))
    ap.add_argument("--pending", type=int, default=size(100_000, 5000))
    ap.add_argument("--pg", default=pg_url("postgres://postgres@127.0.0.1:5432/postgres"))
    args = ap.parse_args()
    if not args.pg:
        print("timers: skipped, PostgreSQL only (set BENCH_PG_URL in quick mode)")
        return
    try:
        url = reset_pg(args.pg, "bench_timers")
    except Exception as exc:  # no server: say so
        print(f"timers: skipped, no PostgreSQL ({exc})")
        return
    for n in (1, 3):
        rate, late = asyncio.run(fire_rate(url, n, args.timers, args.cases))
        print(f"{n} serve process{'es' if n > 1 else ''}: {args.timers} timers due at once fired at {rate:6.0f}/s "
              f"(worst {late:.1f} s after due)")
    asyncio.run(due_scan(url, args.pending))


if __name__ == "__main__":
    main()
