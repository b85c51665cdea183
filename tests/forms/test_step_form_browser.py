"""A phone in headless chromium opens the web form from a WeCom card (whose cards hold no text input),
fills it and submits; the case advances and the card is updated. Script typed into the form stays text."""

from __future__ import annotations

import pytest

from storage.models import AuditEntry, CaseStep
from tests.browser import ARGS, CHROMIUM, phone
from tests.forms.conftest import EMPLOYEE, Forms, link

pytestmark = pytest.mark.browser

UA = phone("wxwork/4.1.22 MicroMessenger/7.0.1")
EVIL = "<script>window.pwned=1</script><img src=x onerror=\"window.pwned=2\">"


async def test_phone_fills_and_submits_the_step_form(forms: Forms) -> None:
    from playwright.async_api import async_playwright

    card = await forms.card(EMPLOYEE, step="application")
    url = str(forms.client.make_url(forms.path(link(card, "提交"))))
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        ctx = await browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True,
                                        device_scale_factor=2, locale="zh-CN", user_agent=UA)
        page = await ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("dialog", lambda d: errors.append(f"dialog {d.message}"))
        resp = await page.goto(url)
        assert resp is not None and resp.status == 200
        # Phone-sized: nothing wider than the screen, the submit button reachable and large enough to tap.
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390
        box = await page.locator("#submit").bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] >= 40
        # A wrong date first: the page says why and keeps what was typed (script included, as text).
        await page.fill("#f-last_working_day", "31.07.2025")
        await page.fill("#f-reason", EVIL)
        async with page.expect_navigation():
            await page.tap("#submit")
        assert "最后工作日" in await page.locator("#error").inner_text()
        assert await page.input_value("#f-reason") == EVIL
        assert await page.evaluate("window.pwned") is None
        await page.fill("#f-last_working_day", "2025-07-31")
        await page.fill("#f-reason", "收到通知。" + EVIL)
        async with page.expect_navigation():
            await page.tap("#submit")
        message = await page.locator("#message").inner_text()
        assert "已提交" in message, message
        assert await page.evaluate("window.pwned") is None
        assert not errors, errors
        await browser.close()
    case = await forms.case()
    step = await CaseStep.get(case_id=case.id, step_id="application")
    assert step.status == "done" and step.data == {"last_working_day": "2025-07-31", "reason": "收到通知。" + EVIL}
    assert await AuditEntry.filter(case_id=case.id, kind="step_done", actor=EMPLOYEE).count() == 1
    await forms.deliver()
    updated = await forms.card(EMPLOYEE, step="application")
    assert updated.card is not None and all(b.label != "提交" for b in updated.card.buttons)
