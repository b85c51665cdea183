"""Reopen (HR redoes a finished step) and Note (audit only) on the bundled probation template."""

from __future__ import annotations

import pytest

from tests.workflow.test_workflow_engine import (
    EMP,
    HR,
    act,
    at,
    ok,
    refused,
    sign,
    statuses,
    until_parallel,
)
from workflow.effects import Audit, CancelTimers, Notify, SetTimer, UpdateStep
from workflow.events import Cancel, Note, Reopen
from workflow.templates import load_templates


@pytest.fixture(scope="module")
def probation():
    return load_templates()["probation"]


def after_hr_check(t):
    return ok(t, until_parallel(t), act("hr_check", "complete", HR, {"unpaid_months": "2"}, hours=2)).state


def test_reopen_relocks_the_letter_and_reactivation_updates_its_cards(probation):
    state = after_hr_check(probation)
    assert statuses(state)["guarantee"] == "active"
    decision = ok(probation, state, Reopen("hr_check", HR[0], HR[1], "入职日期录错", at(3)))
    new = statuses(decision.state)
    assert new["hr_check"] == "active" and new["guarantee"] == "locked"
    assert decision.state.steps["hr_check"].done_by is None
    assert CancelTimers("guarantee") in decision.effects and UpdateStep("guarantee") in decision.effects
    assert UpdateStep("hr_check") in decision.effects
    audit = decision.audit
    assert audit is not None and audit.kind == "step_reopened"
    assert audit.data["relocked"] == ["guarantee"] and audit.data["reason"] == "入职日期录错"

    # Done again: the letter opens again; its existing cards are updated in place (same notify key) and
    # its timers get new keys (the first ones exist, cancelled).
    again = ok(probation, decision.state, act("hr_check", "complete", HR, {"unpaid_months": "1"}, hours=4))
    assert statuses(again.state)["guarantee"] == "active"
    assert UpdateStep("guarantee") in again.effects
    first = ok(probation, until_parallel(probation), act("hr_check", "complete", HR, {"unpaid_months": "2"}))
    keys = {e.key for e in first.effects if isinstance(e, SetTimer) and e.step_id == "guarantee"}
    new_keys = {e.key for e in again.effects if isinstance(e, SetTimer) and e.step_id == "guarantee"}
    assert keys and new_keys and not keys & new_keys
    notify = [e.key for e in again.effects if isinstance(e, Notify) and e.step_id == "guarantee"]
    assert notify and set(notify) <= {e.key for e in first.effects if isinstance(e, Notify)}


def test_reopen_refusals_change_nothing(probation):
    state = after_hr_check(probation)
    # Only HR; a step not done yet; an unknown step.
    assert refused(probation, state, Reopen("hr_check", EMP[0], EMP[1], "", at(3))).code == "wrong_role"
    assert refused(probation, state, Reopen("guarantee", HR[0], HR[1], "", at(3))).code == "not_active"
    assert refused(probation, state, Reopen("nope", HR[0], HR[1], "", at(3))).code == "unknown_step"
    # Once the letter is signed, the HR check it rests on cannot be redone.
    signed = ok(probation, state, sign("guarantee", "guarantee_letter", EMP, hours=3)).state
    refusal = refused(probation, signed, Reopen("hr_check", HR[0], HR[1], "", at(4)))
    assert refusal.code == "not_reopenable" and "已签署" in refusal.message_zh
    # A step whose dependants are done: the manager's review (the HR check after it is done).
    refusal = refused(probation, state, Reopen("performance_review", HR[0], HR[1], "", at(3)))
    assert refusal.code == "not_reopenable" and "已完成" in refusal.message_zh


def test_note_records_and_moves_nothing(probation):
    state = until_parallel(probation)
    decision = ok(probation, state, Note("backpay_blocked", HR[0], HR[1], {"months": ["2026-07"]}, at(2)))
    assert decision.state == state
    assert [type(e) for e in decision.effects] == [Audit]
    assert decision.audit is not None and decision.audit.data["months"] == ["2026-07"]
    with pytest.raises(ValueError, match="unknown note kind"):
        Note("step_done", HR[0], HR[1], {}, at(2))  # a note cannot pass for the engine's own entries
    closed = ok(probation, state, Cancel(HR[0], HR[1], "撤回", at(2))).state
    assert refused(probation, closed, Note("backpay_blocked", HR[0], HR[1], {}, at(3))).code == "case_closed"
