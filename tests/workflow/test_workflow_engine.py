"""Engine behaviour on the bundled probation template (Case B): flow lock, parallel steps, refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from workflow import engine
from workflow.decision import Decision, Refusal
from workflow.effects import Audit, CancelTimers, Notify, SetTimer, UpdateStep
from workflow.events import Act, Cancel, Close, DocumentSigned, Remind, Start, Viewed
from workflow.model import CaseState, Role
from workflow.schema import compile_template
from workflow.templates import load_templates

T0 = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)
EMP = ("e1", frozenset({Role.EMPLOYEE}))
MGR = ("m1", frozenset({Role.MANAGER}))
HR = ("h1", frozenset({Role.HR}))
FIN = ("f1", frozenset({Role.FINANCE}))
HAND = ("c1", frozenset({Role.HANDOVER}))

APPLICATION = {"last_working_day": "2025-03-31", "reason": "试用期考核未达标"}


@pytest.fixture(scope="module")
def probation():
    return load_templates()["probation"]


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def ok(template, state: CaseState, event) -> Decision:
    result = engine.apply(template, state, event)
    assert isinstance(result, Decision), result
    return result


def refused(template, state: CaseState, event) -> Refusal:
    before = state.to_dict()
    result = engine.apply(template, state, event)
    assert isinstance(result, Refusal), result
    assert state.to_dict() == before
    return result


def act(step: str, action: str, who, data=None, hours: float = 1) -> Act:
    return Act(step, action, who[0], who[1], data or {}, at(hours))


def sign(step: str, document: str, who, hours: float = 1) -> DocumentSigned:
    return DocumentSigned(step, document, who[0], who[1], at(hours))


def statuses(state: CaseState) -> dict[str, str]:
    return {sid: st.status for sid, st in state.steps.items()}


def until_parallel(t) -> CaseState:
    state = engine.start(t, "case-b", T0).state
    state = ok(t, state, act("application", "submit", EMP, APPLICATION)).state
    return ok(t, state, act("performance_review", "approve", MGR, {"result": "完成率 60%，要求 80%"})).state


def until_letter(t) -> CaseState:
    state = until_parallel(t)
    state = ok(t, state, act("hr_check", "complete", HR, {"unpaid_months": "2"})).state
    state = ok(t, state, sign("handover", "handover_confirmation", EMP)).state
    return ok(t, state, sign("handover", "handover_confirmation", HAND)).state


def test_start_activates_first_step_with_notification_and_timers(probation):
    decision = engine.start(probation, "case-b", T0)
    assert statuses(decision.state)["application"] == "active"
    assert {s for s, st in statuses(decision.state).items() if st == "active"} == {"application"}
    notes = [e for e in decision.effects if isinstance(e, Notify)]
    assert notes == [Notify(Role.EMPLOYEE, "application", "step", notes[0].key)]
    timers = {e.kind: e.due_at for e in decision.effects if isinstance(e, SetTimer)}
    # The application is due in 24 h: its reminder before the deadline comes 4 h before that.
    assert timers == {"remind": at(24), "remind_due": at(20), "alert": at(72)}
    assert sum(isinstance(e, Audit) for e in decision.effects) == 1
    assert decision.state.steps["application"].activated_at == T0


def test_start_twice_is_refused(probation):
    state = engine.start(probation, "case-b", T0).state
    assert refused(probation, state, Start(at(1))).code == "already_done"


def test_hr_check_and_handover_run_in_parallel(probation):
    state = engine.start(probation, "case-b", T0).state
    state = ok(probation, state, act("application", "submit", EMP, APPLICATION)).state
    decision = ok(probation, state, act("performance_review", "approve", MGR, {"result": "60%"}))
    active = {s for s, st in statuses(decision.state).items() if st == "active"}
    assert active == {"hr_check", "handover"}
    told = {(e.role, e.step_id) for e in decision.effects if isinstance(e, Notify)}
    # the departing employee signs the handover sheet first; the colleague (the step's own role) is
    # told at their turn, not before; HR may add items to it
    assert told == {(Role.HR, "hr_check"), (Role.EMPLOYEE, "handover"), (Role.HR, "handover")}
    assert CancelTimers("performance_review") in decision.effects
    assert UpdateStep("performance_review") in decision.effects
    # once the employee has signed, it is the colleague's turn: now they get their card
    turn = ok(probation, decision.state, sign("handover", "handover_confirmation", EMP))
    assert {(e.role, e.step_id) for e in turn.effects if isinstance(e, Notify)} == {(Role.HANDOVER, "handover")}
    # either parallel branch can finish first
    handover_first = until_letter_without_hr(probation, decision.state)
    after_handover = ok(probation, handover_first, act("hr_check", "complete", HR, {"unpaid_months": 2}))
    assert after_handover.state.steps["guarantee"].status == "active"


def until_letter_without_hr(t, state: CaseState) -> CaseState:
    state = ok(t, state, sign("handover", "handover_confirmation", EMP)).state
    state = ok(t, state, sign("handover", "handover_confirmation", HAND)).state
    assert state.steps["guarantee"].status == "locked"
    return state


def test_case_b_cannot_close_without_signed_guarantee_letter(probation):
    state = until_letter(probation)
    refusal = refused(probation, state, Close(HR[0], HR[1], at(2)))
    assert refusal.code == "incomplete"
    assert refusal.message_zh.startswith("无法结案：缺少已签署的《离职保证书》（第 5 步 签署离职保证书）")
    assert "missing the signed guarantee letter (step 5 Sign the guarantee letter)" in refusal.message_en
    assert refusal.missing == ("guarantee", "backpay", "separation_certificate", "rights_notice")
    assert refusal.missing_documents == ("guarantee_letter", "separation_certificate", "rights_notice")
    assert refusal.audit is None


def test_finance_cannot_confirm_backpay_before_letter_is_signed(probation):
    state = until_letter(probation)
    refusal = refused(probation, state, act("backpay", "confirm", FIN, {"payment_reference": "P-1"}))
    assert refusal.code == "locked"
    assert refusal.missing == ("guarantee",)
    assert refusal.missing_documents == ("guarantee_letter",)
    assert "《离职保证书》" in refusal.message_zh and "第 5 步" in refusal.message_zh
    assert "guarantee letter" in refusal.message_en


def test_case_b_completes_once_letter_signed_and_backpay_confirmed(probation):
    state = until_letter(probation)
    d = ok(probation, state, sign("guarantee", "guarantee_letter", EMP, 3))
    assert d.state.steps["guarantee"].status == "done"
    assert d.state.steps["guarantee"].outcome == "signed"
    assert d.state.steps["backpay"].status == "active"
    d = ok(probation, d.state, act("backpay", "confirm", FIN, {"payment_reference": "P-1"}, 4))
    assert d.state.steps["separation_certificate"].status == "active"
    assert d.state.steps["rights_notice"].status == "locked"
    d = ok(probation, d.state, sign("separation_certificate", "separation_certificate", EMP, 4))
    assert d.state.steps["rights_notice"].status == "active"
    d = ok(probation, d.state, sign("rights_notice", "rights_notice", EMP, 5))
    assert d.state.status == "open"  # an acknowledge step still needs its acknowledgement
    d = ok(probation, d.state, act("rights_notice", "acknowledge", EMP, hours=6))
    assert d.state.status == "completed"
    assert d.state.closed_at == at(6)
    completion = {e.role for e in d.effects if isinstance(e, Notify) and e.purpose == "completion"}
    assert completion == {Role.EMPLOYEE, Role.HR}
    assert [e.kind for e in d.effects if isinstance(e, Audit)] == ["step_done"]
    assert refused(probation, d.state, Close(HR[0], HR[1], at(7))).code == "case_closed"
    assert refused(probation, d.state, act("rights_notice", "acknowledge", EMP, hours=7)).code == "case_closed"


def test_step_data_and_actor_are_recorded(probation):
    state = until_parallel(probation)
    step = state.steps["performance_review"]
    assert step.done_by == "m1" and step.outcome == "approved" and step.data == {"result": "完成率 60%，要求 80%"}
    assert state.steps["application"].data == APPLICATION


def test_out_of_order_events_change_nothing(probation):
    state = engine.start(probation, "case-b", T0).state
    r = refused(probation, state, sign("guarantee", "guarantee_letter", EMP))
    assert r.code == "locked" and r.missing == ("hr_check",)
    r = refused(probation, state, act("performance_review", "approve", MGR))
    assert r.code == "locked" and "第 1 步 确认收到解除通知并陈述意见" in r.message_zh
    assert refused(probation, state, act("nope", "approve", MGR)).code == "unknown_step"


def test_duplicate_events_change_nothing(probation):
    state = engine.start(probation, "case-b", T0).state
    state = ok(probation, state, act("application", "submit", EMP, APPLICATION)).state
    assert refused(probation, state, act("application", "submit", EMP, APPLICATION)).code == "already_done"
    state = until_letter(probation)
    state = ok(probation, state, sign("guarantee", "guarantee_letter", EMP)).state
    assert refused(probation, state, sign("guarantee", "guarantee_letter", EMP)).code == "already_done"


def test_duplicate_signature_on_two_party_document_is_refused(probation):
    state = until_parallel(probation)
    state = ok(probation, state, sign("handover", "handover_confirmation", EMP)).state
    assert state.steps["handover"].status == "active"
    assert refused(probation, state, sign("handover", "handover_confirmation", EMP)).code == "already_signed"
    state = ok(probation, state, sign("handover", "handover_confirmation", HAND)).state
    assert state.steps["handover"].status == "done"
    assert refused(probation, state, sign("handover", "handover_confirmation", HAND)).code == "already_done"


def test_wrong_role_changes_nothing_but_carries_an_audit_entry(probation):
    state = engine.start(probation, "case-b", T0).state
    r = refused(probation, state, act("application", "submit", MGR, APPLICATION))
    assert r.code == "wrong_role"
    assert r.audit is not None and r.audit.kind == "refused"
    assert r.audit.data["actor_id"] == "m1" and r.audit.data["required_role"] == "employee"
    assert r.audit.data["step_id"] == "application"
    assert "离职员工" in r.message_zh
    state = until_letter(probation)
    # HR must not sign the employee's letter on their behalf
    assert refused(probation, state, sign("guarantee", "guarantee_letter", HR)).code == "wrong_role"
    for event in (Close(*EMP, at(1)), Cancel(*MGR, "x", at(1)), Remind(*FIN, at(1))):
        r = refused(probation, state, event)
        assert r.code == "wrong_role" and r.audit is not None


def test_other_refusals_carry_no_audit(probation):
    state = until_letter(probation)
    for event in (
        act("backpay", "confirm", FIN),
        act("guarantee", "confirm", EMP),
        sign("guarantee", "separation_certificate", EMP),
    ):
        assert refused(probation, state, event).audit is None


def test_sign_step_cannot_be_completed_by_act(probation):
    state = until_letter(probation)
    r = refused(probation, state, act("guarantee", "complete", EMP))
    assert r.code == "bad_action" and "签署页面" in r.message_zh
    r = refused(probation, state, sign("guarantee", "separation_certificate", EMP))
    assert r.code == "bad_action"


def test_action_must_match_step_kind(probation):
    state = engine.start(probation, "case-b", T0).state
    assert refused(probation, state, act("application", "approve", EMP, APPLICATION)).code == "bad_action"


def test_confirm_with_documents_needs_them_signed_first():
    # A confirm step whose document someone else signs (as the handover was before version 2).
    raw = {"id": "t", "version": 1, "title": {"zh": "测", "en": "t"}, "case_type": "t", "steps": [
        {"id": "handover", "title": {"zh": "交接", "en": "h"}, "ask": {"zh": "a", "en": "a"},
         "why": {"zh": "w", "en": "w"}, "role": "handover", "kind": "confirm", "deadline_hours": 24,
         "documents": ["handover_confirmation"], "signed_by": "employee"}]}
    t = compile_template(raw)
    state = engine.start(t, "case-x", T0).state
    r = refused(t, state, act("handover", "confirm", HAND))
    assert r.code == "missing_documents"
    assert r.missing == ("handover_confirmation",)
    assert "《工作交接确认单》" in r.message_zh
    state = ok(t, state, sign("handover", "handover_confirmation", EMP)).state
    assert state.steps["handover"].documents_signed == frozenset({"handover_confirmation"})
    assert ok(t, state, act("handover", "confirm", HAND)).state.steps["handover"].status == "done"


def test_form_fields_are_required_and_typed(probation):
    state = engine.start(probation, "case-b", T0).state
    r = refused(probation, state, act("application", "submit", EMP, {"reason": "  "}))
    assert r.code == "missing_data" and r.missing == ("last_working_day", "reason")
    assert "最后工作日" in r.message_zh
    r = refused(probation, state, act("application", "submit", EMP, {"last_working_day": "31/03", "reason": "x"}))
    assert r.code == "missing_data" and r.missing == ("last_working_day",) and "格式不正确" in r.message_zh
    state = until_parallel(probation)
    assert refused(probation, state, act("hr_check", "complete", HR, {"unpaid_months": "two"})).code == "missing_data"


def test_reject_needs_reason_and_alerts_hr(probation):
    state = engine.start(probation, "case-b", T0).state
    state = ok(probation, state, act("application", "submit", EMP, APPLICATION)).state
    assert refused(probation, state, act("performance_review", "reject", MGR, {})).code == "reason_required"
    d = ok(probation, state, act("performance_review", "reject", MGR, {"reason": "数据有误"}))
    step = d.state.steps["performance_review"]
    assert step.status == "active" and step.rejections == 1 and step.outcome == "rejected"
    assert [(e.role, e.purpose) for e in d.effects if isinstance(e, Notify)] == [(Role.HR, "rejected")]
    assert d.audit is not None and d.audit.data["reason"] == "数据有误"
    d2 = ok(probation, d.state, act("performance_review", "reject", MGR, {"reason": "仍有误"}))
    keys = [e.key for e in d.effects + d2.effects if isinstance(e, Notify)]
    assert len(set(keys)) == 2  # each rejection is a separate message, not deduplicated away
    d3 = ok(probation, d2.state, act("performance_review", "approve", MGR, {"result": "60%"}))
    assert d3.state.steps["performance_review"].status == "done"
    assert d3.state.steps["performance_review"].rejections == 2


def test_cancel_needs_reason_and_closes_everything(probation):
    state = until_parallel(probation)
    assert refused(probation, state, Cancel(*HR, " ", at(2))).code == "reason_required"
    d = ok(probation, state, Cancel(*HR, "员工撤回离职", at(2)))
    assert d.state.status == "cancelled" and d.state.closed_at == at(2)
    assert {e.step_id for e in d.effects if isinstance(e, CancelTimers)} == {"hr_check", "handover"}
    assert {e.role for e in d.effects if isinstance(e, Notify)} == {Role.EMPLOYEE, Role.HR, Role.HANDOVER}
    r = refused(probation, d.state, act("hr_check", "complete", HR, {"unpaid_months": "2"}))
    assert r.code == "case_closed" and "撤销" in r.message_zh


def test_viewed_is_recorded_once(probation):
    state = engine.start(probation, "case-b", T0).state
    d = ok(probation, state, Viewed("application", *EMP, at(2)))
    assert d.state.steps["application"].viewed_at == at(2)
    assert [type(e) for e in d.effects] == [Audit]
    again = ok(probation, d.state, Viewed("application", *EMP, at(3)))
    assert again.effects == () and again.state is d.state
    assert refused(probation, state, Viewed("application", *MGR, at(2))).code == "wrong_role"


def test_manual_remind_reaches_every_active_step(probation):
    state = until_parallel(probation)
    d = ok(probation, state, Remind(*HR, at(5)))
    told = {(e.role, e.step_id, e.purpose) for e in d.effects if isinstance(e, Notify)}
    # handover sheet unsigned: the employee is the one who must act next
    assert told == {(Role.HR, "hr_check", "reminder"), (Role.EMPLOYEE, "handover", "reminder")}
    assert d.state.steps["hr_check"].reminders_sent == 1
    d2 = ok(probation, d.state, Remind(*HR, at(6)))
    assert d2.state.steps["hr_check"].reminders_sent == 2
    keys = [e.key for e in d.effects + d2.effects if isinstance(e, Notify)]
    assert len(set(keys)) == len(keys)


def test_engine_does_not_mutate_inputs(probation):
    state = until_parallel(probation)
    snapshot = state.to_dict()
    data = {"unpaid_months": "2", "extra": {"nested": ["a"]}}
    event = act("hr_check", "complete", HR, data)
    d = ok(probation, state, event)
    assert state.to_dict() == snapshot
    data["extra"]["nested"].append("b")
    event.data["extra"]["nested"].append("c")
    assert d.state.steps["hr_check"].data == {"unpaid_months": "2", "extra": {"nested": ["a"]}}


def test_float_data_is_rejected_at_the_door():
    with pytest.raises(TypeError, match="decimal strings"):
        Act("hr_check", "complete", "h1", frozenset({Role.HR}), {"amount": 1050.0}, T0)


def test_naive_times_are_rejected():
    with pytest.raises(ValueError, match="timezone-aware"):
        Start(datetime(2025, 1, 1))


def test_times_are_normalised_to_utc(probation):
    from zoneinfo import ZoneInfo

    shanghai = datetime(2025, 3, 3, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    d = engine.start(probation, "case-b", shanghai)
    assert d.state.started_at == T0 and d.state.started_at.tzinfo is UTC


def test_every_changing_decision_has_exactly_one_audit(probation):
    state = engine.start(probation, "case-b", T0).state
    events = [
        Viewed("application", *EMP, at(1)),
        act("application", "submit", EMP, APPLICATION),
        act("performance_review", "reject", MGR, {"reason": "再核对"}),
        act("performance_review", "approve", MGR, {"result": "60%"}),
        Remind(*HR, at(2)),
        sign("handover", "handover_confirmation", EMP),
        act("hr_check", "complete", HR, {"unpaid_months": "2"}),
        sign("handover", "handover_confirmation", HAND),
        sign("guarantee", "guarantee_letter", EMP),
        act("backpay", "confirm", FIN, {"payment_reference": "P-1"}),
        sign("separation_certificate", "separation_certificate", EMP),
        sign("rights_notice", "rights_notice", EMP),
        act("rights_notice", "acknowledge", EMP),
    ]
    for event in events:
        d = ok(probation, state, event)
        assert sum(isinstance(e, Audit) for e in d.effects) == 1, event
        state = d.state
    assert state.status == "completed"


def test_why_blocked_and_deadline_helpers(probation):
    state = until_letter(probation)
    assert engine.why_blocked(probation, state, "guarantee") is None
    blocked = engine.why_blocked(probation, state, "backpay")
    assert blocked is not None and blocked.code == "locked"
    assert engine.deadline_of(probation, state, "guarantee") == at(1) + timedelta(hours=24)
    assert engine.deadline_of(probation, state, "backpay") is None
    missing = engine.missing_for_completion(probation, state)
    assert missing is not None and missing.missing[0] == "guarantee"


def test_template_mismatch_is_a_programming_error(probation):
    other = load_templates()["resignation"]
    state = engine.start(probation, "case-b", T0).state
    with pytest.raises(ValueError, match="uses template"):
        engine.apply(other, state, Start(T0))
