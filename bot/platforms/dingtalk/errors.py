"""What a DingTalk API answer means for the caller: retry later, or stop and tell HR what to fix.

`classify()` is pure (status + parsed body in, error or None out) so every code in the research
brief (§3) is tested without a server. Codes marked [3P] in the brief are best knowledge, not
confirmed against a tenant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The permission point each API needs, as the developer console ("权限管理") names it [3P], used
# when the error answer itself does not name the missing scope.
PERMISSIONS: dict[str, tuple[str, str]] = {
    "card.create": ("Card.Instance.Write", "互动卡片实例写权限"),
    "card.update": ("Card.Instance.Write", "互动卡片实例写权限"),
    "robot.oto": ("qyapi_robot_sendmsg", "企业内机器人发送消息权限"),
    "user.get": ("qyapi_get_member", "成员信息读权限"),
    "user.listid": ("qyapi_get_member", "成员信息读权限"),
    "department.get": ("qyapi_get_department_list", "通讯录部门信息读权限"),
    "department.listsub": ("qyapi_get_department_list", "通讯录部门信息读权限"),
}


class DingTalkError(Exception):
    retryable = False

    def __init__(self, message: str, *, api: str = "", code: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.api = api
        self.code = code
        self.status = status


class RetryableError(DingTalkError):
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class ThrottledError(RetryableError):
    """Too fast (per app+API QPS, global QPS, or the per-IP ban). Nothing was done; wait and resend."""


class TransientError(RetryableError):
    """5xx, timeout, connection trouble. `maybe_delivered`: the request may have been carried out
    (timeout after sending), so only an idempotent call (card with outTrackId) may be resent blindly."""

    def __init__(self, message: str, *, maybe_delivered: bool = False, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.maybe_delivered = maybe_delivered


class AuthError(DingTalkError):
    """The access token was refused; the client refetches it once, then reports ConfigurationError."""


class PermanentError(DingTalkError):
    """Retrying cannot help. `str(err)` is one bilingual line for HR: the cause and the fix."""

    def __init__(self, cause_zh: str, cause_en: str, fix_zh: str, fix_en: str, **kw: Any) -> None:
        self.cause_zh, self.cause_en, self.fix_zh, self.fix_en = cause_zh, cause_en, fix_zh, fix_en
        code = kw.get("code")
        tail = f" [{kw.get('api', '')} {code}]" if code else ""
        super().__init__(f"钉钉：{cause_zh}。请{fix_zh}。 / DingTalk: {cause_en}. Fix: {fix_en}.{tail}", **kw)


class PermissionDenied(PermanentError):
    def __init__(self, scope: str, scope_zh: str, **kw: Any) -> None:
        self.scope = scope
        super().__init__(
            f"应用缺少接口权限「{scope_zh}」（{scope}）",
            f"the app lacks the API permission {scope} ({scope_zh})",
            f"在钉钉开发者后台 → 应用 → 权限管理 中申请「{scope_zh}」（{scope}）并等待生效",
            f"request {scope} under Developer Console → your app → Permissions, then retry",
            **kw,
        )


class ConfigurationError(PermanentError):
    pass


class UnknownUser(PermanentError):
    def __init__(self, user_ids: list[str], **kw: Any) -> None:
        self.user_ids = user_ids
        who = ", ".join(user_ids) or "?"
        super().__init__(
            f"找不到用户 {who}（不在本组织或不在应用可见范围内）",
            f"user {who} not found (not in this org or outside the app's visible range)",
            "核对通讯录中的钉钉 userid，并在开发者后台把该成员加入应用的可用范围",
            "check the person's DingTalk userid in the directory and add them to the app's visible range",
            **kw,
        )


class BudgetExhausted(PermanentError):
    def __init__(self, **kw: Any) -> None:
        super().__init__(
            "本月接口调用次数已用完（标准版每月 10,000 次）",
            "the org's monthly API call quota is used up (10,000 a month on the standard edition)",
            "等待下月额度重置，或升级钉钉版本/购买调用量",
            "wait for next month's quota or upgrade the DingTalk edition",
            **kw,
        )


@dataclass(frozen=True)
class Answer:
    """An HTTP answer as far as classification needs it."""

    status: int
    body: Any  # parsed JSON, or the raw text when it was not JSON (an HTML error page)


def _config(api: str, code: str, status: int, cause: tuple[str, str], fix: tuple[str, str]) -> ConfigurationError:
    return ConfigurationError(cause[0], cause[1], fix[0], fix[1], api=api, code=code, status=status)


def _permission(api: str, code: str, status: int, body: dict[str, Any]) -> PermissionDenied:
    detail = body.get("accessdenieddetail") or {}
    scopes = detail.get("requiredScopes") if isinstance(detail, dict) else None
    scope, scope_zh = PERMISSIONS.get(api, ("?", "对应接口权限"))
    if scopes:
        scope = ", ".join(str(s) for s in scopes)
    return PermissionDenied(scope, scope_zh, api=api, code=code, status=status)


_CARD_CONFIG: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    "cardInstance.wrong": (("卡片模板不存在或未发布", "the card template does not exist or is not published"),
                           ("在卡片平台发布模板，并把模板 ID 填入 DINGTALK_CARD_TEMPLATE_ID",
                            "publish the template in the card platform and set DINGTALK_CARD_TEMPLATE_ID to its id")),
    "param.cardTemplateIdEmpty": (("未设置卡片模板 ID", "no card template id was given"),
                                  ("设置 DINGTALK_CARD_TEMPLATE_ID", "set DINGTALK_CARD_TEMPLATE_ID")),
    "chatbot.notFound": (("找不到机器人（robotCode 不对，或应用未开启机器人能力）",
                          "robot not found (wrong robotCode, or the app has no robot enabled)"),
                         ("在开发者后台为应用开启机器人并发布，核对 DINGTALK_ROBOT_CODE",
                          "enable and publish the app's robot, check DINGTALK_ROBOT_CODE")),
    "invalidClientIdOrSecret": (("应用的 Client ID 或 Client Secret 不对", "wrong app Client ID or Client Secret"),
                                ("核对 DINGTALK_CLIENT_ID / DINGTALK_CLIENT_SECRET（开发者后台 → 凭证与基础信息）",
                                 "check DINGTALK_CLIENT_ID / DINGTALK_CLIENT_SECRET "
                                 "(Developer Console → Credentials)")),
}

_OLD_API_USER_UNKNOWN = {60121, 60111, 33012}


def classify(api: str, answer: Answer) -> DingTalkError | None:
    """None for success; otherwise the error this answer means. Handles both API generations:
    new (`api.dingtalk.com`, HTTP status + `code`) and old (`oapi`, HTTP 200 + `errcode`)."""
    status, body = answer.status, answer.body
    if not isinstance(body, dict):
        text = str(body)[:200]
        if status >= 500 or status == 0:
            return TransientError(f"{api}: HTTP {status} {text!r}", api=api, status=status)
        if "punish" in text or status == 429:
            return ThrottledError(f"{api}: IP throttled {text!r}", retry_after=300, api=api, status=status)
        return TransientError(f"{api}: unexpected HTTP {status} {text!r}", api=api, status=status)
    if body.get("status") == 1111 or body.get("punish"):
        # The per-IP limit (10,000 calls / 20 s) bans the IP for 5 minutes.
        return ThrottledError(f"{api}: IP banned for 5 min", retry_after=300, api=api, status=status)
    if "errcode" in body:
        return _classify_old(api, status, body)
    if 200 <= status < 300:
        return None
    return _classify_new(api, status, body)


def _classify_new(api: str, status: int, body: dict[str, Any]) -> DingTalkError:
    code = str(body.get("code", ""))
    msg = str(body.get("message", ""))[:200]
    if "QpsLimit" in code or "QpmLimit" in code or code == "qps.exceed.limit":
        return ThrottledError(f"{api}: {code}", retry_after=1.0, api=api, code=code, status=status)
    if "ApiCountLimitForOrg" in code:
        return BudgetExhausted(api=api, code=code, status=status)
    if code == "InvalidAuthentication" or status == 401:
        return AuthError(f"{api}: {code} {msg}", api=api, code=code, status=status)
    if "AccessTokenPermissionDenied" in code or code.startswith("Forbidden.AccessDenied"):
        return _permission(api, code, status, body)
    if code in _CARD_CONFIG:
        cause, fix = _CARD_CONFIG[code]
        return _config(api, code, status, cause, fix)
    if status >= 500:
        return TransientError(f"{api}: HTTP {status} {code} {msg}", api=api, code=code, status=status)
    if status == 429:
        return ThrottledError(f"{api}: HTTP 429 {code}", retry_after=1.0, api=api, code=code, status=status)
    if "user" in code.lower() and ("notfound" in code.lower() or "notexist" in code.lower()):
        return UnknownUser([], api=api, code=code, status=status)
    return PermanentError(f"接口拒绝了请求（{code}：{msg}）", f"the API refused the request ({code}: {msg})",
                          "把这条信息转给管理员排查", "pass this message to the administrator",
                          api=api, code=code, status=status)


def _classify_old(api: str, status: int, body: dict[str, Any]) -> DingTalkError | None:
    try:
        errcode = int(body.get("errcode", 0))
    except (TypeError, ValueError):
        errcode = -2
    if errcode == 0 and status < 300:
        return None
    sub = str(body.get("sub_code", ""))
    msg = str(body.get("errmsg", body.get("sub_msg", "")))[:200]
    code = f"{errcode}/{sub}" if sub else str(errcode)
    if errcode in (90018, 90002) or sub in ("90018", "90002"):
        return ThrottledError(f"{api}: {code} {msg}", retry_after=1.0, api=api, code=code, status=status)
    if errcode == 90020 or sub == "90020":
        return BudgetExhausted(api=api, code=code, status=status)
    if errcode == -1 or status >= 500:
        return TransientError(f"{api}: {code} {msg}", api=api, code=code, status=status)
    if sub in ("40014", "42001") or errcode in (40014, 42001):
        return AuthError(f"{api}: {code} {msg}", api=api, code=code, status=status)
    if errcode == 60011 or sub == "60011":
        return _permission(api, code, status, body)
    if errcode == 60020 or sub == "60020":
        return _config(api, code, status,
                       ("服务器出口 IP 不在应用的白名单中", "the server's IP is not in the app's IP allow-list"),
                       ("在开发者后台 → 应用 → 开发管理 中把服务器出口 IP 加入白名单",
                        "add the server's outbound IP under Developer Console → your app → IP allow-list"))
    if errcode in _OLD_API_USER_UNKNOWN or (sub.isdigit() and int(sub) in _OLD_API_USER_UNKNOWN):
        return UnknownUser([], api=api, code=code, status=status)
    return PermanentError(f"接口拒绝了请求（{code}：{msg}）", f"the API refused the request ({code}: {msg})",
                          "把这条信息转给管理员排查", "pass this message to the administrator",
                          api=api, code=code, status=status)
