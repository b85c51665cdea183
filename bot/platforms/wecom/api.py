"""Our own aiohttp client for the WeCom REST API (wechatpy's is synchronous, retries a bad token
without bound and has no template-card calls).

- One access token per app, cached and refreshed 5 minutes early; concurrent callers share one
  fetch. WeCom may revoke a token early: 40014/42001 refetch once and retry once.
- -1 (system busy) is retried up to 3 times with back-off, as WeCom advises.
- 45009/45033 (limits) raise `Throttled`: the relay backs off; spinning would extend the block.
- Configuration problems raise `Permanent` with a message naming the cause and the fix, for HR.
- No URL, token or secret ever reaches an exception message or a log line (the token rides in
  the query string, so aiohttp's own errors, which quote the URL, are never passed on).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

log = logging.getLogger(__name__)

TOKEN_MARGIN = 300.0
BUSY_RETRIES = 3
_TOKEN_ERRORS = frozenset({40014, 42001})
_THROTTLED = frozenset({45009, 45033})

# errcode -> (中文, English): the cause and what to do. Retrying cannot help any of these.
PERMANENT: Mapping[int, tuple[str, str]] = {
    40001: ("企业微信应用的 Secret 无效（40001）："
            "请在管理后台“应用管理 → 本应用”核对 WECOM_SECRET（可能已重置，或应用已停用）。",
            "The WeCom app secret is invalid (40001): check WECOM_SECRET in the admin console "
            "(reset, or app disabled)."),
    40013: ("企业 ID 无效（40013）：请核对 WECOM_CORP_ID（“我的企业 → 企业信息”）。",
            "Invalid corp id (40013): check WECOM_CORP_ID (My company → Company info)."),
    40056: ("应用 AgentId 无效（40056）：请核对 WECOM_AGENT_ID。", "Invalid AgentId (40056): check WECOM_AGENT_ID."),
    43012: ("应用尚未设置“接收消息”的回调 URL（43012），不能发送可交互卡片："
            "请在应用的“接收消息 → 设置API接收”中填写回调地址。",
            "The app has no callback URL (43012), so it cannot send interactive cards: "
            "set it under Receive messages."),
    60020: ("企业微信拒绝了来自本服务器 IP 的调用（60020）：请在“应用管理 → 本应用 → 企业可信IP”中加入本服务器的出口 IP"
            "（需先配置可信域名）。",
            "WeCom refused calls from this server's IP (60020): add the server's egress IP to the app's trusted IPs "
            "(a trusted domain must be set first)."),
    81013: ("收件人不在应用的可见范围内，或不是企业成员（81013）："
            "请在应用的“可见范围”中加入该成员或其部门，并核对通讯录中的企业微信账号。",
            "The recipient is outside the app's visibility or not a member (81013): add them (or their department) "
            "to the app's visible range and check their WeCom userid in the directory."),
    42014: ("卡片任务 ID 无效（42014）。", "Invalid card task id (42014)."),
    42015: ("卡片不属于本应用（42015）。", "The card belongs to another app (42015)."),
    42016: ("卡片任务 ID 不存在（42016）。", "Unknown card task id (42016)."),
    42017: ("卡片按钮 key 无效（42017）。", "Invalid card button key (42017)."),
    42018: ("卡片任务 ID 已被使用（42018）。", "Card task id already used (42018)."),
}


class WeComError(Exception):
    def __init__(self, code: int | None, message: str, message_en: str = "") -> None:
        super().__init__(message_en or message)
        self.code = code
        self.message = message
        self.message_en = message_en or message


class Transient(WeComError):
    """Worth retrying later: system busy after our retries, HTTP 5xx, timeouts, broken connections."""


class Throttled(Transient):
    """A frequency limit (45009/45033): back off for at least `retry_after` seconds."""

    def __init__(self, code: int, message: str, retry_after: float = 60.0) -> None:
        super().__init__(code, message)
        self.retry_after = retry_after


class Permanent(WeComError):
    """Retrying cannot help: configuration, permission or recipient problems."""


@dataclass(frozen=True)
class SendResult:
    msgid: str
    response_code: str | None  # only for cards that can be updated (button, vote, multiple)
    invalid_users: tuple[str, ...] = ()


class WeComAPI:
    def __init__(self, session: aiohttp.ClientSession, *, base_url: str, corp_id: str, secret: str,
                 agent_id: int, timeout: float = 10.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 on_call: Callable[[str], None] | None = None) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._corp_id = corp_id
        self._secret = secret
        self.agent_id = agent_id
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._clock = clock
        self._sleep = sleep
        self._on_call = on_call  # counts API calls (budget, benches)
        self._token: str | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------------ token

    async def token(self, *, replace: str | None = None) -> str:
        """The cached token; `replace` names one WeCom refused, which is then fetched anew unless
        another caller already did (so a burst of 40014 answers costs one gettoken)."""
        async with self._lock:
            if self._token and self._clock() < self._expires and self._token != replace:
                return self._token
            data = await self._http("GET", "/cgi-bin/gettoken", params={"corpid": self._corp_id,
                                                                       "corpsecret": self._secret})
            code = int(data.get("errcode", 0) or 0)
            if code:
                raise self._error(code, str(data.get("errmsg", "")))
            token = data.get("access_token")
            if not isinstance(token, str) or not token:
                raise Transient(None, "gettoken answered without a token")
            self._token = token
            self._expires = self._clock() + float(data.get("expires_in", 7200)) - TOKEN_MARGIN
            return token

    # ------------------------------------------------------------------ plumbing

    async def _http(self, method: str, path: str, *, params: Mapping[str, Any],
                    json: Mapping[str, Any] | None = None) -> dict[str, Any]:
        if self._on_call:
            self._on_call(path)
        try:
            async with self._session.request(method, self._base + path, params=params, json=json,
                                             timeout=self._timeout) as resp:
                if resp.status >= 500:
                    raise Transient(None, f"HTTP {resp.status} from {path}")
                if resp.status != 200:
                    raise Permanent(None, f"HTTP {resp.status} from {path}")
                data = await resp.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise Transient(None, f"{path}: {type(exc).__name__}") from None
        except ValueError:
            raise Transient(None, f"{path}: answer is not JSON") from None
        if not isinstance(data, dict):
            raise Transient(None, f"{path}: answer is not a JSON object")
        return data

    def _error(self, code: int, errmsg: str) -> WeComError:
        if code in _THROTTLED:
            return Throttled(code, f"WeCom limit reached ({code}): {errmsg}")
        if code == -1:
            return Transient(code, "WeCom is busy (-1)")
        zh, en = PERMANENT.get(code, (f"企业微信返回错误 {code}：{errmsg}", f"WeCom error {code}: {errmsg}"))
        return Permanent(code, zh, en)

    async def call(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                   json: Mapping[str, Any] | None = None) -> dict[str, Any]:
        refetched = False
        busy = 0
        while True:
            token = await self.token()
            data = await self._http(method, path, params={**(params or {}), "access_token": token}, json=json)
            code = int(data.get("errcode", 0) or 0)
            if code == 0:
                return data
            if code in _TOKEN_ERRORS and not refetched:
                refetched = True
                await self.token(replace=token)
                continue
            if code == -1 and busy < BUSY_RETRIES:
                busy += 1
                await self._sleep(0.2 * 2 ** (busy - 1))
                continue
            raise self._error(code, str(data.get("errmsg", "")))

    # ------------------------------------------------------------------ messages

    async def send(self, touser: list[str], msg: Mapping[str, Any]) -> SendResult:
        body = {"touser": "|".join(touser), "agentid": self.agent_id, **msg}
        data = await self.call("POST", "/cgi-bin/message/send", json=body)
        invalid = tuple(u for u in str(data.get("invaliduser", "") or "").split("|") if u)
        return SendResult(msgid=str(data.get("msgid", "")), response_code=data.get("response_code") or None,
                          invalid_users=invalid)

    async def send_template_card(self, touser: list[str], card: Mapping[str, Any]) -> SendResult:
        return await self.send(touser, {"msgtype": "template_card", "template_card": dict(card)})

    async def send_text(self, touser: list[str], content: str) -> SendResult:
        return await self.send(touser, {"msgtype": "text", "text": {"content": content}})

    async def send_markdown(self, touser: list[str], content: str) -> SendResult:
        return await self.send(touser, {"msgtype": "markdown", "markdown": {"content": content}})

    async def update_template_card(self, userids: list[str], response_code: str, *,
                                   card: Mapping[str, Any] | None = None, replace_name: str | None = None) -> None:
        """Change a delivered card in place; `response_code` works once, within 72 hours."""
        if (card is None) == (replace_name is None):
            raise ValueError("give either a whole card or a replacement button name")
        body: dict[str, Any] = {"userids": userids, "partyids": [], "tagids": [], "atall": 0,
                                "agentid": self.agent_id, "response_code": response_code}
        if card is not None:
            body["template_card"] = dict(card)
        else:
            body["button"] = {"replace_name": replace_name}
        await self.call("POST", "/cgi-bin/message/update_template_card", json=body)

    async def recall(self, msgid: str) -> None:
        """Withdraw a message sent within the last 24 hours (a card replaced by a fresh one)."""
        await self.call("POST", "/cgi-bin/message/recall", json={"msgid": msgid})

    # ------------------------------------------------------------------ people

    async def user_get(self, userid: str) -> dict[str, Any]:
        return await self.call("GET", "/cgi-bin/user/get", params={"userid": userid})

    async def department_list(self) -> list[dict[str, Any]]:
        data = await self.call("GET", "/cgi-bin/department/list")
        return [d for d in data.get("department", []) if isinstance(d, dict)]

    async def user_list(self, department_id: int) -> list[dict[str, Any]]:
        """Members of one department (not its children), with position and direct_leader."""
        data = await self.call("GET", "/cgi-bin/user/list", params={"department_id": department_id,
                                                                   "fetch_child": 0})
        return [u for u in data.get("userlist", []) if isinstance(u, dict)]

    async def userid_from_code(self, code: str) -> str:
        """The web sign-in (OAuth snsapi_base) code -> the member's userid; non-members are refused."""
        data = await self.call("GET", "/cgi-bin/auth/getuserinfo", params={"code": code})
        userid = data.get("userid") or data.get("UserId")
        if not isinstance(userid, str) or not userid:
            raise Permanent(None, "该账号不是本企业成员。", "Not a member of this company.")
        return userid
