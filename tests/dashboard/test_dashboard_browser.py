"""The HR dashboard in headless chromium (a phone-sized window): HR signs in through the emulator's local
sign-in, sees the overview overdue first, opens a finished case, reads its timeline, downloads the archive
(which passes the offline check); a non-HR person and a signed-out visitor are refused; an expired session
asks for sign-in again; a name carrying script stays text."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from config.settings import Settings
from signing.archive_check import verify_archive
from signing.verify import all_ok
from storage.models import CaseAccess, Employee
from tests.browser import ARGS, CHROMIUM, phone
from tests.dashboard.conftest import EMPLOYEE, HR, OTHER, TOKEN, Dash, serve, start
from tests.signing_flow.conftest import Flow, complete_case, make_app, to_guarantee_step

pytestmark = pytest.mark.browser

UA = phone("wxwork/4.1.20")


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            await b.close()


async def _phone(browser: object, dash: Dash):  # type: ignore[no-untyped-def]
    ctx = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,  # type: ignore[attr-defined]
                                    locale="zh-CN", user_agent=UA, accept_downloads=True)
    page = await ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # Every failed load but the browser's own favicon probe (the dashboard has none) is an error.
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}")
            if r.status >= 400 and not r.url.endswith("/favicon.ico") and "/dashboard/" not in r.url else None)
    # The person at this machine opens the emulator's printed address first (its token becomes a cookie).
    await page.goto(f"{dash.base}/emulator?token={TOKEN}")
    return ctx, page, errors


async def _sign_in(page, dash: Dash, who: str) -> None:  # type: ignore[no-untyped-def]
    await page.goto(f"{dash.base}/dashboard")
    assert page.url.startswith(f"{dash.base}/dashboard/signin")
    await page.click("#signin-emulator")
    await page.click(f"#as-{who}")


async def _finished_case(dash: Dash) -> str:
    """Case B driven to completion through the real signing pages (sealed documents to download)."""
    emp = await Employee.get(employee_id=EMPLOYEE)
    case_id = await start(dash.service, emp.employee_id, "probation", handover="E006")
    async with TestClient(TestServer(make_app(dash.settings, dash.service), host="127.0.0.1")) as client:
        flow = Flow(dash.settings, dash.service, case_id, client)
        await to_guarantee_step(dash.service, case_id)
        await complete_case(flow)
    return case_id


async def test_hr_reads_a_case_and_downloads_its_archive(dash: Dash, browser: object, tmp_path: Path) -> None:
    done = await _finished_case(dash)
    late = await start(dash.service, OTHER, "resignation", days_ago=6)
    ctx, page, errors = await _phone(browser, dash)
    await _sign_in(page, dash, HR)
    assert page.url == f"{dash.base}/dashboard"
    assert await page.locator("h1").inner_text() == "离职流程"
    rows = page.locator("tr.case")
    assert await rows.count() == 1  # the finished case is not open
    assert await rows.first.get_attribute("data-case") == late
    assert "overdue" in (await rows.first.get_attribute("class") or "")
    assert await page.locator("#count-overdue b").inner_text() == "1"
    # On a phone the table's rows are cards: each cell carries its label, the header row is hidden.
    assert not await page.locator("table.cases thead").is_visible()
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, width
    await page.select_option("select[name=state]", "completed")
    await page.click("form.filters button")
    assert await page.locator("tr.case").count() == 1
    await page.click(f"a[href='/dashboard/case/{done}']")
    assert page.url == f"{dash.base}/dashboard/case/{done}"
    kinds = await page.locator("ol.timeline li").evaluate_all("els => els.map(e => e.dataset.kind)")
    assert kinds[:2] == ["case_opened", "case_started"] and "signature_evidence" in kinds and "card_sent" in kinds
    assert "step_done" in kinds and "document_issued" in kinds and "step_viewed" in kinds, kinds
    assert "由此完成" in await page.locator("li.kind-step_done").last.inner_text()
    evidence = page.locator("li.kind-signature_evidence").first
    assert "127.0.0.1" in await evidence.inner_text()  # the signer's address, from the evidence record
    assert await page.locator("#verify-result").inner_text() == "通过"
    assert await page.locator("a.doc-download").count() >= 4
    async with page.expect_download() as info:
        await page.click("#archive")
    download = await info.value
    target = tmp_path / "archive.zip"
    await download.save_as(target)
    checks = await verify_archive(target)
    assert all_ok(checks), [c.line() for c in checks if not c.ok]
    await page.reload()
    log = await page.locator("#access tbody").inner_text()
    assert "download" in log and "view" in log
    actions = [a.action for a in await CaseAccess.filter(case_id=done).order_by("id")]
    assert actions[-3:] == ["view", "download", "view"]
    # English on request, kept for the session.
    await page.click("a.lang")
    assert await page.locator("#verify-result").inner_text() == "PASS"
    assert errors == []
    await ctx.close()


async def test_non_hr_and_signed_out_are_refused(dash: Dash, browser: object) -> None:
    case_id = await start(dash.service, EMPLOYEE, "probation")
    ctx, page, errors = await _phone(browser, dash)
    resp = await page.goto(f"{dash.base}/dashboard/case/{case_id}")
    assert resp is not None and page.url.startswith(f"{dash.base}/dashboard/signin")
    # Nothing of the case: the sign-in page only remembers where the visitor wanted to go.
    assert await page.locator("#timeline, dl.summary").count() == 0 and "张三" not in await page.content()
    await _sign_in(page, dash, EMPLOYEE)
    assert "只有人事" in await page.locator("#message").inner_text()
    await page.goto(f"{dash.base}/dashboard")
    assert page.url.startswith(f"{dash.base}/dashboard/signin")
    assert await CaseAccess.filter(case_id=case_id).count() == 0
    assert errors == []
    await ctx.close()


async def test_expired_session_signs_in_again_and_script_stays_text(demo_org: Settings, browser: object) -> None:
    evil = '<script>alert(1)</script><img src=x onerror=alert(2)>'
    await Employee.filter(employee_id=EMPLOYEE).update(name=evil)
    async with serve(demo_org, dashboard_session_minutes=0.05) as dash:  # 3 seconds
        case_id = await start(dash.service, EMPLOYEE, "probation", reason=evil)
        ctx, page, errors = await _phone(browser, dash)
        dialogs: list[str] = []
        page.on("dialog", lambda d: dialogs.append(d.message))
        await _sign_in(page, dash, HR)
        assert page.url == f"{dash.base}/dashboard"
        cell = page.locator(f"tr[data-case='{case_id}'] td").nth(1)
        assert evil in await cell.inner_text()  # shown as the characters it is
        await page.goto(f"{dash.base}/dashboard/case/{case_id}")
        assert evil in await page.locator("dl.summary").inner_text()
        assert await page.locator("img").count() == 0
        await asyncio.sleep(3.5)
        await page.goto(f"{dash.base}/dashboard/case/{case_id}")
        assert page.url.startswith(f"{dash.base}/dashboard/signin") and "expired=1" in page.url
        assert "登录已过期" in await page.locator("#message").inner_text()
        await page.click("#signin-emulator")
        await page.click(f"#as-{HR}")
        assert page.url == f"{dash.base}/dashboard/case/{case_id}"  # back where the session ended
        assert dialogs == [] and errors == []
        await ctx.close()
