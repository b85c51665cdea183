"""A case's archive: one zip HR can hand to a lawyer or an arbitration committee, checkable offline.

Layout (every path below is listed in manifest.json with its SHA-256; manifest.sig is the checkpoint
key's Ed25519 signature over manifest.json, so the manifest itself cannot be edited to match a change):

    case.json                     the case row (who, what, status, the audit head it ends at)
    audit.jsonl                   every audit entry as chained: one canonical JSON object a line
    checkpoints.json              the signed checkpoints over the chain
    documents.json                each document's row (hashes, status, seal time)
    documents/<id>-<kind>.pdf     every sealed PDF
    signatures/<id>.json          a signature's stored facts and its evidence entry from the chain
    signatures/<id>.strokes.json  the stroke data as captured (re-rendered by verify)
    signatures/<id>.png           the image stored for it
    uploads.json                  each evidence upload's row (step, field, type, size, SHA-256, its audit entry)
    uploads/<id>-<field>.<ext>    the uploaded scan itself (postal receipt, printed newspaper page)
    settlement_basis.txt          the back-pay and compensation basis lines the documents state
    verify_report.txt             the lines of `python -m bot verify --case`
    index.pdf                     one page: the case summary and a timeline of the audit entries
    keys/checkpoint_public_key.b64, keys/root.pem

The zip is written member by member into a file, PDFs one at a time and the audit log in pages, so a
large case never sits in memory. Members carry a fixed timestamp and the index PDF is rendered in
reportlab's invariant mode: exporting an unchanged case twice gives the same bytes.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any
from xml.sax.saxutils import escape

from cryptography import x509
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from signing.fonts import cjk_font
from signing.keys import KeyMaterial
from signing.pipeline import public_key_b64
from signing.verify import all_ok, verify_case
from storage.canonical import canonical_json
from storage.models import AuditEntry, Case, Checkpoint, Document, Employee, Signature, Upload
from workflow.template import FlowTemplate

FORMAT = "offboard-case-archive/1"
MANIFEST = "manifest.json"
MANIFEST_SIG = "manifest.sig"
PUBLIC_KEY = "keys/checkpoint_public_key.b64"
ROOT_PEM = "keys/root.pem"
# Zip's epoch: members carry no export time, so the same case exports to the same bytes.
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_AUDIT_PAGE = 500  # entries per query while streaming the audit log
_CHUNK = 1 << 16
# The one-page timeline: the first and the last entries, the middle elided (audit.jsonl has them all).
_HEAD, _TAIL = 18, 16
# Context keys of a document that state the settlement and its basis.
BASIS_KEYS = ("backpay_period", "backpay_amount", "basis_lines", "backpay_reference", "compensation_amount",
              "compensation_lines", "non_compete_months", "non_compete_monthly", "non_compete_lines",
              "source_notes")

Progress = Callable[[str, int, int], None]


class ArchiveError(Exception):
    """The archive cannot be made (unknown case, no keys): nothing was written that should be kept."""


@dataclass(frozen=True)
class ArchiveResult:
    case_id: str
    files: int
    sha256: str  # of manifest.json: names the archive's content
    verify_ok: bool


def audit_line(e: AuditEntry) -> bytes:
    """One entry as it was chained; `at` spelled as the chain hashed it (storage.audit._hash)."""
    return canonical_json({"case": e.case_id, "seq": e.seq, "at": e.at.isoformat(),  # type: ignore[attr-defined]
                           "actor": e.actor, "kind": e.kind, "data": e.data, "prev_hash": e.prev_hash,
                           "hash": e.hash}) + b"\n"


def entry_json(e: AuditEntry) -> dict[str, Any]:
    return json.loads(audit_line(e))


def _when(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


class _Writer:
    """Members written through the zip's own streams, each hashed on the way in."""

    def __init__(self, out: IO[bytes]) -> None:
        self.zf = zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True)
        self.files: list[dict[str, Any]] = []

    def _info(self, name: str) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        return info

    def write(self, name: str, chunks: Iterable[bytes] | bytes) -> None:
        if isinstance(chunks, bytes):
            chunks = [chunks[i:i + _CHUNK] for i in range(0, len(chunks), _CHUNK)] or [b""]
        h, size = hashlib.sha256(), 0
        with self.zf.open(self._info(name), "w", force_zip64=True) as f:
            for c in chunks:
                h.update(c)
                size += len(c)
                f.write(c)
        self.files.append({"path": name, "sha256": h.hexdigest(), "size": size})

    def stream(self, name: str) -> _Stream:
        return _Stream(self, name)

    def close(self) -> None:
        self.zf.close()


