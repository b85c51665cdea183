"""Hand-written reads of the directory and the inbox on every event's path.

Building these through the ORM cost far more Python time than the database spent on them (query
building, copying and filter resolution per call). Rows of other tables have their own modules:
a case, its steps and audit chain in storage/casestore, outbox and timer rows in storage/queue;
the SQL dialect and Tortoise's internals in storage/dialect.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tortoise.models import Model

from storage.dialect import default_conn, dialect_of
from storage.models import Employee, InboxEvent
from storage.rows import as_json, insert_rows, select_one, to_db

__all__ = ["Recipient", "active_employee", "default_conn", "get_one", "inbox_result", "insert_inbox", "names",
           "people", "set_inbox_result"]


# ---- people a decision notifies ------------------------------------------------------------
@dataclass(frozen=True)
class Recipient:
    """The directory columns a notification needs (the encrypted ones are never read here): who,
    their roles, and their user id in each platform user-id column asked for (the address book's)."""

    id: int
    employee_id: str
    roles: str
    user_ids: Mapping[str, str | None] = field(default_factory=dict)  # employee column -> value

    @property
    def role_set(self) -> frozenset[str]:
        return frozenset(r for r in self.roles.split(";") if r)


def _column(model: type[Model], column: str, *, unique: bool = False) -> str:
    """`column` when it is a plain column of `model` (and, if asked, a unique one): the names below
    are put into SQL as identifiers, so only the model's own are let through."""
    f = model._meta.fields_map.get(column)
    if f is None or column not in model._meta.db_fields or (unique and not (f.unique or f.pk)):
        raise ValueError(f"not a{' unique' if unique else ''} column of {model.__name__}: {column}")
    return column


async def people(conn: Any, *, pk: int, employee_ids: Sequence[str], role_words: Sequence[str],
                 user_id_columns: Sequence[str] = ()) -> list[Recipient]:
    """Employees by primary key, by employee id, or active ones whose roles mention a word, with the
    values of `user_id_columns` (the columns the configured platforms keep their user ids in)."""
    extra = [_column(Employee, c) for c in dict.fromkeys(user_id_columns) if c != "employee_id"]
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
    columns = ", ".join(f'"{c}"' for c in ("id", "employee_id", "roles", *extra))
    _, rows = await dialect_of(conn).query(
        conn, f'SELECT {columns} FROM "employee" WHERE ' + " OR ".join(where), values)
    return [Recipient(r[0], r[1], r[2], dict(zip(extra, r[3:], strict=True))) for r in rows]


# ---- directory look-ups -------------------------------------------------------------------
async def active_employee(conn: Any, column: str, value: str) -> Employee | None:
    """The active employee whose unique `column` (employee id or a platform user id) equals `value`."""
    return await get_one(conn, Employee, column, value, active=True)


async def get_one(conn: Any, model: type[Model], column: str, value: Any, *, active: bool | None = None) -> Any:
    """The row of `model` whose unique `column` equals `value` (and, for employees, whose `active`
    flag matches when given), as a model instance; None when there is none."""
    where: dict[str, Any] = {_column(model, column, unique=True): value}
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
