"""What counts as clean text: the one definition every edge checks free text against.

PostgreSQL refuses NUL in text and JSON (a 500 for whoever typed it), SQLite stores it and hands it
on to card HTML, and lone surrogates (valid in JSON's `\\ud800`, invalid UTF-8) fail on both. So
every text that comes in from outside (chat commands, card forms, the signing page, the directory
import) is checked here before anything reads the database with it or stores it, and refused
whole, never cleaned up silently: what was stored must be what the person sent.

Pure and free of I/O so that every layer may use it; the engine never calls it (the edges do).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# C0 controls except tab and newline (CR only as part of CRLF, which browsers send for a textarea),
# DEL and the C1 block, Unicode line/paragraph separators (they break single-line rendering in
# cards), and lone surrogates.
_BAD_MULTILINE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# Names, ids and other one-line values: no tab or newline either.
_BAD_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")

# Limits (characters). CharField values are also bounded by their column (see `Employee`).
REASON_MAX = 500  # /offboard and /cancel reasons, a rejection's reason
MESSAGE_MAX = 2000  # a whole chat message (a command and its arguments)
FORM_TEXT_MAX = 2000  # a card form's textarea value (and the router's bound on any form value)
FORM_LINE_MAX = 500  # a card form's one-line text (a result, a tracking number, a file reference)
FORM_SHORT_MAX = 64  # a card form's number or date value
# A form field's (limit, multiline) by its declared type (workflow.template.FieldType).
FIELD_RULES: dict[str, tuple[int, bool]] = {
    "textarea": (FORM_TEXT_MAX, True), "text": (FORM_LINE_MAX, False), "file": (FORM_LINE_MAX, False),
    "date": (FORM_SHORT_MAX, False), "number": (FORM_SHORT_MAX, False), "choice": (FORM_SHORT_MAX, False),
}
ID_MAX = 255  # platform ids, dedup keys, card ids
NAME_MAX = 64  # action names, field keys


class TextProblem(ValueError):
    """Why a text was refused, said so that the person who typed it can fix it."""

    def __init__(self, field: str, code: str, limit: int = 0) -> None:
        super().__init__(field, code, limit)
        self.field = field
        self.code = code  # not_text | control_char | too_long
        self.limit = limit

    @property
    def message_zh(self) -> str:
        if self.code == "too_long":
            return f"「{self.field}」过长（最多 {self.limit} 个字符），请缩短后重试。"
        if self.code == "control_char":
            return f"「{self.field}」含有不可见的控制字符（例如空字符），请删除后重试。"
        return f"「{self.field}」应为文字。"

    @property
    def message_en(self) -> str:
        if self.code == "too_long":
            return f"\"{self.field}\" is too long (at most {self.limit} characters); please shorten it."
        if self.code == "control_char":
            return f"\"{self.field}\" contains invisible control characters (such as NUL); please remove them."
        return f"\"{self.field}\" must be text."

    def __str__(self) -> str:
        return self.message_en


def problem(value: object, *, max_len: int, multiline: bool = True) -> str | None:
    """The code of what is wrong with `value` as text (None when it is clean)."""
    if not isinstance(value, str):
        return "not_text"
    # isprintable() is false for every character refused here (and for some allowed ones: newline,
    # tab, format characters such as an emoji's joiner), so clean text, the usual case, costs one
    # C-level pass; only the rest is looked at closely. This runs on every inbound event.
    if not value.isprintable() and (
        (_BAD_MULTILINE if multiline else _BAD_LINE).search(value)
        or (multiline and "\r" in value and "\r" in value.replace("\r\n", ""))
    ):
        return "control_char"
    if len(value) > max_len:
        return "too_long"
    return None


def check(value: object, field: str, *, max_len: int, multiline: bool = True) -> str:
    """`value` if it is clean text of at most `max_len` characters, else TextProblem naming `field`."""
    code = problem(value, max_len=max_len, multiline=multiline)
    if code is not None:
        raise TextProblem(field, code, max_len)
    return value  # type: ignore[return-value]


def check_form(form: Mapping[str, Any], declared: Mapping[str, tuple[str, int, bool]]) -> dict[str, str]:
    """A submitted form against its declared inputs, {key: (label, limit, multiline)}: only declared
    keys, each a clean string within its limit. Anything undeclared is refused rather than dropped,
    so the sender learns that it was not kept, and nothing undeclared is ever stored."""
    extra = sorted((k for k in form if k not in declared), key=str)
    if extra:
        shown = str(extra[0]) if problem(extra[0], max_len=NAME_MAX, multiline=False) is None else "?"
        raise UndeclaredField(shown, len(extra))
    out = {}
    for key, value in form.items():
        label, limit, multiline = declared[key]
        out[key] = check(value, label, max_len=limit, multiline=multiline)
    return out


class UndeclaredField(ValueError):
    """A form carried a field its step does not ask for."""

    code = "undeclared_field"

    def __init__(self, field: str, count: int) -> None:
        super().__init__(field, count)
        self.field = field
        self.count = count

    @property
    def message_zh(self) -> str:
        return f"表单含有此步骤未要求的字段「{self.field}」（共 {self.count} 个），未保存任何内容。"

    @property
    def message_en(self) -> str:
        return (f"The form carries a field this step does not ask for (\"{self.field}\", {self.count} in all); "
                "nothing was saved.")

    def __str__(self) -> str:
        return self.message_en
