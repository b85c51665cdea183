"""Property tests: monotonic in wage and in service length, caps never exceeded, rounding per item."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from settlement.annual_leave import annual_leave_payout
from settlement.compensation import compensation
from settlement.final_pay import final_month_pay
from settlement.social_insurance import backpay
from settlement.tables import load_tables

TABLES = load_tables()
CITY_AVG = Decimal("11937")
CAP = CITY_AVG * 3

wages = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("200000"), places=2)
months_in_tables = st.sampled_from(
    [f"{y}-{m:02d}" for y, m in [(2024, 7), (2024, 8), (2024, 12), (2025, 1), (2025, 6), (2025, 7), (2026, 6)]]
)
hire_dates = st.dates(min_value=date(2008, 1, 1), max_value=date(2024, 12, 31))
days = st.integers(min_value=0, max_value=8000)


@settings(max_examples=150, deadline=None)
@given(wage_a=wages, wage_b=wages, months=st.lists(months_in_tables, min_size=1, max_size=4, unique=True))
def test_backpay_is_monotonic_in_wage(wage_a: Decimal, wage_b: Decimal, months: list[str]) -> None:
    low, high = sorted((wage_a, wage_b))
    a = backpay(months, low, city="shanghai")
    b = backpay(months, high, city="shanghai")
    assert a.employee_total <= b.employee_total
    assert a.employer_total <= b.employer_total


@settings(max_examples=150, deadline=None)
@given(wage=wages, month=st.sampled_from(["2024-07", "2025-03", "2025-06"]))
def test_backpay_bases_stay_within_limits_and_items_round_half_up(wage: Decimal, month: str) -> None:
    result = backpay([month], wage, city="beijing")
    table = TABLES.lookup(month, "beijing")
    capped = backpay([month], table.base_cap, city="beijing")
    for item in result.months[0].items:
        floor, cap = table.limits(item.item)
        assert floor <= item.base <= cap
        # An independent exact computation with Fraction, rounded half-up to the cent.
        exact = Fraction(item.base) * Fraction(item.employee_rate)
        expected = Decimal(exact.numerator) / Decimal(exact.denominator)
        assert item.employee == expected.quantize(Decimal("0.01"), ROUND_HALF_UP) + item.employee_fixed
    assert result.employee_total <= capped.employee_total
    assert result.employee_total == sum(item.employee for item in result.months[0].items)


@settings(max_examples=200, deadline=None)
@given(hire=hire_dates, span=st.integers(min_value=0, max_value=4300), wage_a=wages, wage_b=wages)
def test_compensation_is_monotonic_in_wage_up_to_twelve_years(
    hire: date, span: int, wage_a: Decimal, wage_b: Decimal
) -> None:
    # Within 12 years the 3× cap only lowers the wage, so more pay never means less compensation.
    # (Beyond 12 years the law itself is discontinuous at 3×: see the test below.)
    low, high = sorted((wage_a, wage_b))
    last = hire + timedelta(days=span)
    a = compensation(hire_date=hire, last_day=last, ground="36-employer", average_monthly_wage=low,
                     city_avg_monthly_wage=CITY_AVG)
    b = compensation(hire_date=hire, last_day=last, ground="36-employer", average_monthly_wage=high,
                     city_avg_monthly_wage=CITY_AVG)
    assert a.total <= b.total


@settings(max_examples=200, deadline=None)
@given(hire=hire_dates, span_a=days, span_b=days, wage=wages, ground=st.sampled_from(["38", "41", "unlawful"]))
def test_compensation_is_monotonic_in_service_length(
    hire: date, span_a: int, span_b: int, wage: Decimal, ground: str
) -> None:
    short, long = sorted((span_a, span_b))
    kw = {"hire_date": hire, "ground": ground, "average_monthly_wage": wage, "city_avg_monthly_wage": CITY_AVG}
    a = compensation(last_day=hire + timedelta(days=short), **kw)  # type: ignore[arg-type]
    b = compensation(last_day=hire + timedelta(days=long), **kw)  # type: ignore[arg-type]
    assert a.months <= b.months and a.total <= b.total


@settings(max_examples=200, deadline=None)
@given(hire=hire_dates, span=days, wage=wages, ground=st.sampled_from(["36-employer", "44-expiry", "unlawful"]))
def test_compensation_caps_are_never_exceeded(hire: date, span: int, wage: Decimal, ground: str) -> None:
    last = hire + timedelta(days=span)
    result = compensation(hire_date=hire, last_day=last, ground=ground, average_monthly_wage=wage,
                          city_avg_monthly_wage=CITY_AVG)
    assert result.monthly_base <= CAP
    assert result.months * 2 == int(result.months * 2)  # whole or half months only
    full_years = (last - hire).days // 365 + 1
    assert result.months <= full_years
    if wage > CAP:
        assert result.months <= 12
        assert result.total <= result.multiplier * 12 * CAP
    standard = (result.months * result.monthly_base).quantize(Decimal("0.01"), ROUND_HALF_UP)
    assert result.total == result.multiplier * standard


def test_the_law_is_discontinuous_at_three_times_beyond_twelve_years() -> None:
    kw = {"hire_date": date(2008, 1, 1), "last_day": date(2025, 12, 31), "ground": "38",
          "city_avg_monthly_wage": CITY_AVG}
    at_cap = compensation(average_monthly_wage=CAP, **kw)  # type: ignore[arg-type]
    above = compensation(average_monthly_wage=CAP + Decimal("0.01"), **kw)  # type: ignore[arg-type]
    assert (at_cap.months, above.months) == (Decimal(18), Decimal(12))
    assert above.total < at_cap.total


@settings(max_examples=150, deadline=None)
@given(day_a=st.integers(0, 364), day_b=st.integers(0, 364), months=st.integers(0, 600),
       taken=st.decimals(min_value=0, max_value=20, places=1), wage=wages)
def test_leave_days_grow_with_the_year_and_never_exceed_the_entitlement(
    day_a: int, day_b: int, months: int, taken: Decimal, wage: Decimal
) -> None:
    early, late = sorted((day_a, day_b))
    kw = {"cumulative_work_months": months, "average_monthly_wage": wage, "days_taken": taken}
    a = annual_leave_payout(last_day=date(2025, 1, 1) + timedelta(days=early), **kw)  # type: ignore[arg-type]
    b = annual_leave_payout(last_day=date(2025, 1, 1) + timedelta(days=late), **kw)  # type: ignore[arg-type]
    assert 0 <= a.days <= b.days <= b.entitlement
    assert a.total <= b.total
    assert b.total == b.days * b.daily_wage * 2


@settings(max_examples=100, deadline=None)
@given(day_a=st.integers(1, 31), day_b=st.integers(1, 31), wage=wages,
       method=st.sampled_from(["attendance-21.75", "deduction-21.75", "workdays", "calendar"]))
def test_final_pay_grows_with_the_last_day_and_stays_within_the_wage(
    day_a: int, day_b: int, wage: Decimal, method: str
) -> None:
    early, late = sorted((day_a, day_b))
    a = final_month_pay(monthly_wage=wage, last_day=date(2025, 10, early), method=method)
    b = final_month_pay(monthly_wage=wage, last_day=date(2025, 10, late), method=method)
    assert Decimal(0) <= a.total <= b.total <= wage
