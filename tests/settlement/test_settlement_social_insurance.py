"""Social-insurance back-payment: clamp per month, round per item per month, straddle table changes."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest

from settlement.errors import SettlementError
from settlement.social_insurance import backpay
from settlement.tables import load_tables, parse_table


def inline_table(**overrides: Any) -> dict[str, Any]:
    table: dict[str, Any] = {
        "id": "test-city-2024",
        "city": "testcity",
        "city_zh": "测试市",
        "name": "测试市 2024 年度",
        "name_en": "Test City 2024",
        "effective_from": "2024-01",
        "effective_to": "2024-12",
        "source_url": "https://example.invalid/rates",
        "checked": "2026-11-21",
        "base_floor": "3000",
        "base_cap": "30000",
        "items": {
            "pension": {"employee_rate": "0.08", "employer_rate": "0.16"},
            "medical": {"employee_rate": "0.02", "employer_rate": "0.09"},
            "unemployment": {"employee_rate": "0.005", "employer_rate": "0.005"},
        },
    }
    table.update(overrides)
    return table


def test_s1_wage_inside_limits_gives_the_naive_result() -> None:
    result = backpay(["2024-03", "2024-04"], Decimal("5000"), tables=[parse_table(inline_table())])
    # 5000 × 2 × 10.5% holds only because 5000 lies inside 3,000–30,000 in both months.
    assert result.employee_total == Decimal("1050.00")
    assert [m.base for m in result.months] == [Decimal("5000"), Decimal("5000")]
    assert result.to_json()["employee_total"] == "1050.00"


def test_s2_beijing_clamps_to_the_floor_and_rounds_per_item() -> None:
    result = backpay(["2024-07", "2024-08"], Decimal("5000"), city="beijing")
    assert result.employee_total == Decimal("1438.42")
    month = result.months[0]
    assert month.base == Decimal("6821")
    by_item = {item.item: item.employee for item in month.items}
    assert by_item == {
        "pension": Decimal("545.68"),
        "medical": Decimal("139.42"),  # 136.42 + the 3 CNY levy
        "unemployment": Decimal("34.11"),  # 34.105 rounds half-up
        "injury": Decimal("0.00"),
    }
    assert month.employee == Decimal("719.21")
    # Rounding the total once instead of per item would give 1,438.41.
    naive = (Decimal("6821") * Decimal("0.105") * 2 + 6).quantize(Decimal("0.01"), ROUND_HALF_UP)
    assert naive == Decimal("1438.41") != result.employee_total
    assert result.employer_total == Decimal("3615.14")


def test_basis_line_in_the_documented_style() -> None:
    result = backpay(["2024-07", "2024-08"], Decimal("5000"), city="beijing")
    assert "月缴费基数 6,821.00（北京 2024 年度下限，申报工资 5,000.00 低于下限）× 个人养老 8% = 545.68" in result.basis
    assert any("34.105，四舍五入到分 34.11" in line for line in result.basis)
    assert len(result.basis) == len(result.basis_en)
    english = "Monthly base 6,821.00 (Beijing 2024 contribution year floor; declared wage 5,000.00 is below it)"
    assert any(line.startswith(english) for line in result.basis_en)
    assert any("第八十六条" in line for line in result.basis)


def test_float_trap_single_item_at_10_5_percent() -> None:
    assert round(6821 * 0.105, 2) == 716.2  # the bug this module exists to avoid
    table = inline_table(items={"pension": {"employee_rate": "0.105", "employer_rate": "0"}})
    result = backpay(["2024-05"], Decimal("6821"), tables=[parse_table(table)])
    assert result.employee_total == Decimal("716.21")


def test_months_straddling_a_table_change_use_each_months_table() -> None:
    result = backpay(["2025-07", "2025-06"], Decimal("5000"), city="shanghai")
    assert [(m.month, m.table_id, m.base) for m in result.months] == [
        ("2025-06", "shanghai-2024", Decimal("7384")),
        ("2025-07", "shanghai-2025", Decimal("7460")),
    ]
    # 7384 × (8% + 2% + 0.5%) = 775.32; 7460 × 10.5% = 783.30
    assert [m.employee for m in result.months] == [Decimal("775.32"), Decimal("783.30")]
    assert result.employee_total == Decimal("1558.62")
    assert sum(1 for line in result.basis if "适用上海" in line) == 2


def test_wage_above_cap_is_clamped_to_the_cap() -> None:
    result = backpay(["2024-09"], Decimal("50000"), city="beijing")
    assert result.months[0].base == Decimal("35283")
    assert result.employee_total == Decimal("2822.64") + Decimal("705.66") + 3 + Decimal("176.42")
    assert any("高于上限" in line for line in result.basis)


def test_per_item_limits_and_rounding_modes() -> None:
    table = inline_table(
        rounding={"mode": "up", "unit": "0.1"},
        items={
            "pension": {"employee_rate": "0.08", "employer_rate": "0.16", "base_floor": "5284", "base_cap": "26421"},
            "housing_fund": {"employee_rate": "0.05", "employer_rate": "0.05",
                             "rounding": {"mode": "half_up", "unit": "1"}},
        },
    )
    result = backpay(["2024-01"], Decimal("4321.50"), tables=[parse_table(table)])
    items = {item.item: item for item in result.months[0].items}
    assert items["pension"].base == Decimal("5284")
    assert items["pension"].employee == Decimal("422.8")  # 422.72 rounds up to the jiao (见分进角)
    assert items["housing_fund"].base == Decimal("4321.50")
    assert items["housing_fund"].employee == Decimal("216")  # 216.075 rounds to the yuan
    assert any("见分进角" in line for line in result.basis)


def test_injury_rate_override_changes_the_employer_share_only() -> None:
    default = backpay(["2024-07"], Decimal("10000"), city="beijing")
    heavier = backpay(["2024-07"], Decimal("10000"), city="beijing", injury_rate=Decimal("0.019"))
    assert heavier.employee_total == default.employee_total
    assert heavier.employer_total - default.employer_total == Decimal("190.00") - Decimal("20.00")
    assert any("工伤费率按输入 1.9%" in line for line in heavier.basis)


def test_default_tables_need_a_city_when_several_exist() -> None:
    with pytest.raises(SettlementError) as err:
        backpay(["2024-07"], Decimal("5000"), tables=load_tables())
    assert err.value.field == "city"


@pytest.mark.parametrize(
    ("months", "wage", "field"),
    [
        ([], Decimal("5000"), "months"),
        (["2024-7"], Decimal("5000"), "months[0]"),
        (["2024-07", "2024-07"], Decimal("5000"), "months[1]"),
        (["2024-07"], Decimal("-1"), "wage"),
        (["2024-07"], Decimal("0"), "wage"),
        (["2023-06"], Decimal("5000"), "months"),  # before the first Beijing table
    ],
)
def test_bad_input_names_the_field(months: list[str], wage: Decimal, field: str) -> None:
    with pytest.raises(SettlementError) as err:
        backpay(months, wage, city="beijing")
    assert err.value.field == field


def test_bad_injury_rate() -> None:
    with pytest.raises(SettlementError) as err:
        backpay(["2024-07"], Decimal("5000"), city="beijing", injury_rate=Decimal("1.9"))
    assert err.value.field == "injury_rate"
