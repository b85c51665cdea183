"""With LANGUAGE=en a document prints no Chinese: the basis lines from settlement/ (back-pay, compensation),
the non-compete lines, the legal basis and the source notes come in English too. Names and what people
typed (the company's and people's names, department, position, HR's reason) are left as they are."""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from bot.app import build_service
from config.settings import Settings
from handlers.settlement import figures_for
from settlement.compensation import compensation
from signing import settlefigures as sf
from signing.channel import Channel
from signing.pipeline import build_context, ensure_draft, notice_lines
from storage.models import Case, Employee
from tests.chat.conftest import build_chat
from tests.signing.test_settlefigures import chinese_only
from tests.signing_flow.conftest import EMPLOYEE, HANDOVER, HR, MANAGER, act, start_probation
from workflow.model import Role

CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]")
BASIS_KEYS = ("basis_lines", "compensation_lines", "non_compete_lines", "source_notes", "legal_basis",
              "contact", "years_of_service", "contract_term", "backpay_period")


async def _text(pdf: bytes, tmp: Path, name: str) -> str:
    path = tmp / f"{name}.pdf"
    path.write_bytes(pdf)
    proc = await asyncio.to_thread(subprocess.run, ["pdftotext", "-layout", str(path), "-"], capture_output=True,
                                   text=True, check=True)
    return proc.stdout


async def _names(case: Case, settings: Settings) -> list[str]:
    """What may stay Chinese in an English document: names and the directory's and HR's own words."""
    emp = await Employee.get(id=case.employee_id)  # type: ignore[attr-defined]
    people = [await Employee.get(employee_id=i) for i in (HR, HANDOVER)]
    return [settings.company_name, emp.name, emp.department or "", emp.position or "", case.reason or "",
            *(p.name for p in people)]


async def _assert_english(case: Case, settings: Settings, steps_kinds: list[tuple[str, str]], tmp: Path) -> None:
    now = datetime.now(UTC)
    allowed = sorted((n for n in await _names(case, settings) if n), key=len, reverse=True)

    def chinese(text: str) -> bool:
        for name in allowed:
            text = text.replace(name, "")
        return bool(CJK.search(text))

    for step_id, kind in steps_kinds:
        ctx = await build_context(case, kind, settings, channel=Channel(), now=now)
        for key in BASIS_KEYS:
            values = ctx[key] if isinstance(ctx[key], list) else [ctx[key]]
            assert not [v for v in values if chinese(str(v))], (kind, key, values)
        doc = await ensure_draft(case, step_id, kind, settings, channel=Channel(), now=now)
        assert doc.lang == "en"
        text = await _text(bytes(doc.pdf_unsigned), tmp, kind)
        assert [line.strip() for line in text.splitlines() if chinese(line)] == [], kind


async def test_an_english_probation_case_prints_no_chinese_basis_lines(demo_org: Settings, tmp_path: Path) -> None:
    settings = demo_org.model_copy(update={"language": "en"})
    service = build_service(settings)
    case_id = await start_probation(service)
    await act(service, case_id, "application", "submit", EMPLOYEE, {Role.EMPLOYEE},
              {"last_working_day": "2025-07-31", "reason": "probation review not passed"})
    await act(service, case_id, "performance_review", "approve", MANAGER, {Role.MANAGER},
              {"result": "60% of target, 80% required"})
    await act(service, case_id, "hr_check", "complete", HR, {Role.HR},
              {"unpaid_months": "2", "non_compete_months": "6", "non_compete_monthly": "1000"})
    case = await Case.get(id=case_id)
    ctx = await build_context(case, "rights_notice", settings, channel=Channel(), now=datetime.now(UTC))
    # The facts are all there, only in English: a back-pay with its basis, a non-compete, source notes.
    assert ctx["backpay_amount"] == "1,438.42" and len(ctx["basis_lines"]) > 2  # type: ignore[arg-type]
    assert ctx["non_compete_months"] == 6 and ctx["source_notes"]
    assert any("Art. 23" in str(x) for x in ctx["non_compete_lines"])  # type: ignore[attr-defined]
    assert all(str(n).startswith("Note ") for n in ctx["source_notes"])  # type: ignore[attr-defined]
    await _assert_english(case, settings, [("guarantee", "guarantee_letter"), ("rights_notice", "rights_notice"),
                                           ("case_completed", "completion_notice")], tmp_path)


