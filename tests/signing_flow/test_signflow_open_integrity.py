"""Open cases rewritten by someone with database write access: once the checkpoint sweep has signed a
case's head, deleting its last entry (head moved back) or editing an entry (hashes recomputed) fails
`verify`; a step row that the chain does not explain fails it at once, checkpoint or not."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from signing.checkpoints import checkpoint_open_cases
from signing.pipeline import keys_for
from signing.stepcheck import check_case_state, replay
from signing.verify import Check, verify_case
from storage.audit import GENESIS, entry_hash
from storage.casestore import step_values
from storage.models import AuditEntry, Case, CaseStep, Checkpoint, Employee
from tests.signing_flow.conftest import EMPLOYEE, HR, Flow
from workflow.events import Act, Cancel, Evidence, Remind, TimerFired, Viewed
from workflow.model import Role


async def _verify(flow: Flow) -> list[Check]:
    keys = keys_for(flow.settings)
    return await verify_case(flow.case_id, keys=keys, trust_root=keys.root_cert)


def _failed(checks: list[Check]) -> dict[str, str]:
    return {c.name: c.detail for c in checks if not c.ok}


async def _rehash_from(case_id: str, seq: int) -> None:
    """What an attacker does after editing entry `seq`: recompute it and every hash after it, and
    move the case's head to match, so that the chain itself is consistent again."""
    entries = await AuditEntry.filter(case_id=case_id).order_by("seq")
    prev = GENESIS
    for e in entries:
        if e.seq >= seq:
            e.prev_hash = prev
            e.hash = entry_hash(prev, case_id=case_id, seq=e.seq, at=e.at, actor=e.actor, kind=e.kind, data=e.data)
            await AuditEntry.filter(id=e.id).update(prev_hash=e.prev_hash, hash=e.hash)
        prev = e.hash
    await Case.filter(id=case_id).update(audit_seq=entries[-1].seq, audit_head=prev)


async def test_an_untouched_open_case_passes_with_its_checkpoint(flow: Flow) -> None:
    keys = keys_for(flow.settings)
    assert await checkpoint_open_cases(keys) == 1
    assert await checkpoint_open_cases(keys) == 0  # nothing moved: nothing signed again
    case = await Case.get(id=flow.case_id)
    cp = await Checkpoint.get(case_id=flow.case_id)
    assert (cp.seq, cp.head_hash) == (case.audit_seq, case.audit_head)
    checks = await _verify(flow)
    assert not _failed(checks), [c.line() for c in checks]
    step_check = next(c for c in checks if c.name == "step states")
    assert "entries replayed" in step_check.detail
    # The head moves; the next sweep signs the new head, and the case still verifies.
    out = await flow.service.apply(flow.case_id, lambda c, s: Viewed("guarantee", EMPLOYEE,
                                                                      frozenset({Role.EMPLOYEE}),
                                                                      datetime.now(UTC)), actor=EMPLOYEE)
    assert out.ok
    assert await checkpoint_open_cases(keys) == 1
    assert not _failed(await _verify(flow))


async def test_deleting_the_last_entry_and_moving_the_head_back_fails_verify(flow: Flow) -> None:
    await checkpoint_open_cases(keys_for(flow.settings))
    case = await Case.get(id=flow.case_id)
    last = await AuditEntry.get(case_id=flow.case_id, seq=case.audit_seq)
    before = await AuditEntry.get(case_id=flow.case_id, seq=case.audit_seq - 1)
    await last.delete()
    await Case.filter(id=flow.case_id).update(audit_seq=before.seq, audit_head=before.hash)
    # Also roll the step rows back to what the shortened chain says, so only the checkpoint can tell.
    entries = [(e.seq, e.kind, e.data) for e in await AuditEntry.filter(case_id=flow.case_id).order_by("seq")]
    state = replay(flow.service.template("probation"), flow.case_id, entries)
    assert not isinstance(state, str), state
    for sid, st in state.steps.items():
        await CaseStep.filter(case_id=flow.case_id, step_id=sid).update(**step_values(st))
    bad = _failed(await _verify(flow))
    assert "audit chain" not in bad  # the chain alone is consistent again: that was the hole
    assert f"checkpoint #{last.seq} head" in bad, bad


async def test_an_edited_entry_with_recomputed_hashes_fails_verify(flow: Flow) -> None:
    await checkpoint_open_cases(keys_for(flow.settings))
    entry = next(e for e in await AuditEntry.filter(case_id=flow.case_id, kind="step_done")
                 if e.data.get("step_id") == "performance_review")
    data = dict(entry.data)
    data["data"] = {**data["data"], "result": "完成率 95%，要求 80%"}
    await AuditEntry.filter(id=entry.id).update(data=data)
    await CaseStep.filter(case_id=flow.case_id, step_id="performance_review").update(data=data["data"])
    await _rehash_from(flow.case_id, entry.seq)
    bad = _failed(await _verify(flow))
    assert "audit chain" not in bad and "step states" not in bad  # rows and chain agree with each other
    case = await Case.get(id=flow.case_id)
    assert f"checkpoint #{case.audit_seq} head" in bad, bad


async def test_a_step_state_the_chain_does_not_explain_fails_verify(flow: Flow) -> None:
    assert not _failed(await _verify(flow))
    # The guarantee letter marked done without a signature: no entry says so.
    await CaseStep.filter(case_id=flow.case_id, step_id="guarantee").update(
        status="done", outcome="signed", done_by=EMPLOYEE, documents_signed=["guarantee_letter"])
    bad = _failed(await _verify(flow))
    assert set(bad) == {"step states"}, bad
    assert "step guarantee status is 'done', the chain says 'active'" in bad["step states"]


