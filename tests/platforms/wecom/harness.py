"""The bot's real pipeline over a fake WeCom: settings with PLATFORMS=wecom, the router and service
on the test database, the relay delivering through the WeCom connector, the connector started
with the bot's own dispatch, and the signing pages on 127.0.0.1 (their WeCom OAuth against the fake)."""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.app import build_service
from bot.inbound import Inbound, build_router
from bot.outbox import Relay, RetryPolicy
from bot.platforms.wecom.connector import card_id_of
from chat import capabilities, presentation
from chat.connector import CardAction
from config.settings import Settings
from handlers.cardview import CardRenderer
from storage import cardids
from storage.models import Employee, OutboxMessage
from tests.platforms.wecom.fake_wecom import AGENT_ID, CORP_ID, FakeWeCom
from tests.platforms.wecom.rig import USERIDS, Rig, click_xml, wecom_rig
from tests.signing_flow.conftest import make_app, signature_strokes


@dataclass
class WeComCase:
    settings: Settings
    inbound: Inbound
    relay: Relay
    rig: Rig
    signing: TestClient

    @property
    def fake(self) -> FakeWeCom:
        return self.rig.fake

    async def deliver(self) -> int:
        total = 0
        while (n := await self.relay.run_once()) or await OutboxMessage.filter(status="claimed").exists():
            total += n
        await self.rig.connector.drain()
        return total

    async def row(self, eid: str, step: str | None = None, purpose: str | None = None) -> OutboxMessage:
        held = await OutboxMessage.filter(recipient=eid, kind="card", status="sent").order_by("id")
        rows = [r for r in held if (step is None or r.step_id == step)
                and (purpose is None or (r.payload or {}).get("purpose") == purpose)]
        assert rows, f"{eid} holds no card for {step or purpose}"
        return rows[-1]

    def shown(self, card_id: str) -> dict[str, Any]:
        """What the holder's phone shows for this card now: its newest send or update."""
        shown: dict[str, Any] | None = None
        for body in [*self.fake.sent, *self.fake.updates]:  # updates always follow the send they change
            tc = body.get("template_card")
            if tc and card_id_of(tc["task_id"]) == card_id:
                shown = tc
        assert shown is not None, f"no card {card_id} on the fake"
        return shown

    async def card(self, eid: str, step: str | None = None, purpose: str | None = None) -> tuple[str, dict[str, Any]]:
        row = await self.row(eid, step, purpose)
        card_id = cardids.card_id_of(row)
        return card_id, self.shown(card_id)

    async def click(self, eid: str, card_id: str, key: str) -> str:
        """A tap on the holder's phone: WeCom issues a fresh ResponseCode and posts the encrypted event."""
        code = self.fake.issue_code()
        task = self.shown(card_id)["task_id"]
        assert await self.rig.callback(click_xml(USERIDS[eid], task, key, code)) == (200, "")
        return code

    async def submit_form(self, eid: str, card_id: str, action: str, form: dict[str, str]) -> None:
        """A step that asks for text, submitted as the step's web form submits it: the holder's action
        on their card, with the form's fields, through the bot's dispatch."""
        answer = await self.inbound.dispatch(CardAction(platform="wecom", sender=USERIDS[eid], card_id=card_id,
                                                        action=action, event_id=f"form:{secrets.token_hex(6)}",
                                                        form=form))
        assert answer.ok, answer.text

    async def sign(self, eid: str, step: str) -> None:
        """Open the signing link on the holder's card, sign in through WeCom OAuth (the fake), sign."""
        _, card = await self.card(eid, step)
        buttons = card.get("button_list", []) + card.get("jump_list", [])
        links = [b["url"] for b in buttons if "/sign/" in b.get("url", "")]
        assert links, card
        path = urlsplit(links[0]).path
        first = await self.signing.get(path, allow_redirects=False)
        assert first.status == 302, await first.text()
        login = urlsplit(first.headers["Location"])
        q = parse_qs(login.query)
        assert login.geturl().startswith(self.rig.connector.settings.oauth_url) and q["scope"] == ["snsapi_base"]
        assert q["appid"] == [CORP_ID] and q["agentid"] == [str(AGENT_ID)] and login.fragment == "wechat_redirect"
        code = secrets.token_hex(8)
        self.fake.oauth_codes[code] = USERIDS[eid]  # WeCom knows who opened the page inside its app
        back = await self.signing.get(f"{urlsplit(q['redirect_uri'][0]).path}?code={code}&state={q['state'][0]}",
                                      allow_redirects=False)
        assert back.status == 302 and back.headers["Location"] == path, await back.text()
        page = await self.signing.get(path)
        text = await page.text()
        h = re.search(r'\?h=([0-9a-f]{64})"', text)
        assert page.status == 200 and h, text
        token = path.rsplit("/", 1)[1]
        resp = await self.signing.post(f"{path}?h={h.group(1)}", json={
            "token": token, "consent": True, "consent_version": "2025-01", "strokes": signature_strokes()})
        assert resp.status == 200, await resp.text()


@pytest.fixture
async def wcase(demo_org: Settings) -> AsyncIterator[WeComCase]:
    for eid, uid in USERIDS.items():
        await Employee.filter(employee_id=eid).update(wecom_userid=uid)
    fake = FakeWeCom(users={uid: {"userid": uid, "name": eid, "department": [1]} for eid, uid in USERIDS.items()})
    async with wecom_rig(fake) as rig:
        settings = demo_org.model_copy(update={"platforms": ("wecom",)})
        service = build_service(settings)
        inbound = Inbound(build_router(), settings, service)
        await rig.connector.stop()
        await rig.connector.start(inbound.dispatch)  # the bot's dispatch, as the app wires it
        connectors = {"wecom": rig.connector}
        # As the app factory does: cards are rendered for what the running connector's cards hold, and
        # documents say what its presentation says.
        renderer = CardRenderer(settings, service, capabilities.of_connectors(connectors),
                                channel=presentation.channel_of(connectors, settings.platforms))
        relay = Relay(connectors, renderer.for_outbox, addresses=service.addresses,
                      retry=RetryPolicy(base=0.01, cap=0.05))
        async with TestClient(TestServer(make_app(settings, service, connectors), host="127.0.0.1")) as signing:
            yield WeComCase(settings, inbound, relay, rig, signing)
