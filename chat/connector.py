"""The contract a messaging platform implements, in its own package, with no edits elsewhere.

A platform package `bot/platforms/<name>/` exposes `create(env: ConnectorEnv) -> Connector`; the
registry builds one connector per name in PLATFORMS. The bot then:

- calls `await connector.start(dispatch)` once the database is up; the connector turns platform
  input into `TextMessage` / `CardAction` and awaits `dispatch(...)`, which returns only after the
  event's transaction committed, so the connector may acknowledge the platform right after it;
- serves `connector.web_routes()` (HTTP callbacks, e.g. WeCom's) on the shared web server;
- delivers outgoing cards and texts through `send_card` / `update_card` / `send_text`, each given an
  already-resolved `Address` (no connector looks anyone up in our directory) and returning a
  `Delivery` that is stored with the outbox row and handed back, as is, on the next update of that
  card (WeCom keeps its single-use `response_code` there, DingTalk nothing);
- calls `await connector.stop()` on shutdown: no task of the connector may outlive it.

Idempotency: `card_id` is the outbox row's key, made to fit every platform's alphabet
(`CARD_ID`, a subset of WeCom's `task_id` and DingTalk's `outTrackId`). A second `send_card` with
the same `card_id` must not create a second card; it answers with the card already delivered.
That lets the relay resend after a crash between "platform accepted" and "row marked sent".

Settings: `create(env)` reads the platform's own `<NAME>_*` settings and raises `ConfigError`
naming what is missing or wrong (one line); the bot stops start-up with it.

Presentation: a connector sets `presentation` (a `Presentation`): what people call the platform and
what a message from the bot there is called. The core's pages, refusals and documents take every
platform name from there (chat/presentation.py); nothing outside the platform's package names it.

Optional extras a connector may offer (looked up with getattr, not part of the protocol):
`USER_ID_COLUMN` in the package (the `employee` column holding this platform's user id; default
`employee_id`), `startup_lines()` on the connector (lines printed once the bot listens), and
`relative_redirect = True` on its `identity` (its sign-in comes back to the address the person opened,
not to PUBLIC_BASE_URL: the emulator's local one).

Web sign-in: a connector whose platform can confirm who opens our pages sets `identity` (a
`WebIdentity`: the login address, and the user id behind the code that comes back); the signing
page, the step forms and the dashboard then send a person on that platform there and compare the
user id with theirs. It is the only sign-in there is: with `identity` None, a platform's per-person
links are refused (sign-in unavailable) unless its `capabilities.links_need_sign_in` is False (the
personal link alone is the proof, as in the emulator), and the dashboard offers no sign-in for it.

Access tokens: a connector fetches and caches its own app access token (per connector instance,
refreshed before it expires, shared by its sends, updates, directory and `identity`); nothing
outside the platform's package holds a platform token.

Errors: raise `DeliveryError` (transient: retried with backoff, `retry_after` honoured) or
`PermanentDeliveryError` (parked as failed; `hint` tells HR the cause and the fix in one line).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from aiohttp import web

from cards.model import Card
from workflow.text import Text  # a Presentation's words; connectors take it from here

# Card ids the bot hands to platforms: WeCom task_id allows [A-Za-z0-9_@-] up to 128 bytes,
# DingTalk outTrackId is a free string; 64 of the common alphabet fit both with room to spare.
CARD_ID = re.compile(r"^[A-Za-z0-9_@-]{1,64}$")


def check_card_id(card_id: str) -> str:
    if not CARD_ID.fullmatch(card_id):
        raise ValueError(f"card id {card_id!r} does not fit [A-Za-z0-9_@-]{{1,64}}")
    return card_id


# ---------------------------------------------------------------- addresses and deliveries

@dataclass(frozen=True)
class Address:
    """Where a message goes on one platform, resolved by the bot before the connector sees it."""

    platform: str
    user_id: str  # the platform's own user id (the emulator uses employee ids)
    employee_id: str = ""  # ours, for logs only
    chat_id: str = ""  # a group conversation, when the message belongs there


@dataclass(frozen=True)
class Delivery:
    """What the platform answered for one delivered message; stored with the outbox row (JSON)."""

    message_id: str
    update_token: str | None = None  # e.g. WeCom's response_code: single use, newest wins
    state: Mapping[str, Any] = field(default_factory=dict)  # anything else the connector needs later
    calls: int = 1  # platform API calls this delivery cost (the monthly budget counts them)

    def to_json(self) -> dict[str, Any]:
        return {"message_id": self.message_id, "update_token": self.update_token, "state": dict(self.state),
                "calls": self.calls}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Delivery | None:
        if not data or not data.get("message_id"):
            return None
        return cls(message_id=str(data["message_id"]), update_token=data.get("update_token"),
                   state=dict(data.get("state") or {}), calls=int(data.get("calls", 1)))


class ConfigError(Exception):
    """A platform's settings are incomplete or wrong: one line naming the setting and the fix."""


class DeliveryError(Exception):
    """The platform did not take the message; retrying may help."""

    def __init__(self, message: str, *, transient: bool = True, retry_after: float | None = None,
                 hint: str = "") -> None:
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after
        self.hint = hint


class PermanentDeliveryError(DeliveryError):
    """Retrying cannot help (permission, configuration, unknown user). `hint`: the fix, for HR."""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message, transient=False, hint=hint)


# ---------------------------------------------------------------- inbound

