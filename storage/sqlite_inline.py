"""SQLite statements run inline, on the event loop's own thread (the connection under Tortoise's
SQLite client; the client itself, `InlineSqliteClient`, is in storage/dialect.py with the other
Tortoise internals).

Tortoise talks to SQLite through aiosqlite, which runs every statement on a worker thread and hands
the result back through the event loop. One workflow event runs about six statements, and each
hand-over (queue, thread wake-up, self-pipe, loop wake-up) cost more than SQLite spent on the
statement: on this machine ~200 µs per hop against 10–50 µs of work. A local SQLite file in WAL
mode with synchronous=NORMAL never waits on the disk for a commit, so running the statement where
we stand is both faster and simpler. Tortoise's own client (its lock, transactions, savepoints,
error translation) is kept unchanged; only the connection object under it is swapped for
`InlineConnection`, which offers the part of aiosqlite's interface Tortoise uses.

Waiting on another process's write lock (`python -m bot directory import` beside a running bot)
must not stall the loop, so SQLite's own busy wait is kept short and the rest of the wait is an
`asyncio.sleep` between attempts. Transactions begin IMMEDIATE: the write lock is taken up front,
so a statement inside a transaction never meets a lock it would have to wait for.

Checkpoints (copying the WAL back into the database file, with its fsync) are the one slow, disk-
bound part of a commit; left automatic they would stall the loop every thousand pages. The
connection turns them off and a `Checkpointer` thread, on a connection of its own, runs passive
checkpoints every second instead: they never block a writer, and the fsync happens off the loop.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger("storage.sqlite")
BUSY_TIMEOUT_SECONDS = 5.0  # total wait for another process's write lock, as sqlite3's default
_INLINE_BUSY_SECONDS = 0.002  # the part of it SQLite may spend blocking the loop per attempt


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc)
    return "database is locked" in text or "database is busy" in text


class InlineCursor:
    """The slice of `aiosqlite.Cursor` Tortoise uses."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._cursor.close()


class InlineConnection:
    """An `aiosqlite.Connection` look-alike whose calls run synchronously on the caller's thread."""

    def __init__(self, path: str) -> None:
        self._connection: sqlite3.Connection | None = sqlite3.connect(
            path, isolation_level=None, timeout=_INLINE_BUSY_SECONDS, check_same_thread=False
        )
        self._connection.row_factory = sqlite3.Row

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._connection is None:
            raise ValueError("no active connection")
        return self._connection

    async def _single(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run one statement now. Outside a transaction, if another process holds the write lock,
        wait for it without blocking the loop: the statement did not run, so running it again is
        safe. (Inside a transaction SQLite advises rolling back instead; with BEGIN IMMEDIATE a
        statement there never meets the lock anyway.)"""
        if self._conn.in_transaction:
            return fn(*args)
        deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
        delay = 0.001
        while True:
            try:
                return fn(*args)
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() + delay > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _statement(self, sql: str, parameters: Iterable[Any] | None) -> sqlite3.Cursor:
        if sql == "BEGIN":  # Tortoise's transactions: take the write lock at the start
            sql = "BEGIN IMMEDIATE"
        return self._conn.execute(sql, () if parameters is None else parameters)

    async def execute(self, sql: str, parameters: Iterable[Any] | None = None) -> InlineCursor:
        return InlineCursor(await self._single(self._statement, sql, parameters))

    async def execute_fetchall(self, sql: str, parameters: Iterable[Any] | None = None) -> list[Any]:
        return await self._single(lambda: self._statement(sql, parameters).fetchall())

    async def execute_insert(self, sql: str, parameters: Iterable[Any] | None = None) -> Any:
        def run() -> Any:
            cursor = self._statement(sql, parameters)
            return cursor.execute("SELECT last_insert_rowid()").fetchone()

        return await self._single(run)

    async def executemany(self, sql: str, parameters: Iterable[Iterable[Any]]) -> InlineCursor:
        # Tortoise runs it inside BEGIN ... COMMIT (its own or the caller's): never retried, since in
        # autocommit mode each row would be its own transaction and a retry would repeat the first.
        return InlineCursor(self._conn.executemany(sql, parameters))

    async def executescript(self, script: str) -> InlineCursor:
        # Not retried: a script that met the lock halfway would have run its first statements.
        return InlineCursor(self._conn.executescript(script))

    async def commit(self) -> None:
        self._conn.commit()

    async def rollback(self) -> None:
        self._conn.rollback()

    async def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    @property
    def total_changes(self) -> int:
        return self._conn.total_changes

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction


class Checkpointer:
    """Passive WAL checkpoints on a thread and connection of their own, every `interval` seconds."""

    def __init__(self, path: str, interval: float = 1.0) -> None:
        self.path = path
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sqlite-checkpoint:{path}", daemon=True)
        self.checkpoints = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=0)
        try:
            while not self._stop.wait(self.interval):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.checkpoints += 1
                except sqlite3.OperationalError as exc:  # another checkpoint running: next time
                    log.debug("checkpoint skipped: %s", exc)
        finally:
            conn.close()
