"""Who confirms a signer on the signing page: the sign-in their own platform's connector offers
(`Connector.identity`, an OAuth code flow), where it offers one.

The signer's platform and user id come from the address book (the one place mapping people to
platforms); the connector builds the platform's login address and turns the code coming back into
that platform's user id, caching its own app access token. The signing page compares the user id
with the signer's and never sees a platform API.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from chat.appkeys import CONNECTORS, SERVICE, SETTINGS
from chat.connector import IdentityError as ConnectorIdentityError
from chat.connector import WebIdentity
from config.settings import Settings
from signing import oauth

MAX_CODE = 512  # an OAuth code is short; anything longer is refused before any platform is asked


@dataclass(frozen=True)
class SignIn:
    """The platform that must confirm a signer, the user id it must confirm, and how to ask it.
    Unpacks as (platform, user_id), as the signing page reads it."""

    platform: str
    user_id: str
    identity: WebIdentity

    def __iter__(self) -> Any:
        return iter((self.platform, self.user_id))

    def __getitem__(self, i: int) -> str:
        return (self.platform, self.user_id)[i]

    def authorize_url(self, redirect_uri: str, state: str) -> str:
        return self.identity.authorize_url(redirect_uri, state)

    async def confirm(self, params: Mapping[str, str]) -> oauth.Confirmed:
        """The platform's answer for the redirect's query; oauth.IdentityError when it confirms nobody."""
        code = params.get("code", "") or params.get("authCode", "")
        if not code or len(code) > MAX_CODE:
            raise oauth.IdentityError("missing or oversized authorisation code")
        try:
            user_id = await self.identity.user_id(params)
        except ConnectorIdentityError as exc:
            raise oauth.IdentityError(f"{self.platform}: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:  # a connector that let a network error through
            raise oauth.IdentityError(f"{self.platform} unreachable: {exc}") from exc
        if not isinstance(user_id, str) or not user_id:
            raise oauth.IdentityError(f"{self.platform}: no user id in the answer")
        return oauth.Confirmed(self.platform, user_id)


def for_signer(app: web.Application, signer: Any) -> SignIn | None:
    """How `signer` (an Employee) proves who they are, or None: the link alone is enough."""
    addresses = app[SERVICE].addresses
    platform = addresses.platform_for(signer)
    user_id = addresses.user_id(signer, platform)
    connector = app.get(CONNECTORS, {}).get(platform)
    if connector is not None and not connector.capabilities.links_need_sign_in:
        return None
    identity = getattr(connector, "identity", None)
    if identity is not None and user_id:
        return SignIn(platform, user_id, identity)
    return _legacy(app[SETTINGS], signer)


# TODO(issue 10): transitional. DingTalk and WeCom sign-in still come from signing/oauth.py, for
# connectors that offer no `identity` yet; once bot/platforms/dingtalk and bot/platforms/wecom give
# theirs (built from those halves of signing/oauth.py), this fallback and oauth's platform code go.
@dataclass(frozen=True)
class SettingsIdentity:
    """DingTalk / WeCom sign-in through signing/oauth.py's code exchange (signing page and dashboard)."""

    settings: Settings
    platform: oauth.Platform

    def authorize_url(self, redirect_uri: str, state: str) -> str:
        return oauth.authorize_url(self.settings, self.platform, redirect_uri, state)

    async def user_id(self, params: Mapping[str, str]) -> str:
        try:
            who = await oauth.confirm(self.settings, self.platform, code=params.get("code", ""),
                                      auth_code=params.get("authCode", ""))
        except oauth.IdentityError as exc:
            raise ConnectorIdentityError(exc.message) from exc
        return who.userid


def _legacy(settings: Settings, signer: Any) -> SignIn | None:
    needed = oauth.platform_for(settings, signer)
    if needed is None:
        return None
    return SignIn(needed[0], needed[1], SettingsIdentity(settings, needed[0]))
