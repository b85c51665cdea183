from __future__ import annotations

import io
import logging
import shutil
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from PIL import Image

from signing.documents import SignatureMark, render_document, render_signed
from signing.fonts import cjk_font
from signing.preview import pdf_to_png_pages
from signing.strokes import parse_strokes, render_png
from signing.templates import DocumentError, builtin_kinds, load_template

from .conftest import pdftotext, signature_payload

CONTEXTS: dict[str, dict[str, object]] = {
    "separation_certificate": dict(
        company_name="示例公司", employee_name="李四", id_number="110101198501010000",
        contract_term="2022年3月1日至2025年2月28日", termination_date=date(2025, 3, 31), position="工程师",
        years_of_service="3年1个月", issue_date=date(2025, 4, 1)),
    "termination_notice": dict(
        company_name="示例公司", employee_name="李四", id_number="1101", contract_start=date(2022, 3, 1),
        reason="严重违反用人单位的规章制度", legal_basis="《中华人民共和国劳动合同法》第三十九条第（二）项",
        termination_date=date(2025, 3, 31), handover_deadline=date(2025, 4, 7), notice_date=date(2025, 3, 31)),
    "handover_confirmation": dict(
        employee_name="李四", department="研发部", position="工程师", receiver_name="王五",
        handover_date=date(2025, 4, 3), items=["笔记本电脑一台", "代码仓库权限", "客户资料"]),
    "rights_notice": dict(
        company_name="示例公司", employee_name="李四", termination_date=date(2025, 3, 31), case_type="resignation",
        certificate_signed_on=date(2025, 4, 1), final_pay_date=date(2025, 4, 8), final_pay_reference="P-1",
        contact="hr@example.com", notice_date=date(2025, 4, 10)),
    "fallback_notice": dict(
        company_name="示例公司", employee_name="李四", id_number="1101", termination_date=date(2025, 3, 31),
        first_notice_date=date(2025, 4, 1), first_notice_channel="钉钉消息", pending_items=["签收离职证明"],
        deadline=date(2025, 4, 30), how_to="携带身份证到公司人事部", contact="021-00000000",
        notice_date=date(2025, 4, 15), employee_address="北京市朝阳区建国路 88 号",
        attachments=["解除劳动合同通知书", "离职证明"]),
    "newspaper_notice": dict(
        company_name="示例公司", employee_name="李四", termination_date=date(2025, 3, 31),
        first_notice_date=date(2025, 4, 1), first_notice_channel="钉钉消息", deadline=date(2025, 4, 30),
        how_to="携带身份证到公司人事部", contact="021-00000000", notice_date=date(2025, 4, 15),
        legal_basis="《劳动合同法》第三十九条", mail_tracking_number="EA123456789CN", mail_result="被退回"),
}


def test_guarantee_letter_chinese_text_and_amount(guarantee_context: dict, tmp_path: Path) -> None:
    pdf = render_document("guarantee_letter", guarantee_context)
    assert pdf.startswith(b"%PDF")
    text = pdftotext(pdf, tmp_path)
    assert "离职保证书" in text
    assert "1050.00元" in text
    assert "个人缴费比例 10.5%" in text
    assert "张三" in text


