"""Our own asyncio client for the DingTalk OpenAPI (the SDK's helpers are sync `requests` calls
with no timeout and would block the event loop).

Every call: paced per API (`RateLimits`), counted against the monthly budget (`CallCounter`),
authorised with the shared app token (`TokenCache`), bounded by a timeout, and its answer
classified (`errors.classify`). Throttling and transient failures are retried here a few times
with back-off; what is still failing is raised for the caller's outbox to reschedule. Permanent
errors are raised at once, never retried.

Base URLs are arguments so tests aim the real code at a fake DingTalk on 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from bot.platforms.dingtalk.errors import (
    Answer,
    AuthError,
    ConfigurationError,
    DingTalkError,
    PermanentError,
    ThrottledError,
    TransientError,
    UnknownUser,
    classify,
)
from bot.platforms.dingtalk.ratelimit import CallCounter, RateLimits, month_key
from bot.platforms.dingtalk.token import TokenCache

log = logging.getLogger(__name__)

API_BASE = "https://api.dingtalk.com"
OAPI_BASE = "https://oapi.dingtalk.com"
OTO_BATCH = 20  # userIds per batchSend (the docs also say 100; 20 is the safe reading)


@dataclass(frozen=True)
class AppCredentials:
    client_id: str  # AppKey
    client_secret: str = field(repr=False)  # never in a repr, a log line or an exception
    robot_code: str = ""  # an internal app's robotCode is its AppKey

    @property
    def robot(self) -> str:
        return self.robot_code or self.client_id


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4  # per call, including the first
    base: float = 0.5  # transient back-off: base, 2*base, ... capped, with jitter
    cap: float = 8.0
    throttle_wait: float = 1.0  # the limits doc: "wait 1 s, then retry"
    max_wait: float = 30.0  # a longer server hint (the 5-minute IP ban) goes back to the caller

    def delay(self, attempt: int, err: DingTalkError) -> float:
        if isinstance(err, ThrottledError):
            return self.throttle_wait * (1 + random.random() / 2) * attempt
        return min(self.cap, self.base * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)


@dataclass(frozen=True)
class CardDelivery:
    out_track_id: str
    already_existed: bool = False  # a resend found the card made by an earlier attempt
    results: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class OtoResult:
    process_query_key: str
    invalid: tuple[str, ...] = ()
    filtered: tuple[str, ...] = ()


@dataclass(frozen=True)
class DingTalkUser:
    userid: str
    name: str
    title: str = ""
    dept_ids: tuple[int, ...] = ()
    manager_userid: str = ""
    unionid: str = ""
    active: bool = True
    leader_in_depts: tuple[int, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Department:
    dept_id: int
    name: str
    parent_id: int | None = None
    manager_userids: tuple[str, ...] = ()


def _duplicate_track_id(err: DingTalkError) -> bool:
    # [unconfirmed] what createAndDeliver answers for an outTrackId it has seen; any code that
    # names the outTrackId as existing/repeated means our earlier attempt made the card.
    code = err.code.lower()
    return "outtrackid" in code and any(w in code for w in ("exist", "repeat", "duplicat"))


class DingTalkApi:
    def __init__(
        self,
        creds: AppCredentials,
        *,
        api_base: str = API_BASE,
        oapi_base: str = OAPI_BASE,
        timeout: float = 10.0,
        limits: RateLimits | None = None,
        counter: CallCounter | None = None,
        retry: RetryPolicy | None = None,
        session: aiohttp.ClientSession | None = None,
        token_margin: float = 300.0,
    ) -> None:
        self.creds = creds
        self.api_base = api_base.rstrip("/")
        self.oapi_base = oapi_base.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.limits = limits or RateLimits()
        self.counter = counter
        self.retry = retry or RetryPolicy()
        self._session = session
        self._own_session = session is None
        self.tokens = TokenCache(self._fetch_token, margin=token_margin, clock=self.limits.clock)

    def __repr__(self) -> str:
        return f"DingTalkApi(client_id={self.creds.client_id!r}, api_base={self.api_base!r})"

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> DingTalkApi:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- token ------------------------------------------------------------------------------

    async def _fetch_token(self) -> tuple[str, float]:
        body = {"appKey": self.creds.client_id, "appSecret": self.creds.client_secret}
        try:
            answer = await self._http("POST", f"{self.api_base}/v1.0/oauth2/accessToken", body, {}, None)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise TransientError(f"token: {type(exc).__name__}", api="token") from None
        err = classify("token", answer)
        if isinstance(err, AuthError) or (err is not None and answer.status in (400, 401, 403)
                                          and not err.retryable):
            raise ConfigurationError(
                "应用的 Client ID 或 Client Secret 不对", "wrong app Client ID or Client Secret",
                "核对 DINGTALK_CLIENT_ID / DINGTALK_CLIENT_SECRET（开发者后台 → 凭证与基础信息）",
                "check DINGTALK_CLIENT_ID / DINGTALK_CLIENT_SECRET (Developer Console → Credentials)",
                api="token", code=err.code, status=answer.status)
        if err is not None:
            raise err
        try:
            return str(answer.body["accessToken"]), float(answer.body.get("expireIn", 7200))
        except (KeyError, TypeError):
            raise TransientError("token: answer without accessToken", api="token") from None

    # -- transport --------------------------------------------------------------------------

    async def _http(self, method: str, url: str, body: Any, headers: dict[str, str],
                    params: dict[str, str] | None) -> Answer:
        async with self.session.request(method, url, json=body, headers=headers, params=params,
                                        timeout=self.timeout) as resp:
            text = await resp.text()
        try:
            parsed: Any = json.loads(text) if text else {}
        except ValueError:
            parsed = text
        return Answer(resp.status, parsed)

    async def _attempt(self, api: str, method: str, url: str, body: Any, token: str, old: bool,
                       counted: bool) -> tuple[dict[str, Any], DingTalkError | None]:
        headers = {} if old else {"x-acs-dingtalk-access-token": token}
        params = {"access_token": token} if old else None
        if counted and self.counter is not None:
            try:
                await self.counter.record(api, month_key(datetime.now(UTC)))
            except Exception:
                log.exception("dingtalk: call counter failed (the call goes ahead)")
        try:
            answer = await self._http(method, url, body, headers, params)
        except (TimeoutError, aiohttp.ClientError) as exc:
            # A refused connection never reached DingTalk; anything later may have.
            sent = not isinstance(exc, aiohttp.ClientConnectorError)
            return {}, TransientError(f"{api}: {type(exc).__name__}", maybe_delivered=sent, api=api)
        err = classify(api, answer)
        if err is None:
            log.debug("dingtalk %s: HTTP %s", api, answer.status)
        return (answer.body if isinstance(answer.body, dict) else {}), err

    async def call(self, api: str, method: str, path: str, body: Any = None, *, old: bool = False,
                   counted: bool = True, idempotent: bool = True) -> dict[str, Any]:
        """One API call with pacing, token, retries and classification; the parsed JSON answer.

        `old`: the oapi host with the token in the query (topapi); else api host, token header.
        `idempotent`: may be resent after a timeout that may have reached the server.
        """
        url = (self.oapi_base if old else self.api_base) + path
        attempt = 0
        auth_retried = False
        while True:
            attempt += 1
            await self.limits.acquire(api)
            token = ""
            err: DingTalkError | None
            try:
                token = await self.tokens.get()
            except (ThrottledError, TransientError) as exc:  # the token endpoint itself had trouble
                err = exc
            else:
                answer, err = await self._attempt(api, method, url, body, token, old, counted)
                if err is None:
                    return answer
            log.info("dingtalk %s attempt %d: %s", api, attempt, err)
            if isinstance(err, AuthError):
                if auth_retried:
                    raise ConfigurationError(
                        "新获取的 access token 仍被拒绝", "a freshly fetched access token was refused too",
                        "核对应用凭证，并确认应用已发布", "check the app credentials and that the app is published",
                        api=api, code=err.code, status=err.status)
                auth_retried = True
                self.tokens.invalidate(token)
                attempt -= 1  # a stale token is not the API failing
                continue
            if isinstance(err, ThrottledError):
                self.limits.bucket(api).hold(min(err.retry_after or self.retry.throttle_wait,
                                                 self.retry.throttle_wait))
            retryable = isinstance(err, ThrottledError | TransientError)
            blind_resend = isinstance(err, TransientError) and err.maybe_delivered and not idempotent
            too_long = getattr(err, "retry_after", None) is not None and err.retry_after > self.retry.max_wait  # type: ignore[attr-defined]
            if not retryable or blind_resend or too_long or attempt >= self.retry.attempts:
                raise err
            await self.limits.clock.sleep(self.retry.delay(attempt, err))

    # -- cards ------------------------------------------------------------------------------

    async def create_and_deliver_card(
        self, template_id: str, out_track_id: str, user_id: str, public: Mapping[str, str],
        private: Mapping[str, Mapping[str, str]] | None = None,
    ) -> CardDelivery:
        """An interactive card in the robot's 1:1 chat with `user_id`, calling back over Stream.

        `out_track_id` is ours (the outbox card id, ≤ 64 chars): a resend with the same id must
        not make a second card, which is why this call is idempotent and retried after timeouts.
        """
        if not template_id:
            raise ConfigurationError("未设置卡片模板 ID", "no card template id is set",
                                     "设置 DINGTALK_CARD_TEMPLATE_ID", "set DINGTALK_CARD_TEMPLATE_ID",
                                     api="card.create")
        if not out_track_id or len(out_track_id) > 64:
            raise ValueError("outTrackId must be 1..64 characters")
        body: dict[str, Any] = {
            "cardTemplateId": template_id,
            "outTrackId": out_track_id,
            "callbackType": "STREAM",
            "openSpaceId": f"dtv1.card//IM_ROBOT.{user_id}",
            "imRobotOpenSpaceModel": {"supportForward": False},
            "imRobotOpenDeliverModel": {"spaceType": "IM_ROBOT", "robotCode": self.creds.robot},
            "userIdType": 1,
            "cardData": {"cardParamMap": dict(public)},
        }
        if private:
            body["privateData"] = {uid: {"cardParamMap": dict(m)} for uid, m in private.items()}
        try:
            answer = await self.call("card.create", "POST", "/v1.0/card/instances/createAndDeliver", body)
        except PermanentError as err:
            if _duplicate_track_id(err):
                return CardDelivery(out_track_id, already_existed=True)
            raise
        result = answer.get("result") or {}
        results = tuple(r for r in result.get("deliverResults") or () if isinstance(r, dict))
        failed = [r for r in results if r.get("success") is False]
        if failed:
            msg = str(failed[0].get("errorMsg", ""))[:200]
            raise PermanentError(f"卡片已创建但未送达（{msg}）", f"the card was created but not delivered ({msg})",
                                 "确认该成员在应用可用范围内且机器人已发布", "check the person is in the app's "
                                 "visible range and the robot is published", api="card.create", code="deliver")
        return CardDelivery(str(result.get("outTrackId") or out_track_id), results=results)

    async def update_card(self, out_track_id: str, public: Mapping[str, str],
                          private: Mapping[str, Mapping[str, str]] | None = None, *, by_key: bool = True) -> None:
        """Change a delivered card in place. `by_key`: only the given variables change."""
        body: dict[str, Any] = {
            "outTrackId": out_track_id,
            "cardData": {"cardParamMap": dict(public)},
            "cardUpdateOptions": {"updateCardDataByKey": by_key, "updatePrivateDataByKey": by_key},
            "userIdType": 1,
        }
        if private:
            body["privateData"] = {uid: {"cardParamMap": dict(m)} for uid, m in private.items()}
        await self.call("card.update", "PUT", "/v1.0/card/instances", body)

    # -- robot 1:1 messages -----------------------------------------------------------------

    async def send_oto(self, user_ids: list[str], msg_key: str, msg_param: Mapping[str, Any]) -> list[OtoResult]:
        """Robot 1:1 message to each user, 20 per request; one result per request, with the userids
        DingTalk did not know (`invalid`). Users DingTalk flow-controlled are resent (only them)
        after a wait; if they stay flow-controlled a ThrottledError says so. Not
        idempotent: a timeout after sending is raised, not resent (a second notice is worse than
        a late one only for the caller to judge)."""
        out: list[OtoResult] = []
        for i in range(0, len(user_ids), OTO_BATCH):
            out.append(await self._send_oto_batch(user_ids[i:i + OTO_BATCH], msg_key, msg_param))
        return out

    async def _send_oto_batch(self, users: list[str], msg_key: str, msg_param: Mapping[str, Any]) -> OtoResult:
        pending = list(users)
        invalid: list[str] = []
        filtered: list[str] = []
        key = ""
        for attempt in range(1, self.retry.attempts + 1):
            body = {"robotCode": self.creds.robot, "userIds": pending, "msgKey": msg_key,
                    "msgParam": json.dumps(msg_param, ensure_ascii=False)}
            answer = await self.call("robot.oto", "POST", "/v1.0/robot/oToMessages/batchSend", body,
                                     idempotent=False)
            key = key or str(answer.get("processQueryKey", ""))
            invalid += [str(u) for u in answer.get("invalidStaffIdList") or ()]
            filtered += [str(u) for u in answer.get("filteredStaffIdList") or ()]
            pending = [str(u) for u in answer.get("flowControlledStaffIdList") or ()]
            if not pending:
                break
            self.limits.bucket("robot.oto").hold(self.retry.throttle_wait)
            if attempt < self.retry.attempts:
                await self.limits.clock.sleep(self.retry.delay(attempt, ThrottledError("")))
        if pending:
            raise ThrottledError(f"robot.oto: still flow-controlled: {len(pending)} users",
                                 retry_after=self.retry.throttle_wait, api="robot.oto", code="flowControlled")
        return OtoResult(key, tuple(invalid), tuple(filtered))

    async def _send_one(self, user_id: str, msg_key: str, msg_param: Mapping[str, Any]) -> OtoResult:
        (result,) = await self.send_oto([user_id], msg_key, msg_param)
        if result.invalid:
            raise UnknownUser(list(result.invalid), api="robot.oto", code="invalidStaffIdList")
        return result

    async def send_text(self, user_id: str, text: str) -> OtoResult:
        """Plain text to one person; UnknownUser if DingTalk does not know the userid."""
        return await self._send_one(user_id, "sampleText", {"content": text})

    async def send_markdown(self, user_id: str, title: str, text: str) -> OtoResult:
        return await self._send_one(user_id, "sampleMarkdown", {"title": title, "text": text})

    # -- directory (old API; contacts calls are exempt from the monthly budget) -------------

    async def get_user(self, userid: str) -> DingTalkUser:
        try:
            answer = await self.call("user.get", "POST", "/topapi/v2/user/get",
                                     {"userid": userid, "language": "zh_CN"}, old=True, counted=False)
        except UnknownUser as err:
            raise UnknownUser([userid], api=err.api, code=err.code, status=err.status) from None
        r = answer.get("result") or {}
        return DingTalkUser(
            userid=str(r.get("userid", userid)), name=str(r.get("name", "")), title=str(r.get("title", "")),
            dept_ids=tuple(int(d) for d in r.get("dept_id_list") or ()),
            manager_userid=str(r.get("manager_userid") or ""), unionid=str(r.get("unionid") or ""),
            active=bool(r.get("active", True)),
            leader_in_depts=tuple(int(x["dept_id"]) for x in r.get("leader_in_dept") or ()
                                  if isinstance(x, dict) and x.get("leader")),
            raw=r,
        )

    async def list_sub_departments(self, dept_id: int = 1) -> list[Department]:
        """Direct children of `dept_id` (1 = the org root)."""
        answer = await self.call("department.listsub", "POST", "/topapi/v2/department/listsub",
                                 {"dept_id": dept_id, "language": "zh_CN"}, old=True, counted=False)
        return [Department(int(d["dept_id"]), str(d.get("name", "")), _int_or_none(d.get("parent_id")))
                for d in answer.get("result") or () if isinstance(d, dict)]

    async def get_department(self, dept_id: int) -> Department:
        answer = await self.call("department.get", "POST", "/topapi/v2/department/get",
                                 {"dept_id": dept_id, "language": "zh_CN"}, old=True, counted=False)
        r = answer.get("result") or {}
        return Department(int(r.get("dept_id", dept_id)), str(r.get("name", "")), _int_or_none(r.get("parent_id")),
                          tuple(str(u) for u in r.get("dept_manager_userid_list") or ()))

    async def list_user_ids(self, dept_id: int) -> list[str]:
        answer = await self.call("user.listid", "POST", "/topapi/user/listid", {"dept_id": dept_id},
                                 old=True, counted=False)
        return [str(u) for u in (answer.get("result") or {}).get("userid_list") or ()]

    async def walk_departments(self, root: int = 1) -> list[Department]:
        """Every department under `root` (breadth first), for a directory sync."""
        out: list[Department] = []
        queue = [root]
        while queue:
            children = await self.list_sub_departments(queue.pop(0))
            out += children
            queue += [d.dept_id for d in children]
        return out


def _int_or_none(v: Any) -> int | None:
    try:
        return int(v) if v is not None else None
    except (TypeError, ValueError):
        return None

