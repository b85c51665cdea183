"""Render document templates to PDF with reportlab (unsigned, or with handwritten signature images).

Every piece of text that reaches a reportlab Paragraph is XML-escaped here, because Paragraph parses
markup: an employee called `<b>` must print as `<b>`, not turn the rest of the page bold or crash.
Output is byte-for-byte reproducible (reportlab's invariant mode), so a stored context can be re-rendered
and compared against the hash of the document that was presented.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from PIL import Image as PILImage
from reportlab import rl_config
from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER, TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import Flowable, Image, KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table
from reportlab.platypus import TableStyle as TS

from signing.fonts import cjk_font
from signing.strokes import MAX_SIGNATURE_PNG  # one limit for the renderer, submit and sealing
from signing.templates import (
    ClosingBlock,
    DocumentError,
    FieldsBlock,
    Heading,
    LangText,
    LinesBlock,
    ParagraphBlock,
    clean_text,
    fill,
    format_value,
    load_template,
    merged_context,
    section_number,
    shown,
)

# Without reportlab's optional C accelerator, ASCII85-encoding image streams runs in pure Python and
# costs ~5 ms per signature image while making the file 25 % larger; binary streams are valid PDF.
rl_config.useA85 = 0

SIG_BOX_W = 60 * mm
SIG_BOX_H = 24 * mm


@dataclass(frozen=True)
class SignatureMark:
    """A handwritten signature to place in the template's slot for `role`."""

    role: str
    png: bytes  # server-rendered from the stroke data (signing.strokes.render_png)
    caption: str = ""  # e.g. the server signing time, printed under the image


@dataclass(frozen=True)
class _Styles:
    title: ParagraphStyle
    heading: ParagraphStyle
    body: ParagraphStyle
    plain: ParagraphStyle
    line: ParagraphStyle
    cell: ParagraphStyle
    closing: ParagraphStyle
    small: ParagraphStyle


def _styles(font: str, lang: str) -> _Styles:
    wrap = "CJK" if lang == "zh" else None
    body = ParagraphStyle(
        "body", fontName=font, fontSize=11.5, leading=20, wordWrap=wrap,
        firstLineIndent=23 if lang == "zh" else 0, spaceAfter=6,
    )
    return _Styles(
        title=ParagraphStyle("title", fontName=font, fontSize=20, leading=28, alignment=TA_CENTER,
                             spaceAfter=18, wordWrap=wrap),
        heading=ParagraphStyle("heading", fontName=font, fontSize=13, leading=20, spaceBefore=6,
                               spaceAfter=4, wordWrap=wrap),
        body=body,
        plain=ParagraphStyle("plain", parent=body, firstLineIndent=0),
        line=ParagraphStyle("line", parent=body, firstLineIndent=0, leftIndent=23, spaceAfter=2),
        cell=ParagraphStyle("cell", fontName=font, fontSize=11, leading=16, wordWrap=wrap),
        closing=ParagraphStyle("closing", parent=body, alignment=TA_RIGHT, firstLineIndent=0, spaceAfter=2),
        small=ParagraphStyle("small", fontName=font, fontSize=8.5, leading=11, wordWrap=wrap,
                             textColor=colors.HexColor("#555555")),
    )


def _p(text: str, style: ParagraphStyle) -> Paragraph:
    return Paragraph(escape(text), style)


def signature_image(png: bytes) -> Image:
    if len(png) > MAX_SIGNATURE_PNG:
        raise DocumentError("signature image too large")
    try:
        with PILImage.open(io.BytesIO(png)) as im:
            w, h = im.size
            fmt = im.format
    except OSError as exc:
        raise DocumentError(f"signature image unreadable: {exc}") from exc
    if fmt != "PNG" or w <= 0 or h <= 0:
        raise DocumentError("signature image must be a PNG")
    scale = min(SIG_BOX_W / w, (SIG_BOX_H - 2 * mm) / h)
    return Image(io.BytesIO(png), width=w * scale, height=h * scale, mask="auto")


