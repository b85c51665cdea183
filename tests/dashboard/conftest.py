"""The whole application on 127.0.0.1 (random port) with the emulator, for the HR dashboard's tests: sign-in
through the emulator's local sign-in page, cases started through the real service."""

from __future__ import annotations

import dataclasses
import html
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.app import create_app
from cases.service import CaseService
from chat.appkeys import SERVICE
from config.settings import Settings
from handlers.dashboard.deps import DASHBOARD
from storage.models import Employee
from tests.conftest import emulator_env

TOKEN = "test-emulator-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HR, MANAGER, EMPLOYEE, FINANCE, HANDOVER, OTHER = "E001", "E002", "E003", "E004", "E006", "E007"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Dash:
    base: str
    settings: Settings
    service: CaseService
    app: web.Application

    def client(self) -> aiohttp.ClientSession:
        # unsafe: the jar keeps cookies of an IP-address host (127.0.0.1), as a browser does.
        return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def sign_in(self, http: aiohttp.ClientSession, employee_id: str) -> aiohttp.ClientResponse:
        """The emulator's local sign-in as a browser does it; returns the dashboard's answer to the code."""
        async with http.get(f"{self.base}/dashboard/signin/emulator", allow_redirects=False) as r:
            assert r.status == 302, await r.text()
            picker = r.headers["Location"]
        assert picker.startswith("/emulator/signin?")
        async with http.get(self.base + picker, headers=AUTH) as r:
            assert r.status == 200, await r.text()
            page = await r.text()
        found = re.search(rf'id="as-{employee_id}" href="([^"]+)"', page)
        assert found, page
        r = await http.get(self.base + html.unescape(found.group(1)), allow_redirects=False)
        await r.read()
        return r


@asynccontextmanager
async def serve(base: Settings, *, dashboard: dict[str, object] | None = None,
                connectors: dict[str, Any] | None = None, **overrides: object) -> AsyncIterator[Dash]:
    port = free_port()
    settings = base.model_copy(update={"http_port": port, "outbox_poll_seconds": 0.05,
                                       "public_base_url": f"http://127.0.0.1:{port}", **overrides})
    with emulator_env(token=TOKEN):
        app = create_app(settings, with_db=False, connectors=connectors)
    if dashboard:  # before the app starts (and freezes): e.g. an upload page for the case page to link
        app[DASHBOARD] = dataclasses.replace(app[DASHBOARD], **dashboard)  # type: ignore[arg-type]
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield Dash(f"http://127.0.0.1:{port}", settings, app[SERVICE], app)
    finally:
        await runner.cleanup()


@pytest.fixture
async def dash(demo_org: Settings) -> AsyncIterator[Dash]:
    async with serve(demo_org) as d:
        yield d


async def start(service: CaseService, employee_id: str, template: str, *, days_ago: float = 0,
                reason: str = "试用期绩效未达标", handover: str | None = None) -> str:
    """A case started `days_ago` (its first steps activated then, so their deadlines may have passed)."""
    emp = await Employee.get(employee_id=employee_id)
    at = datetime.now(UTC) - timedelta(days=days_ago)
    out = await service.start_case(employee=emp, template_id=template, last_day=date(2026, 12, 31), reason=reason,
                                   created_by=HR, handover_id=handover, at=at)
    return out.case_id
