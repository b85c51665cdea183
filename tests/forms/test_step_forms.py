"""The step web form over real HTTP: a WeCom holder fills the inputs their card cannot hold, the
submission goes through the router as a tap on their card, the case advances and the cards update."""

from __future__ import annotations

from signing.channel import Channel
from storage.models import AuditEntry, CaseStep, FormLink, InboxEvent
from tests.forms.conftest import EMPLOYEE, Forms, link, message_of

GOOD = {"last_working_day": "2025-07-31", "reason": "收到通知，无异议"}


async def _snapshot(f: Forms) -> tuple[int, int, str]:
    case = await f.case()
    step = await CaseStep.get(case_id=case.id, step_id="application")
    return await AuditEntry.filter(case_id=case.id).count(), case.version, step.status


async def test_card_button_opens_the_form_and_submitting_advances_the_case(forms: Forms) -> None:
    card = await forms.card(EMPLOYEE, step="application")
    url = link(card, "提交")
    assert "/form/" in url and card.card is not None and "/view/" in card.card.details_url
    status, page = await forms.open(url)
    assert status == 200
    assert "最后工作日（按通知核对）" in page and "本人意见或陈述" in page and 'lang="zh-CN"' in page
    en = await forms.client.get(forms.path(url) + "?lang=en")
    text = await en.text()
    assert 'lang="en"' in text and "Last working day (as notified)" in text and "?lang=en" in text
    resp = await forms.client.get(forms.path(url))
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["Cache-Control"] == "no-store"

    status, page = await forms.submit(url, GOOD)
    assert status == 200, page
    assert "已提交" in message_of(page)
    case = await forms.case()
    step = await CaseStep.get(case_id=case.id, step_id="application")
    assert step.status == "done" and step.done_by == EMPLOYEE and step.data == GOOD
    entry = await AuditEntry.filter(case_id=case.id, kind="step_done").get()
    assert entry.actor == EMPLOYEE and entry.data["data"] == GOOD
    inbox = await InboxEvent.filter(dedup_key__startswith="wecom:webform:").get()
    assert inbox.platform == "wecom" and inbox.sender == "wx_E003"
    used = await FormLink.get(used_at__not_isnull=True)  # the link is spent
    assert (used.case_id, used.step_id, used.action, used.holder_id) == (case.id, "application", "submit", EMPLOYEE)

    # The normal outbox update re-renders the holder's card in place: no submit link any more.
    await forms.deliver()
    updated = await forms.card(EMPLOYEE, step="application")
    assert updated.card_id == card.card_id and updated.version > card.version
    assert updated.card is not None and all(b.label != "提交" for b in updated.card.buttons)
    assert "已由 张三" in updated.card.status
    # The manager's step opened, and their card's approve button is a form link too.
    mgr = await forms.card("E002", step="performance_review")
    assert "/form/" in link(mgr, "批准") and "/form/" in link(mgr, "驳回")

    # The used link: a clear refusal, nothing changed.
    before = await _snapshot(forms)
    status, page = await forms.open(url)
    assert status == 410 and "已提交过" in message_of(page)
    status, page = await forms.submit(url, GOOD, csrf="x")
    assert status == 410 and await _snapshot(forms) == before


async def test_a_card_rendered_again_unchanged_carries_the_same_links(forms: Forms) -> None:
    """So a platform update of a card that did not change can be skipped (DingTalk's monthly budget);
    once the case moves, the links are new (a used form link is never handed out again)."""
    from handlers.cardview import CardRenderer
    from storage.models import OutboxMessage

    case = await forms.case()
    row = await OutboxMessage.get(case_id=case.id, recipient=EMPLOYEE, step_id="application", kind="card")
    renderer = CardRenderer(forms.settings, forms.service, channel=Channel())
    first, second = await renderer.for_outbox(row), await renderer.for_outbox(row)
    assert first == second and first is not None
    ask = link(await forms.card(EMPLOYEE, step="application"), "问HR")
    assert (await forms.submit(ask, {"question": "补偿金怎么算？"}))[0] == 200
    third = await renderer.for_outbox(row)
    assert third is not None and third.details_url != first.details_url
    assert link_of(third, "问HR") != link_of(first, "问HR")


def link_of(card: object, label: str) -> str:
    return next(b.url for b in card.buttons if b.label == label)  # type: ignore[attr-defined]


async def test_question_and_answer_through_web_forms(forms: Forms) -> None:
    """问HR and HR's answer ask for text too: both go through the web form on WeCom."""
    ask = link(await forms.card(EMPLOYEE, step="application"), "问HR")
    assert (await forms.submit(ask, {"question": "最后工资何时发放？"}))[0] == 200
    await forms.deliver()
    question = await forms.card("E001", purpose="question")
    assert question.card is not None and not question.card.details_url  # a question is not a step
    status, page = await forms.submit(link(question, "回复"), {"answer": "随当月工资一起发放。"})
    assert status == 200, page
    await forms.deliver()
    answer = await forms.card(EMPLOYEE, purpose="answer")
    assert answer.card is not None and "随当月工资一起发放。" in answer.card.body
    case = await forms.case()
    kinds = [e.kind for e in await AuditEntry.filter(case_id=case.id).order_by("seq")]
    assert kinds[-2:] == ["question_asked", "question_answered"]
