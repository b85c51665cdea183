"""A step's web pages, opened from a card: the form for inputs a platform's card cannot hold, and the
step's details page.

GET  /form/{token}                   the form: the card's button and its inputs, for the card's holder
POST /form/{token}                   the submission, handed to the router as a tap on that card by that
                                     holder (same hygiene, dedup, holder check, form validation, flow lock,
                                     audit and outbox as a tap in the emulator or on a platform's card)
GET  /view/{token}                   the step's details; the holder's first opening records the step viewed
GET  /{form|view}/{token}/oauth/{p}  platform sign-in return, as on the signing page

Tokens (signing.links, purposes "form" and "view") bind case, step, holder and expiry; a form's token
also binds the action and the card. A form link is single use (`FormLink.used_at`, set once the
router accepted the submission; a claim with a lease keeps two submissions of one link from both
going on). Every refusal changes nothing and says why, in Chinese by default (`?lang=en`: English).

Cross-site requests: the POST must come from our own page: `Sec-Fetch-Site` other than same-origin
or none, or an `Origin` that is not this server, is refused; and the form carries a value that must
equal the HttpOnly, SameSite=Strict cookie its page set (double submit), which another site can
neither read nor make the browser send.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, quote, urlsplit

from aiohttp import web
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q

from cards import webpage
from cards.model import Button, Card
from cases.service import CaseService
from chat import presentation
from chat.appkeys import SERVICE, SETTINGS
from chat.connector import CardAction, Dispatch
from config.settings import Settings
from handlers import signin
from handlers.cardview import CardRenderer
from handlers.signing_web import HEADERS as SIGNING_HEADERS
from signing.links import LinkError, TokenClaims, read_token
from storage import cardids, hotpath
from storage.models import Case, Employee, FormLink, OutboxMessage
from workflow.events import Viewed
from workflow.model import viewer_mark

log = logging.getLogger("handlers.stepforms")
# What every connector hands its events to (bot.inbound.Inbound.dispatch), handed down by the app
# factory: a form submission is dispatched exactly as a platform's card action is.
DISPATCH = web.AppKey("stepform_dispatch", Dispatch)  # type: ignore[arg-type]

MAX_FORM_BODY = 64 * 1024  # a few fields of at most 2,000 characters each, percent-encoded
MAX_FIELDS = 32
CLAIM_LEASE = timedelta(seconds=60)
IDENTITY_COOKIE_SECONDS = 1800
# The signing pages' headers, but the form's own POST must carry an Origin we can check: with
# "no-referrer" browsers send `Origin: null` for it. "same-origin" still sends no token to anyone else.
HEADERS = {**SIGNING_HEADERS, "Referrer-Policy": "same-origin"}


class Refused(Exception):
    def __init__(self, status: int, code: str, zh: str, en: str) -> None:
        super().__init__(en)
        self.status, self.code, self.zh, self.en = status, code, zh, en

    def text(self, lang: str) -> str:
        return self.en if lang == "en" else self.zh


LINK_ERRORS = {
    "malformed": (400, "链接不完整或格式有误，请从消息卡片重新打开。",
                  "The link is incomplete or malformed; open it again from the card."),
    "tampered": (403, "链接无效（签名校验失败），请从消息卡片重新打开。",
                 "The link is not valid (its signature does not match); open it again from the card."),
    "expired": (410, "链接已过期，请在卡片上重新打开，或联系人事（HR）。",
                "The link has expired; open it again from the card, or ask HR."),
}
USED = Refused(410, "used", "该表单已提交过，链接不能重复使用。",
               "This form was already submitted; the link cannot be used again.")
IN_PROGRESS = Refused(409, "in_progress", "该表单正在提交中，请勿重复提交。",
                      "This form is being submitted; please wait.")


def _now() -> datetime:
    return datetime.now(UTC)


def _lang(request: web.Request, settings: Settings, wanted: str | None = None) -> str:
    lang = wanted or request.query.get("lang")
    return lang if lang in ("zh", "en") else settings.language


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(status=status, text=text, content_type="text/html", headers=HEADERS)


def _refused(exc: Refused, lang: str) -> web.Response:
    title = webpage.t(lang, "无法打开", "Cannot open")
    return _html(webpage.notice_page(title, exc.text(lang), lang), exc.status)


def _claims(settings: Settings, token: str, purpose: str) -> TokenClaims:
    try:
        return read_token(settings.secret_bytes(), token, _now(), purpose=purpose)
    except LinkError as exc:
        status, zh, en = LINK_ERRORS[exc.code]
        raise Refused(status, exc.code, zh, en) from None


async def _case_and_holder(claims: TokenClaims) -> tuple[Case, Employee]:
    # The hand-written reads the router's own path uses (storage.hotpath): the ORM's cost more here.
    conn = hotpath.default_conn()
    case = await hotpath.get_one(conn, Case, "id", claims.case_id)
    holder = await hotpath.get_one(conn, Employee, "employee_id", claims.signer_id)
    if case is None or holder is None:
        raise Refused(404, "unknown_case", "找不到对应的离职流程。", "No such case.")
    if not holder.active:
        raise Refused(403, "unknown_sender", "你不在公司通讯录中，无法操作。", "You are not in the company directory.")
    return case, holder


# ---------------------------------------------------------------- platform sign-in (as the signing page)

def _sign_in(request: web.Request, holder: Employee) -> signin.SignIn | None:
    """How the holder proves who they are (their platform's running connector's sign-in); None: the
    link suffices (the emulator). A platform that cannot confirm anyone refuses the page."""
    try:
        return signin.for_signer(request.app, holder)
    except signin.Unavailable as exc:
        raise Refused(503, "sign_in_unavailable", exc.zh, exc.en) from None


def _identity(request: web.Request, settings: Settings, kind: str, nonce: str, holder: Employee) -> None:
    """Where the holder's platform offers sign-in, the page is theirs only once the platform confirmed
    them: redirect there (GET) or refuse (POST)."""
    needed = _sign_in(request, holder)
    if needed is None:
        return
    platform, expected = needed
    who = signin.read_identity_cookie(settings.secret_bytes(), nonce,
                                      request.cookies.get(signin.identity_cookie_name(nonce)), time.time())
    if who is None or who.platform != platform:
        if request.method != "GET":
            raise Refused(401, "identity_required", f"请先通过{needed.name.zh}确认身份（请从卡片重新打开链接）。",
                          f"Confirm who you are through {needed.name.en} first (open the link from the card again).")
        back = f"{settings.public_base_url}/{kind}/{request.match_info['token']}/oauth/{platform}"
        raise web.HTTPFound(needed.authorize_url(back, signin.oauth_state(settings.secret_bytes(), nonce)))
    if who.userid != expected:
        raise Refused(403, "identity_mismatch", "登录账号与卡片持有人不一致，不能代他人操作。",
                      "The signed-in account is not the card's holder; nobody may act for someone else.")


async def oauth_return(request: web.Request) -> web.StreamResponse:
    settings: Settings = request.app[SETTINGS]
    kind = "form" if request.path.startswith("/form/") else "view"
    lang = _lang(request, settings)
    try:
        claims = _claims(settings, request.match_info["token"], kind)
        _, holder = await _case_and_holder(claims)
        needed = _sign_in(request, holder)
        if needed is None or needed.platform != request.match_info["platform"]:
            raise Refused(400, "no_oauth", "无需通过此平台确认身份。", "No sign-in through this platform is needed.")
        if not signin.check_state(settings.secret_bytes(), claims.nonce, request.query.get("state", "")):
            raise Refused(403, "bad_state", "身份确认请求无效，请从卡片重新打开链接。",
                          "The sign-in request is not valid; open the link from the card again.")
        try:
            who = await needed.confirm(request.query)
        except signin.IdentityError as exc:
            log.warning("identity confirmation failed for %s: %s", claims.case_id, exc.message)
            raise Refused(403, "identity_failed", f"未能通过平台确认您的身份，请在{needed.name.zh}内重新打开链接。",
                          f"The platform did not confirm who you are; open the link inside {needed.name.en}.") from None
        if who.userid != needed.user_id:
            raise Refused(403, "identity_mismatch", "登录账号与卡片持有人不一致，不能代他人操作。",
                          "The signed-in account is not the card's holder; nobody may act for someone else.")
    except Refused as exc:
        return _refused(exc, lang)
    token = request.match_info["token"]
    resp = web.HTTPFound(f"/{kind}/{quote(token)}")
    resp.set_cookie(signin.identity_cookie_name(claims.nonce),
                    signin.identity_cookie(settings.secret_bytes(), claims.nonce, who,
                                           int(time.time()) + IDENTITY_COOKIE_SECONDS),
                    max_age=IDENTITY_COOKIE_SECONDS, path=f"/{kind}/", httponly=True, samesite="Lax",
                    secure=settings.public_base_url.startswith("https://"))
    raise resp


# ---------------------------------------------------------------- the form

@dataclass
class FormTarget:
    claims: TokenClaims
    action: str
    row: OutboxMessage
    case: Case
    holder: Employee
    link: FormLink | None


async def _resolve_form(request: web.Request, settings: Settings) -> FormTarget:
    claims = _claims(settings, request.match_info["token"], "form")
    action, card_id = claims.extra.get("a", ""), claims.extra.get("k", "")
    if not action or not card_id:
        status, zh, en = LINK_ERRORS["malformed"]
        raise Refused(status, "malformed", zh, en)
    link = await FormLink.get_or_none(nonce=claims.nonce)
    if link is not None and (link.case_id, link.step_id, link.action, link.holder_id) != (  # type: ignore[attr-defined]
            claims.case_id, claims.step_id, action, claims.signer_id):
        status, zh, en = LINK_ERRORS["tampered"]
        raise Refused(status, "tampered", zh, en)
    if link is not None and link.used_at is not None:
        raise USED
    row = await hotpath.get_one(hotpath.default_conn(), OutboxMessage, "key", card_id)
    if row is None or row.kind != "card" or row.case_id != claims.case_id or (  # type: ignore[attr-defined]
            row.recipient != claims.signer_id or (row.step_id or "") != claims.step_id):
        raise Refused(403, "not_your_card", "这张卡片不是发给你的，不能在上面操作。",
                      "This card was not sent to you, so you cannot act on it.")
    case, holder = await _case_and_holder(claims)
    return FormTarget(claims, action, row, case, holder, link)


async def _button(request: web.Request, t: FormTarget, lang: str, *, detail: bool = True) -> tuple[Card, Button]:
    """The card as its holder's card shows it now, and the button the link is for: a step done or locked
    meanwhile offers no (enabled) button, and the page says so instead of a form. `detail=False`: only
    the buttons are needed (half the cost), as for the router's own check of a tap."""
    renderer = CardRenderer(request.app[SETTINGS], request.app[SERVICE], channel=presentation.app_channel(request.app))
    card = await renderer.card_of(t.case, str((t.row.payload or {}).get("purpose", "step")), t.row.step_id,
                                  t.holder, language=lang, detail=detail)
    button = card.button(t.action) if card is not None else None
    if card is None or button is None:
        raise Refused(409, "no_such_button", "此操作已不可用（该步骤可能已完成或流程已结束）。",
                      "This action is no longer offered (the step may be done or the case closed).")
    if not button.enabled:
        raise Refused(409, "locked", button.reason or "此操作暂不可用。",
                      button.reason or "This action is not available yet.")
    return card, button


