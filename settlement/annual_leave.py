"""Unused annual-leave payout at departure (职工带薪年休假条例 Arts. 3/5, 实施办法 Arts. 10–12)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from settlement.basis import Basis, money, money_plain, number, to_cent
from settlement.errors import SettlementError

PAID_DAYS_PER_MONTH = Decimal("21.75")
YEAR_DAYS = Decimal(365)  # Measures Art. 12 divides by 365 even in leap years.
EXTRA_RATE = Decimal(2)  # 300% in Regs Art. 5 includes the normal wage already paid (Measures Art. 10).


def entitlement_days(cumulative_work_months: int) -> int:
    """Days a year by cumulative service (Regs Art. 3): 1–<10 years 5, 10–<20 years 10, 20+ years 15."""
    if cumulative_work_months < 12:
        return 0
    if cumulative_work_months < 120:
        return 5
    if cumulative_work_months < 240:
        return 10
    return 15


@dataclass(frozen=True)
class LeaveResult:
    total: Decimal
    days: int
    daily_wage: Decimal
    entitlement: int
    elapsed_days: int
    basis: list[str] = field(default_factory=list)
    basis_en: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "total": money_plain(self.total),
            "days": str(self.days),
            "daily_wage": money_plain(self.daily_wage),
            "entitlement_days": str(self.entitlement),
            "elapsed_days": str(self.elapsed_days),
            "basis": self.basis,
            "basis_en": self.basis_en,
        }


def annual_leave_payout(
    *,
    cumulative_work_months: int,
    last_day: date,
    average_monthly_wage: Decimal,
    days_taken: Decimal = Decimal(0),
    joined_this_year: date | None = None,
    declined_in_writing: bool = False,
) -> LeaveResult:
    """Payout for unused leave of the current calendar year, the extra 200% of the daily wage.

    ``cumulative_work_months`` counts all employers, at ``last_day``. ``joined_this_year`` is the
    first day at this employer when it falls in the same calendar year.
    """
    if isinstance(cumulative_work_months, bool) or not isinstance(cumulative_work_months, int) \
            or cumulative_work_months < 0:
        raise SettlementError("cumulative_work_months", f"must be a whole number ≥ 0, got {cumulative_work_months!r}")
    if not isinstance(last_day, date):
        raise SettlementError("last_day", "must be a date")
    if not isinstance(average_monthly_wage, Decimal) or not average_monthly_wage.is_finite() \
            or average_monthly_wage < 0:
        raise SettlementError("average_monthly_wage", f"must be a non-negative amount, got {average_monthly_wage}")
    if not isinstance(days_taken, Decimal) or not days_taken.is_finite() or days_taken < 0:
        raise SettlementError("days_taken", f"must be a non-negative number of days, got {days_taken}")
    if not isinstance(declined_in_writing, bool):
        raise SettlementError("declined_in_writing", "must be true or false")
    year_start = date(last_day.year, 1, 1)
    if joined_this_year is not None:
        if not isinstance(joined_this_year, date):
            raise SettlementError("joined_this_year", "must be a date")
        if joined_this_year.year != last_day.year:
            raise SettlementError("joined_this_year", f"must fall in {last_day.year}, the year of last_day")
        if joined_this_year > last_day:
            raise SettlementError("joined_this_year", "is after last_day")
    start = joined_this_year or year_start

    basis = Basis()
    entitlement = entitlement_days(cumulative_work_months)
    years = Decimal(cumulative_work_months) / 12
    basis.add(
        f"累计工作 {cumulative_work_months} 个月（约 {number(years.quantize(Decimal('0.1'), ROUND_FLOOR))} 年，"
        f"含其他单位）→ 年休假 {entitlement} 天（《职工带薪年休假条例》第三条：满 1 年不满 10 年 5 天，"
        f"满 10 年不满 20 年 10 天，满 20 年 15 天；不满 12 个月无年休假，《实施办法》第三条）",
        f"Cumulative service {cumulative_work_months} months (about "
        f"{number(years.quantize(Decimal('0.1'), ROUND_FLOOR))} years, all employers) → {entitlement} days a year "
        f"(Leave Regulations Art. 3: 1 to under 10 years 5 days, 10 to under 20 years 10, 20 or more 15; "
        f"none under 12 months, Measures Art. 3)",
    )
    elapsed = (last_day - start).days + 1
    raw = Decimal(elapsed) / YEAR_DAYS * entitlement - days_taken
    days = max(int(raw.to_integral_value(rounding=ROUND_FLOOR)), 0)
    start_zh = "入职日" if joined_this_year else "1 月 1 日"
    start_en = "the hire date" if joined_this_year else "1 January"
    basis.add(
        f"当年度在本单位已过日历天数：{start.isoformat()}（{start_zh}）至 {last_day.isoformat()} 共 {elapsed} 天",
        f"Calendar days at this employer this year: {start.isoformat()} ({start_en}) to {last_day.isoformat()}, "
        f"{elapsed} days",
    )
    raw_text = number(raw.quantize(Decimal("0.001"), ROUND_FLOOR))
    basis.add(
        f"应休未休天数 = {elapsed} ÷ 365 × {entitlement} − 已休 {number(days_taken)} = {raw_text}，"
        f"不足一整天的部分不支付 → {days} 天（《实施办法》第十二条；已多休的不扣回）",
        f"Unused days = {elapsed} ÷ 365 × {entitlement} − {number(days_taken)} taken = {raw_text}; "
        f"fractions of a day are not paid → {days} days (Measures Art. 12; days taken in excess are not clawed back)",
    )
    daily = to_cent(average_monthly_wage / PAID_DAYS_PER_MONTH)
    basis.add(
        f"日工资 = 月平均工资 {money(average_monthly_wage)}（前 12 个月，不含加班工资）÷ 21.75 = {money(daily)}"
        f"（四舍五入到分；《实施办法》第十一条）",
        f"Daily wage = average monthly wage {money(average_monthly_wage)} (previous 12 months, without overtime) "
        f"÷ 21.75 = {money(daily)} (half-up to the cent; Measures Art. 11)",
    )
    if declined_in_writing:
        total = Decimal(0)
        basis.add(
            "职工因本人原因书面提出不休年休假，只支付正常工资收入，未休年休假报酬为 0.00（《实施办法》第十条第二款）",
            "The employee declined leave in writing for personal reasons, so only the normal wage is due and the "
            "payout is 0.00 (Measures Art. 10(2))",
        )
    else:
        total = to_cent(daily * days * EXTRA_RATE)
        basis.add(
            f"未休年休假报酬 = {days} 天 × {money(daily)} × 200% = {money(total)}（条例第五条按 300% 支付，"
            f"其中已含正常工资，另付 200%，《实施办法》第十条）",
            f"Payout = {days} days × {money(daily)} × 200% = {money(total)} (Regulations Art. 5 pay 300%, which "
            f"includes the normal wage already paid, so 200% is added; Measures Art. 10)",
        )
    basis.add(
        "未核查条例第四条不享受当年年休假的情形（如请长病假、事假累计 20 天以上），由 HR 确认",
        "The exclusions of Regulations Art. 4 (long sick leave, 20+ days of personal leave, etc.) were not "
        "checked; HR to confirm",
    )
    return LeaveResult(total, days, daily, entitlement, elapsed, basis.zh, basis.en)
