"""Document templates as a catalogue: every kind a flow names renders, checked at load time; the
small pieces the documents rely on (大写 amounts, optional parts, section numbers, source notes)."""

from __future__ import annotations

import dataclasses
import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from bot.app import build_service
from config.settings import load_settings
from signing.amounts import rmb_upper
from signing.casefacts import Notes, non_compete
from signing.pipeline import CONTEXT_KEYS, check_flow_documents
from signing.templates import BUILTIN_DIR, fill, load_template, section_number, unfilled
from workflow.errors import TemplateError
from workflow.templates import BUNDLED_DIR, load_templates


def test_every_bundled_flow_names_only_kinds_with_a_complete_template() -> None:
    flows = load_templates()
    kinds = {k for f in flows.values() for s in f.steps for k in s.documents}
    assert {"resignation_letter", "settlement_agreement", "rights_notice"} <= kinds
    for kind in kinds:
        assert (BUILTIN_DIR / f"{kind}.toml").is_file(), kind
        assert unfilled(load_template(kind), CONTEXT_KEYS) == [], kind
    check_flow_documents(flows)  # raises on any gap


def test_a_flow_naming_a_kind_without_template_fails_naming_file_and_step() -> None:
    flows = load_templates()
    mutual = flows["mutual"]
    steps = tuple(dataclasses.replace(s, documents=("exit_interview",)) if s.id == "settlement_agreement" else s
                  for s in mutual.steps)
    broken = dataclasses.replace(mutual, steps=steps)
    with pytest.raises(TemplateError) as err:
        check_flow_documents({"mutual": broken})
    assert err.value.step == "settlement_agreement"
    assert str(err.value.path).endswith("mutual.toml")
    assert "no template for document kind 'exit_interview'" in str(err.value)


def test_start_up_refuses_a_template_reading_a_value_the_context_never_fills(tmp_path: Path) -> None:
    """A company's override of the resignation letter that prints {favourite_colour}: the service does
    not start, and the error names the flow file, the step and the value."""
    flows_dir, docs_dir = tmp_path / "flows", tmp_path / "docs"
    flows_dir.mkdir()
    docs_dir.mkdir()
    shutil.copy(BUNDLED_DIR / "resignation.toml", flows_dir / "resignation.toml")
    text = (BUILTIN_DIR / "resignation_letter.toml").read_text(encoding="utf-8")
    day = "本人的最后工作日为{termination_date}"
    (docs_dir / "resignation_letter.toml").write_text(
        text.replace(f"{day}。", f"{day}，{{favourite_colour}}。"), encoding="utf-8")
    settings = load_settings(_env_file=None, secret_key="k" * 32, data_dir=tmp_path / "data",
                             templates_dir=flows_dir, doc_templates_dir=docs_dir)
    with pytest.raises(TemplateError) as err:
        build_service(settings)
    assert err.value.step == "resignation_letter"
    assert err.value.path == flows_dir / "resignation.toml"
    assert "{favourite_colour}" in str(err.value) and "never fills" in str(err.value)
    # The untouched bundled letter starts fine with the same company flow folder.
    (docs_dir / "resignation_letter.toml").unlink()
    assert build_service(settings).template("resignation").id == "resignation"


@pytest.mark.parametrize(("value", "text"), [
    ("0", "零元整"), ("1438.42", "壹仟肆佰叁拾捌元肆角贰分"), ("1000", "壹仟元整"), ("10", "壹拾元整"),
    ("1010", "壹仟零壹拾元整"), ("100001", "壹拾万零壹元整"), ("120005", "壹拾贰万零伍元整"),
    ("1680.32", "壹仟陆佰捌拾元零叁角贰分"), ("10000.01", "壹万元零壹分"), ("0.5", "伍角"),
    ("100010000", "壹亿零壹万元整"), ("35811", "叁万伍仟捌佰壹拾壹元整"), ("1.005", "壹元零壹分"),
])
def test_amount_in_capitals(value: str, text: str) -> None:
    assert rmb_upper(Decimal(value)) == text


def test_optional_parts_vanish_when_a_value_is_missing() -> None:
    ctx = {"name": "张三", "id_number": "", "position": "销售代表"}
    assert fill("{name}[[（身份证号码：{id_number}）]][[，{position}]]：", ctx, "zh") == "张三，销售代表："
    ctx["id_number"] = "110101199001011234"
    assert fill("{name}[[（身份证号码：{id_number}）]]：", ctx, "zh") == "张三（身份证号码：110101199001011234）："
    with pytest.raises(ValueError, match="nickname"):
        fill("[[{nickname}]]", ctx, "zh")


def test_section_numbers() -> None:
    assert [section_number(n, "zh") for n in (1, 2, 10, 11, 12)] == ["一、", "二、", "十、", "十一、", "十二、"]
    assert section_number(3, "en") == "3. "


