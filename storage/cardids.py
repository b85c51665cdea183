"""Card ids handed to platforms: short, in every platform's alphabet, and mapped back to their row.

An outbox key (`<case>:<step>:<purpose>:<employee>`) is readable and unique, but `:` is outside
WeCom's task_id alphabet `[A-Za-z0-9_@-]` and an employee id may hold anything. The id given to a
platform is `o<row id>-<16 base32 chars of sha256(key)>`: the same row always gets the same id
(so a resend after a crash is answered with the card already there), the row is found back by its
primary key, and the hash ties the id to that row's key so a guessed number finds nothing.

Rows delivered before this scheme carry their raw key as card id on the platform: they keep it
(`card_id_of`), and `find` still accepts a raw key.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

from storage import hotpath
from storage.models import OutboxMessage

_ID = re.compile(r"^o(?P<row>[0-9]{1,19})-(?P<digest>[a-z2-7]{16})$")


def _digest(key: str) -> str:
    # 16 base32 characters are the first 10 bytes (base32 encodes 5 bytes at a time, each group on
    # its own): the same id as encoding the whole digest and cutting it, at a third of the cost
    # (base64's base32 is pure Python, run on every card sent and every tap).
    return base64.b32encode(hashlib.sha256(key.encode()).digest()[:10]).decode().lower()


def encode(row_id: int, key: str) -> str:
    return f"o{row_id}-{_digest(key)}"


def card_id_of(row: OutboxMessage) -> str:
    """The id this row's card has (or will have) on its platform."""
    if row.delivery is None and row.platform_message_id:
        return row.key  # delivered before card ids were encoded: the platform knows it by its key
    return encode(row.id, row.key)


async def find(conn: Any, card_id: str) -> OutboxMessage | None:
    """The outbox row a platform's card id names, or None (unknown, forged, or of another row)."""
    m = _ID.fullmatch(card_id)
    if m is None:
        row = await hotpath.get_one(conn, OutboxMessage, "key", card_id)
        # A raw key is accepted only for the cards that were given it.
        return row if row is not None and row.delivery is None else None
    row = await hotpath.get_one(conn, OutboxMessage, "id", int(m["row"]))
    if row is None or _digest(row.key) != m["digest"]:
        return None
    return row
