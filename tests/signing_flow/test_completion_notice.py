"""The completion notice as a sealed, company-issued PDF, and the employee's download links to every sealed
document of their case: a real server on 127.0.0.1, the emulator API, pdfsig/pdftotext and `verify`."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from cases.service import utcnow
from config.settings import Settings
from handlers import signing_service
from handlers.links import download_url
from signing.channel import Channel
from signing.pipeline import ISSUED_KIND, keys_for, sealed_documents
from signing.verify import all_ok, verify_case
from storage.models import AuditEntry, Case, Document
from tests.signing_flow.conftest import Flow, complete_case
from tests.signing_flow.test_every_flow_e2e import (
    HR,
    SCENARIOS,
    EmulatorAPI,
    _drive,
    _flat,
    _pdfsig,
    _pdftotext,
    server,  # noqa: F401  (the fixture)
)

RESIGNATION = next(s for s in SCENARIOS if s.flow == "resignation")
MANAGER = RESIGNATION.manager  # in the case, but neither its employee nor HR


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, bytes, str]:
    async with http.get(url) as r:
        return r.status, await r.read(), r.headers.get("Content-Type", "")


@pytest.mark.slow
async def test_completion_notice_sealed_and_every_document_downloadable(
        server: tuple[str, Settings], tmp_path: Path) -> None:  # noqa: F811
    base, settings = server
    sc = RESIGNATION
    async with aiohttp.ClientSession() as http:
        api = EmulatorAPI(http, base)
        await api.send(HR, sc.command)
        case = await Case.filter(template_id=sc.flow).order_by("-started_at").first()
        assert case is not None
        await _drive(api, http, sc, case.id, None)
        card = await api.wait_card(sc.employee, lambda c: c["purpose"] == "completion", "the completion card")
        hr_card = await api.wait_card(HR, lambda c: c["purpose"] == "completion", "HR's completion card")

        notice = await Document.get(case_id=case.id, kind="completion_notice")
        assert notice.status == "sealed"
        sealed = await sealed_documents(case.id)
        assert notice.id in {d.id for d in sealed}
        assert {d.kind for d in sealed} >= {"resignation_letter", "separation_certificate", "completion_notice"}

        # The notice: sealed (PAdES), worded for a resignation, no probation back-pay.
        pdf = bytes(notice.pdf_signed)
        assert "Signature is Valid" in _pdfsig(pdf, tmp_path, "notice")
        text = _flat(_pdftotext(pdf, tmp_path, "notice"))
        assert "离职手续完成确认函" in text and "主动辞职" in text and "十五日内" in text
        assert "补缴" not in text and "试用期" not in text

        # Its hashes are in the audit chain, after the case closed, and a checkpoint covers them.
        entry = await AuditEntry.get(case_id=case.id, kind=ISSUED_KIND)
        assert entry.data["document_id"] == notice.id and entry.data["sha256_signed"] == notice.sha256_signed
        case = await Case.get(id=case.id)
        assert case.status == "completed" and case.audit_seq == entry.seq

        # Every sealed document, notice included, downloads from the employee's own card, byte for byte.
        for holder_card in (card, hr_card):
            urls = [b["url"] for b in holder_card["buttons"] if b["url"] and "/doc/" in b["url"]]
            assert len(urls) == len(sealed), holder_card["buttons"]
            got = []
            for url in urls:
                status, body, ctype = await _get(http, url)
                assert status == 200 and ctype == "application/pdf", body[:200]
                got.append(body)
            assert sorted(got) == sorted(bytes(d.pdf_signed) for d in sealed)

        # Someone else in the case (the manager) holding a link of their own is refused; so is an expired
        # link and a tampered one.
        status, body, _ = await _get(http, download_url(settings, case.id, notice.id, MANAGER))
        assert status == 403 and "员工本人" in body.decode()
        old = utcnow() - timedelta(hours=settings.link_ttl_hours + 1)
        status, body, _ = await _get(http, download_url(settings, case.id, notice.id, sc.employee, now=old))
        assert status == 410 and "过期" in body.decode()
        good = download_url(settings, case.id, notice.id, sc.employee)
        status, _, _ = await _get(http, good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB"))
        assert status == 403
        # A download link is no signing link (and the other way round): the MACs differ by purpose.
        status, _, _ = await _get(http, good.replace("/doc/", "/sign/"))
        assert status == 403

    keys = keys_for(settings)
    root = keys.root_cert or keys.seal_cert
    checks = await verify_case(case.id, keys=keys, trust_root=root)
    assert all_ok(checks), [c.line() for c in checks if not c.ok]
    assert any("completion_notice" in c.name and "audit chain" in c.name and c.ok for c in checks)

    # One flipped byte in the stored notice: its hash and its seal both fail.
    flipped = bytearray(pdf)
    flipped[len(flipped) // 2] ^= 0x01
    await Document.filter(id=notice.id).update(pdf_signed=bytes(flipped))
    checks = await verify_case(case.id, keys=keys, trust_root=root)
    failed = [c.name for c in checks if not c.ok]
    assert not all_ok(checks)
    assert f"document {notice.id} (completion_notice) signed hash" in failed


async def test_the_sweep_issues_a_notice_no_card_issued(flow: Flow) -> None:
    """A case completed with no completion card rendered yet (relay down, render failed): the signing
    sweep issues and seals its notice once, and the case still verifies."""
    await complete_case(flow)
    assert not await Document.filter(case_id=flow.case_id, kind="completion_notice").exists()
    first = await signing_service.sweep_round(flow.settings, flow.service, channel=Channel())
    again = await signing_service.sweep_round(flow.settings, flow.service, channel=Channel())
    notice = await Document.get(case_id=flow.case_id, kind="completion_notice")
    assert first == {notice.id: "sealed"} and again == {}
    keys = keys_for(flow.settings)
    checks = await verify_case(flow.case_id, keys=keys, trust_root=keys.root_cert or keys.seal_cert)
    assert all_ok(checks), [c.line() for c in checks if not c.ok]
    # Probation wording: the back-pay paid under the guarantee letter.
    assert "社会保险补缴" in _flat(_pdftotext(bytes(notice.pdf_signed), Path(flow.settings.data_dir), "n"))
