"""Case A end to end on an accelerated clock: the employee never opens anything. Reminder at 24 h (held back
through the night), HR alert at 3 days (likewise), fallback at 7 days with the registered-mail letter
generated and sealed; HR records the EMS number and uploads a real JPEG of the receipt through the upload
page; the case closes; the exported archive passes `verify` offline, and one flipped byte of the scan in it
fails."""

from __future__ import annotations

import subprocess
import zipfile
from datetime import timedelta
from pathlib import Path

from handlers.archive import export_case
from storage.canonical import sha256_hex
from storage.models import AuditEntry, Case, CaseStep, Document, Upload
from tests.fallback.conftest import ADDRESS, EMP, HR, CaseA, real_jpeg
from tests.signing_flow.test_archive import _offline, _rewrite

START = "/离职 张三 违纪 {day} 严重违反考勤制度 交接人:周八"


async def _purposes(h: CaseA, user: str) -> list[tuple[str | None, str]]:
    return [(m.card.step_id, m.card.purpose) for m in await h.chat.cards(user) if m.card is not None]


def _pdf_text(pdf: bytes, tmp: Path) -> str:
    src = tmp / "notice.pdf"
    src.write_bytes(pdf)
    return subprocess.run(["pdftotext", "-layout", str(src), "-"], capture_output=True, text=True,
                          check=True).stdout


