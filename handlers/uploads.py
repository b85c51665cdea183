"""The evidence upload page for HR: the fallback steps' scans (postal receipt, printed newspaper page) and the
facts that go with them (EMS tracking number and delivery result, newspaper and date).

GET  /upload/{token}   a phone-sized page: the step, what is asked, its fields and a file input
POST /upload/{token}   multipart form: `intent` = upload (the file only) or complete (file, if any, plus the
                       step's fields: the step is done on that evidence)

The link is an HMAC token (signing.links, purpose "upload") naming the case, the step, the HR person and an
expiry; HR gets it on the step's card, and the dashboard links to the same page. It works only for someone
who holds the HR role when they use it. A file is accepted by what its bytes are (signing.uploads), within
UPLOAD_MAX_BYTES (413 above); it is stored encrypted (storage.models.Upload) in the same transaction as the
engine's `evidence_uploaded` entry that records its SHA-256. Everything is checked — the file, the fields,
and what the engine would say to both — before anything is stored, so a refusal changes nothing.

Settings come in as values (UploadConfig, from `config_of`), so tests can run the page on their own clock.
"""

from __future__ import annotations

import asyncio
import html
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web

from cases.service import CaseError, CaseService, CaseTx, utcnow
from chat.appkeys import SERVICE, SETTINGS
from config.settings import Settings
from signing.links import LinkError, make_token, new_nonce, read_token
from signing.uploads import Checked, UploadRejected, check_upload
from storage.models import Case, CaseAccess, Employee, Upload
from workflow import cleantext, engine
from workflow.events import Act, Evidence
from workflow.model import CaseState, Role
from workflow.template import StepTemplate

log = logging.getLogger("handlers.uploads")

PURPOSE = "upload"
STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_PREFIX = "/upload-assets"
_FORM_OVERHEAD = 64 * 1024  # multipart boundaries and the text fields around the file
_TEXT_PART_MAX = 4096
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
}


@dataclass(frozen=True)
class UploadConfig:
    """What the upload page needs from the settings, handed down by the bot."""

    secret: bytes
    public_base_url: str
    max_bytes: int
    link_ttl: timedelta
    tz: tzinfo
    now: Callable[[], datetime] = utcnow


def config_of(settings: Settings) -> UploadConfig:
    return UploadConfig(secret=settings.secret_bytes(), public_base_url=settings.public_base_url,
                        max_bytes=settings.upload_max_bytes, link_ttl=timedelta(hours=settings.link_ttl_hours),
                        tz=settings.tz)


def upload_url(secret: bytes, public_base_url: str, case_id: str, step_id: str, hr_id: str, *,
               now: datetime, ttl: timedelta) -> str:
    """HR's personal link to the upload page of one step (cards and the dashboard link here)."""
    token = make_token(secret, case_id=case_id, step_id=step_id, signer_id=hr_id, expires_at=now + ttl,
                       nonce=new_nonce(), purpose=PURPOSE)
    return f"{public_base_url}/upload/{token}"


class Refused(Exception):
    def __init__(self, status: int, code: str, zh: str, en: str) -> None:
        super().__init__(en)
        self.status, self.code, self.zh, self.en = status, code, zh, en


@dataclass
class Target:
    case: Case
    state: CaseState
    step: StepTemplate
    hr: Employee
    roles: frozenset[Role]
    employee_name: str


