"""Every statement a workflow event runs finds its rows through an index.

A statement that walks a whole table costs nothing on a test database and grows with every case
on a real one (the timer cancel once walked every pending timer: 0.5 ms an event and rising). Run
Case B through the real service and inbound path with SQLite's trace on, then ask SQLite for the
plan of each statement.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from tortoise import connections

from bot.app import build_service
from storage.models import Employee
from tests.conftest import PG_URL
from workflow.events import Act, DocumentSigned
from workflow.model import Role

pytestmark = pytest.mark.skipif(bool(PG_URL), reason="SQLite query planner")
T0 = datetime(2025, 7, 1, 2, 0, tzinfo=UTC)
ALLOWED_SCANS: set[str] = set()


def _badly_planned(conn, statement: str) -> set[str]:
    """Tables the statement walks whole, or searches by something other than the case it names."""
    plan = conn.execute("EXPLAIN QUERY PLAN " + statement).fetchall()
    by_case = '"case_id" =' in statement
    tables = set()
    for *_, detail in plan:
        words = detail.split()
        if len(words) < 2 or words[1].startswith(("CONSTANT", "(")):
            continue
        table = words[1].strip('"')
        if words[0] == "SCAN" or (words[0] == "SEARCH" and by_case and table != "case" and "case_id=" not in detail):
            tables.add(table)
    return tables


async def test_case_b_statements_use_indexes(demo_org) -> None:
    svc = build_service(demo_org)
    raw = connections.get("default")._connection._conn
    seen: list[str] = []
    raw.set_trace_callback(seen.append)
    try:
        emp = await Employee.get(employee_id="E003")
        out = await svc.start_case(employee=emp, template_id="probation", last_day=date(2025, 7, 31),
                                   reason="绩效未达标", created_by="E001", handover_id="E006", at=T0)
        cid = out.case_id
        steps = [
            ("E003", Role.EMPLOYEE, Act("application", "submit", "E003", frozenset({Role.EMPLOYEE}),
                                        {"last_working_day": "2025-07-31", "reason": "x"}, at=T0)),
            ("E002", Role.MANAGER, Act("performance_review", "approve", "E002", frozenset({Role.MANAGER}),
                                       {"result": "60%"}, at=T0)),
            ("E001", Role.HR, Act("hr_check", "complete", "E001", frozenset({Role.HR}), {"unpaid_months": 2}, at=T0)),
            ("E003", Role.EMPLOYEE, DocumentSigned("handover", "handover_confirmation", "E003",
                                                   frozenset({Role.EMPLOYEE}), at=T0)),
            ("E006", Role.HANDOVER, DocumentSigned("handover", "handover_confirmation", "E006",
                                                   frozenset({Role.HANDOVER}), at=T0)),
            # Signing the guarantee letter opens the back-pay step: finance is found by role.
            ("E003", Role.EMPLOYEE, DocumentSigned("guarantee", "guarantee_letter", "E003",
                                                   frozenset({Role.EMPLOYEE}), at=T0)),
        ]
        for who, _role, event in steps:
            assert (await svc.apply(cid, lambda c, s, ev=event: ev, actor=who)).ok
    finally:
        raw.set_trace_callback(None)
    writes = [s for s in seen if s.split(None, 1)[0].upper() in ("SELECT", "UPDATE", "DELETE")]
    assert len(writes) > 10
    assert any('"roles" LIKE' in s for s in writes)  # finance was looked up by role on the way
    problems = {s: t for s in writes if (t := _badly_planned(raw, s) - ALLOWED_SCANS)}
    assert not problems, problems
