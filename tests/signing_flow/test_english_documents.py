"""With LANGUAGE=en a document prints no Chinese: the basis lines from settlement/ (back-pay, compensation),
the non-compete lines, the legal basis and the source notes come in English too. Names and what people
typed (the company's and people's names, department, position, HR's reason) are left as they are."""

from __future__ import annotations

import asyncio
import re
import subprocess
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

from bot.app import build_service
from config.settings import Settings
from signing.pipeline import build_context, ensure_draft
from storage.models import Case, Employee
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
        ctx = await build_context(case, kind, settings, now=now)
        for key in BASIS_KEYS:
            values = ctx[key] if isinstance(ctx[key], list) else [ctx[key]]
            assert not [v for v in values if chinese(str(v))], (kind, key, values)
        doc = await ensure_draft(case, step_id, kind, settings, now=now)
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
    ctx = await build_context(case, "rights_notice", settings, now=datetime.now(UTC))
    # The facts are all there, only in English: a back-pay with its basis, a non-compete, source notes.
    assert ctx["backpay_amount"] == "1,438.42" and len(ctx["basis_lines"]) > 2  # type: ignore[arg-type]
    assert ctx["non_compete_months"] == 6 and ctx["source_notes"]
    assert any("Art. 23" in str(x) for x in ctx["non_compete_lines"])  # type: ignore[attr-defined]
    assert all(str(n).startswith("Note ") for n in ctx["source_notes"])  # type: ignore[attr-defined]
    await _assert_english(case, settings, [("guarantee", "guarantee_letter"), ("rights_notice", "rights_notice"),
                                           ("case_completed", "completion_notice")], tmp_path)


async def test_an_english_mutual_agreement_prints_no_chinese_basis_lines(demo_org: Settings,
                                                                          tmp_path: Path) -> None:
    settings = demo_org.model_copy(update={"language": "en"})
    emp = await Employee.create(employee_id="E009", name="钱十一", department="销售部", position="客户经理",
                                manager_id=MANAGER, city="beijing", hire_date=date(2016, 3, 1),
                                contract_start=date(2016, 3, 1), monthly_wage=Decimal("12000.00"))
    service = build_service(settings)
    out = await service.start_case(employee=emp, template_id="mutual", last_day=date(2026, 1, 30), reason="",
                                   created_by=HR, handover_id=HANDOVER)
    # HR's check as the card tap records it (handlers.settlement): the company proposed, the computed
    # compensation changed to 150,000 with a reason.
    from handlers.settlement import figures_for
    from signing import settlefigures as sf

    data: dict[str, object] = {"last_working_day": "2026-01-30", "proposed_by": "公司",
                               "compensation_override": "150000", "override_reason": "双方协商一致",
                               "non_compete_months": "3", "non_compete_monthly": "5000"}
    figures, ground, last_day = await figures_for(service, await Case.get(id=out.case_id), data)  # type: ignore[arg-type]
    data[sf.RECORD_KEY] = sf.record(figures, {"compensation": Decimal("150000")}, "双方协商一致", ground=ground,
                                    last_day=last_day)
    await act(service, out.case_id, "terms", "complete", HR, {Role.HR}, data)
    case = await Case.get(id=out.case_id)
    ctx = await build_context(case, "settlement_agreement", settings, now=datetime.now(UTC))
    lines = [str(x) for x in ctx["compensation_lines"]]  # type: ignore[attr-defined]
    # The agreed figure differs from the Art. 47 standard: both stated, with the standard's basis in English.
    assert "agreed by both parties" in lines[0] and any("120,000.00" in x for x in lines), lines
    assert ctx["years_of_service"] == "9 years 11 months"
    await _assert_english(case, settings, [("settlement_agreement", "settlement_agreement"),
                                           ("rights_notice", "rights_notice")], tmp_path)


def test_amounts_in_english_words() -> None:
    from signing.amounts import rmb_words

    assert rmb_words(Decimal("1438.42")) == "one thousand four hundred and thirty-eight yuan and forty-two fen"
    assert rmb_words(Decimal("120000")) == "one hundred and twenty thousand yuan only"
    assert rmb_words(Decimal("1000000.05")) == "one million yuan and five fen"
    assert rmb_words(Decimal("0")) == "zero yuan only"
