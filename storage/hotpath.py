"""Hand-written SQL for the statements every workflow event runs.

Building these through the ORM cost far more Python time than the database spent on them (query
building, copying and filter resolution per call), so the per-event statements are written once
here, with `?` placeholders translated to `$n` for PostgreSQL. Values go through the model fields'
own `to_db_value` / `to_python_value`, so rows written here read back through the ORM exactly as
rows it wrote itself (JSON as text, datetimes as the driver adapts them), and vice versa.

All functions take the connection of the caller's `in_transaction()`; none opens one.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from typing import Any

from tortoise import connections, fields
from tortoise.exceptions import IntegrityError, OperationalError, ValidationError
from tortoise.models import Model
from tortoise.validators import MaxLengthValidator

from storage.audit import NewEntry
from storage.fields import EncryptedJSONField
from storage.models import AuditEntry, Case, CaseStep, Employee, InboxEvent, OutboxMessage, Timer

_PLACEHOLDER = re.compile(r"\?")


def is_postgres(conn: Any) -> bool:
    return conn.capabilities.dialect == "postgres"


@cache
def _numbered(sql: str) -> str:
    counter = iter(range(1, 1_000_000))
    return _PLACEHOLDER.sub(lambda _m: f"${next(counter)}", sql)


def _sql(conn: Any, sql: str) -> str:
    return _numbered(sql) if is_postgres(conn) else sql


async def query(conn: Any, sql: str, values: Sequence[Any] = ()) -> tuple[int, Sequence[Any]]:
    """Run one statement; returns (rows affected or returned, rows)."""
    return await conn.execute_query(_sql(conn, sql), list(values))


async def many(conn: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    """One statement for many parameter rows: a single driver call (one thread hop on SQLite, a
    pipelined batch on asyncpg)."""
    if rows:
        await conn.execute_many(_sql(conn, sql), [list(r) for r in rows])


class Batch:
    """Writes queued in order and sent together by `flush`.

    On SQLite every statement is a hop to the connection's worker thread, and the transaction
    holds the connection's only lock meanwhile; a batch is one hop for all its statements. On
    PostgreSQL the statements simply run in order. A statement added with `exactly_one` is the
    compare-and-set: when it changes no row, nothing after it runs and `flush` returns False (the
    caller raises, which rolls the transaction back).
    """

    def __init__(self) -> None:
        self.items: list[tuple[str, list[list[Any]], bool]] = []

    def add(self, sql: str, rows: Sequence[Sequence[Any]], *, exactly_one: bool = False) -> None:
        if rows:
            self.items.append((sql, [list(r) for r in rows], exactly_one))

    async def flush(self, conn: Any) -> bool:
        items, self.items = self.items, []
        if not items:
            return True
        raw = getattr(conn, "_connection", None)
        if not is_postgres(conn) and hasattr(raw, "_execute") and hasattr(raw, "_conn"):
            try:
                return bool(await raw._execute(_run_sqlite, raw._conn, items))
            except sqlite3.IntegrityError as exc:
                raise IntegrityError(exc) from exc
            except sqlite3.OperationalError as exc:
                raise OperationalError(exc) from exc
        for sql, rows, exactly_one in items:
            if len(rows) == 1:
                n, _ = await query(conn, sql, rows[0])
                if exactly_one and n != 1:
                    return False
            else:
                await many(conn, sql, rows)
        return True


def _run_sqlite(db: sqlite3.Connection, items: list[tuple[str, list[list[Any]], bool]]) -> bool:
    # Runs on aiosqlite's worker thread, inside the caller's open transaction.
    for sql, rows, exactly_one in items:
        cursor = db.execute(sql, rows[0]) if len(rows) == 1 else db.executemany(sql, rows)
        if exactly_one and cursor.rowcount != 1:
            return False
    return True


Target = Any  # a transaction's connection (runs now) or a Batch (queued)


async def _write(target: Target, sql: str, rows: Sequence[Sequence[Any]], *, exactly_one: bool = False) -> bool:
    if isinstance(target, Batch):
        target.add(sql, rows, exactly_one=exactly_one)
        return True
    if not rows:
        return True
    if len(rows) == 1:
        n, _ = await query(target, sql, rows[0])
        return n == 1 or not exactly_one
    await many(target, sql, rows)
    return True


# ---- column lists, derived from the models so they cannot drift ---------------------------
@cache
def _columns(model: type[Model]) -> tuple[str, ...]:
    return tuple(model._meta.fields_db_projection[f] for f in model._meta.db_fields)


@cache
def _fields_by_column(model: type[Model]) -> dict[str, Any]:
    meta = model._meta
    return {meta.fields_db_projection[f]: meta.fields_map[f] for f in meta.db_fields}


def _quote(name: str) -> str:
    return f'"{name}"'


def _to_db(model: type[Model], column: str, value: Any) -> Any:
    return _converter(model, column)(value)


_PLAIN_FIELDS = (fields.CharField, fields.TextField, fields.IntField, fields.BigIntField, fields.BooleanField)


@cache
def _converter(model: type[Model], column: str) -> Callable[[Any], Any]:
    """The field's own `to_db_value`, with its common cases inlined: it dominated the CPU time of
    a write. Anything unusual (None, a str for a JSON column, a naive datetime) takes the field's
    path, so its checks and conversions still apply."""
    field = _fields_by_column(model)[column]
    nullable = bool(field.null)

    def general(value: Any) -> Any:
        return field.to_db_value(value, model)

    # An encrypted JSON column must take its own to_db_value, never the inlined plain encoding.
    if isinstance(field, fields.JSONField) and not isinstance(field, EncryptedJSONField):
        encoder = field.encoder
        empty = {dict: encoder({}), list: encoder([])}  # most step columns are empty

        def json_value(value: Any) -> Any:
            if isinstance(value, (dict, list)):
                return encoder(value) if value else empty[type(value)]
            return None if value is None and nullable else general(value)

        return json_value
    if isinstance(field, fields.DatetimeField) and not (field.auto_now or field.auto_now_add):
        def datetime_value(value: Any) -> Any:
            if isinstance(value, datetime) and value.tzinfo is not None:
                return value
            return None if value is None and nullable else general(value)

        return datetime_value
    if type(field) is fields.CharField and [type(v) for v in field.validators] == [MaxLengthValidator]:
        limit = field.max_length

        def char_value(value: Any) -> Any:
            if type(value) is str and len(value) <= limit:
                return value
            return None if value is None and nullable else general(value)  # general names the field

        return char_value
    if type(field) in _PLAIN_FIELDS:
        kind, validators = field.field_type, tuple(field.validators)

        def plain_value(value: Any) -> Any:
            if type(value) is not kind:
                return None if value is None and nullable else general(value)
            try:
                for check in validators:
                    check(value)
            except ValidationError:
                return general(value)  # raises it again, naming the field
            return value

        return plain_value
    return general


@cache
def _temporal_parsers(model: type[Model]) -> tuple[tuple[str, Callable[[str], Any]], ...]:
    out: list[tuple[str, Callable[[str], Any]]] = []
    for column, field in _fields_by_column(model).items():
        if isinstance(field, fields.DatetimeField):
            out.append((column, datetime.fromisoformat))
        elif isinstance(field, fields.DateField):
            out.append((column, date.fromisoformat))
    return tuple(out)


def from_row(model: type[Model], values: dict[str, Any]) -> Any:
    """A model instance from a row (column -> value). SQLite hands dates and times back as text,
    which Tortoise parses with a pure-Python ISO parser; the C `fromisoformat` does it first here
    (Tortoise then only normalises the zone). Text it cannot read still goes Tortoise's way."""
    for column, parse in _temporal_parsers(model):
        value = values.get(column)
        if type(value) is str:
            try:
                values[column] = parse(value)
            except ValueError:
                pass
    return model._init_from_db(**values)


