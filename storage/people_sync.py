"""People from a platform's directory, upserted into ours without touching what HR owns.

A platform knows names, departments, positions and who reports to whom; it does not know hire
dates, wages, contract dates, city or roles, which come from HR's CSV. So a sync creates people it
has never seen (employee id = their platform user id) and, for people already known by that user
id, refreshes only the four fields the platform owns. Everything happens in one transaction.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tortoise.transactions import in_transaction

from storage.models import Employee

_ID = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class PlatformPerson:
    userid: str
    name: str
    department: str = ""
    position: str = ""
    manager_userid: str | None = None


@dataclass
class SyncReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: list[str] = field(default_factory=list)  # "userid: why"


def _problem(p: PlatformPerson) -> str | None:
    if not _ID.match(p.userid):
        return "user id is not usable as an employee id"
    for label, value in (("name", p.name), ("department", p.department), ("position", p.position)):
        if len(value) > 128 or _CONTROL.search(value):
            return f"{label} too long or contains control characters"
    if not p.name.strip():
        return "no name"
    return None


def is_user_id_column(column: str) -> bool:
    """A column a sync may match on: a unique, optional column of the directory that a platform keeps
    its user ids in (the platform names it; never our own employee id or key)."""
    f = Employee._meta.fields_map.get(column)
    return (f is not None and column in Employee._meta.db_fields and bool(f.unique) and bool(f.null)
            and not f.pk and column != "employee_id")


async def sync_people(column: str, people: Sequence[PlatformPerson], *,
                      progress: Callable[[int, int], None] | None = None) -> SyncReport:
    if not is_user_id_column(column):
        raise ValueError(f"unknown user id column {column!r}")
    report = SyncReport()
    good: list[PlatformPerson] = []
    for p in people:
        why = _problem(p)
        if why:
            report.skipped.append(f"{p.userid[:64]}: {why}")
        else:
            good.append(p)
    total = len(good)
    async with in_transaction() as conn:
        known = {getattr(e, column): e for e in await Employee.filter(**{f"{column}__isnull": False}).using_db(conn)}
        taken = set(await Employee.all().using_db(conn).values_list("employee_id", flat=True))
        # Managers are named by platform user id; ours are employee ids.
        employee_id_of = {uid: e.employee_id for uid, e in known.items()}
        for p in good:
            employee_id_of.setdefault(p.userid, p.userid)
        for i, p in enumerate(good, start=1):
            manager = employee_id_of.get(p.manager_userid) if p.manager_userid else None
            values = {"name": p.name.strip(), "department": p.department.strip(), "position": p.position.strip(),
                      "manager_id": manager if manager != employee_id_of[p.userid] else None}
            emp = known.get(p.userid)
            if emp is None:
                if p.userid in taken:
                    report.skipped.append(f"{p.userid}: employee id already used by someone else")
                    continue
                await Employee.create(using_db=conn, employee_id=p.userid, **{column: p.userid}, **values)
                taken.add(p.userid)
                report.created += 1
            elif any(getattr(emp, k) != v for k, v in values.items()):
                await Employee.filter(id=emp.id).using_db(conn).update(**values)
                report.updated += 1
            else:
                report.unchanged += 1
            if progress and (i % 200 == 0 or i == total):
                progress(i, total)
    return report
