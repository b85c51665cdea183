"""The emulator's panes: delivered cards and chat lines, per person, kept in the database.

The messages live in `emulator_message` (storage/emulator.py), not in the process: message ids are
row ids, so a restart cannot renumber them under the ids the outbox recorded, and every replica on
one database shows and updates the same cards. Updates find their card by its card id (the outbox
key), which no restart or upgrade changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cards import html
from cards.model import Card
from storage import emulator as db


@dataclass
class Message:
    id: str
    user: str
    kind: str  # card | text
    sender: str  # "bot" or the employee id who typed it
    at: datetime
    text: str = ""
    card_id: str = ""
    card: Card | None = None
    html: str = ""
    version: int = 1
    seq: int = 0

    @classmethod
    def from_row(cls, row: db.Row) -> Message:
        return cls(id=f"emu-{row.id}", user=row.recipient, kind=row.kind, sender=row.sender, at=row.at,
                   text=row.text, card_id=row.card_id or "", html=row.html, version=row.version, seq=row.seq,
                   card=Card.from_dict(row.card) if row.card is not None else None)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "kind": self.kind, "sender": self.sender, "at": self.at.isoformat(),
                               "seq": self.seq}
        if self.kind == "text":
            out["text"] = self.text
        else:
            out.update(card_json(self))
        return out


def card_json(msg: Message) -> dict[str, Any]:
    if msg.card is None:
        raise ValueError(f"message {msg.id} holds no card")
    card = msg.card.to_dict()
    return {
        "card_id": msg.card_id, "message_id": msg.id, "version": msg.version, "title": card["title"],
        "summary": card["summary"], "progress": card["progress"], "status": card["status"],
        "tone": card["tone"], "fields": card["fields"], "body": card["body"], "case_id": card["case_id"],
        "step_id": card["step_id"], "purpose": card["purpose"],
        "buttons": [{"action": b["action"], "label": b["label"], "enabled": b["enabled"], "url": b["url"],
                     "reason": b["reason"], "style": b["style"], "form": b["form"]} for b in card["buttons"]],
        "html": msg.html or html.render(msg.card, msg.card_id),
    }


class EmulatorStore:
    """Each person's pane, read from and written to the database."""

    async def text(self, user: str, sender: str, text: str, *, key: str | None = None) -> Message:
        """A chat line in `user`'s pane; a line with a `key` already shown is not shown twice."""
        row, _ = await db.add(recipient=user, kind="text", sender=sender, text=text, card_id=key,
                              at=datetime.now(UTC))
        return Message.from_row(row)

    async def history(self, user: str, since: int = 0) -> list[Message]:
        return [Message.from_row(r) for r in await db.pane(user, since=since)]

    async def cards_of(self, user: str) -> list[Message]:
        # In the order they arrived: an update moves a card's seq, not its place in the list.
        return sorted((Message.from_row(r) for r in await db.pane(user, kind="card")), key=lambda m: int(m.id[4:]))

    async def card(self, card_id: str) -> Message | None:
        row = await db.by_card_id(card_id)
        return Message.from_row(row) if row is not None and row.kind == "card" else None