def _csrf_cookie(nonce: str) -> str:
    return "fc_" + hashlib.sha256(b"form-csrf." + nonce.encode()).hexdigest()[:16]


def _page(request: web.Request, t: FormTarget, card: Card, button: Button, lang: str, csrf: str, *,
          values: dict[str, str] | None = None, error: str = "", status: int = 200) -> web.Response:
    settings: Settings = request.app[SETTINGS]
    action_url = f"/form/{quote(request.match_info['token'])}" + (f"?lang={lang}" if lang != settings.language else "")
    resp = _html(webpage.form_page(card, button, action_url=action_url, csrf=csrf, lang=lang, values=values,
                                   error=error), status)
    resp.set_cookie(_csrf_cookie(t.claims.nonce), csrf, path="/form/", httponly=True, samesite="Strict",
                    secure=settings.public_base_url.startswith("https://"), max_age=24 * 3600)
    return resp


async def form_page(request: web.Request) -> web.StreamResponse:
    settings: Settings = request.app[SETTINGS]
    lang = _lang(request, settings)
    try:
        t = await _resolve_form(request, settings)
        _identity(request, settings, "form", t.claims.nonce, t.holder)
        card, button = await _button(request, t, lang)
    except Refused as exc:
        return _refused(exc, lang)
    if t.link is None:
        try:
            t.link = await FormLink.create(nonce=t.claims.nonce, case_id=t.case.id, step_id=t.claims.step_id,
                                           action=t.action, holder_id=t.holder.employee_id,
                                           expires_at=t.claims.expires_at, opened_at=_now())
        except IntegrityError:  # opened twice at once
            t.link = await FormLink.get(nonce=t.claims.nonce)
    csrf = request.cookies.get(_csrf_cookie(t.claims.nonce)) or secrets.token_urlsafe(24)
    return _page(request, t, card, button, lang, csrf)


