"""Confirm who opened a signing link through the platform's own login (OAuth2), where one is configured.

DingTalk: `login.dingtalk.com/oauth2/auth` → code → `POST /v1.0/oauth2/userAccessToken` → `GET
/v1.0/contact/users/me` (unionId) → `POST oapi /topapi/user/getbyunionid` (userid). An in-app 免登 code
from `dd.requestAuthCode` is also accepted (`POST oapi /topapi/v2/user/getuserinfo`).
WeCom: `open.weixin.qq.com/connect/oauth2/authorize` (snsapi_base) → code → `GET /cgi-bin/auth/getuserinfo`.
Every base URL is a setting, so tests run against fake servers on 127.0.0.1. The userid that comes back is
compared with the signer's directory entry by the caller; a mismatch is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlencode

import aiohttp

from config.settings import Settings
from storage.models import Employee

Platform = Literal["dingtalk", "wecom"]
PLATFORM_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")  # a platform package's name (the cookie names one)
TIMEOUT = aiohttp.ClientTimeout(total=10)
_TOKEN_MARGIN = 300  # refresh app tokens this many seconds before they expire


class IdentityError(Exception):
    """The platform did not confirm an identity (bad/used code, API error, not a member)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Confirmed:
    platform: str  # any platform whose connector confirmed the signer (dingtalk, wecom here)
    userid: str

    @property
    def method(self) -> str:
        return f"{self.platform}_oauth"

    @property
    def identity(self) -> str:
        return f"{self.platform}:{self.userid}"


def configured(settings: Settings, platform: Platform) -> bool:
    if platform not in settings.platforms:
        return False
    if platform == "dingtalk":
        return bool(settings.dingtalk_client_id and settings.dingtalk_client_secret)
    return bool(settings.wecom_corp_id and settings.wecom_secret)


def platform_for(settings: Settings, signer: Employee) -> tuple[Platform, str] | None:
    """The platform (in PLATFORMS order) that must confirm this signer, with their userid; None: link only."""
    for name in settings.platforms:
        if name == "dingtalk" and signer.dingtalk_userid and configured(settings, "dingtalk"):
            return "dingtalk", signer.dingtalk_userid
        if name == "wecom" and signer.wecom_userid and configured(settings, "wecom"):
            return "wecom", signer.wecom_userid
    return None


def oauth_state(secret: bytes, nonce: str) -> str:
    """Binds the OAuth round trip to this link (WeCom allows [a-zA-Z0-9] only, ≤128 bytes)."""
    return hmac.new(secret, b"oauth-state." + nonce.encode(), hashlib.sha256).hexdigest()[:40]


def check_state(secret: bytes, nonce: str, state: str) -> bool:
    return hmac.compare_digest(oauth_state(secret, nonce), state or "")


def authorize_url(settings: Settings, platform: Platform, redirect_uri: str, state: str) -> str:
    if platform == "dingtalk":
        query = urlencode({"redirect_uri": redirect_uri, "response_type": "code",
                           "client_id": settings.dingtalk_client_id, "scope": "openid", "state": state,
                           "prompt": "consent"})
        return f"{settings.dingtalk_login_url}?{query}"
    query = urlencode({"appid": settings.wecom_corp_id, "redirect_uri": redirect_uri, "response_type": "code",
                       "scope": "snsapi_base", "state": state, "agentid": settings.wecom_agent_id})
    return f"{settings.wecom_oauth_url}?{query}#wechat_redirect"


# ---------------------------------------------------------------- app tokens (cached per app)

_tokens: dict[tuple[str, str, str], tuple[str, float]] = {}


def _cached(key: tuple[str, str, str]) -> str | None:
    hit = _tokens.get(key)
    if hit and hit[1] > time.monotonic():
        return hit[0]
    return None


def _store(key: tuple[str, str, str], token: str, expires_in: Any) -> None:
    try:
        life = float(expires_in)
    except (TypeError, ValueError):
        life = 7200.0
    _tokens[key] = (token, time.monotonic() + max(life - _TOKEN_MARGIN, 60.0))


async def _json(resp: aiohttp.ClientResponse, what: str) -> dict[str, Any]:
    try:
        data = await resp.json(content_type=None)
    except (aiohttp.ContentTypeError, ValueError) as exc:
        raise IdentityError(f"{what}: response is not JSON (HTTP {resp.status})") from exc
    if not isinstance(data, dict):
        raise IdentityError(f"{what}: unexpected response")
    if resp.status >= 400:
        raise IdentityError(f"{what}: HTTP {resp.status} {data.get('code') or ''} {data.get('message') or ''}".strip())
    return data


def _old_api_ok(data: dict[str, Any], what: str) -> dict[str, Any]:
    # Old DingTalk and WeCom APIs answer HTTP 200 with errcode != 0 on failure.
    if data.get("errcode", 0) != 0:
        raise IdentityError(f"{what}: errcode {data.get('errcode')} {data.get('errmsg') or data.get('sub_msg') or ''}")
    return data


