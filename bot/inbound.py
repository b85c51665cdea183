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

from aiohttp import web

from cases.service import CaseService
from chat.appkeys import SERVICE, SETTINGS
from chat.router import Context, Incoming, Reply, Router, standard_middlewares
from config.settings import Settings
from handlers.actions import router as actions
from handlers.archive import router as archive
from handlers.backpay_commands import router as backpay
from handlers.commands import router as commands
from handlers.employee import router as employee

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

    def busy(self) -> bool:
        return self.in_flight > 0 or time.monotonic() - self.last_event < QUIET_SECONDS

    async def handle(self, incoming: Incoming) -> Reply:
        ctx = Context(incoming=incoming, settings=self.settings, service=self.service,
                      language=self.settings.language)
        self.in_flight += 1
        self.last_event = time.monotonic()
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


INBOUND = web.AppKey("inbound", Inbound)


def setup(app: web.Application) -> None:
    app[INBOUND] = Inbound(build_router(), app[SETTINGS], app[SERVICE])
