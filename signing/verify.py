"""Independent re-checking of a case's evidence, or of one sealed PDF; one PASS/FAIL line per check.

For a case: the audit hash chain, the case and step rows against a replay of it (signing/stepcheck.py),
every checkpoint's Ed25519 signature and head (a closed case's at its final entry), every document's stored
hashes and PAdES seal, and for every signature the stroke-data hash, a fresh server-side render of the
strokes compared with the stored image hash, the presented document hash, and the evidence record in the
audit chain recomputed from the stored row. A document several people sign (the two-party handover) must
carry one signature per signer, in the template's order, each record naming the ones before it.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from io import BytesIO

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pyhanko.pdf_utils.reader import PdfFileReader

from signing.evidence import AUDIT_KIND, SignatureFacts, evidence_sha256
from signing.keys import KeyMaterial
from signing.pipeline import (
    COMPANY_ISSUED,
    ISSUED_KIND,
    checkpoint_message,
    prior_evidence,
    public_key_b64,
    signer_role,
)
from signing.render import RenderBusy
from signing.render import render as render_signature
from signing.seal import async_validate_pdf
from signing.stepcheck import check_case_state
from signing.strokes import StrokeError, parse_strokes_json
from signing.uploads import UPLOAD_KIND, upload_problem
from storage.audit import verify_chain
from storage.canonical import sha256_hex
from storage.models import AuditEntry, Case, Checkpoint, Document, Signature, Upload
from workflow.template import FlowTemplate, StepTemplate
from workflow.templates import load_templates


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = ""

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'}  {self.name}" + (f": {self.detail}" if self.detail else "")


def all_ok(checks: list[Check]) -> bool:
    return bool(checks) and all(c.ok for c in checks)


async def check_seal(name: str, pdf: bytes, trust_root: x509.Certificate | None) -> Check:
    if trust_root is None:
        return Check(name, False, "no trust root available (pass --root or run where the keys are)")
    report = await async_validate_pdf(pdf, trust_root)
    ok = report.bottom_line and report.coverage == "ENTIRE_FILE"
    return Check(name, ok, report.text)


async def verify_pdf(pdf: bytes, trust_root: x509.Certificate | None) -> list[Check]:
    """The seal of a PDF file on its own (no database needed)."""
    checks = [await check_seal("PAdES seal", pdf, trust_root)]
    try:
        n = len(PdfFileReader(BytesIO(pdf), strict=False).embedded_signatures)
        checks.append(Check("sealed exactly once", n == 1, f"{n} signature(s)"))
    except Exception as exc:  # any parse failure is a FAIL line, not a crash
        checks.append(Check("sealed exactly once", False, f"unreadable: {exc}"))
    return checks


async def find_document(pdf: bytes) -> Document | None:
    return await Document.filter(sha256_signed=sha256_hex(pdf)).first()


async def _checkpoint_checks(case: Case, keys: KeyMaterial | None) -> list[Check]:
    out: list[Check] = []
    for cp in await Checkpoint.filter(case_id=case.id).order_by("id"):
        name = f"checkpoint #{cp.seq}"
        try:
            pub = Ed25519PublicKey.from_public_bytes(base64.b64decode(cp.public_key))
            pub.verify(base64.b64decode(cp.signature), checkpoint_message(case.id, cp.seq, cp.head_hash))
            out.append(Check(f"{name} signature", True, "Ed25519"))
        except (InvalidSignature, ValueError) as exc:
            out.append(Check(f"{name} signature", False, f"does not verify ({type(exc).__name__})"))
        entry = await AuditEntry.get_or_none(case_id=case.id, seq=cp.seq)
        out.append(Check(f"{name} head", entry is not None and entry.hash == cp.head_hash,
                         "matches the audit entry" if entry is not None and entry.hash == cp.head_hash
                         else "does not match the audit chain"))
        if keys is not None:
            ours = public_key_b64(keys) == cp.public_key
            out.append(Check(f"{name} key", ours, "our checkpoint key" if ours else "signed by an unknown key"))
    return out


async def _document_checks(doc: Document, trust_root: x509.Certificate | None) -> list[Check]:
    label = f"document {doc.id} ({doc.kind})"
    out = [Check(f"{label} unsigned hash", sha256_hex(bytes(doc.pdf_unsigned)) == doc.sha256_unsigned)]
    if doc.status in ("draft", "partly_signed", "superseded"):
        return out  # not (yet) signed by everyone: nothing sealed to check
    if doc.status != "sealed" or doc.pdf_signed is None:
        out.append(Check(f"{label} sealed", False, f"not sealed yet (status {doc.status})"))
        return out
    signed = bytes(doc.pdf_signed)
    out.append(Check(f"{label} signed hash", sha256_hex(signed) == doc.sha256_signed))
    out.append(await check_seal(f"{label} PAdES seal", signed, trust_root))
    if doc.kind in COMPANY_ISSUED:
        out.append(await _issued_check(doc, label, signed))
    return out


async def _issued_check(doc: Document, label: str, signed: bytes) -> Check:
    """A company-issued document (no signature evidence) must have its hashes in the audit chain."""
    entries = [e for e in await AuditEntry.filter(case_id=doc.case_id, kind=ISSUED_KIND).order_by("seq")  # type: ignore[attr-defined]
               if (e.data or {}).get("document_id") == doc.id]
    if not entries:
        return Check(f"{label} hashes in audit chain", False, "no issuance entry")
    data = entries[-1].data or {}
    ok = (data.get("sha256_unsigned") == doc.sha256_unsigned == sha256_hex(bytes(doc.pdf_unsigned))
          and data.get("sha256_signed") == doc.sha256_signed == sha256_hex(signed))
    return Check(f"{label} hashes in audit chain", ok, f"entry #{entries[-1].seq}" if ok
                 else f"the stored document differs from the hashes recorded at #{entries[-1].seq}")


async def _signer_checks(case: Case, doc: Document, sigs: list[Signature], step: StepTemplate) -> Check:
    """A document several people sign: one signature per signer, in the template's order (all of them
    once it is signed or sealed)."""
    label = f"document {doc.id} ({doc.kind}) signers"
    roles = [await signer_role(case, s.signer_id) for s in sigs]
    want = [str(r) for r in step.signers]
    complete = doc.status not in ("draft", "partly_signed", "superseded", "failed")
    ok = roles == (want if complete else want[: len(roles)]) and len({s.signer_id for s in sigs}) == len(sigs)
    said = ", then ".join(f"{r} {s.signer_id}" for r, s in zip(roles, sigs, strict=True)) or "none"
    return Check(label, ok, said if ok else f"{said}; the template wants {', then '.join(want)}")


async def _signature_checks(sig: Signature, doc: Document, case: Case | None = None,
                            step: StepTemplate | None = None) -> list[Check]:
    label = f"signature {sig.id} ({sig.signer_id})"
    strokes = bytes(sig.strokes)
    out = [Check(f"{label} stroke data hash", sha256_hex(strokes) == sig.strokes_hash)]
    payload = None
    try:
        payload = parse_strokes_json(strokes)
    except StrokeError as exc:
        out.append(Check(f"{label} stroke re-render", False, str(exc)))
    if payload is not None:
        # The same limits and bounded pool as a submission: stored strokes beyond them are reported, not drawn.
        try:
            rendered = sha256_hex(await render_signature(payload))
        except (StrokeError, RenderBusy) as exc:
            out.append(Check(f"{label} stroke re-render", False, f"not re-rendered: {exc}"))
        else:
            ok = rendered == sig.image_hash == sha256_hex(bytes(sig.image_png))
            out.append(Check(f"{label} stroke re-render", ok, "image hash reproduced" if ok
                             else "the strokes do not render to the stored image"))
    out.append(Check(f"{label} document hash presented", sig.doc_hash_presented == doc.sha256_unsigned))
    entry = await AuditEntry.get_or_none(case_id=sig.case_id, seq=sig.audit_seq)  # type: ignore[attr-defined]
    if entry is None or entry.kind != AUDIT_KIND:
        out.append(Check(f"{label} evidence in audit chain", False, f"no evidence entry at #{sig.audit_seq}"))
        return out
    record = entry.data.get("evidence") or {}
    # Signatures on a document several people sign also record their role and the evidence of the
    # signatures already on it: recomputed here from the case and the earlier rows.
    cosigned = (step is not None and step.cosigned) or "cosign" in record
    signed_as = await signer_role(case, sig.signer_id) if cosigned and case is not None else ""
    after = tuple(await prior_evidence(doc.id, sig.case_id, before=sig.id)) if cosigned else ()  # type: ignore[attr-defined]
    facts = SignatureFacts(
        case_id=sig.case_id, step_id=sig.step_id, document_kind=doc.kind, document_id=doc.id,  # type: ignore[attr-defined]
        signer_id=sig.signer_id, signer_name=str((record.get("signer") or {}).get("name", "")),
        identity_method=sig.identity_method, platform_identity=sig.platform_identity,
        doc_hash_presented=sig.doc_hash_presented, strokes_hash=sha256_hex(strokes),
        image_hash=sha256_hex(bytes(sig.image_png)), client_image_hash=sig.client_image_hash,
        n_strokes=len(payload.strokes) if payload else -1, n_points=payload.point_count if payload else -1,
        canvas=(payload.width, payload.height) if payload else (0, 0), server_time=sig.server_time, ip=sig.ip,
        user_agent=sig.user_agent, consent_version=sig.consent_version,
        template_sha256=str((doc.context or {}).get("template_sha256", "")),
        cosigned=cosigned, signed_as=signed_as, after=after,
    )
    ok = evidence_sha256(facts) == entry.data.get("evidence_sha256")
    out.append(Check(f"{label} evidence in audit chain", ok, f"entry #{entry.seq}" if ok
                     else f"stored signature differs from the evidence recorded at #{entry.seq}"))
    return out


async def verify_case(case_id: str, *, keys: KeyMaterial | None = None,
                      trust_root: x509.Certificate | None = None,
                      templates: Mapping[str, FlowTemplate] | None = None) -> list[Check]:
    """`templates` are the flows the steps are replayed under (default: the bundled ones)."""
    case = await Case.get_or_none(id=case_id)
    if case is None:
        return [Check(f"case {case_id}", False, "not found")]
    chain = await verify_chain(case.id)
    checks = [Check("audit chain", chain.ok, chain.problem or f"{chain.entries} entries, head {chain.head[:16]}…")]
    templates = templates or load_templates()
    checks.append(Check("step states", *await check_case_state(case, templates)))
    checks += await _checkpoint_checks(case, keys)
    if case.status != "open":
        # The checkpoint made when it closed is what protects a closed case; deleting it must show.
        closing = await Checkpoint.filter(case_id=case.id, seq=case.audit_seq, head_hash=case.audit_head).exists()
        checks.append(Check("closing checkpoint", closing, f"#{case.audit_seq}" if closing
                            else f"no checkpoint covers the final entry #{case.audit_seq}"))
    flow = templates.get(case.template_id)
    if flow is not None and flow.version != case.template_version:
        flow = None  # another version's steps say nothing about this case's signers
    docs = {d.id: d for d in await Document.filter(case_id=case.id).order_by("id")}
    sigs = await Signature.filter(case_id=case.id).order_by("id")
    for doc in docs.values():
        checks += await _document_checks(doc, trust_root)
        step = flow.by_id.get(doc.step_id) if flow is not None else None
        if step is not None and step.cosigned and doc.kind in step.documents:
            checks.append(await _signer_checks(case, doc, [s for s in sigs if s.document_id == doc.id], step))  # type: ignore[attr-defined]
    for sig in sigs:
        doc = docs[sig.document_id]  # type: ignore[attr-defined]
        step = flow.by_id.get(doc.step_id) if flow is not None else None
        checks += await _signature_checks(sig, doc, case, step)
    checks += await _upload_checks(case)
    return checks


async def _upload_checks(case: Case) -> list[Check]:
    """Every stored upload against the SHA-256 its audit entry records, and every recorded upload stored."""
    chain = {str((e.data or {}).get("upload_key")): (e.seq, e.data or {})
             for e in await AuditEntry.filter(case_id=case.id, kind=UPLOAD_KIND).order_by("seq")}
    out: list[Check] = []
    seen: set[str] = set()
    for up_id in await Upload.filter(case_id=case.id).order_by("id").values_list("id", flat=True):
        up = await Upload.get(id=up_id)
        seen.add(up.key)
        record = {"key": up.key, "sha256": up.sha256, "step_id": up.step_id, "field": up.field,
                  "content_type": up.content_type}
        problem = upload_problem(record, bytes(up.data), chain.get(up.key))
        entry = chain.get(up.key)
        out.append(Check(f"upload {up.id} ({up.step_id}.{up.field})", not problem,
                         problem or f"SHA-256 matches audit entry #{entry[0] if entry else '?'}"))
    for key in sorted(set(chain) - seen):
        out.append(Check(f"upload {key}", False, f"recorded at audit entry #{chain[key][0]} but not stored"))
    return out
