"""`python -m bot keys` (issue 11, finding 5): with the root CA created offline and only the seal key, seal
certificate and root certificate installed on the server, documents are sealed and `verify` passes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from tortoise import connections

from config.settings import load_settings
from signing.keys import KeyMaterialError, create_root, has_root_key, install_seal, load_or_create_keys
from signing.pipeline import keys_for
from signing.verify import verify_case, verify_pdf
from storage.db import init_db
from storage.models import Document
from tests.conftest import ROOT
from tests.signing_flow.conftest import Flow, complete_case
from tests.signing_flow.test_signflow_verify import _cli


def test_keys_help() -> None:
    r = subprocess.run([sys.executable, "-m", "bot", "keys", "--help"], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "--root-dir" in r.stdout


def test_installed_seal_must_come_from_the_installed_root(tmp_path: Path) -> None:
    install_seal(tmp_path / "root-a", tmp_path / "a", "A")
    install_seal(tmp_path / "root-b", tmp_path / "b", "B")
    assert load_or_create_keys(tmp_path / "a").source == "installed"
    shutil.copy(tmp_path / "b" / "keys" / "root.crt.pem", tmp_path / "a" / "keys" / "root.crt.pem")
    with pytest.raises(KeyMaterialError):
        load_or_create_keys(tmp_path / "a")
    assert not has_root_key(tmp_path / "a"), "a bad installed set must not fall back to generating a root"
    (tmp_path / "b" / "keys" / "seal.crt.pem").unlink()
    with pytest.raises(KeyMaterialError, match=r"seal\.crt\.pem"):
        load_or_create_keys(tmp_path / "b")
    assert not has_root_key(tmp_path / "b")


def test_keys_refuses_to_replace_a_different_root(tmp_path: Path) -> None:
    load_or_create_keys(tmp_path / "data")  # a demo-style root in the data dir
    create_root(tmp_path / "other-root", "X")
    with pytest.raises(KeyMaterialError, match="different roots"):
        install_seal(tmp_path / "other-root", tmp_path / "data", "X")
    assert has_root_key(tmp_path / "data")  # nothing removed


def test_expired_installed_seal_still_verifies_but_does_not_serve(tmp_path: Path) -> None:
    from bot.cli_keys import serving_key_problem

    install_seal(tmp_path / "root", tmp_path / "data", "A")
    root_key = serialization.load_pem_private_key((tmp_path / "root" / "root.key.pem").read_bytes(), None)
    root = x509.load_pem_x509_certificate((tmp_path / "root" / "root.crt.pem").read_bytes())
    seal_key = serialization.load_pem_private_key((tmp_path / "data" / "keys" / "seal.key.pem").read_bytes(), None)
    now = datetime.now(UTC)
    expired = (x509.CertificateBuilder().subject_name(root.subject).issuer_name(root.subject)
               .public_key(seal_key.public_key()).serial_number(x509.random_serial_number())  # type: ignore[arg-type]
               .not_valid_before(now - timedelta(days=800)).not_valid_after(now - timedelta(days=1))
               .sign(root_key, hashes.SHA256()))  # type: ignore[arg-type]
    (tmp_path / "data" / "keys" / "seal.crt.pem").write_bytes(expired.public_bytes(serialization.Encoding.PEM))
    keys = load_or_create_keys(tmp_path / "data")
    assert keys.source == "installed" and keys.root_cert == root  # `verify` still has its trust root
    settings = load_settings(data_dir=tmp_path / "data", secret_key="x" * 32, _env_file=None)
    problem = serving_key_problem(settings, demo=False)
    assert problem is not None and "expired" in problem and "python -m bot keys" in problem


def _keys_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", "keys", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


async def test_offline_root_then_sign_and_verify_with_only_the_root_certificate(flow: Flow, tmp_path: Path) -> None:
    data, offline = Path(flow.settings.data_dir), tmp_path / "offline"
    env = {**os.environ, "DATA_DIR": str(data), "COMPANY_NAME": "示例公司", "DATABASE_URL": flow.settings.database_url}
    r = _keys_cli(env, "--root-dir", str(offline))
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(p.name for p in (data / "keys").glob("*.pem")) == ["root.crt.pem", "seal.crt.pem", "seal.key.pem"]
    assert (offline / "root.key.pem").exists() and not has_root_key(data)

    keys = keys_for(flow.settings)
    assert keys.source == "installed"
    root = x509.load_pem_x509_certificate((offline / "root.crt.pem").read_bytes())
    assert keys.root_cert == root and keys.seal_cert.issuer == root.subject

    await complete_case(flow)
    assert not has_root_key(data), "sealing must not create a root key on the server"
    checks = await verify_case(flow.case_id, keys=keys, trust_root=root)
    assert checks and all(c.ok for c in checks), [c.line() for c in checks if not c.ok]
    doc = await Document.get(case_id=flow.case_id, kind="guarantee_letter")
    assert all(c.ok for c in await verify_pdf(bytes(doc.pdf_signed), root))

    await connections.close_all(discard=False)
    res = _cli(flow, "--case", flow.case_id)
    assert res.returncode == 0 and "RESULT: PASS" in res.stdout, res.stdout + res.stderr
    pdf = tmp_path / "letter.pdf"
    await init_db(flow.settings.database_url)
    pdf.write_bytes(bytes((await Document.get(id=doc.id)).pdf_signed))
    await connections.close_all(discard=False)
    res = _cli(flow, str(pdf), "--root", str(offline / "root.crt.pem"))
    assert res.returncode == 0 and "PASS  PAdES seal" in res.stdout, res.stdout + res.stderr
    await init_db(flow.settings.database_url)
