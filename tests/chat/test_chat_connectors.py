"""The connector contract in the core: registry, deliveries kept and handed back, update tokens from
clicks, card ids in every platform's alphabet, addresses, and the relay's limits."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web

from bot.outbox import Relay, RetryPolicy
from bot.platforms import names, registry
from cards.model import Card
from cases.service import utcnow
from chat.connector import (
    CARD_ID,
    Address,
    Capabilities,
    CardAction,
    ConfigError,
    ConnectorEnv,
    Delivery,
    Dispatch,
    Limits,
    PermanentDeliveryError,
    TextMessage,
)
from storage import cardids, hotpath
from storage.addresses import AddressBook
from storage.models import Employee, OutboxMessage

START = "/离职 张三 试用期 2025-07-31 绩效未达标 交接人:周八"


class Recorder:
    """A platform written only against the contract: keeps cards by card id, hands out a delivery
    whose state counts the updates, and checks every update gets the delivery it handed out last."""

    name = "emulator"  # the demo organisation's rows are addressed to the first platform
    capabilities = Capabilities()
    identity = None
    directory = None

    def __init__(self, limits: Limits | None = None, latency: float = 0.0) -> None:
        self.limits = limits or Limits(rate_per_second=1000.0, burst=1000)
        self.latency = latency
        self.cards: dict[str, Delivery] = {}
        self.sent: list[tuple[Address, str]] = []
        self.updates: list[tuple[str, Delivery]] = []
        self.texts: list[tuple[Address, str]] = []
        self.in_flight = self.max_in_flight = 0
        self.refuse: str | None = None

    async def start(self, dispatch: Dispatch) -> None:
        pass

    async def stop(self) -> None:
        pass

    def web_routes(self) -> list[web.RouteDef]:
        return []

    async def _io(self) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.latency)
        finally:
            self.in_flight -= 1

    async def send_card(self, to: Address, card: Card, card_id: str) -> Delivery:
        await self._io()
        if self.refuse and to.employee_id == self.refuse:
            raise PermanentDeliveryError("user not in the app's visible range", hint="add them to the app's range")
        assert CARD_ID.fullmatch(card_id), card_id
        self.sent.append((to, card_id))
        return self.cards.setdefault(card_id, Delivery(message_id=f"m-{card_id}", state={"n": 0}))

    async def update_card(self, to: Address, card: Card, card_id: str, delivery: Delivery) -> Delivery:
        await self._io()
        assert delivery == self.cards[card_id], (delivery, self.cards[card_id])  # handed back as it was
        self.updates.append((card_id, delivery))
        fresh = Delivery(message_id=delivery.message_id, state={"n": int(delivery.state["n"]) + 1})
        self.cards[card_id] = fresh
        return fresh

    async def send_text(self, to: Address, text: str, key: str) -> Delivery:
        await self._io()
        self.texts.append((to, text))
        return Delivery(message_id=f"t-{key}"[:60])


def _relay(chat: Any, platform: Recorder, worker: str = "w1") -> Relay:
    return Relay({"emulator": platform}, chat.relay.render, addresses=chat.inbound.service.addresses,
                 worker=worker, retry=RetryPolicy(base=0.01, cap=0.05))


async def _drain(relay: Relay) -> None:
    while await relay.run_once():
        pass


# ---------------------------------------------------------------- registry

def test_platforms_are_the_packages_present() -> None:
    assert {"emulator", "dingtalk", "wecom"} <= set(names())


def test_registry_builds_the_emulator_and_refuses_what_it_cannot_serve(settings: Any) -> None:
    built = registry.build(settings)
    assert list(built) == ["emulator"] and built["emulator"].name == "emulator"
    with pytest.raises(registry.PlatformError, match="unknown platform 'nope'"):
        registry.build(settings, ["nope"])
    exposed = settings.model_copy(update={"http_host": "0.0.0.0"})
    with pytest.raises(registry.PlatformError, match=r"^refusing to serve the emulator: .*EMULATOR_ALLOW_EXPOSED"):
        registry.build(exposed)


def test_a_connector_that_lacks_settings_stops_start_up_with_one_line(settings: Any, monkeypatch) -> None:
    import bot.platforms.emulator as emulator

    def create(env: ConnectorEnv) -> Any:
        raise ConfigError("EMULATOR_TOKEN is required")

    monkeypatch.setattr(emulator, "create", create)
    with pytest.raises(registry.PlatformError) as err:
        registry.build(settings)
    assert str(err.value) == "EMULATOR_TOKEN is required"


def test_address_book_maps_people_to_platform_user_ids() -> None:
    book = registry.address_book(["dingtalk", "emulator"])
    assert book.column("dingtalk") == "dingtalk_userid" and book.column("emulator") == "employee_id"
    on_dingtalk = Employee(employee_id="E1", dingtalk_userid="ding-1")
    elsewhere = Employee(employee_id="E2")
    assert book.platform_for(on_dingtalk) == "dingtalk" and book.user_id(on_dingtalk, "dingtalk") == "ding-1"
    assert book.platform_for(elsewhere) == "emulator" and book.user_id(elsewhere, "dingtalk") is None
    assert AddressBook.of(["wecom"]).platform_for(elsewhere) == "wecom"  # nobody reachable: the first one


async def test_hot_path_recipients_carry_the_columns_the_address_book_reads(demo_org: Any) -> None:
    """A notification's recipients are read with the user-id columns of the platforms configured (the
    address book names them; the read names no platform) and are addressed like the Employee rows."""
    from storage.people_sync import sync_people

    await Employee.filter(employee_id="E003").update(dingtalk_userid="ding-3", wecom_userid="wx-3")
    book = registry.address_book(["wecom", "dingtalk", "emulator"])
    assert book.user_id_columns == ("wecom_userid", "dingtalk_userid", "employee_id")
    emp = await Employee.get(employee_id="E003")
    [got] = await hotpath.people(hotpath.default_conn(), pk=emp.id, employee_ids=[], role_words=[],
                                 user_id_columns=book.user_id_columns)
    assert got.user_ids == {"wecom_userid": "wx-3", "dingtalk_userid": "ding-3"}
    for platform in book.platforms:
        assert book.user_id(got, platform) == book.user_id(emp, platform)
    assert book.platform_for(got) == "wecom"
    # Column names go into SQL as identifiers: only the model's own are let through.
    for bad in ('name" FROM employee --', "nope"):
        with pytest.raises(ValueError):
            await hotpath.people(hotpath.default_conn(), pk=emp.id, employee_ids=[], role_words=[],
                                 user_id_columns=[bad])
    with pytest.raises(ValueError):
        await hotpath.active_employee(hotpath.default_conn(), "name", "张三")  # not a unique key
    assert (await hotpath.active_employee(hotpath.default_conn(), "wecom_userid", "wx-3")).id == emp.id  # type: ignore[union-attr]
    with pytest.raises(ValueError):  # a sync matches only on a platform's user-id column
        await sync_people("employee_id", [])


# ---------------------------------------------------------------- card ids

async def test_card_ids_fit_every_platform_and_find_their_row(chat) -> None:
    await chat.send("E001", START)
    platform = Recorder()
    await _drain(_relay(chat, platform))
    rows = await OutboxMessage.filter(kind="card").order_by("id")
    assert rows and len(platform.sent) == len(rows)
    for row in rows:
        card_id = cardids.card_id_of(row)
        assert CARD_ID.fullmatch(card_id) and ":" in row.key  # the key stays readable, the id fits
        assert card_id == cardids.encode(row.id, row.key)  # the same row always gets the same id
        # The scheme as stated (16 base32 characters of the key's SHA-256): ids already on the
        # platforms keep naming their rows, however the digest is computed.
        stated = base64.b32encode(hashlib.sha256(row.key.encode()).digest()).decode().lower()[:16]
        assert card_id == f"o{row.id}-{stated}"
        assert (await cardids.find(hotpath.default_conn(), card_id)).id == row.id  # type: ignore[union-attr]
    other = rows[1]
    forged = f"o{rows[0].id}-{cardids.encode(other.id, other.key).split('-')[1]}"
    assert await cardids.find(hotpath.default_conn(), forged) is None  # a number with another row's hash finds nothing
    assert await cardids.find(hotpath.default_conn(), rows[0].key) is None  # a raw key only for rows delivered under it


async def test_a_card_delivered_under_its_raw_key_keeps_working(chat) -> None:
    """Rows sent before card ids were encoded (no delivery kept) are still clicked and updated
    under their old key."""
    await chat.send("E001", START)
    await chat.deliver()
    row = await OutboxMessage.get(recipient="E003", kind="card", step_id="application")
    msg = await chat.card("E003", step="application")
    # Make it look old: the platform holds it under the raw key, and the row keeps no delivery.
    from storage.models import EmulatorMessage

    await EmulatorMessage.filter(card_id=msg.card_id).update(card_id=row.key)
    await OutboxMessage.filter(id=row.id).update(delivery=None)
    row = await OutboxMessage.get(id=row.id)
    assert cardids.card_id_of(row) == row.key
    r = await chat.click("E003", row.key, "submit", {"last_working_day": "2025-07-31", "reason": "个人原因"})
    assert r.ok, r.text
    await chat.deliver()
    updated = await chat.card("E003", step="application")
    assert updated.card_id == row.key and updated.version == 2


# ---------------------------------------------------------------- deliveries and update tokens

async def test_the_delivery_is_kept_and_handed_back_on_every_update(chat) -> None:
    await chat.send("E001", START)
    platform = Recorder()
    relay = _relay(chat, platform)
    await _drain(relay)
    row = await OutboxMessage.get(recipient="E003", kind="card", step_id="application")
    card_id = cardids.card_id_of(row)
    assert row.delivery == platform.cards[card_id].to_json() and row.platform_message_id == f"m-{card_id}"
    inbound = chat.inbound
    form = {"last_working_day": "2025-07-31", "reason": "个人原因"}
    answer = await inbound.dispatch(CardAction(platform="emulator", sender="E003", card_id=card_id, action="submit",
                                               event_id="click-1", form=form))
    assert answer.ok, answer.text
    await _drain(relay)
    assert [c for c, _ in platform.updates].count(card_id) == 1  # (HR's summary card is updated too)
    row = await OutboxMessage.get(id=row.id)
    assert Delivery.from_json(row.delivery).state == {"n": 1}  # the update's delivery replaced the first


async def test_a_clicks_update_token_reaches_the_next_update_of_that_card(chat) -> None:
    await chat.send("E001", START)
    platform = Recorder()
    relay = _relay(chat, platform)
    await _drain(relay)
    row = await OutboxMessage.get(recipient="E003", kind="card", step_id="application")
    card_id = cardids.card_id_of(row)
    # Somebody else clicking the card (refused) brings no token for the holder's card.
    stranger = await chat.inbound.dispatch(CardAction(platform="emulator", sender="E006", card_id=card_id,
                                                      action="submit", event_id="c0", update_token="theirs"))
    assert not stranger.ok and stranger.code == "not_your_card"
    assert (await OutboxMessage.get(id=row.id)).delivery.get("update_token") is None
    answer = await chat.inbound.dispatch(CardAction(
        platform="emulator", sender="E003", card_id=card_id, action="submit", event_id="c1",
        form={"last_working_day": "2025-07-31", "reason": "个人原因"}, update_token="RC-1"))
    assert answer.ok, answer.text
    stored = Delivery.from_json((await OutboxMessage.get(id=row.id)).delivery)
    assert stored.update_token == "RC-1"
    platform.cards[card_id] = stored  # the platform issued that token with the click
    await _drain(relay)
    assert (card_id, stored) in platform.updates  # handed to the update as stored


async def test_text_messages_and_dispatch_answer_after_commit(chat) -> None:
    answer = await chat.inbound.dispatch(TextMessage(platform="emulator", sender="E001", text=START, event_id="t1"))
    assert answer.ok and answer.data["case_id"]
    again = await chat.inbound.dispatch(TextMessage(platform="emulator", sender="E001", text=START, event_id="t1"))
    assert again.duplicate and again.text == answer.text  # the router's dedup kept


# ---------------------------------------------------------------- limits and failures

async def test_concurrency_is_bounded_per_connector(chat) -> None:
    await chat.send("E001", START)
    await chat.send("E001", "/离职 E007 辞职 2025-08-31")
    recipients = {r.recipient for r in await OutboxMessage.filter(status="pending")}
    assert len(recipients) >= 3
    platform = Recorder(Limits(rate_per_second=1000.0, burst=1000, concurrency=2), latency=0.02)
    await _drain(_relay(chat, platform))
    assert platform.max_in_flight == 2  # side by side, never more than the connector allows
    assert await OutboxMessage.filter(status="sent").count() == len(platform.sent)


async def test_a_recipient_over_quota_waits_pending(chat) -> None:
    await chat.send("E001", START)
    await chat.send("E001", "/离职 E007 辞职 2025-08-31")
    hr_rows = await OutboxMessage.filter(recipient="E001", status="pending").count()
    assert hr_rows >= 2
    platform = Recorder(Limits(rate_per_second=1000.0, burst=1000, per_recipient_per_minute=1))
    relay = _relay(chat, platform)
    now = utcnow()
    await relay.run_once(now)
    assert sum(1 for to, _ in platform.sent if to.employee_id == "E001") == 1
    waiting = await OutboxMessage.filter(recipient="E001", status="pending")
    assert len(waiting) == hr_rows - 1
    assert all(w.next_attempt_at > now + timedelta(seconds=30) and w.attempts == 0 for w in waiting)
    assert all(w.last_error is None for w in waiting)  # waiting is not failing


async def test_a_permanent_failure_parks_the_row_and_tells_hr_once(chat) -> None:
    await chat.send("E001", START)
    platform = Recorder()
    platform.refuse = "E003"
    relay = _relay(chat, platform)
    await _drain(relay)
    failed = await OutboxMessage.filter(status="failed")
    assert len(failed) == 1 and failed[0].recipient == "E003"
    assert "add them to the app's range" in failed[0].last_error
    notices = [t for to, t in platform.texts if to.employee_id == "E001"]
    assert len(notices) == 1 and "E003" in notices[0] and "add them to the app's range" in notices[0]
    await OutboxMessage.filter(id=failed[0].id).update(status="pending", attempts=0)  # tried again: fails again
    await _drain(relay)
    assert len([t for to, t in platform.texts if to.employee_id == "E001"]) == 1  # HR is told once


async def test_a_recipient_without_a_user_id_on_the_platform_is_a_clear_permanent_failure(chat) -> None:
    await chat.send("E001", START)
    platform = Recorder()
    platform.name = "dingtalk"
    await OutboxMessage.all().update(platform="dingtalk")
    relay = Relay({"dingtalk": platform}, chat.relay.render, addresses=registry.address_book(["dingtalk"]),
                  retry=RetryPolicy(base=0.01, cap=0.05))
    await relay.run_once()
    failed = await OutboxMessage.filter(status="failed").order_by("id")
    assert failed and all("dingtalk_userid" in (f.last_error or "") for f in failed)
    assert platform.sent == []


# ---------------------------------------------------------------- lifecycle

async def test_the_app_starts_and_stops_its_connectors(demo_org: Any) -> None:
    from bot.app import create_app
    from bot.connectors import CONNECTORS

    app = create_app(demo_org, with_db=False)
    emulator = app[CONNECTORS]["emulator"]
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        assert emulator._dispatch is not None  # started, given the app's dispatch
        answer = await emulator.dispatch(TextMessage(platform="emulator", sender="E001", text="/help",
                                                     event_id="life-1"))
        assert answer.ok
    finally:
        await runner.cleanup()
    assert emulator._dispatch is None  # stopped



def test_connectors_are_built_once_and_warn_once(settings: Any, monkeypatch, caplog) -> None:
    """The CLI builds the connectors (checking every platform's settings before migrating) and hands
    them to the app: the emulator's exposure warning is logged once, not again by create_app."""
    from bot.app import create_app
    from chat.appkeys import CONNECTORS

    monkeypatch.setenv("EMULATOR_ALLOW_EXPOSED", "true")
    exposed = settings.model_copy(update={"http_host": "0.0.0.0"})
    with caplog.at_level("WARNING", logger="bot.emulator"):
        built = registry.build(exposed)

        def refuse(*a: Any, **k: Any) -> Any:
            raise AssertionError("built a second time")

        monkeypatch.setattr(registry, "build", refuse)
        app = create_app(exposed, with_db=False, connectors=built)
    assert app[CONNECTORS] is built
    warnings = [r for r in caplog.records if "serving the emulator although" in r.getMessage()]
    assert len(warnings) == 1


async def test_a_clicks_token_is_kept_before_its_event_runs_and_not_by_a_redelivery(chat, monkeypatch) -> None:
    """The click's commit queues the update of the clicked card and wakes the relay; the token must
    already be stored by then. A redelivered callback's token (possibly used since) is not kept again."""
    await chat.send("E001", START)
    platform = Recorder()
    await _drain(_relay(chat, platform))
    row = await OutboxMessage.get(recipient="E003", kind="card", step_id="application")
    card_id = cardids.card_id_of(row)
    seen: list[str | None] = []
    handle = chat.inbound.handle

    async def watching(incoming: Any) -> Any:
        seen.append((await OutboxMessage.get(id=row.id)).delivery.get("update_token"))
        return await handle(incoming)

    monkeypatch.setattr(chat.inbound, "handle", watching)
    click = CardAction(platform="emulator", sender="E003", card_id=card_id, action="submit", event_id="cb-1",
                       form={"last_working_day": "2025-07-31", "reason": "个人原因"}, update_token="RC-1")
    assert (await chat.inbound.dispatch(click)).ok
    assert seen == ["RC-1"]  # stored before the handler ran
    again = await chat.inbound.dispatch(CardAction(**{**click.__dict__, "update_token": "RC-old"}))
    assert again.duplicate
    assert (await OutboxMessage.get(id=row.id)).delivery["update_token"] == "RC-1"


def test_a_connector_gets_its_own_settings_not_every_core_one(settings: Any, monkeypatch, tmp_path) -> None:
    env = registry.env_for(settings)
    # The few core values a platform needs; not the database URL, the secret key, nor any platform's own.
    assert {f.name for f in dataclasses.fields(env)} == {"public_base_url", "language", "env_file", "http_host",
                                                        "http_port", "trusted_proxies", "platforms"}
    assert env.http_host == settings.http_host and env.platforms == settings.platforms
    # The emulator reads EMULATOR_* itself (environment, then its env file)...
    from bot.platforms.emulator import create

    monkeypatch.setenv("EMULATOR_TOKEN", "from-the-environment-0123")
    assert create(env).token == "from-the-environment-0123"
    monkeypatch.delenv("EMULATOR_TOKEN")
    dotenv = tmp_path / ".env"
    dotenv.write_text("EMULATOR_TOKEN=from-the-env-file-0123456\n", encoding="utf-8")
    assert create(ConnectorEnv(**{**env.__dict__, "env_file": str(dotenv)})).token == "from-the-env-file-0123456"
    # ...and refuses a bad one with one line naming it.
    monkeypatch.setenv("EMULATOR_TOKEN", "short")
    with pytest.raises(ConfigError, match=r"^bad setting EMULATOR_TOKEN: "):
        create(env)
