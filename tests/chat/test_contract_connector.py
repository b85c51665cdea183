"""Case B end to end through a connector written only against the contract (contract_connector.py):
the real app on 127.0.0.1 starts and stops it; HR's command and every tap arrive as typed inbound
events; the signing links on its cards are opened and signed on the real signing page (confirmed
through the connector's own web sign-in against a fake OAuth server, or by the link alone where the
connector declares its links need no sign-in); cards are sent and updated in place with the
per-delivery token handed back each time."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.app import create_app
from chat.connector import Capabilities
from config.settings import Settings
from storage.models import AuditEntry, Case, CaseStep, Document, OutboxMessage, Signature
from tests.chat.contract_connector import NAME, ContractConnector, ContractIdentity, FakeOAuth
from tests.signing_flow.conftest import signature_strokes

START = "/离职 张三 试用期 2025-07-31 绩效未达标 交接人:周八"
HR, EMPLOYEE, MANAGER, FINANCE, HANDOVER = "E001", "E003", "E002", "E004", "E006"

# The platform's in-app browser on a phone (ContractConnector.presentation.client).
PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 ContractApp/3.1.4"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Running:
    base: str
    connector: ContractConnector
    oauth: FakeOAuth | None


async def _serve(settings: Settings, connector: ContractConnector) -> tuple[web.AppRunner, str]:
    port = _free_port()
    settings = settings.model_copy(update={
        "platforms": (NAME,), "http_port": port, "public_base_url": f"http://127.0.0.1:{port}",
        "outbox_poll_seconds": 0.02, "timer_poll_seconds": 0.05})
    runner = web.AppRunner(create_app(settings, with_db=False, connectors={NAME: connector}), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture(params=["oauth", "link"])
async def running(request: pytest.FixtureRequest, demo_org: Settings) -> AsyncIterator[Running]:
    oauth = FakeOAuth() if request.param == "oauth" else None
    identity = ContractIdentity(await oauth.start()) if oauth else None
    connector = ContractConnector(identity)
    if identity is None:  # a platform without web sign-in: its links must be declared enough on their own
        connector.capabilities = Capabilities(links_need_sign_in=False)
    assert not connector.running
    runner, base = await _serve(demo_org, connector)
    try:
        assert connector.running and connector.starts == 1  # started with the app, given its dispatch
        yield Running(base, connector, oauth)
    finally:
        await runner.cleanup()
        if oauth:
            await oauth.close()
    assert not connector.running and connector.stops == 1  # stopped with the app


async def _pdf_text(pdf: bytes) -> str:
    proc = await asyncio.create_subprocess_exec("pdftotext", "-", "-", stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate(pdf)
    return out.decode()


async def _settle() -> None:
    """Wait until the relay delivered everything due (a click then never races an update)."""
    for _ in range(500):
        if not await OutboxMessage.filter(status__in=["pending", "claimed"]).exists():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the relay did not deliver")


async def _sign(http: aiohttp.ClientSession, run: Running, url: str, signer: str) -> None:
    """What the signer's phone does: open the link (signing in on the platform when it asks), then
    submit strokes against the hash the page showed."""
    assert url.startswith(f"{run.base}/sign/"), url
    if run.oauth:
        run.oauth.logged_in = signer
    async with http.get(url) as r:
        page = await r.text()
        assert r.status == 200, page
        if run.oauth:  # went through the platform's login and back
            assert [str(h.url).split("?")[0] for h in r.history][1:2] == [f"{run.oauth.base_url}/authorize"]
    found = re.search(r'\?h=([0-9a-f]{64})"', page)
    assert found, page
    token = url.rsplit("/", 1)[1]
    async with http.post(f"{url}?h={found.group(1)}", json={
            "token": token, "consent": True, "consent_version": "2025-01", "strokes": signature_strokes()}) as r:
        body = await r.json()
        assert r.status == 200 and body.get("ok"), body


async def _tap(run: Running, user: str, step: str, action: str, form: dict[str, str] | None = None) -> None:
    await _settle()
    card_id, _ = await run.connector.wait_card(user, step=step, action=action)
    answer = await run.connector.press(user, card_id, action, form)
    assert answer.ok, answer.text


async def _sign_turn(http: aiohttp.ClientSession, run: Running, user: str, step: str) -> None:
    await _settle()
    _, card = await run.connector.wait_card(user, step=step, link=True)
    await _sign(http, run, next(b.url for b in card.buttons if b.url), user)


async def test_case_b_through_a_connector_written_against_the_contract(running: Running) -> None:
    run, conn = running, running.connector
    # HR's command, typed on the platform.
    answer = await conn.type(HR, START)
    assert answer.ok and "已为 张三" in answer.text, answer.text
    case_id = answer.data["case_id"]
    jar = aiohttp.CookieJar(unsafe=True)  # the identity cookie is set for 127.0.0.1
    async with aiohttp.ClientSession(cookie_jar=jar, headers={"User-Agent": PHONE}) as http:
        await _tap(run, EMPLOYEE, "application", "submit",
                   {"last_working_day": "2025-07-31", "reason": "试用期考核未通过"})
        await _tap(run, MANAGER, "performance_review", "approve", {"result": "完成率 60%，要求 80%"})
        await _tap(run, HR, "hr_check", "complete", {"unpaid_months": "2"})
        await _settle()

        # The guarantee letter waits for the employee's signature: the back-payment stays locked and
        # HR cannot close; pressing 结案 is refused and changes nothing.
        _, sign_card = await conn.wait_card(EMPLOYEE, step="guarantee", link=True)
        assert "1,438.42" in str(sign_card.to_dict())
        summary_id, summary = await conn.wait_card(HR, purpose="summary")
        close = summary.button("close")
        assert close is not None and not close.enabled and "《离职保证书》" in (close.reason or "")
        assert not any(c.step_id == "backpay" and c.button("confirm") for _, c in conn.cards_of(FINANCE))
        steps = dict(await CaseStep.filter(case_id=case_id).values_list("step_id", "status"))
        assert steps["backpay"] != "active"
        refused = await conn.press(HR, summary_id, "close")
        assert not refused.ok and refused.code == "incomplete" and "离职保证书" in refused.text
        assert (await Case.get(id=case_id)).status == "open"

        # Signed on the real page: the lock opens and finance confirms the back-payment.
        await _sign_turn(http, run, EMPLOYEE, "guarantee")
        await _tap(run, FINANCE, "backpay", "confirm", {"payment_reference": "PAY-2025-0001"})
        # The handover sheet: the employee, then the receiving colleague, sign the same sheet.
        await _sign_turn(http, run, EMPLOYEE, "handover")
        await _sign_turn(http, run, HANDOVER, "handover")
        await _sign_turn(http, run, EMPLOYEE, "separation_certificate")
        await _sign_turn(http, run, EMPLOYEE, "rights_notice")
        await _tap(run, EMPLOYEE, "rights_notice", "acknowledge")
        for _ in range(300):
            if (await Case.get(id=case_id)).status == "completed":
                break
            await asyncio.sleep(0.02)
        case = await Case.get(id=case_id)
        assert case.status == "completed", await CaseStep.filter(case_id=case_id).values_list("step_id", "status")
        await _settle()

    # Every document sealed, each signature confirmed the way this platform offers.
    docs = await Document.filter(case_id=case_id)
    assert {d.kind for d in docs} >= {"guarantee_letter", "handover_confirmation", "separation_certificate",
                                      "rights_notice"} and all(d.status == "sealed" for d in docs)
    sigs = await Signature.filter(document_id__in=[d.id for d in docs]).order_by("id")
    assert len(sigs) == 5
    # The evidence page names the platform's in-app browser as the connector presents it.
    letter = next(d for d in docs if d.kind == "guarantee_letter")
    assert "设备 Device 契约平台 ContractApp 3.1.4 · iPhone iOS 17.4" in " ".join(
        (await _pdf_text(bytes(letter.pdf_signed))).split())
    if run.oauth:
        assert {s.identity_method for s in sigs} == {f"{NAME}_oauth"}
        assert all(s.platform_identity == f"{NAME}:{s.signer_id}" for s in sigs)
        assert run.oauth.token_calls == 1  # the connector's cached app token served every sign-in
        assert run.oauth.userinfo_calls == 5
    else:
        assert {s.identity_method for s in sigs} == {"link"}

    # Every card went out once per row, and every update came with the newest token the platform
    # handed out for that card (on send, on the holder's click, or on the previous update), once each.
    rows = await OutboxMessage.filter(case_id=case_id, kind="card").order_by("id")
    assert rows and all(r.status == "sent" for r in rows)
    assert len(conn.deliveries) == len(rows)
    origins = {origin for _, _, origin in conn.handed_back}
    assert origins == {"send", "click", "update"}, origins
    assert len({t for _, t, _ in conn.handed_back}) == len(conn.handed_back)
    # The employee's application card: their click's token is what the next update of that card used.
    app_id, _ = next((cid, c) for cid, c in conn.cards_of(EMPLOYEE) if c.step_id == "application")
    assert next(o for cid, _, o in conn.handed_back if cid == app_id) == "click"
    assert conn.phone(EMPLOYEE).versions[app_id] >= 2  # updated in place, not sent again
    by_message = {d.message_id: d for d in conn.deliveries.values()}
    for row in rows:  # the stored delivery is what the platform answered last
        assert row.delivery == by_message[row.platform_message_id].to_json()


async def _guarantee_link(run: Running) -> str:
    answer = await run.connector.type(HR, START)
    assert answer.ok
    await _tap(run, EMPLOYEE, "application", "submit", {"last_working_day": "2025-07-31", "reason": "个人原因"})
    await _tap(run, MANAGER, "performance_review", "approve", {"result": "完成率 60%，要求 80%"})
    await _tap(run, HR, "hr_check", "complete", {"unpaid_months": "2"})
    await _settle()
    _, card = await run.connector.wait_card(EMPLOYEE, step="guarantee", link=True)
    return next(b.url for b in card.buttons if b.url)


@pytest.fixture
async def with_identity(demo_org: Settings) -> AsyncIterator[Running]:
    oauth = FakeOAuth()
    connector = ContractConnector(ContractIdentity(await oauth.start()))
    runner, base = await _serve(demo_org, connector)
    try:
        yield Running(base, connector, oauth)
    finally:
        await runner.cleanup()
        await oauth.close()


async def _state() -> tuple[Any, ...]:
    return (await Signature.all().count(), await AuditEntry.all().count(),
            tuple(await CaseStep.all().order_by("id").values_list("status", flat=True)))


async def test_someone_else_signed_in_on_the_platform_cannot_sign(with_identity: Running) -> None:
    run = with_identity
    oauth = run.oauth
    assert oauth is not None
    url = await _guarantee_link(run)
    before = await _state()
    oauth.logged_in = MANAGER
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(url) as r:
            assert r.status == 403 and "不能代他人签署" in await r.text()
        # No identity cookie came back: the page still sends them to the platform's login.
        async with http.get(url, allow_redirects=False) as r:
            assert r.status == 302 and r.headers["Location"].startswith(f"{oauth.base_url}/authorize")
        async with http.post(url, json={"token": url.rsplit("/", 1)[1]}) as r:
            body = await r.json()
            assert r.status == 401 and body["code"] == "identity_required"
            # The signer's own platform, as its connector presents itself: no platform name in the core's text.
            assert body["message"] == "请先通过契约平台确认身份后再签署（请刷新页面）。"
    assert await _state() == before


async def test_a_forged_state_or_a_used_code_confirms_nobody(with_identity: Running) -> None:
    run = with_identity
    oauth = run.oauth
    assert oauth is not None
    url = await _guarantee_link(run)
    before = await _state()
    oauth.logged_in = EMPLOYEE
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(url, allow_redirects=False) as r:
            login = r.headers["Location"]
        async with http.get(login, allow_redirects=False) as r:
            back = r.headers["Location"]  # our callback with a fresh code and the link's state
        forged = re.sub(r"state=[^&]+", "state=" + "0" * 40, back)
        async with http.get(forged, allow_redirects=False) as r:
            assert r.status == 403 and "身份确认请求无效" in await r.text()
        async with http.get(back, allow_redirects=False) as r:
            assert r.status == 302  # the real one works once...
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as other:
            async with other.get(back, allow_redirects=False) as r:  # ...a replayed code confirms nobody
                assert r.status == 403 and "未能通过平台确认您的身份，请在契约平台内重新打开链接。" in await r.text()
            too_long = re.sub(r"code=[^&]+", "code=" + "x" * 600, back)
            async with other.get(too_long, allow_redirects=False) as r:
                assert r.status == 403
    assert oauth.userinfo_calls == 2  # the forged state and the oversized code never reached the platform
    assert await _state() == before
