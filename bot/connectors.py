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
from chat import capabilities, presentation
from chat.appkeys import ANNOUNCE, CONNECTORS, SERVICE, SETTINGS
from chat.background import background
from chat.connector import Answer, CardAction, Connector, Dispatch, InboundEvent
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
    # Cards are rendered for what each platform's cards can hold (in-card inputs or the step's web
    # form; a summary kept to what changes rarely where updates cost).
    renderer = CardRenderer(settings, service, capabilities.of_connectors(connectors),
                            channel=presentation.channel_of(connectors, settings.platforms))
    relay = Relay(connectors, renderer.for_outbox, addresses=service.addresses)
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
                await connector.start(dispatch_for(connector, inbound.dispatch, relay))
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


def dispatch_for(connector: Connector, dispatch: Dispatch, relay: Relay) -> Dispatch:
    """What `connector` calls for an inbound event: the pipeline's dispatch; for a platform whose
    answer to a click can carry the clicked card (`Capabilities.update_in_reply`), followed by the
    clicked card's update, delivered before the connector answers."""
    if not connector.capabilities.update_in_reply:
        return dispatch

    async def with_reply(event: InboundEvent) -> Answer:
        answer = await dispatch(event)
        if isinstance(event, CardAction) and answer.ok and not answer.duplicate:
            try:
                await relay.update_clicked(connector.name, event.card_id)
            except Exception:  # the relay's loop delivers the update instead; the click stands
                log.exception("platform %s: the clicked card's update could not join the answer", connector.name)
        return answer

    return with_reply
