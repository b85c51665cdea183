"""The WeCom connector: the contract of `chat.connector` over a self-built WeCom app.

Inbound: one aiohttp route (GET: URL verification, POST: messages and events) verifies, refuses
replays, decrypts and parses (`callback`), turns a text into a `TextMessage` and a template-card
click into a `CardAction` (the click's `ResponseCode` rides along as `update_token`), awaits the
bot's `dispatch` (which returns after the event's transaction committed, its inbox row included:
that row is the durable de-duplication of WeCom's retries) and only then answers an empty 200.
A dispatch that failed is answered 500, so WeCom retries it.

The sender is told the bot's answer by a text message (a typed command always; a click only when
it was refused, because the card itself changes in place when it worked). Those replies run as
tasks of this connector, under the same per-member quota as everything else, and `stop()`
ends them. A member the bot does not know is looked up in WeCom's address book and added to ours
(platform fields only, as `directory sync` does), then asked to send again.

Outbound: `message/send` with a `template_card` whose `task_id` is the card id (so a resend after
a crash meets WeCom's "task id already used" and is answered with the card already delivered),
`message/update_template_card` with the delivery's single-use `response_code`. Without a usable
code (a notice card, or a card updated since its last click) the card cannot change in place: a
fresh card goes out under `<card id>@@<n>` and the old one is recalled (best effort, WeCom allows
recalls for 24 hours). See the README, "Connecting a real WeCom app".

Nothing above 30 messages a minute / 1,000 an hour reaches one member: WeCom would drop the
excess silently. The relay paces by `limits`; `MemberQuota` here is the last guard (a send that
would go over raises `DeliveryError(retry_after=…)` instead of vanishing).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

import aiohttp
from aiohttp import web

from bot.platforms.wecom import callback, cardjson
from bot.platforms.wecom.api import PERMANENT, Permanent, SendResult, Throttled, WeComAPI, WeComError
from bot.platforms.wecom.directory import WeComDirectory, person
from bot.platforms.wecom.identity import WeComIdentity
from bot.platforms.wecom.quota import MemberQuota
from bot.platforms.wecom.settings import WeComSettings
from cards.model import Button, Card
from chat.connector import (
    Address,
    Capabilities,
    CardAction,
    ConnectorEnv,
    Delivery,
    DeliveryError,
    Dispatch,
    InboundEvent,
    Limits,
    PermanentDeliveryError,
    Presentation,
    Text,
    TextMessage,
    check_card_id,
)
from storage.people_sync import sync_people

log = logging.getLogger(__name__)

NAME = "wecom"
TASK_USED = 42018  # "task_id already used": this card went out before
FRESH = "@@"  # task id of a replacement card: <card id>@@<n>
UNKNOWN_SENDER = "unknown_sender"  # the bot's refusal for a sender not in its directory
USER_ID_COLUMN = "wecom_userid"
LEARN_AGAIN_SECONDS = 600.0
REPLY_TRIES = 3
MAX_TEXT_BYTES = 2048  # WeCom's limit for a text message, in UTF-8 bytes


def card_id_of(task_id: str) -> str:
    """The bot's card id behind a click's TaskId (a replacement card's task id carries a suffix)."""
    base, sep, n = task_id.rpartition(FRESH)
    return base if sep and n.isdigit() and base else task_id


def clip_text(text: str, limit: int = MAX_TEXT_BYTES) -> str:
    """`text` cut to WeCom's byte limit on a character boundary (a CJK character is 3 bytes)."""
    raw = text.encode()
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode(errors="ignore") + "…"


def _event_id(event: callback.WeComText | callback.WeComCardClick) -> str:
    # The bot prefixes the platform's name itself ("wecom:msg:<MsgId>" in the inbox).
    return event.dedup_key.removeprefix(f"{NAME}:")


def _t(language: str, zh: str, en: str) -> str:
    return en if language == "en" else zh



def _shown(body: dict[str, Any]) -> str:
    """A hash of what a card body shows its holder (its task id left out: a fresh card has a new one)."""
    seen = {k: v for k, v in body.items() if k != "task_id"}
    return hashlib.sha256(json.dumps(seen, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]

class WeComConnector:
    name = NAME
    presentation = Presentation(name=Text("企业微信", "WeCom"), notice=Text("企业微信应用消息", "WeCom app message"),
                                sign_in=Text("企业微信登录", "Sign in with WeCom"),
                                client="wxwork", client_name="企业微信 WeCom")  # "wxwork/4.1.22" in its browser

    def __init__(self, settings: WeComSettings, env: ConnectorEnv, *, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.settings = settings
        self.language = env.language
        self.public_base_url = env.public_base_url.rstrip("/")
        self.limits = Limits(rate_per_second=settings.rate_per_second, burst=max(1, int(settings.rate_per_second)),
                             concurrency=settings.concurrency, per_recipient_per_minute=30,
                             per_recipient_per_hour=1000)
        self.capabilities = Capabilities(card_inputs=False, update_in_place=True, metered_updates=True)
        self.identity = WeComIdentity(self.api, corp_id=settings.corp_id, agent_id=settings.agent_id,
                                      oauth_url=settings.oauth_url)
        self.directory = WeComDirectory(self.api)
        self.quota = MemberQuota()
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._dispatch: Dispatch | None = None
        self._session: aiohttp.ClientSession | None = None
        self._api: WeComAPI | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._learned: dict[str, float] = {}  # unknown sender -> when WeCom was last asked about them
        self.calls: dict[str, int] = {}  # WeCom API path -> calls made (benches, tests)
        self._callback = callback.CallbackConfig(
            token=settings.secret_value("token"), aes_key=settings.secret_value("aes_key"),
            corp_id=settings.corp_id, max_clock_skew=settings.max_clock_skew_seconds)
        self._handler = callback.make_handler(self._callback, self._on_event, clock=clock)

    # ------------------------------------------------------------------ lifecycle

    async def api(self) -> WeComAPI:
        """The REST client, its HTTP session opened on first use (a directory sync needs no start)."""
        if self._api is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.settings.concurrency * 2))
            self._api = WeComAPI(self._session, base_url=self.settings.api_base, corp_id=self.settings.corp_id,
                                 secret=self.settings.secret_value("secret"), agent_id=int(self.settings.agent_id),
                                 timeout=self.settings.timeout_seconds, clock=self._monotonic, sleep=self._sleep,
                                 on_call=self._count)
        return self._api

    def _count(self, path: str) -> None:
        self.calls[path] = self.calls.get(path, 0) + 1

    async def start(self, dispatch: Dispatch) -> None:
        self._dispatch = dispatch
        await self.api()

    async def stop(self) -> None:
        self._dispatch = None  # callbacks from now on are answered 503 (WeCom retries them later)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        self._session, self._api = None, None

    def web_routes(self) -> Sequence[web.RouteDef]:
        path = self.settings.callback_path
        return [web.get(path, self._handler, allow_head=False), web.post(path, self._handler)]

    def startup_lines(self) -> list[str]:
        return [f"wecom: callback URL {self.public_base_url}{self.settings.callback_path} "
                f"(app {self.settings.agent_id}, corp {self.settings.corp_id})"]

    # ------------------------------------------------------------------ inbound

    @staticmethod
    def inbound(event: callback.WeComEvent) -> InboundEvent | None:
        """The contract's event for a WeCom message; None for what the bot does not act on."""
        if isinstance(event, callback.WeComText):
            return TextMessage(platform=NAME, sender=event.sender, text=event.text, event_id=_event_id(event))
        if isinstance(event, callback.WeComCardClick):
            form = {q: ",".join(ids) for q, ids in event.selected.items()}
            return CardAction(platform=NAME, sender=event.sender, card_id=card_id_of(event.task_id),
                              action=event.event_key, event_id=_event_id(event), form=form,
                              update_token=event.response_code or None)
        return None

    async def _on_event(self, event: callback.WeComEvent) -> None:
        dispatch = self._dispatch
        if dispatch is None:
            raise callback.CallbackRefused(503, "not started")
        inbound = self.inbound(event)
        if inbound is None:
            return
        answer = await dispatch(inbound)
        if answer.code == "error":
            # The event's transaction rolled back: not acknowledged, so WeCom delivers it again.
            raise callback.CallbackRefused(500, "event failed; WeCom will retry")
        if answer.duplicate or not answer.text.strip():
            return
        if isinstance(inbound, TextMessage) and answer.code == UNKNOWN_SENDER:
            self._spawn(self._learn(inbound.sender, answer.text))
        elif isinstance(inbound, TextMessage) or not answer.ok:
            self._spawn(self._reply(inbound.sender, answer.text))

    async def _learn(self, user_id: str, refusal: str) -> None:
        """A member the bot does not know wrote to the app: fetch them from WeCom's address book and
        add them to ours (as `directory sync` would: platform fields only, no roles), at most once per
        LEARN_AGAIN_SECONDS each, then ask them to send again; the refusal stands if WeCom does not
        know them either (or they are outside the app's visibility)."""
        last = self._learned.get(user_id)
        now = self._monotonic()
        learned = False
        if last is None or now - last > LEARN_AGAIN_SECONDS:
            self._learned[user_id] = now
            try:
                user = await self.directory.user(user_id)
                if user is not None:
                    report = await sync_people(USER_ID_COLUMN, [person(user)])
                    learned = report.created > 0
            except WeComError as exc:
                log.warning("wecom: unknown sender %s not looked up: %s", user_id, exc.message_en)
        text = _t(self.language, "已从企业微信通讯录登记你的信息，请再发送一次。",
                  "You have been added from the WeCom address book; please send that again.") if learned else refusal
        await self._reply(user_id, text)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reply(self, user_id: str, text: str) -> None:
        """The answer to what `user_id` just did; waits for their quota, tries a failed send
        (busy, limit, network) REPLY_TRIES times. The effect is committed either way."""
        for attempt in range(1, REPLY_TRIES + 1):
            try:
                wait = self.quota.wait(user_id, self._clock())
                if wait > 0:
                    await self._sleep(wait)
                self.quota.record(user_id, self._clock())
                await (await self.api()).send_text([user_id], clip_text(text))
                return
            except Throttled as exc:
                retry = exc.retry_after
            except Permanent as exc:
                log.warning("wecom: answer to %s not delivered: %s", user_id, exc.message_en)
                return
            except WeComError:
                retry = 2.0 * attempt
            if attempt < REPLY_TRIES:
                await self._sleep(retry)
        log.warning("wecom: answer to %s not delivered after %d tries", user_id, REPLY_TRIES)

    async def drain(self) -> None:
        """Wait for the answers still being sent (tests, benches)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # ------------------------------------------------------------------ outbound

    def _error(self, exc: WeComError) -> DeliveryError:
        if isinstance(exc, Throttled):
            return DeliveryError(f"wecom {exc.code}: limit reached, backing off", retry_after=exc.retry_after)
        if isinstance(exc, Permanent):
            return PermanentDeliveryError(f"wecom {exc.code}: {exc.message_en}",
                                          hint=_t(self.language, exc.message, exc.message_en))
        return DeliveryError(f"wecom: {exc.message_en}")

    def _gate(self, user_id: str) -> None:
        """The per-member quota's last guard; reserving before the call keeps concurrent sends honest."""
        now = self._clock()
        wait = self.quota.wait(user_id, now)
        if wait > 0:
            raise DeliveryError(f"wecom: per-member quota for {user_id} reached", retry_after=wait)
        self.quota.record(user_id, now)

    def _no_form(self, b: Button) -> str:  # pragma: no cover - _prepare leaves no such button
        raise ValueError(f"button {b.label!r} asks for a form but carries no link")

    def _prepare(self, card: Card) -> Card:
        """A button that asks for text but got no form link from the bot cannot work on WeCom:
        it is shown locked, with why, instead of as a button whose press would be refused."""
        if not any(b.form and not b.url and b.enabled for b in card.buttons):
            return card
        why = _t(card.language, "需填写表单，请在网页端办理", "needs a form: use the web page")
        buttons = tuple(replace(b, enabled=False, reason=why) if b.form and not b.url and b.enabled else b
                        for b in card.buttons)
        return replace(card, buttons=buttons)

    def render(self, card: Card, task: str) -> dict[str, Any]:
        card = self._prepare(card)
        # A tap on the card opens the holder's details page when the bot gives one, else its first link.
        link = getattr(card, "details_url", "") or next((b.url for b in card.buttons if b.url and b.enabled), None)
        body = cardjson.render(card, task=task, link=link, form_url=self._no_form)
        if body["card_type"] == "text_notice" and "card_action" not in body:
            body["card_action"] = {"type": 1, "url": self.public_base_url}
        return body

    async def _send(self, to: Address, body: dict[str, Any]) -> SendResult | None:
        """One card out; None when WeCom already has a card with this task id (a resend)."""
        api = await self.api()
        self._gate(to.user_id)
        try:
            result = await api.send_template_card([to.user_id], body)
        except Permanent as exc:
            if exc.code == TASK_USED:
                return None
            raise self._error(exc) from None
        except WeComError as exc:
            raise self._error(exc) from None
        if to.user_id in result.invalid_users:
            zh, en = PERMANENT[81013]
            raise PermanentDeliveryError(f"wecom 81013: {en}", hint=_t(self.language, zh, en))
        return result

    async def send_card(self, to: Address, card: Card, card_id: str) -> Delivery:
        check_card_id(card_id)
        body = self.render(card, card_id)
        state = {"task_id": card_id, "card_type": body["card_type"], "h": _shown(body)}
        result = await self._send(to, body)
        if result is None:
            log.info("wecom: card %s was delivered before; not sent again", card_id)
            return Delivery(message_id=f"task:{card_id}", state={**state, "resent": True})
        return Delivery(message_id=result.msgid, update_token=result.response_code, state=state)

    async def update_card(self, to: Address, card: Card, card_id: str, delivery: Delivery) -> Delivery:
        task = str(delivery.state.get("task_id") or card_id)
        body = self.render(card, task)
        if delivery.state.get("h") == _shown(body):
            # Nothing the holder sees changed: no update (without a click's code it would be a fresh
            # card and a recall), and the code, if any, is kept for a change.
            return Delivery(message_id=delivery.message_id, update_token=delivery.update_token,
                            state=delivery.state, calls=0)
        token = delivery.update_token
        if token:
            api = await self.api()
            try:
                await api.update_template_card([to.user_id], token, card=body)
                # The code is spent: the next update needs the holder's next click (or a fresh card).
                return Delivery(message_id=delivery.message_id, update_token=None,
                                state={**delivery.state, "card_type": body["card_type"], "h": _shown(body)})
            except Permanent as exc:
                if exc.code in PERMANENT and exc.code not in range(42014, 42019):
                    raise self._error(exc) from None  # configuration: a fresh card would fail the same way
                log.info("wecom: update code for %s refused (%s); sending a fresh card", card_id, exc.code)
            except WeComError as exc:
                raise self._error(exc) from None
        return await self._replace(to, card, card_id, delivery)

    async def _replace(self, to: Address, card: Card, card_id: str, delivery: Delivery) -> Delivery:
        n = int(delivery.state.get("replaced", 0)) + 1
        task = f"{card_id}{FRESH}{n}"
        body = self.render(card, task)
        state = {"task_id": task, "card_type": body["card_type"], "replaced": n, "h": _shown(body)}
        result = await self._send(to, body)
        if result is None:
            return Delivery(message_id=f"task:{task}", state={**state, "resent": True})
        old = delivery.message_id
        if old and not old.startswith("task:"):
            try:
                await (await self.api()).recall(old)
            except WeComError as exc:  # older than 24 h, or already gone: two cards, the newer one current
                log.info("wecom: card %s replaced, old message not recalled (%s)", card_id, exc.code)
        return Delivery(message_id=result.msgid, update_token=result.response_code, state=state, calls=2)

    async def send_text(self, to: Address, text: str, key: str) -> Delivery:
        api = await self.api()
        self._gate(to.user_id)
        try:
            result = await api.send_text([to.user_id], clip_text(text))
        except WeComError as exc:
            raise self._error(exc) from None
        if to.user_id in result.invalid_users:
            zh, en = PERMANENT[81013]
            raise PermanentDeliveryError(f"wecom 81013: {en}", hint=_t(self.language, zh, en))
        return Delivery(message_id=result.msgid, state={"key": key})
