"""Append the pages of one PDF to another with pyHanko's writer (no extra dependency).

Used before sealing only: the result is a fresh single-revision file, so it must never be applied to a
sealed PDF (that would drop the signature).
"""

from __future__ import annotations

from io import BytesIO

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.misc import PdfReadError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.rw_common import PdfHandler
from pyhanko.pdf_utils.writer import PageObject, copy_into_new_writer


class MergeError(ValueError):
    pass


def _page_count(handler: PdfHandler) -> int:
    return int(handler.root["/Pages"]["/Count"])


def append_pages(pdf: bytes, page_pdf: bytes) -> bytes:
    """`pdf` followed by every page of `page_pdf`."""
    try:
        base = PdfFileReader(BytesIO(pdf), strict=False)
        extra = PdfFileReader(BytesIO(page_pdf), strict=False)
        if base.embedded_signatures:
            raise MergeError("refusing to append to a signed PDF; it would break the seal")
        writer = copy_into_new_writer(base)
        for ix in range(_page_count(extra)):
            page_ref, resources = extra.find_page_for_modification(ix)
            page = page_ref.get_object()
            media_box = [float(v) for v in _inherited(page, "/MediaBox")]
            # /Contents is an indirect stream or an array of them; importing keeps that shape.
            contents = writer.import_object(page.raw_get("/Contents"))
            new_page = PageObject(
                contents=list(contents) if isinstance(contents, generic.ArrayObject) else contents,
                media_box=media_box,
                resources=writer.import_object(resources),
            )
            writer.insert_page(new_page)
        out = BytesIO()
        writer.write(out)
        return out.getvalue()
    except (PdfReadError, KeyError) as exc:
        raise MergeError(f"cannot merge PDFs: {exc}") from exc


def _inherited(page: generic.DictionaryObject, key: str) -> generic.ArrayObject:
    node: generic.DictionaryObject | None = page
    while node is not None:
        if key in node:
            return node[key]
        parent = node.get("/Parent")
        node = parent.get_object() if parent is not None else None
    raise KeyError(f"page has no {key}")