async def test_case_a_runs_to_the_fallback_and_closes_on_the_uploaded_receipt(case_a: CaseA, tmp_path: Path) -> None:
    h = case_a
    t0 = h.now
    assert t0.astimezone(h.chat.settings.tz).strftime("%H:%M") == "23:30"  # started late at night
    last_day = (t0 + timedelta(days=30)).astimezone(h.chat.settings.tz).date().isoformat()
    reply = await h.send(HR, START.format(day=last_day))
    assert reply.ok, reply.text
    case_id = reply.data["case_id"]
    await h.chat.deliver(t0)
    assert ("termination_notice", "step") in await _purposes(h, EMP)

    # 24 h later it is 23:30 again: quiet hours, nothing goes out; at 08:00 the reminder does.
    h.at(t0 + timedelta(hours=24))
    assert await h.timers() == 0
    assert ("termination_notice", "reminder") not in await _purposes(h, EMP)
    h.at(t0 + timedelta(hours=32, minutes=29))  # 07:59
    assert await h.timers() == 0
    h.at(t0 + timedelta(hours=32, minutes=30))  # 08:00
    assert await h.timers() == 2  # both open steps: the notice to sign, the optional response
    assert ("termination_notice", "reminder") in await _purposes(h, EMP)
    reminded = await AuditEntry.filter(case_id=case_id, kind="reminder_sent")
    assert {(e.data["step_id"], e.at, e.data["trigger"]) for e in reminded} == {
        ("termination_notice", h.now, "timer"), ("employee_response", h.now, "timer")}

    # Three days without a signature: HR is alerted (again held until the morning).
    h.at(t0 + timedelta(hours=72))
    assert await h.timers() == 0
    assert ("termination_notice", "alert") not in await _purposes(h, HR)
    h.at(t0 + timedelta(hours=80, minutes=30))
    assert await h.timers() >= 1
    assert ("termination_notice", "alert") in await _purposes(h, HR)

    # Seven days: the fallback starts on its own; registered mail first, the newspaper waits.
    h.at(t0 + timedelta(hours=168))
    assert await h.timers() == 0
    h.at(t0 + timedelta(hours=176, minutes=30))
    assert await h.timers() >= 1
    case = await Case.get(id=case_id)
    assert case.fallback_started
    steps = {s.step_id: s.status for s in await CaseStep.filter(case_id=case_id)}
    assert steps["registered_mail"] == "active" and steps["newspaper_notice"] == "locked"
    purposes = await _purposes(h, HR)
    assert ("termination_notice", "fallback") in purposes and ("registered_mail", "step") in purposes

    # The letter: generated, sealed, addressed to the address on file, the two documents enclosed.
    mail_card = await h.chat.card(HR, step="registered_mail")
    labels = {b.label: b for b in mail_card.card.buttons}
    assert "下载《解除劳动合同送达通知（邮寄/登报）》" in labels and "上传凭证并填写" in labels
    complete = mail_card.card.button("complete")
    assert complete is not None and "receipt_scan" not in [f.name for f in complete.form]
    assert "邮寄凭证扫描件：待上传" in mail_card.card.body
    letter = await Document.get(case_id=case_id, kind="fallback_notice")
    assert letter.status == "sealed" and letter.step_id == "registered_mail"
    enclosed = letter.context["encloses"]
    assert [e["kind"] for e in enclosed] == ["termination_notice", "separation_certificate"]
    download = await h.get(labels["下载《解除劳动合同送达通知（邮寄/登报）》"].url)
    assert download.status == 200 and await download.read() == bytes(letter.pdf_signed)
    text = _pdf_text(bytes(letter.pdf_signed), tmp_path)
    assert "北京市朝阳区建国路" in text and "邮寄地址" in text
    assert "解除劳动合同通知书" in text and "离职证明" in text  # listed, and the enclosed pages themselves
    assert text.count("\f") >= 3  # the letter, then the notice and the certificate
    issued = await AuditEntry.get(case_id=case_id, kind="document_issued")
    assert issued.data["kind"] == "fallback_notice" and issued.data["sha256_signed"] == letter.sha256_signed
    assert issued.data["encloses"] == enclosed

    # HR records the EMS number and uploads a photo of the receipt (a real JPEG) on the upload page.
    page = await h.get(labels["上传凭证并填写"].url)
    assert page.status == 200
    html = await page.text()
    assert 'name="receipt_scan"' in html and 'name="tracking_number"' in html and "张三" in html
    scan = real_jpeg()
    resp = await h.post(labels["上传凭证并填写"].url,
                        {"intent": "complete", "delivery_result": "delivered", "tracking_number": "EA123456789CN"},
                        {"receipt_scan": ("IMG_2041.JPG", scan, "image/jpeg")})
    body = await resp.text()
    assert resp.status == 200, body
    assert "已上传并完成此步骤" in body
    up = await Upload.get(case_id=case_id)
    assert (up.step_id, up.field, up.content_type, up.size, up.sha256) == (
        "registered_mail", "receipt_scan", "image/jpeg", len(scan), sha256_hex(scan))
    assert bytes(up.data) == scan
    entry = await AuditEntry.get(case_id=case_id, kind="evidence_uploaded")
    assert entry.data["sha256"] == sha256_hex(scan) and entry.data["upload_key"] == up.key
    rows = {s.step_id: s for s in await CaseStep.filter(case_id=case_id)}
    assert (rows["registered_mail"].status, rows["registered_mail"].outcome) == ("done", "delivered")
    assert rows["registered_mail"].data["receipt_scan"] == "sha256:" + sha256_hex(scan)
    assert rows["termination_notice"].outcome == "replaced"
    assert rows["newspaper_notice"].status == "not_needed"

    # HR deregisters social insurance: the case closes.
    await h.chat.deliver(h.now)
    h.at(h.now + timedelta(hours=1))
    dereg = await h.chat.card(HR, step="deregistration")
    r = await h.click(HR, dereg.card_id, "complete", {"receipt_number": "SB-2025-001"})
    assert r.ok, r.text
    case = await Case.get(id=case_id)
    assert case.status == "completed"

    # The archive holds the scan and verifies offline; one flipped byte of the scan fails it.
    out = tmp_path / "case-a.zip"
    with out.open("wb") as f:
        result = await export_case(h.chat.settings, case_id, f, templates=h.chat.inbound.service.templates)
    with zipfile.ZipFile(out) as zf:
        assert result.verify_ok, zf.read("verify_report.txt").decode()
    member = f"uploads/{up.id}-receipt_scan.jpg"
    with zipfile.ZipFile(out) as zf:
        assert zf.read(member) == scan
        assert f"documents/{letter.id}-fallback_notice.pdf" in zf.namelist()
        report = zf.read("verify_report.txt").decode()
    assert f"PASS  upload {up.id} (registered_mail.receipt_scan)" in report and "RESULT: PASS" in report
    passed = _offline(out, tmp_path)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert f"PASS  upload {up.id} (registered_mail.receipt_scan)" in passed.stdout
    flipped = tmp_path / "flipped.zip"
    _rewrite(out, flipped, member)
    failed = _offline(flipped, tmp_path)
    assert failed.returncode != 0
    assert f"FAIL  file {member}" in failed.stdout
    assert f"FAIL  upload {up.id} (registered_mail.receipt_scan)" in failed.stdout
    assert ADDRESS not in failed.stdout  # the report names files and hashes, not personal data
