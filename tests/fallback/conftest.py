"""Case A on an accelerated clock: the chat harness driven with event times we choose, the timer runner fired
at those times, and HR's upload page on a real aiohttp server on 127.0.0.1 whose clock is the same."""

from __future__ import annotations

import io
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import FormData, web
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image

from bot.timers import run_due
from chat.appkeys import SERVICE, SETTINGS
from chat.router import Incoming, Reply
from config.settings import Settings
from handlers import signing_web
from handlers.uploads import add_routes, config_of
from signing.pipeline import keys_for, write_checkpoint
from storage.models import Employee
from tests.chat.conftest import Chat, build_chat
from workflow.timerules import QuietHours

HR, EMP, RECEIVER, MANAGER = "E001", "E003", "E006", "E002"
ADDRESS = "北京市朝阳区建国路 88 号 3 单元 1201 室"
_events = itertools.count(1)


def real_jpeg(width: int = 640, height: int = 480) -> bytes:
    """A photo-like JPEG (noise compresses badly, like a real receipt photo)."""
    img = Image.effect_noise((width, height), 60).convert("RGB")
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85)
    return out.getvalue()


def start_time(settings: Settings) -> datetime:
    """23:30 local, nine days ago: the whole week-long timeline lies in the real past, so the links the cards
    carry (issued at real time) are valid at every moment of it."""
    local = (datetime.now(UTC) - timedelta(days=9)).astimezone(settings.tz)
    return datetime.combine(local.date(), time(23, 30), tzinfo=settings.tz).astimezone(UTC)


@dataclass
class CaseA:
    chat: Chat
    client: TestClient
    clock: list[datetime]

    @property
    def now(self) -> datetime:
        return self.clock[0]

    def at(self, when: datetime) -> None:
        self.clock[0] = when

    async def send(self, user: str, text: str) -> Reply:
        return await self.chat.inbound.handle(
            Incoming("emulator", user, "text", {"text": text}, f"emulator:a{next(_events)}", at=self.now))

    async def click(self, user: str, card_id: str, action: str, form: dict[str, str] | None = None) -> Reply:
        return await self.chat.inbound.handle(Incoming(
            "emulator", user, "action", {"card_id": card_id, "action": action, "form": form or {}},
            f"emulator:a{next(_events)}", at=self.now))

    async def timers(self) -> int:
        """The runner as `serve` runs it: quiet hours from the settings."""
        quiet = QuietHours.parse(self.chat.settings.quiet_hours, self.chat.settings.tz)
        fired = await run_due(self.chat.inbound.service, self.now, quiet=quiet)
        await self.chat.deliver(self.now)
        return fired

    async def post(self, url: str, form: dict[str, str], files: dict[str, tuple[str, bytes, str]]) -> Any:
        data = FormData()
        for k, v in form.items():
            data.add_field(k, v)
        for k, (name, content, ctype) in files.items():
            data.add_field(k, content, filename=name, content_type=ctype)
        return await self.client.post(urlsplit(url).path, data=data)

    async def get(self, url: str) -> Any:
        return await self.client.get(urlsplit(url).path)


async def make_case_a(settings: Settings, **config: Any) -> AsyncIterator[CaseA]:
    emp = await Employee.get(employee_id=EMP)
    emp.address = ADDRESS
    await emp.save()
    chat = build_chat(settings)
    clock = [start_time(settings)]
    app = web.Application()
    app[SETTINGS], app[SERVICE] = settings, chat.inbound.service
    # As `serve` wires them: the closing checkpoint, and the sealed documents behind the cards' links.
    app.router.add_get("/doc/{token}", signing_web.download_document)

    async def checkpoint(conn: Any, case_id: str) -> None:
        await write_checkpoint(case_id, keys_for(settings), using=conn)

    chat.inbound.service.on_closed.append(checkpoint)
    cfg = config_of(settings)
    cfg = type(cfg)(**{**cfg.__dict__, "now": lambda: clock[0], **config})
    add_routes(app, cfg, chat.inbound.service)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield CaseA(chat, client, clock)


@pytest.fixture
async def case_a(demo_org: Settings) -> AsyncIterator[CaseA]:
    async for h in make_case_a(demo_org):
        yield h
