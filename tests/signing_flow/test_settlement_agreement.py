"""The settlement figures of a mutual agreement are computed, not typed: HR's check card and the agreement
state the same compensation and basis as `python -m bot calc compensation` for the same directory data
(a 2016 hire on 12,000 in Beijing); HR may change a figure only with a reason, and the step's audit
entry then holds both figures; an agreement the employee proposed owes 0 and says so; a missing
directory input is named to HR and nothing changes."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from chat.router import Reply
from config.settings import Settings
from settlement.basis import money
from signing.amounts import rmb_upper
from signing.channel import Channel
from signing.pipeline import ensure_draft
from storage.models import AuditEntry, Case, CaseStep, Employee
from tests.chat.conftest import Chat, build_chat
from tests.conftest import ROOT
from tests.signing_flow.conftest import HR, MANAGER

LAST_DAY = date(2026, 1, 30)
EMPLOYEE = "E009"
COMPENSATION_LABEL_BEFORE = "经济补偿（如由公司提出；由员工提出则为 0）"


@pytest.fixture
async def chat(demo_org: Settings) -> Chat:
    return build_chat(demo_org)


def _flat(text: str) -> str:
    return re.sub(r"\s+", "", text)


async def _calc(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "RATE_TABLES_DIR"}
    proc = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "bot", "calc", kind],
                                   input=json.dumps(payload), capture_output=True, text=True, cwd=ROOT, env=env,
                                   timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


async def _start(chat: Chat, *, wage: str | None = "12000.00", hire: date | None = date(2016, 3, 1)) -> str:
    emp = await Employee.create(employee_id=EMPLOYEE, name="钱十一", department="销售部", position="客户经理",
                                manager_id=MANAGER, city="beijing", hire_date=hire, contract_start=hire,
                                monthly_wage=Decimal(wage) if wage else None)
    out = await chat.inbound.service.start_case(employee=emp, template_id="mutual", last_day=LAST_DAY,
                                                reason="", created_by=HR, handover_id="E006")
    await chat.deliver()
    return out.case_id


async def _terms(chat: Chat, **form: str) -> Reply:
    card = await chat.card(HR, step="terms")
    reply = await chat.click(HR, card.card_id, "complete", {"last_working_day": LAST_DAY.isoformat(), **form})
    await chat.deliver()
    return reply


async def _agreement_text(chat: Chat, case_id: str, tmp_path: Path) -> str:
    card = await chat.card(MANAGER, step="manager_approve")
    assert (await chat.click(MANAGER, card.card_id, "approve", {})).ok
    case = await Case.get(id=case_id)
    doc = await ensure_draft(case, "settlement_agreement", "settlement_agreement", chat.settings,
                             channel=Channel(), now=datetime.now(UTC))
    path = tmp_path / "agreement.pdf"
    path.write_bytes(bytes(doc.pdf_unsigned))
    proc = await asyncio.to_thread(subprocess.run, ["pdftotext", "-layout", str(path), "-"], capture_output=True,
                                   text=True, check=True)
    return _flat(proc.stdout)


async def _entries(case_id: str) -> list[AuditEntry]:
    return await AuditEntry.filter(case_id=case_id).order_by("seq")


async def _terms_record(case_id: str) -> dict[str, Any]:
    entry = await AuditEntry.filter(case_id=case_id, kind="step_done").order_by("seq").first()
    assert entry is not None and entry.data["step_id"] == "terms"
    return entry.data["data"]["settlement"]


async def test_card_and_agreement_show_the_calculator_figure_and_basis(chat: Chat, tmp_path: Path) -> None:
    calc = await _calc("compensation", {"hire_date": "2016-03-01", "last_day": LAST_DAY.isoformat(),
                                        "ground": "36-employer", "average_monthly_wage": "12000"})
    total = Decimal(str(calc["total"]))
    assert total == Decimal("120000.00")  # 9 years 10 months 30 days → 10 months × 12,000
    case_id = await _start(chat)

    card = (await chat.card(HR, step="terms")).card
    assert card is not None
    assert dict(card.fields)[COMPENSATION_LABEL_BEFORE] == f"{money(total)} 元"
    for line in calc["basis"]:
        assert f"- {line}" in card.body, line

    assert (await _terms(chat, proposed_by="公司")).ok
    rec = await _terms_record(case_id)
    assert rec["ground"] == "36-employer" and rec["overridden"] == []
    assert rec["items"]["compensation"]["computed"] == rec["items"]["compensation"]["agreed"] == "120000.00"
    leave = await _calc("annual-leave", {"cumulative_work_months": 118, "last_day": LAST_DAY.isoformat(),
                                         "average_monthly_wage": "12000"})
    assert rec["items"]["annual_leave"]["computed"] == leave["total"]
    final = await _calc("final-pay", {"monthly_wage": "12000", "last_day": LAST_DAY.isoformat()})
    assert rec["items"]["final_pay"]["computed"] == final["total"]

    text = await _agreement_text(chat, case_id, tmp_path)
    assert f"人民币{money(total)}元（大写：{rmb_upper(total)}）" in text
    assert "按《劳动合同法》第四十七条计算" in text
    for line in calc["basis"]:
        assert _flat(str(line)) in text, line
    final_total = Decimal(final["total"])
    assert f"最后一个月工资：人民币{money(final_total)}元（大写：{rmb_upper(final_total)}）" in text
    assert "附件：未休年休假工资报酬及最后一个月工资计算依据" in text
    assert all(_flat(line) in text for line in final["basis"] if "://" not in line)
    assert "（未提供）" not in text
    # The working-day calendar's source stands in a numbered note of its own, never inside a sentence.
    assert text.count("://") == len(re.findall(r"注\d+：https?://", text)) == 1


async def test_a_changed_figure_without_a_reason_is_refused_and_nothing_changes(chat: Chat) -> None:
    case_id = await _start(chat)
    before = len(await _entries(case_id))
    reply = await _terms(chat, proposed_by="公司", compensation_override="150000")
    assert not reply.ok and reply.code == "override_reason_required"
    assert "调整原因" in reply.text and "未做任何更改" in reply.text
    assert len(await _entries(case_id)) == before
    step = await CaseStep.get(case_id=case_id, step_id="terms")
    assert step.status == "active" and not step.data

    reply = await _terms(chat, proposed_by="公司", override_reason="员工要求")
    assert not reply.ok and reply.code == "override_without_amount"
    reply = await _terms(chat, proposed_by="双方")
    assert not reply.ok and reply.code == "bad_value" and "公司" in reply.text
    assert len(await _entries(case_id)) == before


async def test_a_changed_figure_with_a_reason_is_audited_beside_the_computed_one(chat: Chat,
                                                                                 tmp_path: Path) -> None:
    case_id = await _start(chat)
    reply = await _terms(chat, proposed_by="公司", compensation_override="150000",
                         override_reason="双方协商，公司多付三个月")
    assert reply.ok, reply.text
    rec = await _terms_record(case_id)
    assert rec["items"]["compensation"]["computed"] == "120000.00"
    assert rec["items"]["compensation"]["agreed"] == "150000.00"
    assert rec["overridden"] == ["compensation"] and rec["override_reason"] == "双方协商，公司多付三个月"
    assert rec["items"]["final_pay"]["computed"] == rec["items"]["final_pay"]["agreed"]

    card = (await chat.card(HR, step="terms")).card
    assert card is not None
    assert dict(card.fields)["经济补偿"] == \
        "150,000.00 元（计算结果 120,000.00 元；调整原因：双方协商，公司多付三个月）"
    # The manager approving the terms sees the same figures, the change and its reason.
    manager_card = (await chat.card(MANAGER, step="manager_approve")).card
    assert manager_card is not None and dict(manager_card.fields)["经济补偿"] == dict(card.fields)["经济补偿"]

    text = await _agreement_text(chat, case_id, tmp_path)
    assert f"人民币{money(Decimal('150000'))}元（大写：壹拾伍万元整）" in text
    assert "双方协商确定" in text and f"经济补偿为{money(Decimal('120000'))}元（大写：壹拾贰万元整）" in text


async def test_employee_proposed_agreement_states_no_compensation(chat: Chat, tmp_path: Path) -> None:
    case_id = await _start(chat)
    assert (await _terms(chat, proposed_by="员工")).ok
    rec = await _terms_record(case_id)
    assert rec["ground"] == "36-employee" and rec["items"]["compensation"]["agreed"] == "0.00"
    text = await _agreement_text(chat, case_id, tmp_path)
    assert "无需向乙方支付经济补偿（经济补偿金额为0元；本次协商解除由劳动者提出" in text
    assert "第四十六条第（二）项" in text and "合计0.00" in text
    assert "支付经济补偿人民币" not in text


async def test_a_missing_wage_is_named_to_hr_and_nothing_changes(chat: Chat) -> None:
    case_id = await _start(chat, wage=None)
    card = (await chat.card(HR, step="terms")).card
    assert card is not None
    assert dict(card.fields)[COMPENSATION_LABEL_BEFORE] == "无法计算：通讯录中该员工的月工资未登记"
    before = len(await _entries(case_id))
    reply = await _terms(chat, proposed_by="公司")
    assert not reply.ok and reply.code == "settlement_input_missing"
    assert "月工资未登记" in reply.text and "Traceback" not in reply.text
    assert len(await _entries(case_id)) == before
    # HR enters every figure with a reason: accepted, and the record says what was missing.
    reply = await _terms(chat, proposed_by="公司", compensation_override="100000", leave_payout_override="0",
                         final_pay_override="12000", override_reason="工资以劳动合同为准，通讯录待补")
    assert reply.ok, reply.text
    rec = await _terms_record(case_id)
    assert rec["items"]["compensation"]["computed"] is None
    assert rec["items"]["compensation"]["missing"] == "通讯录中该员工的月工资未登记"
