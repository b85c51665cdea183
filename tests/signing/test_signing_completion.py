from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.platforms.dingtalk import DingTalkConnector
from bot.platforms.wecom import WeComConnector
from chat.presentation import channel_of
from signing.canonical import sha256_hex
from signing.completion import completion_page, device_summary
from signing.documents import SignatureMark, render_document, render_signed
from signing.keys import KeyMaterial
from signing.merge import MergeError, append_pages
from signing.seal import seal_pdf, validate_pdf
from signing.strokes import parse_strokes, render_png
from signing.templates import DocumentError
from tests.browser import phone

from .conftest import pdftotext, signature_payload

CLIENTS = channel_of({"dingtalk": DingTalkConnector, "wecom": WeComConnector},  # type: ignore[dict-item]
                     ("dingtalk",)).clients
UA = phone("DingTalk/7.6.0")


def _evidence(doc: bytes, **over: object) -> dict[str, object]:
    strokes = parse_strokes(signature_payload())
    png = render_png(strokes)
    ev: dict[str, object] = dict(
        document_title="离职保证书", document_kind="guarantee_letter", document_sha256=sha256_hex(doc),
        case_id="C-17", signer_name="张三<b>", identity_method="钉钉免登", platform_identity="dingtalk:u7",
        signed_at=datetime(2025, 4, 1, 2, 30, tzinfo=UTC), ip="203.0.113.7", user_agent=UA,
        device=device_summary(UA, CLIENTS),  # as signing.pipeline.signers_evidence puts it
        strokes_sha256=strokes.sha256(), image_sha256=sha256_hex(png), consent_version="2025-01",
        audit_seq=12, audit_entry_hash="ab" * 32, signature_png=png)
    ev.update(over)
    return ev


def test_full_pipeline_sign_complete_seal(guarantee_context: dict, keys: KeyMaterial, tmp_path: Path) -> None:
    presented = render_document("guarantee_letter", guarantee_context)
    ev = _evidence(presented)
    signed = render_signed("guarantee_letter", guarantee_context,
                           [SignatureMark("employee", ev["signature_png"])])  # type: ignore[arg-type]
    final = seal_pdf(append_pages(signed, completion_page(ev)), keys, reason="签署", location="Shanghai")
    text = pdftotext(final, tmp_path)
    assert "离职保证书" in text and "电子签署存证页" in text
    assert sha256_hex(presented) in "".join(text.split())  # long hashes wrap across lines
    assert "2025-04-01 02:30:00 UTC" in text
    assert "2025-04-01 10:30:00 (Asia/Shanghai" in text
    assert "203.0.113.7" in text and "张三<b>" in text
    assert "钉钉 DingTalk 7.6.0 · iPhone iOS 17.4" in text
    assert "#12" in text
    assert validate_pdf(final, keys.root_cert).bottom_line


def test_two_signers_listed(tmp_path: Path, guarantee_context: dict) -> None:
    doc = render_document("guarantee_letter", guarantee_context)
    base = _evidence(doc)
    signer_keys = ("signer_name", "identity_method", "signed_at", "ip", "user_agent", "strokes_sha256",
                   "audit_seq", "audit_entry_hash")
    s1 = {k: base[k] for k in signer_keys}
    s2 = dict(s1, signer_name="王五", role="接收人", audit_seq=13)
    ev = {k: base[k] for k in ("document_title", "document_kind", "document_sha256")} | {"signers": [s1, s2]}
    text = pdftotext(completion_page(ev), tmp_path)
    assert "王五" in text and "Signer 2" in text and "#13" in text


def test_missing_evidence_refused(guarantee_context: dict) -> None:
    doc = render_document("guarantee_letter", guarantee_context)
    ev = _evidence(doc)
    del ev["ip"]
    with pytest.raises(DocumentError, match="ip"):
        completion_page(ev)
    with pytest.raises(DocumentError, match="aware"):
        completion_page(_evidence(doc, signed_at=datetime(2025, 4, 1)))


def test_append_refuses_sealed(keys: KeyMaterial, guarantee_context: dict) -> None:
    doc = render_document("guarantee_letter", guarantee_context)
    sealed = seal_pdf(doc, keys, reason="r", location="l")
    with pytest.raises(MergeError):
        append_pages(sealed, doc)


@pytest.mark.parametrize(("ua", "expected"), [
    (UA, "钉钉 DingTalk 7.6.0 · iPhone iOS 17.4"),
    ("Mozilla/5.0 (Linux; Android 13; PGT-AN10 Build/HONORPGT-AN10) wxwork/4.1.22 MicroMessenger/7.0.1",
     "企业微信 WeCom 4.1.22 · Android 13 (PGT-AN10 Build/HONORPGT-AN10)"),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36", "Chrome 120 · Linux"),
    ("", "unknown"),
])
def test_device_summary(ua: str, expected: str) -> None:
    # The in-app browsers of the platforms running (here DingTalk and WeCom), as the app hands them down.
    assert device_summary(ua, CLIENTS) == expected


def test_a_platform_browser_is_named_only_by_its_running_platform() -> None:
    wecom = "Mozilla/5.0 (Linux; Android 13; PGT-AN10) wxwork/4.1.22 MicroMessenger/7.0.1"
    assert device_summary(wecom, CLIENTS) == "企业微信 WeCom 4.1.22 · Android 13 (PGT-AN10)"
    # Without WeCom running, its browser is the WeChat one it is built on; nothing in signing/ knows WeCom.
    assert device_summary(wecom) == "微信 WeChat 7.0.1 · Android 13 (PGT-AN10)"
    assert device_summary(UA) == "iPhone iOS 17.4"  # DingTalk's, without DingTalk running