def test_guarantee_letter_renders_to_png_with_ink(guarantee_context: dict, tmp_path: Path) -> None:
    pages = pdf_to_png_pages(render_document("guarantee_letter", guarantee_context), dpi=60)
    assert len(pages) == 1
    img = Image.open(io.BytesIO(pages[0])).convert("L")
    # The title area (top centre) must contain dark pixels: the CJK glyphs actually rendered.
    w, h = img.size
    title = img.crop((w // 3, int(h * 0.06), 2 * w // 3, int(h * 0.14)))
    assert title.getextrema()[0] < 100


def test_font_is_embedded_when_available(guarantee_context: dict, tmp_path: Path) -> None:
    font = cjk_font(None)
    if not font.embedded:
        pytest.skip("no TrueType CJK font installed")
    pdf = render_document("guarantee_letter", guarantee_context)
    src = tmp_path / "f.pdf"
    src.write_bytes(pdf)
    import subprocess

    fonts = subprocess.run(["pdffonts", str(src)], capture_output=True, text=True, check=True).stdout
    cjk_rows = [line for line in fonts.splitlines()[2:] if "TrueType" in line]
    assert cjk_rows and all(line.split()[-5] == "yes" for line in cjk_rows)  # the "emb" column


def test_missing_configured_font_falls_back_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="signing"):
        font = cjk_font("/nonexistent/font.ttc")
    assert "/nonexistent/font.ttc" in caplog.text
    assert font.name


def test_markup_in_user_text_printed_literally(guarantee_context: dict, tmp_path: Path) -> None:
    ctx = dict(guarantee_context, employee_name="<script>alert(1)</script><b>&amp;",
               basis_lines=["<i>x</i> & <br/>"])
    text = pdftotext(render_document("guarantee_letter", ctx), tmp_path)
    assert "<script>alert(1)</script><b>&amp;" in text
    assert "<i>x</i> & <br/>" in text


@pytest.mark.parametrize("kind", sorted(CONTEXTS))
def test_every_builtin_kind_renders_zh_and_en(kind: str, tmp_path: Path) -> None:
    for lang in ("zh", "en"):
        pdf = render_document(kind, CONTEXTS[kind], lang=lang)
        assert pdftotext(pdf, tmp_path).strip()
    assert kind in builtin_kinds()


def test_separation_certificate_reason_only_on_request(tmp_path: Path) -> None:
    ctx = CONTEXTS["separation_certificate"]
    text = pdftotext(render_document("separation_certificate", ctx), tmp_path)
    for needle in ("劳动合同期限", "2022年3月1日至2025年2月28日", "2025年3月31日", "工程师", "3年1个月"):
        assert needle in text
    assert "原因" not in text
    # HR's reason for the case never reaches the certificate; only the employee's request does.
    hr_reason = pdftotext(render_document("separation_certificate", dict(ctx, reason="严重违纪")), tmp_path)
    assert "严重违纪" not in hr_reason and "原因" not in hr_reason
    with_reason = pdftotext(render_document("separation_certificate",
                                            dict(ctx, certificate_reason="个人原因辞职")), tmp_path)
    assert "个人原因辞职" in with_reason


def test_missing_placeholder_and_float_refused(guarantee_context: dict) -> None:
    ctx = dict(guarantee_context)
    del ctx["position"]
    with pytest.raises(DocumentError, match="position"):
        render_document("guarantee_letter", ctx)
    with pytest.raises(DocumentError, match="Decimal"):
        render_document("guarantee_letter", dict(guarantee_context, backpay_amount=1050.0))
    with pytest.raises(DocumentError):
        render_document("../etc/passwd", guarantee_context)


def test_rendering_is_reproducible(guarantee_context: dict) -> None:
    assert render_document("guarantee_letter", guarantee_context) == render_document(
        "guarantee_letter", guarantee_context)


def test_company_override_dir(guarantee_context: dict, tmp_path: Path) -> None:
    src = Path(load_template("guarantee_letter").source)
    shutil.copy(src, tmp_path / "guarantee_letter.toml")
    custom = (tmp_path / "guarantee_letter.toml").read_text(encoding="utf-8").replace(
        'title = "离职保证书"', 'title = "离职承诺书"')
    (tmp_path / "guarantee_letter.toml").write_text(custom, encoding="utf-8")
    tpl = load_template("guarantee_letter", extra_dir=tmp_path)
    assert tpl.sha256 != load_template("guarantee_letter").sha256
    text = pdftotext(render_document("guarantee_letter", guarantee_context, extra_dir=tmp_path), tmp_path)
    assert "离职承诺书" in text


def test_bad_override_template_rejected(guarantee_context: dict, tmp_path: Path) -> None:
    (tmp_path / "guarantee_letter.toml").write_text('kind = "guarantee_letter"\nversion = "2"\n[zh]\n'
                                                    'title = "x"\nblocks = [{ type = "bogus" }]\n')
    with pytest.raises(DocumentError):
        render_document("guarantee_letter", guarantee_context, extra_dir=tmp_path)


def test_signed_document_carries_signature_image(guarantee_context: dict, tmp_path: Path) -> None:
    png = render_png(parse_strokes(signature_payload()))
    unsigned = render_document("guarantee_letter", guarantee_context)
    signed = render_signed("guarantee_letter", guarantee_context,
                           [SignatureMark("employee", png, "2025-04-01 10:00 (UTC+8)")])
    assert signed != unsigned
    src = tmp_path / "s.pdf"
    src.write_bytes(signed)
    import subprocess

    images = subprocess.run(["pdfimages", "-list", str(src)], capture_output=True, text=True, check=True).stdout
    assert len(images.splitlines()) > 2  # header lines + at least one image
    assert "2025-04-01 10:00" in pdftotext(signed, tmp_path)


def test_handover_two_signers_and_unknown_role(tmp_path: Path) -> None:
    png = render_png(parse_strokes(signature_payload()))
    ctx = CONTEXTS["handover_confirmation"]
    pdf = render_signed("handover_confirmation", ctx,
                        [SignatureMark("employee", png), SignatureMark("receiver", png)])
    assert "接收人（签字）" in pdftotext(pdf, tmp_path)
    with pytest.raises(DocumentError, match="role"):
        render_signed("handover_confirmation", ctx, [SignatureMark("ceo", png)])
    with pytest.raises(DocumentError, match=r"PNG|unreadable"):
        render_signed("handover_confirmation", ctx, [SignatureMark("employee", b"not an image")])


def test_money_is_not_reformatted(guarantee_context: dict, tmp_path: Path) -> None:
    ctx = dict(guarantee_context, backpay_amount=Decimal("1E+3"))
    assert "1000元" in pdftotext(render_document("guarantee_letter", ctx), tmp_path)
