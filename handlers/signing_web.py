"""The signing web pages: open a personal link, read the document, sign by hand, get a sealed PDF.

GET  /sign/{token}                  the page (document images + consent + pad); records "viewed"
GET  /sign/{token}/page/{n}.png     page images of the unsigned draft
POST /sign/{token}                  the signature (JSON from signpad.js); one transaction, then the seal
GET  /sign/{token}/oauth/{platform} OAuth return: confirms the signer through DingTalk / WeCom
GET  /sign/{token}/document.pdf     the sealed PDF, for the holder of the same link
GET  /doc/{token}                   one sealed document of a case (completion card links), for the case's
                                    employee or HR holding their own link

Every refusal changes nothing and explains itself in Chinese. The link token is an HMAC over case, step,
signer, expiry and nonce (signing.links); single use is the nonce row's `used_at`, claimed with a
compare-and-set inside the same transaction as the workflow step change and the Signature row.
"""

from __future__ import annotations

import asyncio
import html
import ipaddress
import json
import logging
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q

from cases.service import CaseError, CaseService
from chat.appkeys import SERVICE, SETTINGS
from chat.background import background
from config.settings import Settings
from handlers import backpay
from handlers.links import redact_link_tokens_in_access_log
from signing import oauth
from signing.documents import signature_image
from signing.evidence import AUDIT_KIND, SignatureFacts, audit_data
from signing.links import LinkError, TokenClaims, read_token
from signing.page import CONSENT_VERSION, render_sign_page
from signing.pipeline import (
    PipelineError,
    current_document,
    ensure_draft,
    exhausted,
    issue_completion_notice,
    issue_step_notice,
    keys_for,
    prior_evidence,
    seal_document,
    shown_key,
    shown_pdf,
    sweep,
    unissued_completed,
    unissued_notices,
    write_checkpoint,
)
from signing.preview import PreviewError, pdf_to_png_pages
from signing.render import RenderBusy
from signing.render import render as render_signature
from signing.strokes import StrokeError, StrokePayload, parse_strokes, trivial_reason
from signing.templates import DocumentError
from storage import audit
from storage.canonical import sha256_hex
from storage.models import Case, Document, Employee, Signature, SigningLink
from workflow import cleantext, engine
from workflow.documents import document_title
from workflow.events import DocumentSigned, SealFailed, Viewed
from workflow.model import ROLE_TITLES, CaseState, Role
from workflow.template import StepTemplate

log = logging.getLogger("signing")

MAX_BODY = 1_000_000
STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_PREFIX = "/sign-assets"
IDENTITY_COOKIE_SECONDS = 1800
ISSUE_RETRY_DAYS = 7  # how long after completion the sweep keeps trying to issue a completion notice
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
}


