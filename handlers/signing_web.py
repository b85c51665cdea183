"""The signing web pages: open a personal link, read the document, sign by hand, get a sealed PDF.

GET  /sign/{token}                  the page (document images + consent + pad); records "viewed"
GET  /sign/{token}/page/{n}.png     page images of the unsigned draft
POST /sign/{token}                  the signature (JSON from signpad.js); one transaction, then the seal
GET  /sign/{token}/oauth/{platform} OAuth return: the signer's platform (its connector's `identity`) confirms them
GET  /sign/{token}/document.pdf     the sealed PDF, for the holder of the same link
GET  /doc/{token}                   one sealed document of a case (completion card links), for the case's
                                    employee or HR holding their own link

Every refusal changes nothing and explains itself in Chinese. The link token is an HMAC over case, step,
signer, expiry and nonce (signing.links); single use is the nonce row's `used_at`, claimed with a
compare-and-set inside the same transaction as the workflow step change and the Signature row.

This module is the routes: it reads requests and answers them. Who may use a link is
handlers/signing_access.py; what a signature writes (one transaction) and the sealing sweep are
handlers/signing_service.py.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import time
from collections import OrderedDict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

from cases.service import CaseService
from chat import presentation
from chat.appkeys import SERVICE, SETTINGS
from chat.background import background
from config.settings import Settings
from handlers import backpay, signin
from handlers.links import redact_link_tokens_in_access_log
from handlers.signing_access import Refused, Target, client_ip, ensure_link, resolve_link
from handlers.signing_service import (
    DocumentChanged,
    LinkClaimed,
    Submission,
    claim_link,
    record_signature,
    release_link,
    sweep_round,
)
from signing.documents import signature_image
from signing.evidence import SignatureFacts
from signing.links import LinkError, read_token
from signing.page import CONSENT_VERSION, render_sign_page
from signing.pipeline import (
    PipelineError,
    current_document,
    ensure_draft,
    keys_for,
    seal_document,
    shown_key,
    shown_pdf,
    write_checkpoint,
)
from signing.preview import PreviewError, pdf_to_png_pages
from signing.render import RenderBusy
from signing.render import render as render_signature
from signing.strokes import StrokeError, StrokePayload, parse_strokes, trivial_reason
from signing.templates import DocumentError
from storage.canonical import sha256_hex
from storage.models import Case, Document, Employee, SigningLink
from workflow import cleantext
from workflow.documents import document_title
from workflow.events import Viewed
from workflow.model import ROLE_TITLES, Role

log = logging.getLogger("signing")

MAX_BODY = 1_000_000
STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_PREFIX = "/sign-assets"
IDENTITY_COOKIE_SECONDS = 1800
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
}


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

def _sign_in(request: web.Request, t: Target) -> signin.SignIn | None:
    try:
        return signin.for_signer(request.app, t.signer)
    except signin.Unavailable as exc:  # their platform cannot confirm anyone here: nobody may sign for them
        raise Refused(503, "sign_in_unavailable", exc.zh) from None


def _identity_check(request: web.Request, t: Target) -> tuple[str, str] | web.Response:
    """(identity_method, platform_identity), or a redirect to the platform login when one is needed."""
    settings: Settings = request.app[SETTINGS]
    needed = _sign_in(request, t)  # the signer's connector's sign-in, if their links need one
    if needed is None:
        return "link", ""
    platform, expected = needed
    cookie = request.cookies.get(signin.identity_cookie_name(t.claims.nonce))
    who = signin.read_identity_cookie(settings.secret_bytes(), t.claims.nonce, cookie, time.time())
    if who is None or who.platform != platform:
        if request.method != "GET":
            raise Refused(401, "identity_required", f"请先通过{needed.name.zh}确认身份后再签署（请刷新页面）。")
        url = needed.authorize_url(_callback_url(settings, request, platform),
                                   signin.oauth_state(settings.secret_bytes(), t.claims.nonce))
        raise web.HTTPFound(url)
    if who.userid != expected:
        raise Refused(403, "identity_mismatch", "登录账号与签署人不一致，不能代他人签署。")
    return who.method, who.identity


def _callback_url(settings: Settings, request: web.Request, platform: str) -> str:
    return f"{settings.public_base_url}/sign/{request.match_info['token']}/oauth/{platform}"


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

def _now() -> datetime:
    return datetime.now(UTC)


async def resolve(request: web.Request, *, allow_used: bool = False) -> Target:
    return await resolve_link(request.match_info["token"], request.app[SETTINGS], request.app[SERVICE],
                              allow_used=allow_used)


async def sign_page(request: web.Request) -> web.StreamResponse:
    settings: Settings = request.app[SETTINGS]
    service: CaseService = request.app[SERVICE]
    try:
        t = await resolve(request)
        _identity_check(request, t)
    except Refused as exc:
        return _refused_page(exc, request)
    now = _now()
    link = await ensure_link(t, now)
    if link.opened_at is None:
        await SigningLink.filter(nonce=link.nonce, opened_at=None).update(opened_at=now)
    try:
        doc = await ensure_draft(t.case, t.step.id, t.kind, settings, channel=presentation.app_channel(request.app),
                                 now=now)
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


IN_PROGRESS = Refused(409, "in_progress", "该链接的签名正在提交中，请勿重复提交；如长时间无结果，请稍后刷新页面。")
USED = Refused(410, "used", "该链接已完成签署，不能重复使用。")


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
    link = await ensure_link(t, now)
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
    submission = Submission(
        case_id=t.case.id, step=t.step, kind=t.kind, signer_id=t.signer.employee_id, roles=t.roles, doc=doc,
        link_nonce=link.nonce, claim=claim, facts=facts, strokes=stroke_bytes, png=png, client_hash=client_hash,
        at=now)
    try:
        signed = await record_signature(service, submission)
    except LinkClaimed:
        return _json_error(USED)
    except DocumentChanged:
        return _json_error(Refused(409, "document_changed", "文件已更新，请刷新页面阅读后再签署。"))
    outcome = signed.outcome
    if not outcome.ok:
        r = outcome.refusal
        return _json_error(Refused(409, r.code if r else "refused", r.message_zh if r else "无法签署。"))
    if not signed.complete:
        nxt = outcome.decision and t.step.next_signer(outcome.decision.state.steps[t.step.id], t.kind)
        waiting = ROLE_TITLES[nxt].zh if nxt else "其他签署人"
        return web.json_response({
            "ok": True, "message": f"签署完成，谢谢。待{waiting}在同一份文件上签署后，文件将加盖电子印章，"
                                   "届时可在此下载。",
            "status": "partly_signed", "document_sha256": doc.sha256_unsigned,
            "download": f"/sign/{quote(token)}/document.pdf",
        }, headers=HEADERS)
    try:
        status = await seal_document(doc.id, settings, channel=presentation.app_channel(request.app))
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
        needed = _sign_in(request, t)
        if needed is None or needed[0] != platform:
            raise Refused(400, "no_oauth", "该签署人无需通过此平台确认身份。")
        if not signin.check_state(settings.secret_bytes(), t.claims.nonce, request.query.get("state", "")):
            raise Refused(403, "bad_state", "身份确认请求无效，请重新打开签署链接。")
        try:
            who = await needed.confirm(request.query)
        except signin.IdentityError as exc:
            log.warning("identity confirmation failed for %s: %s", t.claims.case_id, exc.message)
            raise Refused(403, "identity_failed",
                          f"未能通过平台确认您的身份，请在{needed.name.zh}内重新打开链接。") from None
        if who.userid != needed[1]:
            log.warning("identity mismatch on %s/%s: %s signed in for %s", t.claims.case_id, t.claims.step_id,
                        who.identity, t.signer.employee_id)
            raise Refused(403, "identity_mismatch", "登录账号与签署人不一致，不能代他人签署。")
    except Refused as exc:
        return _refused_page(exc, request)
    token = request.match_info["token"]
    expires = int(time.time()) + IDENTITY_COOKIE_SECONDS
    resp = web.HTTPFound(f"/sign/{quote(token)}")
    resp.set_cookie(signin.identity_cookie_name(t.claims.nonce),
                    signin.identity_cookie(settings.secret_bytes(), t.claims.nonce, who, expires),
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

async def sweep_loop(app: web.Application) -> None:
    settings: Settings = app[SETTINGS]
    while True:
        await asyncio.sleep(settings.signing_sweep_seconds)
        try:
            await sweep_round(settings, app[SERVICE], channel=presentation.app_channel(app))
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
