"""The emulator's panes in the database (`emulator_message`): hand-written statements (storage/dialect).

Every statement finds its rows through an index: (recipient, seq) for a pane and its newest
number, the unique card id for a card or a keyed line. A pane's `seq` is "the newest number in
that pane plus one", computed inside the writing statement; two writers that computed the same
number meet the unique (recipient, seq) index, and the later one retries with a fresh number
(on PostgreSQL it first waits for the earlier one to commit), so a change is never numbered below
one a poller has already seen.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tortoise.exceptions import IntegrityError

from storage.dialect import default_conn, dialect_of
from storage.models import EmulatorMessage
from storage.rows import as_datetime, as_json

ATTEMPTS = 64  # writers racing for one pane: with n at once the last may need n tries (each sees a winner)
_COLUMNS = ('"id", "recipient", "seq", "kind", "sender", "card_id", "text", "card", "html", "version", "at"')
_AT = EmulatorMessage._meta.fields_map["at"]


@dataclass(frozen=True)
class Row:
    id: int
    recipient: str
    seq: int
    kind: str
    sender: str
    card_id: str | None
    text: str
    card: dict[str, Any] | None
    html: str
    version: int
    at: datetime


def _row(r: dict[str, Any]) -> Row:
    return Row(id=r["id"], recipient=r["recipient"], seq=r["seq"], kind=r["kind"], sender=r["sender"],
               card_id=r["card_id"], text=r["text"], card=as_json(r["card"]), html=r["html"], version=r["version"],
               at=as_datetime(r["at"]))  # type: ignore[arg-type]


async def _rows(sql: str, values: list[Any]) -> list[dict[str, Any]]:
    """Rows as column -> value. Through `execute_query_dict`, which fetches on every backend: the
    asyncpg client's `execute_query` drops what an INSERT or UPDATE ... RETURNING returns."""
    conn = default_conn()
    return await dialect_of(conn).fetch(conn, sql, values)


def _card_text(card: dict[str, Any] | None) -> str | None:
    return None if card is None else json.dumps(card, ensure_ascii=False, separators=(",", ":"))


async def _retrying(sql: str, values: list[Any]) -> list[dict[str, Any]]:
    for attempt in range(ATTEMPTS):
        try:
            return await _rows(sql, values)
        except IntegrityError as exc:
            lost_race = "seq" in str(exc) or "uid_emulator" in str(exc)  # (recipient, seq), not a bug
            if not lost_race or attempt == ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


async def add(*, recipient: str, kind: str, sender: str, at: datetime, card_id: str | None = None,
              text: str = "", card: dict[str, Any] | None = None, html: str = "") -> tuple[Row, bool]:
    """Append a message to `recipient`'s pane; (the row, whether it is new). A message whose
    `card_id` is already held is returned as it is, not added again."""
    sql = (f'INSERT INTO "emulator_message" ({_COLUMNS.split(", ", 1)[1]}) '
           'SELECT ?, COALESCE(MAX("seq"), 0) + 1, ?, ?, ?, ?, ?, ?, 1, ? FROM "emulator_message" '
           'WHERE "recipient" = ? ON CONFLICT ("card_id") DO NOTHING RETURNING ' + _COLUMNS)
    values = [recipient, kind, sender, card_id, text, _card_text(card), html,
              _AT.to_db_value(at, EmulatorMessage), recipient]
    rows = await _retrying(sql, values)
    if rows:
        return _row(rows[0]), True
    held = await by_card_id(card_id or "")
    if held is None:  # pragma: no cover - a conflict on the card id means the row exists
        raise LookupError(f"emulator message {card_id} vanished")
    return held, False


async def replace_card(*, card_id: str, recipient: str, card: dict[str, Any], html: str) -> Row | None:
    """Replace the card `card_id` in `recipient`'s pane and move it to the pane's newest number
    (so pollers see the change); None when that pane holds no such card."""
    sql = ('UPDATE "emulator_message" SET "card" = ?, "html" = ?, "version" = "version" + 1, '
           '"seq" = (SELECT MAX("seq") + 1 FROM "emulator_message" WHERE "recipient" = ?) '
           'WHERE "card_id" = ? AND "recipient" = ? AND "kind" = \'card\' RETURNING ' + _COLUMNS)
    rows = await _retrying(sql, [_card_text(card), html, recipient, card_id, recipient])
    return _row(rows[0]) if rows else None


async def by_card_id(card_id: str) -> Row | None:
    rows = await _rows(f'SELECT {_COLUMNS} FROM "emulator_message" WHERE "card_id" = ?', [card_id])
    return _row(rows[0]) if rows else None


async def pane(recipient: str, *, since: int = 0, kind: str | None = None) -> list[Row]:
    """`recipient`'s messages changed after `since`, oldest change first (optionally one kind)."""
    sql = f'SELECT {_COLUMNS} FROM "emulator_message" WHERE "recipient" = ? AND "seq" > ?'
    values: list[Any] = [recipient, since]
    if kind is not None:
        sql += ' AND "kind" = ?'
        values.append(kind)
    rows = await _rows(sql + ' ORDER BY "seq"', values)
    return [_row(r) for r in rows]


async def sent_without_message() -> list[int]:
    """Outbox ids of emulator cards marked sent whose card no pane holds: delivered before the
    panes were kept here. Read once at start-up."""
    rows = await _rows('SELECT o."id" FROM "outbox" o WHERE o."platform" = \'emulator\' '
                       'AND o."kind" = \'card\' AND o."status" = \'sent\' AND NOT EXISTS '
                       '(SELECT 1 FROM "emulator_message" m WHERE m."card_id" = o."key") ORDER BY o."id"', [])
    return [int(r["id"]) for r in rows]
