"""SealFailed: a signature whose document could not be sealed stops counting (issue 11, finding 4)."""

from __future__ import annotations

from workflow.effects import Audit, CancelTimers, Notify, UpdateStep
from workflow.events import SealFailed
from workflow.model import Role

from .test_workflow_engine import EMP, at, ok, probation, sign, statuses, until_letter  # noqa: F401


def test_seal_failed_reopens_the_step_and_relocks_what_it_started(probation):  # noqa: F811
    state = ok(probation, until_letter(probation), sign("guarantee", "guarantee_letter", EMP, 5)).state
    assert statuses(state)["guarantee"] == "done" and statuses(state)["backpay"] == "active"
    decision = ok(probation, state, SealFailed("guarantee", "guarantee_letter", "17", "TSA down", at(6)))
    new = decision.state
    assert statuses(new)["guarantee"] == "active" and statuses(new)["backpay"] == "locked"
    g = new.steps["guarantee"]
    assert g.documents_signed == frozenset() and g.done_at is None and g.done_by is None and g.outcome is None
    assert new.steps["backpay"].activated_at is None
    notes = [e for e in decision.effects if isinstance(e, Notify)]
    assert {(n.role, n.purpose) for n in notes} == {(Role.EMPLOYEE, "step"), (Role.HR, "seal_failed")}
    assert all("17" in n.key for n in notes)  # distinct from the step's first card, per give-up
    assert CancelTimers("backpay") in decision.effects and UpdateStep("guarantee") in decision.effects
    audit = [e for e in decision.effects if isinstance(e, Audit)]
    assert audit[-1].kind == "seal_failed" and audit[-1].data["reopened"] is True
    # Signing again completes the step and starts backpay again.
    again = ok(probation, new, sign("guarantee", "guarantee_letter", EMP, 7)).state
    assert statuses(again)["guarantee"] == "done" and statuses(again)["backpay"] == "active"


def test_seal_failed_for_a_document_not_signed_changes_nothing(probation):  # noqa: F811
    state = until_letter(probation)
    decision = ok(probation, state, SealFailed("guarantee", "guarantee_letter", "1", "x", at(6)))
    assert decision.state == state and decision.effects == ()
