"""HR's evidence upload page, refused input changing nothing: a real JPEG (and PNG, PDF) is accepted; an
executable renamed .jpg, a truncated image, an oversized file, an expired or forged link, and a link made
out for someone without the HR role are all refused, with no upload row and no audit entry."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from PIL import Image
from reportlab.pdfgen import canvas
from tortoise import connections

from config.settings import Settings
from handlers.uploads import upload_url
from storage import crypto
from storage.canonical import sha256_hex
from storage.models import AuditEntry, CaseAccess, CaseStep, Upload
from tests.fallback.conftest import EMP, HR, CaseA, make_case_a, real_jpeg

# A Windows PE header: what an executable renamed to receipt.jpg starts with.
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 48 + b"PE\x00\x00" + b"\x90" * 4000


async def _into_mail_step(h: CaseA) -> str:
    reply = await h.send(HR, "/送达 张三 员工明确拒绝签收并拒绝到公司办理")
    assert not reply.ok and reply.code == "no_case"  # nothing open yet: refused, nothing started
    reply = await h.send(HR, "/离职 张三 违纪 2030-01-31 严重违反考勤制度 交接人:周八")
    assert reply.ok, reply.text
    case_id = reply.data["case_id"]
    reply = await h.send(HR, f"/送达 {case_id} 员工明确拒绝签收并拒绝到公司办理")
    assert reply.ok, reply.text
    await h.chat.deliver(h.now)
    return case_id


def _url(h: CaseA, case_id: str, who: str = HR, *, ttl: timedelta = timedelta(hours=1), step: str = "registered_mail"
         ) -> str:
    s = h.chat.settings
    return upload_url(s.secret_bytes(), s.public_base_url, case_id, step, who, now=h.now, ttl=ttl)


async def _nothing_stored(case_id: str) -> None:
    assert not await Upload.filter(case_id=case_id).exists()
    assert not await AuditEntry.filter(case_id=case_id, kind="evidence_uploaded").exists()
    mail = await CaseStep.get(case_id=case_id, step_id="registered_mail")
    assert (mail.status, mail.data) == ("active", {})


async def test_real_jpeg_is_stored_encrypted_and_recorded(case_a: CaseA) -> None:
    h = case_a
    case_id = await _into_mail_step(h)
    scan = real_jpeg(320, 240)
    resp = await h.post(_url(h, case_id), {"intent": "upload"}, {"receipt_scan": ("receipt.jpg", scan, "image/jpeg")})
    assert resp.status == 200, await resp.text()
    up = await Upload.get(case_id=case_id)
    assert bytes(up.data) == scan and up.sha256 == sha256_hex(scan) and up.filename == "receipt.jpg"
    _, rows = await connections.get("default").execute_query(f'SELECT "data" FROM "upload" WHERE "id" = {up.id}')
    stored = bytes(dict(rows[0])["data"])
    assert crypto.is_encrypted_bytes(stored) and scan[:64] not in stored  # encrypted at rest
    mail = await CaseStep.get(case_id=case_id, step_id="registered_mail")
    assert mail.status == "active" and mail.data == {"receipt_scan": "sha256:" + up.sha256}  # upload only
    # The card now says so, and completing it there rests on the upload.
    await h.chat.deliver(h.now)
    card = await h.chat.card(HR, step="registered_mail")
    assert f"邮寄凭证扫描件：已上传（SHA-256 {up.sha256[:12]}…）" in card.card.body
    r = await h.click(HR, card.card_id, "complete", {"delivery_result": "returned", "tracking_number": "EA1CN"})
    assert r.ok, r.text
    # Returned mail: the newspaper notice opens with its text to publish, and takes a PNG or a PDF scan.
    await h.chat.deliver(h.now)
    paper = await h.chat.card(HR, step="newspaper_notice")
    assert "公告文本" in paper.card.body and "EA1CN" in paper.card.body and "被退回" in paper.card.body
    png = io.BytesIO()
    Image.new("RGB", (200, 300), (250, 250, 250)).save(png, "PNG")
    resp = await h.post(_url(h, case_id, step="newspaper_notice"),
                        {"intent": "complete", "newspaper": "法治日报", "published_on": "2030-02-10"},
                        {"scan": ("page.png", png.getvalue(), "image/png")})
    assert resp.status == 200, await resp.text()
    news = await CaseStep.get(case_id=case_id, step_id="newspaper_notice")
    assert news.status == "done" and news.data["scan"].startswith("sha256:")
    ups = await Upload.filter(case_id=case_id).order_by("id")
    assert [u.content_type for u in ups] == ["image/jpeg", "image/png"]


async def test_a_phone_sized_photo_above_the_apps_body_limit_is_taken(case_a: CaseA) -> None:
    """The app's own body limit (aiohttp's client_max_size, 1 MB here) does not cap a scan: the page streams
    the file and bounds it by UPLOAD_MAX_BYTES itself."""
    h = case_a
    case_id = await _into_mail_step(h)
    photo = real_jpeg(2600, 2000)
    assert len(photo) > 2 * 1024 * 1024
    resp = await h.post(_url(h, case_id), {"intent": "upload"}, {"receipt_scan": ("big.jpg", photo, "image/jpeg")})
    assert resp.status == 200, await resp.text()
    assert (await Upload.get(case_id=case_id)).size == len(photo)


async def test_a_pdf_scan_is_accepted(case_a: CaseA) -> None:
    h = case_a
    case_id = await _into_mail_step(h)
    out = io.BytesIO()
    page = canvas.Canvas(out)  # what a phone's "scan to PDF" produces: one page with the photo on it
    page.drawString(72, 720, "EMS receipt EA123456789CN")
    page.showPage()
    page.save()
    pdf = out.getvalue()
    resp = await h.post(_url(h, case_id), {"intent": "upload"}, {"receipt_scan": ("scan.pdf", pdf, "application/pdf")})
    assert resp.status == 200, await resp.text()
    assert (await Upload.get(case_id=case_id)).content_type == "application/pdf"


@pytest.mark.parametrize("name,content,ctype,code", [
    ("receipt.jpg", EXE, "image/jpeg", "只能上传 JPEG、PNG 图片或 PDF 文件"),
    ("receipt.jpg", real_jpeg(320, 240)[:600], "image/jpeg", "文件已损坏或无法打开"),
    ("receipt.pdf", b"%PDF-1.7\n" + b"garbage " * 100, "application/pdf", "文件已损坏或无法打开"),
])
async def test_files_that_are_not_what_they_claim_are_refused(case_a: CaseA, name: str, content: bytes, ctype: str,
                                                               code: str) -> None:
    h = case_a
    case_id = await _into_mail_step(h)
    resp = await h.post(_url(h, case_id), {"intent": "complete", "delivery_result": "delivered",
                                           "tracking_number": "EA1CN"}, {"receipt_scan": (name, content, ctype)})
    assert resp.status == 415
    assert code in await resp.text()
    await _nothing_stored(case_id)


@pytest.fixture
async def small_limit(demo_org: Settings) -> AsyncIterator[CaseA]:
    async for h in make_case_a(demo_org, max_bytes=20_000):
        yield h


async def test_oversized_file_is_refused_with_413(small_limit: CaseA) -> None:
    h = small_limit
    case_id = await _into_mail_step(h)
    big = real_jpeg(800, 600)
    assert len(big) > 20_000 + 64 * 1024  # refused on its declared length, before it is read
    resp = await h.post(_url(h, case_id), {"intent": "upload"}, {"receipt_scan": ("big.jpg", big, "image/jpeg")})
    assert resp.status == 413 and "文件过大" in await resp.text()
    medium = real_jpeg(260, 200)
    assert 20_000 < len(medium) < 20_000 + 64 * 1024  # within the form's slack: refused while reading
    resp = await h.post(_url(h, case_id), {"intent": "upload"}, {"receipt_scan": ("m.jpg", medium, "image/jpeg")})
    assert resp.status == 413
    await _nothing_stored(case_id)


async def test_expired_forged_and_foreign_links_are_refused(case_a: CaseA) -> None:
    h = case_a
    case_id = await _into_mail_step(h)
    scan = {"receipt_scan": ("r.jpg", real_jpeg(64, 48), "image/jpeg")}
    expired = _url(h, case_id, ttl=timedelta(minutes=5))
    h.at(h.now + timedelta(minutes=6))
    for method in ("get", "post"):
        resp = await (h.get(expired) if method == "get" else h.post(expired, {"intent": "upload"}, scan))
        assert resp.status == 410 and "已过期" in await resp.text()
    good = _url(h, case_id)
    head, sig = good.rsplit(".", 1)
    forged = f"{head}.{'A' if sig[0] != 'A' else 'B'}{sig[1:]}"
    resp = await h.post(forged, {"intent": "upload"}, scan)
    assert resp.status == 403 and "上传链接无效" in await resp.text()
    # A link made out for someone without the HR role (the employee) opens nothing.
    resp = await h.post(_url(h, case_id, EMP), {"intent": "upload"}, scan)
    assert resp.status == 403 and "只有 HR" in await resp.text()
    assert (await h.get(_url(h, case_id, EMP))).status == 403
    assert not await CaseAccess.filter(case_id=case_id).exists()  # refused: nothing was read
    assert (await h.get(good)).status == 200
    seen = await CaseAccess.get(case_id=case_id)
    assert (seen.actor, seen.action, seen.detail["step_id"]) == (HR, "upload_page", "registered_mail")
    # A valid link for a step that takes no upload, or for a field the step does not have.
    assert (await h.get(_url(h, case_id, step="termination_notice"))).status == 404
    resp = await h.post(good, {"intent": "upload"}, {"scan": ("r.jpg", real_jpeg(64, 48), "image/jpeg")})
    assert resp.status == 400
    # Completing without the required facts stores no upload either.
    resp = await h.post(good, {"intent": "complete", "delivery_result": "lost", "tracking_number": "X"}, scan)
    assert resp.status == 422 and "投递结果" in await resp.text()
    await _nothing_stored(case_id)


async def test_the_newspaper_page_is_locked_until_mail_comes_back(case_a: CaseA) -> None:
    h = case_a
    case_id = await _into_mail_step(h)
    resp = await h.post(_url(h, case_id, step="newspaper_notice"),
                        {"intent": "complete", "newspaper": "法治日报", "published_on": "2030-02-10"},
                        {"scan": ("p.jpg", real_jpeg(64, 48), "image/jpeg")})
    assert resp.status == 409 and "邮寄送达" in await resp.text()
    assert not await Upload.filter(case_id=case_id).exists()
