"""The per-signature evidence record: one canonical JSON object whose hash goes into the case's audit chain.

The record holds hashes, not the raw stroke bytes or image (those live in the Signature row and are
re-hashed by `verify`), so the audit entry stays small while still pinning every stored byte: change the
stroke data, the image, the IP or the time in the row and the recomputed record no longer matches the
hash written in the chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from signing.canonical import canonical_json, sha256_hex
from signing.page import CONSENT_TEXT

EVIDENCE_VERSION = 1
AUDIT_KIND = "signature_evidence"


@dataclass(frozen=True)
class SignatureFacts:
    """Everything recorded about one signature, as stored in the Signature row."""

    case_id: str
    step_id: str
    document_kind: str
    document_id: int
    signer_id: str
    signer_name: str
    identity_method: str
    platform_identity: str
    doc_hash_presented: str
    strokes_hash: str
    image_hash: str
    client_image_hash: str | None
    n_strokes: int
    n_points: int
    canvas: tuple[int, int]
    server_time: datetime
    ip: str
    user_agent: str
    consent_version: str
    template_sha256: str = ""
    # A document several people sign (the two-party handover): the role this signer signed as, and
    # the evidence hashes of the signatures already on the document when they signed (shown to them
    # on their signing page), in signing order.
    cosigned: bool = False
    signed_as: str = ""
    after: tuple[str, ...] = ()


def _utc_ms(at: datetime) -> str:
    # Database columns keep milliseconds or microseconds depending on the backend; hash what survives both.
    at = at.astimezone(UTC)
    return at.replace(microsecond=(at.microsecond // 1000) * 1000).isoformat()


def consent_sha256(lang: str = "zh") -> str:
    return sha256_hex(CONSENT_TEXT[lang].encode("utf-8"))


def evidence_record(f: SignatureFacts) -> dict[str, Any]:
    record: dict[str, Any] = {
        "v": EVIDENCE_VERSION,
        "case_id": f.case_id,
        "step_id": f.step_id,
        "document": {"kind": f.document_kind, "id": f.document_id, "sha256_presented": f.doc_hash_presented,
                     "template_sha256": f.template_sha256},
        "signer": {"employee_id": f.signer_id, "name": f.signer_name, "identity_method": f.identity_method,
                   "platform_identity": f.platform_identity},
        "intent": {"consent_version": f.consent_version, "consent_sha256": consent_sha256()},
        "capture": {"strokes_sha256": f.strokes_hash, "image_sha256": f.image_hash,
                    "client_image_sha256": f.client_image_hash, "strokes": f.n_strokes, "points": f.n_points,
                    "canvas": [f.canvas[0], f.canvas[1]]},
        "client": {"ip": f.ip, "user_agent": f.user_agent},
        "server": {"received_at": _utc_ms(f.server_time)},
    }
    if f.cosigned:
        # Only on documents with several signers, so single-signer records hash as they always did.
        record["cosign"] = {"as": f.signed_as, "order": len(f.after) + 1, "after": list(f.after)}
    return record


def evidence_bytes(f: SignatureFacts) -> bytes:
    return canonical_json(evidence_record(f))


def evidence_sha256(f: SignatureFacts) -> str:
    return sha256_hex(evidence_bytes(f))


def audit_data(f: SignatureFacts) -> dict[str, Any]:
    """What the audit entry stores: the record itself and its hash (the hash is what verify compares)."""
    return {"evidence": evidence_record(f), "evidence_sha256": evidence_sha256(f)}
