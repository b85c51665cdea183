"""Random event sequences against every bundled template: invariants that must hold whatever arrives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workflow import engine
from workflow.decision import Decision, Refusal
from workflow.effects import Audit, Notify, SetTimer
from workflow.events import Act, Cancel, Close, DocumentSigned, Remind, TimerFired, Viewed
from workflow.model import CaseState, Role
from workflow.templates import load_templates

TEMPLATES = load_templates()
T0 = datetime(2025, 1, 6, 1, 0, tzinfo=UTC)
SAMPLE = {"text": "x", "textarea": "说明", "date": "2025-01-31", "number": "2", "file": "file-1"}


def event_pools(template) -> tuple[list, list]:
    """(legitimate, noise): the right people doing the right things, and everything else."""
    legit: list = []
    noise: list = []
    everyone = [(r.value, frozenset({r})) for r in Role]
    for step in template.steps:
        data = {f.key: SAMPLE[f.type] for f in step.fields if f.type != "choice"}
        right = (step.role.value, frozenset({step.role}))
        # Every option of a step's choice fields, so every branch an outcome opens or closes is explored.
        choices = [{**data, **{f.key: v}} for f in step.fields for v, _ in f.options] or [data]
        for action in engine.ALLOWED_ACTIONS[step.kind]:
            for chosen in choices:
                payload = {"reason": "不同意"} if action == "reject" else chosen
                legit.append(("act", step.id, action, right, payload))
        legit.append(("viewed", step.id, right))
        for doc in step.documents:
            legit.append(("sign", step.id, doc, (step.signed_by.value, frozenset({step.signed_by}))))
            noise.append(("sign", step.id, doc, ("hr", frozenset({Role.HR}))))
        for kind in ("remind", "alert", "fallback"):
            legit.append(("timer", step.id, kind))
        for actor in everyone:
            noise.append(("viewed", step.id, actor))
            for action in ("approve", "reject", "confirm", "acknowledge", "submit", "complete"):
                payload = {"reason": "不同意"} if action == "reject" else data
                noise.append(("act", step.id, action, actor, payload))
            noise.append(("act", step.id, "submit", actor, {}))
    hr = ("hr", frozenset({Role.HR}))
    legit += [("remind", hr), ("close", hr)]
    noise += [("cancel", hr), ("close", ("employee", frozenset({Role.EMPLOYEE})))]
    return legit, noise


def build(spec: tuple, at: datetime):
    match spec:
        case ("viewed", step, (who, roles)):
            return Viewed(step, who, roles, at)
        case ("act", step, action, (who, roles), data):
            return Act(step, action, who, roles, data, at)
        case ("sign", step, doc, (who, roles)):
            return DocumentSigned(step, doc, who, roles, at)
        case ("timer", step, kind):
            return TimerFired(step, kind, at)
        case ("remind", (who, roles)):
            return Remind(who, roles, at)
        case ("close", (who, roles)):
            return Close(who, roles, at)
        case ("cancel", (who, roles)):
            return Cancel(who, roles, "测试", at)
    raise AssertionError(spec)


POOLS = {tid: event_pools(t) for tid, t in TEMPLATES.items()}


def check_invariants(template, state: CaseState) -> None:
    for step in template.steps:
        ss = state.steps[step.id]
        if ss.status == "active":
            assert all(state.steps[d].status == "done" for d in step.depends_on)
            assert not step.fallback_only or state.fallback_started
        if ss.status == "done":
            assert (ss.done_at is not None and ss.activated_at is not None) or ss.outcome == "replaced"
    if state.status == "completed":
        assert all(state.steps[s].status == "done" for s in template.required_ids)
        assert state.closed_at is not None


def relevant(template, state: CaseState, legit: list) -> list:
    """Legitimate events aimed at steps that are active now, plus HR's commands."""
    active = set(state.active_steps())
    return [spec for spec in legit if spec[0] in ("remind", "close") or spec[1] in active]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(TEMPLATES)), st.data())
def test_random_sequences_keep_invariants(tid, data):
    template = TEMPLATES[tid]
    legit, noise = POOLS[tid]
    decision = engine.start(template, "case-x", T0)
    state = decision.state
    notify_keys = [e.key for e in decision.effects if isinstance(e, Notify)]
    timer_keys = [e.key for e in decision.effects if isinstance(e, SetTimer)]
    for i in range(data.draw(st.integers(1, 80), label="length")):
        # mostly events the flow is waiting for, so runs get deep, with noise mixed in
        targeted = relevant(template, state, legit)
        pool = noise if data.draw(st.integers(0, 3), label="noise?") == 0 or not targeted else targeted
        spec = data.draw(st.sampled_from(pool), label="event")
        event = build(spec, T0 + timedelta(hours=i + 1))
        before = state.to_dict()
        result = engine.apply(template, state, event)
        assert state.to_dict() == before  # inputs are never mutated
        if isinstance(result, Refusal):
            assert (result.audit is not None) == (result.code == "wrong_role")
            continue
        assert isinstance(result, Decision)
        if not result.effects:
            assert result.state is state
            continue
        assert state.status == "open", "a closed case changed"
        assert sum(isinstance(e, Audit) for e in result.effects) == 1
        for sid, old in state.steps.items():
            if old.status == "done":
                assert result.state.steps[sid] == old  # done is final
        notify_keys += [e.key for e in result.effects if isinstance(e, Notify)]
        timer_keys += [e.key for e in result.effects if isinstance(e, SetTimer)]
        state = result.state
        check_invariants(template, state)
        assert CaseState.from_dict(state.to_dict()) == state
    # idempotency keys identify distinct messages/timers: a collision would swallow a real message
    assert len(set(notify_keys)) == len(notify_keys)
    assert len(set(timer_keys)) == len(timer_keys)


def test_legitimate_actors_complete_every_bundled_template():
    for template in TEMPLATES.values():
        state = engine.start(template, "case-y", T0).state
        at = T0
        for _ in range(50):
            active = [template.step(s) for s in state.active_steps() if not template.step(s).fallback_only]
            if state.status != "open" or not active:
                break
            step = active[0]
            at += timedelta(hours=1)
            # Each signer in turn (a two-party document is signed by both, in order).
            while (turn := step.turn(state.steps[step.id])) is not None:
                doc, signer = turn
                result = engine.apply(template, state, DocumentSigned(step.id, doc, "p", frozenset({signer}), at))
                assert isinstance(result, Decision), result
                state = result.state
            if state.steps[step.id].status != "done":
                action = engine.ALLOWED_ACTIONS[step.kind][0]
                data = {f.key: SAMPLE[f.type] for f in step.fields}
                result = engine.apply(template, state, Act(step.id, action, "p", frozenset({step.role}), data, at))
                assert isinstance(result, Decision), result
                state = result.state
        assert state.status == "completed", template.id