async def _resolve(request: web.Request, config: UploadConfig, service: CaseService) -> Target:
    try:
        claims = read_token(config.secret, request.match_info["token"], config.now(), purpose=PURPOSE)
    except LinkError as exc:
        if exc.code == "expired":
            raise Refused(410, "expired", "上传链接已过期，请从流程卡片或管理后台重新打开。",
                          "This upload link has expired; open it again from the card or the dashboard.") from None
        raise Refused(403, "bad_link", "上传链接无效。", "This upload link is not valid.") from None
    hr = await Employee.get_or_none(employee_id=claims.signer_id, active=True)
    if hr is None or "hr" not in hr.role_set:
        raise Refused(403, "not_hr", "只有 HR 可以上传送达凭证。", "Only HR can upload delivery evidence.")
    case = await Case.get_or_none(id=claims.case_id)
    if case is None:
        raise Refused(404, "unknown_case", "找不到对应的离职流程。", "No such case.")
    template = service.template(case.template_id)
    step = template.by_id.get(claims.step_id)
    if step is None or not step.file_fields:
        raise Refused(404, "no_upload", "此步骤没有需要上传的文件。", "This step takes no upload.")
    state = await service.load_state(case)
    roles = await service.roles_of(case, hr)
    emp = await Employee.get(id=case.employee_id)  # type: ignore[attr-defined]
    return Target(case, state, step, hr, roles, emp.name)


# ---- the page -------------------------------------------------------------------------------------------
def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _input(f: Any, value: str) -> str:
    name, label = _e(f.key), _e(f.label.zh)
    req = " required" if f.required else ""
    if f.type == "file":
        return (f'<label>{label}<input type="file" name="{name}" accept="image/jpeg,image/png,application/pdf">'
                "</label>")
    if f.type == "choice":
        opts = "".join(f'<option value="{_e(v)}"{" selected" if v == value else ""}>{_e(lbl.zh)}</option>'
                       for v, lbl in f.options)
        return f'<label>{label}<select name="{name}"><option value=""></option>{opts}</select></label>'
    kind = {"date": "date", "number": "number"}.get(f.type, "text")
    if f.type == "textarea":
        return f'<label>{label}<textarea name="{name}" rows="3">{_e(value)}</textarea></label>'
    return f'<label>{label}<input type="{kind}" name="{name}" value="{_e(value)}"{req}></label>'


async def _page(t: Target, config: UploadConfig, *, status: int = 200, message: str = "", ok: bool = False,
                values: dict[str, str] | None = None) -> web.Response:
    st = t.state.steps[t.step.id]
    values = values or {}
    uploads = await Upload.filter(case_id=t.case.id, step_id=t.step.id).order_by("id")
    done = [f"<li>{_e(u.filename or u.field)} · {_e(u.content_type)} · {u.size:,} B · SHA-256 "
            f"{_e(u.sha256[:16])}… · {u.uploaded_at.astimezone(config.tz):%Y-%m-%d %H:%M}</li>" for u in uploads]
    open_now = st.status == "active" and t.state.status == "open"
    if st.status == "done":
        state_line = "此步骤已完成。"
    elif not open_now:
        state_line = "此步骤当前未开放，不能上传。"
    else:
        state_line = "请上传照片或扫描件（JPEG、PNG 或 PDF），并填写以下信息。"
    fields = "".join(_input(f, values.get(f.key, "")) for f in t.step.fields)
    form = ("" if not open_now else
            f'<form method="post" enctype="multipart/form-data">{fields}'
            '<button type="submit" name="intent" value="complete" class="primary">上传并完成此步骤</button>'
            '<button type="submit" name="intent" value="upload">仅上传凭证</button></form>')
    note = f'<p class="{"ok" if ok else "err"}" role="status">{_e(message)}</p>' if message else ""
    body = (f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>上传送达凭证 · {_e(t.case.id)}</title>'
            f'<link rel="stylesheet" href="{STATIC_PREFIX}/upload.css"></head><body><main>'
            f"<h1>{_e(t.step.title.zh)}</h1>"
            f'<p class="meta">流程 {_e(t.case.id)} · {_e(t.employee_name)}</p>{note}'
            f"<p>{_e(t.step.ask.zh)}</p><p class=\"meta\">{_e(state_line)}</p>{form}"
            + (f"<h2>已上传</h2><ul>{''.join(done)}</ul>" if done else "")
            + "</main></body></html>")
    return web.Response(status=status, text=body, content_type="text/html", charset="utf-8", headers=HEADERS)


