"""Durable timers: every replica polls, one claims, the effect commits with the timer's `done`.

Timer rows live in the leased-claim queue (storage/queue): the claim is one compare-and-set
statement with a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL), so exactly one replica wins a
timer. The workflow event and `status = done` are written in one transaction: a crash before
commit leaves the claim to expire and the timer fires again later; a crash after commit cannot
fire it twice.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from aiohttp import web
from tortoise.transactions import in_transaction

from bot.runtime import WORKER_ID
from cases.service import CaseError, CaseService, CaseTx, utcnow
from chat.appkeys import SERVICE, SETTINGS
from chat.background import background
from storage import queue
from storage.dialect import default_conn
from storage.models import Timer
from workflow.events import TimerFired
from workflow.timerules import QuietHours

log = logging.getLogger("bot.timers")
LEASE = timedelta(seconds=60)  # for callers that pass no lease (tests with a simulated clock)
BATCH = 60  # timers claimed at once
# A fire is a short transaction whose time is mostly the database's commit (on PostgreSQL a WAL
# flush, ~8 ms on a busy disk against ~3 ms of work). So a replica fires a group of timers in one
# transaction, each in its own savepoint (a fire that fails or loses its lease undoes only itself),
# and runs a few groups at once: one flush then serves GROUP fires. Exactly once is unchanged: a
# fire's effect and its `done` commit together or not at all. A group holds the rows of its cases
# until it commits, so it is kept small. (SQLite runs them one by one anyway.)
GROUP = 15
CONCURRENCY = 4


class LeaseLost(Exception):
    pass


async def claim_due(now: datetime, *, limit: int = 50, worker: str = WORKER_ID,
                    lease: timedelta = LEASE) -> list[Timer]:
    return await queue.claim(queue.TIMERS, default_conn(), now, worker=worker, lease=lease, limit=limit)


async def fire(service: CaseService, timer: Timer, now: datetime, *, worker: str = WORKER_ID) -> bool:
    async def mark_done(tx: CaseTx) -> None:
        if not await queue.mark(queue.TIMERS, tx.conn, timer.id, worker, {"status": "done", "fired_at": now}):
            raise LeaseLost(timer.key)

    try:
        await service.apply(
            timer.case_id,  # type: ignore[attr-defined]
            lambda case, state: TimerFired(step_id=timer.step_id, kind=timer.kind, at=now),
            actor="timer", also=mark_done,
        )
    except LeaseLost:
        log.warning("timer %s: lease lost to another worker", timer.key)
        return False
    except CaseError as exc:
        log.error("timer %s failed: %s", timer.key, exc)
        await queue.mark(queue.TIMERS, default_conn(), timer.id, worker, {"status": "failed"})
        return False
    return True


async def run_due(service: CaseService, now: datetime | None = None, *, worker: str = WORKER_ID,
                  lease: timedelta = LEASE, limit: int = BATCH, group: int = GROUP, concurrency: int = CONCURRENCY,
                  quiet: QuietHours | None = None) -> int:
    """Claim the timers due and fire them, `group` to a transaction and `concurrency` transactions at
    once, each at the time it is fired; returns how many were claimed (the loop goes on at once after
    a full batch: counting only the fired ones, a fire lost to a contended case would make a replica
    sleep a poll interval in the middle of a burst). `now`: a fixed time to fire at (a
    simulated clock); None: the clock. A timer whose lease ran out before its turn is left alone:
    another replica may have it now. During `quiet` hours nothing is claimed (every timer kind tells
    someone something): they go out when the hours end (workflow.timerules)."""
    clock = utcnow if now is None else (lambda: now)
    if quiet is not None and quiet.contains(clock()):
        return 0
    timers = await claim_due(clock(), limit=limit, worker=worker, lease=lease)
    gate = asyncio.Semaphore(concurrency)

    async def fire_group(part: list[Timer]) -> None:
        async with gate, in_transaction():
            for t in part:
                at = clock()
                if t.lease_until is not None and at >= t.lease_until:
                    log.warning("timer %s: lease ran out before it was fired; left to the next claim", t.key)
                    continue
                try:
                    await fire(service, t, at, worker=worker)
                except Exception:  # e.g. a case too contended to commit: its claim runs out, it is retried
                    log.exception("timer %s: fire failed; retried when its lease runs out", t.key)

    await asyncio.gather(*(fire_group(timers[i:i + group]) for i in range(0, len(timers), group)))
    return len(timers)


async def timer_loop(app: web.Application) -> None:
    settings = app[SETTINGS]
    lease = timedelta(seconds=settings.timer_lease_seconds)
    quiet = QuietHours.parse(settings.quiet_hours, settings.tz)
    while True:
        claimed = 0
        try:
            claimed = await run_due(app[SERVICE], lease=lease, quiet=quiet)
        except Exception:  # a bad row must not stop every other timer
            log.exception("timer loop iteration failed")
        if claimed < BATCH:  # a full batch: more may be due at once, so go on without waiting
            await asyncio.sleep(settings.timer_poll_seconds)


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(background("timers", timer_loop))
