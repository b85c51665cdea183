"""Rate tables: bundled files load and validate; company folders add or replace; bad files are named."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from settlement.errors import SettlementError
from settlement.social_insurance import backpay
from settlement.tables import BUNDLED_DIR, load_tables

BEIJING = (BUNDLED_DIR / "beijing-2024.toml").read_text(encoding="utf-8")


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def test_bundled_tables_load_with_exact_decimals() -> None:
    tables = load_tables()
    assert tables.cities() == ["beijing", "shanghai"]
    assert sorted(t.id for t in tables.tables) == ["beijing-2023", "beijing-2024", "beijing-2025", "shanghai-2023",
                                                   "shanghai-2024", "shanghai-2025"]
    beijing = tables.get("beijing-2024")
    assert beijing.base_floor == Decimal("6821")
    assert beijing.base_cap == Decimal("35283")
    # parse_float=Decimal: 0.098 must be exactly 98/1000, not the nearest binary float.
    assert beijing.items["medical"].employer_rate == Decimal("0.098")
    assert beijing.items["medical"].employee_fixed == Decimal("3")
    assert beijing.path is not None and beijing.path.endswith("beijing-2024.toml")


def test_lookup_picks_the_table_in_force_and_accepts_the_chinese_name() -> None:
    tables = load_tables()
    assert tables.lookup("2025-06", "上海").id == "shanghai-2024"
    assert tables.lookup("2025-07", "Shanghai").id == "shanghai-2025"
    with pytest.raises(SettlementError) as err:
        tables.lookup("2026-07", "beijing")
    assert err.value.field == "months" and "2026-07" in str(err.value)
    with pytest.raises(SettlementError) as err:
        tables.lookup("2025-01", "guangzhou")
    assert err.value.field == "city" and "beijing, shanghai" in str(err.value)


def test_company_table_with_same_id_replaces_bundled(tmp_path: Path) -> None:
    write(tmp_path, "bj.toml", BEIJING.replace("base_floor = 6821", "base_floor = 7000"))
    tables = load_tables(tmp_path)
    assert tables.get("beijing-2024").base_floor == Decimal("7000")
    assert [t.id for t in tables.tables if t.city == "beijing"].count("beijing-2024") == 1


def test_company_table_with_new_id_adds_a_period(tmp_path: Path) -> None:
    text = (BEIJING.replace('id = "beijing-2024"', 'id = "beijing-2026"')
            .replace('effective_from = "2024-07"', 'effective_from = "2026-07"')
            .replace('effective_to = "2025-06"', 'effective_to = "2027-06"')
            .replace("base_floor = 6821", "base_floor = 7270"))
    write(tmp_path, "bj2026.toml", text)
    tables = load_tables(tmp_path)
    assert tables.lookup("2026-07", "beijing").base_floor == Decimal("7270")
    assert tables.lookup("2026-06", "beijing").base_floor == Decimal("7162")


@pytest.mark.parametrize(
    ("old", "new", "field", "words"),
    [
        ("employee_rate = 0.08", "employee_rate = 8", "items.pension.employee_rate", "less than 1"),
        ("[items.injury]\n", "[items.injury]\nemployee_rate = 0.001\n", "items", "SIL Art. 33"),
        ("[items.pension]", "[items.pensions]", "items", "unknown item"),
        ("base_floor = 6821", "base_floor = 40000", "base_cap", "below base_floor"),
        ('effective_to = "2025-06"', 'effective_to = "2025-13"', "effective_to", "YYYY-MM"),
        ('effective_to = "2025-06"', 'effective_to = "2024-01"', "effective_to", "before effective_from"),
        ("base_cap = 35283", "base_cap = 35283\nbase_kap = 1", "base_kap", "Extra inputs"),
        ('source_url = "https', 'source_url = "ftp', "source_url", "pattern"),
    ],
)
def test_invalid_file_names_file_and_field(
    tmp_path: Path, old: str, new: str, field: str, words: str
) -> None:
    assert old in BEIJING
    path = write(tmp_path, "bad.toml", BEIJING.replace(old, new, 1))
    with pytest.raises(SettlementError) as err:
        load_tables(tmp_path)
    assert err.value.source == str(path)
    assert err.value.field == field
    assert words in str(err.value)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "broken.toml", "id = \n")
    with pytest.raises(SettlementError) as err:
        load_tables(tmp_path)
    assert err.value.source == str(path) and err.value.field == "toml"


def test_overlapping_tables_of_one_city_are_refused(tmp_path: Path) -> None:
    text = BEIJING.replace('id = "beijing-2024"', 'id = "beijing-company"').replace(
        'effective_from = "2024-07"', 'effective_from = "2025-01"').replace(
        'effective_to = "2025-06"', 'effective_to = "2025-12"')
    path = write(tmp_path, "overlap.toml", text)
    with pytest.raises(SettlementError) as err:
        load_tables(tmp_path)
    assert err.value.field == "effective_from"
    assert "beijing-2024" in str(err.value) and str(path) in str(err.value)


def test_missing_company_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SettlementError) as err:
        load_tables(tmp_path / "nope")
    assert err.value.field == "tables_dir"


# ---- the tables added for issue 14 (Beijing 2023 and 2025, Shanghai 2023): one worked figure each, by hand.

def test_beijing_2023_worked_figure() -> None:
    # Wage 5,000 is below the 2023 floor, so the base is 6,326 (not 5,000):
    #   pension 6,326 × 8% = 506.08; medical 6,326 × 2% = 126.52 + 3.00 levy = 129.52;
    #   unemployment 6,326 × 0.5% = 31.63  → employee 667.23 a month.
    #   employer 6,326 × 16% = 1,012.16; × 9.8% = 619.948 → 619.95; × 0.5% = 31.63; × 0.2% = 12.652 → 12.65
    #   → 1,676.39.
    result = backpay(["2023-09"], Decimal("5000"), city="北京")
    assert [m.table_id for m in result.months] == ["beijing-2023"]
    assert result.employee_total == Decimal("667.23")
    assert result.employer_total == Decimal("1676.39")
    assert any("6,326.00" in line for line in result.basis), result.basis


def test_beijing_2023_and_2024_across_1_july() -> None:
    # 2024-06 uses the 2023 table (667.23 above), 2024-07 the 2024 table (base 6,821:
    # 545.68 + 136.42 + 3.00 + 34.105 → 34.11 = 719.21): 667.23 + 719.21 = 1,386.44.
    result = backpay(["2024-06", "2024-07"], Decimal("5000"), city="beijing")
    assert [m.table_id for m in result.months] == ["beijing-2023", "beijing-2024"]
    assert result.employee_total == Decimal("1386.44")


def test_beijing_2025_worked_figure() -> None:
    # Wage 40,000 is above the 2025 cap, so the base is 35,811:
    #   pension 35,811 × 8% = 2,864.88; medical 35,811 × 2% = 716.22 + 3.00 = 719.22;
    #   unemployment 35,811 × 0.5% = 179.055 → 179.06 (HALF_UP)  → 3,763.16.
    result = backpay(["2025-10"], Decimal("40000"), city="beijing")
    assert [m.table_id for m in result.months] == ["beijing-2025"]
    assert result.employee_total == Decimal("3763.16")


def test_shanghai_2023_worked_figure() -> None:
    # Wage 5,000 → floor 7,310: pension 584.80 + medical 146.20 + unemployment 36.55 = 767.55 a month,
    # two months (July 2023 and June 2024, both ends of the period) = 1,535.10.
    # Employer: 1,169.60 + 731.00 (10%) + 36.55 + 11.696 → 11.70 = 1,948.85 a month → 3,897.70.
    result = backpay(["2023-07", "2024-06"], Decimal("5000"), city="shanghai")
    assert {m.table_id for m in result.months} == {"shanghai-2023"}
    assert result.employee_total == Decimal("1535.10")
    assert result.employer_total == Decimal("3897.70")


@pytest.mark.parametrize("table_id", ["beijing-2023", "beijing-2025", "shanghai-2023"])
def test_new_tables_name_their_source_and_confidence(table_id: str) -> None:
    table = load_tables().get(table_id)
    assert table.source_url.startswith("https://")
    assert table.confidence.startswith("[2+]")
    text = Path(table.path or "").read_text(encoding="utf-8")
    assert "Confidence" in text or "confidence" in text
    if table_id == "beijing-2025":
        # Beijing published 2025 late: the file must say its months are unverified.
        assert "unverified" in table.confidence and "UNVERIFIED" in text
