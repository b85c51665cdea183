"""The DingTalk connector (`chat.connector.Connector`): Stream in, our own OpenAPI client out.

Inbound: the real `dingtalk-stream` client (`stream.StreamClient`, unsafe parts replaced) runs as a
task; a robot message becomes a `TextMessage`, a card click a `CardAction` (form values included).
The frame is ACKed only after `dispatch` returned (= after the commit); nothing slow runs before
the ACK: the answer to the sender goes out afterwards, from a task of ours, through the message's
`sessionWebhook` (no token, no budget) or, failing that, the robot's 1:1 message.

Dedup keys (the core prefixes them with `dingtalk:`): a robot message is `msg:<msgId>` (the same
on a redelivery under a new messageId); a click is `card:<outTrackId>:<userId>:<action>:<v>[:<form hash>]`, where `v`
is the rendered card's hash that every button carries in its params. A repeated tap on the same
card version is one event; once the card changed (say the guarantee-letter lock was released and
the card updated) the same button is a new event, so an earlier refusal is not replayed.

Outbound: `send_card` = `createAndDeliver` (callbackType STREAM, outTrackId = the outbox card id, so
a resend answers with the existing card); `update_card` = `PUT /v1.0/card/instances` with only the
variables whose hash changed, and no call at all when nothing changed (it costs budget).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import aiohttp
from aiohttp import web

from bot.platforms.dingtalk.api import AppCredentials, DingTalkApi
from bot.platforms.dingtalk.budget import BudgetCounter
from bot.platforms.dingtalk.cardvars import to_vars
from bot.platforms.dingtalk.config import DingTalkSettings, load
from bot.platforms.dingtalk.directory import DingTalkDirectory
from bot.platforms.dingtalk.errors import DingTalkError, PermanentError, RetryableError
from bot.platforms.dingtalk.identity import DingTalkIdentity
from bot.platforms.dingtalk.inbound import CardCallback, Inbound
from bot.platforms.dingtalk.inbound import TextMessage as DingText
from bot.platforms.dingtalk.ratelimit import RateLimits
from bot.platforms.dingtalk.stream import Backoff, StreamClient
from cards.model import Card
from chat.connector import (
    Address,
    Answer,
    Capabilities,
    CardAction,
    ConnectorEnv,
    Delivery,
    DeliveryError,
    Dispatch,
    Limits,
    PermanentDeliveryError,
    Presentation,
    Text,
    TextMessage,
)
from storage import usage
from storage.models import Employee
from storage.people_sync import PlatformPerson, sync_people

log = logging.getLogger(__name__)
NAME = "dingtalk"
USER_ID_COLUMN = "dingtalk_userid"  # the directory column holding DingTalk user ids
UNKNOWN_SENDER = "unknown_sender"  # the router's refusal code for a sender not in our directory
PARAM_VERSION = "v"  # the card-version hash every button's callback params carry
_SENT_TEXTS = 1024  # text keys remembered per process, so a resend in the same process is not doubled


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:12]


def render(card: Card) -> dict[str, str]:
    """The template variables for `card`, each button's params stamped with the card's hash."""
    variables = to_vars(card)
    version = _digest(json.dumps(variables, sort_keys=True, ensure_ascii=False))
    buttons = json.loads(variables["buttons"])
    for b in buttons:
        if b.get("params"):
            b["params"][PARAM_VERSION] = version
    variables["buttons"] = json.dumps(buttons, ensure_ascii=False, separators=(",", ":"))
    return variables


# A personal link (signing page, document download): `<base64url JSON claims>.<mac>` as the last
# path segment. Every render mints it afresh (new nonce and expiry) for the same target.
_LINK = re.compile(r"^(?P<head>https?://[^?#]+/)(?P<claims>[A-Za-z0-9_-]+)\.(?P<mac>[A-Za-z0-9_-]+)$")
RELINK_MARGIN = 24 * 3600  # a card's links are re-sent when the ones it holds expire within a day


def _link_target(url: str) -> tuple[str, float | None]:
    """(what the link opens, when it expires): the same target for a link minted again."""
    m = _LINK.match(url)
    if m is None:
        return url, None
    try:
        claims = json.loads(base64.urlsafe_b64decode(m["claims"] + "=" * (-len(m["claims"]) % 4)))
    except ValueError:
        return url, None
    if not isinstance(claims, dict):
        return url, None
    expires = claims.pop("e", None)
    claims.pop("n", None)
    return m["head"] + json.dumps(claims, sort_keys=True), float(expires) if isinstance(expires, int) else None


def _comparable(variables: Mapping[str, str]) -> tuple[dict[str, str], float | None]:
    """The variables with every re-minted link reduced to its target (and the card version `v`
    left out of button params: it follows the rest), plus the earliest link expiry."""
    out = dict(variables)
    soonest: float | None = None
    buttons = json.loads(variables.get("buttons") or "[]")
    for b in buttons:
        if b.get("url"):
            b["url"], expires = _link_target(b["url"])
            b["open_url"] = ""
            if expires is not None:
                soonest = expires if soonest is None else min(soonest, expires)
        if isinstance(b.get("params"), dict):
            b["params"].pop(PARAM_VERSION, None)
    out["buttons"] = json.dumps(buttons, sort_keys=True, ensure_ascii=False)
    return out, soonest


def state_of(variables: Mapping[str, str], *, exact: bool = False) -> dict[str, Any]:
    """What a Delivery keeps: a hash of the whole card and a short hash per variable, taken over
    what the holder sees (a link minted again for the same page is the same link), and when the
    card's links expire. `exact`: hash the variables as they are (the links were due anyway)."""
    seen, expires = (dict(variables), None) if exact else _comparable(variables)
    state: dict[str, Any] = {"h": _digest(json.dumps(seen, sort_keys=True, ensure_ascii=False)),
                             "k": {k: _digest(v) for k, v in seen.items()}}
    if expires is not None:
        state["exp"] = expires
    return state


