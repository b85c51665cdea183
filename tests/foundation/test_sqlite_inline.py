"""The inline SQLite backend: statements run on the loop's thread, another process's write lock is
waited for without stalling the loop, and transactions keep their all-or-nothing behaviour."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from tortoise import connections
from tortoise.exceptions import OperationalError, TransactionManagementError
from tortoise.transactions import in_transaction

from config.settings import Settings
from storage import dialect, sqlite_inline
from storage.models import Employee
from tests.conftest import PG_URL

pytestmark = pytest.mark.skipif(bool(PG_URL), reason="SQLite backend only")


def _path(settings: Settings) -> str:
    return settings.database_url[len("sqlite://"):].split("?", 1)[0]


def _other_process(settings: Settings) -> sqlite3.Connection:
    # A second connection to the same file stands in for `python -m bot directory import` beside the bot.
    return sqlite3.connect(_path(settings), isolation_level=None, timeout=0)


async def test_backend_is_inline(db: Settings) -> None:
    conn = connections.get("default")
    assert isinstance(conn, dialect.InlineSqliteClient)
    await Employee.create(employee_id="X1", name="甲")
    assert await Employee.filter(employee_id="X1").count() == 1


async def test_waits_for_another_writer_without_blocking_the_loop(db: Settings) -> None:
    other = _other_process(db)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO employee (employee_id, name, department, position, roles, city, active, "
                  "created_at, updated_at) VALUES ('X0', '乙', '', '', '', '', 1, '2025-01-01', '2025-01-01')")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    tick_task = asyncio.create_task(ticker())
    asyncio.get_running_loop().call_later(0.3, other.commit)
    try:
        async with in_transaction():
            await Employee.create(employee_id="X2", name="丙")
    finally:
        tick_task.cancel()
        other.close()
    assert {e.employee_id for e in await Employee.all()} == {"X0", "X2"}
    # The loop kept running while the lock was held (a blocked loop would have ticked about once).
    assert ticks >= 10


async def test_gives_up_with_a_clear_error_when_the_lock_is_never_released(
    db: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_inline, "BUSY_TIMEOUT_SECONDS", 0.2)
    other = _other_process(db)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises((OperationalError, TransactionManagementError), match="database is locked"):
            async with in_transaction():
                await Employee.create(employee_id="X3", name="丁")
    finally:
        other.rollback()
        other.close()
    assert not await Employee.filter(employee_id="X3").exists()
    # Once the lock is gone the same connection works again.
    await Employee.create(employee_id="X3", name="丁")
    assert await Employee.filter(employee_id="X3").exists()


async def test_failed_transaction_rolls_back_everything(db: Settings) -> None:
    with pytest.raises(RuntimeError):
        async with in_transaction():
            await Employee.create(employee_id="X4", name="戊")
            raise RuntimeError("boom")
    assert not await Employee.filter(employee_id="X4").exists()
    assert connections.get("default")._connection.in_transaction is False


async def test_checkpoints_run_off_the_loop(db: Settings) -> None:
    client = connections.get("default")
    assert (await client.execute_query("PRAGMA wal_autocheckpoint"))[1][0][0] == 0
    assert client.checkpointer is not None
    await Employee.create(employee_id="X5", name="己")
    # The main database file (read without its WAL) gets the row once the checkpointer has run.
    main_file = sqlite3.connect(f"file:{_path(db)}?immutable=1", uri=True)
    try:
        for _ in range(60):
            if main_file.execute("SELECT count(*) FROM employee WHERE employee_id = 'X5'").fetchone()[0]:
                break
            await asyncio.sleep(0.1)
            main_file.close()
            main_file = sqlite3.connect(f"file:{_path(db)}?immutable=1", uri=True)
        else:
            raise AssertionError("the row never reached the main database file")
    finally:
        main_file.close()
    # The thread counts a checkpoint after SQLite returns from it, which can be just after the row
    # is visible in the file.
    for _ in range(50):
        if client.checkpointer.checkpoints >= 1:
            break
        await asyncio.sleep(0.02)
    assert client.checkpointer.checkpoints >= 1


async def test_a_single_statement_outside_a_transaction_also_waits(db: Settings) -> None:
    other = _other_process(db)
    other.execute("BEGIN IMMEDIATE")
    asyncio.get_running_loop().call_later(0.2, other.commit)
    try:
        await Employee.create(employee_id="X6", name="庚")  # autocommit INSERT
    finally:
        other.close()
    assert await Employee.filter(employee_id="X6").exists()
