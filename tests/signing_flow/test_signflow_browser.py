"""A phone in headless chromium opens the real signing link of the demo probation case's guarantee letter,
draws a signature with pointer events and submits; then the stored evidence and the sealed PDF are checked."""

from __future__ import annotations

import asyncio
import math
import subprocess
from pathlib import Path

import pytest

from signing.pipeline import keys_for
from signing.seal import async_validate_pdf
from signing.strokes import parse_strokes_json, render_png
from signing.verify import verify_case
from storage.canonical import sha256_hex
from storage.models import AuditEntry, CaseStep, Document, Signature, SigningLink
from tests.browser import ARGS, CHROMIUM, phone
from tests.signing_flow.conftest import EMPLOYEE, Flow

pytestmark = pytest.mark.browser

UA = phone("DingTalk/7.6.0")


async def _draw(page, path: list[tuple[float, float]]) -> None:  # type: ignore[no-untyped-def]
    box = await page.locator("#pad").bounding_box()
    await page.mouse.move(box["x"] + path[0][0], box["y"] + path[0][1])
    await page.mouse.down()
    for x, y in path[1:]:
        await page.mouse.move(box["x"] + x, box["y"] + y, steps=3)
    await page.mouse.up()


def _wave(x0: float, w: float, mid: float, amp: float) -> list[tuple[float, float]]:
    return [(x0 + w * i / 24, mid + amp * math.sin(i / 24 * math.pi * 3)) for i in range(25)]


def _run(*cmd: str) -> str:
    return subprocess.run(list(cmd), capture_output=True, text=True, check=False).stdout


async def test_phone_signs_guarantee_letter(flow: Flow, tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    token = flow.token()
    url = str(flow.client.make_url(f"/sign/{token}"))
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        ctx = await browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True,
                                        device_scale_factor=2, locale="zh-CN", user_agent=UA)
        page = await ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        resp = await page.goto(url)
        assert resp is not None and resp.status == 200
        assert await page.locator("img.doc-page").count() >= 1
        loaded = await page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
        assert loaded
        await page.locator("#pad").scroll_into_view_if_needed()
        await page.check("#consent")
        await _draw(page, _wave(30, 90, 80, 30))
        await _draw(page, _wave(140, 90, 90, 35))
        await _draw(page, [(250, 60), (270, 120), (290, 70), (310, 125)])
        await page.click("#submit")
        await page.locator("#status.ok").wait_for(timeout=30000)  # a locator: our CSP forbids eval'd predicates
        assert "签署完成" in await page.locator("#status").inner_text()
        # The page offers the sealed copy: the link is shown and fetches the sealed PDF.
        await page.locator("#download-wrap:not([hidden])").wait_for(timeout=5000)
        href = await page.get_attribute("#download", "href")
        assert href == f"/sign/{token}/document.pdf"
        fetched = await page.evaluate("(u) => fetch(u).then(r => r.arrayBuffer()).then(b => b.byteLength)", href)
        viewport = await page.get_attribute('meta[name="viewport"]', "content")
        assert "user-scalable=no" not in viewport and "maximum-scale" not in viewport
        await page.screenshot(path=str(tmp_path / "signed.png"))
        assert errors == []
        await browser.close()

    doc = await Document.get(case_id=flow.case_id, kind="guarantee_letter")
    sig = await Signature.get(document_id=doc.id)
    assert sig.signer_id == EMPLOYEE and sig.identity_method == "link" and sig.ip == "127.0.0.1"
    assert "DingTalk/7.6.0" in sig.user_agent and sig.consent_version == "2025-01"
    assert sig.doc_hash_presented == doc.sha256_unsigned
    payload = parse_strokes_json(bytes(sig.strokes))
    assert len(payload.strokes) == 3 and sha256_hex(bytes(sig.strokes)) == sig.strokes_hash
    assert sha256_hex(render_png(payload)) == sig.image_hash == sha256_hex(bytes(sig.image_png))
    entry = await AuditEntry.get(case_id=flow.case_id, seq=sig.audit_seq)
    assert entry.data["evidence"]["capture"]["strokes_sha256"] == sig.strokes_hash
    assert (await SigningLink.get(case_id=flow.case_id)).used_at is not None
    assert (await CaseStep.get(case_id=flow.case_id, step_id="guarantee")).status == "done"

    assert doc.status == "sealed"
    sealed = bytes(doc.pdf_signed)
    assert fetched == len(sealed)
    keys = keys_for(flow.settings)
    report = await async_validate_pdf(sealed, keys.root_cert)
    assert report.intact and report.valid and report.trusted and report.coverage == "ENTIRE_FILE"
    pdf = tmp_path / "letter.pdf"
    pdf.write_bytes(sealed)
    nss = tmp_path / "nss"
    nss.mkdir()
    root = tmp_path / "root.pem"
    root.write_bytes(keys.root_pem())
    await asyncio.to_thread(_run, "certutil", "-N", "-d", f"sql:{nss}", "--empty-password")
    await asyncio.to_thread(_run, "certutil", "-A", "-d", f"sql:{nss}", "-n", "root", "-t", "CT,C,C", "-i", str(root))
    out = await asyncio.to_thread(_run, "pdfsig", "-nssdir", f"sql:{nss}", str(pdf))
    assert "Signature is Valid" in out and "Certificate is Trusted" in out and "Total document signed" in out, out
    text = await asyncio.to_thread(_run, "pdftotext", "-layout", str(pdf), "-")
    assert "离职保证书" in text and "1,438.42" in text and "张三" in text
    assert "电子签署存证页" in text and sig.strokes_hash in text.replace("\n", "").replace(" ", "")
    checks = await verify_case(flow.case_id, keys=keys, trust_root=keys.root_cert)
    assert all(c.ok for c in checks), [c.line() for c in checks if not c.ok]
