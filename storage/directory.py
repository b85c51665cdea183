"""Directory import from CSV: validate every row first, then upsert in one transaction.

A file with any bad row imports nothing unless `skip_invalid` is set, so a typo never leaves
half a directory behind.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from storage.models import Employee
from workflow import cleantext

HEADER = (
    "employee_id,name,department,position,manager_id,roles,city,hire_date,contract_start,"
    "contract_end,monthly_wage,dingtalk_userid,wecom_userid,phone"
).split(",")
# Columns a file may leave out (files written before they existed still import; an empty cell clears).
OPTIONAL = ("address",)
ADDRESS_MAX = 200  # a postal address on one line: what an EMS waybill takes
KNOWN_ROLES = frozenset({"hr", "finance", "it", "admin"})
_ID = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_PHONE = re.compile(r"^\+?[0-9 -]{5,20}$")


def _column_max(name: str) -> int:
    # The column's own limit: a longer value would be truncated or refused by the database.
    return int(Employee._meta.fields_map[name].max_length)  # type: ignore[attr-defined]


class DirectoryError(Exception):
    pass


@dataclass(frozen=True)
class RowError:
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.message}"


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    skipped: int = 0
    errors: list[RowError] = field(default_factory=list)
    applied: bool = False


def _date(value: str) -> date | None:
    return date.fromisoformat(value) if value else None


def _parse_row(line: int, raw: dict[str, str]) -> tuple[dict[str, Any] | None, list[RowError]]:
    errs: list[RowError] = []
    v = {k: (raw.get(k) or "").strip() for k in (*HEADER, *OPTIONAL)}
    out: dict[str, Any] = {}

    def bad(name: str, msg: str) -> None:
        errs.append(RowError(line, name, msg))

    if not _ID.match(v["employee_id"]):
        bad("employee_id", "required; letters, digits and _.@- only, at most 64")
    # Every free-text column, before any other check reads it: one-line text within its column.
    for name in ("name", "department", "position", "city", "dingtalk_userid", "wecom_userid"):
        code = cleantext.problem(v[name], max_len=_column_max(name), multiline=False)
        if code == "too_long":
            bad(name, f"too long (at most {_column_max(name)} characters)")
        elif code is not None:
            bad(name, "contains control characters (NUL, tab, newline or similar)")
    if not v["name"]:
        bad("name", "required")
    if v["manager_id"] and not _ID.match(v["manager_id"]):
        bad("manager_id", "not a valid employee id")
    if v["manager_id"] and v["manager_id"] == v["employee_id"]:
        bad("manager_id", "an employee cannot be their own manager")
    roles = [r.strip().lower() for r in v["roles"].split(";") if r.strip()]
    unknown = [r for r in roles if r not in KNOWN_ROLES]
    if unknown:
        bad("roles", f"unknown role {unknown[0]!r} (known: {', '.join(sorted(KNOWN_ROLES))})")
    for name in ("hire_date", "contract_start", "contract_end"):
        try:
            out[name] = _date(v[name])
        except ValueError:
            bad(name, f"not a date YYYY-MM-DD: {v[name]!r}")
    if out.get("contract_start") and out.get("contract_end") and out["contract_end"] < out["contract_start"]:
        bad("contract_end", "before contract_start")
    wage: Decimal | None = None
    if v["monthly_wage"]:
        try:
            wage = Decimal(v["monthly_wage"].replace(",", ""))
            if not wage.is_finite() or wage < 0 or wage.as_tuple().exponent < -2:  # type: ignore[operator]
                raise InvalidOperation
        except InvalidOperation:
            bad("monthly_wage", f"not a non-negative amount with at most 2 decimals: {v['monthly_wage']!r}")
    if v["phone"] and not _PHONE.match(v["phone"]):
        bad("phone", "not a phone number")
    code = cleantext.problem(v["address"], max_len=ADDRESS_MAX, multiline=False)
    if code == "too_long":
        bad("address", f"too long (at most {ADDRESS_MAX} characters)")
    elif code is not None:
        bad("address", "contains control characters (NUL, tab, newline or similar)")
    if errs:
        return None, errs
    out.update(
        employee_id=v["employee_id"], name=v["name"], department=v["department"], position=v["position"],
        manager_id=v["manager_id"] or None, roles=";".join(sorted(set(roles))), city=v["city"],
        monthly_wage=wage, dingtalk_userid=v["dingtalk_userid"] or None,
        wecom_userid=v["wecom_userid"] or None, phone=v["phone"] or None,
    )
    if "address" in raw:  # a file without the column keeps the addresses on file
        out["address"] = v["address"] or None
    return out, []


def parse_csv(
    text: str, known_ids: frozenset[str] | set[str] = frozenset()
) -> tuple[list[tuple[int, dict[str, Any]]], list[RowError]]:
    """Parse and validate; returns good rows with their line numbers, and per-row errors.

    A manager must be in the file or among `known_ids` (the directory as it is).
    """
    text = text.lstrip("\ufeff")  # Excel writes a BOM
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [h for h in HEADER if h not in header]
    if missing:
        raise DirectoryError(f"line 1: header is missing column(s): {', '.join(missing)}")
    reader.fieldnames = header
    numbered = [(reader.line_num, raw) for raw in reader]
    managers_ok = set(known_ids) | {(raw.get("employee_id") or "").strip() for _, raw in numbered}
    rows: list[tuple[int, dict[str, Any]]] = []
    errors: list[RowError] = []
    seen: dict[tuple[str, str], int] = {}
    for line, raw in numbered:
        if None in raw:
            errors.append(RowError(line, "row", "more columns than the header"))
            continue
        parsed, errs = _parse_row(line, raw)
        manager = (raw.get("manager_id") or "").strip()
        if manager and manager not in managers_ok:
            errs.append(RowError(line, "manager_id", f"unknown employee {manager!r}"))
        if parsed:
            for unique in ("employee_id", "dingtalk_userid", "wecom_userid"):
                val = parsed[unique]
                if val is None:
                    continue
                if (unique, val) in seen:
                    errs.append(RowError(line, unique, f"duplicate of line {seen[unique, val]}"))
                else:
                    seen[unique, val] = line
        if errs:
            errors.extend(errs)
        else:
            rows.append((line, parsed))  # type: ignore[arg-type]
    return rows, errors


async def import_csv(
    text: str, *, skip_invalid: bool = False, progress: Callable[[int, int], None] | None = None
) -> ImportReport:
    existing_ids = set(await Employee.all().values_list("employee_id", flat=True))
    rows, errors = parse_csv(text, existing_ids)
    report = ImportReport(errors=errors)
    if report.errors and not skip_invalid:
        return report
    report.skipped = len({e.line for e in report.errors})
    try:
        await _upsert(rows, report, progress)
    except IntegrityError as exc:
        # e.g. a DingTalk/WeCom user id already held by someone not in this file
        raise DirectoryError(f"conflicts with the existing directory, nothing imported: {exc}") from None
    report.applied = True
    return report


async def _upsert(
    rows: list[tuple[int, dict[str, Any]]], report: ImportReport, progress: Callable[[int, int], None] | None
) -> None:
    total = len(rows)
    async with in_transaction() as conn:
        current = {e.employee_id: e for e in await Employee.all().using_db(conn)}
        for i, (_, r) in enumerate(rows, start=1):
            emp = current.get(r["employee_id"])
            if emp is None:
                await Employee.create(using_db=conn, **r)
                report.created += 1
            else:
                for k, val in r.items():
                    setattr(emp, k, val)
                await emp.save(using_db=conn)
                report.updated += 1
            if progress and (i % 500 == 0 or i == total):
                progress(i, total)
