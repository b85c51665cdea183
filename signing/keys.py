"""Company key material: a small root CA, a P-256 seal certificate, and an Ed25519 checkpoint key.

In production the root CA's private key never touches the serving host: `python -m bot keys` creates it
in a directory meant for offline storage and installs into `<data_dir>/keys/` only the seal key, the seal
certificate and the root certificate (`create_root`, `install_seal`). The server then loads that
installed set (`load_or_create_keys` finds no root key). For a demo, tests and older installs, a root
and seal generated together under `<data_dir>/keys/` still work; `serve` refuses them outside `--demo`.
Or the seal key and chain come from a configured PKCS#12. Private keys are 0600, directories 0700.
P-256 rather than RSA because pyHanko reloads the key for every signature and an RSA-3072 load alone
costs ~120 ms (research/esign.md §2.4).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

ROOT_DAYS = 20 * 365
SEAL_DAYS = 2 * 365
RENEW_BEFORE = dt.timedelta(days=30)

SealKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
ROOT_KEY = "root.key.pem"
ROOT_CERT = "root.crt.pem"
SEAL_KEY = "seal.key.pem"
SEAL_CERT = "seal.crt.pem"

log = logging.getLogger("signing.keys")


class KeyMaterialError(RuntimeError):
    """Key material could not be loaded (wrong passphrase, unreadable file, unsuitable certificate)."""


@dataclass(frozen=True)
class KeyMaterial:
    seal_key: SealKey
    seal_cert: x509.Certificate
    chain: tuple[x509.Certificate, ...]  # intermediates and root, leaf excluded
    root_cert: x509.Certificate | None  # the trust anchor verifiers should pin
    checkpoint_key: ed25519.Ed25519PrivateKey
    source: str  # "generated" or the PKCS#12 path

    def root_fingerprint(self) -> str:
        """SHA-256 of the root certificate's DER, hex; publish it so outsiders can pin the root."""
        anchor = self.root_cert or self.seal_cert
        return hashlib.sha256(anchor.public_bytes(serialization.Encoding.DER)).hexdigest()

    def root_pem(self) -> bytes:
        return (self.root_cert or self.seal_cert).public_bytes(serialization.Encoding.PEM)

    def checkpoint_public_pem(self) -> bytes:
        return self.checkpoint_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def _name(cn: str, org: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _make_root(org: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(f"{org} Offboarding Root CA", org)
    now = _now()
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=ROOT_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _make_seal(root_key: ec.EllipticCurvePrivateKey, root: x509.Certificate, org: str
               ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder().subject_name(_name(f"{org} Document Seal", org)).issuer_name(root.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=SEAL_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        # content_commitment is X.509's nonRepudiation bit.
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
                       critical=False)
        .sign(root_key, hashes.SHA256())
    )
    return key, cert


def _write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@contextlib.contextmanager
def _locked(keydir: Path) -> Iterator[None]:
    # Several bot replicas may start together against one data dir; only one may generate.
    with open(keydir / ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _load_key(path: Path) -> object:
    return serialization.load_pem_private_key(path.read_bytes(), password=None)


def _ensure_generated(keydir: Path, org: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate,
                                                       ec.EllipticCurvePrivateKey, x509.Certificate]:
    root_key_p, root_crt_p = keydir / "root.key.pem", keydir / "root.crt.pem"
    seal_key_p, seal_crt_p = keydir / "seal.key.pem", keydir / "seal.crt.pem"
    if root_key_p.exists() and root_crt_p.exists():
        root_key = _load_key(root_key_p)
        root = x509.load_pem_x509_certificate(root_crt_p.read_bytes())
        if not isinstance(root_key, ec.EllipticCurvePrivateKey):
            raise KeyMaterialError(f"{root_key_p} is not an EC key")
    else:
        root_key, root = _make_root(org)
        _write_private(root_key_p, _key_pem(root_key))
        _write_private(root_crt_p, _cert_pem(root), 0o644)
    seal_key: object = None
    seal: x509.Certificate | None = None
    if seal_key_p.exists() and seal_crt_p.exists():
        seal_key = _load_key(seal_key_p)
        seal = x509.load_pem_x509_certificate(seal_crt_p.read_bytes())
    if (not isinstance(seal_key, ec.EllipticCurvePrivateKey) or seal is None
            or seal.not_valid_after_utc - RENEW_BEFORE < _now() or seal.issuer != root.subject):
        seal_key, seal = _make_seal(root_key, root, org)
        _write_private(seal_key_p, _key_pem(seal_key))
        _write_private(seal_crt_p, _cert_pem(seal), 0o644)
    return root_key, root, seal_key, seal


def _ensure_checkpoint(keydir: Path) -> ed25519.Ed25519PrivateKey:
    path = keydir / "checkpoint.key.pem"
    if path.exists():
        key = _load_key(path)
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise KeyMaterialError(f"{path} is not an Ed25519 key")
        return key
    key = ed25519.Ed25519PrivateKey.generate()
    _write_private(path, _key_pem(key))
    _write_private(keydir / "checkpoint.pub.pem", key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo), 0o644)
    return key


def _from_pkcs12(path: Path, passphrase: str | bytes | None
                 ) -> tuple[SealKey, x509.Certificate, tuple[x509.Certificate, ...], x509.Certificate | None]:
    pw = passphrase.encode() if isinstance(passphrase, str) else passphrase
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(path.read_bytes(), pw)
    except (ValueError, OSError) as exc:
        raise KeyMaterialError(f"cannot load PKCS#12 {path}: {exc}") from exc
    if key is None or cert is None:
        raise KeyMaterialError(f"PKCS#12 {path} lacks a private key or certificate")
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise KeyMaterialError(f"PKCS#12 {path}: unsupported key type {type(key).__name__}")
    chain = tuple(extra)
    roots = [c for c in chain if c.subject == c.issuer]
    root = roots[0] if roots else None
    return key, cert, chain, root


def _installed(keydir: Path) -> tuple[SealKey, x509.Certificate, x509.Certificate] | None:
    """The seal key, seal certificate and root certificate `install_seal` put here, when there is no root
    key beside them; None when this is not such a directory."""
    if (keydir / ROOT_KEY).exists() or not all((keydir / n).exists() for n in (SEAL_KEY, SEAL_CERT, ROOT_CERT)):
        return None
    try:
        seal_key = _load_key(keydir / SEAL_KEY)
        seal = x509.load_pem_x509_certificate((keydir / SEAL_CERT).read_bytes())
        root = x509.load_pem_x509_certificate((keydir / ROOT_CERT).read_bytes())
        seal.verify_directly_issued_by(root)
    except (ValueError, TypeError, OSError) as exc:
        raise KeyMaterialError(f"installed keys in {keydir} are unusable: {exc}") from exc
    except Exception as exc:  # InvalidSignature: the seal certificate is not from this root
        raise KeyMaterialError(f"{keydir / SEAL_CERT} was not issued by {keydir / ROOT_CERT}") from exc
    if not isinstance(seal_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise KeyMaterialError(f"{keydir / SEAL_KEY} is not an EC or RSA key")
    if seal_key.public_key().public_numbers() != seal.public_key().public_numbers():  # type: ignore[union-attr]
        raise KeyMaterialError(f"{keydir / SEAL_KEY} does not belong to {keydir / SEAL_CERT}")
    # An expired seal still loads, so `verify` keeps working on what it sealed; `serve` refuses it
    # (seal_expired), since the server cannot renew it without the root key.
    if seal.not_valid_after_utc - RENEW_BEFORE < _now():
        log.warning("the seal certificate expires on %s; issue a new one: python -m bot keys --root-dir "
                    "<offline root dir>", f"{seal.not_valid_after_utc:%Y-%m-%d}")
    return seal_key, seal, root


def seal_expired(keys: KeyMaterial) -> bool:
    return keys.seal_cert.not_valid_after_utc < _now()


def has_root_key(data_dir: Path | str) -> bool:
    return (Path(data_dir) / "keys" / ROOT_KEY).exists()


def has_installed_seal(data_dir: Path | str) -> bool:
    keydir = Path(data_dir) / "keys"
    return all((keydir / n).exists() for n in (SEAL_KEY, SEAL_CERT, ROOT_CERT))


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)


def load_or_create_keys(data_dir: Path | str, *, pkcs12_path: Path | str | None = None,
                        pkcs12_passphrase: str | bytes | None = None,
                        organization: str = "Offboarding Bot") -> KeyMaterial:
    """Load the company keys: an installed seal (no root key here), or the generated root and seal,
    generating any that are missing (demo, first run) or renewing an expiring seal."""
    _private_dir(Path(data_dir))
    keydir = Path(data_dir) / "keys"
    _private_dir(keydir)
    with _locked(keydir):
        checkpoint = _ensure_checkpoint(keydir)
        if pkcs12_path is not None:
            key, cert, chain, root = _from_pkcs12(Path(pkcs12_path), pkcs12_passphrase)
            return KeyMaterial(key, cert, chain, root, checkpoint, str(pkcs12_path))
        installed = _installed(keydir)
        if installed is not None:
            seal_key, seal, root = installed
            return KeyMaterial(seal_key, seal, (root,), root, checkpoint, "installed")
        if (keydir / ROOT_CERT).exists() and not (keydir / ROOT_KEY).exists():
            # An installed set with a file missing: generating a root here would replace the published one.
            missing = [n for n in (SEAL_KEY, SEAL_CERT) if not (keydir / n).exists()]
            raise KeyMaterialError(f"{keydir} has the root certificate but not {', '.join(missing)}; "
                                   "install them: python -m bot keys --root-dir <offline root dir>")
        _root_key, root, seal_key, seal = _ensure_generated(keydir, organization)
        return KeyMaterial(seal_key, seal, (root,), root, checkpoint, "generated")


# ---------------------------------------------------------------- offline root (`python -m bot keys`)

@dataclass(frozen=True)
class Installed:
    root_dir: Path
    keydir: Path
    root_created: bool
    root_moved: bool  # the root key was in the data dir (older install or demo) and now is not
    root_fingerprint: str
    seal_not_after: dt.datetime


def create_root(root_dir: Path, organization: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, bool]:
    """The root CA in `root_dir` (meant for offline storage): loaded if there, else made; (key, cert, made)."""
    _private_dir(root_dir)
    key_p, crt_p = root_dir / ROOT_KEY, root_dir / ROOT_CERT
    if key_p.exists() and crt_p.exists():
        key = _load_key(key_p)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise KeyMaterialError(f"{key_p} is not an EC key")
        return key, x509.load_pem_x509_certificate(crt_p.read_bytes()), False
    key, cert = _make_root(organization)
    _write_private(key_p, _key_pem(key))
    _write_private(crt_p, _cert_pem(cert), 0o644)
    return key, cert, True


def install_seal(root_dir: Path, data_dir: Path, organization: str) -> Installed:
    """Issue a new seal certificate from the root in `root_dir` and install the seal key, the seal
    certificate and the root certificate (never the root key) into `<data_dir>/keys/`.

    A root key already in the data dir (a demo or an install from before this command) is moved to
    `root_dir` when that holds none, so documents sealed so far keep verifying against the same root;
    it is removed from the data dir either way.
    """
    keydir = data_dir / "keys"
    _private_dir(data_dir)
    _private_dir(keydir)
    _private_dir(root_dir)
    moved = False
    with _locked(keydir):
        old_key_p, old_crt_p = keydir / ROOT_KEY, keydir / ROOT_CERT
        if old_key_p.exists():
            if not (root_dir / ROOT_KEY).exists():
                _write_private(root_dir / ROOT_KEY, old_key_p.read_bytes())
                _write_private(root_dir / ROOT_CERT, old_crt_p.read_bytes(), 0o644)
                moved = True
            else:
                theirs = _load_key(old_key_p).public_key()  # type: ignore[attr-defined]
                ours = _load_key(root_dir / ROOT_KEY).public_key()  # type: ignore[attr-defined]
                if theirs.public_numbers() != ours.public_numbers():
                    raise KeyMaterialError(
                        f"{old_key_p} and {root_dir / ROOT_KEY} are different roots; documents sealed so far "
                        f"trust the first. Move it away by hand or pick the matching --root-dir")
                moved = True
        root_key, root, created = create_root(root_dir, organization)
        seal_key, seal = _make_seal(root_key, root, organization)
        _write_private(keydir / SEAL_KEY, _key_pem(seal_key))
        _write_private(keydir / SEAL_CERT, _cert_pem(seal), 0o644)
        _write_private(keydir / ROOT_CERT, _cert_pem(root), 0o644)
        if old_key_p.exists():
            old_key_p.unlink()
    fingerprint = hashlib.sha256(root.public_bytes(serialization.Encoding.DER)).hexdigest()
    return Installed(root_dir, keydir, created and not moved, moved, fingerprint, seal.not_valid_after_utc)
