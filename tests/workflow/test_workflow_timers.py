"""Timers and the fallback path on the bundled misconduct template (Case A)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from workflow import engine
from workflow.decision import Decision, Refusal
from workflow.effects import Audit, Notify, SetTimer
from workflow.events import Act, DocumentSigned, Remind, TimerFired, Viewed
from workflow.model import CaseState, Role
from workflow.templates import load_templates

T0 = datetime(2025, 5, 6, 2, 0, tzinfo=UTC)
EMP = ("e1", frozenset({Role.EMPLOYEE}))
HR = ("h1", frozenset({Role.HR}))


@pytest.fixture(scope="module")
def misconduct():
    return load_templates()["misconduct"]


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def ok(template, state: CaseState, event) -> Decision:
    result = engine.apply(template, state, event)
    assert isinstance(result, Decision), result
    return result


def noop(template, state: CaseState, event) -> None:
    d = ok(template, state, event)
    assert d.effects == ()
    assert d.state is state


def test_start_sets_policy_timers_including_fallback(misconduct):
    d = engine.start(misconduct, "case-a", T0)
    timers = {(e.step_id, e.kind): e.due_at for e in d.effects if isinstance(e, SetTimer)}
    assert timers == {
        ("termination_notice", "remind"): at(24),
        ("termination_notice", "alert"): at(72),
        ("termination_notice", "fallback"): at(168),
        ("employee_response", "remind"): at(24),
        # employee_response is optional: reminded, but never an alert to HR
    }
    keys = [e.key for e in d.effects if isinstance(e, SetTimer)]
    assert len(set(keys)) == len(keys)


def test_remind_fires_once_when_not_viewed(misconduct):
    state = engine.start(misconduct, "case-a", T0).state
    d = ok(misconduct, state, TimerFired("termination_notice", "remind", at(24)))
    assert [(e.role, e.purpose) for e in d.effects if isinstance(e, Notify)] == [(Role.EMPLOYEE, "reminder")]
    assert d.state.steps["termination_notice"].reminders_sent == 1
    assert [e.kind for e in d.effects if isinstance(e, Audit)] == ["reminder_sent"]
    noop(misconduct, d.state, TimerFired("termination_notice", "remind", at(25)))  # redelivered


def test_remind_skipped_when_viewed(misconduct):
    state = engine.start(misconduct, "case-a", T0).state
    state = ok(misconduct, state, Viewed("termination_notice", *EMP, at(3))).state
    noop(misconduct, state, TimerFired("termination_notice", "remind", at(24)))


def test_alert_goes_to_hr_once(misconduct):
    state = engine.start(misconduct, "case-a", T0).state
    d = ok(misconduct, state, TimerFired("termination_notice", "alert", at(72)))
    assert [(e.role, e.step_id, e.purpose) for e in d.effects if isinstance(e, Notify)] == [
        (Role.HR, "termination_notice", "alert")
    ]
    noop(misconduct, d.state, TimerFired("termination_notice", "alert", at(73)))


def test_stale_timers_are_no_ops(misconduct):
    state = engine.start(misconduct, "case-a", T0).state
    state = ok(misconduct, state, DocumentSigned("termination_notice", "termination_notice", *EMP, at(5))).state
    assert state.steps["termination_notice"].status == "done"
    for kind in ("remind", "alert", "fallback"):
        noop(misconduct, state, TimerFired("termination_notice", kind, at(200)))
    # a timer for a step that is not active yet is stale as well
    noop(misconduct, state, TimerFired("deregistration", "alert", at(200)))


def test_timer_for_unknown_step_is_refused(misconduct):
    state = engine.start(misconduct, "case-a", T0).state
    result = engine.apply(misconduct, state, TimerFired("gone", "remind", at(1)))
    assert isinstance(result, Refusal) and result.code == "unknown_step"


def test_fallback_steps_locked_until_fallback_starts(misconduct):
    state = engine.start(misconduct, "case-a", T0).state
    result = engine.apply(misconduct, state, Act("registered_mail", "complete", *HR, {"tracking_number": "E1"}, at(1)))
    assert isinstance(result, Refusal) and result.code == "not_active"
    assert "补救" in result.message_zh


def test_fallback_activates_fallback_steps_once(misconduct):
    state = engine.start(misconduct, "case-a", T0).state
    d = ok(misconduct, state, TimerFired("termination_notice", "fallback", at(168)))
    assert d.state.fallback_started
    active = {sid for sid, st in d.state.steps.items() if st.status == "active"}
    assert {"registered_mail", "newspaper_notice"} <= active
    notes = [(e.role, e.step_id, e.purpose) for e in d.effects if isinstance(e, Notify)]
    assert (Role.HR, "termination_notice", "fallback") in notes
    assert (Role.HR, "registered_mail", "step") in notes and (Role.HR, "newspaper_notice", "step") in notes
    assert [e.kind for e in d.effects if isinstance(e, Audit)] == ["fallback_started"]
    noop(misconduct, d.state, TimerFired("termination_notice", "fallback", at(169)))


def test_registered_mail_stands_in_for_signatures_and_case_completes(misconduct):
    state = engine.start(misconduct, "case-a", T0).state
    state = ok(misconduct, state, TimerFired("termination_notice", "fallback", at(168))).state
    missing = engine.apply(misconduct, state, Act("registered_mail", "complete", *HR, {}, at(170)))
    assert isinstance(missing, Refusal) and missing.code == "missing_data" and missing.missing == ("tracking_number",)
    d = ok(misconduct, state, Act("registered_mail", "complete", *HR, {"tracking_number": "EA123456789CN"}, at(170)))
    for sid in ("termination_notice", "separation_certificate"):
        step = d.state.steps[sid]
        assert step.status == "done" and step.outcome == "replaced"
        assert step.data == {"replaced_by": "registered_mail"}
    assert d.state.steps["deregistration"].status == "active"
    assert d.state.steps["registered_mail"].data == {"tracking_number": "EA123456789CN"}
    d = ok(misconduct, d.state, Act("deregistration", "complete", *HR, {"receipt_number": "R-9"}, at(171)))
    assert d.state.status == "completed"
    # the unused newspaper step and the optional response stop their timers with the case
    cancelled = {e.step_id for e in d.effects if type(e).__name__ == "CancelTimers"}
    assert {"deregistration", "newspaper_notice", "employee_response"} <= cancelled


def test_manual_remind_ignores_viewed_state(misconduct):
    state = engine.start(misconduct, "case-a", T0).state
    state = ok(misconduct, state, Viewed("termination_notice", *EMP, at(1))).state
    d = ok(misconduct, state, Remind(*HR, at(2)))
    assert {e.step_id for e in d.effects if isinstance(e, Notify)} == {"termination_notice", "employee_response"}


def test_timers_after_case_closed_are_no_ops(misconduct):
    state = engine.start(misconduct, "case-a", T0).state
    from workflow.events import Cancel

    state = ok(misconduct, state, Cancel(*HR, "误发", at(1))).state
    noop(misconduct, state, TimerFired("termination_notice", "remind", at(24)))
    noop(misconduct, state, Viewed("termination_notice", *EMP, at(24)))
