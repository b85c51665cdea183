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
from settlement.months import parse_month
from settlement.tables import RateTable, RateTables, Rounding, as_tables

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


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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


def _base_note(table: RateTable, item: str, wage: Decimal) -> tuple[str, str]:
    floor, cap = table.limits(item)
    own = table.items[item].base_floor is not None or table.items[item].base_cap is not None
    scope_zh = f"{ITEM_ZH[item]}保险" if own else ""
    scope_en = f" {ITEM_EN[item]}" if own else ""
    if wage < floor:
        return (
            f"{table.name}{scope_zh}下限，申报工资 {money(wage)} 低于下限",
            f"{table.name_en}{scope_en} floor; declared wage {money(wage)} is below it",
        )
    if wage > cap:
        return (
            f"{table.name}{scope_zh}上限，申报工资 {money(wage)} 高于上限",
            f"{table.name_en}{scope_en} cap; declared wage {money(wage)} is above it",
        )
    return (
        f"申报工资，在{table.name}{scope_zh}上下限 {money(floor)}–{money(cap)} 之内",
        f"declared wage, inside the {table.name_en}{scope_en} limits {money(floor)}–{money(cap)}",
    )


def _rounded_text(raw: Decimal, rounded: Decimal, rounding: Rounding) -> tuple[str, str]:
    if raw == rounded:
        return money(rounded), money(rounded)
    key = (rounding.mode, rounding.unit)
    return (
        f"{raw.normalize():f}，{ROUNDING_ZH[key]} {money(rounded)}",
        f"{raw.normalize():f}, {ROUNDING_EN[key]} {money(rounded)}",
    )


def _month_for_table(
    table: RateTable, wage: Decimal, injury_rate: Decimal | None, basis: Basis | None
) -> tuple[Decimal, tuple[ItemAmount, ...]]:
    """One month under one table; the same wage gives the same month, so callers compute it once per table."""
    items: list[ItemAmount] = []
    for name, rates in table.items.items():
        floor, cap = table.limits(name)
        base = _clamp(wage, floor, cap)
        employer_rate = injury_rate if name == "injury" and injury_rate is not None else rates.employer_rate
        rounding = table.rounding_for(name)
        ee_raw = base * rates.employee_rate
        er_raw = base * employer_rate
        employee = apply_rounding(ee_raw, rounding) + rates.employee_fixed
        employer = apply_rounding(er_raw, rounding)
        items.append(
            ItemAmount(name, base, rates.employee_rate, employer_rate, rates.employee_fixed, employee, employer)
        )
        if basis is None:
            continue
        note_zh, note_en = _base_note(table, name, wage)
        if rates.employee_rate or rates.employee_fixed:
            shown_zh, shown_en = _rounded_text(ee_raw, apply_rounding(ee_raw, rounding), rounding)
            fixed_zh = fixed_en = ""
            if rates.employee_fixed:
                fixed_zh = f"，另加固定 {money(rates.employee_fixed)} = {money(employee)}"
                fixed_en = f", plus a fixed {money(rates.employee_fixed)} = {money(employee)}"
            basis.add(
                f"月缴费基数 {money(base)}（{note_zh}）× 个人{ITEM_ZH[name]} {percent(rates.employee_rate)} "
                f"= {shown_zh}{fixed_zh}",
                f"Monthly base {money(base)} ({note_en}) × employee {ITEM_EN[name]} "
                f"{percent(rates.employee_rate)} = {shown_en}{fixed_en}",
            )
        if employer_rate:
            shown_zh, shown_en = _rounded_text(er_raw, employer, rounding)
            basis.add(
                f"月缴费基数 {money(base)} × 单位{ITEM_ZH[name]} {percent(employer_rate)} = {shown_zh}",
                f"Monthly base {money(base)} × employer {ITEM_EN[name]} {percent(employer_rate)} = {shown_en}",
            )
    headline = _clamp(wage, table.base_floor, table.base_cap)
    return headline, tuple(items)


def _check_months(months: Sequence[str]) -> list[str]:
    if isinstance(months, str) or not isinstance(months, Sequence) or not months:
        raise SettlementError("months", "expected a non-empty list of 'YYYY-MM'")
    parsed = [parse_month(month, f"months[{index}]") for index, month in enumerate(months)]
    seen: set[str] = set()
    for index, month in enumerate(parsed):
        if month in seen:
            raise SettlementError(f"months[{index}]", f"{month} is listed twice")
        seen.add(month)
    return sorted(parsed)


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
    basis.add(
        f"申报月缴费工资 {money(wage)}；补缴月份 {_month_ranges(ordered)}，共 {len(ordered)} 个月",
        f"Declared monthly wage {money(wage)}; unpaid months {_month_ranges_en(ordered)}, {len(ordered)} in all",
    )

    by_table: dict[str, tuple[RateTable, list[str]]] = {}
    for month in ordered:
        table = rate_tables.lookup(month, city)
        by_table.setdefault(table.id, (table, []))[1].append(month)

    month_rows: list[MonthAmount] = []
    employee_total = employer_total = Decimal(0)
    for table, table_months in by_table.values():
        key = (table.rounding.mode, table.rounding.unit)
        basis.add(
            f"{_month_ranges(table_months)}（{len(table_months)} 个月）适用{table.name}"
            f"（{table.effective_from}→{table.effective_to}）：基数下限 {money(table.base_floor)}、"
            f"上限 {money(table.base_cap)}；每项每月{ROUNDING_ZH[key]}；"
            f"来源 {table.source_url}，核对于 {table.checked.isoformat()}",
            f"{_month_ranges_en(table_months)} ({len(table_months)} months) fall under {table.name_en} "
            f"({table.effective_from}→{table.effective_to}): base floor {money(table.base_floor)}, cap "
            f"{money(table.base_cap)}; each item each month {ROUNDING_EN[key]}; "
            f"source {table.source_url}, checked {table.checked.isoformat()}",
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
        basis.add(
            f"每月个人 {money(employee)}、单位 {money(employer)}；× {count} 个月 = "
            f"个人 {money(employee * count)}、单位 {money(employer * count)}",
            f"Per month employee {money(employee)}, employer {money(employer)}; × {count} months = "
            f"employee {money(employee * count)}, employer {money(employer * count)}",
        )
        for month in table_months:
            month_rows.append(MonthAmount(month, table.id, base, items, employee, employer))
        employee_total += employee * count
        employer_total += employer * count

    month_rows.sort(key=lambda row: row.month)
    basis.add(
        f"合计：个人部分 {money(employee_total)}，单位部分 {money(employer_total)}（各项按月取整后相加）",
        f"Total: employee share {money(employee_total)}, employer share {money(employer_total)} "
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
