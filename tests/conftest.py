"""Shared fixtures: a real, migrated database per test (SQLite by default, PostgreSQL when
TEST_DATABASE_URL is set), settings pointing at a temp data dir, and the demo directory."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import pytest
from tortoise import Tortoise, connections

from config.settings import Settings, load_settings
from storage import crypto
from storage.db import close_db, init_db, migrate

PG_URL = os.environ.get("TEST_DATABASE_URL", "")
ROOT = Path(__file__).resolve().parent.parent
DEMO_CSV = ROOT / "bot" / "demo_data" / "org.csv"
TABLES = ["case_access", "emulator_message", "form_link", "platform_usage", "upload",
          "signature", "signing_link", "document", "checkpoint", "timer", "outbox", "inbox",
          "audit_entry", "case_step", '"case"', "employee"]


@contextmanager
def emulator_env(**own: str) -> Iterator[None]:
    """The emulator's own settings (`token="..."` is EMULATOR_TOKEN) for the connectors built inside:
    like every platform it reads them from the environment when it is created, not from the core Settings."""
    with mock.patch.dict(os.environ, {f"EMULATOR_{k.upper()}": v for k, v in own.items()}):
        yield


def pytest_report_header(config: pytest.Config) -> str:
    return f"database: {'PostgreSQL ' + PG_URL if PG_URL else 'SQLite (temp file per test)'}"


@pytest.fixture(scope="session")
def _migrated_template(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Migrate once per session: a template SQLite file to copy, or the PostgreSQL schema."""
    if PG_URL:
        async def reset() -> None:
            await Tortoise.init(config={"connections": {"default": PG_URL},
                                       "apps": {"models": {"models": ["storage.models"]}}})
            conn = connections.get("default")
            await conn.execute_script("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
            await Tortoise.close_connections()
            await migrate(PG_URL)

        asyncio.run(reset())
        return PG_URL
    path = tmp_path_factory.mktemp("dbtemplate") / "template.sqlite3"
    asyncio.run(migrate(f"sqlite://{path}"))
    return str(path)


@pytest.fixture
def db_url(_migrated_template: str, tmp_path: Path) -> str:
    if PG_URL:
        return PG_URL
    target = tmp_path / "test.sqlite3"
    shutil.copy(_migrated_template, target)
    return f"sqlite://{target}"


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    return load_settings(database_url=db_url, data_dir=data, secret_key="test-secret-key-0123456789",
                         public_base_url="http://127.0.0.1:8080", _env_file=None)


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Settings]:
    crypto.configure(settings.secret_bytes())
    await init_db(settings.database_url)
    if PG_URL:
        conn = connections.get("default")
        await conn.execute_script(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE;")
    try:
        yield settings
    finally:
        await close_db()


@pytest.fixture
async def demo_org(db: Settings) -> Settings:
    from storage.directory import import_csv

    report = await import_csv(DEMO_CSV.read_text(encoding="utf-8"))
    assert report.applied, report.errors
    return db


@pytest.fixture
def env_clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for k in list(os.environ):
        if k in Settings.model_fields or k.upper() in {f.upper() for f in Settings.model_fields}:
            monkeypatch.delenv(k, raising=False)
    yield
