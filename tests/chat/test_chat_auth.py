"""Authorisation matrix (every command and action × employee / manager / HR / outsider) and dedup."""

from __future__ import annotations

import asyncio

import pytest

from storage.models import AuditEntry, Case, CaseStep, Employee, InboxEvent, OutboxMessage

START = "/离职 张三 试用期 2025-07-31 绩效未达标 交接人:周八"
PERSONAS = {"employee": "E003", "manager": "E002", "hr": "E001", "outsider": "E007", "stranger": "X999"}


async def _state() -> tuple:
    return (await Case.all().count(), await OutboxMessage.all().count(),
            await AuditEntry.filter(kind__not="refused").count(),
            tuple(await CaseStep.all().order_by("id").values_list("status", flat=True)))


@pytest.mark.parametrize("persona", sorted(PERSONAS))
@pytest.mark.parametrize("command", ["offboard", "status", "list", "remind", "cancel", "help"])
async def test_command_matrix(chat, persona: str, command: str) -> None:
    case_id = (await chat.send("E001", START)).data["case_id"]
    await Employee.create(employee_id="E200", name="钱二", manager_id="E002")
    texts = {"offboard": "/offboard E200 resignation 2025-08-31", "status": f"/status {case_id}",
             "list": "/list", "remind": f"/remind {case_id}", "cancel": f"/cancel {case_id} 测试",
             "help": "/help"}
    before = await _state()
    reply = await chat.send(PERSONAS[persona], texts[command])
    if persona == "stranger":
        assert reply.code == "unknown_sender"
    elif persona == "hr" or command == "help":
        assert reply.ok, reply.text
        if command == "help":
            assert ("/离职" in reply.text) == (persona == "hr")
        return
    elif command == "status" and persona == "employee":
        # The employee's /status is their own view of their own case.
        assert reply.ok and reply.data["case_id"] == case_id and "你的离职流程" in reply.text, reply.text
    elif command == "status":
        # Anyone else who is not HR sees nobody's case, and is not told whether it exists.
        assert reply.code == "forbidden" and "只能查看自己" in reply.text, reply.text
    else:
        assert reply.code == "forbidden" and "只有 HR" in reply.text
    assert await _state() == before


def _form(action: str) -> dict[str, str]:
    return {"submit": {"last_working_day": "2025-07-31", "reason": "个人原因"},
            "approve": {"result": "完成率 60%，要求 80%"}, "reject": {"reason": "数据有误"},
            "complete": {"unpaid_months": "2"}}.get(action, {})


async def _case_at(chat, step: str) -> None:
    """Drive Case B up to (not including) `step`, through the chat layer."""
    await chat.send("E001", START)
    await chat.deliver()
    order = [("application", "E003", "submit"), ("performance_review", "E002", "approve"),
             ("hr_check", "E001", "complete")]
    for sid, user, action in order:
        if sid == step:
            return
        r = await chat.click(user, chat.card(user, step=sid).card_id, action, _form(action))
        assert r.ok, r.text
        await chat.deliver()


@pytest.mark.parametrize(("step", "holder", "action"), [
    ("application", "E003", "submit"),
    ("performance_review", "E002", "approve"),
    ("performance_review", "E002", "reject"),
    ("hr_check", "E001", "complete"),
    (None, "E001", "close"),
    (None, "E001", "remind"),
])
@pytest.mark.parametrize("persona", sorted(PERSONAS))
async def test_action_matrix(chat, step: str | None, holder: str, action: str, persona: str) -> None:
    await _case_at(chat, step or "hr_check")
    card = chat.card(holder, step=step) if step else chat.card(holder, purpose="summary")
    before = await _state()
    reply = await chat.click(PERSONAS[persona], card.card_id, action, _form(action))
    if PERSONAS[persona] == holder and action != "close":
        assert reply.ok, reply.text
        assert await _state() != before
        return
    if persona == "stranger":
        assert reply.code == "unknown_sender"
    elif PERSONAS[persona] == holder:  # HR closing too early: the flow lock names what is missing
        assert reply.code == "incomplete" and "离职保证书" in reply.text
    else:
        assert reply.code == "not_your_card"
    assert await _state() == before


async def test_button_not_on_the_card_is_refused(chat) -> None:
    await _case_at(chat, "application")
    card = chat.card("E003", step="application")
    before = await _state()
    assert (await chat.click("E003", card.card_id, "approve")).code == "no_such_button"
    assert (await chat.click("E003", card.card_id, "explode")).code == "no_such_button"
    assert (await chat.click("E003", "no-such-card", "submit")).code == "unknown_card"
    assert await _state() == before


async def test_out_of_order_and_twice_change_nothing(chat) -> None:
    await _case_at(chat, "performance_review")
    card = chat.card("E003", step="application")
    before = await _state()
    again = await chat.click("E003", card.card_id, "submit", _form("submit"))
    assert not again.ok  # the card no longer offers the button once the step is done
    assert await _state() == before


@pytest.mark.parametrize("concurrent", [False, True])
async def test_redelivered_command_has_one_effect(chat, concurrent: bool) -> None:
    sends = [chat.send("E001", START, event_id="dup-1") for _ in range(3)]
    replies = await asyncio.gather(*sends) if concurrent else [await s for s in sends]
    assert await Case.all().count() == 1
    case_id = (await Case.first()).id
    assert all(r.ok and r.data.get("case_id") == case_id for r in replies), replies
    assert sum(r.duplicate for r in replies) == 2
    assert await InboxEvent.filter(dedup_key="emulator:dup-1").count() == 1


async def test_redelivered_tap_has_one_effect(chat) -> None:
    await _case_at(chat, "application")
    card = chat.card("E003", step="application")
    for _ in range(3):
        r = await chat.click("E003", card.card_id, "submit", _form("submit"), event_id="tap-1")
        assert r.ok
    assert await AuditEntry.filter(kind="step_done").count() == 1
    assert await OutboxMessage.filter(step_id="performance_review", kind="card").count() == 1


async def test_tap_answer_commits_with_its_effect(chat) -> None:
    """The inbox row is written in the tap's own transaction with the answer the tap gives, for an
    accepted tap and for one the engine refuses, so a redelivery right after the commit (or after a
    crash before any later write) gets that same answer."""
    await _case_at(chat, "performance_review")
    ok = await chat.click("E002", chat.card("E002", step="performance_review").card_id, "approve",
                          _form("approve"), event_id="tap-ok")
    assert ok.ok
    stored = (await InboxEvent.get(dedup_key="emulator:tap-ok")).result
    assert stored == ok.to_json()
    await chat.deliver()
    # A completion without its required fields is refused by the engine (nothing changes)...
    refused = await chat.click("E001", chat.card("E001", step="hr_check").card_id, "complete", {},
                               event_id="tap-refused")
    assert not refused.ok and refused.code == "missing_data", refused
    assert (await InboxEvent.get(dedup_key="emulator:tap-refused")).result == refused.to_json()
    again = await chat.click("E001", chat.card("E001", step="hr_check").card_id, "complete", {},
                             event_id="tap-refused")
    assert again.duplicate and again.code == refused.code