class _Stream:
    """A member written in several awaits (the audit log, page by page)."""

    def __init__(self, w: _Writer, name: str) -> None:
        self.w, self.name = w, name
        self.h, self.size = hashlib.sha256(), 0
        self.f = w.zf.open(w._info(name), "w", force_zip64=True)

    def write(self, data: bytes) -> None:
        self.h.update(data)
        self.size += len(data)
        self.f.write(data)

    def close(self) -> None:
        self.f.close()
        self.w.files.append({"path": self.name, "sha256": self.h.hexdigest(), "size": self.size})


def _json(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True).encode("utf-8") + b"\n"


def signature_record(sig: Signature, doc: Document, evidence: AuditEntry | None) -> dict[str, Any]:
    """A signature's stored facts (not its stroke or image bytes, which are members of their own)."""
    return {
        "id": sig.id, "case_id": sig.case_id, "step_id": sig.step_id,  # type: ignore[attr-defined]
        "document_id": doc.id, "document_kind": doc.kind,
        "template_sha256": str((doc.context or {}).get("template_sha256", "")),
        "signer_id": sig.signer_id, "identity_method": sig.identity_method,
        "platform_identity": sig.platform_identity, "doc_hash_presented": sig.doc_hash_presented,
        "strokes_hash": sig.strokes_hash, "image_hash": sig.image_hash, "client_image_hash": sig.client_image_hash,
        "server_time": sig.server_time.isoformat(), "ip": sig.ip, "user_agent": sig.user_agent,
        "consent_version": sig.consent_version, "audit_seq": sig.audit_seq,
        "evidence_entry": entry_json(evidence) if evidence is not None else None,
    }


def upload_record(up: Upload, member: str | None = None) -> dict[str, Any]:
    """An upload's row as the archive lists it (its bytes are a member of their own)."""
    return {"id": up.id, "key": up.key, "case_id": up.case_id, "step_id": up.step_id,  # type: ignore[attr-defined]
            "field": up.field, "content_type": up.content_type, "size": up.size, "sha256": up.sha256,
            "filename": up.filename, "uploaded_by": up.uploaded_by, "uploaded_at": up.uploaded_at.isoformat(),
            "file": member}


def _basis_text(doc: Document) -> list[str]:
    ctx = (doc.context or {}).get("values") or {}  # what the document was rendered from
    out: list[str] = []
    for key in BASIS_KEYS:
        value = ctx.get(key)
        if value in (None, "", []):
            continue
        if isinstance(value, list):
            out.append(f"  {key}:")
            out += [f"    - {v}" for v in value]
        else:
            out.append(f"  {key}: {value}")
    return out


