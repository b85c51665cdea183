"""The aiohttp application: one process serves every platform, the web pages and the loops."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from bot.runtime import configure
from bot.settings import Settings
from handlers.cases import CaseService
from storage.db import close_db, init_db
from workflow.templates import load_templates

log = logging.getLogger("bot")

SETTINGS = web.AppKey("settings", Settings)
SERVICE = web.AppKey("service", CaseService)
# Lines for the person starting the bot, printed once it listens (e.g. the emulator's address).
ANNOUNCE = web.AppKey("announce", list)

# Modules that add routes or background loops: each exposes `setup(app)`. Kept as data so a new
# capability is one line here, not a change to the factory.
EXTENSIONS: list[str] = [
    "bot.timers", "bot.inbound", "bot.outbox", "bot.platforms.emulator", "handlers.signing_web",
    "handlers.checkpoints", "handlers.archive",
]


def build_service(settings: Settings) -> CaseService:
    from signing.pipeline import check_flow_documents

    dirs = [settings.templates_dir] if settings.templates_dir else []
    templates = load_templates(dirs)
    # A flow naming a document that cannot be rendered fails here, not on the signing page.
    check_flow_documents(templates, extra_dir=settings.doc_templates_dir)
    return CaseService(templates, platforms=settings.platforms)


async def healthz(request: web.Request) -> web.Response:
    from storage.models import Case

    await Case.filter(id="healthz").exists()  # proves the database answers
    return web.json_response({"status": "ok"})


def create_app(settings: Settings, *, with_db: bool = True) -> web.Application:
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
    for name in EXTENSIONS:
        module = __import__(name, fromlist=["setup"])
        module.setup(app)
    return app


def background(name: str, loop: Callable[[web.Application], Awaitable[None]]) -> Callable[
    [web.Application], AsyncIterator[None]
]:
    """A cleanup_ctx that runs `loop(app)` as a task for the app's lifetime and cancels it on exit."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(loop(app), name=name)
        yield
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    return ctx


PLACEHOLDER_COMPANY = "本公司"


def check_company(settings: Settings) -> None:
    """Documents for real employees must name the real employer: a real platform refuses the placeholder."""
    real = [p for p in settings.platforms if p != "emulator"]
    if real and settings.company_name.strip() in ("", PLACEHOLDER_COMPANY):
        raise SystemExit(f"COMPANY_NAME: set the employer's legal name before serving {', '.join(real)} "
                         f"(documents would say {PLACEHOLDER_COMPANY!r})")


async def serve(settings: Settings) -> None:
    from bot.outbox import ADAPTERS

    check_company(settings)
    app = create_app(settings)
    missing = [p for p in settings.platforms if p not in app.get(ADAPTERS, {})]
    if missing:
        # Their messages wait in the outbox (nothing is lost) until an adapter for them runs.
        log.warning("no adapter yet for platform(s) %s: their cards stay queued in the outbox", ", ".join(missing))
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
