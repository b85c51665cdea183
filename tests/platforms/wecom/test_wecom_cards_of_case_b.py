"""Every card Case B puts on anyone's phone, as the emulator shows it, fits a WeCom template card."""

from __future__ import annotations

import re

from bot.platforms.wecom.cardjson import render, task_id
from cards.model import Button

START = "/离职 张三 试用期 2025-07-31 绩效未达标 交接人:周八"


def _form_url(b: Button) -> str:
    return f"https://bot.example/form/{b.action}"


def _check(card, card_id: str) -> dict:  # type: ignore[no-untyped-def]
    out = render(card, task=task_id(card_id), link="https://bot.example/case", form_url=_form_url)
    assert re.fullmatch(r"[A-Za-z0-9_@-]{1,128}", out["task_id"])
    assert len(out["main_title"]["title"]) <= 36 and len(out.get("horizontal_content_list", [])) <= 6
    if out["card_type"] == "button_interaction":
        assert 1 <= len(out["button_list"]) <= 6
        assert all(len(b.get("key", "").encode()) <= 1024 for b in out["button_list"])
    else:
        assert out["card_type"] == "text_notice" and out["card_action"]["url"]
    # A locked button is never silently lost: its label and reason are in the text.
    for b in card.buttons:
        if not b.enabled:
            assert f"🔒 {b.label}：{b.reason}"[:40] in out["sub_title_text"]
    return out


async def test_every_case_b_card_renders(chat) -> None:  # type: ignore[no-untyped-def]
    await chat.send("E001", START)
    await chat.deliver()
    app = await chat.card("E003", step="application")
    await chat.click("E003", app.card_id, "submit", {"last_working_day": "2025-07-31", "reason": "试用期考核未通过"})
    await chat.deliver()
    review = await chat.card("E002", step="performance_review")
    await chat.click("E002", review.card_id, "approve", {"result": "完成率 60%，要求 80%"})
    await chat.deliver()
    check = await chat.card("E001", step="hr_check")
    await chat.click("E001", check.card_id, "complete", {"unpaid_months": "2"})
    await chat.deliver()
    seen: dict[str, int] = {}
    locked = 0
    for user in ("E001", "E002", "E003", "E004", "E005", "E006"):
        for msg in await chat.cards(user):
            if msg.card is None:
                continue
            out = _check(msg.card, msg.card_id)
            seen[out["card_type"]] = seen.get(out["card_type"], 0) + 1
            locked += sum(1 for b in msg.card.buttons if not b.enabled)
    assert seen.get("button_interaction", 0) >= 1 and seen.get("text_notice", 0) >= 1 and sum(seen.values()) >= 5
    assert locked >= 1  # the HR summary's locked close button was among them
