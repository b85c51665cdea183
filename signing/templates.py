"""Document templates as data: loading, validation and placeholder filling.

A template is a TOML file named `<kind>.toml` with one table per language. Built-in templates live in
`signing/doc_templates/`; a company overrides one by putting a file with the same name in its extra
directory (the whole file replaces the built-in one, so a reviewer sees one complete text).
"""

from __future__ import annotations

import hashlib
import re
import tomllib
import unicodedata
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from workflow.text import Text

BUILTIN_DIR = Path(__file__).parent / "doc_templates"
SHANGHAI = ZoneInfo("Asia/Shanghai")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class DocumentError(ValueError):
    """A template is missing or malformed, or the context lacks a value it needs."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Heading(_Strict):
    """`numbered` headings get 一、二、… (1. 2. …) in the order they are printed, so a section left out
    for this case never leaves a gap in the numbering."""

    type: Literal["heading"]
    text: str
    numbered: bool = False
    when: str | None = None
    unless: str | None = None


class ParagraphBlock(_Strict):
    type: Literal["paragraph"]
    text: str
    indent: bool = True  # first-line indent; off for salutations
    when: str | None = None
    unless: str | None = None


class LinesBlock(_Strict):
    """A list taken from the context (e.g. the computation basis), one line per item."""

    type: Literal["lines"]
    source: str
    numbered: bool = True
    when: str | None = None
    unless: str | None = None


class FieldsBlock(_Strict):
    """Label/value rows, rendered as a two-column table."""

    type: Literal["fields"]
    rows: list[tuple[str, str]]  # a row whose value fills to "" (an optional [[…]] value) is left out
    when: str | None = None
    unless: str | None = None


class ClosingBlock(_Strict):
    """Right-aligned lines at the end (issuer and date)."""

    type: Literal["closing"]
    lines: list[str]
    when: str | None = None
    unless: str | None = None


Block = Annotated[
    Heading | ParagraphBlock | LinesBlock | FieldsBlock | ClosingBlock, Field(discriminator="type")
]


class SignatureSlot(_Strict):
    role: str
    label: str


class LangText(_Strict):
    title: str
    blocks: list[Block]
    signatures: list[SignatureSlot] = []
    footer: str = ""


Variant = dict[str, str | list[str]]


class DocTemplate(_Strict):
    """`variants` holds the wording per case type (the context's `case_type`): each overrides
    `defaults` of the same name, so a text never branches in code on the type of case."""

    kind: str
    version: str
    defaults: dict[str, str | list[str]] = {}
    variants: dict[str, Variant] = {}
    texts: dict[str, LangText]
    sha256: str = ""  # of the TOML bytes, so evidence can name the exact template used
    source: str = ""


def load_template(kind: str, *, extra_dir: Path | str | None = None) -> DocTemplate:
    if not _KIND.match(kind):
        raise DocumentError(f"invalid document kind {kind!r}")
    path: Path | None = None
    if extra_dir is not None:
        cand = Path(extra_dir) / f"{kind}.toml"
        if cand.is_file():
            path = cand
    if path is None:
        path = BUILTIN_DIR / f"{kind}.toml"
    if not path.is_file():
        raise DocumentError(f"no template for document kind {kind!r}")
    raw = path.read_bytes()
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DocumentError(f"template {path}: {exc}") from exc
    meta = {k: data.pop(k) for k in ("kind", "version", "defaults", "variants") if k in data}
    try:
        tpl = DocTemplate(
            **meta, texts=data, sha256=hashlib.sha256(raw).hexdigest(), source=str(path)
        )
    except (ValidationError, TypeError) as exc:
        raise DocumentError(f"template {path}: {exc}") from exc
    if tpl.kind != kind:
        raise DocumentError(f"template {path} declares kind {tpl.kind!r}, expected {kind!r}")
    for case_type, variant in tpl.variants.items():
        extra = sorted(set(variant) - set(tpl.defaults))
        if extra:
            # Every case type must find a value: a variant may only override a default.
            raise DocumentError(f"template {path}: variant {case_type!r} sets {', '.join(extra)} "
                                "without a default")
    return tpl


def placeholders(tpl: DocTemplate) -> set[str]:
    """Every context name the template reads, in any language and any variant."""
    names: set[str] = set()

    def scan(text: str) -> None:
        names.update(_PLACEHOLDER.findall(text))

    for value in [*tpl.defaults.values(), *(v for var in tpl.variants.values() for v in var.values())]:
        for item in value if isinstance(value, list) else [value]:
            scan(item)
    for text in tpl.texts.values():
        scan(text.title)
        scan(text.footer)
        for block in text.blocks:
            names.update(k for k in (block.when, block.unless) if k)
            if isinstance(block, Heading | ParagraphBlock):
                scan(block.text)
            elif isinstance(block, LinesBlock):
                names.add(block.source)
            elif isinstance(block, FieldsBlock):
                for label, value in block.rows:
                    scan(label)
                    scan(value)
            elif isinstance(block, ClosingBlock):
                for line in block.lines:
                    scan(line)
    return names


def unfilled(tpl: DocTemplate, context_keys: set[str] | frozenset[str]) -> list[str]:
    """Names the template reads that neither its defaults nor a render context with `context_keys` give."""
    return sorted(placeholders(tpl) - set(tpl.defaults) - set(context_keys))


def builtin_kinds() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.toml"))


def clean_text(text: str) -> str:
    """Drop control characters (they break PDF text and layout); newlines become spaces."""
    out = []
    for ch in text:
        if ch in "\r\n\t":
            out.append(" ")
        elif unicodedata.category(ch) in ("Cc", "Cs"):
            continue
        else:
            out.append(ch)
    return "".join(out)


def format_value(value: object, lang: str) -> str:
    if isinstance(value, Text):  # bilingual wording from a flow template (e.g. a handover item)
        return value.get(lang)
    if isinstance(value, Decimal):
        # "f" avoids scientific notation (Decimal("1E+3") would otherwise print as 1E+3).
        return format(value, "f")
    if isinstance(value, float):
        raise DocumentError("floats are not accepted in documents; pass Decimal")
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise DocumentError("naive datetime in document context; pass an aware datetime")
        local = value.astimezone(SHANGHAI)
        if lang == "zh":
            return f"{local.year}年{local.month}月{local.day}日 {local:%H:%M}"
        return f"{local:%Y-%m-%d %H:%M} (Asia/Shanghai)"
    if isinstance(value, date):
        return f"{value.year}年{value.month}月{value.day}日" if lang == "zh" else value.isoformat()
    if isinstance(value, list | tuple):
        return "；".join(format_value(v, lang) for v in value) if lang == "zh" else "; ".join(
            format_value(v, lang) for v in value
        )
    return str(value)


def truthy(context: Mapping[str, object], key: str | None) -> bool:
    if key is None:
        return True
    value = context.get(key)
    if isinstance(value, str):
        return bool(value.strip())
    return bool(value)


_ZH_NUMERALS = "一二三四五六七八九十"


def section_number(n: int, lang: str) -> str:
    if lang == "zh" and 1 <= n <= 20:
        zh = _ZH_NUMERALS[n - 1] if n <= 10 else "十" + _ZH_NUMERALS[n - 11]
        return f"{zh}、"
    return f"{n}. "


def shown(context: Mapping[str, object], when: str | None, unless: str | None) -> bool:
    return truthy(context, when) and (unless is None or not truthy(context, unless))


_OPTIONAL = re.compile(r"\[\[(.*?)\]\]", re.S)


def fill(text: str, context: Mapping[str, object], lang: str) -> str:
    """Substitute `{name}` placeholders with plain (unescaped) text; unknown names are an error.

    `[[…]]` marks an optional part, printed only when every placeholder in it has a value: a
    document leaves out what is not known (「（身份证号码：…）」) instead of printing a stand-in."""

    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in context:
            raise DocumentError(f"missing value for placeholder {{{key}}}")
        return clean_text(format_value(context[key], lang))

    def optional(m: re.Match[str]) -> str:
        inner = m.group(1)
        for key in _PLACEHOLDER.findall(inner):
            if key not in context:
                raise DocumentError(f"missing value for placeholder {{{key}}}")
            if not truthy(context, key):
                return ""
        return _PLACEHOLDER.sub(sub, inner)

    return _PLACEHOLDER.sub(sub, _OPTIONAL.sub(optional, clean_text(text)))


def merged_context(tpl: DocTemplate, context: Mapping[str, object], lang: str = "zh") -> dict[str, object]:
    """Defaults, then the case type's variant (its texts filled from the context), then the context."""
    merged: dict[str, object] = dict(tpl.defaults)
    merged.update(context)
    wording: dict[str, str | list[str]] = dict(tpl.defaults)
    wording.update(tpl.variants.get(str(context.get("case_type", "")), {}))
    for key, value in wording.items():
        if key in context:
            continue  # a value the case supplies wins over the template's wording
        merged[key] = [fill(v, merged, lang) for v in value] if isinstance(value, list) else fill(value, merged, lang)
    return merged


def render_blocks(tpl: DocTemplate, context: Mapping[str, object], lang: str) -> list[tuple[str, str]]:
    """The document as (block type, text) pairs, title first, for a chat card: same blocks, conditions
    and numbering as the PDF, so the card and the document never say different things."""
    text = tpl.texts.get(lang) or next(iter(tpl.texts.values()))
    ctx = merged_context(tpl, context, lang)
    out = [("title", fill(text.title, ctx, lang))]
    section = 0
    for block in text.blocks:
        if not shown(ctx, block.when, block.unless):
            continue
        if isinstance(block, Heading):
            section += 1 if block.numbered else 0
            number = section_number(section, lang) if block.numbered else ""
            out.append(("heading", number + fill(block.text, ctx, lang)))
        elif isinstance(block, ParagraphBlock):
            out.append(("paragraph", fill(block.text, ctx, lang)))
        elif isinstance(block, LinesBlock):
            items = ctx.get(block.source)
            for i, item in enumerate(items if isinstance(items, list | tuple) else [], 1):
                out.append(("line", (f"{i}. " if block.numbered else "") + clean_text(format_value(item, lang))))
        elif isinstance(block, FieldsBlock):
            for label, value in block.rows:
                if filled := fill(value, ctx, lang):
                    out.append(("field", f"{fill(label, ctx, lang)}：{filled}"))
        elif isinstance(block, ClosingBlock):
            out += [("closing", line) for line in (fill(raw, ctx, lang) for raw in block.lines) if line]
    return out


def render_text(tpl: DocTemplate, context: Mapping[str, object], lang: str) -> list[str]:
    return [text for _, text in render_blocks(tpl, context, lang)]
