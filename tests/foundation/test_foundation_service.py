"""The case service: one transaction per event, flow lock, refusals that change nothing, races, timers."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest
from tortoise.expressions import F

from bot.app import build_service
from bot.timers import claim_due, fire, run_due
from cases.service import CaseError, CaseService
from storage import audit
from storage.models import AuditEntry, Case, CaseStep, Employee, OutboxMessage, Timer
from workflow.events import Act, Close, DocumentSigned, Viewed
from workflow.model import Role

T0 = datetime(2025, 7, 1, 2, 0, tzinfo=UTC)


@pytest.fixture
async def svc(demo_org) -> CaseService:
    return build_service(demo_org)


async def _open(svc: CaseService) -> str:
    emp = await Employee.get(employee_id="E003")
    out = await svc.start_case(employee=emp, template_id="probation", last_day=date(2025, 7, 31),
                               reason="绩效未达标", created_by="E001", handover_id="E006", at=T0)
    return out.case_id


async def _act(svc: CaseService, case_id: str, who: str, step: str, action: str, data=None, *, at=T0):
    actor = await Employee.get(employee_id=who)

    async def roles(case):
        return await svc.roles_of(case, actor)

    case = await Case.get(id=case_id)
    r = await roles(case)
    return await svc.apply(case_id, lambda c, s: Act(step, action, who, r, data or {}, at=at), actor=who)


async def _sign(svc: CaseService, case_id: str, who: str, step: str, doc: str):
    actor = await Employee.get(employee_id=who)
    r = await svc.roles_of(await Case.get(id=case_id), actor)
    return await svc.apply(case_id, lambda c, s: DocumentSigned(step, doc, who, r, at=T0), actor=who)


async def _snapshot(case_id: str) -> tuple:
    steps = await CaseStep.filter(case_id=case_id).order_by("position").values_list("step_id", "status")
    return (tuple(steps), await AuditEntry.filter(case_id=case_id).count(),
            await OutboxMessage.filter(case_id=case_id).count(), await Timer.filter(case_id=case_id).count())


async def _through_hr_check(svc: CaseService, cid: str) -> None:
    assert (await _act(svc, cid, "E003", "application", "submit",
                       {"last_working_day": "2025-07-31", "reason": "个人原因"})).ok
    assert (await _act(svc, cid, "E002", "performance_review", "approve", {"result": "完成率 60%，要求 80%"})).ok
    assert (await _act(svc, cid, "E001", "hr_check", "complete", {"unpaid_months": 2})).ok


async def test_start_writes_steps_audit_outbox_timers(svc: CaseService) -> None:
    cid = await _open(svc)
    case = await Case.get(id=cid)
    assert case.status == "open" and case.open_key == "E003" and case.version == 1
    steps = dict(await CaseStep.filter(case_id=cid).values_list("step_id", "status"))
    assert steps["application"] == "active" and steps["guarantee"] == "locked"
    cards = await OutboxMessage.filter(case_id=cid, kind="card")
    assert [(m.recipient, m.step_id) for m in cards] == [("E003", "application")]
    kinds = sorted(await Timer.filter(case_id=cid).values_list("kind", flat=True))
    assert "remind" in kinds and "alert" in kinds
    assert (await audit.verify_chain(cid)).ok


async def test_second_open_case_refused(svc: CaseService) -> None:
    await _open(svc)
    with pytest.raises(CaseError) as exc:
        await _open(svc)
    assert exc.value.code == "already_open"
    assert await Case.all().count() == 1


async def test_case_b_cannot_complete_without_signed_letter(svc: CaseService) -> None:
    cid = await _open(svc)
    await _through_hr_check(svc, cid)
    # Handover done in parallel with hr_check.
    assert (await _sign(svc, cid, "E003", "handover", "handover_confirmation")).ok
    assert (await _sign(svc, cid, "E006", "handover", "handover_confirmation")).ok

    before = await _snapshot(cid)
    locked = await _act(svc, cid, "E004", "backpay", "confirm")
    assert locked.refusal is not None and locked.refusal.code == "locked"
    assert "guarantee" in locked.refusal.missing or "保证书" in locked.refusal.message_zh
    hr = await Employee.get(employee_id="E001")
    r = await svc.roles_of(await Case.get(id=cid), hr)
    closing = await svc.apply(cid, lambda c, s: Close("E001", r, at=T0), actor="E001")
    assert closing.refusal is not None and closing.refusal.code == "incomplete"
    assert "离职保证书" in closing.refusal.message_zh and "guarantee" in closing.refusal.message_en.lower()
    assert await _snapshot(cid) == before  # refusals change nothing

    assert (await _sign(svc, cid, "E003", "guarantee", "guarantee_letter")).ok
    assert (await _act(svc, cid, "E004", "backpay", "confirm", {"payment_reference": "PAY-2025-001"})).ok
    assert (await _sign(svc, cid, "E003", "separation_certificate", "separation_certificate")).ok
    assert (await _sign(svc, cid, "E003", "rights_notice", "rights_notice")).ok
    assert (await _act(svc, cid, "E003", "rights_notice", "acknowledge")).ok
    case = await Case.get(id=cid)
    assert case.status == "completed" and case.open_key is None and case.closed_at is not None
    rows = await OutboxMessage.filter(case_id=cid)
    completion = [m.recipient for m in rows if m.payload.get("purpose") == "completion"]
    assert "E003" in completion and "E001" in completion
    assert (await audit.verify_chain(cid)).ok


async def test_parallel_steps_both_active(svc: CaseService) -> None:
    cid = await _open(svc)
    assert (await _act(svc, cid, "E003", "application", "submit",
                       {"last_working_day": "2025-07-31", "reason": "x"})).ok
    assert (await _act(svc, cid, "E002", "performance_review", "approve", {"result": "完成率 60%，要求 80%"})).ok
    steps = dict(await CaseStep.filter(case_id=cid).values_list("step_id", "status"))
    assert steps["hr_check"] == "active" and steps["handover"] == "active"
    recipients = {(m.recipient, m.step_id) for m in await OutboxMessage.filter(case_id=cid, kind="card")}
    # the handover: the employee signs first (the colleague's card comes at their turn)
    assert ("E001", "hr_check") in recipients and ("E003", "handover") in recipients
    assert ("E006", "handover") not in recipients


async def test_duplicate_and_out_of_order_change_nothing(svc: CaseService) -> None:
    cid = await _open(svc)
    before = await _snapshot(cid)
    early = await _act(svc, cid, "E002", "performance_review", "approve", {"result": "完成率 60%，要求 80%"})
    assert early.refusal is not None and early.refusal.code == "locked"
    assert await _snapshot(cid) == before
    assert (await _act(svc, cid, "E003", "application", "submit",
                       {"last_working_day": "2025-07-31", "reason": "x"})).ok
    mid = await _snapshot(cid)
    again = await _act(svc, cid, "E003", "application", "submit", {"last_working_day": "2025-07-31", "reason": "x"})
    assert again.refusal is not None and again.refusal.code == "already_done"
    assert await _snapshot(cid) == mid


async def test_wrong_role_writes_only_an_audit_entry(svc: CaseService) -> None:
    cid = await _open(svc)
    steps_before, audit_before, outbox_before, timers_before = await _snapshot(cid)
    out = await _act(svc, cid, "E007", "application", "submit", {"last_working_day": "2025-07-31", "reason": "x"})
    assert out.refusal is not None and out.refusal.code == "wrong_role"
    steps, audits, outbox, timers = await _snapshot(cid)
    assert (steps, outbox, timers) == (steps_before, outbox_before, timers_before)
    assert audits == audit_before + 1
    last = await AuditEntry.filter(case_id=cid).order_by("-seq").first()
    assert last is not None and last.actor == "E007"
    assert (await audit.verify_chain(cid)).ok


async def test_version_conflict_is_retried_on_fresh_state(svc: CaseService) -> None:
    cid = await _open(svc)
    emp = await Employee.get(employee_id="E003")
    roles = await svc.roles_of(await Case.get(id=cid), emp)
    calls = 0

    def make(case, state):
        nonlocal calls
        calls += 1
        if calls == 1:
            # Another writer commits between our read and our write: simulated by bumping the
            # version behind the service's back (same transaction, so it rolls back with ours).
            case.version -= 1
        return Act("application", "submit", "E003", roles, {"last_working_day": "2025-07-31", "reason": "x"},
                   at=T0)

    out = await svc.apply(cid, make, actor="E003")
    assert out.ok and out.attempts == 2 and calls == 2
    assert (await Case.get(id=cid)).version == 2


async def test_concurrent_updates_one_wins(svc: CaseService) -> None:
    cid = await _open(svc)
    emp = await Employee.get(employee_id="E003")
    roles = await svc.roles_of(await Case.get(id=cid), emp)

    def make(case, state):
        return Act("application", "submit", "E003", roles, {"last_working_day": "2025-07-31", "reason": "x"}, at=T0)

    results = await asyncio.gather(*(svc.apply(cid, make, actor="E003") for _ in range(2)))
    assert sorted(r.ok for r in results) == [False, True]
    loser = next(r for r in results if not r.ok)
    assert loser.refusal is not None and loser.refusal.code == "already_done"
    case = await Case.get(id=cid)
    assert case.version == 2
    assert (await audit.verify_chain(cid)).ok


async def test_stale_version_write_is_refused(svc: CaseService) -> None:
    cid = await _open(svc)
    await Case.filter(id=cid).update(version=F("version") + 1)  # someone else committed
    case = await Case.get(id=cid)
    stale = case.version - 1
    n = await Case.filter(id=cid, version=stale).update(version=stale + 1)
    assert n == 0


async def test_timers_remind_once_and_skip_when_viewed(svc: CaseService) -> None:
    cid = await _open(svc)
    later = T0 + timedelta(hours=25)
    fired = await run_due(svc, later, worker="w1")
    assert fired >= 1
    reminders = [m for m in await OutboxMessage.filter(case_id=cid) if m.payload.get("purpose") == "reminder"]
    # The reminder 4 h before the application's 24-hour deadline, then the 24-hour one (not viewed).
    assert sorted((m.recipient, m.key.split(":")[3]) for m in reminders) == [("E003", "due"), ("E003", "timer")]
    assert await run_due(svc, later, worker="w2") == 0  # fired once, never again
    # A viewed step gets no reminder: start a second case and view it first.
    emp = await Employee.get(employee_id="E007")
    out = await svc.start_case(employee=emp, template_id="probation", last_day=None, reason="", created_by="E001",
                               at=T0)
    r = await svc.roles_of(await Case.get(id=out.case_id), emp)
    assert (await svc.apply(out.case_id, lambda c, s: Viewed("application", "E007", r, at=T0))).ok
    await run_due(svc, later, worker="w1")
    # Looking spares the employee the 24-hour reminder, not the one before the deadline.
    viewed = [m for m in await OutboxMessage.filter(case_id=out.case_id) if m.payload.get("purpose") == "reminder"]
    assert [m.key.split(":")[3] for m in viewed] == ["due"]


async def test_timer_claimed_by_one_worker_and_refired_after_lost_lease(svc: CaseService) -> None:
    cid = await _open(svc)
    later = T0 + timedelta(hours=21)  # the reminder before the 24-hour deadline is due (4 h before it)
    a, b = await asyncio.gather(claim_due(later, worker="A"), claim_due(later, worker="B"))
    assert (a and not b) or (b and not a)
    won = a or b
    # The winner "crashes" before firing; after the lease runs out another worker fires it once.
    assert await claim_due(later, worker="C") == []
    after_lease = later + timedelta(minutes=5)
    again = await claim_due(after_lease, worker="C")
    assert {t.id for t in again} == {t.id for t in won}
    assert all([await fire(svc, t, after_lease, worker="C") for t in again])
    late = await fire(svc, won[0], after_lease, worker="A" if a else "B")  # the crashed worker wakes up
    assert late is False
    reminders = [m for m in await OutboxMessage.filter(case_id=cid) if m.payload.get("purpose") == "reminder"]
    assert len(reminders) == 1


async def test_role_resolution(svc: CaseService) -> None:
    cid = await _open(svc)
    case = await Case.get(id=cid)
    got = {e: await svc.roles_of(case, await Employee.get(employee_id=e)) for e in ("E001", "E002", "E003", "E004",
                                                                                     "E006", "E007")}
    assert got["E003"] == {Role.EMPLOYEE} and got["E002"] == {Role.MANAGER} and got["E006"] == {Role.HANDOVER}
    assert got["E001"] == {Role.HR} and got["E004"] == {Role.FINANCE} and got["E007"] == frozenset()
