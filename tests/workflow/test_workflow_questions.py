"""The engine's side of questions to HR (pure): who may ask and answer, what is recorded, the
reminder timer, refusals that change nothing, JSON round trips."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from workflow import engine
from workflow.decision import Decision, Refusal
from workflow.effects import Audit, CancelTimers, Notify, SetTimer, UpdateStep
from workflow.events import Answer, Ask, Cancel, TimerFired
from workflow.model import MAX_QUESTION_CHARS, MAX_QUESTIONS, CaseState, Role
from workflow.schema import compile_template
from workflow.templates import load_templates

T0 = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)
EMP = frozenset({Role.EMPLOYEE})
HR = frozenset({Role.HR})


@pytest.fixture(scope="module")
def probation():
    return load_templates()["probation"]


def _started(template) -> CaseState:
    return engine.start(template, "OB-TEST22", T0).state


def _ask(template, state, text="保证书必须签吗？", at=T0, roles=EMP, step_id=None):
    return engine.apply(template, state, Ask("e1", roles, text, at, step_id))


def test_employee_asks_hr_is_notified_and_a_reminder_is_set(probation) -> None:
    state = _started(probation)
    d = _ask(probation, state, at=T0 + timedelta(hours=1))
    assert isinstance(d, Decision)
    q = d.state.questions["Q1"]
    assert (q.asked_by, q.text, q.step_id, q.answered) == ("e1", "保证书必须签吗？", "application", False)
    assert Notify(Role.HR, "Q1", "question", "OB-TEST22:Q1:question:1:hr") in d.effects
    timer = next(e for e in d.effects if isinstance(e, SetTimer))
    assert (timer.step_id, timer.kind, timer.due_at) == ("Q1", "question", T0 + timedelta(hours=25))
    audit = d.audit
    assert audit is not None and audit.kind == "question_asked" and audit.data["text"] == "保证书必须签吗？"
    assert audit.data["active_steps"] == ["application"]
    assert d.state.steps == state.steps and state.questions == {}  # input untouched
    # A second question gets the next number; the card it was asked from is kept.
    d2 = _ask(probation, d.state, "交接找谁？", step_id="handover")
    assert isinstance(d2, Decision) and list(d2.state.questions) == ["Q1", "Q2"]
    assert d2.state.questions["Q2"].step_id == "handover"


@pytest.mark.parametrize(("roles", "text", "code"), [
    (frozenset({Role.MANAGER}), "问题", "wrong_role"),
    (HR, "问题", "wrong_role"),
    (EMP, "   ", "missing_data"),
    (EMP, "x" * (MAX_QUESTION_CHARS + 1), "too_long"),
])
def test_bad_questions_are_refused(probation, roles, text, code) -> None:
    r = _ask(probation, _started(probation), text, roles=roles)
    assert isinstance(r, Refusal) and r.code == code


def test_answer_by_hr_only_once(probation) -> None:
    state = _ask(probation, _started(probation)).state
    for roles, qid, text, code in [(EMP, "Q1", "好", "wrong_role"), (HR, "Q7", "好", "unknown_question"),
                                   (HR, "Q1", "", "missing_data")]:
        r = engine.apply(probation, state, Answer(qid, "h1", roles, text, T0))
        assert isinstance(r, Refusal) and r.code == code
    at = T0 + timedelta(hours=2)
    d = engine.apply(probation, state, Answer("Q1", "h1", HR, " 是的，必须签。 ", at))
    assert isinstance(d, Decision)
    q = d.state.questions["Q1"]
    assert (q.answer, q.answered_by, q.answered_at) == ("是的，必须签。", "h1", at)
    assert CancelTimers("Q1") in d.effects and UpdateStep("Q1") in d.effects
    assert any(isinstance(e, Notify) and e.role == Role.EMPLOYEE and e.purpose == "answer" for e in d.effects)
    assert d.audit is not None and d.audit.kind == "question_answered"
    assert d.audit.data["question"] == "保证书必须签吗？" and d.audit.data["text"] == "是的，必须签。"
    again = engine.apply(probation, d.state, Answer("Q1", "h1", HR, "再说一次", at))
    assert isinstance(again, Refusal) and again.code == "already_done"


def test_question_timer_reminds_once_and_only_while_unanswered(probation) -> None:
    state = _ask(probation, _started(probation)).state
    fired = engine.apply(probation, state, TimerFired("Q1", "question", T0 + timedelta(hours=24)))
    assert isinstance(fired, Decision) and fired.state.questions["Q1"].reminded
    assert [e for e in fired.effects if isinstance(e, Notify)] == [
        Notify(Role.HR, "Q1", "question_reminder", "OB-TEST22:Q1:question_reminder:timer:hr")]
    assert fired.audit is not None and fired.audit.kind == "question_reminded"
    again = engine.apply(probation, fired.state, TimerFired("Q1", "question", T0 + timedelta(hours=25)))
    assert isinstance(again, Decision) and not again.effects
    answered = engine.apply(probation, state, Answer("Q1", "h1", HR, "好", T0)).state  # type: ignore[union-attr]
    late = engine.apply(probation, answered, TimerFired("Q1", "question", T0 + timedelta(hours=24)))
    assert isinstance(late, Decision) and not late.effects
    unknown = engine.apply(probation, state, TimerFired("Q9", "question", T0 + timedelta(hours=24)))
    assert isinstance(unknown, Decision) and not unknown.effects


def test_closing_the_case_stops_question_reminders_and_refuses_more(probation) -> None:
    state = _ask(probation, _started(probation)).state
    d = engine.apply(probation, state, Cancel("h1", HR, "撤回", T0))
    assert isinstance(d, Decision) and CancelTimers("Q1") in d.effects and UpdateStep("Q1") in d.effects
    for event in (Ask("e1", EMP, "还在吗", T0), Answer("Q1", "h1", HR, "在", T0)):
        r = engine.apply(probation, d.state, event)
        assert isinstance(r, Refusal) and r.code == "case_closed"


def test_questions_per_case_are_bounded(probation) -> None:
    state = _started(probation)
    for i in range(MAX_QUESTIONS):
        state = _ask(probation, state, f"问题 {i}").state  # type: ignore[union-attr]
    r = _ask(probation, state, "再问一个")
    assert isinstance(r, Refusal) and r.code == "too_many"


def test_round_trips(probation) -> None:
    state = _ask(probation, _started(probation)).state
    state = engine.apply(probation, state, Answer("Q1", "h1", HR, "好", T0)).state  # type: ignore[union-attr]
    assert CaseState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
    assert Audit.from_dict(json.loads(json.dumps(Audit("question_asked", {"text": "问"}).to_dict())))


def test_question_policy_is_template_data(probation) -> None:
    assert probation.policy.question_remind_after_hours == 24
    raw = {"id": "t", "version": 1, "title": {"zh": "测", "en": "t"}, "case_type": "t",
           "policy": {"question_remind_after_hours": 8},
           "steps": [{"id": "a", "title": {"zh": "甲", "en": "a"}, "ask": {"zh": "甲", "en": "a"},
                      "why": {"zh": "甲", "en": "a"}, "role": "employee", "kind": "acknowledge",
                      "deadline_hours": 24}]}
    template = compile_template(raw)
    assert template.policy.question_remind_after_hours == 8
    d = engine.apply(template, engine.start(template, "c", T0).state, Ask("e1", EMP, "问", T0))
    assert isinstance(d, Decision)
    assert next(e for e in d.effects if isinstance(e, SetTimer)).due_at == T0 + timedelta(hours=8)
    with pytest.raises(Exception, match="question_remind_after_hours"):
        compile_template({**raw, "policy": {"question_remind_after_hours": 0}})
