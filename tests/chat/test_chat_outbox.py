"""Outbox relay: retries with backoff, no duplicate after a crash between send and mark, claims."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest

from bot.outbox import Relay, RetryPolicy, TokenBucket
from cards.model import Card
from cases.service import utcnow
from chat.connector import Address, Capabilities, Delivery, DeliveryError, Limits, PermanentDeliveryError
from storage import cardids
from storage.models import OutboxMessage

START = "/离职 张三 试用期 2025-07-31 绩效未达标 交接人:周八"


class FlakyPlatform:
    """Idempotent on card id like a real platform; fails the next `fail_next` calls on cue."""

    name = "emulator"
    limits = Limits(rate_per_second=1000.0, burst=1000)
    capabilities = Capabilities()
    identity = None
    directory = None

    def __init__(self) -> None:
        self.cards: dict[str, tuple[str, Card]] = {}
        self.posts = 0  # how many cards the platform actually created
        self.calls = 0
        self.fail_next = 0
        self.permanent = False
        self.updates: list[str] = []

    def _maybe_fail(self) -> None:
        self.calls += 1
        if self.fail_next:
            self.fail_next -= 1
            if self.permanent:
                raise PermanentDeliveryError("recipient unknown")
            raise DeliveryError("HTTP 503 from platform", retry_after=None)

    async def start(self, dispatch) -> None:
        pass

    async def stop(self) -> None:
        pass

    def web_routes(self) -> list:
        return []

    async def send_card(self, to: Address, card: Card, card_id: str) -> Delivery:
        self._maybe_fail()
        if card_id in self.cards:
            return Delivery(self.cards[card_id][0])
        self.posts += 1
        mid = f"m{self.posts}"
        self.cards[card_id] = (mid, card)
        return Delivery(mid)

    async def update_card(self, to: Address, card: Card, card_id: str, delivery: Delivery) -> Delivery:
        self._maybe_fail()
        self.cards[card_id] = (delivery.message_id, card)
        self.updates.append(card_id)
        return delivery

    async def send_text(self, to: Address, text: str, key: str) -> Delivery:
        self._maybe_fail()
        return Delivery("t1")


class Crash(Exception):
    """Stands for the process dying: nothing after it runs."""


def _relay(chat, platform: FlakyPlatform, worker: str = "w1") -> Relay:
    return Relay({"emulator": platform}, chat.relay.render, worker=worker, retry=RetryPolicy(base=1.0, cap=8.0))


async def test_transient_failures_are_retried_with_backoff_then_delivered_once(chat) -> None:
    await chat.send("E001", START)
    platform = FlakyPlatform()
    relay = _relay(chat, platform)
    platform.fail_next = 10_000  # everything fails for now
    now = utcnow()
    assert await relay.run_once(now) == 0
    rows = await OutboxMessage.filter(kind="card").order_by("id")
    assert rows and all(r.status == "pending" and r.attempts == 1 and "503" in (r.last_error or "") for r in rows)
    delays = [(r.next_attempt_at - now).total_seconds() for r in rows]
    assert all(0.5 <= d <= 1.5 for d in delays), delays  # base 1 s × jitter [0.5, 1]
    assert await relay.run_once(now) == 0  # not due yet: nothing is claimed
    assert platform.calls == len(rows)
    later = now + timedelta(seconds=2)
    assert await relay.run_once(later) == 0
    rows = await OutboxMessage.filter(kind="card").order_by("id")
    delays = [(r.next_attempt_at - later).total_seconds() for r in rows]
    assert all(1.0 <= d <= 2.5 for d in delays), delays  # doubled
    platform.fail_next = 0
    delivered = await relay.run_once(later + timedelta(seconds=5))
    assert delivered == len(rows)
    rows = await OutboxMessage.filter(kind="card").order_by("id")
    assert all(r.status == "sent" and r.platform_message_id and r.attempts == 3 for r in rows)
    assert platform.posts == len(rows)


async def test_retry_after_from_the_platform_is_respected() -> None:
    import random

    policy = RetryPolicy(base=1.0, cap=600.0)
    assert policy.delay(1, random.Random(1), retry_after=30.0) == 30.0
    assert policy.delay(20, random.Random(1)) <= 600.0


async def test_crash_between_send_and_mark_never_duplicates(chat, monkeypatch: pytest.MonkeyPatch) -> None:
    await chat.send("E001", START)
    platform = FlakyPlatform()
    first = _relay(chat, platform, worker="replica-a")

    async def die(*args, **kwargs):
        raise Crash

    monkeypatch.setattr(first, "_mark", die)
    now = utcnow()
    with pytest.raises(Crash):
        await first.run_once(now)
    assert platform.posts >= 1  # the platform accepted a card...
    row = await OutboxMessage.filter(status="claimed").order_by("id").first()
    assert row is not None and row.claimed_by == "replica-a"  # ...but the row was never marked

    second = _relay(chat, platform, worker="replica-b")
    assert await second.run_once(now + timedelta(seconds=30)) >= 0
    assert (await OutboxMessage.get(id=row.id)).status == "claimed"  # lease still held: left alone
    await second.run_once(now + timedelta(seconds=61))
    await second.run_once(now + timedelta(seconds=62))
    rows = await OutboxMessage.filter(kind="card").order_by("id")
    assert all(r.status == "sent" for r in rows)
    redone = await OutboxMessage.get(id=row.id)
    assert redone.claimed_by == "replica-b"
    assert redone.platform_message_id == platform.cards[cardids.card_id_of(redone)][0]
    assert platform.posts == len(rows)  # one card per row, the crashed one included: no duplicate


async def test_permanent_failure_parks_the_row(chat) -> None:
    await chat.send("E001", START)
    platform = FlakyPlatform()
    platform.permanent, platform.fail_next = True, 1
    await _relay(chat, platform).run_once()
    failed = await OutboxMessage.filter(status="failed")
    assert len(failed) == 1 and "recipient unknown" in failed[0].last_error


async def test_two_replicas_claim_disjoint_rows(chat) -> None:
    await chat.send("E001", START)
    await chat.send("E001", "/离职 E007 辞职 2025-08-31")
    a = _relay(chat, FlakyPlatform(), worker="a")
    b = _relay(chat, FlakyPlatform(), worker="b")
    now = utcnow()
    got_a, got_b = await a.claim(now), await b.claim(now)
    ids_a, ids_b = {r.id for r in got_a}, {r.id for r in got_b}
    assert ids_a and not ids_a & ids_b
    assert {r.claimed_by for r in await OutboxMessage.filter(id__in=ids_a)} == {"a"}


async def test_update_waits_for_its_card_and_replaces_it_in_place(chat) -> None:
    reply = await chat.send("E001", START)
    await chat.deliver()
    card = await chat.card("E003", step="application")
    r = await chat.click("E003", card.card_id, "submit", {"last_working_day": "2025-07-31", "reason": "个人原因"})
    assert r.ok, r.text
    await chat.deliver()
    updated = await chat.card("E003", step="application")
    assert updated.id == card.id and updated.version == 2  # same message, new content
    assert updated.card.status.startswith("已由 张三 于")
    # The step's own buttons are gone; asking HR stays on every card of the employee's open case.
    assert [b.action for b in updated.card.buttons] == ["ask"]
    assert reply.data["case_id"] == updated.card.case_id


async def test_token_bucket_spaces_calls_at_the_rate() -> None:
    bucket = TokenBucket(rate=50, burst=1)
    start = time.monotonic()
    await asyncio.gather(*(bucket.take() for _ in range(6)))
    assert time.monotonic() - start >= 5 / 50 * 0.9


class SteppingClock:
    """Each reading is `step` seconds after the previous one: every delivery 'takes' one step."""

    def __init__(self, step: float) -> None:
        self.t, self.step = 0.0, step

    def __call__(self) -> float:
        self.t += self.step
        return self.t


async def test_relay_gives_way_to_inbound_events_and_runs_flat_out_when_quiet(chat) -> None:
    await chat.send("E001", START)
    pending = await OutboxMessage.filter(status="pending").count()
    assert pending >= 2
    rests: list[float] = []

    async def rest(seconds: float) -> None:
        rests.append(seconds)

    busy = True
    relay = Relay({"emulator": FlakyPlatform()}, chat.relay.render, worker="w1", busy=lambda: busy,
                  yield_factor=3.0, clock=SteppingClock(0.01), rest=rest)
    assert await relay.run_once() == pending
    # While inbound events arrive, each delivery is followed by a rest three times its length...
    assert rests == pytest.approx([0.03] * pending)
    await chat.send("E001", "/remind " + (await OutboxMessage.first()).case_id)  # type: ignore[union-attr]
    more = await OutboxMessage.filter(status="pending").count()
    assert more >= 1
    busy, rests[:] = False, []
    assert await relay.run_once() == more
    assert rests == []  # ...and none when it is quiet.


async def test_inbound_is_busy_while_events_arrive(chat) -> None:
    inbound = chat.inbound
    now = [1000.0]
    inbound.clock = lambda: now[0]  # stepped, not slept: the window must not depend on the machine's load
    assert not inbound.busy()
    await chat.send("E001", "/help")
    now[0] += 0.04
    assert inbound.busy()  # an event within the quiet window
    now[0] += 0.02
    assert not inbound.busy()


async def test_outcomes_are_written_per_batch_and_a_crash_mid_batch_duplicates_nothing(chat) -> None:
    await chat.send("E001", START)
    await chat.send("E001", "/offboard E007 resignation 2025-08-31")
    cards = await OutboxMessage.filter(kind="card").count()
    assert cards >= 3

    class Death(BaseException):
        """The process dying (a BaseException: the relay's own error handling does not see it)."""

    class DiesOnThird(FlakyPlatform):
        async def send_card(self, recipient: str, card: Card, card_id: str) -> str:
            if self.posts == 2 and card_id not in self.cards:
                raise Death  # after the platform accepted two cards
            return await super().send_card(recipient, card, card_id)

    platform = DiesOnThird()
    now = utcnow()
    with pytest.raises(Death):
        await _relay(chat, platform, worker="replica-a").run_once(now)
    assert platform.posts == 2
    # Their outcomes were still queued when it died: the rows are claimed, not marked sent.
    assert await OutboxMessage.filter(status="sent").count() == 0
    assert await OutboxMessage.filter(status="claimed", claimed_by="replica-a").count() == cards

    survivor = FlakyPlatform()
    survivor.cards, survivor.posts = platform.cards, platform.posts  # the same platform, seen again
    second = _relay(chat, survivor, worker="replica-b")
    delivered = await second.run_once(now + timedelta(seconds=61))  # leases ran out
    assert delivered == cards
    assert await OutboxMessage.filter(kind="card", status="sent").count() == cards
    assert survivor.posts == cards  # one card each: the two re-sent ones were answered, not re-posted
