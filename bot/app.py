"""The aiohttp application: one process serves every platform, the web pages and the loops."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from bot import connectors as bot_connectors
from bot import dashboard, inbound, timers
from bot.platforms.registry import address_book
from bot.runtime import configure
from cases.service import CaseService
from chat.appkeys import ANNOUNCE, SERVICE, SETTINGS
from chat.connector import Connector
from config.settings import Settings
from handlers import archive, checkpoints, signing_web, stepforms, uploads
from signing.pipeline import check_flow_documents
from storage.db import close_db, init_db
from storage.models import Case
from workflow.templates import load_templates

log = logging.getLogger("bot")


def build_service(settings: Settings) -> CaseService:
    dirs = [settings.templates_dir] if settings.templates_dir else []
    templates = load_templates(dirs)
    # A flow naming a document that cannot be rendered fails here, not on the signing page.
    check_flow_documents(templates, extra_dir=settings.doc_templates_dir)
    return CaseService(templates, platforms=settings.platforms, addresses=address_book(settings.platforms))


async def healthz(request: web.Request) -> web.Response:
    await Case.filter(id="healthz").exists()  # proves the database answers
    return web.json_response({"status": "ok"})


def create_app(settings: Settings, *, with_db: bool = True,
               connectors: dict[str, Connector] | None = None) -> web.Application:
    """`connectors`: already built (once, by the CLI, so each platform's start-up checks and
    warnings run once); built from PLATFORMS when not given."""
    configure(settings)
    app = web.Application(client_max_size=2 * 1024 * 1024)
    app[SETTINGS] = settings
    app[SERVICE] = build_service(settings)
    app.router.add_get("/healthz", healthz)
    if with_db:
        async def db_ctx(app: web.Application) -> AsyncIterator[None]:
            await init_db(settings.database_url)
            yield
            await close_db()

        app.cleanup_ctx.append(db_ctx)
    # Routes and background loops, wired here with what each needs: none of them imports this
    # module, so the factory is the only place that knows them all (and no import cycle hides).
    timers.setup(app)
    inbound.setup(app)
    bot_connectors.setup(app, connectors)  # the platforms from PLATFORMS, their routes and lifecycle, the outbox relay
    signing_web.setup(app)
    checkpoints.setup(app)
    archive.setup(app)
    stepforms.setup(app, dispatch=app[inbound.INBOUND].dispatch)
    dashboard.setup(app)
    uploads.setup(app)
    return app


PLACEHOLDER_COMPANY = "本公司"


def check_company(settings: Settings) -> None:
    """Documents for real employees must name the real employer: a real platform refuses the placeholder."""
    real = [p for p in settings.platforms if p != "emulator"]
    if real and settings.company_name.strip() in ("", PLACEHOLDER_COMPANY):
        raise SystemExit(f"COMPANY_NAME: set the employer's legal name before serving {', '.join(real)} "
                         f"(documents would say {PLACEHOLDER_COMPANY!r})")


async def serve(settings: Settings, connectors: dict[str, Connector] | None = None) -> None:
    check_company(settings)
    app = create_app(settings, connectors=connectors)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.http_host, settings.http_port)
    await site.start()
    # Everything loaded so far (modules, templates, the ORM's metadata) lives as long as the
    # process; frozen, full collections walk only what the running bot has made since.
    gc.collect()
    gc.freeze()
    log.info("serving on http://%s:%s (platforms: %s)", settings.http_host, settings.http_port,
             ", ".join(settings.platforms))
    for line in app.get(ANNOUNCE, []):
        print(line, flush=True)  # stdout, not the log: see bot.platforms.emulator.startup_line
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
