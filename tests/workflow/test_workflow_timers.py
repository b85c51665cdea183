"""Timers and the fallback path on the bundled misconduct template (Case A)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from workflow import engine
from workflow.decision import Decision, Refusal
from workflow.effects import Audit, Notify, SetTimer
from workflow.events import Act, DocumentSigned, Evidence, Remind, TimerFired, Viewed
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


def uploaded(template, state: CaseState, step_id: str, field: str, hours: float, digest: str = "ab" * 32
             ) -> CaseState:
    """HR's scan for a file field, as the upload page records it (the bytes stay in storage)."""
    return ok(template, state, Evidence(step_id, field, "U1", digest, 1234, "image/jpeg", *HR, at(hours))).state


def noop(template, state: CaseState, event) -> None:
    d = ok(template, state, event)
    assert d.effects == ()
    assert d.state is state


def test_start_sets_policy_timers_including_fallback(misconduct):
    d = engine.start(misconduct, "case-a", T0)
    timers = {(e.step_id, e.kind): e.due_at for e in d.effects if isinstance(e, SetTimer)}
    assert timers == {
        ("termination_notice", "remind"): at(24),
        ("termination_notice", "remind_due"): at(68),  # 4 h before its 72-hour deadline
        ("termination_notice", "alert"): at(72),
        ("termination_notice", "fallback"): at(168),
        ("employee_response", "remind"): at(24),
        ("employee_response", "remind_due"): at(68),
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


def test_fallback_opens_mail_first_and_newspaper_waits_for_its_result(misconduct):
    state = engine.start(misconduct, "case-a", T0).state
    d = ok(misconduct, state, TimerFired("termination_notice", "fallback", at(168)))
    assert d.state.fallback_started
    assert d.state.steps["registered_mail"].status == "active"
    # A newspaper notice is the last resort: it does not open beside the mail.
    assert d.state.steps["newspaper_notice"].status == "locked"
    notes = [(e.role, e.step_id, e.purpose) for e in d.effects if isinstance(e, Notify)]
    assert (Role.HR, "termination_notice", "fallback") in notes
    assert (Role.HR, "registered_mail", "step") in notes and (Role.HR, "newspaper_notice", "step") not in notes
    assert [e.kind for e in d.effects if isinstance(e, Audit)] == ["fallback_started"]
    noop(misconduct, d.state, TimerFired("termination_notice", "fallback", at(169)))
    early = engine.apply(misconduct, d.state, Act("newspaper_notice", "complete", *HR,
                                                   {"newspaper": "法制日报", "published_on": "2025-01-20",
                                                    "scan": "f-1"}, at(170)))
    assert isinstance(early, Refusal) and early.code == "locked" and early.missing == ("registered_mail",)


MAIL = {"tracking_number": "EA123456789CN"}


def test_registered_mail_delivered_stands_in_and_closes_the_newspaper_as_not_needed(misconduct):
    state = engine.start(misconduct, "case-a", T0).state
    state = ok(misconduct, state, TimerFired("termination_notice", "fallback", at(168))).state
    missing = engine.apply(misconduct, state, Act("registered_mail", "complete", *HR, {}, at(170)))
    assert isinstance(missing, Refusal) and missing.code == "missing_data"
    assert missing.missing == ("delivery_result", "tracking_number", "receipt_scan")
    # A file field takes an upload only: text typed in its place is refused.
    typed = engine.apply(misconduct, state, Act("registered_mail", "complete", *HR,
                                                {**MAIL, "delivery_result": "delivered", "receipt_scan": "scan.jpg"},
                                                at(170)))
    assert isinstance(typed, Refusal) and typed.code == "missing_data" and typed.missing == ("receipt_scan",)
    state = uploaded(misconduct, state, "registered_mail", "receipt_scan", 169)
    assert state.steps["registered_mail"].data == {"receipt_scan": "sha256:" + "ab" * 32}
    bad = engine.apply(misconduct, state, Act("registered_mail", "complete", *HR,
                                              {**MAIL, "delivery_result": "lost"}, at(170)))
    assert isinstance(bad, Refusal) and bad.code == "missing_data" and bad.missing == ("delivery_result",)
    d = ok(misconduct, state, Act("registered_mail", "complete", *HR, {**MAIL, "delivery_result": "delivered"},
                                  at(170)))
    assert d.state.steps["registered_mail"].outcome == "delivered"
    for sid in ("termination_notice", "separation_certificate"):
        step = d.state.steps[sid]
        assert step.status == "done" and step.outcome == "replaced"
        assert step.data == {"replaced_by": "registered_mail"}
    news = d.state.steps["newspaper_notice"]
    assert (news.status, news.outcome, news.data) == (
        "not_needed", "branch", {"step": "registered_mail", "outcome": "delivered"})
    assert d.audit is not None and d.audit.data["not_needed"] == ["newspaper_notice"]
    assert d.state.steps["deregistration"].status == "active"
    late = engine.apply(misconduct, d.state, Act("newspaper_notice", "complete", *HR, {}, at(170)))
    assert isinstance(late, Refusal) and late.code == "not_needed" and "邮寄送达" in late.message_zh
    d = ok(misconduct, d.state, Act("deregistration", "complete", *HR, {"receipt_number": "R-9"}, at(171)))
    assert d.state.status == "completed"
    # the optional response and the handover are closed with the case, not left "in progress"
    for sid in ("employee_response", "handover"):
        assert (d.state.steps[sid].status, d.state.steps[sid].outcome) == ("not_needed", "case_completed")
    assert d.audit is not None and set(d.audit.data["not_needed"]) == {"employee_response", "handover"}
    cancelled = {e.step_id for e in d.effects if type(e).__name__ == "CancelTimers"}
    assert {"deregistration", "handover", "employee_response"} <= cancelled
    assert not d.state.active_steps()


def test_mail_returned_opens_the_newspaper_which_then_stands_in(misconduct):
    state = engine.start(misconduct, "case-a", T0).state
    state = ok(misconduct, state, TimerFired("termination_notice", "fallback", at(168))).state
    state = uploaded(misconduct, state, "registered_mail", "receipt_scan", 199)
    d = ok(misconduct, state, Act("registered_mail", "complete", *HR, {**MAIL, "delivery_result": "returned"},
                                  at(200)))
    # Returned mail proves nothing: the signatures are not replaced, the newspaper notice opens.
    assert d.state.steps["termination_notice"].status == "active"
    assert d.state.steps["newspaper_notice"].status == "active"
    assert (Role.HR, "newspaper_notice", "step") in [(e.role, e.step_id, e.purpose) for e in d.effects
                                                      if isinstance(e, Notify)]
    scanned = uploaded(misconduct, d.state, "newspaper_notice", "scan", 299, "cd" * 32)
    d = ok(misconduct, scanned, Act("newspaper_notice", "complete", *HR,
                                    {"newspaper": "法制日报", "published_on": "2025-02-01"}, at(300)))
    assert d.state.steps["newspaper_notice"].data["scan"] == "sha256:" + "cd" * 32
    assert d.state.steps["termination_notice"].data == {"replaced_by": "newspaper_notice"}
    d = ok(misconduct, d.state, Act("deregistration", "complete", *HR, {"receipt_number": "R-9"}, at(301)))
    assert d.state.status == "completed"
    assert d.state.steps["registered_mail"].outcome == "returned"


def test_employee_signs_after_all_and_the_unused_fallback_closes_as_not_needed(misconduct):
    state = engine.start(misconduct, "case-a", T0).state
    state = ok(misconduct, state, TimerFired("termination_notice", "fallback", at(168))).state
    emp = ("e1", frozenset({Role.EMPLOYEE}))
    for step, doc in (("termination_notice", "termination_notice"),
                      ("separation_certificate", "separation_certificate")):
        state = ok(misconduct, state, DocumentSigned(step, doc, *emp, at(170))).state
    state = ok(misconduct, state, Act("deregistration", "complete", *HR, {"receipt_number": "R-1"}, at(171))).state
    state = ok(misconduct, state, DocumentSigned("rights_notice", "rights_notice", *emp, at(172))).state
    d = ok(misconduct, state, Act("rights_notice", "acknowledge", *emp, {}, at(173)))
    assert d.state.status == "completed"
    for sid in ("registered_mail", "newspaper_notice"):
        assert (d.state.steps[sid].status, d.state.steps[sid].outcome) == ("not_needed", "case_completed")
    # The mail card HR holds is updated to say so; the newspaper one never went out.
    updated = {e.step_id for e in d.effects if type(e).__name__ == "UpdateStep"}
    assert "registered_mail" in updated and "newspaper_notice" not in updated


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