async def write_archive(case_id: str, out: IO[bytes], *, keys: KeyMaterial,
                        trust_root: x509.Certificate | None = None,
                        templates: Mapping[str, FlowTemplate] | None = None,
                        font_path: str | None = None, progress: Progress | None = None,
                        tz: Any = None) -> ArchiveResult:
    """Write the archive of `case_id` into `out` (a file opened for writing; it is not closed)."""
    case = await Case.get_or_none(id=case_id)
    if case is None:
        raise ArchiveError(f"no case {case_id}")
    emp = await Employee.get(id=case.employee_id)  # type: ignore[attr-defined]
    tell = progress or (lambda stage, done, total: None)
    w = _Writer(out)
    try:
        case_row = {
            "format": FORMAT, "id": case.id, "employee_id": emp.employee_id, "employee_name": emp.name,
            "department": emp.department, "position": emp.position, "template_id": case.template_id,
            "template_version": case.template_version, "status": case.status,
            "last_day": case.last_day.isoformat() if case.last_day else None, "reason": case.reason,
            "manager_id": case.manager_id, "handover_id": case.handover_id, "created_by": case.created_by,
            "started_at": _when(case.started_at), "closed_at": _when(case.closed_at),
            "audit_seq": case.audit_seq, "audit_head": case.audit_head,
        }
        w.write("case.json", _json(case_row))

        # The audit log, page by page; the timeline keeps only what fits on the index page.
        total = case.audit_seq
        head: list[tuple[int, str, str, str]] = []
        tail: deque[tuple[int, str, str, str]] = deque(maxlen=_TAIL)
        stream = w.stream("audit.jsonl")
        last, done = 0, 0
        while True:
            page = await AuditEntry.filter(case_id=case.id, seq__gt=last).order_by("seq").limit(_AUDIT_PAGE)
            if not page:
                break
            for e in page:
                stream.write(audit_line(e))
                row = (e.seq, e.at.astimezone(tz).strftime("%Y-%m-%d %H:%M") if tz else e.at.isoformat()[:16],
                       e.actor, e.kind)
                (head if len(head) < _HEAD else tail).append(row)
                last = e.seq
            done += len(page)
            tell("audit", done, total)
        stream.close()

        cps = [{"seq": cp.seq, "head_hash": cp.head_hash, "signature": cp.signature, "public_key": cp.public_key,
                "created_at": _when(cp.created_at)}
               for cp in await Checkpoint.filter(case_id=case.id).order_by("id")]
        w.write("checkpoints.json", _json(cps))
        w.write(PUBLIC_KEY, public_key_b64(keys).encode("ascii") + b"\n")
        w.write(ROOT_PEM, keys.root_pem())

        doc_ids = list(await Document.filter(case_id=case.id).order_by("id").values_list("id", flat=True))
        docs_meta: list[dict[str, Any]] = []
        basis: list[str] = []
        for i, doc_id in enumerate(doc_ids, start=1):
            doc = await Document.get(id=doc_id)
            meta = {"id": doc.id, "kind": doc.kind, "step_id": doc.step_id, "status": doc.status,
                    "sha256_unsigned": doc.sha256_unsigned, "sha256_signed": doc.sha256_signed,
                    "created_at": _when(doc.created_at), "sealed_at": _when(doc.sealed_at), "file": None}
            if doc.status == "sealed" and doc.pdf_signed is not None:
                meta["file"] = f"documents/{doc.id}-{doc.kind}.pdf"
                w.write(meta["file"], bytes(doc.pdf_signed))
            lines = _basis_text(doc)
            if lines:
                basis += [f"document {doc.id} ({doc.kind}, {doc.status})", *lines, ""]
            docs_meta.append(meta)
            tell("documents", i, len(doc_ids))
        w.write("documents.json", _json(docs_meta))

        sig_ids = list(await Signature.filter(case_id=case.id).order_by("id").values_list("id", flat=True))
        for i, sig_id in enumerate(sig_ids, start=1):
            sig = await Signature.get(id=sig_id)
            doc = await Document.get(id=sig.document_id)  # type: ignore[attr-defined]
            evidence = (await AuditEntry.get_or_none(case_id=case.id, seq=sig.audit_seq)
                        if sig.audit_seq is not None else None)
            w.write(f"signatures/{sig.id}.json", _json(signature_record(sig, doc, evidence)))
            w.write(f"signatures/{sig.id}.strokes.json", bytes(sig.strokes))
            w.write(f"signatures/{sig.id}.png", bytes(sig.image_png))
            tell("signatures", i, len(sig_ids))

        upload_rows: list[dict[str, Any]] = []
        ext = {"image/jpeg": "jpg", "image/png": "png", "application/pdf": "pdf"}
        for up_id in await Upload.filter(case_id=case.id).order_by("id").values_list("id", flat=True):
            up = await Upload.get(id=up_id)  # one scan in memory at a time
            member = f"uploads/{up.id}-{up.field}.{ext.get(up.content_type, 'bin')}"
            w.write(member, bytes(up.data))
            upload_rows.append(upload_record(up, member))
        w.write("uploads.json", _json(upload_rows))

        w.write("settlement_basis.txt", (
            f"案件 / case {case.id}: 补发工资与经济补偿的计算依据（取自各文件所载内容）\n"
            "back pay and compensation basis, as the documents state it\n\n"
            + ("\n".join(basis) if basis else "(none of this case's documents states a settlement amount)\n")
        ).encode("utf-8"))

        tell("verify", 0, 1)
        checks = await verify_case(case.id, keys=keys, trust_root=trust_root or keys.root_cert or keys.seal_cert,
                                   templates=templates)
        ok = all_ok(checks)
        report = [f"case {case.id}", *("  " + c.line() for c in checks),
                  "RESULT: PASS" if ok else f"RESULT: FAIL ({sum(not c.ok for c in checks)} failed)"]
        w.write("verify_report.txt", ("\n".join(report) + "\n").encode("utf-8"))
        tell("verify", 1, 1)

        w.write("index.pdf", index_pdf(case_row, head, list(tail), total, len(doc_ids), len(sig_ids), ok,
                                       font_path=font_path))
        manifest = canonical_json({"format": FORMAT, "case": case.id, "files": w.files})
        w.write(MANIFEST, manifest)
        signature = base64.b64encode(keys.checkpoint_key.sign(manifest)).decode("ascii")
        w.write(MANIFEST_SIG, signature.encode("ascii") + b"\n")
        n = len(w.files)
    finally:
        w.close()
    return ArchiveResult(case.id, n, hashlib.sha256(manifest).hexdigest(), ok)