def _refused(exc: Refused) -> web.Response:
    body = (f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1"><title>无法打开</title>'
            f'<link rel="stylesheet" href="{STATIC_PREFIX}/upload.css"></head><body><main>'
            f'<h1>无法打开</h1><p class="err">{_e(exc.zh)}</p><p class="meta">{_e(exc.en)}</p></main></body></html>')
    return web.Response(status=exc.status, text=body, content_type="text/html", charset="utf-8", headers=HEADERS)


# ---- handlers -------------------------------------------------------------------------------------------
def make_handlers(config: UploadConfig, service: CaseService) -> tuple[Any, Any]:
    async def show(request: web.Request) -> web.Response:
        try:
            t = await _resolve(request, config, service)
        except Refused as exc:
            return _refused(exc)
        # A read of the case (the employee's name, the uploads so far) by HR: into the case's access log.
        await CaseAccess.create(case_id=t.case.id, at=config.now(), actor=t.hr.employee_id, action="upload_page",
                                detail={"step_id": t.step.id, "ip": request.remote or ""})
        return await _page(t, config)

    async def submit(request: web.Request) -> web.Response:
        try:
            t = await _resolve(request, config, service)
        except Refused as exc:
            return _refused(exc)
        try:
            return await _submit(request, t, config, service)
        except Refused as exc:
            if exc.status in (400, 409, 413, 415, 422):
                return await _page(t, config, status=exc.status, message=f"{exc.zh}（{exc.en}）")
            return _refused(exc)

    return show, submit


async def _read_form(request: web.Request, step: StepTemplate, max_bytes: int
                     ) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
    """The text fields and the files (field -> (filename, bytes)), each within its limit; 413 above."""
    if request.content_length is not None and request.content_length > max_bytes + _FORM_OVERHEAD:
        raise _too_big(max_bytes)
    if not (request.content_type or "").startswith("multipart/form-data"):
        raise Refused(415, "bad_form", "请通过上传页面提交。", "Submit through the upload page.")
    files_wanted = {f.key for f in step.file_fields}
    texts: dict[str, str] = {}
    files: dict[str, tuple[str, bytes]] = {}
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or not part.name:
                raise Refused(400, "bad_form", "表单格式不正确。", "Malformed form.")
            if part.filename is not None:
                if part.name not in files_wanted or part.name in files:
                    raise Refused(400, "bad_form", f"此步骤没有文件项「{part.name}」。",
                                  f"This step takes no file called '{part.name}'.")
                data = bytearray()
                while chunk := await part.read_chunk(1 << 16):
                    data += chunk
                    if len(data) > max_bytes:
                        raise _too_big(max_bytes)
                if data:  # an empty file input is no file
                    files[part.name] = (_filename(part.filename), bytes(data))
                continue
            raw = await part.read(decode=True)
            if len(raw) > _TEXT_PART_MAX or part.name in texts:
                raise Refused(400, "bad_form", "表单内容过长或重复。", "A form field is too long or repeated.")
            texts[part.name] = raw.decode("utf-8", errors="strict")
    except (ValueError, UnicodeDecodeError, AssertionError):
        raise Refused(400, "bad_form", "表单格式不正确。", "Malformed form.") from None
    return texts, files


