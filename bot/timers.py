"""Durable timers: every replica polls, one claims, the effect commits with the timer's `done`.

Claim = compare-and-set UPDATE (status pending, or a claim whose lease ran out) so that exactly
one replica wins on SQLite and PostgreSQL alike; on PostgreSQL the candidate SELECT also uses
`FOR UPDATE SKIP LOCKED` so replicas don't queue behind each other's rows. The workflow event
and `status = done` are written in one transaction: a crash before commit leaves the claim to
expire and the timer fires again later; a crash after commit cannot fire it twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from cases.service import CaseError, CaseService, utcnow
from chat.appkeys import SERVICE, SETTINGS
from chat.background import background
from storage.models import Timer
from workflow.events import TimerFired
from workflow.timerules import QuietHours

log = logging.getLogger("bot.timers")
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"
LEASE = timedelta(seconds=60)


class LeaseLost(Exception):
    pass


async def claim_due(now: datetime, *, limit: int = 50, worker: str = WORKER_ID) -> list[Timer]:
    claimable = Q(status="pending") | Q(status="claimed", lease_until__lt=now)
    async with in_transaction() as conn:
        candidates = await (
            Timer.filter(claimable, due_at__lte=now).using_db(conn).order_by("due_at").limit(limit)
            .select_for_update(skip_locked=True)
        )
        won: list[Timer] = []
        for t in candidates:
            n = await Timer.filter(Q(id=t.id) & claimable).using_db(conn).update(
                status="claimed", lease_until=now + LEASE, claimed_by=worker, attempts=t.attempts + 1
            )
            if n == 1:
                t.status, t.claimed_by = "claimed", worker
                won.append(t)
    return won


async def fire(service: CaseService, timer: Timer, now: datetime, *, worker: str = WORKER_ID) -> bool:
    async def mark_done(conn: Any) -> None:
        n = await Timer.filter(id=timer.id, status="claimed", claimed_by=worker).using_db(conn).update(
            status="done", fired_at=now
        )
        if n != 1:
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
        await Timer.filter(id=timer.id).update(status="failed")
        return False
    return True


async def run_due(service: CaseService, now: datetime | None = None, *, worker: str = WORKER_ID,
                  quiet: QuietHours | None = None) -> int:
    """Fire the timers due at `now`. Every timer kind sends a reminder or an alert, so during `quiet` hours
    none fires: they stay pending and go out when the quiet hours end (workflow.timerules)."""
    now = now or utcnow()
    if quiet is not None and quiet.contains(now):
        return 0
    fired = 0
    for t in await claim_due(now, worker=worker):
        fired += await fire(service, t, now, worker=worker)
    return fired


async def timer_loop(app: web.Application) -> None:
    interval = app[SETTINGS].timer_poll_seconds
    quiet = QuietHours.parse(app[SETTINGS].quiet_hours, app[SETTINGS].tz)
    while True:
        try:
            await run_due(app[SERVICE], quiet=quiet)
        except Exception:  # a bad row must not stop every other timer
            log.exception("timer loop iteration failed")
        await asyncio.sleep(interval)


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(background("timers", timer_loop))
