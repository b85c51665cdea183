"""Phone-sized web pages for one step: its web form (the inputs a platform's card cannot hold) and its
details page. Pure: a card and what to show in, HTML out; every piece of text is escaped here.

The pages carry no script and no inline style (the signing pages' Content-Security-Policy applies:
`style-src 'self'`, `form-action 'self'`); the form is a plain HTML form POSTed to the page's own
address, so it works in DingTalk's and WeCom's in-app browsers without anything else loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

from cards.html import markdown
from cards.model import Button, Card, FormField

STYLESHEET = "/sign-assets/stepform.css"


def t(lang: str, zh: str, en: str) -> str:
    return en if lang == "en" else zh


def _head(title: str, lang: str) -> str:
    return ('<!DOCTYPE html><html lang="' + ("en" if lang == "en" else "zh-CN") + '"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title>"
            f'<link rel="stylesheet" href="{STYLESHEET}"></head><body>')


def _summary(card: Card) -> str:
    parts = [f'<header class="bar"><h1>{escape(card.title)}</h1>']
    if card.progress:
        parts.append(f'<p class="progress">{escape(card.progress)}</p>')
    parts.append("</header>")
    if card.fields:
        parts.append('<dl class="fields">' + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>"
                                                    for k, v in card.fields) + "</dl>")
    return "".join(parts)


def _input(f: FormField, value: str, lang: str) -> str:
    name = escape(f.name, quote=True)
    star = '<span class="req">*</span>' if f.required else ""
    label = f'<label for="f-{name}">{escape(f.label)}{star}</label>'
    required = " required" if f.required else ""
    if f.options:
        opts = f'<option value="">{t(lang, "请选择", "Choose")}</option>' + "".join(
            f'<option value="{escape(v, quote=True)}"{" selected" if v == value else ""}>{escape(lab)}</option>'
            for v, lab in f.options)
        return f'{label}<select id="f-{name}" name="{name}"{required}>{opts}</select>'
    if f.multiline:
        return f'{label}<textarea id="f-{name}" name="{name}" rows="4"{required}>{escape(value)}</textarea>'
    return f'{label}<input id="f-{name}" name="{name}" value="{escape(value, quote=True)}"{required}>'


def form_page(card: Card, button: Button, *, action_url: str, csrf: str, lang: str,
              values: Mapping[str, str] | None = None, error: str = "") -> str:
    """The form for one button of a card: the card's facts, the button's inputs, one submit button."""
    values = values or {}
    inputs = "".join(f'<div class="field">{_input(f, values.get(f.name, ""), lang)}</div>' for f in button.form)
    err = f'<p class="status error" id="error" role="alert">{escape(error)}</p>' if error else ""
    style = "danger" if button.style == "danger" else "primary"
    return (_head(f"{button.label} · {card.title}", lang) + _summary(card) + "<main>"
            + err
            + f'<form method="post" action="{escape(action_url, quote=True)}" class="stepform">'
            f'<input type="hidden" name="csrf" value="{escape(csrf, quote=True)}">'
            f'<input type="hidden" name="lang" value="{escape(lang, quote=True)}">'
            + inputs
            + f'<button type="submit" id="submit" class="{style}">{escape(button.label)}</button></form>'
            f'<p class="hint">{t(lang, "提交后，消息卡片会随之更新。", "Once submitted, your card is updated.")}'
            "</p></main></body></html>")


def details_page(card: Card, lang: str) -> str:
    """A step as its holder's card shows it, with its links (signing, web forms) as buttons; buttons that
    act inside the card are named so the holder knows where to press them."""
    links = [b for b in card.buttons if b.url and b.enabled]
    in_card = [b for b in card.buttons if b.action and b.enabled]
    body = [_summary(card), "<main>"]
    if card.body:
        body.append(f'<section class="body">{markdown(card.body)}</section>')
    if card.status:
        body.append(f'<p class="status">{escape(card.status)}</p>')
    if links:
        body.append('<nav class="links">' + "".join(
            f'<a class="btn {escape(b.style)}" href="{escape(b.url or "", quote=True)}">{escape(b.label)}</a>'
            for b in links) + "</nav>")
    if in_card:
        names = t(lang, "、", ", ").join(f"「{b.label}」" if lang != "en" else f'"{b.label}"' for b in in_card)
        where = t(lang, f"请回到消息卡片上点击{names}。", f"Press {names} on the card in your chat.")
        body.append(f'<p class="hint">{escape(where)}</p>')
    body.append("</main></body></html>")
    return _head(card.title, lang) + "".join(body)


def notice_page(title: str, message: str, lang: str, *, ok: bool = False) -> str:
    cls = "ok" if ok else "error"
    return (_head(title, lang) + f'<main class="notice"><h1>{escape(title)}</h1>'
            f'<p id="message" class="status {cls}">{escape(message)}</p></main></body></html>')