def index_pdf(case: Mapping[str, Any], head: list[tuple[int, str, str, str]],
              tail: list[tuple[int, str, str, str]], total: int, n_docs: int, n_sigs: int, verified: bool, *,
              font_path: str | None = None) -> bytes:
    """The one-page index: who, what, when, and the audit timeline (elided in the middle if long)."""
    font = cjk_font(font_path).name
    title = ParagraphStyle("t", fontName=font, fontSize=14, leading=18)
    body = ParagraphStyle("b", fontName=font, fontSize=8.5, leading=11)
    small = ParagraphStyle("s", fontName=font, fontSize=7, leading=8.5)

    def p(text: object, style: ParagraphStyle = body) -> Paragraph:
        return Paragraph(escape(str(text if text is not None else "—")), style)

    summary = [
        ("流程号 Case", case["id"]), ("员工 Employee", f"{case['employee_name']}（{case['employee_id']}）"),
        ("部门 / 岗位", f"{case['department'] or '—'} / {case['position'] or '—'}"),
        ("类型 Type", case["template_id"]), ("状态 Status", case["status"]),
        ("最后工作日 Last day", case["last_day"]), ("原因 Reason", case["reason"] or "—"),
        ("发起 Started", f"{case['started_at']} by {case['created_by']}"), ("结束 Closed", case["closed_at"]),
        ("审计链 Audit chain", f"{total} entries, head {case['audit_head'][:16]}…"),
        ("文件 / 签名", f"{n_docs} documents, {n_sigs} signatures"),
        ("校验 Verify", "PASS" if verified else "FAIL — see verify_report.txt"),
    ]
    t1 = Table([[p(k), p(v)] for k, v in summary], colWidths=[38 * mm, 122 * mm])
    t1.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.3, colors.grey), ("VALIGN", (0, 0), (-1, -1), "TOP"),
                            ("TOPPADDING", (0, 0), (-1, -1), 2), ("BOTTOMPADDING", (0, 0), (-1, -1), 2)]))
    rows = [[p("#", small), p("时间 Time", small), p("操作人 Actor", small), p("事项 Entry", small)]]
    rows += [[p(s, small), p(at, small), p(actor or "—", small), p(kind, small)] for s, at, actor, kind in head]
    if total > len(head) + len(tail):
        rows.append([p("…", small), p("", small), p("", small),
                     p(f"{total - len(head) - len(tail)} more entries in audit.jsonl", small)])
    rows += [[p(s, small), p(at, small), p(actor or "—", small), p(kind, small)] for s, at, actor, kind in tail]
    t2 = Table(rows, colWidths=[10 * mm, 32 * mm, 28 * mm, 90 * mm], repeatRows=1)
    t2.setStyle(TableStyle([("LINEBELOW", (0, 0), (-1, -1), 0.2, colors.lightgrey),
                            ("TOPPADDING", (0, 0), (-1, -1), 1), ("BOTTOMPADDING", (0, 0), (-1, -1), 1),
                            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee"))]))
    buf = io.BytesIO()
    doc = SimpleDocTemplate(buf, pagesize=A4, leftMargin=25 * mm, rightMargin=25 * mm, topMargin=18 * mm,
                            bottomMargin=15 * mm, title=f"离职档案 {case['id']}", creator="offboard-bot",
                            invariant=1, lang="zh-CN")
    doc.build([p(f"离职档案 · Case archive {case['id']}", title), Spacer(1, 4 * mm), t1, Spacer(1, 4 * mm),
               p("时间线 Timeline（全部条目见 audit.jsonl；文件清单及哈希见 manifest.json）"), Spacer(1, 2 * mm), t2])
    return buf.getvalue()
