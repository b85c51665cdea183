"""Case archives for HR: `/export <case>` (`/导出`) in chat answers with a short-lived download link for the
HR person who asked; `GET /export/<token>` serves the zip (signing/archive.py). Every export, link and
download is written to the case's access log (storage.models.CaseAccess): who, when, what.

The link is an HMAC token (signing/links.py, its own purpose, so a signing link never opens an archive)
naming the case, the HR person and an expiry 15 minutes out. It is a bearer credential for those 15 minutes,
like the signing links; it stops working sooner if the person loses the HR role, and every use is logged.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from aiohttp import web

from cases.service import utcnow
from chat.appkeys import SERVICE, SETTINGS
from chat.router import Context, Reply, Router, is_hr
from config.settings import Settings
from handlers.commands import find_case
from signing.archive import ArchiveError, ArchiveResult, Progress, write_archive
from signing.links import LinkError, make_token, new_nonce, read_token
from signing.pipeline import keys_for
from storage.models import CaseAccess, Employee
from workflow.template import FlowTemplate

log = logging.getLogger("handlers.archive")
router = Router("archive")

LINK_TTL = timedelta(minutes=15)
_PURPOSE = "export"
_STEP = "archive"  # the token's step field: what the link opens
_CHUNK = 1 << 16
USAGE_EXPORT = ("/导出 <流程号|员工>", "/export <case|employee>")


async def log_access(case_id: str, actor: str, action: str, **detail: Any) -> None:
    await CaseAccess.create(case_id=case_id, at=utcnow(), actor=actor[:128], action=action, detail=detail)


async def export_case(settings: Settings, case_id: str, out: IO[bytes], *,
                      templates: dict[str, FlowTemplate] | None = None,
                      progress: Progress | None = None) -> ArchiveResult:
    """The archive of `case_id` into `out`, with the service's keys and flows (ArchiveError if unknown)."""
    keys = keys_for(settings)
    return await write_archive(case_id, out, keys=keys, trust_root=keys.root_cert or keys.seal_cert,
                               templates=templates, progress=progress,
                               font_path=str(settings.cjk_font_path) if settings.cjk_font_path else None,
                               tz=settings.tz)


def export_url(settings: Settings, case_id: str, hr_id: str, *, now: datetime | None = None) -> str:
    now = now or utcnow()
    token = make_token(settings.secret_bytes(), case_id=case_id, step_id=_STEP, signer_id=hr_id,
                       expires_at=now + LINK_TTL, nonce=new_nonce(), purpose=_PURPOSE)
    return f"{settings.public_base_url}/export/{token}"


# ---- /export in chat ------------------------------------------------------------------------
@router.command("export", aliases=["导出", "档案"], usage_zh=USAGE_EXPORT[0], usage_en=USAGE_EXPORT[1])
async def export_command(ctx: Context) -> Reply:
    tokens = ctx.args.split()
    if len(tokens) != 1:
        return ctx.refuse("usage", f"请给出一个流程号或员工。\n用法：{USAGE_EXPORT[0]}",
                          f"Give one case or employee.\nUsage: {USAGE_EXPORT[1]}")
    found = await find_case(ctx, tokens[0], open_only=False)
    if isinstance(found, Reply):
        return found
    actor = ctx.actor
    assert actor is not None  # the actor middleware refused unknown senders; hr_only the rest
    url = export_url(ctx.settings, found.id, actor.employee_id, now=ctx.incoming.at)
    await log_access(found.id, actor.employee_id, "link", expires_in_minutes=int(LINK_TTL.total_seconds() // 60))
    minutes = int(LINK_TTL.total_seconds() // 60)
    return ctx.done("export_link",
                    f"流程 {found.id} 的离职档案（{minutes} 分钟内有效，仅限你本人使用，下载会被记录）：\n{url}",
                    f"Archive of case {found.id} (valid {minutes} minutes, for you only; downloads are logged):\n{url}",
                    case_id=found.id, url=url)


# ---- GET /export/<token> ---------------------------------------------------------------------
def _refuse(status: int, zh: str, en: str) -> web.Response:
    return web.Response(status=status, text=f"{zh}\n{en}\n", content_type="text/plain", charset="utf-8",
                        headers={"Cache-Control": "no-store"})


async def download(request: web.Request) -> web.StreamResponse:
    settings: Settings = request.app[SETTINGS]
    try:
        claims = read_token(settings.secret_bytes(), request.match_info["token"], utcnow(), purpose=_PURPOSE)
    except LinkError as exc:
        if exc.code == "expired":
            return _refuse(410, "下载链接已过期，请在聊天中重新发送 /导出。",
                           "This link has expired; send /export again in chat.")
        return _refuse(403, "下载链接无效。", "This link is not valid.")
    if claims.step_id != _STEP:
        return _refuse(403, "下载链接无效。", "This link is not valid.")
    holder = await Employee.get_or_none(employee_id=claims.signer_id, active=True)
    if not is_hr(holder):
        return _refuse(403, "只有 HR 可以下载离职档案。", "Only HR can download case archives.")
    # The PDFs in it are clear text (ID numbers): built beside the database, owner-only, deleted after.
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="archive-", suffix=".zip", dir=settings.data_dir)
    path = Path(name)
    try:
        with os.fdopen(fd, "w+b") as f:
            try:
                result = await export_case(settings, claims.case_id, f, templates=request.app[SERVICE].templates)
            except ArchiveError as exc:
                return _refuse(404, f"无法导出：{exc}", f"Cannot export: {exc}")
            size = f.tell()
            f.seek(0)
            # Logged before the first byte leaves: a download cut short was still a download begun.
            await log_access(claims.case_id, claims.signer_id, "download", manifest_sha256=result.sha256,
                             files=result.files, bytes=size, ip=request.remote or "")
            resp = web.StreamResponse(headers={
                "Content-Type": "application/zip", "Content-Length": str(size), "Cache-Control": "no-store",
                "Content-Disposition": f'attachment; filename="{claims.case_id}-archive.zip"',
                "X-Content-Type-Options": "nosniff"})
            await resp.prepare(request)
            while chunk := f.read(_CHUNK):
                await resp.write(chunk)
            await resp.write_eof()
        return resp
    finally:
        await asyncio.to_thread(path.unlink, missing_ok=True)


def setup(app: web.Application) -> None:
    app.router.add_get("/export/{token}", download)
