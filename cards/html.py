"""Emulator renderer: a card as an HTML fragment. Every piece of text is escaped here.

The fragment carries `data-*` attributes that the emulator page's script reads to send clicks;
it has no inline script and no inline event handlers, so a name like `<script>` can only ever
be text.
"""

from __future__ import annotations

import re
from html import escape

from cards.model import Button, Card

_BOLD = re.compile(r"\*\*(.+?)\*\*")


def _inline(text: str) -> str:
    # Escape first, then turn the escaped **x** into <b>x</b>: markup can only come from us.
    return _BOLD.sub(r"<b>\1</b>", escape(text))


def markdown(text: str) -> str:
    out: list[str] = []
    in_list = False
    for raw in text.splitlines():
        line = raw.rstrip()
        stripped = line.lstrip()
        if stripped.startswith("- "):
            if not in_list:
                out.append("<ul>")
                in_list = True
            cls = ' class="sub"' if line.startswith("  ") else ""
            out.append(f"<li{cls}>{_inline(stripped[2:])}</li>")
            continue
        if in_list:
            out.append("</ul>")
            in_list = False
        if stripped:
            out.append(f"<p>{_inline(stripped)}</p>")
    if in_list:
        out.append("</ul>")
    return "".join(out)


def _select(name: str, options: tuple[tuple[str, str], ...]) -> str:
    opts = '<option value="">—</option>' + "".join(
        f'<option value="{escape(v, quote=True)}">{escape(label)}</option>' for v, label in options)
    return f'<select name="{escape(name, quote=True)}">{opts}</select>'


def _button(b: Button, card_id: str) -> str:
    label = escape(b.label)
    reason = f'<span class="why">{escape(b.reason)}</span>' if b.reason else ""
    if b.url:
        return (f'<a class="btn {escape(b.style)}" href="{escape(b.url, quote=True)}" target="_blank" '
                f'rel="noopener">{label}</a>')
    attrs = (f'data-card="{escape(card_id, quote=True)}" data-action="{escape(b.action or "", quote=True)}"'
             f' data-style="{escape(b.style, quote=True)}"')
    if b.form:
        fields = "".join(
            f'<label>{escape(f.label)}{"*" if f.required else ""}'
            + (_select(f.name, f.options) if f.options else
               f'<textarea name="{escape(f.name, quote=True)}"></textarea>' if f.multiline else
               f'<input name="{escape(f.name, quote=True)}">')
            + "</label>"
            for f in b.form
        )
        attrs += ' data-form="1"'
        disabled = "" if b.enabled else " disabled"
        return (f'<div class="formbtn"><div class="fields" hidden>{fields}</div>'
                f'<button class="btn {escape(b.style)}" {attrs}{disabled}>{label}</button>{reason}</div>')
    disabled = "" if b.enabled else " disabled"
    return (f'<span class="btnwrap"><button class="btn {escape(b.style)}" {attrs}{disabled}>{label}</button>'
            f"{reason}</span>")


def render(card: Card, card_id: str) -> str:
    fields = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in card.fields)
    parts = [
        f'<div class="card tone-{escape(card.tone)}" data-card-id="{escape(card_id, quote=True)}">',
        f'<div class="head"><span class="title">{escape(card.title)}</span>'
        + (f'<span class="progress">{escape(card.progress)}</span>' if card.progress else "") + "</div>",
    ]
    if card.summary:
        parts.append(f'<div class="summary">{escape(card.summary)}</div>')
    if fields:
        parts.append(f"<dl>{fields}</dl>")
    if card.body:
        parts.append(f'<div class="body">{markdown(card.body)}</div>')
    if card.status:
        parts.append(f'<div class="status">{escape(card.status)}</div>')
    if card.details_url:
        label = "Details" if card.language == "en" else "查看详情"
        parts.append(f'<div class="details"><a href="{escape(card.details_url, quote=True)}" target="_blank" '
                     f'rel="noopener">{label}</a></div>')
    if card.buttons:
        parts.append('<div class="buttons">' + "".join(_button(b, card_id) for b in card.buttons) + "</div>")
    parts.append("</div>")
    return "".join(parts)
