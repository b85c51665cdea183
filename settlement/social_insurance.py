"""Social-insurance back-payment: per month, the table in force, the clamped base, each item rounded.

Order of operations (research/calc.md §1.2): base = clamp(declared wage, floor, cap) per item; each
item = round(base × rate) per month by the table's rounding mode, plus any fixed employee amount;
sum after rounding. Rounding the total instead gives a different answer (1,438.41 vs 1,438.42 in S2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from settlement.basis import ROUNDING_EN, ROUNDING_MODES, ROUNDING_ZH, Basis, money, money_plain, percent
from settlement.errors import SettlementError
from settlement.months import is_month, parse_month
from settlement.tables import ItemPlan, RateTable, RateTables, Rounding, as_tables

ITEM_ZH = {
    "pension": "养老",
    "medical": "医疗",
    "unemployment": "失业",
    "injury": "工伤",
    "maternity": "生育",
    "housing_fund": "住房公积金",
}
ITEM_EN = {
    "pension": "pension",
    "medical": "medical",
    "unemployment": "unemployment",
    "injury": "work injury",
    "maternity": "maternity",
    "housing_fund": "housing fund",
}


def apply_rounding(value: Decimal, rounding: Rounding) -> Decimal:
    return value.quantize(Decimal(rounding.unit), rounding=ROUNDING_MODES[rounding.mode])


@dataclass(slots=True)
class ItemAmount:
    item: str
    base: Decimal
    employee_rate: Decimal
    employer_rate: Decimal
    employee_fixed: Decimal
    employee: Decimal
    employer: Decimal

    def to_json(self) -> dict[str, str]:
        data = {
            "base": money_plain(self.base),
            "employee_rate": str(self.employee_rate),
            "employer_rate": str(self.employer_rate),
            "employee": money_plain(self.employee),
            "employer": money_plain(self.employer),
        }
        if self.employee_fixed:
            data["employee_fixed"] = money_plain(self.employee_fixed)
        return data


@dataclass(slots=True)
class MonthAmount:
    month: str
    table_id: str
    base: Decimal
    items: tuple[ItemAmount, ...]
    employee: Decimal
    employer: Decimal

    def to_json(self) -> dict[str, Any]:
        return {
            "month": self.month,
            "table": self.table_id,
            "base": money_plain(self.base),
            "employee": money_plain(self.employee),
            "employer": money_plain(self.employer),
            "items": {item.item: item.to_json() for item in self.items},
        }


@dataclass(frozen=True)
class BackPayResult:
    wage: Decimal
    employee_total: Decimal
    employer_total: Decimal
    months: tuple[MonthAmount, ...]
    basis: list[str]
    basis_en: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "employee_total": money_plain(self.employee_total),
            "employer_total": money_plain(self.employer_total),
            "months": [month.to_json() for month in self.months],
            "tables": sorted({month.table_id for month in self.months}),
            "basis": self.basis,
            "basis_en": self.basis_en,
        }


def _clamp(wage: Decimal, floor: Decimal, cap: Decimal) -> Decimal:
    return min(max(wage, floor), cap)


def _base_note(table: RateTable, plan: ItemPlan, wage: Decimal, wage_text: str) -> tuple[str, str]:
    scope_zh = f"{ITEM_ZH[plan.name]}保险" if plan.own_limits else ""
    scope_en = f" {ITEM_EN[plan.name]}" if plan.own_limits else ""
    if wage < plan.floor:
        return (
            f"{table.name}{scope_zh}下限，申报工资 {wage_text} 低于下限",
            f"{table.name_en}{scope_en} floor; declared wage {wage_text} is below it",
        )
    if wage > plan.cap:
        return (
            f"{table.name}{scope_zh}上限，申报工资 {wage_text} 高于上限",
            f"{table.name_en}{scope_en} cap; declared wage {wage_text} is above it",
        )
    limits = f"{money(plan.floor)}–{money(plan.cap)}"
    return (
        f"申报工资，在{table.name}{scope_zh}上下限 {limits} 之内",
        f"declared wage, inside the {table.name_en}{scope_en} limits {limits}",
    )


def _rounded_text(raw: Decimal, rounded: Decimal, rounding: Rounding) -> tuple[str, str]:
    shown = money(rounded)
    if raw == rounded:
        return shown, shown
    key = (rounding.mode, rounding.unit)
    exact = f"{raw.normalize():f}"
    return f"{exact}，{ROUNDING_ZH[key]} {shown}", f"{exact}, {ROUNDING_EN[key]} {shown}"


def _month_for_table(
    table: RateTable, wage: Decimal, injury_rate: Decimal | None, basis: Basis | None
) -> tuple[Decimal, tuple[ItemAmount, ...]]:
    """One month under one table; the same wage gives the same month, so callers compute it once per table."""
    items: list[ItemAmount] = []
    wage_text = money(wage)
    for plan in table.plan:
        name = plan.name
        base = min(max(wage, plan.floor), plan.cap)
        employer_rate = injury_rate if name == "injury" and injury_rate is not None else plan.employer_rate
        ee_raw = base * plan.employee_rate
        er_raw = base * employer_rate
        ee_rounded = ee_raw.quantize(plan.quantum, rounding=plan.mode)
        employee = ee_rounded + plan.employee_fixed
        employer = er_raw.quantize(plan.quantum, rounding=plan.mode)
        items.append(ItemAmount(name, base, plan.employee_rate, employer_rate, plan.employee_fixed, employee, employer))
        if basis is None:
            continue
        base_text = money(base)
        if plan.employee_rate or plan.employee_fixed:
            note_zh, note_en = _base_note(table, plan, wage, wage_text)
            shown_zh, shown_en = _rounded_text(ee_raw, ee_rounded, plan.rounding)
            rate_text = percent(plan.employee_rate)
            fixed_zh = fixed_en = ""
            if plan.employee_fixed:
                fixed, total = money(plan.employee_fixed), money(employee)
                fixed_zh = f"，另加固定 {fixed} = {total}"
                fixed_en = f", plus a fixed {fixed} = {total}"
            basis.add(
                f"月缴费基数 {base_text}（{note_zh}）× 个人{ITEM_ZH[name]} {rate_text} = {shown_zh}{fixed_zh}",
                f"Monthly base {base_text} ({note_en}) × employee {ITEM_EN[name]} {rate_text} = {shown_en}{fixed_en}",
            )
        if employer_rate:
            shown_zh, shown_en = _rounded_text(er_raw, employer, plan.rounding)
            rate_text = percent(employer_rate)
            basis.add(
                f"月缴费基数 {base_text} × 单位{ITEM_ZH[name]} {rate_text} = {shown_zh}",
                f"Monthly base {base_text} × employer {ITEM_EN[name]} {rate_text} = {shown_en}",
            )
    headline = _clamp(wage, table.base_floor, table.base_cap)
    return headline, tuple(items)


def _check_months(months: Sequence[str]) -> list[str]:
    if isinstance(months, str) or not isinstance(months, Sequence) or not months:
        raise SettlementError("months", "expected a non-empty list of 'YYYY-MM'")
    seen: set[str] = set()
    for index, month in enumerate(months):
        if not is_month(month):
            parse_month(month, f"months[{index}]")  # raises with the field named
        if month in seen:
            raise SettlementError(f"months[{index}]", f"{month} is listed twice")
        seen.add(month)
    return sorted(seen)


def _month_ranges(months: list[str]) -> str:
    return "、".join(months) if len(months) <= 3 else f"{months[0]} 至 {months[-1]} 中的 {len(months)} 个月"


def _month_ranges_en(months: list[str]) -> str:
    return ", ".join(months) if len(months) <= 3 else f"{len(months)} months from {months[0]} to {months[-1]}"


def backpay(
    months: list[str],
    wage: Decimal,
    *,
    city: str | None = None,
    tables: RateTables | Sequence[RateTable] | None = None,
    injury_rate: Decimal | None = None,
) -> BackPayResult:
    """Employee and employer contributions owed for ``months`` on the declared ``wage``.

    ``tables`` defaults to the bundled tables; ``city`` picks the family (required when the tables
    hold more than one city). Each month uses the table in force in that month.
    """
    ordered = _check_months(months)
    if not isinstance(wage, Decimal) or not wage.is_finite() or wage <= 0:
        raise SettlementError("wage", f"must be a positive amount, got {wage}")
    if injury_rate is not None and (
        not isinstance(injury_rate, Decimal) or not injury_rate.is_finite() or not 0 <= injury_rate < 1
    ):
        raise SettlementError("injury_rate", f"must be a fraction in [0, 1), e.g. 0.004 for 0.4%, got {injury_rate}")
    rate_tables = as_tables(tables)

    basis = Basis()
    wage_text = money(wage)
    basis.add(
        f"申报月缴费工资 {wage_text}；补缴月份 {_month_ranges(ordered)}，共 {len(ordered)} 个月",
        f"Declared monthly wage {wage_text}; unpaid months {_month_ranges_en(ordered)}, {len(ordered)} in all",
    )

    if city is not None:
        city = rate_tables.resolve_city(city)
    by_table: dict[str, tuple[RateTable, list[str]]] = {}
    for month in ordered:
        table = rate_tables.lookup(month, city)
        by_table.setdefault(table.id, (table, []))[1].append(month)

    month_rows: list[MonthAmount] = []
    employee_total = employer_total = Decimal(0)
    for table, table_months in by_table.values():
        key = (table.rounding.mode, table.rounding.unit)
        floor_text, cap_text, checked = money(table.base_floor), money(table.base_cap), table.checked.isoformat()
        basis.add(
            f"{_month_ranges(table_months)}（{len(table_months)} 个月）适用{table.name}"
            f"（{table.effective_from}→{table.effective_to}）：基数下限 {floor_text}、"
            f"上限 {cap_text}；每项每月{ROUNDING_ZH[key]}；来源 {table.source_url}，核对于 {checked}",
            f"{_month_ranges_en(table_months)} ({len(table_months)} months) fall under {table.name_en} "
            f"({table.effective_from}→{table.effective_to}): base floor {floor_text}, cap "
            f"{cap_text}; each item each month {ROUNDING_EN[key]}; source {table.source_url}, checked {checked}",
        )
        if injury_rate is not None and "injury" in table.items:
            basis.add(
                f"工伤费率按输入 {percent(injury_rate)}（表内默认 {percent(table.items['injury'].employer_rate)}）",
                f"Work-injury rate {percent(injury_rate)} as given "
                f"(table default {percent(table.items['injury'].employer_rate)})",
            )
        base, items = _month_for_table(table, wage, injury_rate, basis)
        employee = sum((item.employee for item in items), Decimal(0))
        employer = sum((item.employer for item in items), Decimal(0))
        count = len(table_months)
        ee, er, ee_all, er_all = money(employee), money(employer), money(employee * count), money(employer * count)
        basis.add(
            f"每月个人 {ee}、单位 {er}；× {count} 个月 = 个人 {ee_all}、单位 {er_all}",
            f"Per month employee {ee}, employer {er}; × {count} months = employee {ee_all}, employer {er_all}",
        )
        for month in table_months:
            month_rows.append(MonthAmount(month, table.id, base, items, employee, employer))
        employee_total += employee * count
        employer_total += employer * count

    month_rows.sort(key=lambda row: row.month)
    ee_total, er_total = money(employee_total), money(employer_total)
    basis.add(
        f"合计：个人部分 {ee_total}，单位部分 {er_total}（各项按月取整后相加）",
        f"Total: employee share {ee_total}, employer share {er_total} "
        f"(items rounded per month, then added)",
    )
    basis.add(
        "依据：《社会保险法》第十、二十三、四十四、五十三条（险种与缴费方）、第五十八条（用工之日起 30 日内登记）、"
        "第六十条（个人部分由单位代扣）；试用期包含在劳动合同期限内（《劳动合同法》第十九条）",
        "Basis: Social Insurance Law Arts. 10, 23, 44, 53 (items and who pays), Art. 58 (register within 30 days "
        "of hiring), Art. 60 (employer withholds the employee share); probation is part of the contract term "
        "(Labour Contract Law Art. 19)",
    )
    basis.add(
        "滞纳金：自欠缴之日起按日加收万分之五（《社会保险法》第八十六条），由单位承担，不计入上述金额",
        "Late fee: 0.05% per day from the due date (Social Insurance Law Art. 86), borne by the employer and "
        "not included above",
    )
    return BackPayResult(wage, employee_total, employer_total, tuple(month_rows), basis.zh, basis.en)
