"""JSON round trips of states, effects, decisions and refusals (events are never stored as such: the
audit entry the engine writes for one is what signing/stepcheck turns back into it)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from workflow import engine
from workflow.decision import Decision, Refusal
from workflow.effects import Audit, Notify, SetTimer, effect_from_dict
from workflow.events import (
    Act,
    Close,
    DocumentSigned,
    TimerFired,
    Viewed,
)
from workflow.model import CaseState, Role, StepState
from workflow.templates import load_templates

T0 = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)
EMP = ("e1", frozenset({Role.EMPLOYEE}))


def via_json(data: dict) -> dict:
    return json.loads(json.dumps(data, ensure_ascii=False))


def test_events_accept_role_names_from_the_service():
    event = Viewed("application", "e1", ["employee", "hr"], T0)
    assert event.actor_roles == frozenset({Role.EMPLOYEE, Role.HR})
    with pytest.raises(ValueError):
        Viewed("application", "e1", ["boss"], T0)
    with pytest.raises(TypeError):
        Viewed("application", "e1", "employee", T0)


def test_unknown_types_are_rejected():
    with pytest.raises(ValueError, match="unknown effect type"):
        effect_from_dict({"type": "Explode"})


def test_state_round_trip_through_a_whole_case():
    t = load_templates()["probation"]
    d = engine.start(t, "case-b", T0)
    states = [d.state]
    effects = list(d.effects)
    hr, mgr, fin, hand = (
        ("h1", frozenset({Role.HR})),
        ("m1", frozenset({Role.MANAGER})),
        ("f1", frozenset({Role.FINANCE})),
        ("c1", frozenset({Role.HANDOVER})),
    )
    later = T0 + timedelta(hours=1)
    for event in [
        Viewed("application", *EMP, later),
        Act("application", "submit", *EMP, {"last_working_day": "2025-03-31", "reason": "未达标"}, later),
        Act("performance_review", "reject", *mgr, {"reason": "再核对"}, later),
        Act("performance_review", "approve", *mgr, {"result": "60%"}, later),
        TimerFired("hr_check", "remind", later + timedelta(hours=24)),
        DocumentSigned("handover", "handover_confirmation", *EMP, later),
        Act("hr_check", "complete", *hr, {"unpaid_months": "2"}, later),
        DocumentSigned("handover", "handover_confirmation", *hand, later),
        DocumentSigned("guarantee", "guarantee_letter", *EMP, later),
        Act("backpay", "confirm", *fin, {"payment_reference": "P-1"}, later),
        DocumentSigned("separation_certificate", "separation_certificate", *EMP, later),
        DocumentSigned("rights_notice", "rights_notice", *EMP, later),
        Act("rights_notice", "acknowledge", *EMP, {}, later),
    ]:
        result = engine.apply(t, states[-1], event)
        assert isinstance(result, Decision), result
        assert Decision.from_dict(via_json(result.to_dict())) == result
        states.append(result.state)
        effects.extend(result.effects)
    assert states[-1].status == "completed"
    for state in states:
        assert CaseState.from_dict(via_json(state.to_dict())) == state
    for effect in effects:
        assert effect_from_dict(via_json(effect.to_dict())) == effect
    kinds = {type(e) for e in effects}
    assert {Notify, SetTimer, Audit} <= kinds
    step = states[-1].steps["performance_review"]
    assert step.rejections == 1 and step.done_by == "m1"
    assert states[-1].steps["hr_check"].timers_fired == frozenset({"remind"})


def test_refusal_round_trip():
    t = load_templates()["probation"]
    state = engine.start(t, "case-b", T0).state
    for event in (
        Act("application", "submit", "m1", frozenset({Role.MANAGER}), {}, T0),
        Close("h1", frozenset({Role.HR}), T0),
    ):
        refusal = engine.apply(t, state, event)
        assert isinstance(refusal, Refusal)
        assert Refusal.from_dict(via_json(refusal.to_dict())) == refusal
        assert refusal.message("en") == refusal.message_en and refusal.message() == refusal.message_zh


def test_bad_state_data_is_rejected():
    with pytest.raises(ValueError, match="unknown step status"):
        StepState.from_dict({"status": "half"})
    good = engine.start(load_templates()["probation"], "c", T0).state.to_dict()
    with pytest.raises(ValueError, match="naive"):
        CaseState.from_dict({**good, "started_at": "2025-03-03T01:00:00"})
