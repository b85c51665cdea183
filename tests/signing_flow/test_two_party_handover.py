"""The handover sheet (工作交接确认单) signed by both sides on one document: the departing employee first,
then the receiving colleague on the same draft with the first signature already on it; sealed once, with
one evidence record (and evidence page) per signature; HR's case-specific items printed in it."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from tortoise import connections

from bot.inbound import Inbound, build_router
from chat.router import Incoming
from signing.evidence import AUDIT_KIND
from signing.pipeline import keys_for
from signing.preview import pdf_to_png_pages
from signing.verify import verify_case
from storage.db import init_db
from storage.models import AuditEntry, CaseStep, Document, Signature
from tests.conftest import ROOT
from tests.signing_flow.conftest import (
    EMPLOYEE,
    FINANCE,
    HANDOVER,
    HR,
    MANAGER,
    Flow,
    sign_step,
    signature_strokes,
)
from workflow.events import Prepare
from workflow.model import Role

DOC = "handover_confirmation"


def _body(token: str) -> dict[str, object]:
    return {"token": token, "consent": True, "consent_version": "2025-01", "strokes": signature_strokes()}


async def _add_items(flow: Flow, items: str) -> None:
    out = await flow.service.apply(flow.case_id, lambda c, s: Prepare("handover", HR, frozenset({Role.HR}),
                                                                      {"items": items}, datetime.now(UTC)))
    assert out.ok, out.refusal


def _run(*cmd: str, pdf: bytes, tmp: Path, name: str) -> str:
    path = tmp / name
    path.write_bytes(pdf)
    out = ["-"] if cmd[0] == "pdftotext" else []
    return subprocess.run([*cmd, str(path), *out], capture_output=True, text=True, check=False).stdout


def _flat(text: str) -> str:
    return re.sub(r"\s+", "", text)


async def test_both_sides_sign_one_sealed_sheet_each_with_own_evidence(flow: Flow, tmp_path: Path) -> None:
    await _add_items(flow, "客户A合同原件\n门禁卡")

    # The receiving colleague cannot sign before the departing employee: refused on the page and on submit.
    early = flow.token("handover", HANDOVER)
    status, page = await flow.open(early)
    assert status == 409 and "需先由离职员工签署" in page, page
    status, body = await flow.post(early, _body(early))
    assert status == 409 and body["code"] == "not_your_turn", body
    # Nobody else is a party to the sheet, whatever their role in the case.
    for who in (MANAGER, FINANCE, HR):
        token = flow.token("handover", who)
        status, page = await flow.open(token)
        assert status == 403 and "不是您需要签署的文件" in page, (who, page)
        status, body = await flow.post(token, _body(token))
        assert status == 403 and body["code"] == "not_signer", (who, body)
    assert not await Signature.filter(case_id=flow.case_id).exists()

    answer = await sign_step(flow, "handover", EMPLOYEE)
    assert answer["status"] == "partly_signed" and "工作交接人" in answer["message"], answer
    doc = await Document.get(case_id=flow.case_id, kind=DOC)
    assert doc.status == "partly_signed" and doc.pdf_signed is None  # not sealed with one signature
    step = await CaseStep.get(case_id=flow.case_id, step_id="handover")
    assert step.status == "active"
    # The employee signs once: a fresh link of theirs says the sheet now waits for the colleague.
    again = flow.token("handover", EMPLOYEE)
    status, page = await flow.open(again)
    assert status == 409 and "正在等待工作交接人签署" in page, page

    # The colleague's page shows the same document with the employee's signature already on it.
    token = flow.token("handover", HANDOVER)
    status, page = await flow.open(token)
    assert status == 200, page
    shown = await (await flow.client.get(f"/sign/{token}/page/1.png")).read()
    assert shown != pdf_to_png_pages(bytes(doc.pdf_unsigned))[0]
    h = re.search(r'\?h=([0-9a-f]{64})"', page)
    assert h and h.group(1) == doc.sha256_unsigned  # both sign the same draft
    status, body = await flow.post(token, _body(token), h=h.group(1))
    assert status == 200 and body["status"] == "sealed", body

    doc = await Document.get(id=doc.id)
    assert doc.status == "sealed"
    assert (await CaseStep.get(case_id=flow.case_id, step_id="handover")).status == "done"
    sigs = await Signature.filter(document_id=doc.id).order_by("id")
    assert [s.signer_id for s in sigs] == [EMPLOYEE, HANDOVER]
    assert all(s.doc_hash_presented == doc.sha256_unsigned for s in sigs)

    # Two evidence records, two entries in the audit chain; the second names the first.
    entries = [e for e in await AuditEntry.filter(case_id=flow.case_id, kind=AUDIT_KIND).order_by("seq")
               if e.data["evidence"]["document"]["kind"] == DOC]
    assert [e.seq for e in entries] == [s.audit_seq for s in sigs]
    first, second = (e.data["evidence"] for e in entries)
    assert first["signer"]["employee_id"] == EMPLOYEE and second["signer"]["employee_id"] == HANDOVER
    assert first["cosign"] == {"as": "employee", "order": 1, "after": []}
    assert second["cosign"] == {"as": "handover", "order": 2, "after": [entries[0].data["evidence_sha256"]]}
    assert first["capture"]["strokes_sha256"] and second["server"]["received_at"] > first["server"]["received_at"]

    sealed = bytes(doc.pdf_signed)
    assert "Signature is Valid" in _run("pdfsig", pdf=sealed, tmp=tmp_path, name="h.pdf")
    flat = _flat(_run("pdftotext", pdf=sealed, tmp=tmp_path, name="f.pdf"))
    assert "张三（E003）" in flat and "周八（E006）" in flat
    assert "签署人1·Signer1" in flat and "签署人2·Signer2" in flat and flat.count("电子签署存证页") == 2
    assert "签署顺序Order2/2" in flat and "工作交接人·handovercolleague" in flat
    for e in entries:
        assert e.data["evidence_sha256"] in flat and e.hash in flat
    for item in ("工作文件与资料", "系统账号与权限", "客户A合同原件", "门禁卡"):
        assert item in flat, item
    assert "移交人（签字）" in flat and "接收人（签字）" in flat

    keys = keys_for(flow.settings)
    checks = await verify_case(flow.case_id, keys=keys, trust_root=keys.root_cert)
    assert all(c.ok for c in checks), [c.line() for c in checks if not c.ok]
    lines = {c.name: c for c in checks}
    signers = lines[f"document {doc.id} ({DOC}) signers"]
    assert signers.detail == f"employee {EMPLOYEE}, then handover {HANDOVER}"
    for s in sigs:
        assert lines[f"signature {s.id} ({s.signer_id}) stroke re-render"].ok
        assert lines[f"signature {s.id} ({s.signer_id}) evidence in audit chain"].ok

    # The command line re-checks the same, in a process of its own.
    await connections.close_all(discard=False)
    env = {**os.environ, "DATABASE_URL": flow.settings.database_url, "DATA_DIR": str(flow.settings.data_dir),
           "SECRET_KEY": "test-secret-key-0123456789", "PLATFORMS": "emulator"}
    out = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "bot", "verify", "--case", flow.case_id],
                                  cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    await init_db(flow.settings.database_url)
    assert out.returncode == 0 and "RESULT: PASS" in out.stdout, out.stdout + out.stderr
    for s in sigs:
        assert f"PASS  signature {s.id} ({s.signer_id}) stroke re-render" in out.stdout
    assert f"PASS  document {doc.id} ({DOC}) signers" in out.stdout


async def test_verify_catches_signatures_out_of_order(flow: Flow) -> None:
    await sign_step(flow, "handover", EMPLOYEE)
    await sign_step(flow, "handover", HANDOVER)
    doc = await Document.get(case_id=flow.case_id, kind=DOC)
    first, second = await Signature.filter(document_id=doc.id).order_by("id")
    # Rows edited to say the colleague signed first: the order check and both evidence records object.
    await Signature.filter(id=first.id).update(signer_id=HANDOVER)
    await Signature.filter(id=second.id).update(signer_id=EMPLOYEE)
    keys = keys_for(flow.settings)
    bad = [c.name for c in await verify_case(flow.case_id, keys=keys, trust_root=keys.root_cert) if not c.ok]
    assert f"document {doc.id} ({DOC}) signers" in bad
    assert f"signature {first.id} ({HANDOVER}) evidence in audit chain" in bad
    assert f"signature {second.id} ({EMPLOYEE}) evidence in audit chain" in bad


async def test_items_hr_adds_on_the_card_replace_a_draft_nobody_signed(flow: Flow, tmp_path: Path) -> None:
    # The employee opens the sheet before HR has added anything.
    token = flow.token("handover", EMPLOYEE)
    status, page = await flow.open(token)
    assert status == 200
    old = re.search(r'\?h=([0-9a-f]{64})"', page)
    assert old
    # HR taps 补充交接事项 on the handover card (the card the step's activation sent HR).
    inbound = Inbound(build_router(), flow.settings, flow.service)
    card_id = f"{flow.case_id}:handover:step:1:hr:{HR}"
    reply = await inbound.handle(Incoming("emulator", HR, "action", {
        "card_id": card_id, "action": "prepare", "form": {"items": "笔记本电脑（资产号 IT-0042）"}}, "emulator:p1"))
    assert reply.ok, reply.text
    drafts = await Document.filter(case_id=flow.case_id, kind=DOC).order_by("id")
    assert [d.status for d in drafts] == ["superseded"]
    # The page still showing the old text cannot be signed.
    status, body = await flow.post(token, _body(token), h=old.group(1))
    assert status == 409 and body["code"] == "document_changed", body
    # Reopened: the new draft lists the item, and that is what both sign.
    await sign_step(flow, "handover", EMPLOYEE)
    # Once signing has begun HR's button is refused (the card shows it disabled).
    reply = await inbound.handle(Incoming("emulator", HR, "action", {
        "card_id": card_id, "action": "prepare", "form": {"items": "再加一项"}}, "emulator:p2"))
    assert not reply.ok and reply.code == "already_signed", reply.text
    await sign_step(flow, "handover", HANDOVER)
    doc = await Document.get(case_id=flow.case_id, kind=DOC, status="sealed")
    assert doc.sha256_unsigned != old.group(1)
    flat = _flat(_run("pdftotext", pdf=bytes(doc.pdf_signed), tmp=tmp_path, name="i.pdf"))
    assert "笔记本电脑（资产号IT-0042）" in flat and "再加一项" not in flat
    step = await CaseStep.get(case_id=flow.case_id, step_id="handover")
    assert step.data == {"items": "笔记本电脑（资产号 IT-0042）"}
    entry = await AuditEntry.filter(case_id=flow.case_id, kind="step_prepared").get()
    assert entry.actor == HR and entry.data["data"] == {"items": "笔记本电脑（资产号 IT-0042）"}
