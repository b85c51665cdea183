"""The mutual-termination agreement states the compensation with the same figure and basis as
`python -m bot calc compensation` for the same directory data (a 2016 hire on 12,000 in Beijing)."""

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

from bot.app import build_service
from bot.settings import Settings
from settlement.basis import money
from signing.amounts import rmb_upper
from signing.pipeline import ensure_draft
from storage.models import Case, Employee
from tests.conftest import ROOT
from tests.signing_flow.conftest import HR, MANAGER, act
from workflow.model import Role

LAST_DAY = date(2026, 1, 30)


def _flat(text: str) -> str:
    return re.sub(r"\s+", "", text)


async def _calc(payload: dict[str, str]) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != "RATE_TABLES_DIR"}
    proc = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "bot", "calc", "compensation"],
                                   input=json.dumps(payload), capture_output=True, text=True, cwd=ROOT, env=env,
                                   timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


async def _agreement(settings: Settings, agreed: str, tmp_path: Path) -> str:
    emp = await Employee.create(employee_id="E009", name="钱十一", department="销售部", position="客户经理",
                                manager_id=MANAGER, city="beijing", hire_date=date(2016, 3, 1),
                                contract_start=date(2016, 3, 1), monthly_wage=Decimal("12000.00"))
    service = build_service(settings)
    out = await service.start_case(employee=emp, template_id="mutual", last_day=LAST_DAY, reason="", created_by=HR,
                                   handover_id="E006")
    await act(service, out.case_id, "terms", "complete", HR, {Role.HR},
              {"last_working_day": LAST_DAY.isoformat(), "compensation": agreed})
    await act(service, out.case_id, "manager_approve", "approve", MANAGER, {Role.MANAGER})
    case = await Case.get(id=out.case_id)
    doc = await ensure_draft(case, "settlement_agreement", "settlement_agreement", settings, now=datetime.now(UTC))
    path = tmp_path / "agreement.pdf"
    path.write_bytes(bytes(doc.pdf_unsigned))
    proc = await asyncio.to_thread(subprocess.run, ["pdftotext", "-layout", str(path), "-"], capture_output=True,
                                   text=True, check=True)
    return _flat(proc.stdout)


async def test_agreement_shows_the_calculator_figure_and_basis(demo_org: Settings, tmp_path: Path) -> None:
    calc = await _calc({"hire_date": "2016-03-01", "last_day": LAST_DAY.isoformat(), "ground": "36-employer",
                        "average_monthly_wage": "12000"})
    total = Decimal(str(calc["total"]))
    assert total == Decimal("120000.00")  # 9 years 11 months → 10 months × 12,000
    text = await _agreement(demo_org, str(total), tmp_path)
    assert f"人民币{money(total)}元（大写：{rmb_upper(total)}）" in text
    assert "按《劳动合同法》第四十七条计算" in text
    for line in calc["basis"]:  # type: ignore[union-attr]
        assert _flat(str(line)) in text, line
    assert "（未提供）" not in text and "://" not in text


async def test_agreed_figure_differs_from_the_standard_and_both_are_shown(demo_org: Settings,
                                                                          tmp_path: Path) -> None:
    text = await _agreement(demo_org, "150000", tmp_path)
    assert f"人民币{money(Decimal('150000'))}元（大写：壹拾伍万元整）" in text
    assert "双方协商确定" in text and f"经济补偿为{money(Decimal('120000'))}元" in text
