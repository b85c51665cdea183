"""What storage/dialect relies on in Tortoise, exercised through the real path on the test database
(SQLite, or PostgreSQL with TEST_DATABASE_URL): a Tortoise upgrade that breaks any of it fails here,
by name, before it breaks a write somewhere else."""

from __future__ import annotations

import inspect
from dataclasses import fields as dataclass_fields
from datetime import UTC, datetime

import pytest
from tortoise import connections
from tortoise.backends.sqlite.client import SqliteClient
from tortoise.migrations.executor import MigrationExecutor
from tortoise.transactions import in_transaction

from storage import casestore, dialect
from storage.models import Case, CaseStep, Employee, OutboxMessage
from storage.rows import from_row, select_one
from storage.sqlite_inline import InlineConnection
from tests.conftest import PG_URL
from workflow.model import StepState

T0 = datetime(2026, 3, 2, 1, 2, 3, 456000, tzinfo=UTC)


async def _table_columns(conn, name: str) -> list[str]:
    if dialect.dialect_of(conn).name == "postgres":
        rows = await conn.execute_query_dict(
            "SELECT column_name FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position",
            [name])
        return [r["column_name"] for r in rows]
    return [r["name"] for r in await conn.execute_query_dict(f'PRAGMA table_info("{name}")')]


async def test_model_meta_gives_the_columns_the_migrations_created(db) -> None:
    """`_meta.db_fields / fields_db_projection / fields_map / db_table`: the column lists every
    hand-written statement is built from."""
    conn = connections.get("default")
    for model in (Case, CaseStep, OutboxMessage, Employee):
        assert sorted(dialect.columns(model)) == sorted(await _table_columns(conn, dialect.table(model)))
        assert set(dialect.fields_by_column(model)) == set(dialect.columns(model))


def test_step_columns_are_the_step_state_fields() -> None:
    """`case_step` columns are derived from the model, and each is a `StepState` field of the same
    name: a column added to one and not the other fails here, not in a half-written row."""
    assert set(casestore.step_columns()) == {f.name for f in dataclass_fields(StepState)}
    assert not set(casestore.STEP_IDENTITY) & set(casestore.step_columns())


def test_init_from_db_builds_an_instance() -> None:
    """`Model._init_from_db`: an instance from a row, without Tortoise's query path."""
    assert inspect.ismethod(Case._init_from_db)
    case = dialect.instance(Case, {"id": "OB-X", "version": 3, "audit_seq": 1, "status": "open"})
    assert (case.id, case.version, case.audit_seq, case._saved_in_db) == ("OB-X", 3, 1, True)


async def test_rows_read_by_hand_equal_the_orm_s(demo_org) -> None:
    emp = await Employee.get(employee_id="E003")
    conn = connections.get("default")
    by_hand = await select_one(conn, Employee, {"employee_id": "E003"})
    assert by_hand is not None
    for name in emp._meta.db_fields:
        assert getattr(by_hand, name) == getattr(emp, name), name


async def test_fetch_returns_what_an_update_returns(demo_org) -> None:
    """The asyncpg client's `execute_query` drops an UPDATE's RETURNING rows; `fetch` must not."""
    conn = connections.get("default")
    rows = await dialect.dialect_of(conn).fetch(
        conn, 'UPDATE "employee" SET "city" = ? WHERE "employee_id" = ? RETURNING "employee_id", "city"',
        ["上海", "E003"])
    assert rows == [{"employee_id": "E003", "city": "上海"}]


@pytest.mark.skipif(bool(PG_URL), reason="the SQLite client and its raw connection")
async def test_sqlite_client_and_raw_connection(db) -> None:
    """The SQLite engine is our `SqliteClient` subclass; inside a transaction its `_connection` is
    the inline connection a batch runs on in one call; the migration executor takes it for
    SQLite by its module name."""
    conn = connections.get("default")
    assert isinstance(conn, dialect.InlineSqliteClient) and issubclass(dialect.InlineSqliteClient, SqliteClient)
    assert {"create_connection", "_post_connect", "close"} <= set(dir(SqliteClient))
    assert isinstance(conn.filename, str) and isinstance(conn.pragmas, dict)
    editor = MigrationExecutor.__new__(MigrationExecutor)
    editor.connection = conn
    assert type(editor._schema_editor()).__name__ == "SqliteSchemaEditor"
    async with in_transaction() as tx:
        assert isinstance(tx._connection, InlineConnection)
        calls: list[int] = []

        async def each(*_a) -> bool:
            calls.append(1)
            return True

        sqlite = dialect.dialect_of(tx)
        sqlite._run_each = each  # type: ignore[method-assign]
        try:
            batch = dialect.Batch()
            batch.add('UPDATE "employee" SET "city" = ? WHERE "id" = ?', [["x", 1], ["y", 2]])
            batch.add('UPDATE "employee" SET "city" = ? WHERE "id" = ?', [["z", -1]], exactly_one=True)
            assert await batch.flush(tx) is False  # the compare-and-set changed nothing
        finally:
            del sqlite._run_each
        assert calls == []  # ran on the raw connection, not statement by statement


@pytest.mark.skipif(not PG_URL, reason="PostgreSQL's dialect: needs TEST_DATABASE_URL")
async def test_postgres_dialect(db) -> None:
    conn = connections.get("default")
    d = dialect.dialect_of(conn)
    assert d is dialect.POSTGRES and d.skip_locked == " FOR UPDATE SKIP LOCKED"
    assert d.sql('SELECT ? , "a?" ?') == 'SELECT $1 , "a$2" $3'  # placeholders only; names never hold `?`
    async with in_transaction() as tx:
        batch = dialect.Batch()
        batch.add('UPDATE "employee" SET "city" = ? WHERE "id" = ?', [["z", -1]], exactly_one=True)
        assert await batch.flush(tx) is False


async def test_a_case_row_read_by_hand_is_the_orm_s(demo_org) -> None:
    from bot.app import build_service

    service = build_service(demo_org)
    emp = await Employee.get(employee_id="E003")
    out = await service.start_case(employee=emp, template_id="probation", last_day=None, reason="r",
                                   created_by="E001", at=T0)
    loaded = await casestore.load(connections.get("default"), out.case_id)
    assert loaded is not None
    case, state = loaded
    orm = await Case.get(id=out.case_id)
    for name in orm._meta.db_fields:
        assert getattr(case, name) == getattr(orm, name), name
    steps = await CaseStep.filter(case_id=out.case_id).order_by("position")
    assert list(state.steps) == [s.step_id for s in steps]
    for s in steps:
        assert casestore.step_values(state.steps[s.step_id]) == {c: getattr(s, c) for c in casestore.step_columns()}
    assert from_row(Case, {"id": "OB-Y", "started_at": "2026-03-02T01:02:03+00:00"}).started_at == T0.replace(
        microsecond=0)
