"""The emulator as a connector: the model a real platform follows.

It honours the contract exactly like a real platform would: `send_card` with a card id it already
holds answers with that card instead of adding a second one (the relay's crash safety relies on
this), `update_card` replaces a card in place and hands back the delivery, and inbound input (the
page's API, `web.py`) goes through `dispatch`, which returns after the commit.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web
from pydantic import SecretStr

from bot.platforms.emulator import settings
from bot.platforms.emulator.signin import EmulatorIdentity
from bot.platforms.emulator.store import EmulatorStore
from bot.platforms.emulator.web import check_startup, routes, startup_line
from cards import html
from cards.model import Card
from chat.connector import (
    Address,
    Answer,
    Capabilities,
    ConfigError,
    ConnectorEnv,
    Delivery,
    Dispatch,
    InboundEvent,
    Limits,
    PermanentDeliveryError,
    Presentation,
    Text,
)
from storage import cardids
from storage import emulator as db
from storage.models import EmulatorMessage, OutboxMessage

log = logging.getLogger("bot.emulator")


@dataclass(frozen=True)
class EmulatorConfig:
    """What the emulator reads: the core's few (from `ConnectorEnv`) and its own EMULATOR_* settings."""

    http_host: str = "127.0.0.1"
    http_port: int = 8080
    public_base_url: str = "http://127.0.0.1:8080"
    trusted_proxies: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ("emulator",)
    language: str = "zh"
    token: SecretStr | None = None  # EMULATOR_TOKEN; None: a random one per start
    allow_exposed: bool = False  # EMULATOR_ALLOW_EXPOSED

    @classmethod
    def from_env(cls, env: ConnectorEnv) -> EmulatorConfig:
        own = settings.load(env.env_file)  # EMULATOR_*, read here
        return cls(http_host=env.http_host, http_port=env.http_port, public_base_url=env.public_base_url,
                   trusted_proxies=tuple(env.trusted_proxies), platforms=tuple(env.platforms) or ("emulator",),
                   language=env.language, token=own.token, allow_exposed=own.allow_exposed)


class EmulatorConnector:
    name = "emulator"
    limits = Limits(rate_per_second=200.0, burst=200, concurrency=4)
    capabilities = Capabilities(links_need_sign_in=False)  # opened at this machine, by its user
    directory = None
    presentation = Presentation(name=Text("本地模拟器", "the local emulator"),
                                notice=Text("离职助手消息", "offboarding bot message"),
                                sign_in=Text("本地模拟器登录（演示）", "Local emulator sign-in (demo)"))

    def __init__(self, config: EmulatorConfig | None = None, store: EmulatorStore | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.store = store or EmulatorStore()
        self.token = (self.config.token.get_secret_value() if self.config.token is not None
                      else secrets.token_urlsafe(32))
        self._dispatch: Dispatch | None = None
        # The web sign-in (the HR dashboard's): a local picker behind the emulator's guard, its codes
        # keyed from the emulator's token, so replicas sharing EMULATOR_TOKEN accept each other's.
        self.identity = EmulatorIdentity(self.token.encode())

    # ---- lifecycle ------------------------------------------------------------------------
    async def start(self, dispatch: Dispatch) -> None:
        self._dispatch = dispatch

    async def stop(self) -> None:
        self._dispatch = None  # no task of ours runs; requests after this are refused

    async def dispatch(self, event: InboundEvent) -> Answer:
        if self._dispatch is None:
            raise ConfigError("the emulator is not started")
        return await self._dispatch(event)

    def web_routes(self) -> Sequence[web.RouteDef]:
        return routes(self)

    def startup_lines(self) -> list[str]:
        return [startup_line(self.config, self.token)]

    # ---- delivery -------------------------------------------------------------------------
    async def send_card(self, to: Address, card: Card, card_id: str) -> Delivery:
        # Idempotent on the card id: a resend never shows a second card.
        row, _ = await db.add(recipient=to.user_id, kind="card", sender="bot", card_id=card_id, card=card.to_dict(),
                              html=html.render(card, card_id), at=datetime.now(UTC))
        return Delivery(message_id=f"emu-{row.id}")

    async def update_card(self, to: Address, card: Card, card_id: str, delivery: Delivery) -> Delivery:
        # Addressed by the card id, which names the same card whatever happened to this process.
        row = await db.replace_card(card_id=card_id, recipient=to.user_id, card=card.to_dict(),
                                    html=html.render(card, card_id))
        if row is None:
            raise PermanentDeliveryError(f"no card {card_id} ({delivery.message_id}) held by {to.user_id}",
                                         hint="the emulator's pane lost this card; start the case again")
        return Delivery(message_id=f"emu-{row.id}")

    async def send_text(self, to: Address, text: str, key: str) -> Delivery:
        msg = await self.store.text(to.user_id, "bot", text, key=key)
        return Delivery(message_id=msg.id)

    async def missing_cards(self) -> list[int]:
        """Outbox ids of cards marked sent that no pane holds (delivered before the panes were kept
        in the database): the app sends them again at start-up, so their updates find them."""
        held = set(await EmulatorMessage.filter(kind="card").values_list("card_id", flat=True))
        rows = await OutboxMessage.filter(platform=self.name, kind="card", status="sent").order_by("id")
        return [r.id for r in rows if cardids.card_id_of(r) not in held]


def create(env: ConnectorEnv) -> EmulatorConnector:
    config = EmulatorConfig.from_env(env)
    check_startup(config)
    return EmulatorConnector(config)
