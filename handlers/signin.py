"""Who confirms a person on our per-person pages (signing page, step forms): the web sign-in their own
platform's running connector offers (`Connector.identity`, an OAuth code flow), and the short-lived
cookie that remembers the answer for one link.

The person's platform and user id come from the address book (the one place mapping people to
platforms); the connector builds the platform's login address and turns the code coming back into
that platform's user id, caching its own app access token. The pages compare the user id with the
person's and never see a platform API, a platform setting or a platform token.

A platform whose connector is not running or offers no sign-in cannot confirm anyone: its links are
refused with `Unavailable` (the page says why), unless the connector declares that its links need no
sign-in (`links_need_sign_in=False`: the emulator, opened at this machine by its user).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from chat import presentation
from chat.appkeys import CONNECTORS, SERVICE
from chat.connector import IdentityError as ConnectorIdentityError
from chat.connector import WebIdentity
from workflow.text import Text

MAX_CODE = 512  # an OAuth code is short; anything longer is refused before any platform is asked
PLATFORM_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")  # a platform package's name (the cookie names one)


class IdentityError(Exception):
    """The platform did not confirm an identity (bad/used code, API error, not a member)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unavailable(Exception):
    """The person's platform offers no web sign-in here, so nobody can be confirmed for their link."""

    def __init__(self, platform: str) -> None:
        super().__init__(f"no web sign-in for platform {platform!r}")
        self.platform = platform
        self.zh = f"无法确认您的身份：当前未启用平台（{platform}）的网页登录，请联系人事。"
        self.en = (f"Sign-in is unavailable: the platform ({platform}) offers no web sign-in here. "
                   "Please contact HR.")


@dataclass(frozen=True)
class Confirmed:
    platform: str  # the platform whose connector confirmed the person
    userid: str

    @property
    def method(self) -> str:
        return f"{self.platform}_oauth"

    @property
    def identity(self) -> str:
        return f"{self.platform}:{self.userid}"


@dataclass(frozen=True)
class SignIn:
    """The platform that must confirm a person, the user id it must confirm, and how to ask it.
    Unpacks as (platform, user_id), as the pages read it."""

    platform: str
    user_id: str
    identity: WebIdentity
    name: Text  # what its users call the platform (its connector's presentation), for the pages' refusals

    def __iter__(self) -> Any:
        return iter((self.platform, self.user_id))

    def __getitem__(self, i: int) -> str:
        return (self.platform, self.user_id)[i]

    def authorize_url(self, redirect_uri: str, state: str) -> str:
        return self.identity.authorize_url(redirect_uri, state)

    async def confirm(self, params: Mapping[str, str]) -> Confirmed:
        """The platform's answer for the redirect's query; IdentityError when it confirms nobody."""
        code = params.get("code", "") or params.get("authCode", "")
        if not code or len(code) > MAX_CODE:
            raise IdentityError("missing or oversized authorisation code")
        try:
            user_id = await self.identity.user_id(params)
        except ConnectorIdentityError as exc:
            raise IdentityError(f"{self.platform}: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:  # a connector that let a network error through
            raise IdentityError(f"{self.platform} unreachable: {exc}") from exc
        if not isinstance(user_id, str) or not user_id:
            raise IdentityError(f"{self.platform}: no user id in the answer")
        return Confirmed(self.platform, user_id)


def for_signer(app: web.Application, signer: Any) -> SignIn | None:
    """How `signer` (an Employee) proves who they are; None: the link alone is enough (a connector
    whose links need no sign-in). Unavailable: their platform cannot confirm them here."""
    addresses = app[SERVICE].addresses
    platform = addresses.platform_for(signer)
    connector = app.get(CONNECTORS, {}).get(platform)
    if connector is not None and not connector.capabilities.links_need_sign_in:
        return None
    identity = getattr(connector, "identity", None)
    user_id = addresses.user_id(signer, platform)
    if identity is None or not user_id:
        raise Unavailable(platform)
    return SignIn(platform, user_id, identity, presentation.of(app.get(CONNECTORS, {}), platform).name)


# ---------------------------------------------------------------- the OAuth state and the identity cookie

def oauth_state(secret: bytes, nonce: str) -> str:
    """Binds the OAuth round trip to this link (WeCom allows [a-zA-Z0-9] only, ≤128 bytes)."""
    return hmac.new(secret, b"oauth-state." + nonce.encode(), hashlib.sha256).hexdigest()[:40]


def check_state(secret: bytes, nonce: str, state: str) -> bool:
    return hmac.compare_digest(oauth_state(secret, nonce), state or "")


def identity_cookie_name(nonce: str) -> str:
    return "sid_" + hashlib.sha256(nonce.encode()).hexdigest()[:16]


def identity_cookie(secret: bytes, nonce: str, who: Confirmed, expires_at: int) -> str:
    body = f"{who.platform}|{who.userid}|{expires_at}"
    mac = hmac.new(secret, b"sign-identity." + nonce.encode() + b"|" + body.encode(), hashlib.sha256).hexdigest()
    return f"{body}|{mac}"


def read_identity_cookie(secret: bytes, nonce: str, value: str | None, now: float) -> Confirmed | None:
    if not value or value.count("|") != 3:
        return None
    platform, userid, exp, mac = value.split("|")
    body = f"{platform}|{userid}|{exp}"
    want = hmac.new(secret, b"sign-identity." + nonce.encode() + b"|" + body.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, mac) or not PLATFORM_NAME.fullmatch(platform):
        return None
    try:
        if int(exp) < now:
            return None
    except ValueError:
        return None
    return Confirmed(platform, userid)
