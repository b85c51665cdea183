"""A chat harness over the real pipeline: router, service, database, outbox relay, emulator adapter."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from bot.app import build_service
from bot.inbound import Inbound, build_router
from bot.outbox import Relay, RetryPolicy
from bot.platforms.emulator import EmulatorConnector, Message
from chat import presentation
from chat.router import Incoming, Reply
from config.settings import Settings
from handlers.cardview import CardRenderer

_events = itertools.count(1)


@dataclass
class Chat:
    settings: Settings
    inbound: Inbound
    relay: Relay
    emulator: EmulatorConnector
    sent: list[Reply] = field(default_factory=list)

    async def send(self, user: str, text: str, *, event_id: str | None = None, lang: str | None = None) -> Reply:
        payload: dict[str, Any] = {"text": text}
        if lang:
            payload["lang"] = lang
        inc = Incoming("emulator", user, "text", payload, f"emulator:{event_id or next(_events)}")
        reply = await self.inbound.handle(inc)
        self.sent.append(reply)
        return reply

    async def click(self, user: str, card_id: str, action: str, form: dict[str, str] | None = None, *,
                    event_id: str | None = None) -> Reply:
        inc = Incoming("emulator", user, "action", {"card_id": card_id, "action": action, "form": form or {}},
                       f"emulator:{event_id or next(_events)}")
        return await self.inbound.handle(inc)

    async def deliver(self, now: datetime | None = None) -> int:
        """Deliver everything due (at `now`: rows queued by timers fired in the future are due then)."""
        total = 0
        while True:
            n = await self.relay.run_once(now)
            total += n
            if n == 0:
                return total

    async def cards(self, user: str) -> list[Message]:
        return await self.emulator.store.cards_of(user)

    async def card(self, user: str, *, step: str | None = None, purpose: str | None = None) -> Message:
        found = [m for m in await self.cards(user) if m.card is not None
                 and (step is None or m.card.step_id == step) and (purpose is None or m.card.purpose == purpose)]
        if not found:
            raise LookupError(f"{user} holds no card for step={step} purpose={purpose}")
        return found[-1]


def build_chat(settings: Settings) -> Chat:
    """The harness on given settings (another language, company templates)."""
    service = build_service(settings)
    inbound = Inbound(build_router(), settings, service)
    emulator = EmulatorConnector()
    renderer = CardRenderer(settings, service,
                            channel=presentation.channel_of({"emulator": emulator}, settings.platforms))
    relay = Relay({"emulator": emulator}, renderer.for_outbox, addresses=service.addresses,
                  retry=RetryPolicy(base=0.01, cap=0.05))
    return Chat(settings, inbound, relay, emulator)


@pytest.fixture
async def chat(demo_org: Settings) -> Chat:
    return build_chat(demo_org)
