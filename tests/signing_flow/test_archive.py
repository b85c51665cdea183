"""Case archive: export a completed Case B, check it offline (no database), detect one changed byte in any
member, and hand it to HR through a short-lived chat link that is logged and refused to anyone else."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from tortoise import connections
from tortoise.transactions import in_transaction

from chat.appkeys import SERVICE, SETTINGS
from handlers import archive
from handlers.archive import export_case
from signing.archive import ArchiveError
from signing.archive_check import verify_archive
from signing.keys import load_or_create_keys
from signing.links import make_token, new_nonce
from storage import casestore
from storage.canonical import sha256_hex
from storage.models import AuditEntry, Case, CaseAccess, Document, Signature
from tests.chat.conftest import build_chat
from tests.conftest import ROOT
from tests.signing_flow.conftest import EMPLOYEE, HR, Flow, complete_case, token_for

FINANCE = "E004"


async def _export(flow: Flow, path: Path) -> None:
    with path.open("wb") as f:
        await export_case(flow.settings, flow.case_id, f, templates=flow.service.templates)


def _run(*cmd: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)


def _offline(zip_path: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`verify FILE.zip` in a process that has no database and no keys: only what the zip holds."""
    empty = tmp / "nowhere"
    empty.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DATA_DIR", "TEST_DATABASE_URL")}
    env.update({"DATABASE_URL": "postgres://nobody@127.0.0.1:1/none", "DATA_DIR": str(empty),
                "SECRET_KEY": "another-secret-key-0123456789", "PLATFORMS": "emulator"})
    return subprocess.run([sys.executable, "-m", "bot", "verify", str(zip_path), *extra], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)


