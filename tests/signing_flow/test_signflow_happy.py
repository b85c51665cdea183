"""The whole signing path over HTTP: open the link, read the pages, sign, and get a sealed PDF."""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path

from signing.evidence import AUDIT_KIND
from signing.pipeline import keys_for
from signing.seal import async_validate_pdf
from storage.models import AuditEntry, Case, CaseStep, Checkpoint, Document, Signature, SigningLink
from tests.signing_flow.conftest import EMPLOYEE, Flow, signature_strokes


async def test_open_sign_and_seal(flow: Flow, tmp_path: Path) -> None:
    token = flow.token()
    status, page = await flow.open(token)
    assert status == 200, page
    assert "离职保证书" in page and "张三" in page
    h = re.search(r'data-submit-url="/sign/[^"?]+\?h=([0-9a-f]{64})"', page)
    assert h, page
    img = await flow.client.get(f"/sign/{token}/page/1.png")
    assert img.status == 200 and (await img.read())[:8] == b"\x89PNG\r\n\x1a\n"
    step = await CaseStep.get(case_id=flow.case_id, step_id="guarantee")
    assert step.viewed_at is not None
    link = await SigningLink.get(case_id=flow.case_id)
    assert link.opened_at is not None and link.used_at is None

    status, body = await flow.post(token, {"token": token, "consent": True, "consent_version": "2025-01",
                                           "strokes": signature_strokes()}, h=h.group(1))
    assert status == 200, body
    assert body["status"] == "sealed"
    doc = await Document.get(case_id=flow.case_id, kind="guarantee_letter")
    sig = await Signature.get(document_id=doc.id)
    assert sig.signer_id == EMPLOYEE and sig.identity_method == "link" and sig.ip == "127.0.0.1"
    assert sig.doc_hash_presented == doc.sha256_unsigned == h.group(1)
    entry = await AuditEntry.get(case_id=flow.case_id, seq=sig.audit_seq)
    assert entry.kind == AUDIT_KIND
    assert doc.status == "sealed" and doc.pdf_signed
    report = await async_validate_pdf(bytes(doc.pdf_signed), keys_for(flow.settings).root_cert)
    assert report.bottom_line, report.text
    pdf = tmp_path / "signed.pdf"
    pdf.write_bytes(bytes(doc.pdf_signed))
    text = (await asyncio.to_thread(subprocess.run, ["pdftotext", "-layout", str(pdf), "-"],
                                    capture_output=True, text=True, check=True)).stdout
    assert "1,438.42" in text or "1438.42" in text, text
    assert entry.hash in text.replace("\n", "").replace(" ", "")
    step = await CaseStep.get(case_id=flow.case_id, step_id="guarantee")
    assert step.status == "done"
    case = await Case.get(id=flow.case_id)
    assert case.status == "open" and not await Checkpoint.filter(case_id=flow.case_id).exists()

    again = await flow.client.get(f"/sign/{token}")
    assert again.status == 410 and "已完成签署" in await again.text()
    dl = await flow.client.get(f"/sign/{token}/document.pdf")
    assert dl.status == 200 and (await dl.read()) == bytes(doc.pdf_signed)
