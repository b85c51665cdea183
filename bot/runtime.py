"""Process-wide setup shared by the CLI, the server and the tests."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from config.settings import Settings
from storage import crypto
from storage.db import close_db, init_db

# Who claims an outbox row or a timer (the lease's owner): one name per process, shared by both loops
# so an operator reading a stuck claim sees which replica holds it.
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


def private_data_dir(data_dir: Path) -> None:
    """DATA_DIR holds the database, the secret and the keys: owner only (0700), its secrets 0600,
    also when an older version created them world-readable."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(data_dir, 0o700)
    keydir = data_dir / "keys"
    if keydir.is_dir():
        os.chmod(keydir, 0o700)
    for path in (data_dir / "secret_key", *keydir.glob("*.key.pem")):
        if path.is_file():
            os.chmod(path, 0o600)


def configure(settings: Settings) -> None:
    private_data_dir(Path(settings.data_dir))
    crypto.configure(settings.secret_bytes())


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[None]:
    configure(settings)
    await init_db(settings.database_url)
    try:
        yield
    finally:
        await close_db()
