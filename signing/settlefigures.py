"""The settlement figures of a case (compensation, unused annual leave, final-month pay), computed by
`settlement/` from the directory and the case's dates, and what HR agreed where it differs.

Pure functions over plain values: `handlers.settlement` records the figures (computed and agreed,
with HR's reason) in the HR check step's data, so the audit entry of that step holds both; the
documents (`signing.pipeline.build_context`) and HR's card read them back. Each figure's basis lines
(and what is missing) are recorded in Chinese and in English, so a document or card in either
language states what HR saw and accepted; `stated` says what happens with an older record that
holds Chinese only.

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
from signing.casefacts import wording
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
# Why nothing is owed, as a document states it beside "0 元" (ZERO_BASIS_EN: the same in English).
ZERO_BASIS = {
    "36-employee": "本次协商解除由劳动者提出，依照《劳动合同法》第四十六条第（二）项，用人单位不支付经济补偿",
    "37": "劳动者主动辞职，依照《劳动合同法》第四十六条不支付经济补偿",
    "39": "本次解除属《劳动合同法》第三十九条规定的情形，依照第四十六条不支付经济补偿",
}
ZERO_BASIS_EN = {
    "36-employee": "the mutual termination was proposed by the employee, so under Labour Contract Law "
                   "Art. 46(2) the employer pays no compensation",
    "37": "the employee resigned, so under Labour Contract Law Art. 46 no compensation is payable",
    "39": "this termination falls under Labour Contract Law Art. 39, so under Art. 46 no compensation is payable",
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
    basis: tuple[str, ...]  # in Chinese; basis_en holds the same lines in English, one to one
    missing: str = ""  # what input is missing, for HR, when computed is None (missing_en: in English)
    basis_en: tuple[str, ...] = ()
    missing_en: str = ""


def _unknown(key: str, zh: str, en: str) -> Figure:
    return Figure(key, None, (), zh, (), en)


def _missing(hire_date: date | None, last_day: date | None, wage: Decimal | None, *,
             need_wage: bool) -> tuple[str, str]:
    gaps = []
    if hire_date is None:
        gaps.append(("入职日期", "hire date"))
    if need_wage and wage is None:
        gaps.append(("月工资", "monthly wage"))
    zh = "通讯录中该员工的" + "、".join(g for g, _ in gaps) + "未登记" if gaps else ""
    en = "the directory has no " + " or ".join(g for _, g in gaps) + " for this employee" if gaps else ""
    if last_day is None:
        zh = "、".join(t for t in (zh, "最后工作日未确定") if t)
        en = "; ".join(t for t in (en, "the last working day is not set") if t)
    return zh, en


def compute(case_type: str, *, hire_date: date | None, last_day: date | None, wage: Decimal | None,
            proposed_by: str | None = None, leave_taken: Decimal | None = None) -> dict[str, Figure]:
    """Each figure with its basis lines, or what is missing to compute it (never an exception)."""
    out: dict[str, Figure] = {}
    ground = ground_of(case_type, proposed_by)
    owes = ground is not None and ground not in ZERO_BASIS
    gap = _missing(hire_date, last_day, wage, need_wage=owes)
    if ground is None:
        out["compensation"] = _unknown("compensation", "未确定解除由哪方提出",
                                       "who proposed the termination is not yet known")
    elif gap[0]:
        out["compensation"] = _unknown("compensation", *gap)
    elif owes and hire_date is not None and hire_date < LCL_START:
        out["compensation"] = _unknown("compensation", "入职早于 2008 年，2008 年前工作年限按当时规定计算，"
                                       "需由 HR 确定金额",
                                       "hired before 2008: service before 2008 counts under the rules of the "
                                       "time, so HR sets the amount")
    else:
        assert hire_date is not None and last_day is not None
        try:
            res = compensation(hire_date=hire_date, last_day=last_day, ground=ground,
                               average_monthly_wage=wage)
        except SettlementError as exc:
            out["compensation"] = _unknown("compensation", f"经济补偿无法计算（{exc.field}）",
                                           f"the compensation cannot be computed ({exc.field})")
        else:
            wage_line = wage is not None and owes
            out["compensation"] = Figure(
                "compensation", res.total,
                (*([wording("comp_wage", "zh", wage=money(wage))] if wage_line else []), *res.basis), "",
                (*([wording("comp_wage", "en", wage=money(wage))] if wage_line else []), *res.basis_en))

    gap = _missing(hire_date, last_day, wage, need_wage=True)
    if gap[0]:
        out["annual_leave"] = _unknown("annual_leave", *gap)
        out["final_pay"] = _unknown("final_pay", *gap)
        return out
    assert hire_date is not None and last_day is not None and wage is not None
    if last_day < hire_date:
        for key in ("annual_leave", "final_pay"):
            out[key] = _unknown(key, "最后工作日早于入职日期", "the last working day is before the hire date")
        return out
    months = Service.between(hire_date, last_day).months
    taken = leave_taken or Decimal(0)
    try:
        leave = annual_leave_payout(
            cumulative_work_months=months, last_day=last_day, average_monthly_wage=wage, days_taken=taken,
            joined_this_year=hire_date if hire_date.year == last_day.year else None)
    except SettlementError as exc:
        out["annual_leave"] = _unknown("annual_leave", f"年休假工资无法计算（{exc.field}）",
                                       f"the annual-leave pay cannot be computed ({exc.field})")
    else:
        days = f"{taken.normalize():f}"
        notes = ["累计工作年限按在本单位的工作年限计（其他单位的工作年限未登记；如有，请 HR 调整金额并说明原因）。",
                 f"本年度已休年休假 {days} 天" + ("（HR 录入）。" if leave_taken is not None
                                                   else "（HR 未录入，按 0 天计）。")]
        notes_en = ["Cumulative service counts the years at this employer only (years elsewhere are not "
                    "registered; if there are any, HR changes the amount and gives the reason).",
                    f"Annual leave taken this year: {days} days" + (" (entered by HR)." if leave_taken is not None
                                                                    else " (not entered by HR, counted as 0).")]
        out["annual_leave"] = Figure("annual_leave", leave.total, (*notes, *leave.basis), "",
                                     (*notes_en, *leave.basis_en))
    try:
        pay = final_month_pay(monthly_wage=wage, last_day=last_day,
                              first_day=hire_date if (hire_date.year, hire_date.month) ==
                              (last_day.year, last_day.month) else None)
    except SettlementError as exc:
        out["final_pay"] = _unknown("final_pay", f"最后一个月工资无法计算（{exc.field}）",
                                    f"the final month's wage cannot be computed ({exc.field})")
    else:
        out["final_pay"] = Figure("final_pay", pay.total, tuple(pay.basis), "", tuple(pay.basis_en))
    return out


def _day(value: object) -> date | None:
    try:
        return date.fromisoformat(str(value).strip()) if value else None
    except ValueError:
        return None


def compute_for_step(case_type: str, data: Mapping[str, Any], *, hire_date: date | None, wage: Decimal | None,
                     case_last_day: date | None) -> tuple[dict[str, Figure], str | None, date | None]:
    """The figures from the check step's data (who proposed, leave taken, the last working day, else the
    case's) and the directory's inputs; with the legal ground and the last day they used."""
    last_day = _day(data.get("last_working_day")) or case_last_day
    who = proposer(data.get(PROPOSER_FIELD)) if data.get(PROPOSER_FIELD) else None
    taken_raw = data.get(LEAVE_TAKEN_FIELD)
    taken = parse_amount(taken_raw) if taken_raw not in (None, "") else None
    figures = compute(case_type, hire_date=hire_date, last_day=last_day, wage=wage, proposed_by=who,
                      leave_taken=taken)
    return figures, ground_of(case_type, who), last_day


def record(figures: Mapping[str, Figure], overrides: Mapping[str, Decimal], reason: str, *, ground: str | None,
           last_day: date | None) -> dict[str, Any]:
    """What the HR step keeps (and its audit entry shows): each figure computed and agreed, its basis (and
    what was missing) in Chinese and in English, the reason."""
    items = {}
    for key, fig in figures.items():
        agreed = overrides.get(key, fig.computed)
        items[key] = {
            "computed": None if fig.computed is None else f"{fig.computed:.2f}",
            "agreed": None if agreed is None else f"{agreed:.2f}",
            "missing": fig.missing,
            "basis": list(fig.basis),
            "missing_en": fig.missing_en,
            "basis_en": list(fig.basis_en),
        }
    return {"ground": ground, "last_day": last_day.isoformat() if last_day else None, "items": items,
            "overridden": sorted(overrides), "override_reason": reason if overrides else ""}


def _dec(value: object) -> Decimal | None:
    return None if value is None else Decimal(str(value))


@dataclass(frozen=True)
class Stated:
    """One figure as a document or card states it, its basis and what was missing in one language."""

    key: str
    agreed: Decimal | None
    computed: Decimal | None
    basis: tuple[str, ...]
    missing: str

    @property
    def differs(self) -> bool:
        return self.computed is not None and self.agreed is not None and self.agreed != self.computed


def lacks_english(rec: Mapping[str, Any]) -> bool:
    """A record written before the basis was recorded in English too (it has the Chinese only)."""
    items = rec.get("items") or {}
    return any(isinstance(v, Mapping) and "basis_en" not in v for v in items.values())


def _english_of(key: str, item: Mapping[str, Any], recomputed: Mapping[str, Figure] | None
                ) -> tuple[tuple[str, ...], str] | None:
    """The English of an item recorded in Chinese only, when the figures computed now from the same inputs
    reproduce the recorded Chinese lines exactly (so the English states what HR saw and accepted)."""
    fig = (recomputed or {}).get(key)
    if fig is None:
        return None
    same = (fig.basis == tuple(item.get("basis") or ()) and fig.missing == str(item.get("missing") or "")
            and fig.computed == _dec(item.get("computed")))
    return (fig.basis_en, fig.missing_en) if same else None


def stated(rec: Mapping[str, Any], lang: str = "zh",
           recomputed: Mapping[str, Figure] | None = None) -> dict[str, Stated]:
    """The recorded figures, worded in `lang`.

    A record written by older code holds the basis in Chinese only. In English its lines come from
    `recomputed` (the figures computed now from the step's data and the directory) only when those
    reproduce the recorded Chinese exactly; otherwise the Chinese lines are printed as recorded: a
    document states what was recorded, and a translation that may not match it would not."""
    out = {}
    for key, v in (rec.get("items") or {}).items():
        if not isinstance(v, Mapping):
            continue
        basis, missing = tuple(v.get("basis") or ()), str(v.get("missing") or "")
        if lang == "en":
            if "basis_en" in v:
                basis, missing = tuple(v.get("basis_en") or ()), str(v.get("missing_en") or "")
            else:
                basis, missing = _english_of(key, v, recomputed) or (basis, missing)
        out[key] = Stated(key, _dec(v.get("agreed")), _dec(v.get("computed")), basis, missing)
    return out


def from_figures(figures: Mapping[str, Figure], lang: str = "zh") -> dict[str, Stated]:
    en = lang == "en"
    return {k: Stated(k, f.computed, f.computed, f.basis_en if en else f.basis, f.missing_en if en else f.missing)
            for k, f in figures.items()}


def amount_text(fig: Stated, lang: str = "zh", reason: str | None = None) -> str:
    """A figure's amount as a card or the dashboard shows it: the computed one beside an agreed one that
    differs (with HR's reason when given), or what is missing."""
    zh = lang != "en"
    if fig.agreed is None:
        return f"无法计算：{fig.missing}" if zh else f"cannot be computed: {fig.missing}"
    value = f"{money(fig.agreed)} 元" if zh else f"CNY {money(fig.agreed)}"
    if fig.differs and fig.computed is not None:
        why = "" if reason is None else (f"；调整原因：{reason}" if zh else f"; reason for the change: {reason}")
        value += (f"（计算结果 {money(fig.computed)} 元{why}）" if zh else f" (computed {money(fig.computed)}{why})")
    return value


def zero_basis(ground: object, lang: str = "zh") -> str:
    """Why nothing is owed on this ground, in `lang` ("" when the ground owes compensation)."""
    return (ZERO_BASIS_EN if lang == "en" else ZERO_BASIS).get(str(ground), "")


def compensation_lines(fig: Stated, *, mutual: bool, upper: Callable[[Decimal], str], lang: str = "zh") -> list[str]:
    """The compensation's annex: the standard computation, and the agreed figure beside it when they differ."""
    if fig.agreed is None:
        return []
    if not fig.differs:
        head = wording("comp_standard", lang, agreed=money(fig.agreed)) if fig.agreed else \
            wording("comp_zero", lang)
        return [head, *fig.basis]
    assert fig.computed is not None
    return [wording("comp_set_by_both" if mutual else "comp_set_by_company", lang, agreed=money(fig.agreed),
                    upper=upper(fig.agreed)),
            wording("comp_computed", lang, computed=money(fig.computed), upper=upper(fig.computed)), *fig.basis]


def summary_lines(figs: Mapping[str, Stated], upper: Callable[[Decimal], str],
                  keys: Iterable[str] = ("annual_leave", "final_pay"), lang: str = "zh") -> list[str]:
    """One line per figure with its amount in words, and the standard beside an agreed figure that differs."""
    out = []
    for key in keys:
        fig = figs.get(key)
        if fig is None or fig.agreed is None:
            continue
        item = BY_KEY[key]
        line = wording("sum_amount", lang, item=item.en if lang == "en" else item.zh, amount=money(fig.agreed),
                       upper=upper(fig.agreed))
        if fig.differs:
            assert fig.computed is not None
            line += wording("sum_standard", lang, computed=money(fig.computed), upper=upper(fig.computed))
        out.append(line + wording("sum_annex", lang))
    return out


def basis_lines(figs: Mapping[str, Stated], keys: Iterable[str] = ("annual_leave", "final_pay"),
                lang: str = "zh") -> list[str]:
    out = []
    for key in keys:
        fig = figs.get(key)
        if fig is None or fig.agreed is None:
            continue
        item = BY_KEY[key]
        out.append(wording("basis_head", lang, item=item.en if lang == "en" else item.zh))
        out += list(fig.basis)
    return out
