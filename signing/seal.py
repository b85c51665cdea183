"""Seal a finished PDF once with the company key (PAdES B-B, or B-T with a TSA) and validate seals.

A PDF is sealed last: anything appended afterwards (other than DSS/timestamps) breaks the seal, so the
completion page must already be in. If a TSA is configured and fails, we raise `TsaUnavailable` and the
caller retries later; we never quietly produce a B-B file instead (the DocuSeal anti-pattern).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from io import BytesIO

import aiohttp
from asn1crypto import keys as akeys
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfReadError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import signers
from pyhanko.sign.fields import SigSeedSubFilter
from pyhanko.sign.general import SigningError
from pyhanko.sign.timestamps import HTTPTimeStamper, TimestampRequestError
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.registry import SimpleCertificateStore

from signing.keys import KeyMaterial

FIELD_NAME = "CompanySeal"
# Reserving the CMS size up front skips pyHanko's dry-run signature (halves B-B signing time).
RESERVED_BB = 8192
RESERVED_BT = 32768


class SealError(RuntimeError):
    """The PDF cannot be sealed (unreadable, or already carries a signature)."""


class TsaUnavailable(SealError):
    """The configured timestamp authority did not answer; retry later, do not downgrade."""


def _a_cert(cert: x509.Certificate) -> ax509.Certificate:
    return ax509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def _signer(keys: KeyMaterial) -> signers.SimpleSigner:
    der = keys.seal_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
    return signers.SimpleSigner(
        signing_cert=_a_cert(keys.seal_cert),
        signing_key=akeys.PrivateKeyInfo.load(der),
        cert_registry=SimpleCertificateStore.from_certs([_a_cert(c) for c in keys.chain]),
    )


_stampers: dict[str, HTTPTimeStamper] = {}
_stampers_lock = threading.Lock()


def timestamper(url: str, *, timeout: float = 10) -> HTTPTimeStamper:
    """One stamper per URL: a fresh instance costs an extra TSA round-trip for size estimation."""
    with _stampers_lock:
        stamper = _stampers.get(url)
        if stamper is None:
            stamper = HTTPTimeStamper(url, timeout=timeout)
            _stampers[url] = stamper
        return stamper


def _prepare(pdf: bytes, keys: KeyMaterial, reason: str, location: str, tsa_url: str | None
             ) -> tuple[IncrementalPdfFileWriter, signers.PdfSigner, int]:
    try:
        reader = PdfFileReader(BytesIO(pdf), strict=False)
        if reader.embedded_signatures:
            raise SealError("PDF is already signed; a document is sealed exactly once")
        writer = IncrementalPdfFileWriter(BytesIO(pdf), strict=False)
    except PdfReadError as exc:
        raise SealError(f"unreadable PDF: {exc}") from exc
    meta = signers.PdfSignatureMetadata(
        field_name=FIELD_NAME, md_algorithm="sha256", subfilter=SigSeedSubFilter.PADES,
        reason=reason, location=location,
    )
    stamper = timestamper(tsa_url) if tsa_url else None
    pdf_signer = signers.PdfSigner(meta, signer=_signer(keys), timestamper=stamper)
    return writer, pdf_signer, RESERVED_BT if tsa_url else RESERVED_BB


_TSA_ERRORS = (TimestampRequestError, aiohttp.ClientError, OSError, asyncio.TimeoutError)


async def async_seal_pdf(pdf: bytes, keys: KeyMaterial, *, reason: str, location: str,
                         tsa_url: str | None = None) -> bytes:
    """Seal from async code (the aiohttp app); same result as `seal_pdf`."""
    writer, pdf_signer, reserved = _prepare(pdf, keys, reason, location, tsa_url)
    try:
        out = await pdf_signer.async_sign_pdf(writer, bytes_reserved=reserved)
    except _TSA_ERRORS as exc:
        raise TsaUnavailable(f"timestamp authority {tsa_url} unavailable: {exc}") from exc
    except SigningError as exc:
        if tsa_url and isinstance(exc.__cause__, _TSA_ERRORS):
            raise TsaUnavailable(f"timestamp authority {tsa_url} unavailable: {exc}") from exc
        raise SealError(str(exc)) from exc
    return out.getvalue()


def seal_pdf(pdf: bytes, keys: KeyMaterial, *, reason: str, location: str,
             tsa_url: str | None = None) -> bytes:
    """PAdES B-B (no `tsa_url`) or B-T seal of `pdf`. Call from sync code only (it runs its own loop)."""
    return asyncio.run(async_seal_pdf(pdf, keys, reason=reason, location=location, tsa_url=tsa_url))


@dataclass(frozen=True)
class ValidationReport:
    signed: bool
    intact: bool  # the signed bytes hash to the value in the signature
    valid: bool  # the signature over that hash verifies with the signer's key
    trusted: bool  # the signer chains to a trust root we were given
    coverage: str  # ENTIRE_FILE / ENTIRE_REVISION / ... or "" when unsigned
    bottom_line: bool
    timestamped: bool  # a signature timestamp token is present and valid
    signer: str
    text: str


def _failed(text: str, signed: bool = False) -> ValidationReport:
    return ValidationReport(signed, False, False, False, "", False, False, "", text)


TrustRoots = x509.Certificate | Sequence[x509.Certificate]


def validate_pdf(pdf: bytes, trust_root: TrustRoots) -> ValidationReport:
    """Validate the single company seal against `trust_root` (also used for the TSA chain). Sync code only."""
    return asyncio.run(async_validate_pdf(pdf, trust_root))


async def async_validate_pdf(pdf: bytes, trust_root: TrustRoots) -> ValidationReport:
    """`validate_pdf` for async callers."""
    roots = [trust_root] if isinstance(trust_root, x509.Certificate) else list(trust_root)
    try:
        sigs = PdfFileReader(BytesIO(pdf), strict=False).embedded_signatures
    except (PdfReadError, ValueError, KeyError, IndexError) as exc:
        return _failed(f"unreadable PDF: {exc}")
    if not sigs:
        return _failed("no signature in PDF")
    if len(sigs) != 1:
        return _failed(f"expected one seal, found {len(sigs)} signatures", signed=True)
    vc = ValidationContext(trust_roots=[_a_cert(r) for r in roots], allow_fetching=False)
    try:
        st = await async_validate_pdf_signature(sigs[0], signer_validation_context=vc, ts_validation_context=vc)
    except (ValueError, KeyError, SigningError, PdfReadError) as exc:
        return _failed(f"signature could not be checked: {exc}", signed=True)
    ts = st.timestamp_validity
    timestamped = bool(ts is not None and ts.intact and ts.valid and ts.trusted)
    coverage = st.coverage.name if st.coverage is not None else ""
    signer = st.signing_cert.subject.human_friendly if st.signing_cert is not None else ""
    verdict = "VALID" if st.bottom_line else "INVALID"
    text = (f"{verdict}: intact={st.intact} valid={st.valid} trusted={st.trusted} coverage={coverage} "
            f"timestamp={'yes' if timestamped else 'no'} signer={signer}")
    return ValidationReport(True, st.intact, st.valid, st.trusted, coverage, st.bottom_line, timestamped,
                            signer, text)
