"""The settlement figures of a case from plain inputs: the ground per case type and proposer, 0 stated
with its basis where nothing is owed, and what is missing named instead of an exception."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from settlement.annual_leave import annual_leave_payout
from settlement.final_pay import final_month_pay
from signing import settlefigures as sf
from signing.amounts import rmb_upper
from workflow.templates import load_templates

WAGE = Decimal("12000.00")


def test_misconduct_owes_no_compensation_under_art_39_and_says_so() -> None:
    figs = sf.compute("misconduct", hire_date=date(2024, 3, 1), last_day=date(2025, 7, 31), wage=WAGE)
    comp = figs["compensation"]
    assert comp.computed == Decimal(0)
    assert any("第三十九条" in line for line in comp.basis) and "合计 0.00" in comp.basis[-1]
    assert sf.ZERO_BASIS["39"].startswith("本次解除属《劳动合同法》第三十九条")
    lines = sf.compensation_lines(sf.from_figures(figs)["compensation"], mutual=False, upper=rmb_upper)
    assert lines[0] == "经济补偿金额为 0 元，依据如下："
    # Leave and final pay: the same figures the calculators give for the same inputs.
    leave = annual_leave_payout(cumulative_work_months=17, last_day=date(2025, 7, 31), average_monthly_wage=WAGE)
    assert figs["annual_leave"].computed == leave.total
    assert figs["final_pay"].computed == final_month_pay(monthly_wage=WAGE, last_day=date(2025, 7, 31)).total


def test_the_proposer_decides_the_mutual_ground() -> None:
    args = {"hire_date": date(2016, 3, 1), "last_day": date(2026, 1, 30), "wage": WAGE}
    assert sf.compute("mutual", proposed_by="employer", **args)["compensation"].computed == Decimal("120000.00")
    assert sf.compute("mutual", proposed_by="employee", **args)["compensation"].computed == Decimal(0)
    assert sf.compute("mutual", **args)["compensation"].missing == "未确定解除由哪方提出"
    assert sf.proposer(" 公司 ") == "employer" and sf.proposer("员工") == "employee" and sf.proposer("双方") is None


def test_missing_inputs_are_named_not_raised() -> None:
    figs = sf.compute("mutual", proposed_by="employer", hire_date=None, last_day=date(2026, 1, 30), wage=None)
    assert {f.missing for f in figs.values()} == {"通讯录中该员工的入职日期、月工资未登记"}
    assert all(f.computed is None for f in figs.values())
    # Art. 39 owes nothing whatever the wage; only the wage-based figures wait for it.
    figs = sf.compute("misconduct", hire_date=date(2024, 3, 1), last_day=date(2025, 7, 31), wage=None)
    assert figs["compensation"].computed == Decimal(0) and figs["final_pay"].missing == "通讯录中该员工的月工资未登记"
    # Service before 2008 needs HR's choice of rule: HR enters the figure with a reason.
    figs = sf.compute("mutual", proposed_by="employer", hire_date=date(2005, 1, 1), last_day=date(2026, 1, 30),
                      wage=WAGE)
    assert figs["compensation"].computed is None and "2008" in figs["compensation"].missing


def test_amounts_hr_types_are_checked() -> None:
    assert sf.parse_amount("150,000") == Decimal("150000.00")
    assert sf.parse_amount("0") == Decimal("0.00")
    for bad in ("-1", "1.234", "abc", "", "1e3"):
        assert sf.parse_amount(bad) is None, bad


def test_bundled_flows_check_the_figures_on_an_hr_step() -> None:
    flows = load_templates()
    assert sf.check_step(flows["mutual"]).id == "terms"  # type: ignore[union-attr]
    assert sf.check_step(flows["misconduct"]).id == "deregistration"  # type: ignore[union-attr]
    assert sf.check_step(flows["probation"]) is None and sf.check_step(flows["resignation"]) is None
    for flow in ("mutual", "misconduct"):
        step = sf.check_step(flows[flow])
        assert step is not None and step.role == "hr"
        keys = {f.key for f in step.fields}
        assert {i.override_field for i in sf.ITEMS} | {sf.REASON_FIELD} <= keys
