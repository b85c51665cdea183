"""Rows in and out of hand-written statements, converted by the model fields themselves.

Values go through the fields' own `to_db_value` (with its common cases inlined: it dominated the
CPU time of a write), so rows written here read back through the ORM exactly as rows it wrote
itself, and vice versa. Which columns a model has comes from the model (storage/dialect), never
from a list typed here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from functools import cache
from typing import Any

from tortoise import fields
from tortoise.exceptions import ValidationError
from tortoise.models import Model
from tortoise.validators import MaxLengthValidator

from storage.dialect import Target, columns, dialect_of, fields_by_column, instance, quote, table, write
from storage.fields import EncryptedJSONField

_PLAIN_FIELDS = (fields.CharField, fields.TextField, fields.IntField, fields.BigIntField, fields.BooleanField)


def to_db(model: type[Model], column: str, value: Any) -> Any:
    return converter(model, column)(value)


@cache
def converter(model: type[Model], column: str) -> Callable[[Any], Any]:
    """The field's own `to_db_value`, with its common cases inlined. Anything unusual (None, a str
    for a JSON column, a naive datetime) takes the field's path, so its checks still apply."""
    field = fields_by_column(model)[column]
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
def converters(model: type[Model], cols: tuple[str, ...]) -> tuple[Callable[[Any], Any], ...]:
    return tuple(converter(model, c) for c in cols)


@cache
def _temporal_parsers(model: type[Model]) -> tuple[tuple[str, Callable[[str], Any]], ...]:
    out: list[tuple[str, Callable[[str], Any]]] = []
    for column, field in fields_by_column(model).items():
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
    return instance(model, values)


def as_datetime(value: Any) -> datetime | None:
    """A stored datetime as an aware UTC value (SQLite hands back text)."""
    if value is None or isinstance(value, datetime):
        return value.astimezone(UTC) if value is not None else None
    parsed = datetime.fromisoformat(value)
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def as_json(value: Any) -> Any:
    """A stored JSON column's value (SQLite hands back text)."""
    return json.loads(value) if isinstance(value, (str, bytes)) else value


@cache
def insert_sql(model: type[Model], cols: tuple[str, ...], ignore_conflicts: bool) -> str:
    names = ", ".join(quote(c) for c in cols)
    marks = ", ".join("?" for _ in cols)
    tail = " ON CONFLICT DO NOTHING" if ignore_conflicts else ""
    return f"INSERT INTO {quote(table(model))} ({names}) VALUES ({marks}){tail}"


async def insert_rows(
    target: Target, model: type[Model], rows: Sequence[dict[str, Any]], *, ignore_conflicts: bool = False
) -> None:
    """Insert plain rows (column -> python value); every row must name the same columns."""
    if not rows:
        return
    cols = tuple(rows[0])
    convert = converters(model, cols)
    await write(target, insert_sql(model, cols, ignore_conflicts),
                [[f(r[c]) for f, c in zip(convert, cols, strict=True)] for r in rows])


@cache
def _update_sql(model: type[Model], cols: tuple[str, ...], where: tuple[str, ...]) -> str:
    sets = ", ".join(f"{quote(c)} = ?" for c in cols)
    cond = " AND ".join(f"{quote(c)} = ?" for c in where)
    return f"UPDATE {quote(table(model))} SET {sets} WHERE {cond}"


def update_statement(model: type[Model], changes: dict[str, Any], where: dict[str, Any]) -> tuple[str, list[Any]]:
    """UPDATE model SET changes WHERE every `where` column equals its value: (sql, values)."""
    cols, keys = tuple(changes), tuple(where)
    values = [f(changes[c]) for f, c in zip(converters(model, cols), cols, strict=True)]
    values += [f(where[c]) for f, c in zip(converters(model, keys), keys, strict=True)]
    return _update_sql(model, cols, keys), values


async def update_where(conn: Any, model: type[Model], changes: dict[str, Any], where: dict[str, Any]) -> int:
    """UPDATE model SET changes WHERE every `where` column equals its value; rows changed."""
    sql, values = update_statement(model, changes, where)
    n, _ = await dialect_of(conn).query(conn, sql, values)
    return n


@cache
def _select_sql(model: type[Model], cols: tuple[str, ...], where: tuple[str, ...]) -> str:
    cond = " AND ".join(f"{quote(c)} = ?" for c in where)
    return f"SELECT {', '.join(quote(c) for c in cols)} FROM {quote(table(model))} WHERE {cond}"


async def select_one(conn: Any, model: type[Model], where: dict[str, Any]) -> Any:
    """The row of `model` matching every `where` column, as a model instance; None when none."""
    _, rows = await dialect_of(conn).query(conn, _select_sql(model, columns(model), tuple(where)),
                                           list(where.values()))
    # The statement names exactly the model's columns, so the row is the instance's values.
    return from_row(model, dict(rows[0])) if rows else None
