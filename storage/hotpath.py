"""Hand-written reads of the directory and the inbox on every event's path.

Building these through the ORM cost far more Python time than the database spent on them (query
building, copying and filter resolution per call). Rows of other tables have their own modules:
a case, its steps and audit chain in storage/casestore, outbox and timer rows in storage/queue;
the SQL dialect and Tortoise's internals in storage/dialect.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tortoise.models import Model

from storage.dialect import default_conn, dialect_of
from storage.models import Case, Employee, InboxEvent, OutboxMessage
from storage.rows import as_json, insert_rows, select_one, to_db

__all__ = ["Recipient", "active_employee", "default_conn", "get_one", "inbox_result", "insert_inbox", "names",
           "people", "set_inbox_result"]


# ---- people a decision notifies ------------------------------------------------------------
@dataclass(frozen=True)
class Recipient:
    """The directory columns a notification needs (the encrypted ones are never read here)."""

    id: int
    employee_id: str
    roles: str
    dingtalk_userid: str | None
    wecom_userid: str | None

    @property
    def role_set(self) -> frozenset[str]:
        return frozenset(r for r in self.roles.split(";") if r)


async def people(conn: Any, *, pk: int, employee_ids: Sequence[str], role_words: Sequence[str]) -> list[Recipient]:
    """Employees by primary key, by employee id, or active ones whose roles mention a word."""
    where = ['"id" = ?']
    values: list[Any] = [pk]
    if employee_ids:
        where.append(f'"employee_id" IN ({", ".join("?" for _ in employee_ids)})')
        values += employee_ids
    for word in role_words:
        # `roles > ''` lets the roles index skip everyone without a role (most of a directory);
        # the LIKE alone made this a walk of the whole employee table.
        where.append('("roles" > ? AND "active" = ? AND "roles" LIKE ?)')
        values += ["", True, f"%{word}%"]
    _, rows = await dialect_of(conn).query(
        conn, 'SELECT "id", "employee_id", "roles", "dingtalk_userid", "wecom_userid" FROM "employee" WHERE '
        + " OR ".join(where), values,
    )
    return [Recipient(r[0], r[1], r[2], r[3], r[4]) for r in rows]


# ---- directory look-ups -------------------------------------------------------------------
_EMPLOYEE_KEYS = frozenset({"employee_id", "dingtalk_userid", "wecom_userid"})


async def active_employee(conn: Any, column: str, value: str) -> Employee | None:
    """The active employee whose `column` (employee id or a platform user id) equals `value`."""
    if column not in _EMPLOYEE_KEYS:
        raise ValueError(f"not a unique employee key: {column}")
    return await get_one(conn, Employee, column, value, active=True)


_UNIQUE_KEYS: dict[type[Model], frozenset[str]] = {
    Employee: _EMPLOYEE_KEYS | {"id"}, Case: frozenset({"id"}), OutboxMessage: frozenset({"id", "key"}),
}


async def get_one(conn: Any, model: type[Model], column: str, value: Any, *, active: bool | None = None) -> Any:
    """The row of `model` whose unique `column` equals `value` (and, for employees, whose `active`
    flag matches when given), as a model instance; None when there is none."""
    if column not in _UNIQUE_KEYS.get(model, ()):
        raise ValueError(f"not a unique key of {model.__name__}: {column}")
    where: dict[str, Any] = {column: value}
    if active is not None:
        where["active"] = active
    return await select_one(conn, model, where)


async def names(conn: Any, employee_ids: Sequence[str]) -> dict[str, str]:
    """employee_id -> name for the given ids (unknown ids are left out)."""
    if not employee_ids:
        return {}
    marks = ", ".join("?" for _ in employee_ids)
    _, rows = await dialect_of(conn).query(
        conn, f'SELECT "employee_id", "name" FROM "employee" WHERE "employee_id" IN ({marks})', list(employee_ids))
    return {r[0]: r[1] for r in rows}


# ---- the inbox (dedup of inbound events) ----------------------------------------------------
async def insert_inbox(conn: Any, *, dedup_key: str, platform: str, sender: str, kind: str, received_at: Any,
                       result: dict[str, Any]) -> None:
    """The inbox row; a duplicate key raises IntegrityError (that is the dedup)."""
    await insert_rows(conn, InboxEvent, [{
        "dedup_key": dedup_key, "platform": platform, "sender": sender, "kind": kind,
        "received_at": received_at, "result": result,
    }])


async def inbox_result(conn: Any, dedup_key: str) -> dict[str, Any] | None:
    """The stored answer of an inbound event, or None when the key is new."""
    _, rows = await dialect_of(conn).query(conn, 'SELECT "result" FROM "inbox" WHERE "dedup_key" = ?', [dedup_key])
    if not rows:
        return None
    return as_json(rows[0][0]) or {}


async def set_inbox_result(conn: Any, dedup_key: str, result: dict[str, Any]) -> None:
    await dialect_of(conn).query(conn, 'UPDATE "inbox" SET "result" = ? WHERE "dedup_key" = ?',
                                 [to_db(InboxEvent, "result", result), dedup_key])
