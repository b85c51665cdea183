"""XML from the network, parsed without DTDs or entities, into the flat dicts WeCom's messages are.

defusedxml refuses DOCTYPE and ENTITY declarations before expat expands anything (XXE, billion
laughs). WeCom's messages are one level of elements with text, plus `SelectedItems` nested two
deep; the element names in `LISTS` always become lists, because with one child a dict-of-dicts
converter would otherwise return a dict for one item and a list for many.
"""

from __future__ import annotations

from typing import Any
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

LISTS = frozenset({"SelectedItem", "OptionId"})
MAX_DEPTH = 8


class XmlError(ValueError):
    """Not well-formed, or declares a DTD or entities."""


def _convert(el: Element, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise XmlError("XML nested too deep")
    children = list(el)
    if not children:
        return el.text or ""
    out: dict[str, Any] = {}
    for child in children:
        value = _convert(child, depth + 1)
        if child.tag in LISTS:
            out.setdefault(child.tag, []).append(value)
        elif child.tag in out:
            raise XmlError(f"element {child.tag!r} repeated")
        else:
            out[child.tag] = value
    return out


def parse(data: bytes | str) -> dict[str, Any]:
    """The children of the root `<xml>` element as a dict of strings (and nested dicts/lists)."""
    try:
        root = fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise XmlError(f"refused: {type(exc).__name__}") from None
    except ParseError as exc:
        raise XmlError(f"not well-formed XML: {exc}") from None
    if root.tag != "xml":
        raise XmlError(f"root element is {root.tag!r}, not 'xml'")
    value = _convert(root, 0)
    return value if isinstance(value, dict) else {}
