"""Drive the signing page in headless chromium on a phone viewport and check what the server receives."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from aiohttp import web

from signing.documents import render_document
from signing.page import CONSENT_VERSION, render_sign_page
from signing.preview import pdf_to_png_pages
from signing.strokes import parse_strokes, trivial_reason
from tests.browser import ARGS, CHROMIUM

pytestmark = pytest.mark.browser

STATIC = Path(__file__).resolve().parents[2] / "handlers" / "static"


async def _server(doc_png: bytes, received: list[dict]) -> tuple[web.AppRunner, str]:
    async def sign(request: web.Request) -> web.Response:
        html = render_sign_page(title="离职保证书", employee_name="张三<script>alert(1)</script>",
                                doc_images=["/doc/1.png"], submit_url="/submit", token="tok.en",
                                lang=request.query.get("lang", "zh"))
        return web.Response(text=html, content_type="text/html")

    async def doc(request: web.Request) -> web.Response:
        return web.Response(body=doc_png, content_type="image/png")

    async def submit(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({"ok": True, "message": "签署完成"})

    app = web.Application()
    app.router.add_get("/sign", sign)
    app.router.add_get("/doc/1.png", doc)
    app.router.add_post("/submit", submit)
    app.router.add_static("/static", STATIC)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def _draw(page, path: list[tuple[float, float]]) -> None:  # type: ignore[no-untyped-def]
    box = await page.locator("#pad").bounding_box()
    ox, oy = box["x"], box["y"]
    await page.mouse.move(ox + path[0][0], oy + path[0][1])
    await page.mouse.down()
    for x, y in path[1:]:
        await page.mouse.move(ox + x, oy + y, steps=3)
    await page.mouse.up()


def _wave(x0: float, w: float, mid: float, amp: float) -> list[tuple[float, float]]:
    return [(x0 + w * i / 24, mid + amp * math.sin(i / 24 * math.pi * 3)) for i in range(25)]


async def _stroke_count(page) -> int:  # type: ignore[no-untyped-def]
    return await page.evaluate("window.signpad.strokes().length")


@pytest.mark.parametrize(("width", "height"), [(390, 844), (844, 390)])
async def test_sign_page_draw_undo_clear_submit(width: int, height: int, guarantee_context: dict,
                                                ) -> None:
    from playwright.async_api import async_playwright

    doc_png = pdf_to_png_pages(render_document("guarantee_letter", guarantee_context), dpi=80)[0]
    received: list[dict] = []
    runner, base = await _server(doc_png, received)
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            ctx = await browser.new_context(viewport={"width": width, "height": height}, has_touch=True,
                                            is_mobile=True, device_scale_factor=2, locale="zh-CN")
            page = await ctx.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(f"{base}/sign")
            # Script in the name is shown as text, never executed.
            assert await page.locator("#employee-name").inner_text() == "张三<script>alert(1)</script>"
            await page.locator("#pad").scroll_into_view_if_needed()

            # Device-pixel-ratio-correct backing store.
            dims = await page.evaluate(
                "(() => { const c = document.getElementById('pad'); const r = c.getBoundingClientRect();"
                " return [c.width, c.height, r.width, r.height]; })()")
            assert abs(dims[0] - dims[2] * 2) <= 1 and abs(dims[1] - dims[3] * 2) <= 1

            await _draw(page, _wave(30, 90, 80, 30))
            await _draw(page, _wave(140, 90, 90, 35))
            assert await _stroke_count(page) == 2
            await page.click("#undo")
            assert await _stroke_count(page) == 1
            await page.click("#clear")
            assert await _stroke_count(page) == 0

            # Empty, no consent, and a straight line are refused client-side: nothing is posted.
            await page.click("#submit")
            assert "勾选" in await page.locator("#status").inner_text()
            await page.check("#consent")
            await page.click("#submit")
            assert "请先在签名区手写签名" in await page.locator("#status").inner_text()
            await _draw(page, [(30 + i * 10, 100) for i in range(20)])
            await page.click("#submit")
            assert "过于简单" in await page.locator("#status").inner_text()
            assert received == []
            await page.click("#clear")

            await _draw(page, _wave(30, 90, 80, 30))
            await _draw(page, _wave(140, 90, 90, 35))
            await _draw(page, [(250, 60), (270, 120), (290, 70), (310, 125)])
            # Rotate there and back: strokes are replayed, not lost, and come back unchanged.
            before = await page.evaluate("JSON.stringify(window.signpad.payload().strokes)")
            await page.set_viewport_size({"width": height, "height": width})
            await page.wait_for_timeout(150)
            assert await _stroke_count(page) == 3
            await page.set_viewport_size({"width": width, "height": height})
            await page.wait_for_timeout(150)
            assert await page.evaluate("JSON.stringify(window.signpad.payload().strokes)") == before
            await page.locator("#pad").scroll_into_view_if_needed()
            if width < height:
                await page.screenshot(path="/tmp/signing-browser-portrait.png")
            await page.click("#submit")
            await page.wait_for_function("document.getElementById('status').classList.contains('ok')")
            assert await page.locator("#status").inner_text() == "签署完成"
            assert errors == []
            await browser.close()
    finally:
        await runner.cleanup()

    assert len(received) == 1
    body = received[0]
    assert body["token"] == "tok.en" and body["consent"] is True and body["consent_version"] == CONSENT_VERSION
    payload = parse_strokes(body["strokes"])
    assert len(payload.strokes) == 3
    assert trivial_reason(payload) is None
    assert json.dumps(body["strokes"])  # plain JSON, no extra client fields
    assert set(body["strokes"]) == {"width", "height", "strokes"}


async def test_english_variant(guarantee_context: dict) -> None:
    html = render_sign_page(title="<Guarantee>", employee_name="A&B", doc_images=['x".png'], submit_url="/s?a=1&b=2",
                            token='t"k', lang="en")
    assert "&lt;Guarantee&gt;" in html and "A&amp;B" in html and 'src="x&quot;.png"' in html
    assert 'data-submit-url="/s?a=1&amp;b=2"' in html and 'data-token="t&quot;k"' in html
    assert "I have read and agree" in html and 'lang="en"' in html
    assert "{{" not in html