@cache
def _row_converters(model: type[Model], columns: tuple[str, ...]) -> tuple[Callable[[Any], Any], ...]:
    return tuple(_converter(model, c) for c in columns)


@cache
def _insert_sql(model: type[Model], columns: tuple[str, ...], ignore_conflicts: bool) -> str:
    table = _quote(model._meta.db_table)
    cols = ", ".join(_quote(c) for c in columns)
    marks = ", ".join("?" for _ in columns)
    tail = " ON CONFLICT DO NOTHING" if ignore_conflicts else ""
    return f"INSERT INTO {table} ({cols}) VALUES ({marks}){tail}"


async def insert_rows(
    target: Target, model: type[Model], rows: Sequence[dict[str, Any]], *, ignore_conflicts: bool = False
) -> None:
    """Insert plain rows (column -> python value); every row must name the same columns."""
    if not rows:
        return
    columns = tuple(rows[0])
    sql = _insert_sql(model, columns, ignore_conflicts)
    convert = _row_converters(model, columns)
    await _write(target, sql, [[f(r[c]) for f, c in zip(convert, columns, strict=True)] for r in rows])


# ---- the case and its steps ----------------------------------------------------------------
@cache
def _load_sql() -> str:
    case_cols = ", ".join(f"c.{_quote(c)}" for c in _columns(Case))
    step_cols = ", ".join(f"s.{_quote(c)} AS {_quote('s_' + c)}" for c in _columns(CaseStep))
    return (f'SELECT {case_cols}, {step_cols} FROM "case" c LEFT JOIN "case_step" s ON s."case_id" = c."id" '
            'WHERE c."id" = ? ORDER BY s."position"')


