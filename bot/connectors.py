"""The platforms, wired in: connectors built from PLATFORMS, their routes served, their lifecycle
tied to the app's (started once the database is up, stopped before it closes), and the outbox relay
delivering through them."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from bot.inbound import INBOUND
from bot.outbox import RELAY, Relay
from bot.platforms import registry
from chat.appkeys import ANNOUNCE, CONNECTORS, SERVICE, SETTINGS
from chat.background import background
from chat.connector import Connector
from handlers.cardview import CardRenderer
from storage.models import OutboxMessage

log = logging.getLogger("bot.connectors")

__all__ = ["CONNECTORS", "setup"]


def setup(app: web.Application, built: dict[str, Connector] | None = None) -> None:
    """`built`: the connectors the caller already built (the CLI checks every platform's settings
    before migrating, and a test serves its own); built here from PLATFORMS otherwise."""
    settings = app[SETTINGS]
    if built is None:
        try:
            built = registry.build(settings)
        except registry.PlatformError as exc:
            raise SystemExit(str(exc)) from None
    connectors = built
    app[CONNECTORS] = connectors
    service = app[SERVICE]
    relay = Relay(connectors, CardRenderer(settings, service).for_outbox, addresses=service.addresses)
    app[RELAY] = relay
    for connector in connectors.values():
        app.router.add_routes(connector.web_routes())
        lines = getattr(connector, "startup_lines", None)
        if lines is not None:
            app.setdefault(ANNOUNCE, []).extend(lines())  # type: ignore[call-overload]

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        inbound = app[INBOUND]
        started = []
        try:
            for name, connector in connectors.items():
                await connector.start(inbound.dispatch)
                started.append(connector)
                missing = getattr(connector, "missing_cards", None)
                if missing is not None:
                    for row_id in await missing():
                        await relay.resend(await OutboxMessage.get(id=row_id))
                log.info("platform %s started", name)
            yield
        finally:
            for connector in reversed(started):
                try:
                    await connector.stop()
                except Exception:  # one platform's failure to stop must not keep the others running
                    log.exception("platform %s did not stop cleanly", connector.name)

    async def loop(app: web.Application) -> None:
        relay.busy = app[INBOUND].busy
        await relay.run_forever(app[INBOUND].committed, settings.outbox_poll_seconds)

    app.cleanup_ctx.append(lifecycle)
    app.cleanup_ctx.append(background("outbox", loop))