async def test_a_case_row_the_chain_does_not_explain_fails_verify(flow: Flow) -> None:
    await Case.filter(id=flow.case_id).update(reason="员工主动辞职")
    bad = _failed(await _verify(flow))
    assert set(bad) == {"step states"} and "reason" in bad["step states"], bad


async def test_an_entry_the_engine_would_not_have_written_fails_verify(flow: Flow) -> None:
    # A forged approval inserted into the chain (hashes recomputed) before anyone could approve.
    entry = next(e for e in await AuditEntry.filter(case_id=flow.case_id, kind="step_done")
                 if e.data.get("step_id") == "performance_review")
    data = dict(entry.data)
    data["actor_id"] = EMPLOYEE
    data["actor_roles"] = ["employee"]
    await AuditEntry.filter(id=entry.id).update(data=data)
    await _rehash_from(flow.case_id, entry.seq)
    bad = _failed(await _verify(flow))
    assert "audit chain" not in bad
    assert f"entry #{entry.seq} (step_done) does not follow" in bad["step states"], bad


async def test_sweep_signs_only_open_cases_that_moved(flow: Flow) -> None:
    keys = keys_for(flow.settings)
    assert await checkpoint_open_cases(keys) == 1
    await Case.filter(id=flow.case_id).update(status="cancelled")
    await Case.filter(id=flow.case_id).update(audit_seq=999)  # closed: the sweep leaves it alone
    assert await checkpoint_open_cases(keys) == 0


async def test_replay_explains_every_kind_of_decision(flow: Flow) -> None:
    """Rejections, views, manual and timer reminders, alerts, the fallback path with its replaced
    steps, a close and a cancel: each replays to exactly the stored rows (no false alarm)."""
    service = flow.service
    emp = await Employee.get(employee_id="E006")
    await service.start_case(employee=emp, template_id="misconduct", last_day=date(2025, 7, 31),
                             reason="严重违纪", created_by=HR)
    case = await Case.get(employee_id=emp.id, template_id="misconduct")
    now = datetime.now(UTC)
    hr = frozenset({Role.HR})

    async def apply(event: Any) -> None:
        out = await service.apply(case.id, lambda c, s: event, actor=HR)
        assert out.ok, out.refusal

    async def agrees() -> None:
        fresh = await Case.get(id=case.id)
        ok, detail = await check_case_state(fresh, service.templates)
        assert ok, detail

    await apply(Viewed("termination_notice", "E006", frozenset({Role.EMPLOYEE}), now))
    await apply(Remind(HR, hr, now + timedelta(hours=1)))
    for kind, hours in (("remind", 30), ("alert", 80), ("fallback", 200)):
        await apply(TimerFired("termination_notice", kind, now + timedelta(hours=hours)))  # type: ignore[arg-type]
    await agrees()
    await apply(Evidence("registered_mail", "receipt_scan", "K1", "ab" * 32, 900, "application/pdf", HR, hr,
                         now + timedelta(hours=200, minutes=30)))
    await agrees()  # the upload entry replays too
    await apply(Act("registered_mail", "complete", HR, hr, {"tracking_number": "EMS123",
                                                             "delivery_result": "delivered"},
                    now + timedelta(hours=201)))
    await agrees()  # the replay also closes the newspaper notice as not needed, as the rows say
    steps = {s.step_id: s for s in await CaseStep.filter(case_id=case.id)}
    assert steps["separation_certificate"].outcome == "replaced"
    assert (steps["newspaper_notice"].status, steps["newspaper_notice"].outcome) == ("not_needed", "branch")
    # A refused attempt leaves an entry that changes nothing; the replay skips it, rows still agree.
    out = await service.apply(case.id, lambda c, s: Cancel(EMPLOYEE, frozenset({Role.EMPLOYEE}), "x", now),
                              actor=EMPLOYEE)
    assert not out.ok
    await agrees()
    await apply(Cancel(HR, hr, "改为协商解除", now + timedelta(hours=202)))
    await agrees()

    # A rejection, then the approval on a second try.
    emp = await Employee.get(employee_id="E007")
    started = await service.start_case(employee=emp, template_id="probation", last_day=date(2025, 7, 31),
                                       reason="绩效未达标", created_by=HR)
    case = await Case.get(id=started.case_id)
    mgr = frozenset({Role.MANAGER})
    await apply(Act("application", "submit", "E007", frozenset({Role.EMPLOYEE}),
                    {"last_working_day": "2025-07-31", "reason": "个人原因"}, now))
    await apply(Act("performance_review", "reject", "E008", mgr, {"reason": "请补充考核数据"}, now))
    await apply(Act("performance_review", "approve", "E008", mgr, {"result": "60%", "opinion": ""}, now))
    await agrees()
    assert (await CaseStep.get(case_id=case.id, step_id="performance_review")).rejections == 1


async def test_a_closed_case_without_its_closing_checkpoint_fails_verify(flow: Flow) -> None:
    cancel = Cancel(HR, frozenset({Role.HR}), "协商", datetime.now(UTC))
    out = await flow.service.apply(flow.case_id, lambda c, s: cancel, actor=HR)
    assert out.ok
    assert not _failed(await _verify(flow))  # the hook signed the final head when it closed
    await Checkpoint.filter(case_id=flow.case_id).delete()
    assert set(_failed(await _verify(flow))) == {"closing checkpoint"}
