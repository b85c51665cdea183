"""WeCom web sign-in for our pages (signing page, step forms): OAuth `snsapi_base`.

`open.weixin.qq.com/connect/oauth2/authorize?appid=CORPID&…&scope=snsapi_base&agentid=…#wechat_redirect`
redirects silently inside WeCom to `redirect_uri?code=…&state=…`; the code (single use, 5 minutes)
becomes the member's userid through `GET /cgi-bin/auth/getuserinfo`. Non-members (an `openid`
instead of a `userid`), used or forged codes and an unreachable WeCom are all an `IdentityError`.
The redirect host must be one of the app's trusted domains (可信域名), port included, or WeCom
answers 50001.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import urlencode

from bot.platforms.wecom.api import WeComAPI, WeComError
from chat.connector import IdentityError

_STATE = re.compile(r"^[A-Za-z0-9]{1,128}$")  # WeCom's alphabet for `state`
MAX_CODE = 512


class WeComIdentity:
    def __init__(self, api: Callable[[], Awaitable[WeComAPI]], *, corp_id: str, agent_id: str,
                 oauth_url: str) -> None:
        self._api = api
        self._corp_id = corp_id
        self._agent_id = agent_id
        self._oauth_url = oauth_url

    def authorize_url(self, redirect_uri: str, state: str) -> str:
        if not _STATE.fullmatch(state):
            raise ValueError("a WeCom OAuth state is 1–128 letters and digits")
        query = urlencode({"appid": self._corp_id, "redirect_uri": redirect_uri, "response_type": "code",
                           "scope": "snsapi_base", "state": state, "agentid": self._agent_id})
        return f"{self._oauth_url}?{query}#wechat_redirect"

    async def user_id(self, params: Mapping[str, str]) -> str:
        code = params.get("code", "")
        if not code or len(code) > MAX_CODE:
            raise IdentityError("missing or oversized authorisation code")
        api = await self._api()
        try:
            return await api.userid_from_code(code)
        except WeComError as exc:
            # The message names the WeCom error (40029: a used or forged code), never the code.
            raise IdentityError(f"WeCom did not confirm the visitor: {exc.message_en}") from None
