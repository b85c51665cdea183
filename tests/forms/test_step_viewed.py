""""Viewed" that means viewed: each step card carries its holder's details link; the first opening
records the step viewed by that holder (one audit entry the chain replays), the first reminder then
passes them by, and the reminder before the deadline still reaches them while the step waits on them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.timers import run_due
from signing.links import make_token, new_nonce
from signing.stepcheck import check_case_state
from storage.models import AuditEntry, CaseStep, OutboxMessage
from tests.forms.conftest import EMPLOYEE, HR, Forms, message_of


async def _reminders(f: Forms, user: str) -> list[OutboxMessage]:
    case = await f.case()
    return [r for r in await OutboxMessage.filter(case_id=case.id, recipient=user, kind="card")
            if (r.payload or {}).get("purpose") == "reminder"]


async def _fire(f: Forms, hours: float) -> None:
    case = await f.case()
    await run_due(f.service, case.started_at + timedelta(hours=hours, minutes=1))


async def test_opening_the_details_records_a_view_and_spares_the_first_reminder(forms: Forms) -> None:
    card = await forms.card(EMPLOYEE, step="application")
    assert card.card is not None and card.card.details_url
    assert "查看详情" in card.html and card.card.details_url.replace("&", "&amp;") in card.html
    status, page = await forms.open(card.card.details_url)
    assert status == 200, page
    assert "确认收到解除通知并陈述意见" in page and "请回到消息卡片上" not in page
    assert "/form/" in page  # the details page offers the holder's web form as well
    case = await forms.case()
    views = await AuditEntry.filter(case_id=case.id, kind="step_viewed")
    assert [(v.actor, v.data["step_id"], v.data["actor_roles"]) for v in views] == [
        (EMPLOYEE, "application", ["employee"])]
    step = await CaseStep.get(case_id=case.id, step_id="application")
    assert step.viewed_by == ["employee:E003"] and step.viewed_at is not None
    # Opening it again (or another details link of theirs) records nothing more.
    again = await forms.card(EMPLOYEE, step="application")
    await forms.open(again.card.details_url)  # type: ignore[union-attr]
    await forms.open(card.card.details_url)
    assert await AuditEntry.filter(case_id=case.id, kind="step_viewed").count() == 1

    # HR opening the employee's step (they hold no role in it) is fine and records nothing.
    summary = await forms.card(HR, purpose="summary")
    assert summary.card is not None and not summary.card.details_url  # the case card is not a step card
    hr_view = make_token(forms.settings.secret_bytes(), case_id=case.id, step_id="application", signer_id=HR,
                         expires_at=datetime.now(UTC) + timedelta(hours=1), nonce=new_nonce(), purpose="view")
    resp = await forms.client.get(f"/view/{hr_view}")
    assert resp.status == 200
    assert await AuditEntry.filter(case_id=case.id, kind="step_viewed").count() == 1
    assert not await AuditEntry.filter(case_id=case.id, kind="refused").exists()

    # 20 h: the reminder before the 24-hour deadline reaches the employee although they looked.
    await _fire(forms, 20)
    assert len(await _reminders(forms, EMPLOYEE)) == 1
    # 24 h: the first reminder is for those who have not looked: none goes out.
    await _fire(forms, 24)
    assert len(await _reminders(forms, EMPLOYEE)) == 1
    entries = [e.data for e in await AuditEntry.filter(case_id=case.id, kind="reminder_sent")]
    assert [(e["timer"], e["trigger"]) for e in entries] == [("remind_due", "timer")]
    await forms.deliver(case.started_at + timedelta(hours=25))
    reminder = await forms.card(EMPLOYEE, purpose="reminder")
    assert reminder.card is not None and reminder.card.details_url and "已提醒 1 次" in reminder.card.summary

    ok, detail = await check_case_state(await forms.case(), forms.service.templates)
    assert ok, detail


async def test_not_opened_gets_both_reminders(forms: Forms) -> None:
    await _fire(forms, 20)
    await _fire(forms, 24)
    case = await forms.case()
    assert len(await _reminders(forms, EMPLOYEE)) == 2
    entries = [e.data["timer"] for e in await AuditEntry.filter(case_id=case.id, kind="reminder_sent")]
    assert entries == ["remind_due", "remind"]
    ok, detail = await check_case_state(await forms.case(), forms.service.templates)
    assert ok, detail


async def test_a_view_after_the_step_is_done_records_nothing(forms: Forms) -> None:
    from tests.forms.conftest import link

    card = await forms.card(EMPLOYEE, step="application")
    assert (await forms.submit(link(card, "提交"), {"last_working_day": "2025-07-31", "reason": "无"}))[0] == 200
    status, page = await forms.open(card.card.details_url)  # type: ignore[union-attr]
    assert status == 200 and "已由 张三" in page
    case = await forms.case()
    assert not await AuditEntry.filter(case_id=case.id, kind="step_viewed").exists()


async def test_bad_details_links(forms: Forms) -> None:
    card = await forms.card(EMPLOYEE, step="application")
    url = card.card.details_url  # type: ignore[union-attr]
    token = url.rsplit("/view/", 1)[1]
    case = await forms.case()
    secret = forms.settings.secret_bytes()
    expired = make_token(secret, case_id=case.id, step_id="application", signer_id=EMPLOYEE,
                         expires_at=datetime.now(UTC) - timedelta(seconds=1), nonce=new_nonce(), purpose="view")
    form_token = make_token(secret, case_id=case.id, step_id="application", signer_id=EMPLOYEE,
                            expires_at=datetime.now(UTC) + timedelta(hours=1), nonce=new_nonce(), purpose="form",
                            extra={"a": "submit", "k": card.card_id})
    unknown_step = make_token(secret, case_id=case.id, step_id="nope", signer_id=EMPLOYEE,
                              expires_at=datetime.now(UTC) + timedelta(hours=1), nonce=new_nonce(), purpose="view")
    for tok, want in ((token[:-3] + "abc", 403), (expired, 410), (form_token, 403), ("x", 400), (unknown_step, 404)):
        resp = await forms.client.get(f"/view/{tok}")
        assert resp.status == want, (tok, await resp.text())
        assert message_of(await resp.text())
    assert not await AuditEntry.filter(case_id=case.id, kind="step_viewed").exists()


FINANCE_FLOW = """
id = "finance_only"
version = 1
title = { zh = "财务确认", en = "Finance confirms" }
case_type = "finance_only"

