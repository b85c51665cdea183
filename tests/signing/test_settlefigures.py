"""The settlement figures of a case from plain inputs: the ground per case type and proposer, 0 stated
with its basis where nothing is owed, and what is missing named instead of an exception."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import Any

from settlement.annual_leave import annual_leave_payout
from settlement.final_pay import final_month_pay
from signing import settlefigures as sf
from signing.amounts import rmb_upper, rmb_words
from workflow.templates import load_templates

WAGE = Decimal("12000.00")
CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]")


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


def chinese_only(rec: dict[str, Any]) -> dict[str, Any]:
    """A record as code before the English basis wrote it: the same keys without the English ones."""
    items = {k: {f: v for f, v in item.items() if not f.endswith("_en")} for k, item in rec["items"].items()}
    return {**rec, "items": items}


def test_the_record_keeps_each_basis_in_both_languages_line_for_line() -> None:
    args = {"hire_date": date(2016, 3, 1), "last_day": date(2026, 1, 30), "wage": WAGE, "proposed_by": "employer"}
    figs = sf.compute("mutual", **args)  # type: ignore[arg-type]
    rec = sf.record(figs, {"compensation": Decimal("150000")}, "多付", ground="36-employer",
                    last_day=date(2026, 1, 30))
    for key, item in rec["items"].items():
        assert item["basis"] and len(item["basis_en"]) == len(item["basis"]), key
        # The English lines are the calculators' own English (settlement/), plus the wage and leave notes.
        assert not any(CJK.search(line) for line in item["basis_en"]), key
    comp = rec["items"]["compensation"]
    assert comp["basis_en"][0] == "The monthly wage is the RMB 12,000.00 registered in the staff directory."
    assert comp["basis_en"][-1].startswith("Income tax:") and comp["basis"][-1].startswith("个人所得税")
    en = sf.stated(rec, "en")
    assert sf.compensation_lines(en["compensation"], mutual=True, upper=rmb_words, lang="en")[:2] == [
        "The compensation of RMB 150,000.00 (one hundred and fifty thousand yuan only) was agreed by both parties.",
        "For reference: the compensation computed under the Labour Contract Law is RMB 120,000.00 (one hundred "
        "and twenty thousand yuan only), as follows:"]
    assert sf.basis_lines(en, lang="en")[0] == "[Pay for unused annual leave]"
    assert sf.summary_lines(en, rmb_words, lang="en")[-1] == \
        "Final month's wage: RMB 12,000.00 (twelve thousand yuan only); the basis is in the annex."
    # Chinese reads as it always did.
    zh = sf.stated(rec)
    assert zh["compensation"].basis == figs["compensation"].basis
    assert sf.compensation_lines(zh["compensation"], mutual=True, upper=rmb_upper)[0] == \
        "经济补偿金额 150,000.00 元（大写：壹拾伍万元整）为双方协商确定。"
    assert sf.basis_lines(zh)[0] == "【未休年休假工资报酬】"
    assert sf.zero_basis("39", "en").startswith("this termination falls under Labour Contract Law Art. 39")
    missing = sf.compute("mutual", hire_date=None, last_day=date(2026, 1, 30), wage=None, proposed_by="employer")
    assert missing["final_pay"].missing_en == "the directory has no hire date or monthly wage for this employee"


def test_an_older_chinese_only_record_is_worded_in_english_only_where_recomputing_reproduces_it() -> None:
    args = {"hire_date": date(2016, 3, 1), "last_day": date(2026, 1, 30), "proposed_by": "employer"}
    figs = sf.compute("mutual", wage=WAGE, **args)  # type: ignore[arg-type]
    old = chinese_only(sf.record(figs, {}, "", ground="36-employer", last_day=date(2026, 1, 30)))
    assert sf.lacks_english(old) and not sf.lacks_english(sf.record(figs, {}, "", ground="36-employer",
                                                                       last_day=date(2026, 1, 30)))
    # The same inputs today: the Chinese lines come out identical, so their English is what HR accepted.
    same = sf.stated(old, "en", sf.compute("mutual", wage=WAGE, **args))  # type: ignore[arg-type]
    assert same["compensation"].basis == figs["compensation"].basis_en
    # The directory's wage changed since: the lines would differ, so the recorded Chinese is stated as is.
    moved = sf.stated(old, "en", sf.compute("mutual", wage=Decimal("13000.00"), **args))  # type: ignore[arg-type]
    assert moved["compensation"].basis == figs["compensation"].basis
    assert moved["compensation"].agreed == Decimal("120000.00")
    assert sf.stated(old, "en")["final_pay"].basis == figs["final_pay"].basis  # nothing recomputed
