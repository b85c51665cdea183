"""The postal address on file (directory column `address`, optional): imported, encrypted at rest, kept when a
file without the column is imported, refused when it is not one clean line."""

from __future__ import annotations

from tortoise import connections

from storage import crypto
from storage.directory import HEADER, import_csv, parse_csv
from storage.models import Employee

HEAD = ",".join(HEADER)
ROW = "E901,王小明,销售部,销售代表,,,beijing,2024-01-02,2024-01-02,,8000.00,,,13800009901"


async def test_address_is_imported_encrypted_and_kept_by_files_without_it(db: object) -> None:
    report = await import_csv(f"{HEAD},address\n{ROW},上海市浦东新区世纪大道 100 号\n")
    assert report.applied and not report.errors
    emp = await Employee.get(employee_id="E901")
    assert emp.address == "上海市浦东新区世纪大道 100 号"
    _, rows = await connections.get("default").execute_query('SELECT "address" FROM "employee" WHERE "id" = '
                                                              f"{emp.id}")
    assert crypto.is_encrypted(str(dict(rows[0])["address"]))
    # An older file without the column leaves the address on file alone.
    assert (await import_csv(f"{HEAD}\n{ROW}\n")).applied
    assert (await Employee.get(employee_id="E901")).address == "上海市浦东新区世纪大道 100 号"


def test_a_bad_address_is_refused_with_its_line() -> None:
    _, errors = parse_csv(f"{HEAD},address\n{ROW},\"x\ty\"\n")
    assert [(e.line, e.field) for e in errors] == [(2, "address")]
    _, errors = parse_csv(f"{HEAD},address\n{ROW},{'路' * 201}\n")
    assert [(e.line, e.field) for e in errors] == [(2, "address")]
