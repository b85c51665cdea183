"""Database lifecycle: Tortoise config, init/close, migrations."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tortoise import Tortoise
from tortoise.backends.base.config_generator import expand_db_url

from storage import logsafe

MODELS = ["storage.models"]
# Before any connection exists: every process that reaches the database imports this module.
logsafe.install()


def private_sqlite_file(path: Path) -> None:
    """Create the database file 0600 before SQLite does (it would use 0644), and tighten an existing
    one. SQLite gives its -wal and -shm files the database file's mode; old ones are tightened too."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    for extra in ("", "-wal", "-shm", "-journal"):
        try:
            os.chmod(f"{path}{extra}", 0o600)
        except FileNotFoundError:
            pass


def tortoise_config(url: str) -> dict[str, Any]:
    if url.startswith("sqlite://") and not url.startswith("sqlite://:memory:"):
        Path(url[len("sqlite://") :].split("?", 1)[0]).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if "synchronous" not in url:
            # WAL + NORMAL: a committed transaction survives a process crash; only an OS crash or
            # power loss may drop the last commits. FULL costs an fsync per event (~10 ms here).
            url += ("&" if "?" in url else "?") + "synchronous=NORMAL"
    connection: str | dict[str, Any] = url
    if url.startswith("sqlite://"):
        # Same client and settings as Tortoise's own SQLite backend, statements run inline
        # (storage/sqlite_inline.py says why; the client is in storage/dialect.py).
        connection = expand_db_url(url)
        connection["engine"] = "storage.dialect"
        if "journal_size_limit" not in url:
            # Tortoise's default (16 KiB) truncates the WAL after every checkpoint, and regrowing
            # the file nearly doubled the cost of a commit.
            connection["credentials"]["journal_size_limit"] = 64 * 1024 * 1024
    return {
        "connections": {"default": connection},
        "apps": {
            "models": {
                "models": MODELS,
                "default_connection": "default",
                "migrations": "storage.migrations",
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


# For the `tortoise` CLI (makemigrations): `tortoise -c storage.db.TORTOISE_ORM makemigrations`.
TORTOISE_ORM = tortoise_config("sqlite://data/makemigrations.sqlite3")


def _private(url: str) -> str:
    if url.startswith("sqlite://") and not url.startswith("sqlite://:memory:"):
        private_sqlite_file(Path(url[len("sqlite://") :].split("?", 1)[0]))
    return url


async def init_db(url: str) -> None:
    """`url` is the caller's DATABASE_URL (settings are handed down, never read here)."""
    await Tortoise.init(config=tortoise_config(_private(url)))


async def close_db() -> None:
    await Tortoise.close_connections()


async def migrate(url: str) -> None:
    """Apply all migrations (idempotent)."""
    from tortoise.migrations.api import migrate as run_migrations

    await run_migrations(config=tortoise_config(_private(url)))
    await Tortoise.close_connections()
