"""The completion page (电子签署存证页): the evidence of each signature, printed into the PDF before sealing.

`evidence` is a mapping with document-level keys and either a `signers` list or the keys of a single
signer at top level:

document: document_title, document_kind, document_sha256 (hash of the PDF presented before signing),
          [case_id], [root_fingerprint], [seal_level]
signer:   signer_name, identity_method, signed_at (aware datetime), ip, device or user_agent,
          strokes_sha256, [platform_identity], [image_sha256], [consent_version], [role], [order],
          [signed_after], [evidence_sha256], audit_seq, audit_entry_hash, [signature_png]

With several signers (a document both sides sign), each signer's evidence is a page of its own that
repeats the document's lines, so every signature's record stands alone.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import Flowable, Image, KeepTogether, PageBreak, Paragraph, SimpleDocTemplate, Spacer, Table
from reportlab.platypus import TableStyle as TS

from signing.channel import Client
from signing.documents import signature_image
from signing.fonts import cjk_font
from signing.merge import append_pages
from signing.templates import DocumentError, clean_text

SHANGHAI = ZoneInfo("Asia/Shanghai")
_DOC_REQUIRED = ("document_title", "document_kind", "document_sha256")
_SIGNER_REQUIRED = ("signer_name", "identity_method", "signed_at", "ip", "strokes_sha256",
                    "audit_seq", "audit_entry_hash")


def device_summary(user_agent: str, clients: Sequence[Client] = ()) -> str:
    """A short human description of the client, e.g. "微信 WeChat 8.0.47 · iPhone iOS 17.4": `clients` are
    the running platforms' in-app browsers (signing.channel), tried before the general ones."""
    ua = user_agent or ""
    app = ""
    apps = [(rf"{re.escape(c.token)}/([\d.]+)", c.name) for c in clients]
    # WeChat's in-app browser is not a platform of ours; a platform's own (WeCom's also says
    # MicroMessenger) is tried first.
    for pattern, name in (*apps, (r"MicroMessenger/([\d.]+)", "微信 WeChat")):
        m = re.search(pattern, ua, re.IGNORECASE)
        if m:
            app = f"{name} {m.group(1)}"
            break
    os_name = ""
    if m := re.search(r"iPhone OS ([\d_]+)", ua):
        os_name = "iPhone iOS " + m.group(1).replace("_", ".")
    elif m := re.search(r"Android ([\d.]+)(?:; ([^;)]+))?", ua):
        os_name = "Android " + m.group(1) + (f" ({m.group(2).strip()})" if m.group(2) else "")
    elif "Windows" in ua:
        os_name = "Windows"
    elif "Mac OS X" in ua:
        os_name = "macOS"
    elif "Linux" in ua:
        os_name = "Linux"
    browser = ""
    if not app:
        for pattern, name in ((r"Edg/([\d]+)", "Edge"), (r"Chrome/([\d]+)", "Chrome"),
                              (r"Version/([\d.]+).*Safari", "Safari"), (r"Firefox/([\d]+)", "Firefox")):
            if m := re.search(pattern, ua):
                browser = f"{name} {m.group(1)}"
                break
    parts = [p for p in (app or browser, os_name) if p]
    return " · ".join(parts) if parts else (ua[:80] or "unknown")


def _times(value: object) -> tuple[str, str]:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise DocumentError("signed_at must be a timezone-aware datetime")
    utc = value.astimezone(UTC)
    local = value.astimezone(SHANGHAI)
    return f"{utc:%Y-%m-%d %H:%M:%S} UTC", f"{local:%Y-%m-%d %H:%M:%S} (Asia/Shanghai, UTC+8)"


def _signers(evidence: Mapping[str, object]) -> list[Mapping[str, object]]:
    raw = evidence.get("signers")
    signers: list[Mapping[str, object]]
    if raw is None:
        signers = [evidence]
    elif isinstance(raw, Sequence) and not isinstance(raw, str | bytes):
        signers = [s for s in raw if isinstance(s, Mapping)]
        if len(signers) != len(raw) or not signers:
            raise DocumentError("evidence 'signers' must be a non-empty list of mappings")
    else:
        raise DocumentError("evidence 'signers' must be a list")
    for s in signers:
        missing = [k for k in _SIGNER_REQUIRED if k not in s]
        if "device" not in s and "user_agent" not in s:
            missing.append("device|user_agent")
        if missing:
            raise DocumentError(f"signer evidence missing: {', '.join(missing)}")
    return signers


