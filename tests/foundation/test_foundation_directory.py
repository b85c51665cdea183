from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from storage.directory import HEADER, import_csv, parse_csv
from storage.models import Employee

H = ",".join(HEADER)
GOOD = [
    "A1,李雷,研发部,工程师,,hr;finance,beijing,2020-01-01,2020-01-01,2026-12-31,12000.50,dt1,wc1,13800000000",
    "A2,韩梅梅,研发部,经理,,,shanghai,2019-01-01,,,30000,,,",
    "A3,<script>alert(1)</script>,研发部,工程师,A2,,shanghai,2021-01-01,,,9000,,,",
]


async def test_import_good_rows_and_upsert(db) -> None:
    report = await import_csv("\n".join([H, *GOOD]) + "\n")
    assert report.applied and report.created == 3 and report.updated == 0 and not report.errors
    a1 = await Employee.get(employee_id="A1")
    assert a1.role_set == {"finance", "hr"} and str(a1.monthly_wage) == "12000.50" and a1.phone == "13800000000"
    assert (await Employee.get(employee_id="A3")).name == "<script>alert(1)</script>"
    again = await import_csv("\n".join([H, GOOD[0].replace("李雷", "李雷雷")]))
    assert again.updated == 1 and again.created == 0
    assert (await Employee.get(employee_id="A1")).name == "李雷雷"


async def test_phone_encrypted_at_rest(db) -> None:
    from tortoise import connections

    await import_csv("\n".join([H, GOOD[0]]))
    rows = await connections.get("default").execute_query_dict("SELECT phone FROM employee")
    assert rows[0]["phone"].startswith("v1:") and "13800000000" not in rows[0]["phone"]


async def test_bad_rows_reported_with_line_numbers_and_nothing_imported(db) -> None:
    text = "\n".join([
        H, GOOD[0],
        "A2,,研发部,工程师,,,beijing,2020-13-01,,,abc,,,",       # line 3: name, date, wage
        "A3,王,研发部,工程师,ZZ,chef,beijing,,,,,,,",              # line 4: unknown manager, role
        "A1,重复,研发部,工程师,,,beijing,,,,,,,",                  # line 5: duplicate id
        "A6,钱,研发部,工程师,,,beijing,,2022-01-01,2021-01-01,-5,,,x",  # line 6: dates order, wage, phone
    ])
    report = await import_csv(text)
    assert not report.applied
    got = {(e.line, e.field) for e in report.errors}
    assert {(3, "name"), (3, "hire_date"), (3, "monthly_wage"), (4, "roles"), (4, "manager_id"),
            (5, "employee_id"), (6, "contract_end"), (6, "monthly_wage"), (6, "phone")} <= got
    assert await Employee.all().count() == 0


async def test_skip_invalid_imports_good_rows(db) -> None:
    text = "\n".join([H, GOOD[0], "B2,,x,y,,,,,,,,,,", GOOD[1]])
    report = await import_csv(text, skip_invalid=True)
    assert report.applied and report.created == 2 and report.skipped == 1
    assert sorted(await Employee.all().values_list("employee_id", flat=True)) == ["A1", "A2"]


def test_missing_header_column_is_line_1() -> None:
    import pytest

    from storage.directory import DirectoryError

    with pytest.raises(DirectoryError, match=r"line 1: .*phone"):
        parse_csv("employee_id,name\nA1,x\n")


def test_bom_and_extra_columns() -> None:
    rows, errors = parse_csv("\ufeff" + H + "\n" + GOOD[1] + "\n" + GOOD[1].replace("A2", "A9") + ",extra\n")
    assert len(rows) == 1 and errors[0].line == 3


def test_cli_import_progress_and_errors(settings, tmp_path: Path) -> None:
    n = 1200
    lines = [H] + [f"P{i},员工{i},部门,岗位,,,beijing,2020-01-01,,,5000,,," for i in range(n)]
    good = tmp_path / "big.csv"
    good.write_text("\n".join(lines), encoding="utf-8")
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([H, "X1,,a,b,,,,,,,,,,"]), encoding="utf-8")
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": settings.database_url, "DATA_DIR": str(settings.data_dir),
           "SECRET_KEY": "test-secret-key-0123456789"}
    r = subprocess.run([sys.executable, "-m", "bot", "directory", "import", str(bad)], env=env,
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 1 and "line 2: name: required" in r.stderr and "nothing imported" in r.stderr
    r = subprocess.run([sys.executable, "-m", "bot", "directory", "import", str(good)], env=env,
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"importing {n}/{n}" in r.stderr and "importing 500/" in r.stderr
    assert f"{n} created" in r.stdout


def test_decode_csv_as_excel_saves_it() -> None:
    from storage.csvtext import EncodingError, decode_csv

    text = f"{H}\nG1,王小明,研发部,工程师,,,beijing,2020-01-01,,,5000,,,\n"
    assert decode_csv(text.encode("utf-8")) == (text, "utf-8")
    assert decode_csv(b"\xef\xbb\xbf" + text.encode("utf-8")) == (text, "utf-8-sig")
    assert decode_csv(text.encode("gbk")) == (text, "gb18030")
    assert decode_csv(text.encode("gb18030")) == (text, "gb18030")
    assert decode_csv(text.encode("utf-16")) == (text, "utf-16")
    assert decode_csv(text.encode("gbk"), "GBK") == (text, "gb18030")
    with pytest.raises(EncodingError, match="not valid utf-8"):
        decode_csv(text.encode("gbk"), "utf-8")
    with pytest.raises(EncodingError, match="unknown encoding"):
        decode_csv(b"x", "klingon")
    with pytest.raises(EncodingError, match="--encoding"):
        decode_csv(b"\x81\x30\xff\xff")  # a broken four-byte GB18030 sequence, not UTF-8 either


def test_cli_imports_a_gbk_file(settings, tmp_path: Path) -> None:
    rows = [H, "G1,王小明,研发部,工程师,,,beijing,2020-01-01,,,5000,,,", "G2,李四,财务部,会计,G1,finance,beijing,"
            "2021-03-01,,,6000,,,"]
    path = tmp_path / "excel.csv"
    path.write_bytes("\r\n".join(rows).encode("gbk"))
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": settings.database_url, "DATA_DIR": str(settings.data_dir),
           "SECRET_KEY": "test-secret-key-0123456789"}
    r = subprocess.run([sys.executable, "-m", "bot", "directory", "import", str(path)], env=env,
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "reading" in r.stderr and "gb18030" in r.stderr and "2 created" in r.stdout
    r = subprocess.run([sys.executable, "-m", "bot", "directory", "import", "--encoding", "utf-8", str(path)],
                       env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 2 and "not valid utf-8" in r.stderr


async def test_gbk_names_land_intact(db, tmp_path: Path) -> None:
    from storage.csvtext import decode_csv

    rows = [H, "G1,欧阳娜娜,研发部,工程师,,,beijing,2020-01-01,,,5000,,,"]
    text, _ = decode_csv("\n".join(rows).encode("gbk"))
    report = await import_csv(text)
    assert report.applied and report.created == 1
    assert (await Employee.get(employee_id="G1")).name == "欧阳娜娜"
