"""The settlement figures of a case (compensation, unused annual leave, final-month pay), computed by
`settlement/` from the directory and the case's dates, and what HR agreed where it differs.

Pure functions over plain values: `handlers.settlement` records the figures (computed and agreed,
with HR's reason) in the HR check step's data, so the audit entry of that step holds both; the
documents (`signing.pipeline.build_context`) and HR's card read them back.

A flow computes these figures when one of its HR steps declares the `override_reason` field (the
step on which HR checks them); the legal ground comes from the case type, or for a mutual agreement
from who proposed it (Art. 46(2): compensation only when the employer did).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from settlement.annual_leave import annual_leave_payout
from settlement.basis import money
from settlement.compensation import LCL_START, Service, compensation
from settlement.errors import SettlementError
from settlement.final_pay import final_month_pay
from workflow.template import FlowTemplate, StepTemplate

REASON_FIELD = "override_reason"
PROPOSER_FIELD = "proposed_by"
LEAVE_TAKEN_FIELD = "annual_leave_taken"
RECORD_KEY = "settlement"  # where the step's data keeps the figures (and so its audit entry)

# The legal ground of each case type that computes compensation; a mutual agreement's comes from
# who proposed it.
GROUND_BY_CASE_TYPE = {"misconduct": "39", "probation": "39", "resignation": "37"}
PROPOSER_GROUND = {"employer": "36-employer", "employee": "36-employee"}
PROPOSER_WORDS = {
    "公司": "employer", "单位": "employer", "用人单位": "employer", "甲方": "employer", "employer": "employer",
    "company": "employer",
    "员工": "employee", "劳动者": "employee", "乙方": "employee", "本人": "employee", "employee": "employee",
}
# Why nothing is owed, as a document states it beside "0 元".
ZERO_BASIS = {
    "36-employee": "本次协商解除由劳动者提出，依照《劳动合同法》第四十六条第（二）项，用人单位不支付经济补偿",
    "37": "劳动者主动辞职，依照《劳动合同法》第四十六条不支付经济补偿",
    "39": "本次解除属《劳动合同法》第三十九条规定的情形，依照第四十六条不支付经济补偿",
}


@dataclass(frozen=True)
class Item:
    key: str
    override_field: str
    zh: str
    en: str


ITEMS = (
    Item("compensation", "compensation_override", "经济补偿", "Compensation"),
    Item("annual_leave", "leave_payout_override", "未休年休假工资报酬", "Pay for unused annual leave"),
    Item("final_pay", "final_pay_override", "最后一个月工资", "Final month's wage"),
)
BY_KEY = {i.key: i for i in ITEMS}
_AMOUNT = re.compile(r"^\d+(\.\d{1,2})?$")


def check_step(template: FlowTemplate) -> StepTemplate | None:
    """The HR step on which the settlement figures are checked (it declares `override_reason`)."""
    return next((s for s in template.steps if any(f.key == REASON_FIELD for f in s.fields)), None)


def parse_amount(value: object) -> Decimal | None:
    """An amount HR typed: digits with at most two decimals (thousands commas allowed); None if not one."""
    text = str(value).strip().replace(",", "").replace("，", "")
    return Decimal(text).quantize(Decimal("0.01")) if _AMOUNT.match(text) else None


def proposer(value: object) -> str | None:
    return PROPOSER_WORDS.get(str(value or "").strip().lower())


def ground_of(case_type: str, proposed_by: str | None) -> str | None:
    if proposed_by is not None:
        return PROPOSER_GROUND[proposed_by]
    return GROUND_BY_CASE_TYPE.get(case_type)


@dataclass(frozen=True)
class Figure:
    key: str
    computed: Decimal | None
    basis: tuple[str, ...]
    missing: str = ""  # what input is missing, in Chinese for HR, when computed is None


def _missing(hire_date: date | None, last_day: date | None, wage: Decimal | None, *, need_wage: bool) -> str:
    gaps = []
    if hire_date is None:
        gaps.append("入职日期")
    if need_wage and wage is None:
        gaps.append("月工资")
    text = "通讯录中该员工的" + "、".join(gaps) + "未登记" if gaps else ""
    if last_day is None:
        text = "、".join(t for t in (text, "最后工作日未确定") if t)
    return text


def compute(case_type: str, *, hire_date: date | None, last_day: date | None, wage: Decimal | None,
            proposed_by: str | None = None, leave_taken: Decimal | None = None) -> dict[str, Figure]:
    """Each figure with its basis lines, or what is missing to compute it (never an exception)."""
    out: dict[str, Figure] = {}
    ground = ground_of(case_type, proposed_by)
    owes = ground is not None and ground not in ZERO_BASIS
    gap = _missing(hire_date, last_day, wage, need_wage=owes)
    if ground is None:
        out["compensation"] = Figure("compensation", None, (), "未确定解除由哪方提出")
    elif gap:
        out["compensation"] = Figure("compensation", None, (), gap)
    elif owes and hire_date is not None and hire_date < LCL_START:
        out["compensation"] = Figure("compensation", None, (), "入职早于 2008 年，2008 年前工作年限按当时规定计算，"
                                     "需由 HR 确定金额")
    else:
        assert hire_date is not None and last_day is not None
        try:
            res = compensation(hire_date=hire_date, last_day=last_day, ground=ground,
                               average_monthly_wage=wage)
        except SettlementError as exc:
            out["compensation"] = Figure("compensation", None, (), f"经济补偿无法计算（{exc.field}）")
        else:
            lines = [f"月工资按员工名册登记的月工资 {money(wage)} 元计。"] if wage is not None and owes else []
            out["compensation"] = Figure("compensation", res.total, (*lines, *res.basis))

    gap = _missing(hire_date, last_day, wage, need_wage=True)
    if gap:
        out["annual_leave"] = Figure("annual_leave", None, (), gap)
        out["final_pay"] = Figure("final_pay", None, (), gap)
        return out
    assert hire_date is not None and last_day is not None and wage is not None
    if last_day < hire_date:
        problem = "最后工作日早于入职日期"
        out["annual_leave"] = Figure("annual_leave", None, (), problem)
        out["final_pay"] = Figure("final_pay", None, (), problem)
        return out
    months = Service.between(hire_date, last_day).months
    taken = leave_taken or Decimal(0)
    try:
        leave = annual_leave_payout(
            cumulative_work_months=months, last_day=last_day, average_monthly_wage=wage, days_taken=taken,
            joined_this_year=hire_date if hire_date.year == last_day.year else None)
    except SettlementError as exc:
        out["annual_leave"] = Figure("annual_leave", None, (), f"年休假工资无法计算（{exc.field}）")
    else:
        notes = ["累计工作年限按在本单位的工作年限计（其他单位的工作年限未登记；如有，请 HR 调整金额并说明原因）。",
                 f"本年度已休年休假 {taken.normalize():f} 天" + ("（HR 录入）。" if leave_taken is not None
                                                                 else "（HR 未录入，按 0 天计）。")]
        out["annual_leave"] = Figure("annual_leave", leave.total, (*notes, *leave.basis))
    try:
        pay = final_month_pay(monthly_wage=wage, last_day=last_day,
                              first_day=hire_date if (hire_date.year, hire_date.month) ==
                              (last_day.year, last_day.month) else None)
    except SettlementError as exc:
        out["final_pay"] = Figure("final_pay", None, (), f"最后一个月工资无法计算（{exc.field}）")
    else:
        out["final_pay"] = Figure("final_pay", pay.total, tuple(pay.basis))
    return out


def record(figures: Mapping[str, Figure], overrides: Mapping[str, Decimal], reason: str, *, ground: str | None,
           last_day: date | None) -> dict[str, Any]:
    """What the HR step keeps (and its audit entry shows): each figure computed and agreed, the reason."""
    items = {}
    for key, fig in figures.items():
        agreed = overrides.get(key, fig.computed)
        items[key] = {
            "computed": None if fig.computed is None else f"{fig.computed:.2f}",
            "agreed": None if agreed is None else f"{agreed:.2f}",
            "missing": fig.missing,
            "basis": list(fig.basis),
        }
    return {"ground": ground, "last_day": last_day.isoformat() if last_day else None, "items": items,
            "overridden": sorted(overrides), "override_reason": reason if overrides else ""}


def _dec(value: object) -> Decimal | None:
    return None if value is None else Decimal(str(value))


@dataclass(frozen=True)
class Stated:
    """One figure as a document or card states it."""

    key: str
    agreed: Decimal | None
    computed: Decimal | None
    basis: tuple[str, ...]
    missing: str

    @property
    def differs(self) -> bool:
        return self.computed is not None and self.agreed is not None and self.agreed != self.computed


def stated(rec: Mapping[str, Any]) -> dict[str, Stated]:
    items = rec.get("items") or {}
    return {key: Stated(key, _dec(v.get("agreed")), _dec(v.get("computed")), tuple(v.get("basis") or ()),
                        str(v.get("missing") or ""))
            for key, v in items.items() if isinstance(v, Mapping)}


def from_figures(figures: Mapping[str, Figure]) -> dict[str, Stated]:
    return {k: Stated(k, f.computed, f.computed, f.basis, f.missing) for k, f in figures.items()}


def compensation_lines(fig: Stated, *, mutual: bool, upper: Callable[[Decimal], str]) -> list[str]:
    """The compensation's annex: the standard computation, and the agreed figure beside it when they differ."""
    if fig.agreed is None:
        return []
    if not fig.differs:
        head = f"经济补偿金额 {money(fig.agreed)} 元按《劳动合同法》第四十七条计算，计算依据如下：" if fig.agreed else \
            "经济补偿金额为 0 元，依据如下："
        return [head, *fig.basis]
    who = "双方协商确定" if mutual else "本单位确定"
    assert fig.computed is not None
    return [f"经济补偿金额 {money(fig.agreed)} 元（大写：{upper(fig.agreed)}）为{who}。",
            f"供核对：按《劳动合同法》计算的经济补偿为 {money(fig.computed)} 元（大写：{upper(fig.computed)}），"
            "计算依据如下：", *fig.basis]


def summary_lines(figs: Mapping[str, Stated], upper: Callable[[Decimal], str],
                  keys: Iterable[str] = ("annual_leave", "final_pay")) -> list[str]:
    """One line per figure with its amount in words, and the standard beside an agreed figure that differs."""
    out = []
    for key in keys:
        fig = figs.get(key)
        if fig is None or fig.agreed is None:
            continue
        line = f"{BY_KEY[key].zh}：人民币 {money(fig.agreed)} 元（大写：{upper(fig.agreed)}）"
        if fig.differs:
            assert fig.computed is not None
            line += f"，按标准计算为 {money(fig.computed)} 元（大写：{upper(fig.computed)}）"
        out.append(line + "，计算依据见附件。")
    return out


def basis_lines(figs: Mapping[str, Stated], keys: Iterable[str] = ("annual_leave", "final_pay")) -> list[str]:
    out = []
    for key in keys:
        fig = figs.get(key)
        if fig is None or fig.agreed is None:
            continue
        out.append(f"【{BY_KEY[key].zh}】")
        out += list(fig.basis)
    return out
