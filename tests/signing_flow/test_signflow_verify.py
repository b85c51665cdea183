"""`verify` passes on a completed case and names the check that fails after a one-byte change."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tortoise import connections

from signing.pipeline import keys_for
from signing.verify import Check, verify_case, verify_pdf
from storage.models import AuditEntry, Case, Checkpoint, Document, Signature
from tests.conftest import ROOT
from tests.signing_flow.conftest import Flow, complete_case, sign_step


def failed(checks: list[Check]) -> list[str]:
    return [c.name for c in checks if not c.ok]


async def _verify(flow: Flow) -> list[Check]:
    keys = keys_for(flow.settings)
    return await verify_case(flow.case_id, keys=keys, trust_root=keys.root_cert)


async def test_completed_case_verifies_and_has_checkpoint(flow: Flow) -> None:
    await complete_case(flow)
    case = await Case.get(id=flow.case_id)
    assert case.status == "completed"
    cp = await Checkpoint.get(case_id=flow.case_id)
    assert cp.seq == case.audit_seq and cp.head_hash == case.audit_head
    checks = await _verify(flow)
    assert not failed(checks), [c.line() for c in checks]
    names = {c.name for c in checks}
    assert f"checkpoint #{cp.seq} signature" in names
    # guarantee letter, handover, separation certificate, rights notice
    assert sum(1 for n in names if n.endswith("PAdES seal")) == 4
    # Five signatures: the handover sheet carries the employee's and the receiving colleague's.
    assert sum(1 for n in names if n.endswith("stroke re-render")) == 5
    assert sum(1 for n in names if n.endswith("(handover_confirmation) signers")) == 1


async def test_one_byte_in_sealed_pdf_is_detected(flow: Flow) -> None:
    await sign_step(flow)
    doc = await Document.get(case_id=flow.case_id, kind="guarantee_letter")
    pdf = bytearray(bytes(doc.pdf_signed))
    pos = pdf.index(b"/Producer") if b"/Producer" in pdf else len(pdf) // 3
    pdf[pos + 1] ^= 0x01
    await Document.filter(id=doc.id).update(pdf_signed=bytes(pdf))
    bad = failed(await _verify(flow))
    assert f"document {doc.id} (guarantee_letter) signed hash" in bad
    assert f"document {doc.id} (guarantee_letter) PAdES seal" in bad
    keys = keys_for(flow.settings)
    assert "PAdES seal" in failed(await verify_pdf(bytes(pdf), keys.root_cert))


async def test_one_byte_in_audit_entry_is_detected(flow: Flow) -> None:
    await sign_step(flow)
    sig = await Signature.get(case_id=flow.case_id)
    entry = await AuditEntry.get(case_id=flow.case_id, seq=sig.audit_seq)
    data = dict(entry.data)
    data["evidence"] = {**data["evidence"], "client": {**data["evidence"]["client"], "ip": "127.0.0.2"}}
    await AuditEntry.filter(id=entry.id).update(data=data)
    bad = failed(await _verify(flow))
    assert "audit chain" in bad


async def test_one_byte_in_stroke_data_is_detected(flow: Flow) -> None:
    await sign_step(flow)
    sig = await Signature.get(case_id=flow.case_id)
    strokes = bytes(sig.strokes)
    pos = strokes.index(b'"x":') + 4
    changed = strokes[:pos] + (b"9" if strokes[pos:pos + 1] != b"9" else b"8") + strokes[pos + 1:]
    await Signature.filter(id=sig.id).update(strokes=changed)
    bad = failed(await _verify(flow))
    assert f"signature {sig.id} (E003) stroke data hash" in bad
    assert f"signature {sig.id} (E003) stroke re-render" in bad
    assert f"signature {sig.id} (E003) evidence in audit chain" in bad


async def test_changed_signature_row_breaks_its_evidence(flow: Flow) -> None:
    await sign_step(flow)
    sig = await Signature.get(case_id=flow.case_id)
    await Signature.filter(id=sig.id).update(ip="10.9.9.9")
    assert failed(await _verify(flow)) == [f"signature {sig.id} (E003) evidence in audit chain"]


def _cli(flow: Flow, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": flow.settings.database_url, "DATA_DIR": str(flow.settings.data_dir),
           "SECRET_KEY": "test-secret-key-0123456789", "PLATFORMS": "emulator"}
    return subprocess.run([sys.executable, "-m", "bot", "verify", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


async def test_cli_verify_case_and_file(flow: Flow, tmp_path: Path) -> None:
    await complete_case(flow)
    await connections.close_all(discard=False)  # let the subprocess have the SQLite file to itself
    ok = _cli(flow, "--case", flow.case_id)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "PASS  audit chain" in ok.stdout and "RESULT: PASS" in ok.stdout
    from storage.db import init_db

    await init_db(flow.settings.database_url)
    doc = await Document.get(case_id=flow.case_id, kind="guarantee_letter")
    good = tmp_path / "letter.pdf"
    good.write_bytes(bytes(doc.pdf_signed))
    tampered = bytearray(bytes(doc.pdf_signed))
    tampered[len(tampered) // 4] ^= 0x20
    bad = tmp_path / "tampered.pdf"
    bad.write_bytes(bytes(tampered))
    await connections.close_all(discard=False)
    res = _cli(flow, str(good))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "PASS  PAdES seal" in res.stdout and f"of case {flow.case_id}" in res.stdout
    res = _cli(flow, str(bad))
    assert res.returncode == 1 and "FAIL  PAdES seal" in res.stdout, res.stdout
    await init_db(flow.settings.database_url)
