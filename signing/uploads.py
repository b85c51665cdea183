"""Evidence uploads (the postal receipt, the printed newspaper page): what a file is, and whether the stored
copies still match what the audit chain recorded.

A file is what its bytes are, never what its name or the browser says: `puremagic` reads the signature
bytes, and the file is then decoded for real (Pillow for JPEG/PNG, pyHanko's PDF parser for PDF), so a
renamed executable or a truncated image is refused before anything is stored.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import puremagic
from PIL import Image, UnidentifiedImageError
from pyhanko.pdf_utils.misc import PdfReadError
from pyhanko.pdf_utils.reader import PdfFileReader

# Audit kind the engine writes for an upload (workflow.engine._on_evidence).
UPLOAD_KIND = "evidence_uploaded"
ACCEPTED = {"image/jpeg": "jpg", "image/png": "png", "application/pdf": "pdf"}
# A scan bigger than this in pixels is a decompression bomb, not a photo of a receipt.
MAX_PIXELS = 80_000_000


class UploadRejected(ValueError):
    """The bytes are not an image or PDF we accept; `message_zh` / `message_en` say why, for HR."""

    def __init__(self, code: str, message_zh: str, message_en: str) -> None:
        super().__init__(message_en)
        self.code = code
        self.message_zh = message_zh
        self.message_en = message_en


@dataclass(frozen=True)
class Checked:
    content_type: str
    extension: str
    sha256: str
    size: int


def _sniff(data: bytes) -> str | None:
    try:
        found = puremagic.magic_string(data)
    except (puremagic.PureError, ValueError):
        return None
    for match in found:
        if match.mime_type in ACCEPTED:
            return str(match.mime_type)
    return None


def _decodes(kind: str, data: bytes) -> bool:
    if kind == "application/pdf":
        try:
            reader = PdfFileReader(io.BytesIO(data), strict=False)
            return int(reader.root["/Pages"]["/Count"]) >= 1
        except (PdfReadError, KeyError, TypeError, ValueError, IndexError, AttributeError):
            return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                if img.format != {"image/jpeg": "JPEG", "image/png": "PNG"}[kind]:
                    return False
                if img.width * img.height > MAX_PIXELS:
                    return False
                img.load()  # decodes every pixel: a truncated or corrupt file fails here
        return True
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombWarning,
            Image.DecompressionBombError):
        return False


def check_upload(data: bytes) -> Checked:
    """The accepted type of `data` (JPEG, PNG or PDF, decoded to prove it), or UploadRejected."""
    if not data:
        raise UploadRejected("empty", "没有收到文件，请重新选择。", "No file was received; choose it again.")
    kind = _sniff(data)
    if kind is None:
        raise UploadRejected("bad_type", "只能上传 JPEG、PNG 图片或 PDF 文件（按文件内容识别，与文件名无关）。",
                             "Only JPEG or PNG images and PDF files are accepted (judged by content, not name).")
    if not _decodes(kind, data):
        raise UploadRejected("undecodable", "文件已损坏或无法打开，请重新拍照或扫描后上传。",
                             "The file is damaged or cannot be opened; take the photo or scan again.")
    return Checked(kind, ACCEPTED[kind], hashlib.sha256(data).hexdigest(), len(data))


def upload_entries(entries: list[tuple[int, str, Mapping[str, Any]]]) -> dict[str, tuple[int, Mapping[str, Any]]]:
    """The chain's upload entries by upload key: (seq, data)."""
    return {str(d.get("upload_key")): (seq, d) for seq, kind, d in entries if kind == UPLOAD_KIND}


def upload_problem(record: Mapping[str, Any], data: bytes, entry: tuple[int, Mapping[str, Any]] | None) -> str:
    """Why a stored upload (its row as `record`, its bytes) does not match its audit entry; "" if it does."""
    digest = hashlib.sha256(data).hexdigest()
    if digest != record.get("sha256"):
        return "the file's SHA-256 differs from the one stored with it: the file was changed"
    if entry is None:
        return f"no {UPLOAD_KIND} entry in the audit chain for upload {record.get('key')}"
    seq, facts = entry
    for name in ("sha256", "step_id", "field", "size", "content_type"):
        want = digest if name == "sha256" else (len(data) if name == "size" else record.get(name))
        if facts.get(name) != want:
            return f"{name} differs from the audit entry #{seq}"
    return ""
