"""A platform written only against `chat.connector` (it imports nothing else of the bot): an
in-memory "phone" per user that holds the cards it was sent, replaces them in place, hands out a
per-delivery update token on every send, click and update, and checks that each update comes with
the newest token it handed out for that card, once. Its optional web sign-in (`ContractIdentity`)
is a real OAuth code flow over HTTP against `FakeOAuth`, a loopback server, with the app access
token cached by the connector itself.

Nothing in the bot knows this connector: tests hand it to `create_app(..., connectors=...)` under
the name "contract", and the address book reaches people on it by their employee id.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from cards.model import Card
from chat.connector import (
    CARD_ID,
    Address,
    Answer,
    Capabilities,
    CardAction,
    Delivery,
    Dispatch,
    IdentityError,
    Limits,
    Presentation,
    Text,
    TextMessage,
)

NAME = "contract"


class ContractViolation(AssertionError):
    """The bot broke the contract (a stale or reused token, an update of a card the holder lacks)."""


@dataclass
class Phone:
    """What one user sees: their cards by card id (replaced in place) and the bot's texts."""

    cards: dict[str, Card] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    texts: list[str] = field(default_factory=list)


class ContractConnector:
    name = NAME
    capabilities = Capabilities()
    directory = None
    # Its in-app browser says "ContractApp/<version>" in the User-Agent (the signing evidence names it).
    presentation = Presentation(name=Text("契约平台", "Contract"), notice=Text("契约平台消息", "Contract message"),
                                sign_in=Text("契约平台登录", "Sign in with Contract"),
                                client="ContractApp", client_name="契约平台 ContractApp")

    def __init__(self, identity: ContractIdentity | None = None) -> None:
        self.limits = Limits(rate_per_second=500.0, burst=500, concurrency=4)
        self.identity = identity
        self.phones: dict[str, Phone] = {}
        self._dispatch: Dispatch | None = None
        self._seq = itertools.count(1)
        self.deliveries: dict[str, Delivery] = {}  # card id -> the delivery this platform answered last
        self.issued: dict[str, str] = {}  # card id -> the newest update token handed out for it
        self.used: set[str] = set()
        self.handed_back: list[tuple[str, str, str]] = []  # (card id, token, where it was issued: send/click/update)
        self._origin: dict[str, str] = {}
        self.starts = self.stops = 0

    # ---- lifecycle ------------------------------------------------------------------------
    async def start(self, dispatch: Dispatch) -> None:
        self._dispatch = dispatch
        self.starts += 1

    async def stop(self) -> None:
        self._dispatch = None
        self.stops += 1
        if self.identity is not None:
            await self.identity.close()

    def web_routes(self) -> Sequence[web.RouteDef]:
        return []

    @property
    def running(self) -> bool:
        return self._dispatch is not None

    def phone(self, user: str) -> Phone:
        return self.phones.setdefault(user, Phone())

    def _token(self, card_id: str, origin: str) -> str:
        token = f"{origin}-{next(self._seq)}-{secrets.token_hex(4)}"
        self.issued[card_id] = token
        self._origin[token] = origin
        return token

    # ---- inbound: what the platform would push ---------------------------------------------
    async def _send(self, event: TextMessage | CardAction) -> Answer:
        if self._dispatch is None:
            raise RuntimeError("the contract connector is not started")
        return await self._dispatch(event)

    async def type(self, user: str, text: str) -> Answer:
        return await self._send(TextMessage(platform=NAME, sender=user, text=text, event_id=f"msg-{next(self._seq)}"))

    async def press(self, user: str, card_id: str, action: str, form: Mapping[str, Any] | None = None) -> Answer:
        """A button pressed on `card_id`; the holder's press brings a fresh token for their card."""
        token = self._token(card_id, "click") if card_id in self.phone(user).cards else None
        return await self._send(CardAction(platform=NAME, sender=user, card_id=card_id, action=action,
                                           event_id=f"cb-{next(self._seq)}", form=dict(form or {}),
                                           update_token=token))

    # ---- delivery -------------------------------------------------------------------------
    async def send_card(self, to: Address, card: Card, card_id: str) -> Delivery:
        if to.platform != NAME or not CARD_ID.fullmatch(card_id):
            raise ContractViolation(f"send_card({to}, {card_id!r})")
        if card_id in self.deliveries:  # a resend: the card already delivered, not a second one
            return self.deliveries[card_id]
        phone = self.phone(to.user_id)
        phone.cards[card_id] = card
        phone.versions[card_id] = 1
        delivery = Delivery(message_id=f"cm-{next(self._seq)}", update_token=self._token(card_id, "send"),
                            state={"holder": to.user_id})
        self.deliveries[card_id] = delivery
        return delivery

    async def update_card(self, to: Address, card: Card, card_id: str, delivery: Delivery) -> Delivery:
        phone = self.phone(to.user_id)
        if card_id not in phone.cards or delivery.state.get("holder") != to.user_id:
            raise ContractViolation(f"update of {card_id} that {to.user_id} does not hold")
        token = delivery.update_token
        if token is None or token != self.issued.get(card_id) or token in self.used:
            raise ContractViolation(f"update of {card_id} with token {token!r}; newest issued "
                                    f"{self.issued.get(card_id)!r}, used before: {token in self.used}")
        self.used.add(token)
        self.handed_back.append((card_id, token, self._origin[token]))
        phone.cards[card_id] = card  # in place: same card id, new content
        phone.versions[card_id] += 1
        fresh = Delivery(message_id=delivery.message_id, update_token=self._token(card_id, "update"),
                         state=dict(delivery.state))
        self.deliveries[card_id] = fresh
        return fresh

    async def send_text(self, to: Address, text: str, key: str) -> Delivery:
        self.phone(to.user_id).texts.append(text)
        return Delivery(message_id=f"ct-{next(self._seq)}")

    # ---- what a test reads off a phone ------------------------------------------------------
    def cards_of(self, user: str) -> list[tuple[str, Card]]:
        return list(self.phone(user).cards.items())

    async def wait_card(self, user: str, *, step: str | None = None, purpose: str | None = None,
                        action: str | None = None, link: bool = False, tries: int = 300) -> tuple[str, Card]:
        """The newest card `user` holds matching the filters (an enabled button `action`, a link)."""
        for _ in range(tries):
            for card_id, card in reversed(self.cards_of(user)):
                if step is not None and card.step_id != step:
                    continue
                if purpose is not None and card.purpose != purpose:
                    continue
                if action is not None and not any(b.action == action and b.enabled for b in card.buttons):
                    continue
                if link and not any(b.url for b in card.buttons):
                    continue
                return card_id, card
            await asyncio.sleep(0.02)
        held = [(c.step_id, c.purpose) for _, c in self.cards_of(user)]
        raise AssertionError(f"{user} holds no card step={step} purpose={purpose} action={action}: {held}")


