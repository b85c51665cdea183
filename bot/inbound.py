"""The inbound pipeline every platform adapter calls: Incoming -> router -> reply, after commit.

`Inbound.handle` returns only when the handler's transaction has committed (or nothing needed
committing), so an adapter that acknowledges after `handle` never acknowledges an event whose
effect could still be lost. The outbox relay is woken after the commit, outside any transaction:
no task is started while a Tortoise transaction is open.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiohttp import web

from cases.service import CaseService
from chat.appkeys import SERVICE, SETTINGS
from chat.connector import Answer, CardAction, InboundEvent, TextMessage
from chat.router import Context, Incoming, Reply, Router, standard_middlewares
from config.settings import Settings
from handlers.actions import router as actions
from handlers.archive import router as archive
from handlers.backpay_commands import router as backpay
from handlers.commands import router as commands
from handlers.employee import router as employee
from storage import cardids, hotpath, queue
from storage.models import InboxEvent

log = logging.getLogger("bot.inbound")
QUIET_SECONDS = 0.05


def build_router() -> Router:
    root = Router("root")
    standard_middlewares(root)
    root.include(commands)
    root.include(backpay)
    root.include(actions)
    root.include(employee)
    root.include(archive)
    return root


class Inbound:
    def __init__(self, router: Router, settings: Settings, service: CaseService) -> None:
        self.router = router
        self.settings = settings
        self.service = service
        self.committed = asyncio.Event()  # the outbox relay waits on this between polls
        # The relay gives way while events are being handled or have arrived within the last
        # QUIET_SECONDS: with SQLite a handler runs start to finish without yielding, so "in flight"
        # alone is rarely true when the relay looks, even in the middle of a burst.
        self.in_flight = 0
        self.last_event = float("-inf")
        self.clock: Callable[[], float] = time.monotonic  # a test steps it instead of sleeping

    def busy(self) -> bool:
        return self.in_flight > 0 or self.clock() - self.last_event < QUIET_SECONDS

    async def handle(self, incoming: Incoming) -> Reply:
        ctx = Context(incoming=incoming, settings=self.settings, service=self.service,
                      language=self.settings.language)
        self.in_flight += 1
        self.last_event = self.clock()
        try:
            reply = await self.router.dispatch(ctx)
        except Exception:
            # The transaction (if any) rolled back; say so plainly and let the platform redeliver.
            log.exception("inbound %s from %s failed", incoming.dedup_key, incoming.sender)
            return Reply(ok=False, code="error", text=ctx.t("处理失败，请稍后重试。",
                                                            "Something went wrong; please try again."))
        finally:
            self.in_flight -= 1
        if reply.changed and not reply.duplicate:
            self.committed.set()
        return reply


    async def dispatch(self, event: InboundEvent) -> Answer:
        """What every connector calls: the typed event through the router (dedup, actor,
        authorisation, handler); returns after the commit."""
        incoming = to_incoming(event)
        if isinstance(event, CardAction) and event.update_token:
            # Kept before the event is handled: its commit queues the update of this very card, and
            # the relay (woken by that commit, polling, or in another process) must find the click's
            # token already there, not the one it replaces. A redelivered callback (its inbox row is
            # there) brings a token that may have been used since: not kept again.
            if not await InboxEvent.filter(dedup_key=incoming.dedup_key).exists():
                await keep_update_token(self.service, event)
        reply = await self.handle(incoming)
        return Answer(ok=reply.ok, text=reply.text, code=reply.code, duplicate=reply.duplicate, data=reply.data)


def to_incoming(event: InboundEvent) -> Incoming:
    payload: dict[str, object]
    if isinstance(event, TextMessage):
        payload = {"text": event.text}
        kind = "text"
    else:
        payload = {"card_id": event.card_id, "action": event.action, "form": dict(event.form)}
        kind = "action"
    if event.lang in ("zh", "en"):
        payload["lang"] = event.lang
    return Incoming(platform=event.platform, sender=event.sender, kind=kind,  # type: ignore[arg-type]
                    payload=payload, dedup_key=f"{event.platform}:{event.event_id}",
                    chat_id=getattr(event, "chat_id", ""), at=event.at)


async def keep_update_token(service: CaseService, event: CardAction) -> None:
    """A click's fresh update token (WeCom's ResponseCode) goes into the clicked card's delivery,
    before the event is handled, so the next update of that holder's card uses it. Newest wins:
    the relay, writing back a delivery, keeps a token that arrived while it was updating."""
    conn = hotpath.default_conn()
    row = await cardids.find(conn, event.card_id)
    if row is None or row.platform != event.platform or row.kind != "card" or row.delivery is None:
        return  # not one of ours, or not delivered yet: nothing to update with the token
    holder = await hotpath.active_employee(conn, service.addresses.column(event.platform), event.sender)
    if holder is None or holder.employee_id != row.recipient:
        return  # only the holder's click carries a token for the holder's card
    await queue.keep_update_token(row.id, event.update_token)  # under the row lock the relay writes with


INBOUND = web.AppKey("inbound", Inbound)


def setup(app: web.Application) -> None:
    app[INBOUND] = Inbound(build_router(), app[SETTINGS], app[SERVICE])
