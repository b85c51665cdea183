"""Issue 14, misconduct and probation flow fixes, through the chat harness: the handover colleague named
at start receives the handover step; the newspaper notice stays locked until the mail is recorded as
returned or undeliverable; a completed case closes what it no longer needs as 不再需要 on every card;
the probation flow's first card reads as an acknowledgement, never as a request to leave."""

from __future__ import annotations

from datetime import timedelta

from bot.timers import run_due
from cases.service import utcnow
from storage.models import AuditEntry, Case, CaseStep
from tests.chat.conftest import Chat
from workflow.events import Evidence
from workflow.model import Role

START = "/离职 张三 违纪 2025-07-31 严重违反考勤制度 交接人:周八"
HR, EMP, RECEIVER = "E001", "E003", "E006"  # 周八 is E006
MAIL = {"tracking_number": "EA123456789CN"}
PAPER = {"newspaper": "法治日报", "published_on": "2025-08-20"}


async def _scan(chat: Chat, case_id: str, step_id: str, field: str) -> None:
    """HR's scan for the step, recorded as the upload page records it (tests/fallback drive the page)."""
    out = await chat.inbound.service.apply(case_id, lambda c, s: Evidence(
        step_id, field, f"K-{step_id}", "ab" * 32, 1000, "image/jpeg", HR, frozenset({Role.HR}), utcnow()), actor=HR)
    assert out.ok, out.refusal


async def _into_fallback(chat: Chat) -> str:
    reply = await chat.send(HR, START)
    assert reply.ok, reply.text
    later = utcnow() + timedelta(hours=169)
    await run_due(chat.inbound.service, later)  # seven days without a signature
    await chat.deliver(later)
    return reply.data["case_id"]


async def _status(case_id: str) -> dict[str, tuple[str, str | None]]:
    return {s.step_id: (s.status, s.outcome) for s in await CaseStep.filter(case_id=case_id)}


async def test_newspaper_waits_for_returned_mail_and_the_named_colleague_gets_the_handover(chat: Chat) -> None:
    case_id = await _into_fallback(chat)
    mail = await chat.card(HR, step="registered_mail")
    button = mail.card.button("complete")
    assert button is not None and button.enabled
    result = next(f for f in button.form if f.name == "delivery_result")
    assert [v for v, _ in result.options] == ["delivered", "returned", "undeliverable"]
    # The newspaper notice is the last resort: not open, no card, and refused if forced.
    assert (await _status(case_id))["newspaper_notice"] == ("locked", None)
    assert not [m for m in await chat.cards(HR) if m.card and m.card.step_id == "newspaper_notice"]
    status = await chat.send(HR, f"/status {case_id}")
    assert "🔒 8. 登报公告送达" in status.text, status.text
    # A result that is not one of the options is refused, and nothing changes.
    r = await chat.click(HR, mail.card_id, "complete", {**MAIL, "delivery_result": "lost"})
    assert not r.ok and "投递结果" in r.text
    assert (await _status(case_id))["registered_mail"] == ("active", None)

    r = await chat.click(HR, mail.card_id, "complete", {**MAIL, "delivery_result": "returned"})
    assert not r.ok and "邮寄凭证扫描件" in r.text  # the receipt's scan first
    await _scan(chat, case_id, "registered_mail", "receipt_scan")
    r = await chat.click(HR, mail.card_id, "complete", {**MAIL, "delivery_result": "returned"})
    assert r.ok, r.text
    await chat.deliver()
    assert (await _status(case_id))["registered_mail"] == ("done", "returned")
    assert (await _status(case_id))["termination_notice"][0] == "active"  # returned mail stands in for nothing
    paper = await chat.card(HR, step="newspaper_notice")
    assert paper.card.button("complete").enabled
    assert "结果：被退回" in (await chat.card(HR, step="registered_mail")).card.status
    await _scan(chat, case_id, "newspaper_notice", "scan")
    r = await chat.click(HR, paper.card_id, "complete", PAPER)
    assert r.ok, r.text
    await chat.deliver()

    # The notice served by publication, the handover opens for the colleague HR named at the start.
    handover = await chat.card(EMP, step="handover")  # the employee signs first
    assert dict(handover.card.fields)["办理人"] == "工作交接人"
    assert handover.card.status == "等待你签署《工作交接确认单》"
    assert (await Case.get(id=case_id)).handover_id == RECEIVER
    # The colleague HR named signs second: their card comes at their turn, not before.
    assert not [m for m in await chat.cards(RECEIVER) if m.card and m.card.step_id == "handover"]

    r = await chat.click(HR, (await chat.card(HR, step="deregistration")).card_id, "complete",
                         {"receipt_number": "SB-1"})
    assert r.ok, r.text
    await chat.deliver()
    steps = await _status(case_id)
    assert steps["handover"] == ("not_needed", "case_completed")
    assert steps["employee_response"] == ("not_needed", "case_completed")
    assert not [s for s, (st, _) in steps.items() if st in ("active", "locked")]
    # On the cards: the colleague's and the employee's cards say so, and HR's summary lists why.
    assert (await chat.card(EMP, step="handover")).card.status == "不再需要：流程已完成，此步骤为可选步骤"
    assert (await chat.card(EMP, step="employee_response")).card.status.startswith("不再需要")
    summary = await chat.card(HR, purpose="summary")
    assert "进行中" not in summary.card.body and summary.card.body.count("不再需要") == 2, summary.card.body
    closed = [e.data for e in await AuditEntry.filter(case_id=case_id, kind="step_done")
              if e.data.get("not_needed")]
    assert [d["not_needed"] for d in closed] == [["employee_response", "handover"]]


async def test_delivered_mail_closes_the_newspaper_as_not_needed(chat: Chat) -> None:
    case_id = await _into_fallback(chat)
    mail = await chat.card(HR, step="registered_mail")
    await _scan(chat, case_id, "registered_mail", "receipt_scan")
    r = await chat.click(HR, mail.card_id, "complete", {**MAIL, "delivery_result": "delivered"})
    assert r.ok, r.text
    await chat.deliver()
    steps = await _status(case_id)
    assert steps["newspaper_notice"] == ("not_needed", "branch")
    assert steps["termination_notice"] == ("done", "replaced")
    status = await chat.send(HR, f"/status {case_id}")
    assert ("– 8. 登报公告送达 — 不再需要：第 7 步 邮寄送达（EMS 挂号信）的结果为「已妥投（本人或代收人签收）」"
            in status.text), status.text


async def test_probation_first_card_is_an_acknowledgement_not_a_request(chat: Chat) -> None:
    reply = await chat.send(HR, "/离职 张三 试用期 2025-07-31 绩效未达标 交接人:周八")
    assert reply.ok, reply.text
    await chat.deliver()
    card = (await chat.card(EMP, step="application")).card
    labels = [f.label for b in card.buttons for f in b.form]
    shown = " ".join([card.title, card.body, card.status, *labels])
    assert "申请" not in shown and "辞职" not in shown, shown
    assert card.title == "确认收到解除通知并陈述意见"
    assert "本人意见或陈述" in labels and "不代表你主动离职" in card.body
    template = chat.inbound.service.template("probation")
    assert template.step("application").documents == ()  # no paper of theirs that could read as a request
    assert template.step("separation_certificate").documents == ("separation_certificate",)
