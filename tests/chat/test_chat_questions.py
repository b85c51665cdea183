"""Questions to HR: asked from a card or typed, answered on the card or with /回复, kept in the audit
chain, and an unanswered one reminds HR after the template's policy time (durable timers)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from bot.timers import run_due
from cases.service import utcnow
from config.settings import Settings
from storage import cardids
from storage.audit import verify_chain
from storage.models import AuditEntry, Case, OutboxMessage, Timer
from tests.chat.conftest import Chat, build_chat

START = "/离职 张三 试用期 2025-07-31 绩效未达标 交接人:周八"
BUNDLED = Path(__file__).resolve().parents[2] / "workflow" / "templates"


async def _counts(case_id: str) -> tuple[int, int, int, list]:
    case = await Case.get(id=case_id)
    return (await OutboxMessage.filter(case_id=case_id).count(), await AuditEntry.filter(case_id=case_id).count(),
            await Timer.filter(case_id=case_id).count(), list(case.questions))


async def _started(chat: Chat) -> str:
    reply = await chat.send("E001", START)
    assert reply.ok, reply.text
    await chat.deliver()
    return reply.data["case_id"]


async def test_question_from_a_card_answered_on_hrs_card(chat: Chat) -> None:
    case_id = await _started(chat)
    app_card = await chat.card("E003", step="application")
    ask = app_card.card.button("ask")
    assert ask is not None and ask.label == "问HR" and [f.name for f in ask.form] == ["question"]
    # The manager's and HR's own cards carry no ask button: it is the departing employee's.
    assert (await chat.card("E001", purpose="summary")).card.button("ask") is None

    before = await _counts(case_id)
    empty = await chat.click("E003", app_card.card_id, "ask", {"question": "   "})
    assert not empty.ok and empty.code == "missing_data" and "问题" in empty.text
    assert await _counts(case_id) == before

    asked = await chat.click("E003", app_card.card_id, "ask", {"question": "保证书是必须签的吗？不签会怎样？"})
    assert asked.ok and asked.data["question"] == f"{case_id}-Q1", asked.text
    assert f"{case_id}-Q1" in asked.text
    await chat.deliver()

    # HR (who opened the case) gets the question with the case's context: who, type, current step.
    card = await chat.card("E001", purpose="question")
    fields = dict(card.card.fields)
    assert fields["员工"] == "张三（E003）" and "试用期不符合录用条件解除" in fields["流程"]
    assert fields["当前步骤"] == "第 1 步「确认收到解除通知并陈述意见」（离职员工）"
    assert fields["提问时针对"] == "第 1 步「确认收到解除通知并陈述意见」（离职员工）"
    assert fields["问题编号"] == f"{case_id}-Q1"
    assert "保证书是必须签的吗？不签会怎样？" in card.card.body and f"/回复 {case_id}-Q1" in card.card.body
    assert card.card.status == "等待回复（应在提问后 1 天内回复）"
    answer_button = card.card.button("answer")
    assert answer_button is not None and [f.name for f in answer_button.form] == ["answer"]

    # Someone else tapping HR's card is refused; so is an empty answer. Nothing changes.
    before = await _counts(case_id)
    wrong = await chat.click("E002", card.card_id, "answer", {"answer": "我来回答"})
    assert not wrong.ok and wrong.code == "not_your_card"
    blank = await chat.click("E001", card.card_id, "answer", {"answer": ""})
    assert not blank.ok and blank.code == "missing_data"
    assert await _counts(case_id) == before

    text = "是的，《离职保证书》是必经步骤：签署后公司才能为你补缴试用期社保。"
    answered = await chat.click("E001", card.card_id, "answer", {"answer": text})
    assert answered.ok, answered.text
    await chat.deliver()

    # The employee gets the answer; HR's card now shows it, in place, without the button.
    got = await chat.card("E003", purpose="answer")
    assert text in got.card.body and "保证书是必须签的吗" in got.card.body
    assert got.card.status.startswith("已由 李娜 于") and got.card.button("ask") is not None
    hr_card = await chat.card("E001", purpose="question")
    assert hr_card.id == card.id and hr_card.version == 2 and text in hr_card.card.body
    assert hr_card.card.button("answer") is None and hr_card.card.status.startswith("已由 李娜 于")

    # Question and answer are in the audit chain, which still verifies.
    asked_e = await AuditEntry.get(case_id=case_id, kind="question_asked")
    assert asked_e.actor == "E003" and asked_e.data["text"] == "保证书是必须签的吗？不签会怎样？"
    assert asked_e.data["step_id"] == "application" and asked_e.data["question_id"] == "Q1"
    answered_e = await AuditEntry.get(case_id=case_id, kind="question_answered")
    assert answered_e.actor == "E001" and answered_e.data["text"] == text
    assert answered_e.data["question"] == "保证书是必须签的吗？不签会怎样？" and answered_e.seq > asked_e.seq
    assert (await verify_chain(case_id)).ok
    # The timer that would have reminded HR is cancelled with the answer.
    assert (await Timer.get(case_id=case_id, kind="question")).status == "cancelled"

    # A second answer to the same question is refused.
    again = await chat.send("E001", f"/回复 {case_id}-Q1 再补充一句")
    assert not again.ok and again.code == "already_done" and "已经回复过" in again.text


async def test_typed_question_and_answer_command(chat: Chat) -> None:
    case_id = await _started(chat)
    asked = await chat.send("E003", "我什么时候能拿到离职证明？")
    assert asked.ok and asked.code == "asked" and asked.data["question"] == f"{case_id}-Q1", asked.text
    explicit = await chat.send("E003", "/问HR 补缴的社保会打到哪个账户？", event_id="ask-twice")
    assert explicit.ok and explicit.data["question"] == f"{case_id}-Q2"
    # A redelivered message is one question, answered the same way.
    again = await chat.send("E003", "/问HR 补缴的社保会打到哪个账户？", event_id="ask-twice")
    assert again.duplicate and again.data["question"] == f"{case_id}-Q2"
    assert len((await Case.get(id=case_id)).questions) == 2
    await chat.deliver()
    summary = (await chat.card("E001", purpose="summary")).card.body
    assert f"{case_id}-Q1 · 待回复 · 我什么时候能拿到离职证明？" in summary
    q2 = [m for m in (await chat.cards("E001")) if m.card and m.card.purpose == "question"]
    assert len(q2) == 2
    assert "（离职员工）" in dict(q2[0].card.fields)["当前步骤"]

    # Someone without an open case typing words gets the help, and no case is touched.
    outsider = await chat.send("E007", "你好，请问食堂几点开门？")
    assert not outsider.ok and outsider.code == "unknown_command" and "/进度" in outsider.text
    # A slash command that does not exist stays an unknown command, even from the employee.
    typo = await chat.send("E003", "/frobnicate 1")
    assert typo.code == "unknown_command"

    before = await _counts(case_id)
    for text, code in [
        ("/回复", "usage"),
        (f"/回复 {case_id}-Q1", "usage"),
        ("/回复 Q1 好的", "usage"),
        (f"/回复 {case_id}-Q9 好的", "unknown_question"),
        ("/回复 OB-ZZZZZZ-Q1 好的", "unknown_case"),
        # An answer can be no longer than the message that carries it: the router's 2,000 refuses first.
        (f"/回复 {case_id}-Q1 " + "长" * 2001, "bad_text"),
    ]:
        r = await chat.send("E001", text)
        assert not r.ok and r.code == code, (text, r)
    for user in ("E003", "E002"):  # only HR answers
        r = await chat.send(user, f"/answer {case_id}-Q1 不是 HR 的回答")
        assert not r.ok and r.code == "forbidden"
    assert await _counts(case_id) == before

    ok = await chat.send("E001", f"/answer {case_id.lower()}-q1 离职当天由 HR 发电子版，纸质版可到人事部领取。")
    assert ok.ok and ok.code == "answered", ok.text
    await chat.deliver()
    got = await chat.card("E003", purpose="answer")
    assert "离职当天由 HR 发电子版" in got.card.body and "我什么时候能拿到离职证明" in got.card.body
    assert f"{case_id}-Q1 · 已回复" in (await chat.card("E001", purpose="summary")).card.body
    # The employee's own view lists both questions, one answered.
    status = await chat.send("E003", "/进度")
    assert f"{case_id}-Q1：我什么时候能拿到离职证明？ → 李娜 已回复" in status.text
    assert f"{case_id}-Q2：补缴的社保会打到哪个账户？（等待 HR 回复）" in status.text


async def test_questions_end_with_the_case(chat: Chat) -> None:
    case_id = await _started(chat)
    assert (await chat.send("E003", "还需要交什么材料？")).ok
    await chat.deliver()
    assert (await chat.send("E001", f"/取消 {case_id} 员工撤回")).ok
    await chat.deliver()
    card = await chat.card("E001", purpose="question")
    assert card.card.button("answer") is None and card.card.status == "流程已取消，未回复"
    late = await chat.send("E001", f"/回复 {case_id}-Q1 补充")
    assert not late.ok and late.code == "case_closed"
    after = await chat.send("E003", "那我还要来公司吗？")
    # No open case any more: the employee is told how to reach HR, nothing is recorded on the case.
    assert not after.ok and await AuditEntry.filter(case_id=case_id, kind="question_asked").count() == 1
    assert all(b.action != "ask" for m in (await chat.cards("E003")) for b in m.card.buttons)


@pytest.fixture
def company_templates(tmp_path: Path) -> Path:
    """The bundled probation flow with a company's own policy times."""
    folder = tmp_path / "company_templates"
    folder.mkdir()
    text = (BUNDLED / "probation.toml").read_text(encoding="utf-8")
    assert "alert_after_hours = 72" in text and "question_remind_after_hours = 24" in text
    text = text.replace("alert_after_hours = 72", "alert_after_hours = 36")
    text = text.replace("question_remind_after_hours = 24", "question_remind_after_hours = 6")
    (folder / "probation.toml").write_text(text, encoding="utf-8")
    return folder


