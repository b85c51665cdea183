"""`python -m bot calc …` as a subprocess: JSON in, JSON out, exit 2 with one line naming the field."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from settlement.tables import BUNDLED_DIR

ROOT = Path(__file__).resolve().parents[2]


def run(kind: str, payload: Any, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    full_env = {k: v for k, v in os.environ.items() if k != "RATE_TABLES_DIR"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bot", "calc", kind, *args],
        input=text, capture_output=True, text=True, cwd=ROOT, env=full_env, timeout=60,
    )


def ok(kind: str, payload: Any, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    proc = run(kind, payload, *args, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 1
    return json.loads(proc.stdout)


def test_social_insurance_s2_by_city() -> None:
    out = ok("social-insurance", {"months": ["2024-07", "2024-08"], "wage": "5000", "city": "beijing"})
    assert out["employee_total"] == "1438.42"
    assert out["employer_total"] == "3615.14"
    first = out["months"][0]
    assert (first["month"], first["base"], first["employee"]) == ("2024-07", "6821.00", "719.21")
    assert first["items"]["unemployment"]["employee"] == "34.11"
    assert any("月缴费基数 6,821.00（北京 2024 年度下限" in line for line in out["basis"])
    assert len(out["basis"]) == len(out["basis_en"])


def test_social_insurance_inline_table_and_json_floats_stay_exact() -> None:
    table = {
        "id": "inline", "city": "testcity", "city_zh": "测试市", "name": "测试", "name_en": "Test",
        "effective_from": "2024-01", "effective_to": "2024-12", "source_url": "https://example.invalid/x",
        "checked": "2026-11-21", "base_floor": 3000, "base_cap": 30000,
        "items": {"pension": {"employee_rate": 0.105, "employer_rate": 0}},
    }
    # Raw JSON numbers: parsed from their text, so 6821 × 0.105 = 716.205 → 716.21, not float's 716.2.
    out = ok("social-insurance", {"months": ["2024-02"], "wage": 6821.0, "tables": [table]})
    assert out["employee_total"] == "716.21"


def test_compensation_e1() -> None:
    out = ok("compensation", {"hire_date": "2022-05-01", "last_day": "2025-06-30", "ground": "36-employer",
                              "average_monthly_wage": "10000"})
    assert (out["total"], out["months"], out["monthly_base"], out["extra_month"]) == (
        "35000.00", "3.5", "10000.00", "0.00")


def test_compensation_art40_without_notice() -> None:
    out = ok("compensation", {"hire_date": "2024-01-01", "last_day": "2024-12-31", "ground": "40",
                              "monthly_wages": [8000] * 12, "notice_given": False, "previous_month_wage": 8500})
    assert (out["total"], out["extra_month"]) == ("16500.00", "8500.00")


def test_annual_leave_a1() -> None:
    out = ok("annual-leave", {"cumulative_work_months": 96, "last_day": "2025-06-30",
                              "average_monthly_wage": "10875", "days_taken": 0})
    assert (out["total"], out["days"], out["daily_wage"]) == ("2000.00", "2", "500.00")


def test_final_pay() -> None:
    out = ok("final-pay", {"monthly_wage": "10000", "last_day": "2025-07-15", "method": "attendance-21.75"})
    assert out["total"] == "5057.47" and out["basis"] and out["basis_en"]


@pytest.mark.parametrize(
    ("kind", "payload", "field"),
    [
        ("social-insurance", {"months": ["2024-07"], "city": "beijing"}, "wage"),
        ("social-insurance", {"months": ["2024-07"], "wage": "-5000", "city": "beijing"}, "wage"),
        ("social-insurance", {"months": ["2024-07"], "wage": "5000", "city": "atlantis"}, "city"),
        ("social-insurance", {"months": ["2019-07"], "wage": "5000", "city": "beijing"}, "months"),
        ("social-insurance", {"months": ["2024-07"], "wage": "5,000", "city": "beijing"}, "wage"),
        ("social-insurance", {"months": ["2024-07"], "wage": "5000.001", "city": "beijing"}, "wage"),
        ("social-insurance", {"months": ["2024-07"], "wage": 5000, "city": "beijing", "wages": 1}, "wages"),
        ("compensation", {"hire_date": "2025-01-01", "last_day": "2024-06-30", "ground": "38",
                          "average_monthly_wage": "8000"}, "last_day"),
        ("compensation", {"hire_date": "2025-01-01", "last_day": "2025-06-30", "ground": "resigned",
                          "average_monthly_wage": "8000"}, "ground"),
        ("compensation", {"hire_date": "2025-01-01", "last_day": "2025-06-30", "ground": "38",
                          "average_monthly_wage": "8000", "notice_given": "no"}, "notice_given"),
        ("annual-leave", {"cumulative_work_months": 96, "last_day": "2025-06-31",
                          "average_monthly_wage": "1"}, "last_day"),
        ("final-pay", {"monthly_wage": True, "last_day": "2025-07-15"}, "monthly_wage"),
        ("final-pay", '{"monthly_wage": NaN, "last_day": "2025-07-15"}', "input"),
        ("final-pay", "[1, 2]", "input"),
        ("final-pay", '{"monthly_wage": ', "input"),
    ],
)
def test_bad_input_exits_2_with_one_line_naming_the_field(kind: str, payload: Any, field: str) -> None:
    proc = run(kind, payload)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"{field}:" in lines[0]


def company_tables(tmp_path: Path, floor: str) -> Path:
    text = (BUNDLED_DIR / "beijing-2024.toml").read_text(encoding="utf-8")
    (tmp_path / "bj.toml").write_text(text.replace("base_floor = 6821", f"base_floor = {floor}"), encoding="utf-8")
    return tmp_path


def test_tables_dir_option_and_env_var(tmp_path: Path) -> None:
    directory = str(company_tables(tmp_path, "5000"))
    payload = {"months": ["2024-07"], "wage": "4000", "city": "beijing"}
    assert ok("social-insurance", payload)["months"][0]["base"] == "6821.00"
    assert ok("social-insurance", payload, "--tables-dir", directory)["months"][0]["base"] == "5000.00"
    assert ok("social-insurance", payload, env={"RATE_TABLES_DIR": directory})["months"][0]["base"] == "5000.00"
    before_kind = subprocess.run(
        [sys.executable, "-m", "bot", "calc", "--tables-dir", directory, "social-insurance"],
        input=json.dumps(payload), capture_output=True, text=True, cwd=ROOT, timeout=60,
    )
    assert before_kind.returncode == 0, before_kind.stderr
    assert json.loads(before_kind.stdout)["months"][0]["base"] == "5000.00"


def test_invalid_company_table_names_file_and_field(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text(
        (BUNDLED_DIR / "beijing-2024.toml").read_text(encoding="utf-8").replace(
            "employee_rate = 0.08", "employee_rate = -1"),
        encoding="utf-8",
    )
    proc = run("social-insurance", {"months": ["2024-07"], "wage": "4000", "city": "beijing"},
               "--tables-dir", str(tmp_path))
    assert proc.returncode == 2
    assert "bad.toml" in proc.stderr and "items.pension.employee_rate" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