[policy]
remind_after_hours = 24

[[steps]]
id = "pay"
title = { zh = "财务确认付款", en = "Finance confirms payment" }
ask = { zh = "请确认付款。", en = "Please confirm the payment." }
why = { zh = "结清款项。", en = "To settle what is owed." }
role = "finance"
kind = "confirm"
deadline_hours = 48
"""


async def test_a_role_held_by_several_people_reminds_only_those_who_did_not_look(demo_org, tmp_path) -> None:
    """Two finance people hold the step; the one who opened its details gets no first reminder, the
    other does (the service drops exactly the holders the engine names)."""
    from datetime import date

    from storage.models import Employee
    from tests.forms.conftest import FINANCE, harness

    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "finance_only.toml").write_text(FINANCE_FLOW, encoding="utf-8")
    await Employee.filter(employee_id="E005").update(roles="finance")
    settings = demo_org.model_copy(update={"platforms": ("wecom",), "templates_dir": tmp_path / "flows"})
    async for f in harness(settings):
        emp = await Employee.get(employee_id=EMPLOYEE)
        out = await f.service.start_case(employee=emp, template_id="finance_only", last_day=date(2025, 7, 31),
                                         reason="x", created_by=HR)
        await f.deliver()
        card = await f.card(FINANCE, step="pay")
        assert (await f.card("E005", step="pay")).card is not None
        status, _ = await f.open(card.card.details_url)  # type: ignore[union-attr]
        assert status == 200
        await _fire(f, 24)
        got = {r.recipient for r in await OutboxMessage.filter(case_id=out.case_id, kind="card")
               if (r.payload or {}).get("purpose") == "reminder"}
        assert got == {"E005"}
        entry = await AuditEntry.filter(case_id=out.case_id, kind="reminder_sent").get()
        assert entry.data["not_to"] == [FINANCE]
        ok, detail = await check_case_state(await f.case(), f.service.templates)
        assert ok, detail
