"""WeCom's encrypted callback: verify, refuse replays, decrypt, and turn the message into a typed event.

Everything here is synchronous and cheap (one SHA-1, one AES-CBC block run, one small XML parse), so
the aiohttp handler runs it inline and answers well inside WeCom's 5-second deadline. The handler
calls `dispatch` and answers an empty 200 only after it returned: the caller commits the event's
transaction (and its inbox row, the durable de-duplication) before returning, so a crash before
the answer means WeCom retries and nothing acknowledged is lost.

Statuses: 403 for anything that fails authentication (signature, corp id, replay window), 400 for
anything malformed, 413 for an oversized body. None of them dispatches anything.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.work.crypto import WeChatCrypto
from wechatpy.work.exceptions import InvalidCorpIdException

from bot.platforms.wecom import xmlsafe

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024  # a WeCom callback is well under 4 KiB; the AES payload of a long text ~ 3 KiB


class CallbackRefused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class WeComText:
    """A text message a member typed to the app."""

    sender: str
    text: str
    msg_id: str  # kept as a string: WeCom has started sending non-numeric MsgIds
    create_time: int
    agent_id: str

    @property
    def dedup_key(self) -> str:
        return f"wecom:msg:{self.msg_id}"


@dataclass(frozen=True)
class WeComCardClick:
    """A press on a template card (`template_card_event`, or `template_card_menu_event`)."""

    sender: str
    event_key: str
    task_id: str
    response_code: str  # single use, 72 h: lets us update the clicker's card in place
    card_type: str
    create_time: int
    agent_id: str
    selected: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # question key -> option ids

    @property
    def dedup_key(self) -> str:
        # Card events carry no MsgId; WeCom's own advice is sender + create time, and the key and
        # task tell two presses in the same second apart.
        return f"wecom:card:{self.sender}:{self.create_time}:{self.event_key}:{self.task_id}"


@dataclass(frozen=True)
class WeComOther:
    """Any other message or event (enter_agent, subscribe, images ...): acknowledged, not acted on."""

    sender: str
    msg_type: str
    event: str
    create_time: int


WeComEvent = WeComText | WeComCardClick | WeComOther


@dataclass(frozen=True)
class CallbackConfig:
    token: str
    aes_key: str
    corp_id: str
    max_clock_skew: float = 600.0
    max_body: int = MAX_BODY

    def crypto(self) -> WeChatCrypto:
        return WeChatCrypto(self.token, self.aes_key, self.corp_id)


def _fresh(timestamp: str, now: float, skew: float) -> None:
    try:
        ts = int(timestamp)
    except ValueError:
        raise CallbackRefused(403, "timestamp is not a number") from None
    if abs(now - ts) > skew:
        raise CallbackRefused(403, f"timestamp outside the ±{skew:.0f} s window")


def _query(q: Mapping[str, str]) -> tuple[str, str, str]:
    sig, ts, nonce = q.get("msg_signature", ""), q.get("timestamp", ""), q.get("nonce", "")
    if not (sig and ts and nonce):
        raise CallbackRefused(403, "msg_signature, timestamp and nonce are required")
    return sig, ts, nonce


def verify_url(crypto: WeChatCrypto, cfg: CallbackConfig, query: Mapping[str, str], *, now: float) -> str:
    """The GET handshake: the decrypted `echostr`, which must be answered as-is."""
    sig, ts, nonce = _query(query)
    _fresh(ts, now, cfg.max_clock_skew)
    # yarl decodes an unescaped '+' in the query as a space; base64 never contains spaces.
    echostr = query.get("echostr", "").replace(" ", "+")
    if not echostr:
        raise CallbackRefused(400, "echostr is missing")
    try:
        return crypto.check_signature(sig, ts, nonce, echostr)
    except (InvalidSignatureException, InvalidCorpIdException):
        raise CallbackRefused(403, "bad signature or corp id") from None
    except Exception:  # garbage base64 or padding inside wechatpy
        raise CallbackRefused(400, "echostr does not decrypt") from None


def decrypt(crypto: WeChatCrypto, cfg: CallbackConfig, query: Mapping[str, str], body: bytes, *,
            now: float) -> dict[str, Any]:
    """The POST: verified, fresh, decrypted, parsed."""
    sig, ts, nonce = _query(query)
    _fresh(ts, now, cfg.max_clock_skew)
    try:
        envelope = xmlsafe.parse(body)
    except xmlsafe.XmlError as exc:
        raise CallbackRefused(400, f"envelope: {exc}") from None
    encrypted = envelope.get("Encrypt")
    if not isinstance(encrypted, str) or not encrypted:
        raise CallbackRefused(400, "envelope has no Encrypt element")
    try:
        # A dict is passed so wechatpy never parses the body itself (its parser allows DTDs).
        plain = crypto.decrypt_message({"Encrypt": encrypted}, sig, ts, nonce)
    except (InvalidSignatureException, InvalidCorpIdException):
        raise CallbackRefused(403, "bad signature or corp id") from None
    except Exception:
        raise CallbackRefused(400, "payload does not decrypt") from None
    try:
        return xmlsafe.parse(plain)
    except xmlsafe.XmlError as exc:
        raise CallbackRefused(400, f"message: {exc}") from None


def _text(msg: Mapping[str, Any], name: str) -> str:
    value = msg.get(name, "")
    if not isinstance(value, str):
        raise CallbackRefused(400, f"{name} is not text")
    return value


def _int(msg: Mapping[str, Any], name: str) -> int:
    try:
        return int(_text(msg, name))
    except ValueError:
        raise CallbackRefused(400, f"{name} is not a number") from None


def _selected(msg: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    items = msg.get("SelectedItems")
    if not items:
        return {}
    if not isinstance(items, dict):
        raise CallbackRefused(400, "SelectedItems is malformed")
    out: dict[str, tuple[str, ...]] = {}
    for item in items.get("SelectedItem", []):
        if not isinstance(item, dict):
            raise CallbackRefused(400, "SelectedItem is malformed")
        options = item.get("OptionIds") or {}
        ids = options.get("OptionId", []) if isinstance(options, dict) else []
        out[_text(item, "QuestionKey")] = tuple(i for i in ids if isinstance(i, str))
    return out


def classify(msg: Mapping[str, Any]) -> WeComEvent:
    sender = _text(msg, "FromUserName")
    if not sender:
        raise CallbackRefused(400, "FromUserName is missing")
    msg_type = _text(msg, "MsgType")
    created = _int(msg, "CreateTime")
    agent = _text(msg, "AgentID")
    event = _text(msg, "Event") if msg_type == "event" else ""
    if msg_type == "text":
        msg_id = _text(msg, "MsgId")
        if not msg_id:
            raise CallbackRefused(400, "text message without MsgId")
        return WeComText(sender=sender, text=_text(msg, "Content"), msg_id=msg_id, create_time=created,
                         agent_id=agent)
    if event in ("template_card_event", "template_card_menu_event"):
        return WeComCardClick(sender=sender, event_key=_text(msg, "EventKey"), task_id=_text(msg, "TaskId"),
                              response_code=_text(msg, "ResponseCode"), card_type=_text(msg, "CardType"),
                              create_time=created, agent_id=agent, selected=_selected(msg))
    return WeComOther(sender=sender, msg_type=msg_type, event=event, create_time=created)


Dispatch = Callable[[WeComEvent], Awaitable[None]]


async def _read_capped(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise CallbackRefused(413, "body too large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(8192):
        size += len(chunk)
        if size > limit:
            raise CallbackRefused(413, "body too large")
        chunks.append(chunk)
    return b"".join(chunks)


def make_handler(cfg: CallbackConfig, dispatch: Dispatch, *,
                 clock: Callable[[], float] = time.time) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The aiohttp handler for both GET (URL verification) and POST (messages and events)."""
    crypto = cfg.crypto()

    async def handler(request: web.Request) -> web.Response:
        try:
            if request.method == "GET":
                return web.Response(text=verify_url(crypto, cfg, request.query, now=clock()))
            body = await _read_capped(request, cfg.max_body)
            event = classify(decrypt(crypto, cfg, request.query, body, now=clock()))
        except CallbackRefused as exc:
            # The reason names the check, never the payload or our token.
            log.warning("wecom callback refused (%s): %s", exc.status, exc.reason)
            return web.Response(status=exc.status, text=exc.reason)
        try:
            await dispatch(event)
        except CallbackRefused as exc:
            # Not acknowledged (not started, or the event's transaction rolled back): WeCom retries.
            log.warning("wecom callback not acknowledged (%s): %s", exc.status, exc.reason)
            return web.Response(status=exc.status, text=exc.reason)
        return web.Response(text="")

    return handler