class Refused(Exception):
    """A request we turn down; `status` and a Chinese message for the person holding the phone."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


LINK_ERRORS = {
    "malformed": (400, "链接不完整或格式有误，请从消息卡片重新打开签署链接。"),
    "tampered": (403, "链接无效（签名校验失败），请从消息卡片重新打开签署链接。"),
    "expired": (410, "签署链接已过期，请联系人事（HR）重新发送。"),
}


@dataclass
class Target:
    """Everything a valid, open link points at."""

    claims: TokenClaims
    case: Case
    state: CaseState
    step: StepTemplate
    signer: Employee
    roles: frozenset[Role]
    kind: str
    link: SigningLink | None


# ---------------------------------------------------------------- pages

def _page(status: int, title: str, message: str, *, extra_html: str = "") -> web.Response:
    body = (
        '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        f'<link rel="stylesheet" href="{STATIC_PREFIX}/signpad.css"></head><body>'
        f'<main class="notice"><h1>{html.escape(title)}</h1><p id="message">{html.escape(message)}</p>'
        f"{extra_html}</main></body></html>"
    )
    return web.Response(status=status, text=body, content_type="text/html", headers=HEADERS)


def _refused_page(exc: Refused, request: web.Request) -> web.Response:
    extra = ""
    if exc.code == "used":
        href = html.escape(f"/sign/{quote(request.match_info['token'])}/document.pdf")
        extra = f'<p><a id="download" href="{href}">下载已签署的文件</a></p>'
    return _page(exc.status, "无法签署", exc.message, extra_html=extra)


def _json_error(exc: Refused) -> web.Response:
    return web.json_response({"ok": False, "code": exc.code, "message": exc.message}, status=exc.status,
                             headers=HEADERS)


# ---------------------------------------------------------------- resolving a link

def _now() -> datetime:
    return datetime.now(UTC)


async def resolve(request: web.Request, *, allow_used: bool = False) -> Target:
    settings: Settings = request.app[SETTINGS]
    service: CaseService = request.app[SERVICE]
    token = request.match_info["token"]
    try:
        claims = read_token(settings.secret_bytes(), token, _now())
    except LinkError as exc:
        status, message = LINK_ERRORS[exc.code]
        raise Refused(status, exc.code, message) from None
    case = await Case.get_or_none(id=claims.case_id)
    if case is None:
        raise Refused(404, "unknown_case", "找不到对应的离职流程。")
    link = await SigningLink.get_or_none(nonce=claims.nonce)
    if link is not None and (link.case_id, link.step_id, link.signer_id) != (  # type: ignore[attr-defined]
        claims.case_id, claims.step_id, claims.signer_id
    ):
        raise Refused(403, "tampered", LINK_ERRORS["tampered"][1])
    if link is not None and link.used_at is not None and not allow_used:
        raise Refused(410, "used", "该链接已完成签署，不能重复使用。")
    try:
        template = service.template(case.template_id)
    except CaseError:
        raise Refused(404, "unknown_case", "找不到对应的离职流程模板。") from None
    step = template.by_id.get(claims.step_id)
    if step is None or not step.documents:
        raise Refused(404, "not_signing_step", "该链接对应的步骤不需要签署文件。")
    signer = await Employee.get_or_none(employee_id=claims.signer_id)
    if signer is None:
        raise Refused(403, "unknown_signer", "找不到签署人。")
    roles = await service.roles_of(case, signer)
    if not step.signs(roles):
        raise Refused(403, "not_signer", "这不是您需要签署的文件，请使用发给您本人的签署链接。")
    state = await service.load_state(case)
    if allow_used and link is not None and link.used_at is not None:
        return Target(claims, case, state, step, signer, roles, step.documents[0], link)
    if case.status != "open":
        raise Refused(409, "case_closed", "该离职流程已结束，无需再签署。")
    ss = state.steps[step.id]
    if ss.status != "active":
        message = {"done": "该步骤已完成。", "not_needed": "该步骤已不再需要，无需签署。"}.get(
            ss.status, "该步骤尚未开始，请等待前面的步骤完成。")
        raise Refused(409, "step_not_active", message)
    unsigned = [d for d in step.documents if d not in ss.documents_signed]
    if not unsigned:
        raise Refused(409, "already_signed", "该文件已签署。")
    kind = unsigned[0]
    turn = step.next_signer(ss, kind)
    if turn is not None and turn not in roles:
        # A document several people sign, in order: this signer already signed, or it is not their turn.
        waiting = ROLE_TITLES[turn].zh
        if all(r in step.signed_roles(ss, kind) for r in step.signers if r in roles):
            raise Refused(409, "already_signed", f"您已签署该文件，正在等待{waiting}签署。")
        raise Refused(409, "not_your_turn", f"《{document_title(kind).zh}》需先由{waiting}签署，"
                                            "轮到您签署时会另行通知您。")
    return Target(claims, case, state, step, signer, roles, kind, link)


async def _ensure_link(t: Target, now: datetime) -> SigningLink:
    if t.link is not None:
        return t.link
    try:
        link = await SigningLink.create(nonce=t.claims.nonce, case_id=t.case.id, step_id=t.claims.step_id,
                                        signer_id=t.claims.signer_id, expires_at=t.claims.expires_at)
    except IntegrityError:  # the same link opened twice at once
        link = await SigningLink.get(nonce=t.claims.nonce)
    t.link = link
    return link


def _identity_check(request: web.Request, t: Target) -> tuple[str, str] | web.Response:
    """(identity_method, platform_identity), or a redirect to the platform login when one is needed."""
    settings: Settings = request.app[SETTINGS]
    needed = oauth.platform_for(settings, t.signer)
    if needed is None:
        return "link", ""
    platform, expected = needed
    cookie = request.cookies.get(oauth.identity_cookie_name(t.claims.nonce))
    who = oauth.read_identity_cookie(settings.secret_bytes(), t.claims.nonce, cookie, time.time())
    if who is None or who.platform != platform:
        if request.method != "GET":
            raise Refused(401, "identity_required", "请先通过钉钉/企业微信确认身份后再签署（请刷新页面）。")
        url = oauth.authorize_url(settings, platform, _callback_url(settings, request, platform),
                                  oauth.oauth_state(settings.secret_bytes(), t.claims.nonce))
        raise web.HTTPFound(url)
    if who.userid != expected:
        raise Refused(403, "identity_mismatch", "登录账号与签署人不一致，不能代他人签署。")
    return who.method, who.identity


def _callback_url(settings: Settings, request: web.Request, platform: str) -> str:
    return f"{settings.public_base_url}/sign/{request.match_info['token']}/oauth/{platform}"


def client_ip(request: web.Request, trusted: tuple[str, ...]) -> str:
    """The peer address, or the nearest untrusted hop of X-Forwarded-For when the peer is a trusted proxy."""
    peer = request.remote or ""
    nets = [ipaddress.ip_network(t, strict=False) for t in trusted]

    def is_trusted(addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in n for n in nets)

    if not nets or not is_trusted(peer):
        return peer[:64]
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    # Walk from the right: each trusted proxy vouches for the hop before it; the first untrusted one is
    # the client. Anything further left was supplied by the client and could be forged.
    for hop in reversed(hops):
        if not is_trusted(hop):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer[:64]
    return (hops[0] if hops else peer)[:64]


# ---------------------------------------------------------------- preview cache

_previews: OrderedDict[str, list[bytes]] = OrderedDict()
_PREVIEW_CACHE = 32


async def _preview(doc: Document, settings: Settings) -> list[bytes]:
    """Page images of what the signer is shown: the draft, with any signatures already on it."""
    key = await shown_key(doc)
    pages = _previews.get(key)
    if pages is None:
        pages = await asyncio.to_thread(pdf_to_png_pages, await shown_pdf(doc, settings))
        _previews[key] = pages
        while len(_previews) > _PREVIEW_CACHE:
            _previews.popitem(last=False)
    else:
        _previews.move_to_end(key)
    return pages


# ---------------------------------------------------------------- handlers

async def sign_page(request: web.Request) -> web.StreamResponse:
    settings: Settings = request.app[SETTINGS]
    service: CaseService = request.app[SERVICE]
    try:
        t = await resolve(request)
        _identity_check(request, t)
    except Refused as exc:
        return _refused_page(exc, request)
    now = _now()
    link = await _ensure_link(t, now)
    if link.opened_at is None:
        await SigningLink.filter(nonce=link.nonce, opened_at=None).update(opened_at=now)
    try:
        doc = await ensure_draft(t.case, t.step.id, t.kind, settings, now=now)
        pages = await _preview(doc, settings)
    except PipelineError as exc:
        # The reason is for HR (told once, in Chinese); the signer only learns that HR is on it.
        log.error("case %s step %s: %s", t.case.id, t.step.id, exc)
        await backpay.tell_hr(service, t.case, t.step.id, exc, actor_id=t.signer.employee_id, at=now)
        return _page(503, "文件暂时无法显示", backpay.EMPLOYEE_PAGE)
    except PreviewError as exc:
        log.error("case %s step %s: %s", t.case.id, t.step.id, exc)
        return _page(503, "文件暂时无法显示", "文件暂时无法显示，请稍后再试；如仍无法打开请联系人事（HR）。")
    roles = t.roles
    outcome = await service.apply(
        t.case.id, lambda case, state: Viewed(t.step.id, t.signer.employee_id, roles, now),
        actor=t.signer.employee_id,
    )
    if not outcome.ok:
        log.info("viewed not recorded for %s/%s: %s", t.case.id, t.step.id, outcome.refusal)
    token = request.match_info["token"]
    base = f"/sign/{quote(token)}"
    page = render_sign_page(
        title=document_title(t.kind).get(settings.language), employee_name=t.signer.name,
        doc_images=[f"{base}/page/{n}.png" for n in range(1, len(pages) + 1)],
        submit_url=f"{base}?h={doc.sha256_unsigned}", token=token, lang=settings.language,
        static_prefix=STATIC_PREFIX,
    )
    return web.Response(text=page, content_type="text/html", headers=HEADERS)


async def page_image(request: web.Request) -> web.StreamResponse:
    settings: Settings = request.app[SETTINGS]
    try:
        t = await resolve(request)
        _identity_check(request, t)
    except Refused as exc:
        return _refused_page(exc, request)
    doc = await current_document(t.case.id, t.step.id, t.kind)
    if doc is None:
        return _page(404, "页面不存在", "请先打开签署页面。")
    pages = await _preview(doc, settings)
    try:
        n = int(request.match_info["n"])
    except ValueError:
        n = 0
    if not 1 <= n <= len(pages):
        return _page(404, "页面不存在", "没有这一页。")
    return web.Response(body=pages[n - 1], content_type="image/png", headers=HEADERS)


async def _read_raw(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise Refused(413, "too_large", "提交的数据过大。")
    # Read in chunks with a running cap: a chunked body has no Content-Length to check up front.
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(65536):
        size += len(chunk)
        if size > MAX_BODY:
            raise Refused(413, "too_large", "提交的数据过大。")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_json(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise Refused(400, "bad_json", "提交的数据不是有效的 JSON。") from None
    if not isinstance(body, dict):
        raise Refused(400, "bad_json", "提交的数据格式有误（应为 JSON 对象）。")
    return body


# The signing form's declared fields and the text rules of its text ones (limit, multiline);
# `strokes` is checked by its own model, which refuses unknown keys.
_SIGN_FIELDS: dict[str, tuple[str, int, bool] | None] = {
    "token": ("token", 2048, False), "consent": None, "consent_version": ("consent_version", 32, False),
    "strokes": None, "doc_sha256": ("doc_sha256", 64, False), "image_sha256": ("image_sha256", 64, False),
}


def _check_sign_fields(body: dict[str, Any], user_agent: str) -> None:
    """Undeclared fields and unclean text in the signing form are refused before anything is read
    or stored with them (a NUL would fail PostgreSQL; extra fields are nobody's evidence). The
    User-Agent is stored as evidence too: bytes that are not UTF-8 arrive as lone surrogates, which
    neither database can store."""
    if cleantext.problem(user_agent[:1000], max_len=1000, multiline=False) is not None:
        raise Refused(400, "bad_text", "浏览器标识（User-Agent）含有无效字符，请换用手机自带浏览器打开链接。")
    # Values of other types are left to the checks below, which name what each field must be.
    texts = {k: v for k, v in body.items() if k not in _SIGN_FIELDS or (_SIGN_FIELDS[k] and isinstance(v, str))}
    try:
        cleantext.check_form(texts, {k: r for k, r in _SIGN_FIELDS.items() if r is not None})
    except cleantext.UndeclaredField as exc:
        raise Refused(400, exc.code, f"提交的数据含有未声明的字段「{exc.field}」，未保存任何内容。") from None
    except cleantext.TextProblem as exc:
        raise Refused(400, "bad_text", exc.message_zh) from None


async def _read_json(request: web.Request) -> dict[str, Any]:
    return _parse_json(await _read_raw(request))


class _LinkClaimed(Exception):
    pass


class _DocumentChanged(Exception):
    """The draft stopped being current while the signature was on its way (HR added to it)."""


class _Sealed(Exception):
    """The document was sealed while we were giving it up; roll the give-up back."""


CLAIM_LEASE = timedelta(seconds=120)  # far above a bounded render; only matters if the process dies
IN_PROGRESS = Refused(409, "in_progress", "该链接的签名正在提交中，请勿重复提交；如长时间无结果，请稍后刷新页面。")
USED = Refused(410, "used", "该链接已完成签署，不能重复使用。")


async def claim_link(nonce: str, now: datetime) -> str | None:
    """Claim an unused link for one submission (compare-and-set with a lease); the claim token, or None."""
    token = secrets.token_hex(16)
    n = await SigningLink.filter(Q(nonce=nonce), Q(used_at=None),
                                 Q(claimed_until=None) | Q(claimed_until__lt=now)).update(
        claim_token=token, claimed_until=now + CLAIM_LEASE)
    return token if n == 1 else None


async def release_link(nonce: str, token: str) -> None:
    await SigningLink.filter(nonce=nonce, claim_token=token, used_at=None).update(claim_token=None,
                                                                                  claimed_until=None)


def _check_body(body: dict[str, Any], token: str) -> StrokePayload:
    if "token" in body and body["token"] != token:
        raise Refused(400, "token_mismatch", "提交的数据与链接不一致。")
    if body.get("consent") is not True:
        raise Refused(422, "consent_required", "请先勾选“我已阅读并同意”。")
    if body.get("consent_version") != CONSENT_VERSION:
        raise Refused(422, "consent_outdated", "同意声明已更新，请刷新页面后重新签署。")
    try:
        strokes = parse_strokes(body.get("strokes"))
    except StrokeError as exc:
        raise Refused(422, "bad_strokes", f"签名数据无效：{exc}") from None
    if (why := trivial_reason(strokes)) is not None:
        raise Refused(422, "trivial", f"签名过于简单（{why}），请手写您的姓名。")
    return strokes


async def _render_sealable(strokes: StrokePayload) -> bytes:
    """The signature image, refused here if sealing could not use it (the same check sealing makes)."""
    try:
        png = await render_signature(strokes)
        signature_image(png)
    except StrokeError as exc:
        raise Refused(422, "bad_strokes", f"签名数据超出限制：{exc}。请在签名框内正常书写后重试。") from None
    except DocumentError as exc:
        raise Refused(422, "not_sealable", f"签名图像无法用于盖章：{exc}。请重新签名。") from None
    except RenderBusy:
        raise Refused(503, "busy", "服务器繁忙，请稍候几秒后重新提交。") from None
    return png


async def submit(request: web.Request) -> web.StreamResponse:
    try:
        raw = await _read_raw(request)
        t = await resolve(request)
        method, platform_identity = _identity_check(request, t)  # type: ignore[misc]
    except Refused as exc:
        return _json_error(exc)
    now = _now()
    link = await _ensure_link(t, now)
    # Claim before parsing or drawing: of any number of parallel submissions on one link, one goes on
    # (and pays for the render); the others are answered at once and hold nothing but their raw body.
    claim = await claim_link(link.nonce, now)
    if claim is None:
        fresh = await SigningLink.get(nonce=link.nonce)
        return _json_error(USED if fresh.used_at is not None else IN_PROGRESS)
    try:
        return await _submit_claimed(request, t, raw, now, link, claim, method, platform_identity)
    finally:
        # A no-op once the signature committed (used_at is set); otherwise the link is free again.
        await release_link(link.nonce, claim)


async def _submit_claimed(request: web.Request, t: Target, raw: bytes, now: datetime, link: SigningLink,
                          claim: str, method: str, platform_identity: str) -> web.StreamResponse:
    settings: Settings = request.app[SETTINGS]
    service: CaseService = request.app[SERVICE]
    token = request.match_info["token"]
    try:
        body = _parse_json(raw)
        _check_sign_fields(body, request.headers.get("User-Agent", ""))
        strokes = _check_body(body, token)
        presented = body.get("doc_sha256") or request.query.get("h", "")
        doc = await current_document(t.case.id, t.step.id, t.kind)
        if doc is None or not isinstance(presented, str) or presented != doc.sha256_unsigned:
            raise Refused(409, "document_changed", "文件已更新或尚未打开，请刷新页面阅读后再签署。")
        client_hash = body.get("image_sha256")
        if client_hash is not None and not (isinstance(client_hash, str) and len(client_hash) == 64):
            raise Refused(400, "bad_image_hash", "签名图像哈希格式有误。")
        png = await _render_sealable(strokes)
    except Refused as exc:
        return _json_error(exc)

    stroke_bytes = strokes.canonical()
    facts = SignatureFacts(
        case_id=t.case.id, step_id=t.step.id, document_kind=t.kind, document_id=doc.id,
        signer_id=t.signer.employee_id, signer_name=t.signer.name, identity_method=method,
        platform_identity=platform_identity, doc_hash_presented=presented, strokes_hash=sha256_hex(stroke_bytes),
        image_hash=sha256_hex(png), client_image_hash=client_hash, n_strokes=len(strokes.strokes),
        n_points=strokes.point_count, canvas=(strokes.width, strokes.height), server_time=now,
        ip=client_ip(request, settings.trusted_proxies), user_agent=request.headers.get("User-Agent", "")[:1000],
        consent_version=CONSENT_VERSION, template_sha256=str((doc.context or {}).get("template_sha256", "")),
    )
    template = service.template(t.case.template_id)
    decided: dict[str, Any] = {}

    def make_event(case: Case, state: CaseState) -> DocumentSigned:
        event = DocumentSigned(t.step.id, t.kind, t.signer.employee_id, t.roles, now)
        # The engine is pure: deciding here tells `also` whether the service will refuse, so a refused
        # signature writes nothing, and whether this signature completes the document.
        result = engine.apply(template, state, event)
        decided.clear()
        decided["result"] = result
        if not isinstance(result, engine.Refusal):
            decided["signed_as"] = t.step.next_signer(state.steps[t.step.id], t.kind)
            decided["complete"] = t.kind in result.state.steps[t.step.id].documents_signed
        return event

    async def also(conn: Any) -> None:
        if isinstance(decided.get("result"), engine.Refusal):
            return
        claimed = await SigningLink.filter(nonce=link.nonce, used_at=None, claim_token=claim).using_db(
            conn).update(used_at=now, claim_token=None, claimed_until=None)
        if claimed != 1:
            raise _LinkClaimed()
        # Sealed once every signer has signed; until then it waits for the next one ("partly_signed").
        # A draft replaced meanwhile takes no signature: the whole transaction is undone.
        moved = await Document.filter(id=doc.id, status__in=["draft", "partly_signed"]).using_db(conn).update(
            status="signed" if decided["complete"] else "partly_signed")
        if moved != 1:
            raise _DocumentChanged()
        record = facts
        if t.step.cosigned:
            # The signatures already on the document, which this signer saw on the page, bound into
            # their own evidence record.
            record = replace(facts, cosigned=True, signed_as=str(decided["signed_as"]),
                             after=tuple(await prior_evidence(doc.id, t.case.id, using=conn)))
        entry = await audit.append(t.case.id, at=now, actor=t.signer.employee_id, kind=AUDIT_KIND,
                                   data=audit_data(record), using=conn)
        await Signature.create(
            using_db=conn, document_id=doc.id, case_id=t.case.id, step_id=t.step.id,
            signer_id=t.signer.employee_id, identity_method=method, platform_identity=platform_identity,
            doc_hash_presented=presented, strokes=stroke_bytes, strokes_hash=facts.strokes_hash, image_png=png,
            image_hash=facts.image_hash, client_image_hash=client_hash, server_time=now, ip=facts.ip,
            user_agent=facts.user_agent, consent_version=CONSENT_VERSION, audit_seq=entry.seq,
        )

    try:
        outcome = await service.apply(t.case.id, make_event, actor=t.signer.employee_id, also=also)
    except _LinkClaimed:
        return _json_error(USED)
    except _DocumentChanged:
        return _json_error(Refused(409, "document_changed", "文件已更新，请刷新页面阅读后再签署。"))
    if not outcome.ok:
        r = outcome.refusal
        return _json_error(Refused(409, r.code if r else "refused", r.message_zh if r else "无法签署。"))
    if not decided.get("complete"):
        nxt = outcome.decision and t.step.next_signer(outcome.decision.state.steps[t.step.id], t.kind)
        waiting = ROLE_TITLES[nxt].zh if nxt else "其他签署人"
        return web.json_response({
            "ok": True, "message": f"签署完成，谢谢。待{waiting}在同一份文件上签署后，文件将加盖电子印章，"
                                   "届时可在此下载。",
            "status": "partly_signed", "document_sha256": doc.sha256_unsigned,
            "download": f"/sign/{quote(token)}/document.pdf",
        }, headers=HEADERS)
    try:
        status = await seal_document(doc.id, settings)
    except Exception:  # the signature is committed; the sweep retries (bounded, see sweep_round)
        log.exception("sealing document %s failed; left for the sweep", doc.id)
        status = "signed"
    return web.json_response({
        "ok": True, "message": "签署完成，谢谢。已加盖电子印章的文件可在此下载。" if status == "sealed"
        else "签署完成，谢谢。文件正在加盖电子印章。",
        "status": status, "document_sha256": doc.sha256_unsigned,
        "download": f"/sign/{quote(token)}/document.pdf",
    }, headers=HEADERS)


async def oauth_return(request: web.Request) -> web.StreamResponse:
    settings: Settings = request.app[SETTINGS]
    platform = request.match_info["platform"]
    try:
        t = await resolve(request)
        needed = oauth.platform_for(settings, t.signer)
        if needed is None or needed[0] != platform:
            raise Refused(400, "no_oauth", "该签署人无需通过此平台确认身份。")
        if not oauth.check_state(settings.secret_bytes(), t.claims.nonce, request.query.get("state", "")):
            raise Refused(403, "bad_state", "身份确认请求无效，请重新打开签署链接。")
        try:
            who = await oauth.confirm(settings, needed[0], code=request.query.get("code", ""),
                                      auth_code=request.query.get("authCode", ""))
        except oauth.IdentityError as exc:
            log.warning("identity confirmation failed for %s: %s", t.claims.case_id, exc.message)
            raise Refused(403, "identity_failed",
                          "未能通过平台确认您的身份，请在钉钉/企业微信内重新打开链接。") from None
        if who.userid != needed[1]:
            log.warning("identity mismatch on %s/%s: %s signed in for %s", t.claims.case_id, t.claims.step_id,
                        who.identity, t.signer.employee_id)
            raise Refused(403, "identity_mismatch", "登录账号与签署人不一致，不能代他人签署。")
    except Refused as exc:
        return _refused_page(exc, request)
    token = request.match_info["token"]
    expires = int(time.time()) + IDENTITY_COOKIE_SECONDS
    resp = web.HTTPFound(f"/sign/{quote(token)}")
    resp.set_cookie(oauth.identity_cookie_name(t.claims.nonce),
                    oauth.identity_cookie(settings.secret_bytes(), t.claims.nonce, who, expires),
                    max_age=IDENTITY_COOKIE_SECONDS, path="/sign/", httponly=True, samesite="Lax",
                    secure=settings.public_base_url.startswith("https://"))
    raise resp


async def download(request: web.Request) -> web.StreamResponse:
    try:
        t = await resolve(request, allow_used=True)
        _identity_check(request, t)
    except Refused as exc:
        return _refused_page(exc, request)
    doc = await Document.filter(case_id=t.case.id, step_id=t.step.id, status="sealed").order_by("-id").first()
    if doc is None or doc.pdf_signed is None:
        return _page(404, "文件尚未完成", "文件尚未签署或正在加盖电子印章，请稍后再试。")
    name = f"{t.case.id}-{doc.kind}.pdf"
    return web.Response(body=bytes(doc.pdf_signed), content_type="application/pdf", headers={
        **HEADERS, "Content-Disposition": f'attachment; filename="{name}"'})


DOWNLOAD_ERRORS = {
    "malformed": (400, "链接不完整或格式有误，请从离职完成卡片重新打开下载链接。"),
    "tampered": (403, "链接无效（签名校验失败），请从离职完成卡片重新打开下载链接。"),
    "expired": (410, "下载链接已过期，请在聊天中发送 /进度 或联系人事（HR）获取新的链接。"),
}


async def download_document(request: web.Request) -> web.StreamResponse:
    """A sealed document of a case, for the holder the link was made for, if they are the case's employee
    or HR: a link forwarded to anyone else is refused even before it expires."""
    settings: Settings = request.app[SETTINGS]
    service: CaseService = request.app[SERVICE]
    try:
        claims = read_token(settings.secret_bytes(), request.match_info["token"], _now(), purpose="download")
    except LinkError as exc:
        status, message = DOWNLOAD_ERRORS[exc.code]
        return _page(status, "无法下载", message)
    case = await Case.get_or_none(id=claims.case_id)
    holder = await Employee.get_or_none(employee_id=claims.signer_id)
    if case is None or holder is None:
        return _page(404, "无法下载", "找不到对应的离职流程或员工。")
    roles = await service.roles_of(case, holder)
    if not roles & {Role.EMPLOYEE, Role.HR}:
        return _page(403, "无法下载", "只有本流程的员工本人和人事（HR）可以下载这些文件。")
    doc = await Document.get_or_none(id=int(claims.step_id), case_id=case.id, status="sealed") \
        if claims.step_id.isdigit() else None
    if doc is None or doc.pdf_signed is None:
        return _page(404, "无法下载", "文件不存在或尚未完成盖章，请稍后再试。")
    name = f"{case.id}-{doc.kind}.pdf"
    return web.Response(body=bytes(doc.pdf_signed), content_type="application/pdf", headers={
        **HEADERS, "Content-Disposition": f'attachment; filename="{name}"'})


# ---------------------------------------------------------------- app wiring

async def give_up(service: CaseService, doc: Document, *, now: datetime | None = None) -> bool:
    """Stop trying to seal `doc`: in one transaction the document becomes "failed" (kept, with its
    signature, as evidence of what happened), its signature stops counting, the step opens again with a
    fresh card and link for the signer, and HR gets a card saying why. On a finished case only HR is
    told. False if nothing was changed (sealed meanwhile)."""
    now = now or _now()
    reason = (doc.seal_error or "seal failed")[:300]
    event = SealFailed(doc.step_id, doc.kind, str(doc.id), f"{doc.seal_attempts} attempts: {reason}", now)

    async def also(conn: Any) -> None:
        n = await Document.filter(id=doc.id, status__in=["signed", "pending_tsa"]).using_db(conn).update(
            status="failed")
        if n != 1:
            raise _Sealed()

    try:
        outcome = await service.apply(doc.case_id, lambda case, state: event, actor="system",  # type: ignore[attr-defined]
                                      also=also)
    except _Sealed:
        return False
    if not outcome.ok:
        log.error("document %s cannot be sealed and case %s refuses re-signing: %s", doc.id,
                  doc.case_id, outcome.refusal.message_en if outcome.refusal else "?")  # type: ignore[attr-defined]
        return False
    log.error("document %s given up after %s seal attempts (%s); HR told, the signer asked to sign again "
              "if the case is still open", doc.id, doc.seal_attempts, reason)
    return True


async def sweep_round(settings: Settings, service: CaseService) -> dict[int, str]:
    """One round of the sweep: seal what can be sealed, give up what used up its attempts."""
    results = await sweep(settings)
    # A completion notice the completion card could not issue (render or seal failed) is issued here.
    for case in await unissued_completed(_now() - timedelta(days=ISSUE_RETRY_DAYS)):
        try:
            doc = await issue_completion_notice(case, settings, now=_now())
        except PipelineError as exc:  # data HR must fix (told by the card render's log); retried next round
            log.error("case %s: completion notice not issued: %s", case.id, exc)
            continue
        except Exception:  # retried next round
            log.exception("case %s: completion notice not issued", case.id)
            continue
        if doc is not None:
            results[doc.id] = doc.status
    # The fallback paper (registered-mail letter, newspaper notice) HR's card could not issue.
    for case, step_id in await unissued_notices(service.templates):
        try:
            doc = await issue_step_notice(case, step_id, settings, now=_now())
        except PipelineError as exc:  # data HR must fix (the card says what); retried next round
            log.warning("case %s: %s paper not issued: %s", case.id, step_id, exc)
            continue
        except Exception:  # retried next round
            log.exception("case %s: %s paper not issued", case.id, step_id)
            continue
        if doc is not None:
            results[doc.id] = doc.status
    for doc in await exhausted(settings):
        if await give_up(service, doc):
            results[doc.id] = "failed"
    return results


async def sweep_loop(app: web.Application) -> None:
    settings: Settings = app[SETTINGS]
    while True:
        await asyncio.sleep(settings.signing_sweep_seconds)
        try:
            await sweep_round(settings, app[SERVICE])
        except Exception:  # keep the loop alive: the next round retries
            log.exception("signing sweep failed")


def setup(app: web.Application) -> None:
    settings: Settings = app[SETTINGS]
    app.router.add_static(STATIC_PREFIX, STATIC_DIR)
    app.router.add_get("/sign/{token}", sign_page)
    app.router.add_post("/sign/{token}", submit)
    app.router.add_get(r"/sign/{token}/page/{n:\d+}.png", page_image)
    # Any platform name: the handler refuses one that is not the signer's (no platform list here).
    app.router.add_get("/sign/{token}/oauth/{platform:[a-z][a-z0-9_]{0,31}}", oauth_return)
    app.router.add_get("/sign/{token}/document.pdf", download)
    app.router.add_get("/doc/{token}", download_document)
    redact_link_tokens_in_access_log()
    app.cleanup_ctx.append(background("signing-sweep", sweep_loop))

    async def checkpoint(conn: Any, case_id: str) -> None:
        await write_checkpoint(case_id, keys_for(settings), using=conn)

    app[SERVICE].on_closed.append(checkpoint)
