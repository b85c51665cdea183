"""The two-party handover in chat: case-specific items typed with /offboard (交接事项: / items:), HR's
form on the handover card, and each signer's card offering the signing link only when it is their turn."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from storage.models import AuditEntry, Case, CaseStep
from tests.chat.conftest import Chat
from workflow.events import DocumentSigned
from workflow.model import Role


async def _items_of(case_id: str) -> str:
    return (await CaseStep.get(case_id=case_id, step_id="handover")).data.get("items", "")


@pytest.mark.parametrize(("text", "items", "reason"), [
    ("/离职 张三 试用期 2025-07-31 绩效未达标 交接人:周八 交接事项:客户A合同；项目B 代码仓库",
     "客户A合同\n项目B 代码仓库", "绩效未达标"),
    # The colleague may be named after the items; each item once.
    ("/离职 张三 试用期 2025-07-31 交接事项:客户A合同;客户A合同；门禁卡 交接人:周八", "客户A合同\n门禁卡", ""),
    ("/offboard E003 probation 2025-07-31 missed targets handover:E006 items: client A contracts; project B repo",
     "client A contracts\nproject B repo", "missed targets"),
])
async def test_offboard_takes_case_specific_handover_items(chat: Chat, text: str, items: str, reason: str) -> None:
    reply = await chat.send("E001", text)
    assert reply.ok, reply.text
    case = await Case.get(id=reply.data["case_id"])
    assert case.handover_id == "E006" and case.reason == reason
    assert await _items_of(case.id) == items
    assert str(len(items.split("\n"))) in reply.text and items.split("\n")[0] in reply.text
    started = await AuditEntry.get(case_id=case.id, kind="case_started")
    assert started.data["prepared"] == {"handover": {"items": items}}


@pytest.mark.parametrize(("text", "needle"), [
    ("/离职 张三 试用期 2025-07-31 交接人:周八 交接事项:", "没有可添加的交接事项"),
    ("/离职 张三 试用期 2025-07-31 交接人:周八 交接事项:；；", "没有可添加的交接事项"),
    ("/离职 张三 试用期 2025-07-31 交接人:周八 交接事项:" + "长" * 101, "过长"),
    ("/离职 张三 试用期 2025-07-31 交接人:周八 交接事项:" + "；".join(f"事项{i}" for i in range(31)), "最多补充 30 项"),
])
async def test_bad_items_are_refused_and_nothing_starts(chat: Chat, text: str, needle: str) -> None:
    reply = await chat.send("E001", text)
    assert not reply.ok and needle in reply.text, reply.text
    assert not await Case.exists()


async def test_no_handover_colleague_is_warned_about(chat: Chat) -> None:
    reply = await chat.send("E001", "/离职 张三 试用期 2025-07-31")
    assert reply.ok and "no_handover" in reply.data["warnings"] and "未指定交接人" in reply.text


async def test_each_signer_gets_the_link_on_their_turn_and_hr_adds_items(chat: Chat) -> None:
    reply = await chat.send("E001", "/离职 张三 试用期 2025-07-31 绩效未达标 交接人:周八 交接事项:客户A合同")
    case_id = reply.data["case_id"]
    await chat.deliver()
    r = await chat.click("E003", (await chat.card("E003", step="application")).card_id, "submit",
                         {"last_working_day": "2025-07-31", "reason": "个人原因"})
    assert r.ok, r.text
    await chat.deliver()
    r = await chat.click("E002", (await chat.card("E002", step="performance_review")).card_id, "approve",
                         {"result": "完成率 60%，要求 80%"})
    assert r.ok, r.text
    await chat.deliver()

    employee = (await chat.card("E003", step="handover")).card
    hr = (await chat.card("E001", step="handover")).card
    assert employee is not None and hr is not None
    assert any(b.url for b in employee.buttons)  # the employee signs first
    # The colleague signs second: no card yet (one they could not act on), theirs comes at their turn.
    assert not [m for m in await chat.cards("E006") if m.card and m.card.step_id == "handover"]
    for card in (employee, hr):
        assert "- 工作文件与资料" in card.body and "- 客户A合同" in card.body
    add = hr.button("prepare")
    assert add is not None and add.enabled and [f.name for f in add.form] == ["items"]

    # HR adds an item on the card; every holder's card lists it.
    r = await chat.click("E001", (await chat.card("E001", step="handover")).card_id, "prepare",
                         {"items": "笔记本电脑\n客户A合同"})
    assert r.ok, r.text
    assert await _items_of(case_id) == "客户A合同\n笔记本电脑"
    await chat.deliver()
    assert "- 笔记本电脑" in (await chat.card("E003", step="handover")).card.body  # type: ignore[union-attr]
    # Only HR has that button; a form with anything but the items is refused.
    r = await chat.click("E001", (await chat.card("E001", step="handover")).card_id, "prepare", {"note": "x"})
    assert not r.ok
    r = await chat.click("E003", (await chat.card("E003", step="handover")).card_id, "prepare", {"items": "x"})
    assert not r.ok and r.code == "no_such_button"

    # The employee signs (the page does this through the same service): the receiver's turn.
    svc = chat.inbound.service
    out = await svc.apply(case_id, lambda c, s: DocumentSigned("handover", "handover_confirmation", "E003",
                                                               frozenset({Role.EMPLOYEE}), datetime.now(UTC)))
    assert out.ok, out.refusal
    await chat.deliver()
    receivers = [m.card for m in await chat.cards("E006") if m.card and m.card.step_id == "handover"]
    assert len(receivers) == 1  # their card, now that it is their turn
    for card in receivers:
        assert any(b.url for b in card.buttons) and card.status == "等待你签署《工作交接确认单》"
        assert "离职员工已签署《工作交接确认单》" in card.body
        assert "- 笔记本电脑" in card.body and "- 客户A合同" in card.body
    employee = (await chat.card("E003", step="handover")).card
    assert employee is not None and not any(b.url for b in employee.buttons)
    assert employee.status == "等待：工作交接人签署《工作交接确认单》"
    # HR's summary follows a signature too (not only taps and commands): the service queues its update.
    summary = (await chat.card("E001", purpose="summary")).card
    assert summary is not None and "等待：工作交接人签署《工作交接确认单》" in summary.body, summary.body
    add = (await chat.card("E001", step="handover")).card.button("prepare")  # type: ignore[union-attr]
    assert add is not None and not add.enabled and "已开始签署" in (add.reason or "")