def _signature_table(text: LangText, marks: Mapping[str, SignatureMark], st: _Styles) -> Flowable:
    cells = []
    for slot in text.signatures:
        mark = marks.get(slot.role)
        area: Flowable = signature_image(mark.png) if mark else Spacer(SIG_BOX_W, SIG_BOX_H - 2 * mm)
        caption = _p(mark.caption, st.small) if mark and mark.caption else Spacer(1, 11)
        cells.append([_p(slot.label, st.cell), area, caption])
    n = len(cells)
    col_w = (A4[0] - 50 * mm) / n
    table = Table([cells], colWidths=[col_w] * n)
    table.setStyle(TS([("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (-1, -1), 0)]))
    # Each cell is a list of flowables stacked vertically: label, mark (or blank space), caption.
    return KeepTogether([Spacer(1, 8 * mm), table])


def _story(text: LangText, ctx: Mapping[str, object], lang: str, st: _Styles,
           marks: Mapping[str, SignatureMark]) -> list[Flowable]:
    story: list[Flowable] = [_p(fill(text.title, ctx, lang), st.title)]
    section = 0
    for block in text.blocks:
        if not shown(ctx, block.when, block.unless):
            continue
        if isinstance(block, Heading):
            heading = fill(block.text, ctx, lang)
            if block.numbered:
                section += 1
                heading = section_number(section, lang) + heading
            story.append(_p(heading, st.heading))
        elif isinstance(block, ParagraphBlock):
            story.append(_p(fill(block.text, ctx, lang), st.body if block.indent else st.plain))
        elif isinstance(block, LinesBlock):
            items = ctx.get(block.source)
            if not isinstance(items, list | tuple):
                raise DocumentError(f"context value {block.source!r} must be a list of lines")
            for i, item in enumerate(items, 1):
                line = clean_text(format_value(item, lang))
                prefix = f"{i}. " if block.numbered else "· "
                story.append(_p(prefix + line, st.line))
        elif isinstance(block, FieldsBlock):
            filled = [(fill(label, ctx, lang), fill(value, ctx, lang)) for label, value in block.rows]
            rows = [[_p(label, st.cell), _p(value, st.cell)] for label, value in filled if value]
            table = Table(rows, colWidths=[40 * mm, A4[0] - 90 * mm])
            table.setStyle(TS([
                ("GRID", (0, 0), (-1, -1), 0.5, colors.HexColor("#888888")),
                ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                ("BACKGROUND", (0, 0), (0, -1), colors.HexColor("#F2F2F2")),
            ]))
            story += [table, Spacer(1, 4 * mm)]
        elif isinstance(block, ClosingBlock):
            story.append(Spacer(1, 6 * mm))
            story += [_p(line, st.closing) for line in (fill(raw, ctx, lang) for raw in block.lines) if line]
    if text.signatures:
        story.append(_signature_table(text, marks, st))
    return story


def _build(kind: str, context: Mapping[str, object], marks: Sequence[SignatureMark], *, lang: str,
           extra_dir: Path | str | None, font_path: str | None) -> bytes:
    tpl = load_template(kind, extra_dir=extra_dir)
    text = tpl.texts.get(lang)
    if text is None:
        raise DocumentError(f"template {kind!r} has no {lang!r} text")
    slots = {s.role for s in text.signatures}
    by_role: dict[str, SignatureMark] = {}
    for mark in marks:
        if mark.role not in slots:
            raise DocumentError(f"template {kind!r} has no signature slot for role {mark.role!r}")
        if mark.role in by_role:
            raise DocumentError(f"two signatures for role {mark.role!r}")
        by_role[mark.role] = mark
    font = cjk_font(font_path)
    st = _styles(font.name, lang)
    ctx = merged_context(tpl, context, lang)
    story = _story(text, ctx, lang, st, by_role)
    footer = fill(text.footer, ctx, lang) if text.footer else ""
    footer_tail = f"{tpl.kind} v{tpl.version}"

    def on_page(canv, doc) -> None:  # type: ignore[no-untyped-def]
        canv.saveState()
        canv.setFont(font.name, 8)
        canv.setFillColor(colors.HexColor("#777777"))
        # drawString does not parse markup, so footer text needs no escaping here.
        canv.drawString(25 * mm, 12 * mm, footer)
        canv.drawRightString(A4[0] - 25 * mm, 12 * mm, f"{footer_tail} · {doc.page}")
        canv.restoreState()

    buf = io.BytesIO()
    doc = SimpleDocTemplate(
        buf, pagesize=A4, leftMargin=25 * mm, rightMargin=25 * mm, topMargin=25 * mm, bottomMargin=22 * mm,
        title=fill(text.title, ctx, lang), author=str(ctx.get("company_name", "")), creator="offboard-bot",
        invariant=1, lang="zh-CN" if lang == "zh" else "en",
    )
    doc.build(story, onFirstPage=on_page, onLaterPages=on_page)
    return buf.getvalue()


def render_document(kind: str, context: Mapping[str, object], *, lang: str = "zh",
                    extra_dir: Path | str | None = None, font_path: str | None = None) -> bytes:
    """The unsigned PDF of document `kind` filled from `context`."""
    return _build(kind, context, [], lang=lang, extra_dir=extra_dir, font_path=font_path)


def render_signed(kind: str, context: Mapping[str, object], signatures: Sequence[SignatureMark], *,
                  lang: str = "zh", extra_dir: Path | str | None = None,
                  font_path: str | None = None) -> bytes:
    """The PDF with handwritten signature images in their slots (slots without a mark stay blank)."""
    if not signatures:
        raise DocumentError("render_signed needs at least one signature")
    return _build(kind, context, signatures, lang=lang, extra_dir=extra_dir, font_path=font_path)
