"""StartFallback (HR's /fallback) and Evidence (an uploaded scan) in the pure engine on Case A's template."""

from __future__ import annotations

from tests.workflow.test_workflow_timers import EMP, HR, T0, at
from workflow import engine
from workflow.decision import Decision, Refusal
from workflow.effects import Audit, Notify
from workflow.events import Act, Evidence, StartFallback, TimerFired
from workflow.templates import load_templates

FLOW = load_templates()["misconduct"]
DIGEST = "0f" * 32


def _ev(step: str = "registered_mail", field: str = "receipt_scan", who: tuple = HR, digest: str = DIGEST,
        hours: float = 2) -> Evidence:
    return Evidence(step, field, "K1", digest, 10, "image/jpeg", *who, at(hours))


def test_hr_starts_the_fallback_with_a_reason_and_mail_comes_first() -> None:
    state = engine.start(FLOW, "a", T0).state
    for event, code in [
        (StartFallback(*EMP, "拒签", at(1)), "wrong_role"),
        (StartFallback(*HR, "   ", at(1)), "reason_required"),
    ]:
        r = engine.apply(FLOW, state, event)
        assert isinstance(r, Refusal) and r.code == code
    d = engine.apply(FLOW, state, StartFallback(*HR, "员工当面拒签", at(1)))
    assert isinstance(d, Decision) and d.state.fallback_started
    assert d.state.steps["registered_mail"].status == "active"
    assert d.state.steps["newspaper_notice"].status == "locked"
    assert next(e for e in d.effects if isinstance(e, Audit)).data["reason"] == "员工当面拒签"
    assert any(isinstance(e, Notify) and e.purpose == "fallback" for e in d.effects)
    twice = engine.apply(FLOW, d.state, StartFallback(*HR, "again", at(2)))
    assert isinstance(twice, Refusal) and twice.code == "already_done"
    # The 7-day timer after HR's start is a harmless no-op.
    late = engine.apply(FLOW, d.state, TimerFired("termination_notice", "fallback", at(168)))
    assert isinstance(late, Decision) and late.effects == ()


def test_evidence_is_hrs_on_an_open_step_and_names_a_file_field() -> None:
    state = engine.start(FLOW, "a", T0).state
    before = engine.apply(FLOW, state, _ev())
    assert isinstance(before, Refusal) and before.code == "not_active"  # the fallback has not started
    state = engine.apply(FLOW, state, StartFallback(*HR, "拒签", at(1))).state
    for event, code in [
        (_ev(who=EMP), "wrong_role"),
        (_ev(field="tracking_number"), "bad_action"),
        (_ev(digest="not-a-hash"), "bad_action"),
        (_ev(step="newspaper_notice", field="scan"), "locked"),
    ]:
        r = engine.apply(FLOW, state, event)
        assert isinstance(r, Refusal) and r.code == code, (event, r)
    d = engine.apply(FLOW, state, _ev())
    assert isinstance(d, Decision)
    audit = next(e for e in d.effects if isinstance(e, Audit))
    assert audit.kind == "evidence_uploaded" and audit.data["sha256"] == DIGEST and audit.data["upload_key"] == "K1"
    # Another upload's hash typed into the form does not count; the recorded one does, sent or not.
    forged = engine.apply(FLOW, d.state, Act("registered_mail", "complete", *HR, {
        "delivery_result": "delivered", "tracking_number": "E1", "receipt_scan": "sha256:" + "aa" * 32}, at(3)))
    assert isinstance(forged, Refusal) and forged.missing == ("receipt_scan",)
    done = engine.apply(FLOW, d.state, Act("registered_mail", "complete", *HR, {
        "delivery_result": "delivered", "tracking_number": "E1"}, at(3)))
    assert isinstance(done, Decision) and done.state.steps["registered_mail"].data["receipt_scan"] == f"sha256:{DIGEST}"
