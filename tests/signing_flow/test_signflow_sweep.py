"""A crash between commit and seal leaves the document "signed"; a TSA outage leaves it "pending_tsa";
the sweep finishes both later and never seals without the timestamp it was asked for."""

from __future__ import annotations

import pytest
from aiohttp import web
from asn1crypto import tsp

from handlers import signing_web
from signing.channel import Channel
from signing.pipeline import keys_for, sweep
from signing.seal import async_validate_pdf
from storage.models import Document
from tests.signing.test_signing_seal import _tsa
from tests.signing_flow.conftest import Flow, sign_step


async def test_crash_then_tsa_down_then_sweep_seals_bt(flow: Flow, monkeypatch: pytest.MonkeyPatch) -> None:
    async def crash(*args: object, **kw: object) -> str:
        raise RuntimeError("process died before sealing")

    monkeypatch.setattr(signing_web, "seal_document", crash)
    answer = await sign_step(flow)
    assert answer["status"] == "signed"
    doc = await Document.get(case_id=flow.case_id, kind="guarantee_letter")
    assert doc.status == "signed" and doc.pdf_signed is None

    down = flow.settings.model_copy(update={"tsa_url": "http://127.0.0.1:9/tsa"})
    assert await sweep(down, channel=Channel()) == {doc.id: "pending_tsa"}
    doc = await Document.get(id=doc.id)
    assert doc.status == "pending_tsa" and doc.pdf_signed is None  # not quietly sealed B-B
    assert await sweep(down, channel=Channel()) == {doc.id: "pending_tsa"}

    stamper, tsa_root = _tsa()

    async def handle(request: web.Request) -> web.Response:
        resp = await stamper.async_request_tsa_response(tsp.TimeStampReq.load(await request.read()))
        return web.Response(body=resp.dump(), content_type="application/timestamp-reply")

    app = web.Application()
    app.router.add_post("/tsa", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        up = flow.settings.model_copy(update={"tsa_url": f"http://127.0.0.1:{port}/tsa"})
        assert await sweep(up, channel=Channel()) == {doc.id: "sealed"}
    finally:
        await runner.cleanup()
    doc = await Document.get(id=doc.id)
    report = await async_validate_pdf(bytes(doc.pdf_signed), [keys_for(flow.settings).root_cert, tsa_root])
    assert report.bottom_line and report.timestamped, report.text
    assert await sweep(up, channel=Channel()) == {}  # sealed once: nothing left to do