_STEP_DATETIMES = ("activated_at", "viewed_at", "done_at")
_STEP_JSON = ("data", "documents_signed", "timers_fired", "viewed_by")
_STEP_PLAIN = ("step_id", "position", "status", "done_by", "outcome", "reminders_sent", "rejections")


async def load_case(conn: Any, case_id: str) -> tuple[Case, list[dict[str, Any]]] | None:
    """The case row and its steps (by position, as column -> python value) in one round trip.
    Steps are read as plain values: building a model instance per step cost more than the query."""
    _, rows = await query(conn, _load_sql(), [case_id])
    if not rows:
        return None
    first = dict(rows[0])
    case = from_row(Case, {c: first[c] for c in _columns(Case)})
    steps: list[dict[str, Any]] = []
    for row in rows:
        r = dict(row)
        if r["s_id"] is None:
            continue
        step = {c: r["s_" + c] for c in _STEP_PLAIN}
        step.update((c, _datetime(r["s_" + c])) for c in _STEP_DATETIMES)
        step.update((c, _json(r["s_" + c])) for c in _STEP_JSON)
        steps.append(step)
    return case, steps


async def bump_version(
    target: Target, case_id: str, version: int, audit_seq: int, changes: dict[str, Any]
) -> bool:
    """The compare-and-set: move the case to version+1 (with `changes`) only if it is still at
    `version` with its audit log at `audit_seq`. False means another writer got there first
    (queued in a Batch: its flush says so)."""
    names = sorted(changes)
    sets = ", ".join(["\"version\" = ?", *(f"{_quote(n)} = ?" for n in names)])
    values = [version + 1, *(_to_db(Case, n, changes[n]) for n in names), case_id, version, audit_seq]
    return await _write(target, f'UPDATE "case" SET {sets} WHERE "id" = ? AND "version" = ? AND "audit_seq" = ?',
                        [values], exactly_one=True)


async def case_stamp(conn: Any, case_id: str) -> tuple[int, int] | None:
    """(version, audit_seq) of a case as stored now."""
    _, rows = await query(conn, 'SELECT "version", "audit_seq" FROM "case" WHERE "id" = ?', [case_id])
    return (rows[0][0], rows[0][1]) if rows else None


@cache
def _step_update_sql(columns: tuple[str, ...]) -> str:
    sets = ", ".join(f"{_quote(c)} = ?" for c in columns)
    return f'UPDATE "case_step" SET {sets} WHERE "case_id" = ? AND "step_id" = ?'


async def update_steps(target: Target, case_id: str, steps: dict[str, dict[str, Any]]) -> None:
    """Rewrite the given steps (step_id -> column values; all with the same columns)."""
    if not steps:
        return
    columns = tuple(next(iter(steps.values())))
    convert = _row_converters(CaseStep, columns)
    rows = [[*(f(cols[c]) for f, c in zip(convert, columns, strict=True)), case_id, step_id]
            for step_id, cols in steps.items()]
    await _write(target, _step_update_sql(columns), rows)


# ---- audit, outbox, timers, inbox ----------------------------------------------------------
_AUDIT_COLUMNS = ("case_id", "seq", "at", "actor", "kind", "data", "prev_hash", "hash")


async def insert_audit(target: Target, entries: Sequence[NewEntry]) -> None:
    """New audit entries; `data` goes in as the canonical text its hash was computed over."""
    if entries:
        at = _converter(AuditEntry, "at")
        await _write(target, _insert_sql(AuditEntry, _AUDIT_COLUMNS, False), [
            [e.case_id, e.seq, at(e.at), e.actor, e.kind, e.data_json, e.prev_hash, e.hash] for e in entries
        ])


async def insert_outbox(target: Target, rows: Sequence[dict[str, Any]]) -> None:
    """Outbox rows (key, case_id, platform, recipient, step_id, kind, payload, next_attempt_at,
    created_at); the unique key makes a replayed effect a no-op."""
    await insert_rows(target, OutboxMessage, [
        {"status": "pending", "attempts": 0, **r} for r in rows
    ], ignore_conflicts=True)


async def card_holders(conn: Any, case_id: str) -> list[tuple[str, str, str]]:
    """(step_id, recipient, platform) of every step card queued or sent for the case."""
    _, rows = await query(
        conn, 'SELECT DISTINCT "step_id", "recipient", "platform" FROM "outbox" WHERE "case_id" = ? '
        'AND "step_id" IS NOT NULL AND "kind" = \'card\'', [case_id],
    )
    return sorted((r[0], r[1], r[2]) for r in rows)


async def summary_holders(conn: Any, case_id: str) -> list[tuple[str, str]]:
    """(recipient, platform) of every HR summary card of the case."""
    _, rows = await query(
        conn, 'SELECT "recipient", "platform", "payload" FROM "outbox" WHERE "case_id" = ? AND "step_id" IS NULL '
        'AND "kind" = \'card\'', [case_id],
    )
    return sorted({(r[0], r[1]) for r in rows if (_json(r[2]) or {}).get("purpose") == "summary"})