async def test_unanswered_question_reminds_hr_after_the_templates_time(demo_org: Settings,
                                                                       company_templates: Path) -> None:
    chat = build_chat(demo_org.model_copy(update={"templates_dir": company_templates}))
    case_id = await _started(chat)
    service = chat.inbound.service
    asked = await chat.send("E003", "试用期考核结果我能看吗？")
    assert asked.ok, asked.text
    await chat.deliver()
    assert "6 小时" in (await chat.card("E001", purpose="question")).card.status
    t0 = utcnow()

    await run_due(service, t0 + timedelta(hours=5, minutes=59))
    assert not await AuditEntry.filter(case_id=case_id, kind="question_reminded").exists()
    assert await run_due(service, t0 + timedelta(hours=6, minutes=1)) >= 1
    await chat.deliver(t0 + timedelta(hours=6, minutes=1))
    reminder = await chat.card("E001", purpose="question_reminder")
    assert reminder.card.title == "提醒：员工的问题已超过 6 小时未回复"
    assert reminder.card.button("answer") is not None
    entry = await AuditEntry.get(case_id=case_id, kind="question_reminded")
    assert entry.actor == "timer" and entry.data["after_hours"] == 6
    # Fires once: running the timers again (the step's own reminder is due by now) adds no second one.
    await run_due(service, t0 + timedelta(hours=30))
    assert await AuditEntry.filter(case_id=case_id, kind="question_reminded").count() == 1
    rows = await OutboxMessage.filter(case_id=case_id, kind="card")
    assert [cardids.card_id_of(r) for r in rows
            if (r.payload or {}).get("purpose") == "question_reminder"] == [reminder.card_id]
    # Answering from the reminder card works like from the first one, and updates both.
    assert (await chat.click("E001", reminder.card_id, "answer", {"answer": "可以，稍后发给你。"})).ok
    await chat.deliver(t0 + timedelta(hours=31))
    assert all(m.card.button("answer") is None for m in (await chat.cards("E001")) if m.card.step_id == "Q1")
