"""The platform-neutral card: what a person sees and can tap, nothing about how a platform draws it.

Every string here is plain text written by us or taken from the directory (names may contain
anything, including markup); renderers escape. `body` is a small markdown subset (paragraphs,
`**bold**`, `- ` list items) that every platform can show.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Tone = Literal["info", "action", "done", "warning", "closed"]
Style = Literal["primary", "danger", "default"]


@dataclass(frozen=True)
class FormField:
    """An input collected with a button press (e.g. the reason for a rejection)."""

    name: str
    label: str
    required: bool = True
    multiline: bool = True
    options: tuple[tuple[str, str], ...] = ()  # a choice: (value, label); the value is what is sent


@dataclass(frozen=True)
class Button:
    label: str
    action: str | None = None  # a card action handled by the router...
    url: str | None = None  # ...or a link opened in the platform's browser
    enabled: bool = True
    reason: str | None = None  # why it is disabled (flow lock), shown next to it
    style: Style = "default"
    form: tuple[FormField, ...] = ()

    def __post_init__(self) -> None:
        if (self.action is None) == (self.url is None):
            raise ValueError("a button is either an action or a link")
        if not self.enabled and not self.reason:
            raise ValueError("a disabled button must say why")


@dataclass(frozen=True)
class Card:
    title: str
    summary: str = ""
    fields: tuple[tuple[str, str], ...] = ()
    body: str = ""
    buttons: tuple[Button, ...] = ()
    status: str = ""  # "已由 王五 于 10:32 批准", "等待你操作", ...
    tone: Tone = "info"
    progress: str = ""  # "第 2 步 / 共 7 步"
    case_id: str = ""
    step_id: str | None = None
    purpose: str = ""
    language: str = "zh"
    extra: dict[str, Any] = field(default_factory=dict)
    # The holder's own link to the step's details page (opening it marks the step viewed by them).
    details_url: str = ""

    def button(self, action: str) -> Button | None:
        return next((b for b in self.buttons if b.action == action), None)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["fields"] = [{"label": k, "value": v} for k, v in self.fields]
        data["buttons"] = [
            {**asdict(b), "form": [asdict(f) for f in b.form]} for b in self.buttons
        ]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Card:
        buttons = tuple(
            Button(**{**b, "form": tuple(FormField(**{**f, "options": tuple(tuple(o) for o in f.get("options", ()))})
                                         for f in b.get("form", ()))}) for b in data["buttons"]
        )
        fields = tuple((f["label"], f["value"]) for f in data["fields"])
        return cls(**{**data, "buttons": buttons, "fields": fields})