def _same_origin(request: web.Request, settings: Settings) -> None:
    if request.headers.get("Sec-Fetch-Site") in ("cross-site", "same-site"):
        raise _CROSS_SITE
    origin = request.headers.get("Origin")
    if origin is None:
        return  # an older browser: the double-submit value below still has to match
    ours = {request.host.lower(), (urlsplit(settings.public_base_url).netloc or "").lower()}
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or parts.netloc.lower() not in ours:
        raise _CROSS_SITE


_CROSS_SITE = Refused(403, "cross_origin", "只能在本系统的表单页面上提交。",
                      "The form can only be submitted from its own page.")


async def _read_fields(request: web.Request) -> dict[str, str]:
    if request.content_length is not None and request.content_length > MAX_FORM_BODY:
        raise Refused(413, "too_large", "提交的内容过大。", "What was submitted is too large.")
    if request.content_type != "application/x-www-form-urlencoded":
        raise Refused(415, "unsupported_media_type", "提交的数据格式有误。", "The form was not sent as a web form.")
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(65536):  # a chunked body has no Content-Length to check first
        size += len(chunk)
        if size > MAX_FORM_BODY:
            raise Refused(413, "too_large", "提交的内容过大。", "What was submitted is too large.")
        chunks.append(chunk)
    bad = Refused(400, "bad_form", "提交的数据格式有误，未保存任何内容。",
                  "The form data is malformed; nothing was saved.")
    try:
        pairs = parse_qsl(b"".join(chunks).decode("ascii"), keep_blank_values=True, encoding="utf-8",
                          errors="strict", max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise bad from None
    fields: dict[str, str] = {}
    for key, value in pairs:
        if key in fields:
            raise bad  # one value per input: a repeated name is not something our page sends
        fields[key] = value
    return fields


async def _claim(nonce: str, now: datetime) -> str | None:
    token = secrets.token_hex(16)
    n = await FormLink.filter(Q(nonce=nonce), Q(used_at=None),
                              Q(claimed_until=None) | Q(claimed_until__lt=now)).update(
        claim_token=token, claimed_until=now + CLAIM_LEASE)
    return token if n == 1 else None


async def form_submit(request: web.Request) -> web.StreamResponse:
    settings: Settings = request.app[SETTINGS]
    lang = _lang(request, settings)
    try:
        _same_origin(request, settings)
        fields = await _read_fields(request)
        lang = _lang(request, settings, fields.get("lang"))
        t = await _resolve_form(request, settings)
        _identity(request, settings, "form", t.claims.nonce, t.holder)
        expected = request.cookies.get(_csrf_cookie(t.claims.nonce), "")
        if not expected or not hmac.compare_digest(expected.encode(), fields.get("csrf", "").encode()):
            raise Refused(403, "csrf", "页面已过期，请从卡片重新打开表单后再提交。",
                          "The page has expired; open the form from the card again and resubmit.")
        _, button = await _button(request, t, lang, detail=False)
        if t.link is None:
            raise Refused(409, "not_opened", "请先打开表单页面再提交。", "Open the form page before submitting.")
    except Refused as exc:
        return _refused(exc, lang)
    form = {k: v for k, v in fields.items() if k not in ("csrf", "lang")}
    now = _now()
    claim = await _claim(t.claims.nonce, now)
    if claim is None:
        fresh = await FormLink.get(nonce=t.claims.nonce)
        return _refused(USED if fresh.used_at is not None else IN_PROGRESS, lang)
    used = False
    try:
        service: CaseService = request.app[SERVICE]
        # The card action the holder's platform would hand over for a tap on that card: their user id
        # there, the card's id there. Its dedup key names the link and what was sent: a double submit
        # is answered once; a corrected resubmission after a refusal goes on.
        digest = hashlib.sha256(repr(sorted(form.items())).encode("utf-8", "surrogatepass")).hexdigest()[:24]
        event = CardAction(platform=t.row.platform, sender=service.addresses.user_id(t.holder, t.row.platform) or "",
                           card_id=cardids.card_id_of(t.row), action=t.action,
                           event_id=f"webform:{t.claims.nonce}:{digest}", form=form, at=now, lang=lang)
        reply = await request.app[DISPATCH](event)
        if reply.ok:
            used = await FormLink.filter(nonce=t.claims.nonce, claim_token=claim).update(
                used_at=now, claim_token=None, claimed_until=None) == 1
            title = webpage.t(lang, "已提交", "Submitted")
            message = reply.text + webpage.t(lang, " 消息卡片会随之更新，可以关闭此页面。",
                                             " The card in your chat is updated; you may close this page.")
            return _html(webpage.notice_page(title, message, lang, ok=True))
        status = 500 if reply.code == "error" else 422
        shown = {f.name: form.get(f.name, "") for f in button.form if isinstance(form.get(f.name, ""), str)}
        try:
            card, button = await _button(request, t, lang)
        except Refused as exc:  # the step moved on meanwhile: say that rather than show the form again
            return _refused(exc, lang)
        return _page(request, t, card, button, lang, request.cookies.get(_csrf_cookie(t.claims.nonce), ""),
                     values=shown, error=reply.text, status=status)
    finally:
        if not used:  # the link is free again for a corrected submission
            await FormLink.filter(nonce=t.claims.nonce, claim_token=claim, used_at=None).update(
                claim_token=None, claimed_until=None)


# ---------------------------------------------------------------- the details page ("viewed")

async def view_page(request: web.Request) -> web.StreamResponse:
    settings: Settings = request.app[SETTINGS]
    service: CaseService = request.app[SERVICE]
    lang = _lang(request, settings)
    try:
        claims = _claims(settings, request.match_info["token"], "view")
        case, holder = await _case_and_holder(claims)
        _identity(request, settings, "view", claims.nonce, holder)
        template = service.template(case.template_id)
        step = template.by_id.get(claims.step_id)
        if step is None:
            raise Refused(404, "unknown_step", "找不到该步骤。", "No such step.")
    except Refused as exc:
        return _refused(exc, lang)
    await record_viewed(service, case, holder, step.id)
    renderer = CardRenderer(settings, service, channel=presentation.app_channel(request.app))
    card = await renderer.card_of(case, "step", step.id, holder, language=lang)
    if card is None:
        return _refused(Refused(404, "unknown_step", "找不到该步骤。", "No such step."), lang)
    # The holder's own card for the step carries their form links; the page offers them too.
    row = await OutboxMessage.filter(case_id=case.id, step_id=step.id, recipient=holder.employee_id,
                                     kind="card").order_by("-id").first()
    if row is not None:
        card = renderer.web_links(card, case, row.key, row.platform, "step", step.id, holder.employee_id,
                                  forms=True)
    return _html(webpage.details_page(card, lang))


async def record_viewed(service: CaseService, case: Case, holder: Employee, step_id: str) -> bool:
    """The holder's first opening of an active step they act on or sign: the step is viewed by them
    (one audit entry; the first reminder then passes them by). True when that was recorded now."""
    template = service.template(case.template_id)
    step = template.by_id[step_id]
    roles = await service.roles_of(case, holder)
    mine = frozenset({step.role, *step.signers}) & roles
    if not mine or case.status != "open":
        return False  # looking is fine; only those the step waits on are reminded
    st = (await service.load_state(case)).steps[step_id]
    if st.status != "active" or {viewer_mark(r, holder.employee_id) for r in mine} <= st.viewed_by:
        return False
    now = _now()
    outcome = await service.apply(case.id, lambda c, s: Viewed(step_id, holder.employee_id, roles, now),
                                  actor=holder.employee_id)
    return outcome.ok and outcome.decision is not None and bool(outcome.decision.effects)


# ---------------------------------------------------------------- wiring

def setup(app: web.Application, *, dispatch: Dispatch) -> None:
    app[DISPATCH] = dispatch
    app.router.add_get("/form/{token}", form_page)
    app.router.add_post("/form/{token}", form_submit)
    app.router.add_get("/form/{token}/oauth/{platform:[a-z][a-z0-9_]{0,31}}", oauth_return)
    app.router.add_get("/view/{token}", view_page)
    app.router.add_get("/view/{token}/oauth/{platform:[a-z][a-z0-9_]{0,31}}", oauth_return)

