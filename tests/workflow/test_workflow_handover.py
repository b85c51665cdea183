"""The two-party handover in the engine: one document signed by the departing employee and then the
receiving colleague, each in turn; HR's case-specific items added before anyone signs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from workflow import engine
from workflow.decision import Decision, Refusal
from workflow.effects import Audit, Notify, SetTimer, UpdateStep
from workflow.errors import TemplateError
from workflow.events import Act, DocumentSigned, Prepare, SealFailed, Start, TimerFired, Viewed
from workflow.items import MAX_ITEMS
from workflow.model import CaseState, Role, signature_mark
from workflow.schema import TemplateProblem, compile_template
from workflow.templates import load_templates

T0 = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)
EMP = ("e1", frozenset({Role.EMPLOYEE}))
MGR = ("m1", frozenset({Role.MANAGER}))
HR = ("h1", frozenset({Role.HR}))
HAND = ("c1", frozenset({Role.HANDOVER}))
DOC = "handover_confirmation"


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


def sign(who, hours: float = 1) -> DocumentSigned:
    return DocumentSigned("handover", DOC, who[0], who[1], at(hours))


def prepare(data: Any, who=HR, hours: float = 1) -> Prepare:
    return Prepare("handover", who[0], who[1], data, at(hours))


def at_handover(t, prepared: dict[str, Any] | None = None) -> CaseState:
    state = engine.start(t, "case-h", T0, prepared=prepared).state
    state = ok(t, state, Act("application", "submit", *EMP, {"last_working_day": "2025-03-31", "reason": "x"},
                             at(0.5))).state
    state = ok(t, state, Act("performance_review", "approve", *MGR, {"result": "60%"}, at(0.5))).state
    assert state.steps["handover"].status == "active"
    return state


def test_bundled_handovers_are_signed_by_both_sides_in_order():
    for flow in load_templates().values():
        step = flow.by_id.get("handover")
        if step is None:
            continue
        assert step.signers == (Role.EMPLOYEE, Role.HANDOVER) and step.cosigned, flow.id
        assert step.kind == "sign" and step.documents == (DOC,), flow.id
        assert [i.zh for i in step.items][:1] == ["工作文件与资料"], flow.id
        assert [f.key for f in step.hr_fields] == ["items"], flow.id


def test_the_receiver_signs_after_the_employee_and_only_then_is_the_step_done(probation):
    state = at_handover(probation)
    # The receiving colleague cannot sign first: refused, nothing recorded.
    r = refused(probation, state, sign(HAND))
    assert r.code == "not_your_turn" and r.audit is None
    assert "需先由离职员工签署" in r.message_zh and "employee" in r.message_en
    # A third person is not a party to the sheet: refused and the attempt is audited.
    for who in (MGR, ("f1", frozenset({Role.FINANCE}))):
        r = refused(probation, state, sign(who))
        assert r.code == "wrong_role" and r.audit is not None and r.audit.data["attempt"] == f"sign {DOC}"

    state = ok(probation, state, Viewed("handover", *EMP, at(0.8))).state  # the employee read it
    d = ok(probation, state, sign(EMP))
    st = d.state.steps["handover"]
    assert st.status == "active" and st.documents_signed == frozenset({signature_mark(DOC, Role.EMPLOYEE)})
    # The receiver's turn is reminded afresh: the employee's view does not count for them.
    assert st.viewed_at is None
    assert [(t.kind, t.due_at) for t in d.effects if isinstance(t, SetTimer)] == [("remind", at(25))]
    assert probation.step("handover").next_signer(st, DOC) == Role.HANDOVER
    # Every holder's card updates, and the receiver gets a card of their own now that it is their turn.
    assert UpdateStep("handover") in d.effects
    told = [e for e in d.effects if isinstance(e, Notify)]
    assert [(e.role, e.step_id, e.purpose) for e in told] == [(Role.HANDOVER, "handover", "step")]
    audit = next(e for e in d.effects if isinstance(e, Audit))
    assert audit.kind == "document_signed" and audit.data["signed_as"] == "employee"
    # The employee signs once.
    assert refused(probation, d.state, sign(EMP)).code == "already_signed"
    # A reminder now reaches the receiver, whose turn it is.
    remind = ok(probation, d.state, TimerFired("handover", "remind", at(30)))
    assert [e.role for e in remind.effects if isinstance(e, Notify)] == [Role.HANDOVER]

    done = ok(probation, d.state, sign(HAND, 2))
    st = done.state.steps["handover"]
    assert st.status == "done" and st.outcome == "signed" and st.done_by == "c1"
    assert st.documents_signed == frozenset({DOC, signature_mark(DOC, Role.EMPLOYEE),
                                             signature_mark(DOC, Role.HANDOVER)})
    audit = next(e for e in done.effects if isinstance(e, Audit))
    assert audit.data["signed_as"] == "handover" and audit.data["completed"] == ["handover"]
    assert refused(probation, done.state, sign(HAND)).code == "already_done"


def test_single_signer_documents_record_no_role_marks(probation):
    state = at_handover(probation)
    state = ok(probation, state, Act("hr_check", "complete", *HR, {"unpaid_months": "2"}, at(1))).state
    d = ok(probation, state, DocumentSigned("guarantee", "guarantee_letter", *EMP, at(2)))
    assert d.state.steps["guarantee"].documents_signed == frozenset({"guarantee_letter"})
    audit = next(e for e in d.effects if isinstance(e, Audit))
    assert "signed_as" not in audit.data


def test_a_seal_given_up_voids_both_signatures_and_starts_again_from_the_employee(probation):
    state = at_handover(probation)
    first_round = ok(probation, state, sign(EMP))
    state = ok(probation, first_round.state, sign(HAND, 2)).state
    d = ok(probation, state, SealFailed("handover", DOC, "7", "TSA down", at(3)))
    st = d.state.steps["handover"]
    assert st.status == "active" and st.documents_signed == frozenset()
    assert (Role.EMPLOYEE, "step") in {(e.role, e.purpose) for e in d.effects if isinstance(e, Notify)}
    # Signing starts over in the same order, and the receiver is told again when it is their turn.
    assert refused(probation, d.state, sign(HAND, 4)).code == "not_your_turn"
    again = ok(probation, d.state, sign(EMP, 4))
    turn = [e for e in again.effects if isinstance(e, Notify)]
    before = [e for e in first_round.effects if isinstance(e, Notify)]
    assert [e.role for e in turn] == [e.role for e in before] == [Role.HANDOVER]
    assert turn[0].key != before[0].key


def test_hr_adds_case_specific_items_before_anyone_signs(probation):
    t = probation.step("handover")
    state = at_handover(probation)
    d = ok(probation, state, prepare({"items": "客户A合同原件\n门禁卡\n工作文件与资料"}))
    assert d.state.steps["handover"].data == {"items": "客户A合同原件\n门禁卡\n工作文件与资料"}
    assert UpdateStep("handover") in d.effects
    audit = next(e for e in d.effects if isinstance(e, Audit))
    assert audit.kind == "step_prepared" and audit.data["actor_id"] == "h1"
    # Added to, never replaced; each line once; a template item is not listed twice.
    d = ok(probation, d.state, prepare({"items": "门禁卡；笔记本电脑"}, hours=2))
    assert d.state.steps["handover"].data["items"] == "客户A合同原件\n门禁卡\n工作文件与资料\n笔记本电脑"
    lines = [i if isinstance(i, str) else i.zh for i in t.items_for(d.state.steps["handover"].data)]
    assert lines == ["工作文件与资料", "在办事项与客户/项目联系人", "办公设备与物品", "系统账号与权限",
                     "客户A合同原件", "门禁卡", "笔记本电脑"]
    # What the employee's signing keeps: the items stay with the step to the end.
    signed = ok(probation, d.state, sign(EMP)).state
    assert signed.steps["handover"].data["items"].endswith("笔记本电脑")
    # Once anyone has signed, the sheet cannot change.
    assert refused(probation, signed, prepare({"items": "再加一项"}, hours=3)).code == "already_signed"


def test_prepare_refusals(probation):
    state = at_handover(probation)
    r = refused(probation, state, prepare({"items": "x"}, who=EMP))
    assert r.code == "wrong_role" and r.audit is not None
    assert refused(probation, state, prepare({"items": "  \n "})).code == "missing_data"
    assert refused(probation, state, prepare({})).code == "missing_data"
    assert refused(probation, state, prepare({"note": "x"})).code == "bad_action"
    assert refused(probation, state, prepare({"items": "x" * 101})).code == "missing_data"
    many = "\n".join(f"事项{i}" for i in range(MAX_ITEMS + 1))
    assert refused(probation, state, prepare({"items": many})).code == "too_many"
    assert refused(probation, state, Prepare("guarantee", *HR, {"items": "x"}, at(1))).code == "bad_action"
    done = ok(probation, ok(probation, state, sign(EMP)).state, sign(HAND, 2)).state
    assert refused(probation, done, prepare({"items": "x"}, hours=3)).code == "already_done"


def test_items_given_at_the_start_are_on_the_step_from_the_first_event(probation):
    d = engine.start(probation, "case-h", T0, prepared={"handover": {"items": "客户A合同原件；门禁卡"}})
    assert d.state.steps["handover"].data == {"items": "客户A合同原件\n门禁卡"}
    assert d.state.steps["handover"].status == "locked"
    audit = next(e for e in d.effects if isinstance(e, Audit))
    assert audit.data["prepared"] == {"handover": {"items": "客户A合同原件；门禁卡"}}
    # The entry replays to the same state (what signing/stepcheck does with the chain).
    again = engine.start(probation, "case-h", T0, prepared=audit.data["prepared"])
    assert again.state == d.state
    # Without additions the entry is exactly what it always was.
    plain = next(e for e in engine.start(probation, "case-h", T0).effects if isinstance(e, Audit))
    assert "prepared" not in plain.data
    bad = engine.apply(probation, engine.new_state(probation, "case-h", T0),
                       Start(T0, {"application": {"items": "x"}}))
    assert isinstance(bad, Refusal) and bad.code == "bad_action"


def _raw(**step: Any) -> dict[str, Any]:
    base = {"id": "s", "title": {"zh": "交接", "en": "h"}, "ask": {"zh": "a", "en": "a"},
            "why": {"zh": "w", "en": "w"}, "role": "handover", "kind": "sign", "deadline_hours": 24,
            "documents": [DOC]}
    return {"id": "t", "version": 1, "title": {"zh": "测", "en": "t"}, "case_type": "t", "steps": [{**base, **step}]}


@pytest.mark.parametrize(("step", "problem"), [
    ({"signed_by": []}, "signed_by lists no one"),
    ({"signed_by": ["employee", "employee"]}, "signed_by lists a role twice"),
    ({"signed_by": ["hr", "employee"]}, "HR cannot be one of several signers"),
    ({"hr_fields": [{"key": "items", "label": {"zh": "a", "en": "a"}, "type": "textarea"}]}, "none can be required"),
    ({"kind": "confirm", "documents": [], "items": [{"zh": "a", "en": "a"}]}, "items"),
    ({"hr_fields": [{"key": "x", "label": {"zh": "a", "en": "a"}, "required": False},
                    {"key": "x", "label": {"zh": "b", "en": "b"}, "required": False}]}, "hr_fields lists a key twice"),
])
def test_template_rules_for_signers_items_and_hr_fields(step, problem):
    with pytest.raises(TemplateProblem, match=problem):
        compile_template(_raw(**step))


def test_an_act_step_keeps_what_hr_added():
    t = compile_template(_raw(id="s", kind="confirm", signed_by="employee", hr_fields=[
        {"key": "items", "label": {"zh": "事项", "en": "items"}, "type": "textarea", "required": False}],
        fields=[{"key": "note", "label": {"zh": "备注", "en": "note"}, "required": False}]))
    state = engine.start(t, "c", T0, prepared={"s": {"items": "门禁卡"}}).state
    state = ok(t, state, DocumentSigned("s", DOC, *EMP, at(1))).state
    state = ok(t, state, Act("s", "confirm", *HAND, {"note": "ok"}, at(2))).state
    assert state.steps["s"].data == {"items": "门禁卡", "note": "ok"}


def test_a_bundled_template_naming_hr_as_a_cosigner_fails_to_load(tmp_path):
    src = load_templates()["probation"].source
    text = open(src, encoding="utf-8").read().replace('signed_by = ["employee", "handover"]',
                                                      'signed_by = ["employee", "employee"]')
    (tmp_path / "probation.toml").write_text(text, encoding="utf-8")
    with pytest.raises(TemplateError, match="step 'handover'"):
        load_templates([tmp_path])
