"""Wires the HR dashboard (handlers/dashboard) into the app: its settings as values, the case service, the
platforms' web sign-in, and the chat's command path for HR's actions.

`web_identities` is the one place that says which sign-in each platform offers: its running connector's
own `identity` (chat/connector.py); a platform whose connector offers none is not offered.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from bot.connectors import CONNECTORS
from bot.inbound import INBOUND
from chat import presentation
from chat.appkeys import SERVICE, SETTINGS
from chat.connector import WebIdentity
from chat.router import Incoming, is_hr, resolve_sender
from config.settings import Settings
from handlers.dashboard.deps import CommandResult, Dashboard, DashboardConfig
from handlers.dashboard.web import install
from handlers.uploads import upload_url


def web_identities(app: web.Application, settings: Settings) -> dict[str, WebIdentity]:
    """The sign-ins on offer, in PLATFORMS order: each running connector's own `identity` (the emulator's
    local one among them). None at all: the sign-in page says sign-in is unavailable."""
    running = app.get(CONNECTORS, {})
    found: dict[str, WebIdentity] = {}
    for name in settings.platforms:
        own = getattr(running.get(name), "identity", None)
        if own is not None:
            found[name] = own
    return found


def setup(app: web.Application) -> None:
    settings: Settings = app[SETTINGS]
    router: Any = None

    def chat_router() -> Any:
        nonlocal router
        if router is None:
            router = app[INBOUND].router
        return router

    async def run_command(actor_id: str, text: str, key: str, lang: str) -> CommandResult:
        """HR's dashboard action as the chat command it is, through the inbound pipeline (hygiene, dedup,
        actor, HR-only, the command's own checks) that every platform uses."""
        incoming = Incoming(platform="dashboard", sender=actor_id, kind="text",
                            payload={"text": text, "lang": lang}, dedup_key=key or f"dashboard:{uuid.uuid4().hex}")
        reply = await app[INBOUND].handle(incoming)
        return CommandResult(reply.ok, reply.code, reply.text, reply.duplicate)

    def has_command(name: str) -> bool:
        return name in chat_router().commands

    async def resolve_user(platform: str, user_id: str) -> Any:
        # A platform's user id, looked up by its own column (the address book), as chat does.
        return await resolve_sender(app[SERVICE], platform, user_id)

    config = DashboardConfig(secret=settings.secret_bytes(), public_base_url=settings.public_base_url,
                             language=settings.language, tz=settings.tz,
                             session_seconds=int(settings.dashboard_session_minutes * 60), data_dir=settings.data_dir)
    identities = web_identities(app, settings)
    install(app, Dashboard(config=config, service=app[SERVICE], identities=identities,
                           sign_in_labels={name: presentation.of_app(app, name).sign_in for name in identities},
                           resolve_user=resolve_user, is_hr=is_hr, run_command=run_command,
                           has_command=has_command, settings=settings,
                           upload_url=lambda case_id, step_id, hr_id: upload_url(
                               settings.secret_bytes(), settings.public_base_url, case_id, step_id, hr_id,
                               now=datetime.now(UTC), ttl=timedelta(hours=settings.link_ttl_hours))))
