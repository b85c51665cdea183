"""The platform-neutral card as a WeCom `template_card`.

WeCom cards carry buttons and choices but no free text, no disabled buttons and only six
key/value rows, so:
- a card with an enabled action button, or a step's card with any button (links to the step's
  web form or signing page included), is a `button_interaction` card, which can be updated in
  place; any other is a `text_notice` (which WeCom requires to have a `card_action` link);
- a button that asks for text (a reason, a reference, a date) becomes a link to the short web
  form for that step (`form_url`), signed per holder like the signing link;
- a locked button is not drawn; its label and reason go into the text ("🔒 …：…"), as the
  emulator shows them next to the button;
- rows past the sixth go into the text as well.
The button `key` is the action only: the click also carries the card's `task_id`, which names the
delivery and so the case, step and holder.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from typing import Any

from cards.model import Button, Card

MAX_BUTTONS = 6
MAX_JUMPS = 3
MAX_ROWS = 6
MAX_TITLE = 36
MAX_DESC = 44
MAX_TEXT = 300
MAX_TASK_ID = 128
_TASK_ALPHABET = re.compile(r"[^A-Za-z0-9_@-]")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_STYLE = {"primary": 1, "danger": 2, "default": 3}  # WeCom styles 1–4; their colours are the client's choice
_SOURCE = {"zh": "离职办理", "en": "Offboarding"}

FormUrl = Callable[[Button], str]


def task_id(card_id: str, nonce: str | None = None) -> str:
    """A WeCom task id for one send of `card_id`: only [A-Za-z0-9_@-], at most 128 bytes, unique
    per send (WeCom refuses a reused task id) and still readable. The hash keeps two card ids that
    differ only in replaced characters apart."""
    digest = hashlib.sha256(card_id.encode()).hexdigest()[:10]
    nonce = nonce or secrets.token_hex(4)
    readable = _TASK_ALPHABET.sub("-", card_id)
    room = MAX_TASK_ID - len(digest) - len(nonce) - 2
    return f"{readable[:room]}-{digest}-{nonce}"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plain(markdown: str) -> str:
    """The card body's markdown subset as plain lines (WeCom card text has no markup)."""
    lines = []
    for raw in markdown.splitlines():
        line = _BOLD.sub(r"\1", raw.rstrip())
        stripped = line.lstrip()
        if stripped.startswith("- "):
            indent = "  " if line.startswith("  ") else ""
            line = f"{indent}• {stripped[2:]}"
        if line.strip():
            lines.append(line)
    return "\n".join(lines)


def render(card: Card, *, task: str, link: str | None, form_url: FormUrl) -> dict[str, Any]:
    """`link` is what a tap on the card itself opens (required by WeCom for a notice, optional
    otherwise); `form_url(button)` the web form for a button whose action asks for text."""
    # The text is clipped at the end, so what must not be lost comes first: the status, then why a
    # button is locked, then the rest.
    text: list[str] = [card.status] if card.status else []
    text.extend(f"🔒 {b.label}：{b.reason}" for b in card.buttons if not b.enabled)
    if card.progress:
        text.append(card.progress)
    rows = [{"keyname": k, "value": _clip(v, 60)} for k, v in card.fields[:MAX_ROWS]]
    text.extend(f"{k}：{v}" for k, v in card.fields[MAX_ROWS:])
    if card.body:
        text.append(plain(card.body))
    buttons: list[dict[str, Any]] = []
    for b in card.buttons:
        if not b.enabled:
            continue
        if b.url:
            buttons.append({"type": 1, "text": _clip(b.label, 10), "style": _STYLE[b.style], "url": b.url})
        elif b.form:
            buttons.append({"type": 1, "text": _clip(b.label, 10), "style": _STYLE[b.style], "url": form_url(b)})
        else:
            buttons.append({"text": _clip(b.label, 10), "style": _STYLE[b.style], "key": b.action})
    if len(buttons) > MAX_BUTTONS:
        # WeCom draws six; the rest are named near the top of the text (their details page has them all).
        extra, buttons = buttons[MAX_BUTTONS:], buttons[:MAX_BUTTONS]
        more = "、".join(b["text"] for b in extra)
        text.insert(1 if card.status else 0, f"More on the card's page: {more}" if card.language == "en"
                    else f"更多操作请打开卡片：{more}")
    out: dict[str, Any] = {
        "source": {"desc": _SOURCE.get(card.language, _SOURCE["zh"])},
        "main_title": {"title": _clip(card.title, MAX_TITLE), "desc": _clip(card.summary, MAX_DESC)},
        "task_id": task,
    }
    if link:
        out["card_action"] = {"type": 1, "url": link}
    if text:
        out["sub_title_text"] = _clip("\n".join(text), MAX_TEXT)
    if rows:
        out["horizontal_content_list"] = rows
    # A step's card whose holder can do something asks something, even when its buttons are links
    # (a web form, the signing page): it is a button card, which WeCom lets us update in place.
    # Information (no step, or nothing to press) is a notice.
    if any("key" in b for b in buttons) or (buttons and card.step_id is not None) or len(buttons) > MAX_JUMPS:
        out["card_type"] = "button_interaction"
        out["button_list"] = buttons
    else:
        out["card_type"] = "text_notice"  # WeCom requires its card_action: the caller adds one if no link
        # A notice has no buttons: its links (three at most, or it would be a button card) are its jump list.
        jumps = [{"type": 1, "title": _clip(b["text"], 13), "url": b["url"]} for b in buttons]
        if jumps:
            out["jump_list"] = jumps
    return out
