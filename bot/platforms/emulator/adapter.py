"""The emulator platform: delivered cards and chat lines kept in memory, per person.

It honours the adapter contract exactly like a real platform would: `send_card` with a card id it
already holds returns that card's message id instead of adding a second card (the outbox relay's
crash-safety relies on this), and `update_card` replaces a card in place.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bot.platforms.base import PermanentDeliveryError
from cards import html
from cards.model import Card


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
    version: int = 1
    seq: int = 0

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
        "html": html.render(msg.card, msg.card_id),
    }


@dataclass
class EmulatorStore:
    messages: dict[str, list[Message]] = field(default_factory=dict)
    cards: dict[str, Message] = field(default_factory=dict)  # card_id -> the message holding it
    inbound_ids: set[str] = field(default_factory=set)  # event ids of typed lines already shown
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))  # type: ignore[type-arg]
    _seq: itertools.count = field(default_factory=lambda: itertools.count(1))  # type: ignore[type-arg]

    def add(self, msg: Message) -> Message:
        msg.seq = next(self._seq)
        self.messages.setdefault(msg.user, []).append(msg)
        if msg.kind == "card":
            self.cards[msg.card_id] = msg
        return msg

    def new_id(self) -> str:
        return f"emu-{next(self._ids)}"

    def text(self, user: str, sender: str, text: str) -> Message:
        return self.add(Message(id=self.new_id(), user=user, kind="text", sender=sender, text=text,
                                at=datetime.now(UTC)))

    def history(self, user: str, since: int = 0) -> list[Message]:
        return [m for m in self.messages.get(user, []) if m.seq > since]

    def cards_of(self, user: str) -> list[Message]:
        return [m for m in self.messages.get(user, []) if m.kind == "card"]


class EmulatorAdapter:
    name = "emulator"
    rate_per_second = 200.0
    burst = 200

    def __init__(self, store: EmulatorStore | None = None) -> None:
        self.store = store or EmulatorStore()

    async def send_card(self, recipient: str, card: Card, card_id: str) -> str:
        held = self.store.cards.get(card_id)
        if held is not None:
            return held.id  # idempotent on the card id: a resend never shows a second card
        msg = self.store.add(Message(id=self.store.new_id(), user=recipient, kind="card", sender="bot",
                                     at=datetime.now(UTC), card_id=card_id, card=card))
        return msg.id

    async def update_card(self, recipient: str, message_id: str, card: Card, card_id: str) -> None:
        held = self.store.cards.get(card_id)
        if held is None or held.id != message_id or held.user != recipient:
            raise PermanentDeliveryError(f"no card {card_id} ({message_id}) held by {recipient}")
        held.card = card
        held.version += 1
        # Bump the sequence so pollers asking "what changed since" see the new content.
        held.seq = next(self.store._seq)

    async def send_text(self, recipient: str, text: str, message_key: str) -> str:
        for m in self.store.messages.get(recipient, []):
            if m.kind == "text" and m.card_id == message_key:
                return m.id
        msg = self.store.text(recipient, "bot", text)
        msg.card_id = message_key
        return msg.id
