"""DingTalk sign-in for our web pages (signing page, step forms): who opened the page.

Two routes, both ending in the org userid the bot compares with its directory:
- OAuth in a browser: `login.dingtalk.com/oauth2/auth` → `code` → `POST /v1.0/oauth2/userAccessToken`
  → `GET /v1.0/contact/users/me` (unionId) → `POST oapi /topapi/user/getbyunionid` (userid);
- in the DingTalk client (免登): `dd.requestAuthCode` → `authCode` → `POST oapi /topapi/v2/user/getuserinfo`.
The old-API calls use the connector's shared app token; identity and contacts calls are exempt
from the monthly budget, so they are not counted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import aiohttp

from bot.platforms.dingtalk.api import DingTalkApi
from bot.platforms.dingtalk.config import DingTalkSettings
from bot.platforms.dingtalk.errors import DingTalkError
from chat.connector import IdentityError

CODE_MAX = 512


class DingTalkIdentity:
    def __init__(self, settings: DingTalkSettings, api: DingTalkApi) -> None:
        self.settings = settings
        self.api = api

    def authorize_url(self, redirect_uri: str, state: str) -> str:
        query = urlencode({"redirect_uri": redirect_uri, "response_type": "code",
                           "client_id": self.settings.client_id, "scope": "openid", "state": state,
                           "prompt": "consent"})
        return f"{self.settings.login_url}?{query}"

    async def user_id(self, params: Mapping[str, str]) -> str:
        auth_code = params.get("authCode") or params.get("auth_code") or ""
        code = params.get("code") or params.get("authcode") or ""
        given = auth_code or code
        if not given or len(given) > CODE_MAX:
            raise IdentityError("missing or oversized authorisation code")
        try:
            return await (self._by_auth_code(auth_code) if auth_code else self._by_oauth_code(code))
        except DingTalkError as exc:
            raise IdentityError(f"DingTalk did not confirm the code: {exc.code or type(exc).__name__}") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise IdentityError(f"DingTalk unreachable: {type(exc).__name__}") from None

    async def _json(self, resp: aiohttp.ClientResponse, what: str) -> dict[str, Any]:
        try:
            data = await resp.json(content_type=None)
        except ValueError:
            raise IdentityError(f"{what}: answer is not JSON (HTTP {resp.status})") from None
        if not isinstance(data, dict) or resp.status >= 400:
            code = data.get("code", "") if isinstance(data, dict) else ""
            raise IdentityError(f"{what}: HTTP {resp.status} {code}".strip())
        return data

    async def _by_oauth_code(self, code: str) -> str:
        s, session = self.settings, self.api.session
        async with session.post(f"{self.api.api_base}/v1.0/oauth2/userAccessToken", json={
            "clientId": s.client_id, "clientSecret": s.secret(), "code": code, "grantType": "authorization_code",
        }) as resp:
            user_token = (await self._json(resp, "DingTalk user token")).get("accessToken")
        if not isinstance(user_token, str) or not user_token:
            raise IdentityError("DingTalk user token: no accessToken in the answer")
        async with session.get(f"{self.api.api_base}/v1.0/contact/users/me",
                               headers={"x-acs-dingtalk-access-token": user_token}) as resp:
            union_id = (await self._json(resp, "DingTalk users/me")).get("unionId")
        if not isinstance(union_id, str) or not union_id:
            raise IdentityError("DingTalk users/me: no unionId")
        answer = await self.api.call("user.getbyunionid", "POST", "/topapi/user/getbyunionid",
                                     {"unionid": union_id}, old=True, counted=False)
        return self._userid(answer, "this account is not a member of the organisation")

    async def _by_auth_code(self, auth_code: str) -> str:
        answer = await self.api.call("user.getuserinfo", "POST", "/topapi/v2/user/getuserinfo",
                                     {"code": auth_code}, old=True, counted=False)
        return self._userid(answer, "getuserinfo answered without a userid")

    @staticmethod
    def _userid(answer: Mapping[str, Any], why: str) -> str:
        userid = (answer.get("result") or {}).get("userid")
        if not isinstance(userid, str) or not userid:
            raise IdentityError(f"DingTalk: {why}")
        return userid