async def cancel_timers(target: Target, case_id: str, step_ids: Sequence[str]) -> None:
    # `"status" || ''`: no index on status for this one. Left bare, SQLite's planner picked the
    # (status, due) index and walked every pending timer of every case (0.5 ms per event, growing);
    # the (case, step) index finds the handful that matter.
    marks = ", ".join("?" for _ in step_ids)
    await _write(target, f'UPDATE "timer" SET "status" = \'cancelled\' WHERE "case_id" = ? '
                 f'AND "step_id" IN ({marks}) AND "status" || \'\' = \'pending\'', [[case_id, *step_ids]])


async def insert_timers(target: Target, rows: Sequence[dict[str, Any]]) -> None:
    """Timer rows (key, case_id, step_id, kind, due_at); an existing key is kept."""
    await insert_rows(target, Timer, [{"status": "pending", "attempts": 0, **r} for r in rows],
                      ignore_conflicts=True)


async def insert_inbox(conn: Any, *, dedup_key: str, platform: str, sender: str, kind: str, received_at: Any,
                       result: dict[str, Any]) -> None:
    """The inbox row; a duplicate key raises IntegrityError (that is the dedup)."""
    await insert_rows(conn, InboxEvent, [{
        "dedup_key": dedup_key, "platform": platform, "sender": sender, "kind": kind,
        "received_at": received_at, "result": result,
    }])


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
    _, rows = await query(
        conn, 'SELECT "id", "employee_id", "roles", "dingtalk_userid", "wecom_userid" FROM "employee" WHERE '
        + " OR ".join(where), values,
    )
    return [Recipient(r[0], r[1], r[2], r[3], r[4]) for r in rows]


# ---- reading step rows without building model instances -----------------------------------
def _datetime(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value.astimezone(UTC) if value is not None else None
    parsed = datetime.fromisoformat(value)
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, (str, bytes)) else value


# ---- inbound: dedup and directory look-ups ------------------------------------------------
_EMPLOYEE_KEYS = frozenset({"employee_id", "dingtalk_userid", "wecom_userid"})


def default_conn() -> Any:
    return connections.get("default")


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
    cols = _columns(model)
    sql = f'SELECT {", ".join(_quote(c) for c in cols)} FROM {_quote(model._meta.db_table)} WHERE {_quote(column)} = ?'
    values = [value]
    if active is not None:
        sql += ' AND "active" = ?'
        values.append(active)
    _, rows = await query(conn, sql, values)
    if not rows:
        return None
    row = dict(rows[0])
    return from_row(model, {c: row[c] for c in cols})


async def names(conn: Any, employee_ids: Sequence[str]) -> dict[str, str]:
    """employee_id -> name for the given ids (unknown ids are left out)."""
    if not employee_ids:
        return {}
    marks = ", ".join("?" for _ in employee_ids)
    _, rows = await query(conn, f'SELECT "employee_id", "name" FROM "employee" WHERE "employee_id" IN ({marks})',
                          list(employee_ids))
    return {r[0]: r[1] for r in rows}


@cache
def _update_sql(model: type[Model], columns: tuple[str, ...], where: tuple[str, ...]) -> str:
    sets = ", ".join(f"{_quote(c)} = ?" for c in columns)
    cond = " AND ".join(f"{_quote(c)} = ?" for c in where)
    return f"UPDATE {_quote(model._meta.db_table)} SET {sets} WHERE {cond}"


async def update_where(conn: Any, model: type[Model], changes: dict[str, Any], where: dict[str, Any]) -> int:
    """UPDATE model SET changes WHERE every `where` column equals its value; rows changed."""
    columns, keys = tuple(changes), tuple(where)
    convert = _row_converters(model, columns)
    values = [f(changes[c]) for f, c in zip(convert, columns, strict=True)]
    values += [f(where[c]) for f, c in zip(_row_converters(model, keys), keys, strict=True)]
    n, _ = await query(conn, _update_sql(model, columns, keys), values)
    return n


async def inbox_result(conn: Any, dedup_key: str) -> dict[str, Any] | None:
    """The stored answer of an inbound event, or None when the key is new."""
    _, rows = await query(conn, 'SELECT "result" FROM "inbox" WHERE "dedup_key" = ?', [dedup_key])
    if not rows:
        return None
    return _json(rows[0][0]) or {}


async def set_inbox_result(conn: Any, dedup_key: str, result: dict[str, Any]) -> None:
    await query(conn, 'UPDATE "inbox" SET "result" = ? WHERE "dedup_key" = ?',
                [_to_db(InboxEvent, "result", result), dedup_key])