# ---------------------------------------------------------------- web sign-in (OAuth code flow)

class ContractIdentity:
    """The platform's sign-in: its login page, then code -> user id with the app's access token,
    which this connector fetches once and reuses until shortly before it expires."""

    MARGIN = 60.0

    def __init__(self, base_url: str, app_id: str = "contract-app", secret: str = "contract-secret") -> None:
        self.base_url, self.app_id, self.secret = base_url, app_id, secret
        self._token: tuple[str, float] | None = None
        self._session: aiohttp.ClientSession | None = None

    def authorize_url(self, redirect_uri: str, state: str) -> str:
        return f"{self.base_url}/authorize?" + urlencode({"app_id": self.app_id, "redirect_uri": redirect_uri,
                                                          "state": state})

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        return self._session

    async def access_token(self) -> str:
        if self._token and self._token[1] > time.monotonic():
            return self._token[0]
        async with self._http().get(f"{self.base_url}/gettoken",
                                    params={"app_id": self.app_id, "secret": self.secret}) as r:
            data = await r.json()
        if r.status != 200 or not data.get("access_token"):
            raise IdentityError(f"token refused: {data.get('error')}")
        self._token = (data["access_token"], time.monotonic() + float(data["expires_in"]) - self.MARGIN)
        return self._token[0]

    async def user_id(self, params: Mapping[str, str]) -> str:
        token = await self.access_token()
        try:
            async with self._http().get(f"{self.base_url}/getuserinfo",
                                        params={"access_token": token, "code": params.get("code", "")}) as r:
                data = await r.json()
        except aiohttp.ClientError as exc:
            raise IdentityError(f"unreachable: {exc}") from exc
        if r.status != 200 or not data.get("userid"):
            raise IdentityError(f"code refused: {data.get('error')}")
        return str(data["userid"])

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class FakeOAuth:
    """The platform's OAuth server on 127.0.0.1: `logged_in` is whoever is signed in on the phone."""

    def __init__(self) -> None:
        self.logged_in = ""
        self.codes: dict[str, str] = {}  # code -> user id, single use
        self.tokens: set[str] = set()
        self.token_calls = 0
        self.userinfo_calls = 0
        self.app = web.Application()
        self.app.router.add_get("/authorize", self._authorize)
        self.app.router.add_get("/gettoken", self._gettoken)
        self.app.router.add_get("/getuserinfo", self._getuserinfo)
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def start(self) -> str:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _authorize(self, request: web.Request) -> web.Response:
        if not self.logged_in:
            return web.json_response({"error": "not signed in"}, status=401)
        code = secrets.token_urlsafe(12)
        self.codes[code] = self.logged_in
        target = request.query["redirect_uri"] + "?" + urlencode({"code": code, "state": request.query["state"]})
        raise web.HTTPFound(target)

    async def _gettoken(self, request: web.Request) -> web.Response:
        self.token_calls += 1
        if request.query.get("secret") != "contract-secret":
            return web.json_response({"error": "bad secret"}, status=403)
        token = secrets.token_hex(8)
        self.tokens.add(token)
        return web.json_response({"access_token": token, "expires_in": 7200})

    async def _getuserinfo(self, request: web.Request) -> web.Response:
        self.userinfo_calls += 1
        if request.query.get("access_token") not in self.tokens:
            return web.json_response({"error": "bad token"}, status=401)
        user = self.codes.pop(request.query.get("code", ""), None)
        if user is None:
            return web.json_response({"error": "invalid or used code"}, status=400)
        return web.json_response({"userid": user})
