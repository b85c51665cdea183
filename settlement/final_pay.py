"""Final-month wage proration. The law does not fix a method, so it is company policy (calc.md §4)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from settlement.basis import Basis, money, money_plain, to_cent
from settlement.errors import SettlementError
from settlement.months import days_in_month
from settlement.workdays import count_days, year_calendar

PAID_DAYS_PER_MONTH = Decimal("21.75")
METHODS = {
    "attendance-21.75": ("21.75 出勤法：(工作日 + 法定节假日) × 月工资 ÷ 21.75，不超过月工资",
                         "21.75 attendance: (working days + statutory holidays) × monthly wage ÷ 21.75, "
                         "at most the monthly wage"),
    "deduction-21.75": ("21.75 扣减法：月工资 − 未在职的(工作日 + 法定节假日) × 月工资 ÷ 21.75",
                        "21.75 deduction: monthly wage − (working days + statutory holidays not employed) "
                        "× monthly wage ÷ 21.75"),
    "workdays": ("当月工作日法：在职工作日 ÷ 当月工作日 × 月工资",
                 "working days of the month: working days employed ÷ working days in the month × monthly wage"),
    "calendar": ("日历天数法：在职日历天数 ÷ 当月日历天数 × 月工资",
                 "calendar days: calendar days employed ÷ days in the month × monthly wage"),
}
DEFAULT_METHOD = "attendance-21.75"


@dataclass(frozen=True)
class FinalPayResult:
    total: Decimal
    method: str
    basis: list[str] = field(default_factory=list)
    basis_en: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"total": money_plain(self.total), "method": self.method, "basis": self.basis,
                "basis_en": self.basis_en}


def final_month_pay(
    *, monthly_wage: Decimal, last_day: date, method: str = DEFAULT_METHOD, first_day: date | None = None
) -> FinalPayResult:
    """Wage for the final month, employed from ``first_day`` (default: the 1st) to ``last_day`` inclusive."""
    if not isinstance(monthly_wage, Decimal) or not monthly_wage.is_finite() or monthly_wage < 0:
        raise SettlementError("monthly_wage", f"must be a non-negative amount, got {monthly_wage}")
    if not isinstance(last_day, date):
        raise SettlementError("last_day", "must be a date")
    if method not in METHODS:
        raise SettlementError("method", f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    month_start = last_day.replace(day=1)
    month_end = last_day.replace(day=days_in_month(last_day.year, last_day.month))
    start = month_start if first_day is None else first_day
    if not isinstance(start, date) or not month_start <= start <= last_day:
        raise SettlementError("first_day", f"must fall in {last_day:%Y-%m} on or before last_day")

    basis = Basis()
    method_zh, method_en = METHODS[method]
    basis.add(f"折算方法：{method_zh}（法律未规定，按公司制度）",
              f"Method: {method_en} (not fixed by law; company policy)")
    basis.add(f"月工资 {money(monthly_wage)}；{last_day:%Y-%m} 在职 {start.isoformat()} 至 {last_day.isoformat()}",
              f"Monthly wage {money(monthly_wage)}; employed in {last_day:%Y-%m} from {start.isoformat()} "
              f"to {last_day.isoformat()}")
    whole_month = start == month_start and last_day == month_end
    if whole_month:
        total = to_cent(monthly_wage)
        basis.add(f"整月在职，全额支付 {money(total)}", f"Employed the whole month: paid in full, {money(total)}")
    elif method == "calendar":
        days = (last_day - start).days + 1
        month_days = days_in_month(last_day.year, last_day.month)
        total = to_cent(monthly_wage * days / month_days)
        basis.add(f"{days} ÷ {month_days} × {money(monthly_wage)} = {money(total)}",
                  f"{days} ÷ {month_days} × {money(monthly_wage)} = {money(total)}")
    else:
        cal = year_calendar(last_day.year, "last_day")
        working, holidays = count_days(start, last_day, "last_day")
        if method == "workdays":
            month_working, _ = count_days(month_start, month_end, "last_day")
            total = to_cent(monthly_wage * working / month_working)
            basis.add(f"在职工作日 {working} ÷ 当月工作日 {month_working} × {money(monthly_wage)} = {money(total)}",
                      f"{working} working days employed ÷ {month_working} in the month × {money(monthly_wage)} "
                      f"= {money(total)}")
        elif method == "attendance-21.75":
            paid = working + holidays
            raw = monthly_wage * paid / PAID_DAYS_PER_MONTH
            total = to_cent(min(raw, monthly_wage))
            capped_zh = "，超过月工资按月工资" if raw > monthly_wage else ""
            capped_en = ", capped at the monthly wage" if raw > monthly_wage else ""
            basis.add(
                f"计薪天数 = 工作日 {working} + 法定节假日 {holidays} = {paid}；{paid} × {money(monthly_wage)} ÷ 21.75 "
                f"= {money(total)}{capped_zh}",
                f"Paid days = {working} working days + {holidays} statutory holidays = {paid}; {paid} × "
                f"{money(monthly_wage)} ÷ 21.75 = {money(total)}{capped_en}",
            )
        else:
            before = (0, 0)
            if start > month_start:
                before = count_days(month_start, date.fromordinal(start.toordinal() - 1), "last_day")
            after = count_days(date.fromordinal(last_day.toordinal() + 1), month_end, "last_day") \
                if last_day < month_end else (0, 0)
            absent = sum(before) + sum(after)
            total = to_cent(max(monthly_wage - monthly_wage * absent / PAID_DAYS_PER_MONTH, Decimal(0)))
            basis.add(
                f"未在职的计薪天数（工作日 + 法定节假日）{absent}；{money(monthly_wage)} − {absent} × "
                f"{money(monthly_wage)} ÷ 21.75 = {money(total)}",
                f"Paid days not employed (working days + statutory holidays) {absent}; {money(monthly_wage)} − "
                f"{absent} × {money(monthly_wage)} ÷ 21.75 = {money(total)}",
            )
        basis.add(f"工作日按国务院放假安排（含调休上班日）：{cal.source_url}",
                  f"Working days follow the State Council holiday arrangement (including make-up workdays): "
                  f"{cal.source_url}")
    basis.add("21.75 = (365 − 104) ÷ 12（人社部发〔2025〕2号，仍为月计薪天数）；只在结果处四舍五入到分；"
              "离职时应一次付清工资（《工资支付暂行规定》第九条）",
              "21.75 = (365 − 104) ÷ 12 paid days a month (MOHRSS [2025] No. 2); rounded half-up to the cent "
              "only at the end; wages are due in full on termination (Interim Provisions on Wage Payment Art. 9)")
    return FinalPayResult(total, method, basis.zh, basis.en)
