"""Pick and register a CJK font for reportlab.

An embedded TrueType font renders in every viewer; the built-in CID font is not embedded and needs the
viewer's Asian font pack, so it is only the fallback. reportlab's TTFont cannot read CFF outlines, which
rules out the Noto CJK .ttc files; WenQuanYi (TrueType glyf outlines) works.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfbase.ttfonts import TTFError, TTFont

log = logging.getLogger("signing")

DEFAULT_FONT_PATHS: tuple[str, ...] = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
)
CID_FALLBACK = "STSong-Light"


@dataclass(frozen=True)
class CjkFont:
    name: str  # reportlab font name to use in setFont / ParagraphStyle
    embedded: bool
    source: str  # file path, or the CID font name


_lock = threading.Lock()
_cache: dict[str | None, CjkFont] = {}


def _try_ttf(path: str) -> CjkFont | None:
    p = Path(path)
    if not p.is_file():
        return None
    name = "CJK-" + p.stem
    try:
        # Index 0 of a .ttc is the regular face for the fonts we know; a plain .ttf ignores it.
        font = TTFont(name, str(p), subfontIndex=0)
    except (TTFError, OSError, ValueError) as exc:
        log.warning("CJK font %s unusable by reportlab: %s", p, exc)
        return None
    pdfmetrics.registerFont(font)
    return CjkFont(name=name, embedded=True, source=str(p))


def cjk_font(font_path: str | None = None) -> CjkFont:
    """Register (once) and return the CJK font to use.

    `font_path` is the configured CJK_FONT_PATH; when it is missing or unusable the default search list
    is tried, then reportlab's non-embedded STSong-Light.
    """
    with _lock:
        cached = _cache.get(font_path)
        if cached is not None:
            return cached
        candidates = ([font_path] if font_path else []) + list(DEFAULT_FONT_PATHS)
        chosen: CjkFont | None = None
        for cand in candidates:
            chosen = _try_ttf(cand)
            if chosen is not None:
                break
            if cand == font_path:
                log.warning("configured CJK_FONT_PATH %s not usable; searching defaults", font_path)
        if chosen is None:
            pdfmetrics.registerFont(UnicodeCIDFont(CID_FALLBACK))
            chosen = CjkFont(name=CID_FALLBACK, embedded=False, source=CID_FALLBACK)
            log.warning("no embeddable CJK font found; using built-in CID font %s (not embedded)",
                        CID_FALLBACK)
        else:
            log.info("CJK font: embedding %s", chosen.source)
        _cache[font_path] = chosen
        return chosen