async def dingtalk_app_token(settings: Settings, session: aiohttp.ClientSession) -> str:
    key = ("dingtalk", settings.dingtalk_api_base, settings.dingtalk_client_id)
    token = _cached(key)
    if token:
        return token
    secret = settings.dingtalk_client_secret.get_secret_value() if settings.dingtalk_client_secret else ""
    async with session.post(f"{settings.dingtalk_api_base}/v1.0/oauth2/accessToken",
                            json={"appKey": settings.dingtalk_client_id, "appSecret": secret}) as resp:
        data = await _json(resp, "DingTalk app token")
    token = data.get("accessToken")
    if not isinstance(token, str) or not token:
        raise IdentityError("DingTalk app token: no accessToken in the answer")
    _store(key, token, data.get("expireIn"))
    return token


async def wecom_app_token(settings: Settings, session: aiohttp.ClientSession) -> str:
    key = ("wecom", settings.wecom_api_base, settings.wecom_corp_id + "/" + settings.wecom_agent_id)
    token = _cached(key)
    if token:
        return token
    secret = settings.wecom_secret.get_secret_value() if settings.wecom_secret else ""
    async with session.get(f"{settings.wecom_api_base}/cgi-bin/gettoken",
                           params={"corpid": settings.wecom_corp_id, "corpsecret": secret}) as resp:
        data = _old_api_ok(await _json(resp, "WeCom app token"), "WeCom app token")
    token = data.get("access_token")
    if not isinstance(token, str) or not token:
        raise IdentityError("WeCom app token: no access_token in the answer")
    _store(key, token, data.get("expires_in"))
    return token


async def _dingtalk_oauth_userid(settings: Settings, session: aiohttp.ClientSession, code: str) -> str:
    secret = settings.dingtalk_client_secret.get_secret_value() if settings.dingtalk_client_secret else ""
    async with session.post(f"{settings.dingtalk_api_base}/v1.0/oauth2/userAccessToken", json={
        "clientId": settings.dingtalk_client_id, "clientSecret": secret, "code": code,
        "grantType": "authorization_code",
    }) as resp:
        user_token = (await _json(resp, "DingTalk user token")).get("accessToken")
    if not isinstance(user_token, str) or not user_token:
        raise IdentityError("DingTalk user token: no accessToken in the answer")
    async with session.get(f"{settings.dingtalk_api_base}/v1.0/contact/users/me",
                           headers={"x-acs-dingtalk-access-token": user_token}) as resp:
        union_id = (await _json(resp, "DingTalk users/me")).get("unionId")
    if not isinstance(union_id, str) or not union_id:
        raise IdentityError("DingTalk users/me: no unionId")
    app_token = await dingtalk_app_token(settings, session)
    async with session.post(f"{settings.dingtalk_oapi_base}/topapi/user/getbyunionid",
                            params={"access_token": app_token}, json={"unionid": union_id}) as resp:
        data = _old_api_ok(await _json(resp, "DingTalk getbyunionid"), "DingTalk getbyunionid")
    userid = (data.get("result") or {}).get("userid")
    if not isinstance(userid, str) or not userid:
        raise IdentityError("DingTalk: this account is not a member of the organisation")
    return userid


async def _dingtalk_authcode_userid(settings: Settings, session: aiohttp.ClientSession, code: str) -> str:
    app_token = await dingtalk_app_token(settings, session)
    async with session.post(f"{settings.dingtalk_oapi_base}/topapi/v2/user/getuserinfo",
                            params={"access_token": app_token}, json={"code": code}) as resp:
        data = _old_api_ok(await _json(resp, "DingTalk getuserinfo"), "DingTalk getuserinfo")
    userid = (data.get("result") or {}).get("userid")
    if not isinstance(userid, str) or not userid:
        raise IdentityError("DingTalk getuserinfo: no userid")
    return userid


async def _wecom_userid(settings: Settings, session: aiohttp.ClientSession, code: str) -> str:
    app_token = await wecom_app_token(settings, session)
    async with session.get(f"{settings.wecom_api_base}/cgi-bin/auth/getuserinfo",
                           params={"access_token": app_token, "code": code}) as resp:
        data = _old_api_ok(await _json(resp, "WeCom getuserinfo"), "WeCom getuserinfo")
    userid = data.get("userid") or data.get("UserId")  # the legacy spelling still appears
    if not isinstance(userid, str) or not userid:
        raise IdentityError("WeCom: the visitor is not a member of the organisation")
    return userid


async def confirm(settings: Settings, platform: Platform, *, code: str = "", auth_code: str = "",
                  session: aiohttp.ClientSession | None = None) -> Confirmed:
    """Exchange an OAuth code (or a DingTalk 免登 authCode) for the platform userid."""
    if not (code or auth_code) or len(code or auth_code) > 512:
        raise IdentityError("missing or oversized authorisation code")
    own = session is None
    session = session or aiohttp.ClientSession(timeout=TIMEOUT)
    try:
        if platform == "dingtalk":
            userid = (await _dingtalk_authcode_userid(settings, session, auth_code) if auth_code
                      else await _dingtalk_oauth_userid(settings, session, code))
        else:
            userid = await _wecom_userid(settings, session, code)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise IdentityError(f"{platform} unreachable: {exc}") from exc
    finally:
        if own:
            await session.close()
    return Confirmed(platform, userid)


# ---------------------------------------------------------------- the confirmed-identity cookie

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
