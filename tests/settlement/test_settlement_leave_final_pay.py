"""Unused annual-leave payout and final-month proration."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from settlement.annual_leave import annual_leave_payout, entitlement_days
from settlement.errors import SettlementError
from settlement.final_pay import METHODS, final_month_pay
from settlement.workdays import count_days

D = Decimal


def leave(**kw: object):  # type: ignore[no-untyped-def]
    args: dict[str, object] = {"cumulative_work_months": 96, "last_day": date(2025, 6, 30),
                               "average_monthly_wage": D("10875")}
    args.update(kw)
    return annual_leave_payout(**args)  # type: ignore[arg-type]


def test_a1_eight_years_half_a_year() -> None:
    result = leave()
    assert (result.days, result.daily_wage, result.total) == (2, D("500.00"), D("2000.00"))
    assert result.elapsed_days == 181
    assert result.to_json()["total"] == "2000.00" and result.to_json()["days"] == "2"
    assert any("181 ÷ 365 × 5 − 已休 0 = 2.479" in line for line in result.basis)


@pytest.mark.parametrize(("months", "days"), [(0, 0), (11, 0), (12, 5), (119, 5), (120, 10), (239, 10),
                                              (240, 15), (480, 15)])
def test_entitlement_thresholds_include_the_number(months: int, days: int) -> None:
    assert entitlement_days(months) == days


def test_fraction_is_dropped_after_subtracting_days_taken() -> None:
    # 273/365 × 10 = 7.479…; minus 0.4 taken = 7.079 → 7. Dropping the fraction first (7 − 0.4 = 6.6 → 6)
    # would underpay by a day.
    result = leave(cumulative_work_months=150, last_day=date(2025, 9, 30), days_taken=D("0.4"))
    assert result.elapsed_days == 273
    assert result.days == 7
    result = leave(cumulative_work_months=150, last_day=date(2025, 9, 30), days_taken=D("0.5"))
    assert result.days == 6  # 6.979 → 6, never rounded up


def test_excess_days_taken_are_not_clawed_back() -> None:
    result = leave(days_taken=D("4"))
    assert (result.days, result.total) == (0, D("0.00"))


def test_joiner_this_year_counts_from_the_hire_date() -> None:
    result = leave(joined_this_year=date(2025, 3, 1), last_day=date(2025, 12, 31))
    assert result.elapsed_days == 306
    assert result.days == 4  # 306/365 × 5 = 4.19


def test_leap_year_still_divides_by_365() -> None:
    result = leave(last_day=date(2024, 12, 31), cumulative_work_months=300)
    assert result.elapsed_days == 366
    assert result.days == 15  # 366/365 × 15 = 15.04


def test_declined_in_writing_pays_nothing() -> None:
    result = leave(declined_in_writing=True)
    assert result.total == D("0") and result.days == 2
    assert any("第十条第二款" in line for line in result.basis)


def test_under_a_year_of_service_has_no_leave() -> None:
    assert leave(cumulative_work_months=11).total == D("0.00")


def test_daily_wage_rounded_to_the_cent_before_multiplying() -> None:
    result = leave(average_monthly_wage=D("10000"), last_day=date(2025, 12, 31))
    assert result.daily_wage == D("459.77")  # 459.770…
    assert result.total == D("4597.70")  # 5 × 459.77 × 2


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"cumulative_work_months": -1}, "cumulative_work_months"),
        ({"days_taken": D("-1")}, "days_taken"),
        ({"average_monthly_wage": D("-1")}, "average_monthly_wage"),
        ({"joined_this_year": date(2024, 12, 1)}, "joined_this_year"),
        ({"joined_this_year": date(2025, 7, 1)}, "joined_this_year"),
    ],
)
def test_leave_bad_input(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(SettlementError) as err:
        leave(**kwargs)
    assert err.value.field == field


@pytest.mark.parametrize(
    ("method", "expected"),
    [("attendance-21.75", "5057.47"), ("deduction-21.75", "4482.76"), ("workdays", "4782.61"),
     ("calendar", "4838.71")],
)
def test_final_pay_methods_on_the_brief_example(method: str, expected: str) -> None:
    result = final_month_pay(monthly_wage=D("10000"), last_day=date(2025, 7, 15), method=method)
    assert result.total == D(expected)
    assert result.to_json()["total"] == expected


def test_default_method_is_attendance() -> None:
    assert final_month_pay(monthly_wage=D("10000"), last_day=date(2025, 7, 15)).method == "attendance-21.75"


def test_attendance_counts_statutory_holidays_and_not_bridge_days() -> None:
    # 2025-10-01..10-10: working days 9, 10 (Thu, Fri); statutory 1, 2, 3, 6; 4, 5, 7, 8 are bridge rest days.
    assert count_days(date(2025, 10, 1), date(2025, 10, 10), "x") == (2, 4)
    result = final_month_pay(monthly_wage=D("21750"), last_day=date(2025, 10, 10))
    assert result.total == D("6000.00")


def test_make_up_workday_counts_as_a_working_day() -> None:
    # 2025-09-28 is a Sunday worked in lieu of the National Day holiday.
    assert count_days(date(2025, 9, 27), date(2025, 9, 28), "x") == (1, 0)


def test_attendance_is_capped_at_the_monthly_wage() -> None:
    result = final_month_pay(monthly_wage=D("10000"), last_day=date(2025, 7, 30))  # 22 working days
    assert result.total == D("10000.00")


@pytest.mark.parametrize("method", list(METHODS))
def test_whole_month_is_paid_in_full(method: str) -> None:
    # February 2024 has 18 working days + 3 statutory holidays = 21 < 21.75; a whole month is still the wage.
    assert final_month_pay(monthly_wage=D("8000"), last_day=date(2024, 2, 29), method=method).total == D("8000.00")


def test_joined_mid_month() -> None:
    result = final_month_pay(monthly_wage=D("10000"), last_day=date(2025, 7, 15), first_day=date(2025, 7, 14),
                             method="deduction-21.75")
    # Absent: 9 working days before the 14th and 12 after the 15th → 10,000 − 21 × 10,000 ÷ 21.75
    assert result.total == D("344.83")


def test_working_day_methods_need_a_calendar_year() -> None:
    with pytest.raises(SettlementError) as err:
        final_month_pay(monthly_wage=D("10000"), last_day=date(2030, 7, 15))
    assert err.value.field == "last_day" and "2030" in str(err.value)
    assert final_month_pay(monthly_wage=D("3100"), last_day=date(2030, 7, 15), method="calendar").total == D(
        "1500.00")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"method": "hours"}, "method"), ({"monthly_wage": D("-1")}, "monthly_wage"),
     ({"first_day": date(2025, 6, 30)}, "first_day"), ({"first_day": date(2025, 7, 16)}, "first_day")],
)
def test_final_pay_bad_input(kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"monthly_wage": D("10000"), "last_day": date(2025, 7, 15)}
    args.update(kwargs)
    with pytest.raises(SettlementError) as err:
        final_month_pay(**args)  # type: ignore[arg-type]
    assert err.value.field == field
