"""The HR dashboard's routes (`/dashboard`): sign-in, the overview, a case's page, its documents and
archive, and HR's actions on it.

GET  /dashboard                          overview (filters: state, type, dept, q)
GET  /dashboard/signin                   the sign-in choices
GET  /dashboard/signin/{platform}        starts the platform's OAuth code flow (the emulator's local one too)
GET  /dashboard/oauth/{platform}         the platform's redirect back: code -> user id -> HR? -> session
POST /dashboard/signout
GET  /dashboard/case/{id}                the case: steps, documents, verify, timeline, access log
GET  /dashboard/case/{id}/document/{n}.pdf   a sealed document
GET  /dashboard/case/{id}/archive.zip    the case archive (handlers.archive's exporter)
POST /dashboard/case/{id}/{remind|cancel|fallback}   the chat's command, through the chat's own path

Only people with the hr (or admin) role get past sign-in; every page read, document and archive download
is written to the case's access log (storage.models.CaseAccess), which the case page shows.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web
from aiohttp_session import get_session

from cases.service import utcnow
from chat.connector import IdentityError
from handlers.archive import export_case, log_access
from handlers.dashboard import overview as ov
from handlers.dashboard import pages, session
from handlers.dashboard.deps import DASHBOARD, Dashboard
from handlers.dashboard.timeline import MAX_ENTRIES, timeline
from signing.archive import ArchiveError
from signing.pipeline import keys_for
from signing.verify import all_ok, verify_case
from storage.models import Case, CaseAccess, CaseStep, Document, Employee
from workflow.documents import document_title
from workflow.model import ROLE_TITLES
from workflow.text import Text

log = logging.getLogger("handlers.dashboard")

STATIC = Path(__file__).resolve().parent / "static"
_CASE_ID = re.compile(r"^OB-[0-9A-Z]{6}$")
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
MAX_FORM = 16 * 1024
ACCESS_SHOWN = 200
ACTIONS = {"remind": "remind", "cancel": "cancel", "fallback": "fallback"}

Handler = Callable[[web.Request, session.SignedIn], Awaitable[web.StreamResponse]]


def _dash(request: web.Request) -> Dashboard:
    return request.app[DASHBOARD]


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


async def _anon_view(request: web.Request) -> pages.View:
    dash = _dash(request)
    return pages.View(await session.language(request), dash.config.tz)


def _view(request: web.Request, who: session.SignedIn) -> pages.View:
    return pages.View(who.lang, _dash(request).config.tz,
                      f"{who.employee.name}（{who.employee.employee_id}）", who.csrf)


def _signin_redirect(request: web.Request, expired: bool) -> web.Response:
    query = {"next": request.path_qs} | ({"expired": "1"} if expired else {})
    return web.Response(status=303, headers={"Location": f"/dashboard/signin?{urlencode(query)}"})


def hr_only(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Signed-out or expired: GET goes to sign-in, anything else is refused. Not HR: refused."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            who = await session.current(request)
        except session.NotSignedIn as exc:
            if request.method == "GET":
                return _signin_redirect(request, exc.expired)
            v = await _anon_view(request)
            ended = v.t("登录已失效，请重新登录后再操作。", "Your session has ended; sign in again.")
            return _html(pages.notice(v, v.t("请先登录", "Sign in first"), ended), 401)
        except session.NotHR:
            await session.sign_out(request)
            v = await _anon_view(request)
            return _not_hr(v)
        return await handler(request, who)

    return wrapped


# ---------------------------------------------------------------- sign-in

def _safe_next(value: str | None) -> str:
    """Only our own dashboard paths: never an absolute or protocol-relative address (open redirect)."""
    if value and value.startswith("/dashboard") and not value.startswith("//") and "\\" not in value:
        return value
    return "/dashboard"


async def signin_page(request: web.Request) -> web.Response:
    dash = _dash(request)
    v = await _anon_view(request)
    nxt = _safe_next(request.query.get("next"))
    options = [(f"/dashboard/signin/{name}?{urlencode({'next': nxt})}",
                v.txt(dash.sign_in_labels.get(name, Text(name, name)))) for name in dash.identities]
    message = v.t("登录已过期，请重新登录。", "Your session has expired; please sign in again.") \
        if request.query.get("expired") else ""
    return _html(pages.signin(v, options, message))


def _callback(dash: Dashboard, platform: str) -> str:
    path = f"/dashboard/oauth/{platform}"
    # A local sign-in (the emulator's) comes back to whatever loopback address the user opened; a
    # platform's OAuth needs the registered one.
    relative = getattr(dash.identities.get(platform), "relative_redirect", False)
    return path if relative else f"{dash.config.public_base_url}{path}"


async def signin_start(request: web.Request) -> web.Response:
    dash = _dash(request)
    platform = request.match_info["platform"]
    identity = dash.identities.get(platform)
    if identity is None:
        v = await _anon_view(request)
        return _html(pages.notice(v, v.t("无法登录", "Cannot sign in"),
                                  v.t("该登录方式未启用。", "This sign-in is not enabled.")), 404)
    state = await session.begin_signin(request, platform, _safe_next(request.query.get("next")))
    return web.Response(status=302, headers={"Location": identity.authorize_url(_callback(dash, platform), state)})


async def oauth_return(request: web.Request) -> web.Response:
    dash = _dash(request)
    platform = request.match_info["platform"]
    identity = dash.identities.get(platform)
    v = await _anon_view(request)
    refused = v.t("无法登录", "Cannot sign in")
    nxt = await session.finish_signin(request, platform, request.query.get("state", ""))
    if identity is None or nxt is None:
        return _html(pages.notice(v, refused, v.t("登录请求无效或已过期，请重新登录。",
                                                  "The sign-in request is not valid or has expired; start again."),
                                  extra='<p><a href="/dashboard/signin">' + v.t("重新登录", "Sign in") + "</a></p>"),
                     403)
    try:
        user_id = await identity.user_id(dict(request.query))
    except IdentityError as exc:
        log.warning("dashboard sign-in through %s failed: %s", platform, exc)
        return _html(pages.notice(v, refused, v.t("平台未能确认您的身份，请重新登录。",
                                                  "The platform did not confirm who you are; sign in again.")), 403)
    employee = await dash.resolve_user(platform, user_id)
    if not dash.is_hr(employee):
        log.warning("dashboard sign-in refused for %s user %s: not HR", platform, user_id)
        return _not_hr(v)
    assert employee is not None  # is_hr(None) is False
    await session.sign_in(request, employee, platform, v.lang)
    log.info("dashboard: %s signed in through %s", employee.employee_id, platform)
    return web.Response(status=303, headers={"Location": nxt})


async def signout(request: web.Request) -> web.Response:
    try:
        who = await session.current(request)
    except (session.NotSignedIn, session.NotHR):
        who = None
    if who is not None:
        form = await _form(request)
        if not session.csrf_ok(who, form.get("csrf")):
            v = _view(request, who)
            expired = v.t("表单已失效，请刷新页面。", "The form has expired; reload the page.")
            return _html(pages.notice(v, v.t("请求无效", "Refused"), expired), 403)
    await session.sign_out(request)
    return web.Response(status=303, headers={"Location": "/dashboard/signin"})


# ---------------------------------------------------------------- overview

@hr_only
async def overview_page(request: web.Request, who: session.SignedIn) -> web.Response:
    dash = _dash(request)
    templates = dash.service.templates
    filters = ov.Filters.parse(request.query, templates)
    now = utcnow()
    rows = await ov.rows(templates, filters, now=now)
    counts = await ov.counts(templates, now=now)
    types = {tid: t.title for tid, t in sorted(templates.items())}
    return _html(pages.overview(_view(request, who), rows, counts, filters, types, await ov.departments()))


# ---------------------------------------------------------------- the case page

async def _case(request: web.Request) -> Case | None:
    case_id = request.match_info["case_id"].upper()
    return await Case.get_or_none(id=case_id) if _CASE_ID.match(case_id) else None


def _not_found(v: pages.View) -> web.Response:
    return _html(pages.notice(v, v.t("找不到流程", "No such case"), v.t("没有这个流程。", "There is no such case.")),
                 404)


def _not_hr(v: pages.View) -> web.Response:
    return _html(pages.notice(v, v.t("无权访问", "Not allowed"),
                              v.t("只有人事（HR）可以使用离职档案系统。", "Only HR may use the dashboard.")), 403)


_VERIFY_CACHE = 64


async def _verify(dash: Dashboard, case: Case) -> tuple[bool, list[str]]:
    """The case's `verify --case` result, kept while the case's chain head and documents stay as they were."""
    docs = tuple(await Document.filter(case_id=case.id).order_by("id").values_list("id", "status", "sha256_signed"))
    key = (case.id, case.audit_seq, case.audit_head, docs)
    cache = dash.verified
    hit = cache.get(key)
    if hit is not None:
        cache.move_to_end(key)
        return hit
    keys = keys_for(dash.settings)
    checks = await verify_case(case.id, keys=keys, trust_root=keys.root_cert or keys.seal_cert,
                               templates=dash.service.templates)
    result = (all_ok(checks), [c.line() for c in checks])
    cache[key] = result
    while len(cache) > _VERIFY_CACHE:
        cache.popitem(last=False)
    return result


def _detail(d: Any) -> str:
    if not isinstance(d, dict):
        return str(d)
    return ", ".join(f"{k}={v}" for k, v in sorted(d.items()) if k != "ip") or "—"


@hr_only
async def case_page(request: web.Request, who: session.SignedIn) -> web.Response:
    dash = _dash(request)
    v = _view(request, who)
    case = await _case(request)
    if case is None:
        return _not_found(v)
    await log_access(case.id, who.employee.employee_id, "view", via="dashboard", ip=request.remote or "")
    await case.fetch_related("employee")
    template = dash.service.templates.get(case.template_id)
    rows = {s.step_id: s for s in await CaseStep.filter(case_id=case.id)}
    waiting = {w.step_id: w for r in await ov.rows(dash.service.templates, ov.Filters(state="all", q=case.id))
               for w in r.waiting if r.case_id == case.id}
    hr_id = who.employee.employee_id

    def upload_link(step_id: object) -> str | None:
        return dash.upload_url(case.id, step_id, hr_id) if dash.upload_url and isinstance(step_id, str) else None

    now = utcnow()
    steps = []
    for st in (template.steps if template else ()):
        row = rows.get(st.id)
        w = waiting.get(st.id)
        steps.append({
            "number": st.number, "title": st.title, "status": row.status if row else "locked",
            "who": (f"{'、'.join(w.people)}（{v.txt(ROLE_TITLES[w.role])}）" if w else v.txt(ROLE_TITLES[st.role])),
            "activated": row.activated_at if row else None, "viewed": row.viewed_at if row else None,
            "done": row.done_at if row else None, "done_by": row.done_by if row else None,
            "deadline": (st.due_by(row.activated_at) if row and row.activated_at and row.status == "active"
                         else None),
            "overdue": bool(w and w.overdue and now),
            # Steps that take a file (the fallback's postal receipt, the newspaper page) link HR's upload page.
            "upload": (upload_link(st.id) if row and row.status == "active" and any(f.type == "file" for f in st.fields)
                       else None),
        })
    documents = [{"id": d.id, "title": document_title(d.kind), "status": d.status,
                  "sha256": d.sha256_signed or d.sha256_unsigned,
                  "href": f"/dashboard/case/{case.id}/document/{d.id}.pdf" if d.status == "sealed" else None}
                 for d in await Document.filter(case_id=case.id).order_by("id")
                 .only("id", "kind", "status", "sha256_signed", "sha256_unsigned")]
    ok, lines = await _verify(dash, case)
    items = await timeline(case.id, template, link_for=lambda kind, data: upload_link(data.get("step_id"))
                           if kind == "evidence_uploaded" else None)
    accesses = [{"at": a.at, "actor": a.actor, "action": a.action, "detail": _detail(a.detail)}
                for a in await CaseAccess.filter(case_id=case.id).order_by("-at", "-id").limit(ACCESS_SHOWN)]
    ids = {i.actor for i in items if i.actor} | {case.created_by}
    names = dict(await Employee.filter(employee_id__in=sorted(ids)).values_list("employee_id", "name"))
    emp = case.employee
    status = pages.STATUS.get(case.status, Text(case.status, case.status))
    summary: list[tuple[Text, str | Text]] = [
        (Text("员工", "Employee"), f"{emp.name}（{emp.employee_id}）"),
        (Text("部门 / 岗位", "Department / position"), f"{emp.department or '—'} / {emp.position or '—'}"),
        (Text("类型", "Type"), template.title if template else case.template_id),
        (Text("状态", "Status"), status),
        (Text("最后工作日", "Last working day"), case.last_day.isoformat() if case.last_day else "—"),
        (Text("原因", "Reason"), case.reason or "—"),
        (Text("发起", "Started"), f"{v.when(case.started_at)} · {names.get(case.created_by, case.created_by)}"),
        (Text("结束", "Closed"), v.when(case.closed_at)),
        (Text("审计链", "Audit chain"), f"{case.audit_seq} · {case.audit_head[:16]}…"),
    ]
    flash = (await get_session(request)).pop("flash", None)
    page = pages.CasePage(case.id, summary, case.status, steps, documents, ok, lines, items, accesses, names,
                          # Offered where the chat offers it: a command to run, a flow with a fallback
                          # path, a case still open and not already on it.
                          dash.has_command("fallback") and template is not None and case.status == "open"
                          and not case.fallback_started and any(st.fallback for st in template.steps),
                          flash if isinstance(flash, dict) else None,
                          truncated=case.audit_seq > MAX_ENTRIES)
    return _html(pages.case_page(v, page))


@hr_only
async def document(request: web.Request, who: session.SignedIn) -> web.Response:
    v = _view(request, who)
    case = await _case(request)
    doc_id = request.match_info["doc_id"]
    doc = await Document.get_or_none(id=int(doc_id), case_id=case.id, status="sealed") if case else None
    if case is None or doc is None or doc.pdf_signed is None:
        return _not_found(v)
    await log_access(case.id, who.employee.employee_id, "document", via="dashboard", document_id=doc.id,
                     kind=doc.kind, sha256=doc.sha256_signed, ip=request.remote or "")
    return web.Response(body=bytes(doc.pdf_signed), content_type="application/pdf", headers={
        "Content-Disposition": f'attachment; filename="{case.id}-{doc.kind}.pdf"'})


@hr_only
async def archive(request: web.Request, who: session.SignedIn) -> web.StreamResponse:
    dash = _dash(request)
    v = _view(request, who)
    case = await _case(request)
    if case is None:
        return _not_found(v)
    cfg = dash.config
    # The PDFs in it are clear text: built beside the database, owner-only, deleted after (as /export does).
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="archive-", suffix=".zip", dir=cfg.data_dir)
    path = Path(name)
    try:
        with os.fdopen(fd, "w+b") as f:
            try:
                result = await export_case(dash.settings, case.id, f, templates=dash.service.templates)
            except ArchiveError as exc:
                return _html(pages.notice(v, v.t("无法导出", "Cannot export"), str(exc)), 404)
            size = f.tell()
            f.seek(0)
            # Logged before the first byte leaves: a download cut short was still a download begun.
            await log_access(case.id, who.employee.employee_id, "download", via="dashboard",
                             manifest_sha256=result.sha256, files=result.files, bytes=size, ip=request.remote or "")
            resp = web.StreamResponse(headers={
                **session.HEADERS, "Content-Type": "application/zip", "Content-Length": str(size),
                "Content-Disposition": f'attachment; filename="{case.id}-archive.zip"'})
            await resp.prepare(request)
            while chunk := f.read(1 << 16):
                await resp.write(chunk)
            await resp.write_eof()
        return resp
    finally:
        await asyncio.to_thread(path.unlink, missing_ok=True)


# ---------------------------------------------------------------- HR actions

async def _form(request: web.Request) -> dict[str, str]:
    if request.content_length is not None and request.content_length > MAX_FORM:
        return {}
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return {}
    try:
        data = await request.post()
    except (ValueError, web.HTTPException):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)}


@hr_only
async def action(request: web.Request, who: session.SignedIn) -> web.Response:
    dash = _dash(request)
    v = _view(request, who)
    name = request.match_info["action"]
    case = await _case(request)
    if case is None:
        return _not_found(v)
    form = await _form(request)
    if not session.csrf_ok(who, form.get("csrf")):
        log.warning("dashboard: %s posted %s on %s without a valid CSRF token", who.employee.employee_id, name,
                    case.id)
        refused = v.t("表单已失效或来源不明，未执行任何操作。请刷新页面后重试。",
                      "The form expired or did not come from this page; nothing was done. Reload and try again.")
        return _html(pages.notice(v, v.t("请求无效", "Refused"), refused), 403)
    if name == "fallback" and not dash.has_command("fallback"):
        return _not_found(v)
    reason = " ".join(form.get("reason", "").split()) if name in ("cancel", "fallback") else ""
    text = f"/{ACTIONS[name]} {case.id}" + (f" {reason}" if reason else "")
    nonce = form.get("nonce", "")
    key = f"dashboard:{nonce}" if _NONCE.match(nonce) else f"dashboard:{os.urandom(12).hex()}"
    result = await dash.run_command(who.employee.employee_id, text, key, who.lang)
    (await get_session(request))["flash"] = {"ok": result.ok, "text": result.text[:1000]}
    return web.Response(status=303, headers={"Location": f"/dashboard/case/{quote(case.id)}"})


async def stylesheet(request: web.Request) -> web.Response:
    return web.Response(body=(STATIC / "dashboard.css").read_bytes(), content_type="text/css",
                        headers={"Cache-Control": "max-age=3600"})


# ---------------------------------------------------------------- wiring

@web.middleware
async def _dashboard_only(request: web.Request, handler: Any) -> web.StreamResponse:
    chain = request.app[_CHAIN]
    if request.path == "/dashboard" or request.path.startswith("/dashboard/"):
        return await chain(request, handler)
    return await handler(request)


_CHAIN = web.AppKey("dashboard_chain", object)


def install(app: web.Application, dash: Dashboard) -> None:
    app[DASHBOARD] = dash
    outer, inner = session.middlewares(dash)

    async def chain(request: web.Request, handler: Any) -> web.StreamResponse:
        async def with_session(req: web.Request) -> web.StreamResponse:
            return await inner(req, handler)

        return await outer(request, with_session)

    app[_CHAIN] = chain
    app.middlewares.append(_dashboard_only)
    r = app.router
    r.add_get("/dashboard", overview_page)
    r.add_get("/dashboard/", overview_page)
    r.add_get("/dashboard/assets/dashboard.css", stylesheet)
    r.add_get("/dashboard/signin", signin_page)
    r.add_get("/dashboard/signin/{platform:[a-z]{1,16}}", signin_start)
    r.add_get("/dashboard/oauth/{platform:[a-z]{1,16}}", oauth_return)
    r.add_post("/dashboard/signout", signout)
    r.add_get("/dashboard/case/{case_id}", case_page)
    r.add_get(r"/dashboard/case/{case_id}/document/{doc_id:\d{1,9}}.pdf", document)
    r.add_get("/dashboard/case/{case_id}/archive.zip", archive)
    r.add_post("/dashboard/case/{case_id}/{action:remind|cancel|fallback}", action)

