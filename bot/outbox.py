"""Outbox relay: delivers outbox rows through the platform adapters; runs in every replica.

Claiming. A row is claimable when it is `pending` and due, or `claimed` with an expired lease (its
claimer died). Claim = compare-and-set UPDATE on (id, the claimable condition), so exactly one
replica wins on SQLite and PostgreSQL alike; on PostgreSQL the candidate SELECT also takes
`FOR UPDATE SKIP LOCKED` so replicas pick disjoint batches instead of queueing on the same rows.

Rendering. A card row carries only (case, step, purpose, role); the card is built from the case as
it is *when it is sent*, so a card that waited in the queue never shows stale state, and an update
row simply re-renders and replaces every card of that step the recipient holds.

No duplicate after a crash. The row's unique key is passed to the platform as the card's own id
(`card_id`; DingTalk `outTrackId`, WeCom `task_id`, the emulator's card id). If the relay dies
after the platform accepted a card but before the row is marked `sent`, the lease runs out, some
replica claims the row again and sends with the same `card_id`; the adapter answers with the
card that already exists instead of posting a second one. We chose this over "record intent
first" because intent alone cannot tell whether the platform got the card; the card id can.

Retries. Transient failures go back to `pending` with exponential backoff and jitter
(`base * 2^(attempts-1)`, capped, times a random factor in [0.5, 1]); a platform's Retry-After wins
when longer. Permanent failures (`PermanentDeliveryError`) park the row as `failed` with the error,
for HR to see; transient ones are retried until delivered, as the spec asks.

Rate limit. One token bucket per platform per process; the relay waits for a token before every
call. With N replicas set the adapter's rate to the platform quota divided by N.

Inbound first. Rendering a card costs more than the event that queued it, and it shares the event
loop with the inbound path, whose acknowledgements platforms time (WeCom gives five seconds). While
inbound events are being handled (`busy()`), the relay rests after each delivery for
`yield_factor` times as long as that delivery took, so it takes at most 1/(1 + yield_factor) of the
loop and a burst of events is answered first; the cards follow as soon as the burst ends, and
never starve during a long one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web
from tortoise.expressions import F, Q
from tortoise.transactions import in_transaction

from bot.inbound import INBOUND
from bot.platforms.base import DeliveryError, PlatformAdapter
from cards.model import Card
from cases.service import utcnow
from chat.appkeys import SERVICE, SETTINGS
from chat.background import background
from handlers.cardview import CardRenderer
from storage import hotpath
from storage.models import OutboxMessage

log = logging.getLogger("bot.outbox")
MARK_BATCH = 10  # outcomes written per commit within one claimed batch
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"

# Builds the card for a row from current state; None when there is nothing to show any more.
CardSource = Callable[[OutboxMessage], Awaitable[Card | None]]


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up; `take` waits for one."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens = float(burst)
        self.stamp = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    async def take(self) -> None:
        async with self._lock:  # FIFO among waiters, so no sender starves
            self._refill()
            while self.tokens < 1:
                await asyncio.sleep((1 - self.tokens) / self.rate)
                self._refill()
            self.tokens -= 1


@dataclass(frozen=True)
class RetryPolicy:
    base: float = 2.0
    cap: float = 600.0

    def delay(self, attempts: int, rng: random.Random, retry_after: float | None = None) -> float:
        raw = min(self.cap, self.base * 2 ** max(0, attempts - 1))
        jittered = raw * rng.uniform(0.5, 1.0)
        return max(jittered, retry_after or 0.0)


class Relay:
    def __init__(
        self, adapters: Mapping[str, PlatformAdapter], render: CardSource, *, worker: str = WORKER_ID,
        lease: timedelta = timedelta(seconds=60), batch: int = 50, retry: RetryPolicy | None = None,
        rng: random.Random | None = None, busy: Callable[[], bool] = lambda: False, yield_factor: float = 3.0,
        clock: Callable[[], float] = time.perf_counter,
        rest: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.adapters = dict(adapters)
        self.busy = busy
        self.yield_factor = yield_factor
        self.clock = clock
        self.rest = rest
        self._marks: list[tuple[OutboxMessage, dict[str, Any]]] | None = None  # outcomes not yet written
        self._sent = 0
        self.render = render
        self.worker = worker
        self.lease = lease
        self.batch = batch
        self.retry = retry or RetryPolicy()
        self.rng = rng or random.Random()
        self.buckets = {name: TokenBucket(a.rate_per_second, a.burst) for name, a in self.adapters.items()}

    # ---- claiming ---------------------------------------------------------------------------
    async def claim(self, now: datetime) -> list[OutboxMessage]:
        claimable = Q(status="pending", next_attempt_at__lte=now) | Q(status="claimed", lease_until__lt=now)
        mine = Q(platform__in=list(self.adapters))
        lease = now + self.lease
        async with in_transaction() as conn:
            candidates = await (
                OutboxMessage.filter(claimable & mine).using_db(conn).order_by("id").limit(self.batch)
                .select_for_update(skip_locked=True)
            )
            if not candidates:
                return []
            ids = [row.id for row in candidates]
            # One compare-and-set for the batch: the rows are locked (FOR UPDATE on PostgreSQL; on
            # SQLite the transaction holds the write lock), so all of them normally change.
            n = await OutboxMessage.filter(Q(id__in=ids) & claimable).using_db(conn).update(
                status="claimed", lease_until=lease, claimed_by=self.worker, attempts=F("attempts") + 1,
            )
            if n == len(candidates):
                for row in candidates:
                    row.status, row.claimed_by, row.attempts, row.lease_until = (
                        "claimed", self.worker, row.attempts + 1, lease)
                return candidates
            return list(await OutboxMessage.filter(id__in=ids, status="claimed", claimed_by=self.worker,
                                                   lease_until=lease).using_db(conn).order_by("id"))

    # ---- delivering -------------------------------------------------------------------------
    async def run_once(self, now: datetime | None = None) -> int:
        """Claim one batch and deliver it; returns how many rows were delivered.

        The outcomes are written MARK_BATCH at a time, one commit each, not one commit per row.
        A crash before they are written leaves those rows claimed; their lease runs out and they
        are sent again under the same card id, which the platform answers with the card it has,
        exactly as for a crash between one send and its mark."""
        now = now or utcnow()
        rows = await self.claim(now)
        self._marks, self._sent = [], 0
        try:
            for row in rows:
                started = self.clock()
                await self.deliver(row, now)
                if len(self._marks) >= MARK_BATCH:
                    await self._flush_marks()
                if self.busy():
                    await self.rest((self.clock() - started) * self.yield_factor)
            await self._flush_marks()
            return self._sent
        finally:
            self._marks = None

    async def deliver(self, row: OutboxMessage, now: datetime | None = None) -> bool:
        now = now or utcnow()
        adapter = self.adapters[row.platform]
        try:
            if row.kind == "card":
                message_id = await self._send_card(adapter, row)
            elif row.kind == "update":
                message_id = await self._update_cards(adapter, row, now)
                if message_id is None:
                    return False
            elif row.kind == "text":
                await self.buckets[row.platform].take()
                message_id = await adapter.send_text(row.recipient, str(row.payload.get("text", "")), row.key)
            else:
                raise DeliveryError(f"unknown outbox kind {row.kind!r}", transient=False)
        except DeliveryError as exc:
            await self._failed(row, now, str(exc), transient=exc.transient, retry_after=exc.retry_after)
            return False
        except Exception as exc:  # a bug in rendering must not wedge the queue; keep it visible
            log.exception("outbox %s: unexpected failure", row.key)
            await self._failed(row, now, f"{type(exc).__name__}: {exc}", transient=True)
            return False
        return await self._mark(row, status="sent", platform_message_id=message_id, sent_at=now,
                                last_error=None)

    async def _send_card(self, adapter: PlatformAdapter, row: OutboxMessage) -> str:
        card = await self.render(row)
        if card is None:
            raise DeliveryError("nothing to render (case or step gone)", transient=False)
        await self.buckets[row.platform].take()
        return await adapter.send_card(row.recipient, card, row.key)

    async def _update_cards(self, adapter: PlatformAdapter, row: OutboxMessage, now: datetime) -> str | None:
        await self._flush_marks()  # a card sent earlier in this batch must read as sent below
        holders = await OutboxMessage.filter(
            case_id=row.case_id, step_id=row.step_id, recipient=row.recipient, kind="card",  # type: ignore[attr-defined]
        ).order_by("id")
        unsent = [h for h in holders if h.status in ("pending", "claimed")]
        if unsent:
            # The card itself is still queued; it will render current state when it goes out, but
            # this update must not overtake it (the platform has nothing to update yet).
            await self._mark(row, status="pending", next_attempt_at=now + timedelta(seconds=1),
                             attempts=max(0, row.attempts - 1), lease_until=None)
            return None
        updated = []
        for holder in holders:
            if holder.status != "sent" or not holder.platform_message_id:
                continue
            card = await self.render(holder)
            if card is None:
                continue
            await self.buckets[row.platform].take()
            await adapter.update_card(holder.recipient, holder.platform_message_id, card, holder.key)
            updated.append(holder.platform_message_id)
        return ",".join(updated)[:255]

    async def _failed(self, row: OutboxMessage, now: datetime, error: str, *, transient: bool,
                      retry_after: float | None = None) -> None:
        if not transient:
            log.error("outbox %s failed permanently: %s", row.key, error)
            await self._mark(row, status="failed", last_error=error[:2000], lease_until=None)
            return
        delay = self.retry.delay(row.attempts, self.rng, retry_after)
        log.warning("outbox %s attempt %d failed (%s); retry in %.1fs", row.key, row.attempts, error, delay)
        await self._mark(row, status="pending", last_error=error[:2000], lease_until=None,
                         next_attempt_at=now + timedelta(seconds=delay))

    async def _mark(self, row: OutboxMessage, **changes: Any) -> bool:
        """Record a row's outcome: queued when inside `run_once` (False: counted at the flush),
        written now otherwise (True when it was marked sent)."""
        if self._marks is not None:
            self._marks.append((row, changes))
            return False
        return await self._write_marks([(row, changes)]) == 1

    async def _flush_marks(self) -> None:
        if self._marks:
            marks, self._marks = self._marks, []
            self._sent += await self._write_marks(marks)

    async def _write_marks(self, marks: list[tuple[OutboxMessage, dict[str, Any]]]) -> int:
        # Only while we still hold the claim: if our lease ran out and another replica took the row,
        # its outcome stands (and the card id kept the platform from showing two cards).
        sent = 0
        async with in_transaction() as conn:
            for row, changes in marks:
                n = await hotpath.update_where(conn, OutboxMessage, changes,
                                               {"id": row.id, "status": "claimed", "claimed_by": self.worker})
                if n != 1:
                    log.warning("outbox %s: claim lost before it could be marked", row.key)
                elif changes.get("status") == "sent":
                    sent += 1
        return sent

    # ---- the loop ---------------------------------------------------------------------------
    async def run_forever(self, wake: asyncio.Event, poll_seconds: float) -> None:
        while True:
            try:
                busy = await self.run_once()
            except Exception:
                log.exception("outbox relay iteration failed")
                busy = 0
            if busy:
                continue
            wake.clear()
            try:
                await asyncio.wait_for(wake.wait(), timeout=poll_seconds)
            except TimeoutError:
                pass


RELAY = web.AppKey("relay", Relay)
ADAPTERS = web.AppKey("adapters", dict)


def setup(app: web.Application) -> None:
    settings = app[SETTINGS]
    adapters: dict[str, PlatformAdapter] = app.get(ADAPTERS, {})
    app[ADAPTERS] = adapters
    renderer = CardRenderer(settings, app[SERVICE])
    relay = Relay(adapters, renderer.for_outbox)
    app[RELAY] = relay

    async def loop(app: web.Application) -> None:
        # Adapters register during setup of later extensions; pick them up when the loop starts.
        relay.adapters = dict(app[ADAPTERS])
        relay.buckets = {n: TokenBucket(a.rate_per_second, a.burst) for n, a in relay.adapters.items()}
        relay.busy = app[INBOUND].busy
        await relay.run_forever(app[INBOUND].committed, settings.outbox_poll_seconds)

    app.cleanup_ctx.append(background("outbox", loop))