async def _mutual_case(settings: Settings, keep: Callable[[dict[str, Any]], dict[str, Any]] = dict, *,
                       by_employee: bool = False) -> Case:
    """A mutual agreement past HR's check as the card tap records it (handlers.settlement): the company
    proposed, the computed compensation changed to 150,000 with a reason (`by_employee`: the employee
    proposed, nothing changed). `keep`: what of the record the step keeps (an older code's record: the
    Chinese only)."""
    emp = await Employee.create(employee_id="E009", name="钱十一", department="销售部", position="客户经理",
                                manager_id=MANAGER, city="beijing", hire_date=date(2016, 3, 1),
                                contract_start=date(2016, 3, 1), monthly_wage=Decimal("12000.00"))
    service = build_service(settings)
    out = await service.start_case(employee=emp, template_id="mutual", last_day=date(2026, 1, 30), reason="",
                                   created_by=HR, handover_id=HANDOVER)
    data: dict[str, object] = {"last_working_day": "2026-01-30", "proposed_by": "员工"} if by_employee else {
        "last_working_day": "2026-01-30", "proposed_by": "公司", "compensation_override": "150000",
        "override_reason": "双方协商一致", "non_compete_months": "3", "non_compete_monthly": "5000"}
    agreed, reason = ({}, "") if by_employee else ({"compensation": Decimal("150000")}, "双方协商一致")
    figures, ground, last_day = await figures_for(service, await Case.get(id=out.case_id), data)  # type: ignore[arg-type]
    data[sf.RECORD_KEY] = keep(sf.record(figures, agreed, reason, ground=ground, last_day=last_day))
    await act(service, out.case_id, "terms", "complete", HR, {Role.HR}, data)
    return await Case.get(id=out.case_id)


async def test_an_english_mutual_agreement_prints_no_chinese_basis_lines(demo_org: Settings,
                                                                          tmp_path: Path) -> None:
    settings = demo_org.model_copy(update={"language": "en"})
    case = await _mutual_case(settings)
    ctx = await build_context(case, "settlement_agreement", settings, channel=Channel(), now=datetime.now(UTC))
    lines = [str(x) for x in ctx["compensation_lines"]]  # type: ignore[attr-defined]
    # The agreed figure differs from the Art. 47 standard: both stated, with the standard's basis in English.
    assert "agreed by both parties" in lines[0] and any("120,000.00" in x for x in lines), lines
    assert ctx["years_of_service"] == "9 years 11 months"
    await _assert_english(case, settings, [("settlement_agreement", "settlement_agreement"),
                                           ("rights_notice", "rights_notice")], tmp_path)


async def test_an_english_agreement_the_employee_proposed_says_why_nothing_is_owed(demo_org: Settings,
                                                                                  tmp_path: Path) -> None:
    """Proposed by the employee, a mutual termination owes no compensation (Art. 46(2)): the English
    agreement, notice of rights and completion notice say so and why, as the Chinese ones do."""
    settings = demo_org.model_copy(update={"language": "en"})
    case = await _mutual_case(settings, by_employee=True)
    why = "the mutual termination was proposed by the employee, so under Labour Contract Law Art. 46(2)"
    for kind in ("settlement_agreement", "rights_notice"):
        doc = await ensure_draft(case, kind, kind, settings, channel=Channel(), now=datetime.now(UTC))
        text = " ".join((await _text(bytes(doc.pdf_unsigned), tmp_path, kind)).split())
        assert why in text, (kind, text)
    lines = [text for _, text in await notice_lines(case, "completion_notice", settings, channel=Channel(),
                                                    now=datetime.now(UTC))]
    assert any(line.startswith("Compensation: " + why) for line in lines), lines