def _delivery_error(err: DingTalkError) -> DeliveryError:
    if isinstance(err, PermanentError):
        return PermanentDeliveryError(str(err), hint=f"{err.fix_zh} / {err.fix_en}")
    retry_after = err.retry_after if isinstance(err, RetryableError) else None
    return DeliveryError(str(err), retry_after=retry_after)


class DingTalkConnector:
    name = NAME
    presentation = Presentation(name=Text("钉钉", "DingTalk"), notice=Text("钉钉工作通知", "DingTalk work notice"),
                                sign_in=Text("钉钉登录", "Sign in with DingTalk"),
                                client="DingTalk", client_name="钉钉 DingTalk")  # "DingTalk/7.6.0" in its browser

    def __init__(self, settings: DingTalkSettings, env: ConnectorEnv, *, backoff: Backoff | None = None) -> None:
        self.settings = settings
        self.env = env
        self.limits = Limits(rate_per_second=settings.rate_per_second, burst=1, concurrency=settings.concurrency)
        # The template has no input components: a step asking for text opens its web form. Every
        # update is a call counted against the month's budget; the clicked card's can ride on the ACK.
        self.capabilities = Capabilities(card_inputs=False, update_in_place=True, metered_updates=True,
                                         update_in_reply=settings.update_in_reply)
        self.counter = BudgetCounter(settings.monthly_calls, settings.budget_warn_share, warn=self._budget_warning)
        self.api = DingTalkApi(AppCredentials(settings.client_id, settings.secret(), settings.robot),
                               api_base=settings.api_base, oapi_base=settings.oapi_base,
                               limits=RateLimits(rate=settings.rate_per_second),
                               counter=self.counter)
        self.identity = DingTalkIdentity(settings, self.api)
        self.directory = DingTalkDirectory(self.api)
        self.backoff = backoff
        self.stream: StreamClient | None = None
        self._runner: asyncio.Task[None] | None = None
        self._dispatch: Dispatch | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._texts: OrderedDict[str, Delivery] = OrderedDict()
        # Card ids whose click is being dispatched -> the variables to answer it with: an update of
        # that card while its click is not yet ACKed rides on the ACK (DingTalk's callback response).
        self._replying: dict[str, dict[str, str]] = {}

    def __repr__(self) -> str:
        return f"DingTalkConnector(client_id={self.settings.client_id!r})"

    # ---------------------------------------------------------------- lifecycle

    async def start(self, dispatch: Dispatch) -> None:
        self._dispatch = dispatch
        self.stream = StreamClient(self.settings.client_id, self.settings.secret(), self._on_event,
                                   open_url=self.settings.open_url, backoff=self.backoff)
        self._runner = asyncio.create_task(self.stream.start(), name="dingtalk-stream")

    async def stop(self) -> None:
        if self.stream is not None:
            await self.stream.stop()  # frames being dispatched finish and are ACKed
        if self._runner is not None:
            await asyncio.gather(self._runner, return_exceptions=True)
        if self._tasks:  # answers still being sent: give them a moment, then cancel
            await asyncio.wait(set(self._tasks), timeout=5)
            for t in set(self._tasks):
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.api.close()

    def web_routes(self) -> Sequence[web.RouteDef]:
        return ()  # everything arrives over Stream

    def _background(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---------------------------------------------------------------- inbound

    async def _on_event(self, event: Inbound) -> Mapping[str, Any] | None:
        """Called by the Stream client; its return is ACKed. Only the dispatch (the commit) runs
        before the ACK; the answer to the sender is a task that starts after it."""
        assert self._dispatch is not None
        if isinstance(event, DingText):
            text = TextMessage(platform=NAME, sender=event.sender_user_id, text=event.text,
                               event_id=f"msg:{event.msg_id or event.message_id}",
                               chat_id=event.conversation_id if event.conversation == "group" else "")
            answer = await self._dispatch(text)
            if answer.code == UNKNOWN_SENDER and not answer.duplicate and event.sender_user_id:
                # Someone our directory does not know yet: after the ACK, look them up in DingTalk's.
                self._background(self._introduce(event, text, answer), "dingtalk-unknown-sender")
            elif not answer.duplicate and answer.text:
                self._background(self._reply(event, answer), "dingtalk-reply")
            return None
        action = self.card_action(event)
        replying = self.capabilities.update_in_reply and event.out_track_id not in self._replying
        if replying:
            self._replying[event.out_track_id] = {}
        try:
            answer = await self._dispatch(action)
        finally:
            changed = self._replying.pop(event.out_track_id, {}) if replying else {}
        if not answer.ok and not answer.duplicate and answer.text:
            # A refused click (not your card, locked, done already): the clicker is told why.
            self._background(self._tell(event.user_id, answer.text), "dingtalk-refusal")
        if changed:
            # The clicked card's update (made while the click was dispatched: bot.connectors asks the
            # relay for it) answers the click; every other holder's card changes through a PUT.
            return {"cardUpdateOptions": {"updateCardDataByKey": True}, "cardData": {"cardParamMap": changed}}
        return {}

    @staticmethod
    def card_action(event: CardCallback) -> CardAction:
        params = dict(event.params)
        version = str(params.pop(PARAM_VERSION, "") or "")
        params.pop("action", None)
        form = {str(k): v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for k, v in params.items()}
        action = event.action or ""
        if version:
            key = f"card:{event.out_track_id}:{event.user_id}:{action}:{version}"
            if form:
                key += ":" + _digest(json.dumps(form, sort_keys=True, ensure_ascii=False))
        else:  # a card from an older template: the callback's own id is all there is
            key = f"cb:{event.message_id}"
        return CardAction(platform=NAME, sender=event.user_id, card_id=event.out_track_id, action=action,
                          event_id=key, form=form)

    async def _introduce(self, event: DingText, text: TextMessage, refused: Answer) -> None:
        """An unknown sender who is in the DingTalk org is added to our directory the way `directory
        sync` adds people (nothing HR owns is set), then the message is handled again; someone
        DingTalk does not know either gets the refusal."""
        assert self._dispatch is not None
        answer = refused
        try:
            user = await self.directory.user(event.sender_user_id)
        except DingTalkError as exc:
            log.warning("dingtalk: could not look up unknown sender: %s", exc)
            user = None
        if user is not None:
            report = await sync_people(USER_ID_COLUMN, [PlatformPerson(
                userid=user.user_id, name=user.name, department=user.department, position=user.title,
                manager_userid=user.manager_user_id or None)])
            if report.created or report.updated:
                log.info("dingtalk: added %s from DingTalk's directory", user.user_id)
                answer = await self._dispatch(replace(text, event_id=f"{text.event_id}:known"))
        if not answer.duplicate and answer.text:
            await self._reply(event, answer)

    async def _reply(self, event: DingText, answer: Answer) -> None:
        hook = event.session_webhook
        fresh = event.session_webhook_expires_ms > (time.time() + 30) * 1000
        if hook.startswith(("https://", "http://")) and fresh:
            body = {"msgtype": "text", "text": {"content": answer.text}}
            if event.conversation == "group" and event.sender_user_id:
                body["at"] = {"atUserIds": [event.sender_user_id]}
            try:
                async with self.api.session.post(hook, json=body, timeout=aiohttp.ClientTimeout(total=10)) as resp:
                    data = await resp.json(content_type=None)
                if resp.status < 300 and isinstance(data, dict) and int(data.get("errcode", 0) or 0) == 0:
                    return
                log.warning("dingtalk: session webhook refused the answer (HTTP %s)", resp.status)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                log.warning("dingtalk: session webhook failed (%s)", type(exc).__name__)
        if event.sender_user_id:
            await self._tell(event.sender_user_id, answer.text)

    async def _tell(self, user_id: str, text: str) -> None:
        try:
            await self.api.send_text(user_id, text)
        except DingTalkError as exc:
            log.warning("dingtalk: could not answer %s: %s", user_id, exc)

    # ---------------------------------------------------------------- outbound

    async def send_card(self, to: Address, card: Card, card_id: str) -> Delivery:
        variables = render(card)
        with self.counter.meter() as meter:
            try:
                made = await self.api.create_and_deliver_card(self.settings.card_template_id, card_id, to.user_id,
                                                             variables)
            except DingTalkError as exc:
                raise _delivery_error(exc) from None
        return Delivery(message_id=made.out_track_id, state=state_of(variables), calls=meter.calls)

    async def update_card(self, to: Address, card: Card, card_id: str, delivery: Delivery) -> Delivery:
        variables = render(card)
        old = dict(delivery.state or {})
        held_until = old.get("exp")
        if isinstance(held_until, int | float) and held_until - time.time() < RELINK_MARGIN:
            old.pop("k", None)  # the links the card holds expire soon: send everything afresh
            old.pop("h", None)
        new = state_of(variables)
        if old.get("h") == new["h"]:
            # Nothing the holder would see changed: no call (it costs budget). The card keeps its
            # links, which stay valid beyond RELINK_MARGIN, so the state (and its expiry) stays too.
            return Delivery(message_id=delivery.message_id, state=delivery.state, calls=0)
        old_keys = old.get("k") or {}
        changed = {k: v for k, v in variables.items() if old_keys.get(k) != new["k"][k]}
        if "buttons" not in changed and old_keys and "exp" in old:
            new["exp"] = old["exp"]  # the buttons were not sent: the card still holds the older links
        reply = self._replying.get(card_id)
        if reply is not None:
            # Its holder's click is not ACKed yet: the ACK carries the change, no call is made.
            reply.update(changed)
            return Delivery(message_id=delivery.message_id or card_id, state=new, calls=0)
        with self.counter.meter() as meter:
            try:
                await self.api.update_card(delivery.message_id or card_id, changed)
            except DingTalkError as exc:
                raise _delivery_error(exc) from None
        return Delivery(message_id=delivery.message_id or card_id, state=new, calls=meter.calls)

    async def send_text(self, to: Address, text: str, key: str) -> Delivery:
        done = self._texts.get(key)
        if done is not None:
            return done
        with self.counter.meter() as meter:
            try:
                result = await self.api.send_text(to.user_id, text)
            except DingTalkError as exc:
                raise _delivery_error(exc) from None
        sent = Delivery(message_id=result.process_query_key or key, calls=meter.calls)
        self._texts[key] = sent
        while len(self._texts) > _SENT_TEXTS:
            self._texts.popitem(last=False)
        return sent

    # ---------------------------------------------------------------- the monthly budget

    async def usage(self) -> usage.Usage | None:
        """This month's counted calls (what `cases list` and `/help` show)."""
        return next((u for u in await usage.month_usage() if u.platform == NAME), None)

    async def _budget_warning(self, now: usage.Usage) -> None:
        # Runs inside the call that crossed the line: the message itself goes out from a task.
        self._background(self._warn_hr(now), "dingtalk-budget-warning")

    async def _warn_hr(self, now: usage.Usage) -> None:
        hr = [e.dingtalk_userid for e in await Employee.filter(active=True, dingtalk_userid__isnull=False,
                                                                  roles__contains="hr")
              if e.dingtalk_userid and "hr" in e.role_set]
        text = (f"⚠️ 钉钉接口本月（{now.month}）已用 {now.calls:,} / {now.quota:,} 次（{now.share:.0%}）。"
                f"用完后卡片将无法送达，请控制用量或升级钉钉版本。 / DingTalk API calls this month: "
                f"{now.calls:,} of {now.quota:,} ({now.share:.0%}); cards stop when the quota is used up.")
        log.warning("dingtalk: %s of %s monthly API calls used", now.calls, now.quota)
        for userid in hr:
            await self._tell(userid, text)


def create(env: ConnectorEnv) -> DingTalkConnector:
    return DingTalkConnector(load(env.env_file), env)
