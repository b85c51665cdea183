"""PDF pages as PNG images for the signing page, rendered by poppler's pdftoppm."""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path


class PreviewError(RuntimeError):
    pass


def pdf_to_png_pages(pdf: bytes, *, dpi: int = 110, timeout: float = 30.0,
                     pdftoppm: str = "pdftoppm") -> list[bytes]:
    """One PNG per page, in page order. 110 dpi keeps an A4 page readable on a phone at ~0.3 MB."""
    if not (30 <= dpi <= 300):
        raise ValueError("dpi must be between 30 and 300")
    with tempfile.TemporaryDirectory(prefix="preview-") as tmp:
        src = Path(tmp) / "doc.pdf"
        src.write_bytes(pdf)
        try:
            proc = subprocess.run(
                [pdftoppm, "-png", "-r", str(dpi), str(src), str(Path(tmp) / "page")],
                capture_output=True, timeout=timeout, check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PreviewError(f"pdftoppm failed: {exc}") from exc
        if proc.returncode != 0:
            raise PreviewError(f"pdftoppm exit {proc.returncode}: {proc.stderr.decode(errors='replace')[:300]}")
        # pdftoppm zero-pads the page number to the width of the page count (page-1 or page-01 ...).
        pages = sorted(Path(tmp).glob("page-*.png"), key=lambda p: int(re.findall(r"\d+", p.stem)[-1]))
        if not pages:
            raise PreviewError("pdftoppm produced no pages")
        return [p.read_bytes() for p in pages]
