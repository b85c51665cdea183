"""Rate tables: bundled files load and validate; company folders add or replace; bad files are named."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from settlement.errors import SettlementError
from settlement.tables import BUNDLED_DIR, load_tables

BEIJING = (BUNDLED_DIR / "beijing-2024.toml").read_text(encoding="utf-8")


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def test_bundled_tables_load_with_exact_decimals() -> None:
    tables = load_tables()
    assert tables.cities() == ["beijing", "shanghai"]
    assert sorted(t.id for t in tables.tables) == ["beijing-2024", "shanghai-2024", "shanghai-2025"]
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
        tables.lookup("2025-07", "beijing")
    assert err.value.field == "months" and "2025-07" in str(err.value)
    with pytest.raises(SettlementError) as err:
        tables.lookup("2025-01", "guangzhou")
    assert err.value.field == "city" and "beijing, shanghai" in str(err.value)


def test_company_table_with_same_id_replaces_bundled(tmp_path: Path) -> None:
    write(tmp_path, "bj.toml", BEIJING.replace("base_floor = 6821", "base_floor = 7000"))
    tables = load_tables(tmp_path)
    assert tables.get("beijing-2024").base_floor == Decimal("7000")
    assert len([t for t in tables.tables if t.city == "beijing"]) == 1


def test_company_table_with_new_id_adds_a_period(tmp_path: Path) -> None:
    text = (BEIJING.replace('id = "beijing-2024"', 'id = "beijing-2025"')
            .replace('effective_from = "2024-07"', 'effective_from = "2025-07"')
            .replace('effective_to = "2025-06"', 'effective_to = "2026-06"')
            .replace("base_floor = 6821", "base_floor = 7162"))
    write(tmp_path, "bj2025.toml", text)
    tables = load_tables(tmp_path)
    assert tables.lookup("2025-07", "beijing").base_floor == Decimal("7162")
    assert tables.lookup("2025-06", "beijing").base_floor == Decimal("6821")


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
