"""The database dialect: every SQL difference between SQLite and PostgreSQL, and every Tortoise
internal this project relies on, in this one module.

`dialect_of(conn)` answers a `Dialect` for a Tortoise connection (the default one or a
transaction's). The two implementations differ in:

- placeholders: statements are written with `?`; PostgreSQL wants `$1, $2, ...`;
- the claim of a queue row: PostgreSQL locks the candidates with `FOR UPDATE SKIP LOCKED`, so
  replicas take disjoint rows instead of queueing on the same ones; SQLite needs nothing (a write
  transaction holds the database's only write lock, BEGIN IMMEDIATE, see storage/sqlite_inline);
- a batch of writes: on SQLite every statement is a hop to the connection, and the whole batch is
  run in one call on the raw `sqlite3` connection; on PostgreSQL the statements run in order.

Tortoise internals used (tests/foundation/test_dialect_internals.py fails if an upgrade breaks any):
`Model._meta.db_fields / fields_db_projection / fields_map / db_table` (column lists derived from
the models), `Model._init_from_db` (a model instance from a row without Tortoise's query path),
a SQLite client's `_connection` (our `InlineConnection`, for the raw batch), and the subclass of
`SqliteClient` whose `create_connection` installs that connection (`client_class`, the engine
named in storage/db.py), which the migration executor recognises as SQLite by its module name.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from functools import cache
from typing import Any

from tortoise import connections
from tortoise.backends.sqlite.client import SqliteClient
from tortoise.exceptions import IntegrityError, OperationalError
from tortoise.models import Model

from storage.sqlite_inline import Checkpointer, InlineConnection

_PLACEHOLDER = re.compile(r"\?")
BatchItem = tuple[str, list[list[Any]], bool]  # (sql, parameter rows, exactly_one)


class Dialect:
    """SQLite: the base behaviour. Statements use `?` placeholders and double-quoted names."""

    name = "sqlite"
    # Appended to a claim's candidate SELECT: lock the rows, skipping those another replica locked.
    skip_locked = ""

    def sql(self, text: str) -> str:
        return text

    async def query(self, conn: Any, sql: str, values: Sequence[Any] = ()) -> tuple[int, Sequence[Any]]:
        """Run one statement; (rows affected or returned, rows)."""
        return await conn.execute_query(self.sql(sql), list(values))

    async def fetch(self, conn: Any, sql: str, values: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows as column -> value, also of `UPDATE ... RETURNING` (the asyncpg client's
        `execute_query` drops what an UPDATE returns; `execute_query_dict` fetches everywhere)."""
        return list(await conn.execute_query_dict(self.sql(sql), list(values)))

    async def many(self, conn: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """One statement for many parameter rows: a single driver call."""
        if rows:
            await conn.execute_many(self.sql(sql), [list(r) for r in rows])

    async def run(self, conn: Any, items: list[BatchItem]) -> bool:
        """Run queued writes in order; False (and nothing after it run) when an `exactly_one`
        statement changed no row. SQLite: all of them in one call on the raw connection."""
        raw = getattr(conn, "_connection", None)
        if isinstance(raw, InlineConnection):
            try:
                return _run_sqlite(raw._conn, items)
            except sqlite3.IntegrityError as exc:
                raise IntegrityError(exc) from exc
            except sqlite3.OperationalError as exc:
                raise OperationalError(exc) from exc
        return await self._run_each(conn, items)

    async def _run_each(self, conn: Any, items: list[BatchItem]) -> bool:
        for sql, rows, exactly_one in items:
            if len(rows) == 1:
                n, _ = await self.query(conn, sql, rows[0])
                if exactly_one and n != 1:
                    return False
            else:
                await self.many(conn, sql, rows)
        return True


class PostgresDialect(Dialect):
    name = "postgres"
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def sql(self, text: str) -> str:
        return _numbered(text)

    async def run(self, conn: Any, items: list[BatchItem]) -> bool:
        return await self._run_each(conn, items)


SQLITE = Dialect()
POSTGRES = PostgresDialect()


def dialect_of(conn: Any) -> Dialect:
    return POSTGRES if conn.capabilities.dialect == "postgres" else SQLITE


def default_conn() -> Any:
    return connections.get("default")


@cache
def _numbered(sql: str) -> str:
    counter = iter(range(1, 1_000_000))
    return _PLACEHOLDER.sub(lambda _m: f"${next(counter)}", sql)


def _run_sqlite(db: sqlite3.Connection, items: list[BatchItem]) -> bool:
    # Inside the caller's open transaction, on the loop's own thread (storage/sqlite_inline).
    for sql, rows, exactly_one in items:
        cursor = db.execute(sql, rows[0]) if len(rows) == 1 else db.executemany(sql, rows)
        if exactly_one and cursor.rowcount != 1:
            return False
    return True


class Batch:
    """Writes queued in order and sent together by `flush` (one call on SQLite). A statement added
    with `exactly_one` is a compare-and-set: when it changes no row, nothing after it runs and
    `flush` returns False (the caller raises, which rolls the transaction back)."""

    def __init__(self) -> None:
        self.items: list[BatchItem] = []

    def add(self, sql: str, rows: Sequence[Sequence[Any]], *, exactly_one: bool = False) -> None:
        if rows:
            self.items.append((sql, [list(r) for r in rows], exactly_one))

    async def flush(self, conn: Any) -> bool:
        items, self.items = self.items, []
        return True if not items else await dialect_of(conn).run(conn, items)


Target = Any  # a transaction's connection (runs now) or a Batch (queued)


async def write(target: Target, sql: str, rows: Sequence[Sequence[Any]], *, exactly_one: bool = False) -> bool:
    """Run (or queue, on a Batch) one statement for each parameter row."""
    if isinstance(target, Batch):
        target.add(sql, rows, exactly_one=exactly_one)
        return True
    if not rows:
        return True
    d = dialect_of(target)
    if len(rows) == 1:
        n, _ = await d.query(target, sql, rows[0])
        return n == 1 or not exactly_one
    await d.many(target, sql, rows)
    return True


# ---- the models' shape (Tortoise's `_meta`) ------------------------------------------------
def columns(model: type[Model]) -> tuple[str, ...]:
    """The model's columns, in field order. A foreign key's column joins `_meta` only when Tortoise
    initialises the models, so the answer is cached per shape of `_meta`, never from before that."""
    return _columns(model, len(model._meta.fields_db_projection))


@cache
def _columns(model: type[Model], _shape: int) -> tuple[str, ...]:
    meta = model._meta
    return tuple(col for name, col in meta.fields_db_projection.items() if name in meta.db_fields)


def fields_by_column(model: type[Model]) -> dict[str, Any]:
    return _fields_by_column(model, len(model._meta.fields_db_projection))


@cache
def _fields_by_column(model: type[Model], _shape: int) -> dict[str, Any]:
    meta = model._meta
    return {col: meta.fields_map[name] for name, col in meta.fields_db_projection.items() if name in meta.db_fields}


def table(model: type[Model]) -> str:
    return str(model._meta.db_table)


def quote(name: str) -> str:
    return f'"{name}"'


def instance(model: type[Model], values: dict[str, Any]) -> Any:
    """A model instance from column values, as Tortoise builds one from a fetched row."""
    return model._init_from_db(**values)


# ---- the SQLite engine (named in storage/db.py) --------------------------------------------
class InlineSqliteClient(SqliteClient):
    """Tortoise's SQLite client with its connection swapped for `InlineConnection` (statements
    run on the loop's thread; storage/sqlite_inline.py says why) and WAL checkpoints moved to a
    thread of their own."""

    checkpointer: Checkpointer | None = None

    async def create_connection(self, with_db: bool) -> None:
        if not self._connection:
            self._connection = InlineConnection(self.filename)  # type: ignore[assignment]
            for pragma, value in self.pragmas.items():
                cursor = await self._connection.execute(f"PRAGMA {pragma}={value}")
                await cursor.close()
            mode = (await self._connection.execute_fetchall("PRAGMA journal_mode"))[0][0]
            if str(mode).lower() == "wal":
                await self._connection.execute("PRAGMA wal_autocheckpoint=0")
                self.checkpointer = Checkpointer(self.filename)
                self.checkpointer.start()
            await self._post_connect()

    async def close(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.stop()
            self.checkpointer = None
        await super().close()  # the last connection to close checkpoints what is left


# Tortoise's migration executor picks its schema editor by the client class's module name
# ("sqlite" in it: SQLite's editor); this class lives here with the other internals, so it says so.
InlineSqliteClient.__module__ = "storage.dialect.sqlite"
client_class = InlineSqliteClient
