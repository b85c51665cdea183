"""Views are kept per holder and per role; reminders follow the template's rule (policy.remind_to,
policy.remind_before_deadline_hours): the engine alone, no database."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta
from importlib import resources

import pytest

from workflow import engine
from workflow.decision import Decision
from workflow.effects import Audit, Notify, SetTimer
from workflow.events import Act, DocumentSigned, TimerFired, Viewed
from workflow.model import CaseState, Role
from workflow.schema import TemplateProblem, compile_template

T0 = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)
EMP = ("e1", frozenset({Role.EMPLOYEE}))
MGR = ("m1", frozenset({Role.MANAGER}))
HR = ("h1", frozenset({Role.HR}))
F1 = ("f1", frozenset({Role.FINANCE}))


def raw_probation() -> dict:
    return tomllib.loads(resources.files("workflow.templates").joinpath("probation.toml").read_text("utf-8"))


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def ok(template, state: CaseState, event) -> Decision:
    result = engine.apply(template, state, event)
    assert isinstance(result, Decision), result
    return result


def notes(d: Decision) -> list[Notify]:
    return [e for e in d.effects if isinstance(e, Notify)]


def audits(d: Decision) -> list[Audit]:
    return [e for e in d.effects if isinstance(e, Audit)]


@pytest.fixture
def probation():
    return compile_template(raw_probation())


def test_a_view_is_kept_per_holder_and_role_and_once(probation) -> None:
    state = engine.start(probation, "c", T0).state
    d = ok(probation, state, Viewed("application", *EMP, at(1)))
    assert d.state.steps["application"].viewed_by == {"employee:e1"}
    assert audits(d)[0].data["actor_roles"] == ["employee"]
    again = ok(probation, d.state, Viewed("application", *EMP, at(2)))
    assert again.effects == () and again.state is d.state
    assert d.state.steps["application"].viewed_at == at(1)


def test_first_reminder_passes_over_a_holder_who_looked_the_due_one_does_not(probation) -> None:
    state = engine.start(probation, "c", T0).state
    state = ok(probation, state, Viewed("application", *EMP, at(1))).state
    due = ok(probation, state, TimerFired("application", "remind_due", at(20)))
    assert [(n.role, n.purpose, n.skip) for n in notes(due)] == [(Role.EMPLOYEE, "reminder", ())]
    assert audits(due)[0].data["timer"] == "remind_due"
    first = ok(probation, due.state, TimerFired("application", "remind", at(24)))
    assert first.effects == ()  # the one employee looked: nobody left to remind
    # Redelivered timers stay harmless.
    assert ok(probation, first.state, TimerFired("application", "remind_due", at(25))).effects == ()


def test_a_role_of_several_people_skips_only_those_who_looked(probation) -> None:
    state = engine.start(probation, "c", T0).state
    for event in (Act("application", "submit", *EMP, {"last_working_day": "2025-03-31", "reason": "x"}, at(1)),
                  Act("performance_review", "approve", *MGR, {"result": "60%"}, at(2)),
                  Act("hr_check", "complete", *HR, {"unpaid_months": "2"}, at(3)),
                  DocumentSigned("guarantee", "guarantee_letter", *EMP, at(4))):
        state = ok(probation, state, event).state
    assert state.steps["backpay"].status == "active"
    state = ok(probation, state, Viewed("backpay", *F1, at(5))).state
    d = ok(probation, state, TimerFired("backpay", "remind", at(30)))
    assert [(n.role, n.skip) for n in notes(d)] == [(Role.FINANCE, ("f1",))]
    assert audits(d)[0].data["not_to"] == ["f1"]


def test_remind_to_everyone_and_no_due_reminder_are_template_choices() -> None:
    raw = raw_probation()
    raw["policy"]["remind_to"] = "everyone"
    del raw["policy"]["remind_before_deadline_hours"]
    t = compile_template(raw)
    start = engine.start(t, "c", T0)
    assert "remind_due" not in {e.kind for e in start.effects if isinstance(e, SetTimer)}
    state = ok(t, start.state, Viewed("application", *EMP, at(1))).state
    d = ok(t, state, TimerFired("application", "remind", at(24)))
    assert [(n.role, n.skip) for n in notes(d)] == [(Role.EMPLOYEE, ())]


def test_a_step_override_and_a_deadline_too_close_for_a_due_reminder() -> None:
    raw = raw_probation()
    raw["steps"][0]["policy"] = {"remind_before_deadline_hours": 30}  # the application is due in 24 h
    t = compile_template(raw)
    kinds = {e.kind for e in engine.start(t, "c", T0).effects if isinstance(e, SetTimer)}
    assert kinds == {"remind", "alert"}
    raw["policy"]["remind_to"] = "whoever"
    with pytest.raises(TemplateProblem):
        compile_template(raw)
