from __future__ import annotations

import datetime as dt
import os
import stat
import subprocess
from pathlib import Path

import pytest
from aiohttp import web
from asn1crypto import keys as akeys
from asn1crypto import tsp
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pyhanko.sign.timestamps import DummyTimeStamper

from signing.documents import render_document
from signing.keys import KeyMaterial, KeyMaterialError, load_or_create_keys
from signing.seal import SealError, TsaUnavailable, async_seal_pdf, async_validate_pdf, seal_pdf, validate_pdf


def _pdfsig(pdf: bytes, tmp: Path, *extra: str) -> str:
    src = tmp / "sealed.pdf"
    src.write_bytes(pdf)
    return subprocess.run(["pdfsig", *extra, str(src)], capture_output=True, text=True, check=False).stdout


def _flip_inside_signed_range(pdf: bytes) -> bytes:
    # A byte in the body (well before the signature dictionary) is covered by the first byte range.
    b = bytearray(pdf)
    pos = len(b) // 5
    b[pos] ^= 0x01
    return bytes(b)


@pytest.fixture
def sealed(keys: KeyMaterial, guarantee_context: dict) -> bytes:
    return seal_pdf(render_document("guarantee_letter", guarantee_context), keys, reason="离职保证书签署",
                    location="Shanghai")


def test_pdfsig_and_pyhanko_accept_seal(sealed: bytes, keys: KeyMaterial, tmp_path: Path) -> None:
    out = _pdfsig(sealed, tmp_path)
    assert "Signature is Valid" in out
    assert "Total document signed" in out
    assert "ETSI.CAdES.detached" in out
    report = validate_pdf(sealed, keys.root_cert)
    assert report.intact and report.valid and report.trusted and report.bottom_line
    assert report.coverage == "ENTIRE_FILE"
    assert not report.timestamped
    assert report.text.startswith("VALID")


def test_pdfsig_trusts_our_root_via_nss(sealed: bytes, keys: KeyMaterial, tmp_path: Path) -> None:
    nss = tmp_path / "nss"
    nss.mkdir()
    root = tmp_path / "root.pem"
    root.write_bytes(keys.root_pem())
    subprocess.run(["certutil", "-N", "-d", f"sql:{nss}", "--empty-password"], check=True, capture_output=True)
    subprocess.run(["certutil", "-A", "-d", f"sql:{nss}", "-n", "botroot", "-t", "CT,C,C", "-i", str(root)],
                   check=True, capture_output=True)
    assert "Certificate is Trusted" in _pdfsig(sealed, tmp_path, "-nssdir", f"sql:{nss}")


def test_flipped_byte_detected(sealed: bytes, keys: KeyMaterial, tmp_path: Path) -> None:
    bad = _flip_inside_signed_range(sealed)
    assert "Digest Mismatch" in _pdfsig(bad, tmp_path)
    report = validate_pdf(bad, keys.root_cert)
    assert not report.intact and not report.bottom_line


def test_untrusted_root_and_unsigned(sealed: bytes, tmp_path: Path, guarantee_context: dict) -> None:
    other = load_or_create_keys(tmp_path / "other")
    report = validate_pdf(sealed, other.root_cert)
    assert report.intact and not report.trusted and not report.bottom_line
    unsigned = validate_pdf(render_document("guarantee_letter", guarantee_context), other.root_cert)
    assert not unsigned.signed and unsigned.text == "no signature in PDF"
    assert not validate_pdf(b"garbage", other.root_cert).bottom_line


def test_sealed_only_once(sealed: bytes, keys: KeyMaterial) -> None:
    with pytest.raises(SealError, match="once"):
        seal_pdf(sealed, keys, reason="x", location="y")


def test_keys_persist_with_private_perms(tmp_path: Path) -> None:
    a = load_or_create_keys(tmp_path)
    b = load_or_create_keys(tmp_path)
    assert a.root_fingerprint() == b.root_fingerprint()
    assert len(a.root_fingerprint()) == 64
    for name in ("root.key.pem", "seal.key.pem", "checkpoint.key.pem"):
        assert stat.S_IMODE(os.stat(tmp_path / "keys" / name).st_mode) == 0o600
    ku = a.seal_cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and ku.content_commitment
    assert isinstance(a.seal_key, ec.EllipticCurvePrivateKey)
    sig = a.checkpoint_key.sign(b"head")
    b.checkpoint_key.public_key().verify(sig, b"head")
    assert b"PUBLIC KEY" in a.checkpoint_public_pem()


def test_pkcs12_loaded(tmp_path: Path, keys: KeyMaterial, guarantee_context: dict) -> None:
    blob = pkcs12.serialize_key_and_certificates(
        b"seal", keys.seal_key, keys.seal_cert, list(keys.chain),
        serialization.BestAvailableEncryption(b"pw"))
    path = tmp_path / "seal.p12"
    path.write_bytes(blob)
    km = load_or_create_keys(tmp_path / "d", pkcs12_path=path, pkcs12_passphrase="pw")
    assert km.source == str(path) and km.root_fingerprint() == keys.root_fingerprint()
    pdf = seal_pdf(render_document("guarantee_letter", guarantee_context), km, reason="r", location="l")
    assert validate_pdf(pdf, keys.root_cert).bottom_line
    with pytest.raises(KeyMaterialError):
        load_or_create_keys(tmp_path / "d", pkcs12_path=path, pkcs12_passphrase="wrong")


# ---------------------------------------------------------------- B-T with a local RFC 3161 TSA

def _tsa() -> tuple[DummyTimeStamper, x509.Certificate]:
    root_key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test TSA Root")])
    root = (x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
            .public_key(root_key.public_key()).serial_number(1)
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(root_key, hashes.SHA256()))
    tsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    tsa = (x509.CertificateBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test TSA")]))
           .issuer_name(root_name).public_key(tsa_key.public_key()).serial_number(2)
           .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
           .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
           .sign(root_key, hashes.SHA256()))

    def a(c: x509.Certificate) -> ax509.Certificate:
        return ax509.Certificate.load(c.public_bytes(serialization.Encoding.DER))

    key_info = akeys.PrivateKeyInfo.load(tsa_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return DummyTimeStamper(a(tsa), key_info, certs_to_embed=[a(root)]), root


async def test_bt_seal_with_local_tsa(keys: KeyMaterial, guarantee_context: dict, tmp_path: Path) -> None:
    stamper, tsa_root = _tsa()
    hits = []

    async def handle(request: web.Request) -> web.Response:
        req = tsp.TimeStampReq.load(await request.read())
        hits.append(1)
        resp = await stamper.async_request_tsa_response(req)
        return web.Response(body=resp.dump(), content_type="application/timestamp-reply")

    app = web.Application()
    app.router.add_post("/tsa", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        pdf = render_document("guarantee_letter", guarantee_context)
        url = f"http://127.0.0.1:{port}/tsa"
        sealed = await async_seal_pdf(pdf, keys, reason="r", location="l", tsa_url=url)
    finally:
        await runner.cleanup()
    assert hits
    report = await async_validate_pdf(sealed, [keys.root_cert, tsa_root])
    assert report.bottom_line and report.timestamped
    assert "Signature is Valid" in _pdfsig(sealed, tmp_path)


async def test_tsa_down_raises_never_downgrades(keys: KeyMaterial, guarantee_context: dict) -> None:
    pdf = render_document("guarantee_letter", guarantee_context)
    with pytest.raises(TsaUnavailable):
        await async_seal_pdf(pdf, keys, reason="r", location="l", tsa_url="http://127.0.0.1:9/tsa")
