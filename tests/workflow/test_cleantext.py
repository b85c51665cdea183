"""The one definition of clean text, character by character."""

from __future__ import annotations

import pytest

from workflow import cleantext


@pytest.mark.parametrize(("value", "multiline", "expected"), [
    ("张三 E003 <b>&amp;", False, None),
    ("第一行\n第二行\t缩进", True, None),
    ("windows\r\nline", True, None),
    ("👩‍💻 emoji with a joiner", False, None),
    ("a\x00b", True, "control_char"),
    ("bell\x07", True, "control_char"),
    ("lone\rcr", True, "control_char"),
    ("cr\r\n\r", True, "control_char"),
    ("esc\x1b[0m", True, "control_char"),
    ("del\x7f", True, "control_char"),
    ("nel\x85", True, "control_char"),
    ("sep\u2028", True, "control_char"),
    ("surrogate\ud800", True, "control_char"),
    ("tab\tin a name", False, "control_char"),
    ("newline\nin a name", False, "control_char"),
    (b"bytes", True, "not_text"),
    (None, True, "not_text"),
    ("x" * 100, True, None),
    ("x" * 101, True, "too_long"),
])
def test_problem(value: object, multiline: bool, expected: str | None) -> None:
    assert cleantext.problem(value, max_len=100, multiline=multiline) == expected


def test_check_form_refuses_undeclared_and_names_the_field() -> None:
    declared = {"reason": ("理由", 5, True)}
    assert cleantext.check_form({"reason": "ok"}, declared) == {"reason": "ok"}
    with pytest.raises(cleantext.UndeclaredField) as undeclared:
        cleantext.check_form({"reason": "ok", "b": "1", "a": "2"}, declared)
    assert (undeclared.value.field, undeclared.value.count) == ("a", 2)
    with pytest.raises(cleantext.TextProblem) as long:
        cleantext.check_form({"reason": "toolong"}, declared)
    assert long.value.code == "too_long" and "理由" in long.value.message_zh and "5" in long.value.message_en