def _filename(name: str) -> str:
    """The name HR's device gave the file, for display only: one line, no path, bounded."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(ch for ch in name if ch.isprintable())[:255]


def _too_big(max_bytes: int) -> Refused:
    mb = max_bytes / (1024 * 1024)
    return Refused(413, "too_large", f"文件过大：每个文件不超过 {mb:g} MB。", f"File too large: at most {mb:g} MB.")


async def _submit(request: web.Request, t: Target, config: UploadConfig, service: CaseService) -> web.Response:
    texts, files = await _read_form(request, t.step, config.max_bytes)
    intent = texts.pop("intent", "complete")
    if intent not in ("complete", "upload"):
        raise Refused(400, "bad_form", "未知的操作。", "Unknown action.")
    declared = {f.key: (f.label.zh, *cleantext.FIELD_RULES[f.type]) for f in t.step.fields if f.type != "file"}
    given = {k: v for k, v in texts.items() if v.strip()} if intent == "complete" else {}
    try:
        fields = cleantext.check_form(given, declared)
    except (cleantext.UndeclaredField, cleantext.TextProblem) as exc:
        raise Refused(400, "bad_form", exc.message_zh, exc.message_en) from None
    checked: dict[str, tuple[str, bytes, Checked]] = {}
    for key, (name, data) in files.items():
        try:
            # Decoding a large photo takes a while: off the event loop, so other requests keep flowing.
            checked[key] = (name, data, await asyncio.to_thread(check_upload, data))
        except UploadRejected as exc:
            raise Refused(415, exc.code, exc.message_zh, exc.message_en) from None
    if intent == "upload" and not checked:
        raise Refused(400, "no_file", "请选择要上传的文件。", "Choose a file to upload.")
    at = config.now()
    actor = t.hr.employee_id
    template = service.template(t.case.template_id)
    evidence = [Evidence(t.step.id, key, secrets.token_hex(8), c.sha256, c.size, c.content_type, actor, t.roles, at)
                for key, (_, _, c) in checked.items()]
    act = Act(t.step.id, "complete", actor, t.roles, fields, at) if intent == "complete" else None
    # What the engine will say to all of it, on the state as it is: a refusal stores nothing.
    state = t.state
    for event in (*evidence, *((act,) if act else ())):
        result = engine.apply(template, state, event)
        if isinstance(result, engine.Refusal):
            raise Refused(409 if result.code in ("already_done", "not_needed", "not_active", "case_closed", "locked")
                          else 422, result.code, result.message_zh, result.message_en)
        state = result.state
    for ev in evidence:
        name, data, c = checked[ev.field]

        async def store(tx: CaseTx, ev: Evidence = ev, name: str = name, data: bytes = data,
                        c: Checked = c) -> None:
            if isinstance(tx.result, engine.Refusal):
                return  # a refused upload stores nothing
            await Upload.create(using_db=tx.conn, key=ev.upload_key, case_id=t.case.id, step_id=ev.step_id,
                                field=ev.field, content_type=c.content_type, size=c.size, sha256=c.sha256,
                                filename=name, data=data, uploaded_by=actor, uploaded_at=at)

        await _apply(service, t.case.id, ev, actor, store)
        log.info("case %s: %s uploaded for %s.%s (%s, %d bytes)", t.case.id, ev.upload_key, ev.step_id, ev.field,
                 c.content_type, c.size)
    if act is not None:
        await _apply(service, t.case.id, act, actor, None)
    t.state = await service.load_state(await Case.get(id=t.case.id))
    done = "已上传并完成此步骤。" if act is not None else "凭证已上传并记入审计链。"
    return await _page(t, config, message=done, ok=True, values={} if act else texts)


async def _apply(service: CaseService, case_id: str, event: Any, actor: str, also: Any) -> Any:
    try:
        out = await service.apply(case_id, lambda case, state: event, actor=actor, also=also)
    except CaseError as exc:
        raise Refused(409, exc.code, exc.message_zh, exc.message_en) from None
    if not out.ok:  # another writer moved the case between the check and the write
        r = out.refusal
        raise Refused(409, r.code, r.message_zh, r.message_en)
    return out


def add_routes(app: web.Application, config: UploadConfig, service: CaseService) -> None:
    show, submit = make_handlers(config, service)
    # The form carries the file: aiohttp's app-wide body limit does not apply to the multipart stream,
    # which _read_form bounds itself (UPLOAD_MAX_BYTES).
    app.router.add_get("/upload/{token}", show)
    app.router.add_post("/upload/{token}", submit)
    app.router.add_static(STATIC_PREFIX, STATIC_DIR / "upload")


def setup(app: web.Application) -> None:
    add_routes(app, config_of(app[SETTINGS]), app[SERVICE])
