"""A step's web form and details page on a real aiohttp server on 127.0.0.1, with the real router,
service, outbox relay and card rendering behind them. The platform is "wecom" (its cards cannot hold
text inputs); the card store standing in for WeCom's servers is the emulator's, so what each holder
was delivered (and how it was updated) can be read back."""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from html import unescape
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.app import build_service
from bot.inbound import INBOUND, Inbound, build_router
from bot.outbox import Relay, RetryPolicy
from bot.platforms.emulator import EmulatorConnector, Message
from bot.platforms.wecom import WeComConnector
from cases.service import CaseService
from chat import capabilities, presentation
from chat.appkeys import CONNECTORS, SERVICE, SETTINGS
from chat.connector import Answer, Capabilities, CardAction, Connector
from chat.router import Incoming, Reply
from config.settings import Settings
from handlers import signing_web, stepforms
from handlers.cardview import CardRenderer
from storage.models import Case, Employee

HR, MANAGER, EMPLOYEE, FINANCE, HANDOVER = "E001", "E002", "E003", "E004", "E006"
START = "/离职 张三 试用期 2025-07-31 绩效未达标 交接人:周八"
_events = itertools.count(1)


def wx(employee_id: str) -> str:
    return f"wx_{employee_id}"


@dataclass
class Forms:
    settings: Settings
    service: CaseService
    inbound: Inbound
    relay: Relay
    wecom: FakeWeCom
    client: TestClient

    async def hr(self, text: str) -> Reply:
        return await self.inbound.handle(Incoming("wecom", wx(HR), "text", {"text": text},
                                                  f"wecom:msg:{next(_events)}"))

    async def tap(self, user: str, card_id: str, action: str, form: dict[str, str]) -> Answer:
        """The card action WeCom's callback hands over for a tap on the card (what its connector dispatches)."""
        return await self.inbound.dispatch(CardAction("wecom", wx(user), card_id, action, f"evt-{next(_events)}",
                                                      form=form))

    async def deliver(self, now: datetime | None = None) -> int:
        total = 0
        while (n := await self.relay.run_once(now)):
            total += n
        return total

    async def card(self, user: str, *, step: str | None = None, purpose: str | None = None) -> Message:
        found = [m for m in await self.wecom.store.cards_of(wx(user)) if m.card is not None
                 and (step is None or m.card.step_id == step) and (purpose is None or m.card.purpose == purpose)]
        if not found:
            raise LookupError(f"{user} holds no card for step={step} purpose={purpose}")
        return found[-1]

    async def case(self) -> Case:
        return await Case.get(status="open")

    def path(self, url: str) -> str:
        parts = urlsplit(url)
        assert f"{parts.scheme}://{parts.netloc}" == self.settings.public_base_url, url
        return parts.path + (f"?{parts.query}" if parts.query else "")

    async def open(self, url: str, **kw: Any) -> tuple[int, str]:
        resp = await self.client.get(self.path(url), allow_redirects=False, **kw)
        return resp.status, await resp.text()

    async def submit(self, url: str, fields: dict[str, str], *, csrf: str | None = None,
                     headers: dict[str, str] | None = None, raw: bytes | None = None) -> tuple[int, str]:
        """Open the form (unless `csrf` is given) and post `fields` the way its page does."""
        if csrf is None:
            status, page = await self.open(url)
            assert status == 200, page
            csrf = csrf_of(page)
        sent = dict(headers or {})
        if raw is not None:
            sent.setdefault("Content-Type", "application/x-www-form-urlencoded")
        body: Any = raw if raw is not None else {"csrf": csrf, **fields}  # a dict goes urlencoded
        resp = await self.client.post(self.path(url), data=body, allow_redirects=False, headers=sent)
        return resp.status, await resp.text()


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return unescape(found.group(1))


def message_of(page: str) -> str:
    found = re.search(r'id="(?:message|error)"[^>]*>([^<]*)<', page)
    assert found, page
    return unescape(found.group(1))


def link(card: Message, label: str) -> str:
    assert card.card is not None
    for b in card.card.buttons:
        if b.label == label:
            assert b.url and b.action is None and not b.form, b
            return b.url
    raise LookupError(f"no button {label!r} on {[b.label for b in card.card.buttons]}")


class FakeWeCom(EmulatorConnector):
    """WeCom as far as cards go: delivered under the holder's WeCom user id, and cards that hold buttons
    but no text input. Kept in the emulator's store (in the database) so tests read back what each
    holder was delivered and how it was updated. Its links need no sign-in (the pages' platform
    sign-in is the real WeCom connector's, tested with it in test_step_form_platforms)."""

    name = "wecom"
    capabilities = Capabilities(card_inputs=False, links_need_sign_in=False)
    presentation = WeComConnector.presentation
    identity = None


def make_app(settings: Settings, service: CaseService, inbound: Inbound,
             connectors: dict[str, Connector]) -> web.Application:
    app = web.Application()
    app[SETTINGS] = settings
    app[SERVICE] = service
    app[INBOUND] = inbound
    app[CONNECTORS] = connectors  # whose web sign-in the pages use
    signing_web.setup(app)  # the stylesheet (and the signing pages, which a details page links to)
    stepforms.setup(app, dispatch=inbound.dispatch)
    return app


async def harness(settings: Settings, connectors: dict[str, Connector] | None = None) -> AsyncIterator[Forms]:
    """`connectors`: what the pages see of the platforms (their sign-in); default the card store."""
    for emp in await Employee.all():
        emp.wecom_userid = wx(emp.employee_id)
        await emp.save(update_fields=["wecom_userid"])
    service = build_service(settings)
    inbound = Inbound(build_router(), settings, service)
    wecom = FakeWeCom()
    # As the app factory does: card rendering asks the running connectors what their cards hold.
    renderer = CardRenderer(settings, service, capabilities.of_connectors({"wecom": wecom}),
                            channel=presentation.channel_of({"wecom": wecom}, settings.platforms))
    relay = Relay({"wecom": wecom}, renderer.for_outbox, addresses=service.addresses,
                  retry=RetryPolicy(base=0.01, cap=0.05))
    app = make_app(settings, service, inbound, connectors or {"wecom": wecom})
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield Forms(settings, service, inbound, relay, wecom, client)


@pytest.fixture
async def forms(demo_org: Settings) -> AsyncIterator[Forms]:
    settings = demo_org.model_copy(update={"platforms": ("wecom",)})
    async for f in harness(settings):
        reply = await f.hr(START)
        assert reply.ok, reply.text
        await f.deliver()
        yield f
