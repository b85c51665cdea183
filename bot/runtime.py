"""Process-wide setup shared by the CLI, the server and the tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bot.settings import Settings
from storage import crypto
from storage.db import close_db, init_db


def configure(settings: Settings) -> None:
    crypto.configure(settings.secret_bytes())


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[None]:
    configure(settings)
    await init_db(settings.database_url)
    try:
        yield
    finally:
        await close_db()
