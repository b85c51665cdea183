"""HR commands: happy paths and bad input; a refusal changes nothing."""

from __future__ import annotations

import pytest

from storage.models import AuditEntry, Case, Employee, InboxEvent, OutboxMessage

START = "/离职 张三 试用期 2025-07-31 绩效未达标 交接人:周八"


async def _counts() -> tuple[int, int, int]:
    return await Case.all().count(), await OutboxMessage.all().count(), await AuditEntry.all().count()


async def test_offboard_starts_case_and_sends_cards(chat) -> None:
    reply = await chat.send("E001", START)
    assert reply.ok, reply.text
    case = await Case.get(id=reply.data["case_id"])
    assert case.template_id == "probation" and case.handover_id == "E006" and case.reason == "绩效未达标"
    assert str(case.last_day) == "2025-07-31"
    await chat.deliver()
    first = await chat.card("E003", step="application")
    assert first.card.progress == "第 1 步 / 共 8 步"
    assert "截止时间" in dict(first.card.fields)
    summary = await chat.card("E001", purpose="summary")
    assert "张三" in summary.card.summary


@pytest.mark.parametrize("text", [
    "/offboard E003 probation 2025-07-31",
    "/离职 @张三 试用期 2025/07/31 原因",
    "@离职助手 /离职 张三 试用期 2025年7月31日",
    "离职 e003 试用期 2025-07-31",
])
async def test_offboard_accepts_id_name_mention_and_aliases(chat, text: str) -> None:
    reply = await chat.send("E001", text)
    assert reply.ok, reply.text
    assert (await Case.get(id=reply.data["case_id"]).prefetch_related("employee")).employee.employee_id == "E003"


@pytest.mark.parametrize(("text", "code", "needle"), [
    ("/离职", "usage", "用法"),
    ("/离职 张三 试用期", "usage", "缺少参数"),
    ("/离职 张三 实习 2025-07-31", "usage", "未知的离职类型"),
    ("/离职 张三 试用期 2025-13-01", "usage", "不是有效日期"),
    ("/离职 张三 试用期 明天", "usage", "不是有效日期"),
    ("/离职 李四 试用期 2025-07-31", "not_found", "没有「李四」"),
    ("/离职 张三 试用期 2025-07-31 交接人:张三", "usage", "交接人不能是离职员工本人"),
    ("/离职 李娜 试用期 2025-07-31", "self", "不能为自己"),
    ("/frobnicate", "unknown_command", "不认识的命令"),
])
async def test_offboard_bad_input_is_refused_and_changes_nothing(chat, text: str, code: str, needle: str) -> None:
    before = await _counts()
    reply = await chat.send("E001", text)
    assert not reply.ok and reply.code == code, reply
    assert needle in reply.text
    assert await _counts() == before


async def test_ambiguous_name_is_refused_with_candidates(chat) -> None:
    for eid, dept in (("E101", "销售部"), ("E102", "研发部")):
        await Employee.create(employee_id=eid, name="张伟", department=dept)
    before = await _counts()
    reply = await chat.send("E001", "/离职 张伟 辞职 2025-07-31")
    assert reply.code == "ambiguous" and reply.data["candidates"] == ["E101", "E102"]
    assert "E101" in reply.text and "E102" in reply.text
    assert await _counts() == before
    assert (await chat.send("E001", "/离职 E102 辞职 2025-07-31")).ok


async def test_second_open_case_is_refused(chat) -> None:
    assert (await chat.send("E001", START)).ok
    before = await _counts()
    reply = await chat.send("E001", "/offboard E003 resignation 2025-08-31")
    assert reply.code == "already_open" and "张三" in reply.text
    assert await _counts() == before


async def test_status_list_remind_cancel_help(chat) -> None:
    case_id = (await chat.send("E001", START)).data["case_id"]
    status = await chat.send("E001", f"/状态 {case_id}")
    assert status.ok and case_id in status.text and "● 1." in status.text and "🔒 2." in status.text
    by_name = await chat.send("E001", "/status 张三")
    assert by_name.ok and by_name.data["case_id"] == case_id
    listing = await chat.send("E001", "/list")
    assert listing.ok and listing.data["cases"] == [case_id]
    await chat.deliver()
    reminded = await chat.send("E001", f"/催办 {case_id}")
    assert reminded.ok, reminded.text
    rows = await OutboxMessage.filter(case_id=case_id, kind="card").all()
    assert any((r.payload or {}).get("purpose") == "reminder" and r.recipient == "E003" for r in rows)
    cancelled = await chat.send("E001", f"/取消 {case_id} 员工撤回")
    assert cancelled.ok, cancelled.text
    case = await Case.get(id=case_id)
    assert case.status == "cancelled"
    assert await AuditEntry.filter(case_id=case_id, kind="case_cancelled").exists()  # record kept
    assert (await chat.send("E001", "/list")).data["cases"] == []
    help_ = await chat.send("E001", "/help")
    assert help_.ok and "/离职" in help_.text
    en = await chat.send("E001", "/help", lang="en")
    assert "Usage" not in en.text and "/offboard" in en.text


@pytest.mark.parametrize(("text", "code"), [
    ("/status 李四", "not_found"),
    ("/status OB-ZZZZZZ", "unknown_case"),
    ("/status a b", "usage"),
    ("/list everything", "usage"),
    ("/remind", "usage"),
    ("/remind 张三", "no_case"),
    ("/cancel OB-ZZZZZZ 原因", "unknown_case"),
])
async def test_other_commands_bad_input(chat, text: str, code: str) -> None:
    before = await _counts()
    reply = await chat.send("E001", text)
    assert not reply.ok and reply.code == code, reply
    assert await _counts() == before


async def test_cancel_needs_a_reason(chat) -> None:
    case_id = (await chat.send("E001", START)).data["case_id"]
    before = await _counts()
    reply = await chat.send("E001", f"/cancel {case_id}")
    assert reply.code == "usage" and "原因" in reply.text
    assert await _counts() == before
    assert (await Case.get(id=case_id)).status == "open"


async def test_every_event_leaves_one_inbox_row(chat) -> None:
    await chat.send("E001", "/help", event_id="h1")
    await chat.send("E001", "/nonsense", event_id="h2")
    assert await InboxEvent.filter(dedup_key__in=["emulator:h1", "emulator:h2"]).count() == 2
