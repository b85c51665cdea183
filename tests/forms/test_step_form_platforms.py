"""Which cards get web forms, and platform sign-in on the form and details pages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import pytest

from chat import capabilities
from chat.connector import Capabilities
from config.settings import Settings
from storage.models import AuditEntry, CaseStep
from tests.chat.conftest import build_chat
from tests.forms.conftest import EMPLOYEE, Forms, harness, link, message_of, wx
from tests.signing_flow.test_signflow_oauth import FakePlatforms, built, platform_env

GOOD = {"last_working_day": "2025-07-31", "reason": "收到通知，无异议"}


async def test_emulator_cards_keep_their_inputs_and_carry_the_details_link(demo_org: Settings) -> None:
    chat = build_chat(demo_org)
    await chat.send("E001", "/离职 张三 试用期 2025-07-31 绩效未达标 交接人:周八")
    await chat.deliver()
    card = await chat.card(EMPLOYEE, step="application")
    assert card.card is not None
    submit = card.card.button("submit")
    assert submit is not None and submit.form and submit.url is None  # the card holds the inputs
    assert card.card.details_url.startswith("http://127.0.0.1:8080/view/")


def test_capabilities_come_from_the_running_connectors_then_the_shipped_table() -> None:
    assert capabilities.shipped("emulator").card_inputs
    assert not capabilities.shipped("wecom").card_inputs
    assert not capabilities.shipped("someday").card_inputs  # unknown: the web form works anywhere
    assert not capabilities.shipped("emulator").metered_updates

    class Inputs:
        capabilities = Capabilities(card_inputs=True)

    lookup = capabilities.of_connectors({"dingtalk": Inputs()})  # type: ignore[dict-item]
    assert lookup("dingtalk").card_inputs
    assert not lookup("wecom").card_inputs


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakePlatforms, str]]:
    from aiohttp.test_utils import TestServer

    platforms = FakePlatforms()
    async with TestServer(platforms.app(), host="127.0.0.1") as server:
        yield platforms, str(server.make_url("")).rstrip("/")


@pytest.fixture
async def signed_in(demo_org: Settings, fake: tuple[FakePlatforms, str], monkeypatch: pytest.MonkeyPatch
                    ) -> AsyncIterator[tuple[Forms, FakePlatforms]]:
    """The pages see the real WeCom connector (built from its own WECOM_* settings, pointing at the
    fake): its sign-in confirms the holder; cards still go through the card store."""
    platforms, base = fake
    platform_env(monkeypatch, base)
    settings = demo_org.model_copy(update={"platforms": ("wecom",)})
    async with built(settings) as connectors:
        async for f in harness(settings, connectors):
            assert (await f.hr("/离职 张三 试用期 2025-07-31 绩效未达标 交接人:周八")).ok
            await f.deliver()
            yield f, platforms


async def _login(f: Forms, platforms: FakePlatforms, url: str, as_user: str) -> tuple[int, str]:
    first = await f.client.get(f.path(url), allow_redirects=False)
    assert first.status == 302, await first.text()
    target = urlsplit(first.headers["Location"])
    q = parse_qs(target.query)
    assert q["scope"] == ["snsapi_base"] and q["appid"] == ["wwcorp"]
    back = urlsplit(q["redirect_uri"][0])
    platforms.codes["CODE1"] = as_user
    resp = await f.client.get(f"{back.path}?code=CODE1&state={q['state'][0]}", allow_redirects=False)
    return resp.status, await resp.text()


async def test_form_confirms_the_holder_through_wecom(signed_in: tuple[Forms, FakePlatforms]) -> None:
    f, platforms = signed_in
    url = link(await f.card(EMPLOYEE, step="application"), "提交")
    # Before signing in, a POST is refused and nothing changes.
    resp = await f.client.post(f.path(url), data={"csrf": "x", **GOOD})
    assert resp.status == 401
    status, _ = await _login(f, platforms, url, wx(EMPLOYEE))
    assert status == 302
    status, page = await f.submit(url, GOOD)
    assert status == 200, page
    case = await f.case()
    assert (await CaseStep.get(case_id=case.id, step_id="application")).status == "done"


async def test_someone_else_signing_in_on_the_holders_form_is_refused(signed_in: tuple[Forms, FakePlatforms]) -> None:
    f, platforms = signed_in
    url = link(await f.card(EMPLOYEE, step="application"), "提交")
    status, page = await _login(f, platforms, url, wx("E002"))
    assert status == 403 and "不一致" in message_of(page)
    again = await f.client.get(f.path(url), allow_redirects=False)
    assert again.status == 302  # still not confirmed
    case = await f.case()
    assert (await CaseStep.get(case_id=case.id, step_id="application")).status == "active"


async def test_details_page_confirms_the_viewer_before_recording_a_view(signed_in: tuple[Forms, FakePlatforms]
                                                                        ) -> None:
    f, platforms = signed_in
    card = await f.card(EMPLOYEE, step="application")
    url = card.card.details_url  # type: ignore[union-attr]
    case = await f.case()
    status, _ = await _login(f, platforms, url, wx("E002"))  # a forwarded link opened by someone else
    assert status == 403
    assert not await AuditEntry.filter(case_id=case.id, kind="step_viewed").exists()
    status, _ = await _login(f, platforms, url, wx(EMPLOYEE))
    assert status == 302
    status, page = await f.open(url)
    assert status == 200, page
    assert await AuditEntry.filter(case_id=case.id, kind="step_viewed").count() == 1


def test_form_and_view_tokens_are_cut_from_the_access_log() -> None:
    import logging

    from handlers.links import RedactLinkTokens

    record = logging.LogRecord("aiohttp.access", logging.INFO, __file__, 1, '%s "%s" %s',
                               ("127.0.0.1", "GET /form/eyJj.abc?lang=en HTTP/1.1", "POST /view/eyJ.x HTTP/1.1"),
                               None)
    RedactLinkTokens().filter(record)
    assert record.args == ("127.0.0.1", "GET /form/…?lang=en HTTP/1.1", "POST /view/… HTTP/1.1")
