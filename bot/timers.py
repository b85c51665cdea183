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

from bot.runtime import WORKER_ID
from cases.service import CaseError, CaseService, CaseTx, utcnow
from chat.appkeys import SERVICE, SETTINGS
from chat.background import background
from storage import queue
from storage.dialect import default_conn
from storage.models import Timer
from workflow.events import TimerFired

log = logging.getLogger("bot.timers")
LEASE = timedelta(seconds=60)


class LeaseLost(Exception):
    pass


async def claim_due(now: datetime, *, limit: int = 50, worker: str = WORKER_ID) -> list[Timer]:
    return await queue.claim(queue.TIMERS, default_conn(), now, worker=worker, lease=LEASE, limit=limit)


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


async def run_due(service: CaseService, now: datetime | None = None, *, worker: str = WORKER_ID) -> int:
    now = now or utcnow()
    fired = 0
    for t in await claim_due(now, worker=worker):
        fired += await fire(service, t, now, worker=worker)
    return fired


async def timer_loop(app: web.Application) -> None:
    interval = app[SETTINGS].timer_poll_seconds
    while True:
        try:
            await run_due(app[SERVICE])
        except Exception:  # a bad row must not stop every other timer
            log.exception("timer loop iteration failed")
        await asyncio.sleep(interval)


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(background("timers", timer_loop))