def _rewrite(src: Path, dst: Path, member: str, flip_at: int | None = None) -> None:
    """A copy of the archive with one byte of `member` flipped (the zip itself stays well-formed)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = bytearray(zin.read(info))
            if info.filename == member:
                pos = len(data) // 2 if flip_at is None else flip_at
                data[pos] ^= 0x01
            zout.writestr(info, bytes(data))


async def test_export_holds_the_case_and_verifies_offline(flow: Flow, tmp_path: Path) -> None:
    await complete_case(flow)
    out = tmp_path / "case.zip"
    await _export(flow, out)
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        docs = await Document.filter(case_id=flow.case_id, status="sealed").order_by("id")
        sigs = await Signature.filter(case_id=flow.case_id).order_by("id")
        assert len(docs) == 4 and len(sigs) == 5  # the handover carries two signatures
        for d in docs:
            assert zf.read(f"documents/{d.id}-{d.kind}.pdf") == bytes(d.pdf_signed)
        for s in sigs:
            rec = json.loads(zf.read(f"signatures/{s.id}.json"))
            assert rec["strokes_hash"] == s.strokes_hash and rec["evidence_entry"]["seq"] == s.audit_seq
            assert rec["evidence_entry"]["kind"] == "signature_evidence"
            assert zf.read(f"signatures/{s.id}.strokes.json") == bytes(s.strokes)
        lines = zf.read("audit.jsonl").decode().splitlines()
        entries = await AuditEntry.filter(case_id=flow.case_id).order_by("seq")
        assert [json.loads(x)["hash"] for x in lines] == [e.hash for e in entries]
        manifest = json.loads(zf.read("manifest.json"))
        listed = {f["path"]: f["sha256"] for f in manifest["files"]}
        assert names == set(listed) | {"manifest.json", "manifest.sig"}
        for name, digest in listed.items():
            if name != "manifest.json":
                assert sha256_hex(zf.read(name)) == digest, name
        report = zf.read("verify_report.txt").decode()
        assert report.splitlines()[-1] == "RESULT: PASS" and "PASS  audit chain" in report
        basis = zf.read("settlement_basis.txt").decode()
        assert "backpay_amount" in basis and "basis_lines" in basis
        index = zf.read("index.pdf")
        (tmp_path / "index.pdf").write_bytes(index)
    text = _run("pdftotext", str(tmp_path / "index.pdf"), "-").stdout
    assert flow.case_id in text and "离职档案" in text and "signature_evidence" in text
    pages = _run("pdfinfo", str(tmp_path / "index.pdf")).stdout
    assert re.search(r"^Pages:\s+1$", pages, re.M), pages

    # In-process and in a process with no database and none of our keys.
    checks = await verify_archive(out)
    assert checks and all(c.ok for c in checks), [c.line() for c in checks if not c.ok]
    assert sum(1 for c in checks if c.name.endswith("PAdES seal")) == 4
    assert sum(1 for c in checks if c.name.endswith("stroke re-render")) == 5
    done = _offline(out, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "RESULT: PASS" in done.stdout and "PASS  closing checkpoint" in done.stdout

    # Pinning a root that did not issue the seal fails every seal.
    other = load_or_create_keys(tmp_path / "stranger")
    (tmp_path / "other.pem").write_bytes(other.root_pem())
    bad = _offline(out, tmp_path, "--root", str(tmp_path / "other.pem"))
    assert bad.returncode == 1 and "FAIL  documents/" in bad.stdout, bad.stdout


@pytest.mark.parametrize("what", ["pdf", "audit", "manifest", "strokes"])
async def test_one_flipped_byte_fails_naming_the_file(flow: Flow, tmp_path: Path, what: str) -> None:
    await complete_case(flow)
    out = tmp_path / "case.zip"
    await _export(flow, out)
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        member = {"pdf": next(n for n in names if n.startswith("documents/") and n.endswith(".pdf")),
                  "audit": "audit.jsonl", "manifest": "manifest.json",
                  "strokes": next(n for n in names if n.endswith(".strokes.json"))}[what]
        size = len(zf.read(member))
    bad = tmp_path / "bad.zip"
    # The manifest's middle is a hash digit; flipping 0x01 keeps it a readable manifest.
    _rewrite(out, bad, member, flip_at=size // 2)
    checks = await verify_archive(bad)
    failed = [c.name for c in checks if not c.ok]
    if what == "manifest":
        assert "manifest.json signature" in failed
    else:
        assert f"file {member}" in failed
    if what == "audit":
        assert "audit chain (audit.jsonl)" in failed
    if what == "pdf":
        assert f"{member} PAdES seal" in failed
    done = _offline(bad, tmp_path)
    assert done.returncode == 1 and "RESULT: FAIL" in done.stdout
    assert any(line.startswith("FAIL") and (member in line or "manifest" in line) for line in done.stdout.splitlines())


async def test_raw_byte_flip_in_the_zip_is_caught(flow: Flow, tmp_path: Path) -> None:
    await complete_case(flow)
    out = tmp_path / "case.zip"
    await _export(flow, out)
    raw = bytearray(out.read_bytes())
    with zipfile.ZipFile(out) as zf:
        info = zf.getinfo("audit.jsonl")
    raw[info.header_offset + 30 + len(info.filename) + info.compress_size // 2] ^= 0x40
    bad = tmp_path / "bad.zip"
    bad.write_bytes(bytes(raw))
    checks = await verify_archive(bad)
    assert "file audit.jsonl" in [c.name for c in checks if not c.ok]


async def test_unknown_case_is_a_clear_error_and_writes_nothing(flow: Flow, tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="no case OB-NOPE00"):
        await export_case(flow.settings, "OB-NOPE00", io.BytesIO())
    await connections.close_all(discard=False)
    env = {**os.environ, "DATABASE_URL": flow.settings.database_url, "DATA_DIR": str(flow.settings.data_dir),
           "SECRET_KEY": "test-secret-key-0123456789", "PLATFORMS": "emulator"}
    target = tmp_path / "x.zip"
    done = _run(sys.executable, "-m", "bot", "export", "--case", "OB-NOPE00", "--out", str(target), env=env)
    assert done.returncode == 2 and "no case OB-NOPE00" in done.stderr, done.stderr
    assert not target.exists() and not (tmp_path / "x.zip.part").exists()


async def test_long_case_is_paged_with_progress(flow: Flow, tmp_path: Path) -> None:
    """More entries than one page of the audit log: all of them are in the archive, in order, with progress
    reported page by page; the index stays one page; the entries the engine did not write make the export's
    verify report FAIL, and the offline check says so."""
    at = datetime.now(UTC)
    async with in_transaction() as conn:
        await casestore.append_audit(conn, flow.case_id, [(at, HR, "note", {"i": i}) for i in range(1100)])
    case = await Case.get(id=flow.case_id)
    seen: list[tuple[str, int, int]] = []
    out = tmp_path / "long.zip"
    with out.open("wb") as f:
        await export_case(flow.settings, flow.case_id, f, templates=flow.service.templates,
                          progress=lambda stage, done, total: seen.append((stage, done, total)))
    audit_steps = [(d, t) for s, d, t in seen if s == "audit"]
    assert len(audit_steps) == 3 and audit_steps[-1] == (case.audit_seq, case.audit_seq)
    with zipfile.ZipFile(out) as zf:
        seqs = [json.loads(x)["seq"] for x in zf.read("audit.jsonl").splitlines()]
        (tmp_path / "index.pdf").write_bytes(zf.read("index.pdf"))
    assert seqs == list(range(1, case.audit_seq + 1))
    assert re.search(r"^Pages:\s+1$", _run("pdfinfo", str(tmp_path / "index.pdf")).stdout, re.M)
    assert "more entries in audit.jsonl" in _run("pdftotext", str(tmp_path / "index.pdf"), "-").stdout
    checks = {c.name: c for c in await verify_archive(out)}
    assert checks["audit chain (audit.jsonl)"].ok and checks["manifest.json signature"].ok
    assert not checks["verify report at export"].ok


async def test_cli_export_writes_the_zip_and_logs_it(flow: Flow, tmp_path: Path) -> None:
    await complete_case(flow)
    await connections.close_all(discard=False)  # the subprocess has the SQLite file to itself
    env = {**os.environ, "DATABASE_URL": flow.settings.database_url, "DATA_DIR": str(flow.settings.data_dir),
           "SECRET_KEY": "test-secret-key-0123456789", "PLATFORMS": "emulator"}
    target = tmp_path / "cli.zip"
    done = _run(sys.executable, "-m", "bot", "export", "--case", flow.case_id.lower(), "--out", str(target),
                env=env)
    assert done.returncode == 0, done.stderr
    assert "signatures: 5/5" in done.stderr and "wrote" in done.stdout
    assert all(c.ok for c in await verify_archive(target))
    log = await CaseAccess.filter(case_id=flow.case_id).order_by("id")
    assert [(a.action, a.actor.startswith("cli:")) for a in log] == [("export", True)]


async def _server(flow: Flow) -> TestClient:
    app = web.Application()
    app[SETTINGS] = flow.settings
    app[SERVICE] = flow.service
    archive.setup(app)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client


async def test_chat_export_link_for_hr_only(flow: Flow, tmp_path: Path) -> None:
    await complete_case(flow)
    chat = build_chat(flow.settings)
    refused = await chat.send(EMPLOYEE, f"/导出 {flow.case_id}")
    assert not refused.ok
    refused = await chat.send(FINANCE, f"/export {flow.case_id}")
    assert not refused.ok
    unknown = await chat.send(HR, "/导出 OB-NOPE00")
    assert not unknown.ok and unknown.code == "unknown_case"
    reply = await chat.send(HR, f"/导出 {flow.case_id}")
    assert reply.ok and "15 分钟" in reply.text, reply.text
    url = reply.data["url"]
    assert url.startswith(f"{flow.settings.public_base_url}/export/") and url in reply.text
    token = url.rsplit("/", 1)[1]

    client = await _server(flow)
    try:
        resp = await client.get(f"/export/{token}")
        assert resp.status == 200 and resp.headers["Content-Type"] == "application/zip"
        body = await resp.read()
        got = tmp_path / "dl.zip"
        got.write_bytes(body)
        mine = tmp_path / "mine.zip"
        await _export(flow, mine)
        assert body == mine.read_bytes()  # the same archive, byte for byte
        assert all(c.ok for c in await verify_archive(got))

        # Tampered, expired, a signing link, and a link made out to someone who is not HR.
        body_part, mac = token.split(".")
        tampered = body_part[:-2] + ("A" if body_part[-2] != "A" else "B") + body_part[-1] + "." + mac
        assert (await client.get(f"/export/{tampered}")).status == 403
        secret = flow.settings.secret_bytes()
        expired = make_token(secret, case_id=flow.case_id, step_id="archive", signer_id=HR,
                             expires_at=datetime.now(UTC) - timedelta(seconds=1), nonce=new_nonce(),
                             purpose="export")
        assert (await client.get(f"/export/{expired}")).status == 410
        signing = token_for(flow.settings, flow.case_id, "archive", HR)
        assert (await client.get(f"/export/{signing}")).status == 403
        employee_link = make_token(secret, case_id=flow.case_id, step_id="archive", signer_id=EMPLOYEE,
                                   expires_at=datetime.now(UTC) + timedelta(minutes=5), nonce=new_nonce(),
                                   purpose="export")
        resp = await client.get(f"/export/{employee_link}")
        assert resp.status == 403 and "HR" in await resp.text()
    finally:
        await client.close()

    log = await CaseAccess.filter(case_id=flow.case_id).order_by("id")
    assert [(a.actor, a.action) for a in log] == [(HR, "link"), (HR, "download")]
    assert log[1].detail["manifest_sha256"] == sha256_hex(zipfile.ZipFile(got).read("manifest.json"))
    assert (await Case.get(id=flow.case_id)).status == "completed"
