"""A platform-neutral `cards.model.Card` as DingTalk card template variables, and back.

DingTalk fills a template built in its card platform from `cardParamMap`, a flat map of strings
(research brief §2.4: stringify everything, JSON-encode what a loop component iterates). The
template shipped beside this file (`card_template.json`) binds exactly these names:

  title, summary, progress, status, tone, tone_color, body (markdown), lock_reason,
  fields   JSON [{"label", "value"}]                          → a loop of label/value rows
  buttons  JSON [{"label", "kind", "action", "url", "open_url", "enabled", "disabled", "reason",
                  "style", "form", "form_url", "params"}]      → a loop of buttons
  has_fields / has_buttons "true" | "false"                   → show/hide the two loops
  case_id, step_id, purpose, language, extra                  → not shown; kept so a card read back
                                                                 (or a callback) knows what it was

A button's `kind` tells the template what a tap does: "action" calls back over Stream with
`params` (`{"action": ...}`, form inputs added by the template's input components); "link" and
"form" open `open_url` (a link, or the short web form a step's text input needs when the caller
supplies `form_url`). A disabled button keeps its `reason` so the template shows why it is locked.

`to_vars` and `from_vars` round-trip every card the builders make; `changed` gives the keys an
in-place update must send (an update that changes nothing is not sent: it costs budget).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from cards.model import Button, Card, FormField

TONE_COLORS = {"info": "#1677FF", "action": "#FF8A00", "done": "#00B365", "warning": "#F5222D",
               "closed": "#8C8C8C"}
FormUrl = Callable[[Button], str | None]


def dingtalk_link(url: str, *, side_panel: bool = True) -> str:
    """Open `url` inside DingTalk: the PC client's side panel (pc_slide) or the in-app browser on phones."""
    return f"dingtalk://dingtalkclient/page/link?url={quote(url, safe='')}&pc_slide={'true' if side_panel else 'false'}"


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _button(b: Button, form_url: FormUrl | None) -> dict[str, Any]:
    link = form_url(b) if (form_url is not None and b.form and b.action) else None
    kind = "link" if b.url else ("form" if link else "action")
    target = b.url or link or ""
    return {
        "label": b.label, "kind": kind, "action": b.action or "", "url": b.url or "",
        "open_url": dingtalk_link(target) if target else "", "enabled": b.enabled, "disabled": not b.enabled,
        "reason": b.reason or "", "style": b.style,
        "form": [{"name": f.name, "label": f.label, "required": f.required, "multiline": f.multiline,
                  "options": [list(o) for o in f.options]} for f in b.form],
        "form_url": link or "", "params": {"action": b.action} if b.action else {},
    }


def to_vars(card: Card, *, form_url: FormUrl | None = None) -> dict[str, str]:
    """`form_url(button)`: the signed web-form link for an action button that asks for text, or
    None to leave it an in-card action (for a template with input components)."""
    buttons = [_button(b, form_url) for b in card.buttons]
    locked = next((b.reason for b in card.buttons if not b.enabled and b.reason), "")
    return {
        "title": card.title, "summary": card.summary, "progress": card.progress, "status": card.status,
        "tone": card.tone, "tone_color": TONE_COLORS.get(card.tone, TONE_COLORS["info"]), "body": card.body,
        "lock_reason": locked or "",
        "fields": _dumps([{"label": k, "value": v} for k, v in card.fields]),
        "buttons": _dumps(buttons),
        "has_fields": "true" if card.fields else "false", "has_buttons": "true" if buttons else "false",
        "case_id": card.case_id, "step_id": card.step_id or "", "purpose": card.purpose,
        "language": card.language, "extra": _dumps(card.extra) if card.extra else "",
    }


def from_vars(v: Mapping[str, str]) -> Card:
    """The card a variable map shows (what a test or a resync reads back)."""
    buttons = tuple(
        Button(label=b["label"], action=b["action"] or None, url=b["url"] or None, enabled=bool(b["enabled"]),
               reason=b["reason"] or None, style=b["style"],
               form=tuple(FormField(f["name"], f["label"], required=bool(f["required"]),
                                    multiline=bool(f["multiline"]),
                                    options=tuple(tuple(o) for o in f.get("options", ()))) for f in b["form"]))
        for b in json.loads(v.get("buttons") or "[]")
    )
    return Card(
        title=v["title"], summary=v.get("summary", ""),
        fields=tuple((f["label"], f["value"]) for f in json.loads(v.get("fields") or "[]")),
        body=v.get("body", ""), buttons=buttons, status=v.get("status", ""), tone=v.get("tone", "info"),  # type: ignore[arg-type]
        progress=v.get("progress", ""), case_id=v.get("case_id", ""), step_id=v.get("step_id") or None,
        purpose=v.get("purpose", ""), language=v.get("language", "zh"),
        extra=json.loads(v["extra"]) if v.get("extra") else {},
    )


def changed(old: Mapping[str, str], new: Mapping[str, str]) -> dict[str, str]:
    """The variables an update-by-key must send; empty means skip the call."""
    return {k: val for k, val in new.items() if old.get(k) != val}


def template_variables(template: Mapping[str, Any]) -> set[str]:
    """The variable names a template export declares (to check it against `to_vars`)."""
    return {str(v["name"]) for v in template.get("variables", ())}
