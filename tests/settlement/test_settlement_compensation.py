"""Economic compensation: N by Art. 47, the caps, the floor, the grounds, +1, 2N and the 2008 split."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from settlement.compensation import GROUNDS, Service, compensation
from settlement.errors import SettlementError

D = Decimal


def n(hire: date, last: date, ground: str = "36-employer", wage: str = "10000", **kw: object):  # type: ignore[no-untyped-def]
    return compensation(hire_date=hire, last_day=last, ground=ground, average_monthly_wage=D(wage), **kw)


def test_e1_three_years_two_months_is_3_5() -> None:
    result = n(date(2022, 5, 1), date(2025, 6, 30))
    assert (result.months, result.total) == (D("3.5"), D("35000.00"))
    assert result.to_json()["months"] == "3.5"
    assert result.to_json()["extra_month"] == "0.00"


def test_e2_exactly_six_months_counts_as_a_year() -> None:
    result = n(date(2025, 1, 1), date(2025, 6, 30), ground="38", wage="8000")
    assert (result.months, result.total) == (D("1"), D("8000.00"))
    assert any("余数满六个月，按一年计" in line for line in result.basis)


def test_e3_five_months_29_days_is_half_a_month() -> None:
    result = n(date(2025, 1, 1), date(2025, 6, 29), ground="38", wage="8000")
    assert (result.months, result.total) == (D("0.5"), D("4000.00"))


def test_service_counts_both_days_and_clamps_month_ends() -> None:
    assert (Service.between(date(2025, 1, 31), date(2025, 2, 27)).months,
            Service.between(date(2025, 1, 31), date(2025, 2, 27)).days) == (1, 0)
    one_day = Service.between(date(2025, 3, 3), date(2025, 3, 3))
    assert (one_day.months, one_day.days) == (0, 1)
    assert n(date(2025, 3, 3), date(2025, 3, 3)).months == D("0.5")
    assert Service.between(date(2020, 2, 29), date(2021, 2, 27)).months == 12


def test_three_times_cap_also_caps_years_at_twelve() -> None:
    result = n(date(2008, 3, 1), date(2025, 6, 30), wage="50000", city_avg_monthly_wage=D("11937"))
    assert result.monthly_base == D("35811")
    assert result.months == D("12")  # 17 years 4 months would be 17.5
    assert result.total == D("429732.00")
    assert any("三倍" in line and "12 年" in line for line in result.basis)


def test_cap_below_twelve_years_keeps_the_years() -> None:
    result = n(date(2020, 1, 1), date(2025, 6, 30), wage="50000", city_avg_monthly_wage=D("11937"))
    assert (result.months, result.total) == (D("6"), D("214866.00"))  # 5y6m: six months count as a year


def test_wage_at_exactly_three_times_is_not_capped() -> None:
    result = n(date(2008, 1, 1), date(2025, 12, 31), wage="35811", city_avg_monthly_wage=D("11937"))
    assert result.months == D("18") and result.total == D("644598.00")


def test_minimum_wage_floor() -> None:
    result = compensation(hire_date=date(2023, 1, 1), last_day=date(2024, 12, 31), ground="40", notice_given=True,
                          monthly_wages=[D("2000")] * 12, min_monthly_wage=D("2420"))
    assert (result.monthly_base, result.total) == (D("2420"), D("4840.00"))
    assert any("低于当地最低工资标准 2,420.00" in line for line in result.basis)


def test_average_over_the_last_twelve_months_only() -> None:
    wages = [D("1")] * 3 + [D("10000")] * 11 + [D("12000")]
    result = compensation(hire_date=date(2022, 1, 1), last_day=date(2024, 12, 31), ground="41", monthly_wages=wages)
    assert result.monthly_base == D("10166.67")  # 122,000 ÷ 12, half-up
    assert result.total == D("30500.01")


def test_short_service_averages_the_months_worked() -> None:
    result = compensation(hire_date=date(2025, 1, 1), last_day=date(2025, 3, 31), ground="38",
                          monthly_wages=[D("9000"), D("9000"), D("12000")])
    assert (result.monthly_base, result.total) == (D("10000.00"), D("5000.00"))


@pytest.mark.parametrize("ground", ["39", "37", "36-employee", "44-expiry-renewal-refused"])
def test_grounds_that_owe_nothing(ground: str) -> None:
    result = n(date(2020, 1, 1), date(2025, 6, 30), ground=ground, notice_given=False, previous_month_wage=D("9"))
    assert result.total == D("0") and result.months == D("0") and result.extra_month == D("0")
    assert result.to_json()["total"] == "0.00"
    assert any("不支付经济补偿" in line for line in result.basis)


@pytest.mark.parametrize("ground", ["36-employer", "38", "41", "44-expiry", "44-dissolution"])
def test_grounds_that_owe_n(ground: str) -> None:
    assert n(date(2020, 1, 1), date(2025, 6, 30), ground=ground).total == D("60000.00")


def test_art40_without_notice_adds_previous_month_wage_uncapped() -> None:
    result = n(date(2020, 1, 1), date(2025, 6, 30), ground="40", wage="50000", notice_given=False,
               previous_month_wage=D("52000"), city_avg_monthly_wage=D("11937"))
    assert result.extra_month == D("52000.00")  # not capped at 35,811
    assert result.total == 6 * D("35811") + D("52000")
    assert any("第二十条" in line for line in result.basis)


def test_art40_with_notice_has_no_extra_month() -> None:
    result = n(date(2020, 1, 1), date(2025, 6, 30), ground="40", notice_given=True)
    assert (result.extra_month, result.total) == (D("0"), D("60000.00"))


def test_plus_one_only_for_art40() -> None:
    result = n(date(2020, 1, 1), date(2025, 6, 30), ground="36-employer", notice_given=False,
               previous_month_wage=D("10000"))
    assert result.extra_month == D("0") and result.total == D("60000.00")
    assert any("仅适用于第四十条" in line for line in result.basis)


def test_art40_requires_the_notice_answer_and_a_previous_wage() -> None:
    with pytest.raises(SettlementError) as err:
        n(date(2020, 1, 1), date(2025, 6, 30), ground="40")
    assert err.value.field == "notice_given"
    with pytest.raises(SettlementError) as err:
        n(date(2020, 1, 1), date(2025, 6, 30), ground="40", notice_given=False)
    assert err.value.field == "previous_month_wage"
    from_list = compensation(hire_date=date(2024, 1, 1), last_day=date(2024, 12, 31), ground="40",
                             notice_given=False, monthly_wages=[D("8000")] * 11 + [D("9000")])
    assert from_list.extra_month == D("9000.00")


def test_unlawful_is_twice_the_standard_from_the_first_day() -> None:
    result = n(date(2005, 3, 1), date(2025, 6, 30), ground="unlawful", wage="10000")
    assert result.multiplier == 2
    assert result.months == D("20.5")  # no 2008 split (Impl. Regs Art. 25)
    assert result.total == D("410000.00")
    assert len(result.segments) == 1 and result.segments[0].start == date(2005, 3, 1)


def test_unlawful_keeps_the_caps() -> None:
    result = n(date(2005, 3, 1), date(2025, 6, 30), ground="unlawful", wage="50000",
               city_avg_monthly_wage=D("11937"))
    assert result.total == 2 * 12 * D("35811")


def test_pre2008_service_needs_an_hr_choice() -> None:
    with pytest.raises(SettlementError) as err:
        n(date(2005, 3, 1), date(2025, 6, 30), ground="36-employer")
    assert err.value.field == "pre2008_rule"


def test_pre2008_mutual_termination_under_decree_481_art5() -> None:
    result = n(date(2005, 3, 1), date(2025, 6, 30), ground="36-employer", pre2008_rule="481-art5")
    pre, post = result.segments
    assert (pre.start, pre.end, pre.months) == (date(2005, 3, 1), date(2007, 12, 31), D("3"))  # 2y10m → 3
    assert (post.start, post.months) == (date(2008, 1, 1), D("18"))
    assert result.total == D("210000.00")
    assert any("481号第五条" in line and "不满一年按一年计" in line for line in result.basis)
    assert any("Decree 481 Art. 5" in line for line in result.basis_en)


def test_pre2008_art5_is_capped_at_twelve_months() -> None:
    result = n(date(1990, 1, 1), date(2008, 6, 30), ground="36-employer", pre2008_rule="481-art5")
    assert result.segments[0].months == D("12")
    assert result.segments[1].months == D("1")


def test_pre2008_art8_has_no_cap_and_drops_part_years_by_default() -> None:
    result = n(date(1990, 3, 1), date(2008, 6, 30), ground="40", notice_given=True, pre2008_rule="481-art8",
               wage="5000", enterprise_avg_monthly_wage=D("6000"))
    assert result.segments[0].months == D("17")  # 17y10m: part year dropped, no 12-month cap
    assert result.segments[0].monthly_base == D("6000")  # enterprise-average floor, Decree 481 Art. 11
    again = n(date(1990, 3, 1), date(2008, 6, 30), ground="40", notice_given=True, pre2008_rule="481-art8",
              pre2008_partial_year="full_year")
    assert again.segments[0].months == D("18")


def test_pre2008_expiry_counts_only_from_2008() -> None:
    result = n(date(2005, 3, 1), date(2025, 6, 30), ground="44-expiry")
    assert [s.rule for s in result.segments] == ["lcl-art47"]
    assert result.months == D("18")
    assert any("期满终止在 2008 年前无经济补偿" in line for line in result.basis)
    with pytest.raises(SettlementError) as err:
        n(date(2005, 3, 1), date(2025, 6, 30), ground="44-expiry", pre2008_rule="481-art5")
    assert err.value.field == "pre2008_rule"


def test_pre2008_company_may_count_everything_under_art47() -> None:
    result = n(date(2005, 3, 1), date(2025, 6, 30), ground="36-employer", pre2008_rule="lcl-from-hire")
    assert result.months == D("20.5")
    assert any("公司选择" in line for line in result.basis)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"ground": "42"}, "ground"),
        ({"last_day": date(2019, 12, 31)}, "last_day"),
        ({"average_monthly_wage": D("-1")}, "average_monthly_wage"),
        ({"average_monthly_wage": None}, "monthly_wages"),
        ({"monthly_wages": [D("1")]}, "average_monthly_wage"),
        ({"average_monthly_wage": None, "monthly_wages": [D("1"), D("-2")]}, "monthly_wages[1]"),
        ({"city_avg_monthly_wage": D("0")}, "city_avg_monthly_wage"),
        ({"pre2008_rule": "old"}, "pre2008_rule"),
    ],
)
def test_bad_input_names_the_field(kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"hire_date": date(2020, 1, 1), "last_day": date(2025, 6, 30), "ground": "38",
                               "average_monthly_wage": D("8000")}
    args.update(kwargs)
    with pytest.raises(SettlementError) as err:
        compensation(**args)  # type: ignore[arg-type]
    assert err.value.field == field


def test_every_ground_has_bilingual_basis() -> None:
    for ground in GROUNDS:
        result = n(date(2010, 1, 1), date(2025, 6, 30), ground=ground, notice_given=True)
        assert len(result.basis) == len(result.basis_en) >= 3