@dataclass(frozen=True)
class TextMessage:
    """A line typed to the bot (1:1, or an @-mention in a group)."""

    platform: str
    sender: str  # the platform's user id
    text: str
    event_id: str  # the platform's message id: the dedup key, unique per platform
    chat_id: str = ""
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    lang: str = ""  # "zh"/"en" when the platform tells the sender's language; "" = the bot's default


@dataclass(frozen=True)
class CardAction:
    """A button pressed (or a card form submitted) on a card the bot delivered."""

    platform: str
    sender: str  # the platform's user id of whoever pressed
    card_id: str  # the card id the bot gave at send time (outTrackId / task_id)
    action: str
    event_id: str  # dedup key: the platform's callback id, or its (card, user, action, time) tuple
    form: Mapping[str, Any] = field(default_factory=dict)
    update_token: str | None = None  # a fresh token for updating this holder's card (WeCom ResponseCode)
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    lang: str = ""


InboundEvent = TextMessage | CardAction


@dataclass(frozen=True)
class Answer:
    """What dispatch tells the connector: whether it worked and the line to show the sender."""

    ok: bool
    text: str
    code: str = ""
    duplicate: bool = False
    data: Mapping[str, Any] = field(default_factory=dict)  # what the handler reported (e.g. the case id)


Dispatch = Callable[[InboundEvent], Awaitable[Answer]]


# ---------------------------------------------------------------- what a platform offers

@dataclass(frozen=True)
class Limits:
    """How fast the relay may deliver through this connector (per process)."""

    rate_per_second: float  # sustained sends per second the platform allows this app
    burst: int
    concurrency: int = 4  # requests in flight at once (a send is an HTTPS round trip)
    per_recipient_per_minute: int | None = None  # WeCom drops silently above 30
    per_recipient_per_hour: int | None = None


@dataclass(frozen=True)
class Capabilities:
    card_inputs: bool = True  # False: a button with a form opens the step's web form instead
    update_in_place: bool = True
    # True: every card update costs (a call counted against a monthly budget, or a fresh message);
    # cards that would change with every step (HR's case summary) then show only what changes
    # rarely, and link to the live page for the rest.
    metered_updates: bool = False
    # True: the answer to a card action may carry the clicked card's new content (DingTalk's
    # callback response), so the clicker's card is updated without a call of its own.
    update_in_reply: bool = False
    # False: a link from this platform's cards (signing page, step form) needs no platform sign-in,
    # because whoever can open it is the person the link was made for (the emulator: this machine's
    # user). Its `identity`, if any, then serves only pages that have no per-person link (the dashboard).
    links_need_sign_in: bool = True


@dataclass(frozen=True)
class Presentation:
    """How people know the platform, set by its package: the core's texts name a platform only
    through this (chat/presentation.py reads it from the running connectors)."""

    name: Text  # as its users call it ("钉钉" / "DingTalk"): pages that send someone to sign in there
    notice: Text  # a message from the bot there ("钉钉工作通知"): documents say the employee was notified by it
    sign_in: Text  # the HR dashboard's button for its web sign-in ("钉钉登录" / "Sign in with DingTalk")
    # Its in-app browser: the User-Agent product token ("DingTalk" of "DingTalk/7.6.0") and what the
    # signing evidence page calls it ("钉钉 DingTalk"); "" when it has none.
    client: str = ""
    client_name: str = ""


class IdentityError(Exception):
    """The platform did not confirm who opened a page (bad or used code, not a member)."""


class WebIdentity(Protocol):
    """Platform sign-in for our web pages (signing page, step forms, dashboard): OAuth code flow."""

    def authorize_url(self, redirect_uri: str, state: str) -> str: ...

    async def user_id(self, params: Mapping[str, str]) -> str:
        """The platform user id behind the code in `params` (the redirect's query); IdentityError if none."""
        ...


@dataclass(frozen=True)
class DirectoryUser:
    user_id: str
    name: str
    title: str = ""
    department: str = ""
    manager_user_id: str = ""
    mobile: str = ""
    email: str = ""


class Directory(Protocol):
    """The platform's organisation, for `python -m bot directory sync` and unknown senders."""

    def users(self) -> AsyncIterator[DirectoryUser]: ...

    async def user(self, user_id: str) -> DirectoryUser | None: ...


@dataclass(frozen=True)
class ConnectorEnv:
    """What the bot gives a connector when it builds it: the few core settings a platform needs,
    not the platform's own (a connector reads its own `<NAME>_*` settings, from the environment
    and `env_file`)."""

    public_base_url: str
    language: str
    env_file: str | None = None
    http_host: str = "127.0.0.1"  # where the shared web server listens (a local-only page checks it)
    http_port: int = 8080
    trusted_proxies: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()  # every platform served, in PLATFORMS order


@runtime_checkable
class Connector(Protocol):
    name: str
    limits: Limits
    capabilities: Capabilities
    identity: WebIdentity | None  # None: the platform offers no web sign-in
    directory: Directory | None
    presentation: Presentation

    async def start(self, dispatch: Dispatch) -> None: ...

    async def stop(self) -> None: ...

    def web_routes(self) -> Sequence[web.RouteDef]: ...

    async def send_card(self, to: Address, card: Card, card_id: str) -> Delivery: ...

    async def update_card(self, to: Address, card: Card, card_id: str, delivery: Delivery) -> Delivery:
        """Replace a delivered card's content in place; return the delivery to keep for next time."""
        ...

    async def send_text(self, to: Address, text: str, key: str) -> Delivery: ...