def completion_page(evidence: Mapping[str, object], *, font_path: str | None = None) -> bytes:
    """A PDF listing the signing evidence (one page per signer when there are several); every value is
    printed literally."""
    missing = [k for k in _DOC_REQUIRED if k not in evidence]
    if missing:
        raise DocumentError(f"evidence missing: {', '.join(missing)}")
    signers = _signers(evidence)
    font = cjk_font(font_path).name
    title = ParagraphStyle("t", fontName=font, fontSize=16, leading=24, alignment=TA_CENTER, spaceAfter=10)
    head = ParagraphStyle("h", fontName=font, fontSize=11.5, leading=18, spaceBefore=8, spaceAfter=4)
    cell = ParagraphStyle("c", fontName=font, fontSize=9, leading=12.5, wordWrap="CJK")
    note = ParagraphStyle("n", fontName=font, fontSize=8, leading=11, wordWrap="CJK",
                          textColor=colors.HexColor("#555555"))

    def p(text: object, style: ParagraphStyle = cell) -> Paragraph:
        # Hashes are long unbroken strings; CJK wrapping lets them break anywhere instead of overflowing.
        return Paragraph(escape(clean_text(str(text))), style)

    def table(rows: list[tuple[str, object]]) -> Table:
        t = Table([[p(k), v if isinstance(v, Flowable) else p(v)] for k, v in rows],
                  colWidths=[42 * mm, A4[0] - 40 * mm - 42 * mm])
        t.setStyle(TS([
            ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#999999")),
            ("BACKGROUND", (0, 0), (0, -1), colors.HexColor("#F2F2F2")),
            ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ]))
        return t

    doc_rows: list[tuple[str, object]] = [
        ("文件 Document", f"{evidence['document_title']} ({evidence['document_kind']})"),
        ("签署前文件哈希 Document SHA-256 (before signing)", evidence["document_sha256"]),
    ]
    if evidence.get("case_id"):
        doc_rows.insert(0, ("案件 Case", evidence["case_id"]))
    story: list[Flowable] = []
    for i, s in enumerate(signers, 1):
        heading = "电子签署存证页 · Signing Evidence"
        if len(signers) > 1:
            heading += f"（{i}/{len(signers)}）"
        story += [PageBreak()] if i > 1 else []
        story += [p(heading, title), table(doc_rows)]
        utc, local = _times(s["signed_at"])
        device = s.get("device") or device_summary(str(s.get("user_agent", "")))
        rows: list[tuple[str, object]] = [("签署人 Signer", s["signer_name"])]
        png = s.get("signature_png")
        if isinstance(png, bytes | bytearray) and png:
            img: Image = signature_image(bytes(png))
            rows.append(("手写签名 Signature", img))
        optional = (("role", "角色 Role"), ("order", "签署顺序 Order"),
                    ("signed_after", "签署时文件上已有的签名 Signatures already on the document"))
        rows += [(label, s[key]) for key, label in optional if s.get(key)]
        rows.append(("身份核验方式 Identity method", s["identity_method"]))
        if s.get("platform_identity"):
            rows.append(("平台身份 Platform identity", s["platform_identity"]))
        rows += [
            ("签署时间 Time (server)", f"{utc} / {local}"),
            ("IP 地址 IP address", s["ip"]),
            ("设备 Device", device),
            ("笔迹数据哈希 Stroke data SHA-256", s["strokes_sha256"]),
        ]
        optional = (("image_sha256", "签名图像哈希 Signature image SHA-256"),
                    ("consent_version", "同意声明版本 Consent version"),
                    ("evidence_sha256", "存证记录哈希 Evidence record SHA-256"))
        rows += [(label, s[key]) for key, label in optional if s.get(key)]
        rows.append(("审计链位置 Audit chain", f"#{s['audit_seq']} {s['audit_entry_hash']}"))
        story.append(KeepTogether([p(f"签署人 {i} · Signer {i}", head), table(rows)]))
    story.append(Spacer(1, 6 * mm))
    notes = [
        "本页在签署后、加盖电子印章（PAdES 数字签名）前生成；盖章后对文件的任何修改都可以被检测到。"
        "This page was added after signing and before the company seal (PAdES); "
        "any later change is detectable.",
        "核验方法 How to verify: pdfsig <file.pdf>（应显示 Signature is Valid）"
        "或 python -m bot verify <file.pdf>.",
    ]
    if evidence.get("root_fingerprint"):
        notes.append(f"根证书 SHA-256 指纹 Root certificate fingerprint: {evidence['root_fingerprint']}")
    if evidence.get("seal_level"):
        notes.append(f"印章级别 Seal level: {evidence['seal_level']}")
    story += [p(n, note) for n in notes]
    buf = io.BytesIO()
    SimpleDocTemplate(buf, pagesize=A4, leftMargin=20 * mm, rightMargin=20 * mm, topMargin=18 * mm,
                      bottomMargin=18 * mm, title="电子签署存证页", creator="offboard-bot",
                      invariant=1).build(story)
    return buf.getvalue()


__all__ = ["append_pages", "completion_page", "device_summary"]