def test_source_urls_become_notes_not_part_of_a_sentence() -> None:
    notes = Notes()
    lines = notes.lift(["北京 2024 表：基数下限 6,821.00；来源 https://example.gov.cn/a.html，核对于 2025-01-01",
                        "又见 https://example.gov.cn/a.html；另 http://b.example/x"])
    assert lines == ["北京 2024 表：基数下限 6,821.00；来源见注1，核对于 2025-01-01", "又见（见注1）；另（见注2）"]
    assert notes.printed() == ["注1：https://example.gov.cn/a.html", "注2：http://b.example/x"]


def test_non_compete_pays_at_least_the_legal_floor() -> None:
    low = non_compete("6", "1000", Decimal("12000.00"))
    assert low is not None and low.floor == Decimal("3600.00") and low.monthly == Decimal("3600.00")
    assert "低于法定下限" in "".join(low.lines) and "叁仟陆佰元整" in "".join(low.lines)
    high = non_compete("30", "5000", Decimal("12000.00"))
    assert high is not None and high.months == 24 and high.monthly == Decimal("5000.00")
    assert any("额外支付三个月" in line for line in high.lines)
    assert non_compete("", "5000", Decimal("12000.00")) is None


def _full_context(case_type: str, *, facts: bool) -> dict[str, object]:
    """Every name build_context fills, either all known (facts) or all empty where they may be."""
    from datetime import date

    ctx: dict[str, object] = {k: "" for k in CONTEXT_KEYS}
    ctx.update(company_name="示例公司", case_type=case_type, employee_name="李四", termination_date=date(2026, 1, 30),
               notice_date=date(2026, 2, 1), issue_date=date(2026, 2, 1), handover_date=date(2026, 1, 29),
               handover_deadline=date(2026, 1, 30), compensation_pay_date=date(2026, 1, 30), contact="人事",
               legal_basis="《劳动合同法》第三十九条", items=["文件"], basis_lines=[], compensation_lines=[],
               non_compete_lines=[], source_notes=[], pending_items=[], attachments=[],
               first_notice_date=date(2026, 1, 20), deadline=date(2026, 2, 16), first_notice_channel="钉钉工作通知",
               how_to="到公司人力资源部办理")
    if facts:
        ctx.update(id_number="110101199001011234", department="研发部", position="工程师",
                   contract_start=date(2016, 3, 1), contract_term="2016年3月1日至无固定期限",
                   years_of_service="9年11个月",
                   reason="个人原因", receiver_name="王五", backpay_period="2025年5月", backpay_amount="719.21",
                   backpay_amount_upper="柒佰壹拾玖元贰角壹分", basis_lines=["基数（见注1）"],
                   backpay_paid_on=date(2026, 2, 2), backpay_reference="P-1", final_pay_date=date(2026, 2, 3),
                   final_pay_reference="P-2", certificate_signed_on=date(2026, 2, 1), compensation_amount="120,000.00",
                   compensation_amount_upper="壹拾贰万元整", compensation_lines=["N = 10"], non_compete_months=6,
                   non_compete_monthly="3,600.00", non_compete_lines=["期限 6 个月"], source_notes=["注1：https://x.example"],
                   certificate_reason="个人原因", company_address="上海市示例路 1 号",
                   company_registration_number="91310115MA1H000000", employee_address="北京市示例路 2 号",
                   pending_items=["签收解除劳动合同通知书（2026年1月20日起）"], attachments=["解除劳动合同通知书"],
                   mail_tracking_number="EA123456789CN", mail_result="被退回")
    return ctx


@pytest.mark.parametrize("lang", ["zh", "en"])
@pytest.mark.parametrize("case_type", ["probation", "misconduct", "resignation", "mutual"])
def test_every_template_renders_for_every_case_type_with_and_without_facts(case_type: str, lang: str) -> None:
    from signing.documents import render_document
    from signing.templates import builtin_kinds, render_text

    for kind in builtin_kinds():
        for facts in (True, False):
            ctx = _full_context(case_type, facts=facts)
            assert render_document(kind, ctx, lang=lang).startswith(b"%PDF"), (kind, facts)
            text = "".join(render_text(load_template(kind), ctx, lang))
            assert "{" not in text and "[[" not in text and "（未提供）" not in text, (kind, text)
            if not facts:
                assert "（大写：）" not in text and "（身份证号码：）" not in text, (kind, text)
                assert "地址：" not in text and "统一社会信用代码：" not in text, (kind, text)


def test_serving_a_real_platform_refuses_the_placeholder_company_name(tmp_path: Path) -> None:
    from bot.app import check_company

    base = {"_env_file": None, "secret_key": "k" * 32, "data_dir": tmp_path}
    with pytest.raises(SystemExit, match="COMPANY_NAME"):
        check_company(load_settings(**base, platforms="emulator,dingtalk"))
    check_company(load_settings(**base, platforms="emulator"))  # the emulator may keep the placeholder
    check_company(load_settings(**base, platforms="wecom", company_name="上海示例科技有限公司"))
