"""A phone in headless chromium opens HR's upload link from the registered-mail card: the page fits the
screen, refuses an executable renamed .jpg (nothing stored), then takes the EMS number, the delivery result
and a real JPEG of the receipt, and the step is done on that evidence."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from storage.models import AuditEntry, CaseStep, Upload
from tests.browser import ARGS, CHROMIUM, phone
from tests.fallback.conftest import HR, CaseA, real_jpeg
from tests.fallback.test_uploads import EXE

pytestmark = pytest.mark.browser

UA = phone("DingTalk/7.6.0")


async def test_hr_uploads_the_receipt_from_a_phone(case_a: CaseA, tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    h = case_a
    reply = await h.send(HR, "/离职 张三 违纪 2030-01-31 严重违反考勤制度 交接人:周八")
    case_id = reply.data["case_id"]
    assert (await h.send(HR, f"/送达 {case_id} 员工拒绝签收")).ok
    await h.chat.deliver(h.now)
    card = await h.chat.card(HR, step="registered_mail")
    link = next(b.url for b in card.card.buttons if b.url and "/upload/" in b.url)
    url = str(h.client.make_url(urlsplit(link).path))
    exe = tmp_path / "receipt.jpg"
    exe.write_bytes(EXE)
    photo = tmp_path / "IMG_2041.jpg"
    photo.write_bytes(real_jpeg())
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        ctx = await browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True,
                                        device_scale_factor=2, locale="zh-CN", user_agent=UA)
        page = await ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        resp = await page.goto(url)
        assert resp is not None and resp.status == 200
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling
        # The stylesheet loads under the page's CSP (thumb-sized, full-width buttons).
        height = await page.evaluate("document.querySelector('button.primary').getBoundingClientRect().height")
        assert height >= 44
        assert await page.locator("h1").inner_text() == "邮寄送达（EMS 挂号信）"

        # An executable renamed .jpg: refused by its bytes, the page says why, nothing is stored.
        await page.select_option('select[name="delivery_result"]', "delivered")
        await page.fill('input[name="tracking_number"]', "EA123456789CN")
        await page.set_input_files('input[name="receipt_scan"]', str(exe))
        async with page.expect_navigation():
            await page.click('button[value="complete"]')
        assert "只能上传 JPEG、PNG 图片或 PDF 文件" in await page.locator("p.err").inner_text()
        assert not await Upload.filter(case_id=case_id).exists()

        # The real photo: stored, recorded, the step done.
        await page.select_option('select[name="delivery_result"]', "delivered")
        await page.fill('input[name="tracking_number"]', "EA123456789CN")
        await page.set_input_files('input[name="receipt_scan"]', str(photo))
        async with page.expect_navigation():
            await page.click('button[value="complete"]')
        assert "已上传并完成此步骤" in await page.locator("p.ok").inner_text()
        assert "IMG_2041.jpg" in await page.locator("ul").inner_text()
        await page.screenshot(path=str(tmp_path / "uploaded.png"))
        assert errors == []
        await browser.close()
    up = await Upload.get(case_id=case_id)
    assert bytes(up.data) == photo.read_bytes() and up.filename == "IMG_2041.jpg"
    assert await AuditEntry.filter(case_id=case_id, kind="evidence_uploaded").count() == 1
    mail = await CaseStep.get(case_id=case_id, step_id="registered_mail")
    assert (mail.status, mail.outcome, mail.data["tracking_number"]) == ("done", "delivered", "EA123456789CN")