async def test_an_older_chinese_only_record_prints_english_only_while_it_recomputes_identically(
        demo_org: Settings, tmp_path: Path) -> None:
    settings = demo_org.model_copy(update={"language": "en"})
    case = await _mutual_case(settings, chinese_only)
    # The directory still gives the figures HR accepted: their English is stated.
    await _assert_english(case, settings, [("settlement_agreement", "settlement_agreement")], tmp_path)
    # The wage changed in the directory since: an English rendering could state other figures than the record,
    # so the record's Chinese lines are printed as HR accepted them, with the recorded amounts.
    await Employee.filter(employee_id="E009").update(monthly_wage=Decimal("13000.00"))
    ctx = await build_context(case, "settlement_agreement", settings, channel=Channel(), now=datetime.now(UTC))
    lines = [str(x) for x in ctx["compensation_lines"]]  # type: ignore[attr-defined]
    assert "agreed by both parties" in lines[0] and "RMB 120,000.00" in lines[1]
    assert "月工资按员工名册登记的月工资 12,000.00 元计。" in lines
    assert ctx["settlement_basis_lines"][0] == "[Pay for unused annual leave]"  # type: ignore[index]


async def test_the_english_check_card_states_the_figures_and_their_basis_in_english(demo_org: Settings) -> None:
    settings = demo_org.model_copy(update={"language": "en"})
    chat = build_chat(settings)
    emp = await Employee.create(employee_id="E009", name="钱十一", department="销售部", position="客户经理",
                                manager_id=MANAGER, city="beijing", hire_date=date(2016, 3, 1),
                                contract_start=date(2016, 3, 1), monthly_wage=Decimal("12000.00"))
    await chat.inbound.service.start_case(employee=emp, template_id="mutual", last_day=date(2026, 1, 30),
                                          reason="", created_by=HR, handover_id=HANDOVER)
    await chat.deliver()
    expected = compensation(hire_date=date(2016, 3, 1), last_day=date(2026, 1, 30), ground="36-employer",
                            average_monthly_wage=Decimal("12000.00")).basis_en
    message = await chat.card(HR, step="terms")
    card = message.card
    assert card is not None
    assert dict(card.fields)["Compensation (if the company proposed; 0 if the employee did)"] == "CNY 120,000.00"
    assert all(f"- {line}" in card.body for line in expected)
    reply = await chat.click(HR, message.card_id, "complete", {"last_working_day": "2026-01-30", "proposed_by": "公司",
                                                            "compensation_override": "150000",
                                                            "override_reason": "双方协商一致"})
    assert reply.ok, reply.text
    await chat.deliver()
    # The manager approving the terms sees what HR recorded, in English but for names and HR's own words.
    manager = (await chat.card(MANAGER, step="manager_approve")).card
    assert manager is not None
    assert dict(manager.fields)["Compensation"] == \
        "CNY 150,000.00 (computed 120,000.00; reason for the change: 双方协商一致)"
    shown = "\n".join([manager.body, *(v for _, v in manager.fields)])
    # Kept: names, HR's own words, and the two words the proposer field takes (its label names them).
    for kept in ("钱十一", "李娜", "双方协商一致", "公司", "员工"):
        shown = shown.replace(kept, "")
    assert all(f"- {line}" in manager.body for line in expected)
    assert not CJK.search(shown), [line for line in shown.splitlines() if CJK.search(line)]


def test_amounts_in_english_words() -> None:
    from signing.amounts import rmb_words

    assert rmb_words(Decimal("1438.42")) == "one thousand four hundred and thirty-eight yuan and forty-two fen"
    assert rmb_words(Decimal("120000")) == "one hundred and twenty thousand yuan only"
    assert rmb_words(Decimal("1000000.05")) == "one million yuan and five fen"
    assert rmb_words(Decimal("0")) == "zero yuan only"
