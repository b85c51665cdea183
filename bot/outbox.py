"""Outbox relay: delivers outbox rows through the platform adapters; runs in every replica.

Claiming. Outbox rows live in the leased-claim queue (storage/queue), shared with the timers: a
row is claimable when it is `pending` and due, or `claimed` with an expired lease (its claimer
died); the claim is one compare-and-set statement, so exactly one replica wins on SQLite and
PostgreSQL alike, and on PostgreSQL `FOR UPDATE SKIP LOCKED` lets replicas pick disjoint batches
instead of queueing on the same rows. Marks are written only while the claim is still ours.

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

Connectors. Every row is delivered through its platform's connector (chat.connector): the relay
resolves the recipient's platform `Address` first (storage.addresses, the one place that knows who
is reached where), hands the connector a card id in every platform's alphabet (storage.cardids),
stores the `Delivery` it returns with the row and hands it back on the next update of that card.

Limits, per connector and process (`connector.limits`): a token bucket (`rate_per_second`,
`burst`) taken before every call; at most `concurrency` calls in flight (rows of different
recipients go out side by side, one recipient's rows in order); and an optional per-recipient
quota (`per_recipient_per_minute/hour`): a row over it is not sent but waits, pending, until the
window frees (WeCom silently drops what exceeds it). With N replicas set the rates divided by N.

Permanent failures park the row as failed and tell the case's HR once (a text row keyed on the
failed row), with the connector's `hint`: what went wrong and how to fix it.

Inbound first. Rendering a card costs more than the event that queued it, and it shares the event
loop with the inbound path, whose acknowledgements platforms time (WeCom gives five seconds). While
inbound events are being handled (`busy()`), the relay rests after each delivery for
`yield_factor` times as long as that delivery took, so it takes at most 1/(1 + yield_factor) of the
loop and a burst of events is answered first; the cards follow as soon as the burst ends, and
never starve during a long one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web
from tortoise.transactions import in_transaction

from bot.runtime import WORKER_ID
from cards.model import Card
from cases.service import utcnow
from chat.connector import Address, Connector, Delivery, DeliveryError, Limits, PermanentDeliveryError
from storage import cardids, queue
from storage.addresses import AddressBook
from storage.dialect import default_conn
from storage.models import Case, Employee, OutboxMessage

log = logging.getLogger("bot.outbox")
MARK_BATCH = 10  # outcomes written per commit within one claimed batch
# How long a click's answer waits for the relay's loop to deliver the clicked card's update (so it
# can ride on the answer); after that the answer goes without it and the update is a call.
REPLY_WAIT_SECONDS = 1.0

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


class RecipientQuota:
    """Sends per recipient within the last minute and hour (this process); `wait` says how long
    until one more is allowed (0: now), `note` records one."""

    def __init__(self, per_minute: int | None, per_hour: int | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.windows = [(60.0, n) for n in (per_minute,) if n] + [(3600.0, n) for n in (per_hour,) if n]
        self.clock = clock
        self.sent: dict[str, deque[float]] = defaultdict(deque)

    def wait(self, recipient: str) -> float:
        if not self.windows:
            return 0.0
        now = self.clock()
        stamps = self.sent[recipient]
        longest = max(w for w, _ in self.windows)
        while stamps and now - stamps[0] >= longest:
            stamps.popleft()
        wait = 0.0
        for window, limit in self.windows:
            inside = [t for t in stamps if now - t < window]
            if len(inside) >= limit:
                wait = max(wait, inside[-limit] + window - now)
        return wait

    def note(self, recipient: str) -> None:
        if self.windows:
            self.sent[recipient].append(self.clock())


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
        self, connectors: Mapping[str, Connector], render: CardSource, *, addresses: AddressBook | None = None,
        worker: str = WORKER_ID,
        lease: timedelta = timedelta(seconds=60), batch: int = 50, retry: RetryPolicy | None = None,
        rng: random.Random | None = None, busy: Callable[[], bool] = lambda: False, yield_factor: float = 3.0,
        clock: Callable[[], float] = time.perf_counter,
        rest: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.connectors = dict(connectors)
        self.addresses = addresses or AddressBook.of(list(self.connectors))
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
        self.buckets: dict[str, TokenBucket] = {}
        self.in_flight: dict[str, asyncio.Semaphore] = {}
        self.quotas: dict[str, RecipientQuota] = {}
        for name, c in self.connectors.items():
            self.limit(name, c.limits)
        self._people: dict[str, Employee] = {}
        self._turns = asyncio.Lock()
        # Rows this relay's loop has claimed and not yet delivered, each with an event set once it
        # has been (update_clicked waits for one that is the clicked card's update).
        self._claimed: dict[int, tuple[OutboxMessage, asyncio.Event]] = {}
        self._claiming: asyncio.Event | None = None  # set once the loop's claim in flight is registered

    def limit(self, name: str, limits: Limits) -> None:
        self.buckets[name] = TokenBucket(limits.rate_per_second, limits.burst)
        self.in_flight[name] = asyncio.Semaphore(max(1, limits.concurrency))
        self.quotas[name] = RecipientQuota(limits.per_recipient_per_minute, limits.per_recipient_per_hour)

    # ---- claiming ---------------------------------------------------------------------------
    async def claim(self, now: datetime) -> list[OutboxMessage]:
        # One compare-and-set statement for the batch (storage/queue): the rows of this process's
        # platforms that are due, or whose claimer's lease ran out.
        return await queue.claim(queue.OUTBOX, default_conn(), now, worker=self.worker, lease=self.lease,
                                 limit=self.batch, only={"platform": sorted(self.connectors)})

    # ---- delivering -------------------------------------------------------------------------
    async def run_once(self, now: datetime | None = None) -> int:
        """Claim one batch and deliver it; returns how many rows were delivered.

        Rows of different recipients go out concurrently (bounded per connector), each recipient's
        rows in order. The outcomes are written MARK_BATCH at a time, one commit each, not one
        commit per row. A crash before they are written leaves those rows claimed; their lease
        runs out and they are sent again under the same card id, which the platform answers with
        the card it has, exactly as for a crash between one send and its mark."""
        now = now or utcnow()
        claiming = self._claiming = asyncio.Event()
        try:
            rows = await self.claim(now)
            for row in rows:
                self._claimed[row.id] = (row, asyncio.Event())
        finally:
            claiming.set()
            if self._claiming is claiming:
                self._claiming = None
        self._marks, self._sent = [], 0
        try:
            await self._load_people(rows)
            lanes: dict[tuple[str, str], list[OutboxMessage]] = defaultdict(list)
            for row in rows:
                lanes[(row.platform, row.recipient)].append(row)
            # A failure of one lane (a crash, in tests) cancels the others, as the process dying would.
            try:
                async with asyncio.TaskGroup() as group:
                    for lane in lanes.values():
                        group.create_task(self._lane(lane, now))
            except BaseExceptionGroup as failed:
                raise failed.exceptions[0] from None
            await self._flush_marks()
            return self._sent
        finally:
            self._marks = None
            self._people = {}
            for row in rows:
                self._settle(row)

    async def _lane(self, rows: Sequence[OutboxMessage], now: datetime) -> None:
        for row in rows:
            if self.busy():
                # While inbound events are handled, lanes take turns, so the relay's share of the
                # loop stays 1/(1 + yield_factor) however many lanes there are.
                async with self._turns:
                    started = self.clock()
                    await self._deliver_one(row, now)
                    await self.rest((self.clock() - started) * self.yield_factor)
            else:
                await self._deliver_one(row, now)

    async def _deliver_one(self, row: OutboxMessage, now: datetime) -> None:
        try:
            await self.deliver(row, now)
        finally:
            self._settle(row)
        if self._marks is not None and len(self._marks) >= MARK_BATCH:
            await self._flush_marks()

    def _settle(self, row: OutboxMessage) -> None:
        claimed = self._claimed.pop(row.id, None)
        if claimed is not None:
            claimed[1].set()

    async def _load_people(self, rows: Sequence[OutboxMessage]) -> None:
        wanted = sorted({r.recipient for r in rows} - set(self._people))
        if wanted:
            for emp in await Employee.filter(employee_id__in=wanted):
                self._people[emp.employee_id] = emp

    async def address(self, row: OutboxMessage) -> Address:
        """Where the row's recipient is reached on the row's platform (PermanentDeliveryError if nowhere)."""
        emp = self._people.get(row.recipient)
        if emp is None:
            emp = await Employee.get_or_none(employee_id=row.recipient)
            if emp is not None:
                self._people[row.recipient] = emp
        if emp is None:
            raise PermanentDeliveryError(f"recipient {row.recipient} is not in the directory",
                                         hint=f"add {row.recipient} to the directory (or correct the case)")
        user_id = self.addresses.user_id(emp, row.platform)
        if not user_id:
            column = self.addresses.column(row.platform)
            raise PermanentDeliveryError(f"{row.recipient} has no {row.platform} user id",
                                         hint=f"fill in {column} for {row.recipient} in the directory")
        return Address(platform=row.platform, user_id=user_id, employee_id=row.recipient)

    async def _call(self, platform: str, call: Callable[[], Awaitable[Delivery]]) -> Delivery:
        await self.buckets[platform].take()
        async with self.in_flight[platform]:
            return await call()

    async def deliver(self, row: OutboxMessage, now: datetime | None = None) -> bool:
        now = now or utcnow()
        connector = self.connectors[row.platform]
        try:
            wait = self.quotas[row.platform].wait(row.recipient) if row.kind != "update" else 0.0
            if wait > 0:
                # Over the recipient's quota: the platform would drop it; wait, pending, for the window.
                await self._mark(row, status="pending", next_attempt_at=now + timedelta(seconds=wait),
                                 attempts=max(0, row.attempts - 1), lease_until=None)
                return False
            to = await self.address(row)
            if row.kind == "card":
                delivery = await self._send_card(connector, to, row)
            elif row.kind == "update":
                updated = await self._update_cards(connector, to, row, now)
                if updated is None:
                    return False
                delivery = updated
            elif row.kind == "text":
                text = str(row.payload.get("text", ""))
                delivery = await self._call(row.platform, lambda: connector.send_text(to, text, row.key))
            else:
                raise DeliveryError(f"unknown outbox kind {row.kind!r}", transient=False)
        except DeliveryError as exc:
            await self._failed(row, now, str(exc), transient=exc.transient, retry_after=exc.retry_after,
                               hint=exc.hint)
            return False
        except Exception as exc:  # a bug in rendering must not wedge the queue; keep it visible
            log.exception("outbox %s: unexpected failure", row.key)
            await self._failed(row, now, f"{type(exc).__name__}: {exc}", transient=True)
            return False
        if row.kind != "update":
            self.quotas[row.platform].note(row.recipient)
        return await self._mark(row, status="sent", platform_message_id=delivery.message_id[:255], sent_at=now,
                                last_error=None, **({"delivery": delivery.to_json()} if row.kind != "update" else {}))

    async def _send_card(self, connector: Connector, to: Address, row: OutboxMessage) -> Delivery:
        card = await self.render(row)
        if card is None:
            raise DeliveryError("nothing to render (case or step gone)", transient=False)
        card_id = cardids.card_id_of(row)
        return await self._call(row.platform, lambda: connector.send_card(to, card, card_id))

    async def resend(self, row: OutboxMessage) -> None:
        """Deliver a card row again (a platform that lost it); its delivery is replaced."""
        card = await self.render(row)
        if card is None:
            return
        connector = self.connectors[row.platform]
        delivery = await connector.send_card(await self.address(row), card, cardids.card_id_of(row))
        if row.delivery is not None:
            await queue.replace_delivery(row.id, delivery.to_json())

    async def _update_cards(self, connector: Connector, to: Address, row: OutboxMessage,
                            now: datetime) -> Delivery | None:
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
            held = Delivery.from_json(holder.delivery) or Delivery(message_id=holder.platform_message_id)
            card_id = cardids.card_id_of(holder)
            fresh = await self._call(row.platform, lambda c=card, h=held, i=card_id: connector.update_card(to, c, i, h))
            # A click that brought a newer update token while this update ran keeps it (newest wins).
            await queue.keep_delivery(holder.id, fresh.to_json(), held.update_token)
            updated.append(fresh.message_id)
        return Delivery(message_id=",".join(updated)[:255], calls=len(updated))

    async def update_clicked(self, platform: str, card_id: str) -> None:
        """Deliver now the pending update of the step cards whose holder just clicked `card_id`, while
        the connector is still answering the click (`Capabilities.update_in_reply`: the answer can
        carry the clicked card's new content, so it costs no call of its own). The rows are claimed
        like any batch, so a relay loop that got there first simply delivers them itself."""
        conn = default_conn()
        clicked = await cardids.find(conn, card_id)
        if clicked is None or clicked.kind != "card" or clicked.platform != platform or clicked.step_id is None:
            return
        now = utcnow()
        rows = await queue.claim(queue.OUTBOX, conn, now, worker=self.worker, lease=self.lease, limit=self.batch,
                                 only={"platform": [platform], "case_id": [clicked.case_id],  # type: ignore[attr-defined]
                                       "step_id": [clicked.step_id], "recipient": [clicked.recipient],
                                       "kind": ["update"]})
        connector = self.connectors[platform]
        # This relay's loop may have claimed the update first (the click's commit woke it): wait a
        # moment for it; delivered while the click is still being answered, it joins the answer. A
        # claim of the loop's still in flight may hold it too: its rows are known once it returns.
        if not rows and self._claiming is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._claiming.wait(), timeout=REPLY_WAIT_SECONDS)
        theirs = [ev for row, ev in self._claimed.values() if row.kind == "update" and row.platform == platform
                  and (row.case_id, row.step_id, row.recipient) == (  # type: ignore[attr-defined]
                      clicked.case_id, clicked.step_id, clicked.recipient)]  # type: ignore[attr-defined]
        if theirs:
            waiting = [asyncio.create_task(ev.wait()) for ev in theirs]
            _, late = await asyncio.wait(waiting, timeout=REPLY_WAIT_SECONDS)
            for task in late:
                task.cancel()
        for row in rows:
            try:
                done = await self._update_cards(connector, await self.address(row), row, now)
            except DeliveryError as exc:
                log.info("outbox %s: not updated with the click's answer (%s); the relay retries", row.key, exc)
                done = None
            changes: dict[str, Any] = {"status": "pending", "lease_until": None} if done is None else {
                "status": "sent", "platform_message_id": done.message_id[:255], "sent_at": now, "last_error": None}
            await self._write_marks([(row, changes)])

    async def _failed(self, row: OutboxMessage, now: datetime, error: str, *, transient: bool,
                      retry_after: float | None = None, hint: str = "") -> None:
        if not transient:
            log.error("outbox %s failed permanently: %s", row.key, error)
            shown = f"{error} — {hint}" if hint else error
            await self._mark(row, status="failed", last_error=shown[:2000], lease_until=None)
            await self._tell_hr(row, now, error, hint)
            return
        delay = self.retry.delay(row.attempts, self.rng, retry_after)
        log.warning("outbox %s attempt %d failed (%s); retry in %.1fs", row.key, row.attempts, error, delay)
        await self._mark(row, status="pending", last_error=error[:2000], lease_until=None,
                         next_attempt_at=now + timedelta(seconds=delay))

    async def _tell_hr(self, row: OutboxMessage, now: datetime, error: str, hint: str) -> None:
        """Once per failed row (the notice's key is derived from it), in the case's HR's chat. A
        notice that itself fails is not noticed again."""
        if row.key.startswith("failed:") or row.case_id is None:  # type: ignore[attr-defined]
            return
        case = await Case.get_or_none(id=row.case_id)  # type: ignore[attr-defined]
        hr = await Employee.get_or_none(employee_id=case.created_by) if case is not None else None
        if hr is None:
            return
        what = {"card": "卡片", "update": "卡片更新", "text": "消息"}.get(row.kind, row.kind)
        text = (f"无法向 {row.recipient} 发送{what}（案件 {row.case_id}，{row.platform}）：{error}。"  # type: ignore[attr-defined]
                + (f"处理办法：{hint}" if hint else "请检查该平台的配置与通讯录。"))
        platform = self.addresses.platform_for(hr)
        await queue.insert_outbox(default_conn(), [{
            "key": f"failed:{cardids.encode(row.id, row.key)}", "case_id": row.case_id,  # type: ignore[attr-defined]
            "platform": platform, "recipient": hr.employee_id, "step_id": None, "kind": "text",
            "payload": {"text": text}, "next_attempt_at": now, "created_at": now,
        }])

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
                if not await queue.mark(queue.OUTBOX, conn, row.id, self.worker, changes):
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
