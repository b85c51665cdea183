"""The workflow engine: pure functions from (template, case state, event) to a decision.

A Decision carries the new state and the effects the service must persist in the same transaction
(messages, card updates, timers, one audit entry). A Refusal changes nothing and says why in both
languages. Inputs are never mutated: the state is copied on write, step by step.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from workflow import messages as msg
from workflow.decision import Decision, Refusal, refuse
from workflow.effects import Audit, CancelTimers, Effect, Notify, Purpose, SetTimer, UpdateStep
from workflow.events import (
    Act,
    Answer,
    Ask,
    Cancel,
    Close,
    DocumentSigned,
    Event,
    Evidence,
    Note,
    Prepare,
    Remind,
    Reopen,
    SealFailed,
    Start,
    StartFallback,
    TimerFired,
    Viewed,
)
from workflow.items import MAX_ITEMS, item_problem, split_items
from workflow.model import (
    MAX_QUESTION_CHARS,
    MAX_QUESTIONS,
    CaseState,
    Question,
    Role,
    StepKind,
    StepState,
    signature_mark,
    viewer_mark,
    viewers,
)
from workflow.plain import plain_copy
from workflow.template import FlowTemplate, StepTemplate
from workflow.text import Text
from workflow.timeutil import dump_time, utc

ALLOWED_ACTIONS: dict[StepKind, tuple[str, ...]] = {
    StepKind.APPROVE: ("approve", "reject"),
    StepKind.CONFIRM: ("confirm",),
    StepKind.ACKNOWLEDGE: ("acknowledge",),
    StepKind.FORM: ("submit",),
    StepKind.HR_TASK: ("complete",),
    StepKind.SIGN: (),
}
# Roles one person holds in a case (the employee, their manager, the handover colleague, the HR who
# opened it): once they have looked, nobody else of the role is left to remind.
_ONE_HOLDER = frozenset({Role.EMPLOYEE, Role.MANAGER, Role.HANDOVER, Role.HR})
# A step in one of these states no longer holds up the case.
SETTLED = ("done", "not_needed")
OUTCOMES = {
    "approve": "approved",
    "confirm": "confirmed",
    "acknowledge": "acknowledged",
    "submit": "submitted",
    "complete": "completed",
}


def _roles(roles: frozenset[Role]) -> list[str]:
    return sorted(str(r) for r in roles)


class _Tx:
    """Accumulates one decision: copy-on-write steps, effects in order, and what to audit."""

    __slots__ = ("activated", "at", "case_fields", "completed", "effects", "not_needed", "state", "steps", "template")

    def __init__(self, template: FlowTemplate, state: CaseState, at: datetime):
        self.template = template
        self.state = state
        self.at = at
        self.steps: dict[str, StepState] | None = None
        self.effects: list[Effect] = []
        self.case_fields: dict[str, Any] = {}
        self.activated: list[str] = []
        self.completed: list[str] = []
        self.not_needed: list[str] = []

    def get(self, step_id: str) -> StepState:
        return (self.steps or self.state.steps)[step_id]

    def put(self, step_id: str, **changes: Any) -> StepState:
        if self.steps is None:
            self.steps = dict(self.state.steps)
        new = self.steps[step_id].evolve(**changes)
        self.steps[step_id] = new
        return new

    @property
    def questions(self) -> dict[str, Question]:
        return self.case_fields.get("questions", self.state.questions)

    def put_question(self, q: Question) -> None:
        self.case_fields["questions"] = {**self.questions, q.id: q}

    @property
    def fallback_started(self) -> bool:
        return self.case_fields.get("fallback_started", self.state.fallback_started)

    def key(self, scope: str | None, purpose: str, n: int | str, role: Role) -> str:
        return f"{self.state.case_id}:{scope or 'case'}:{purpose}:{n}:{role}"

    def notify(self, role: Role, step_id: str | None, purpose: Purpose, n: int | str = 1,
               skip: tuple[str, ...] = ()) -> None:
        self.effects.append(Notify(role, step_id, purpose, self.key(step_id, purpose, n, role), skip))

    def activate(self, step: StepTemplate) -> None:
        at = self.at
        # A step locked again by a Reopen keeps its first activation time: its cards are already out
        # (the notify keys repeat, so they are updated in place) and its timers need fresh keys.
        again = self.get(step.id).activated_at is not None
        self.put(step.id, status="active", activated_at=at)
        self.activated.append(step.id)
        first = step.signed_by  # the first signer; later ones are told when it is their turn
        if step.role == first or step.role not in step.signers:
            # A step's own role who signs after someone else gets its card at its turn, not now: a
            # card it cannot act on yet would only be updated twice (each update costs budget on
            # DingTalk, a fresh card on WeCom) and then followed by the card that asks it to sign.
            self.notify(step.role, step.id, "step")
        if first != step.role:
            self.notify(first, step.id, "step")
        if step.hr_fields and Role.HR not in (step.role, first):
            self.notify(Role.HR, step.id, "step")  # HR may still add to the step's document
        if again:
            self.effects.append(UpdateStep(step.id))
        # HR is alerted only about steps the case cannot complete without; an optional step that
        # waits is nobody's emergency.
        kinds = ("remind", "alert") if step.required else ("remind",)
        if step.fallback:
            kinds += ("fallback",)
        cid = self.state.case_id
        suffix = f":{dump_time(at)}" if again else ""
        for kind in kinds:
            self.effects.append(SetTimer(step.id, kind, step.policy.due(kind, at),
                                         f"{cid}:{step.id}:{kind}{suffix}"))
        if step.policy.due_reminder(step.deadline_hours) is not None:
            # Counted back from the deadline itself, so a deadline in working days moves it along.
            when = step.due_by(at) - timedelta(hours=step.policy.remind_before_deadline_hours or 0)
            self.effects.append(SetTimer(step.id, "remind_due", when, f"{cid}:{step.id}:remind_due{suffix}"))

    def finish(self, step: StepTemplate, actor_id: str, outcome: str, data: dict[str, Any] | None = None) -> None:
        changes: dict[str, Any] = {"status": "done", "done_at": self.at, "done_by": actor_id, "outcome": outcome}
        if data is not None:
            changes["data"] = data
        self.put(step.id, **changes)
        self.completed.append(step.id)
        self.effects.append(CancelTimers(step.id))
        self.effects.append(UpdateStep(step.id))

    def can_start(self, step: StepTemplate) -> bool:
        if self.get(step.id).status != "locked":
            return False
        if step.fallback_only and not self.fallback_started:
            return False
        if not all(self.get(dep).status == "done" for dep in step.depends_on):
            return False
        return all(self.get(dep).outcome in allowed for dep, allowed in step.depends_on_outcome)

    def unlock(self) -> None:
        """Activate every step the completions of this decision made ready, in template order, after
        closing the steps those completions made unnecessary."""
        self.close_branches()
        candidates: set[str] = set()
        for done in self.completed:
            candidates.update(self.template.dependants[done])
        for step in self.template.steps:
            if step.id in candidates and self.can_start(step):
                self.activate(step)

    def close_not_needed(self, step: StepTemplate, reason: str, data: dict[str, Any]) -> None:
        was = self.get(step.id)
        self.put(step.id, status="not_needed", done_at=self.at, done_by=None, outcome=reason, data=data)
        self.not_needed.append(step.id)
        if was.status == "active":
            self.effects.append(CancelTimers(step.id))
        if was.activated_at is not None:  # its cards are out: they now say why nothing is asked
            self.effects.append(UpdateStep(step.id))

    def close_branches(self) -> None:
        """A step waiting on a dependency that finished with another outcome than it opens on will never
        open: close it as not needed, and so every step that waits on it, until nothing changes."""
        changed = True
        while changed:
            changed = False
            for step in self.template.steps:
                if self.get(step.id).status not in ("locked", "active"):
                    continue
                allowed = dict(step.depends_on_outcome)
                for dep in step.depends_on:
                    ds = self.get(dep)
                    if ds.status == "not_needed":
                        self.close_not_needed(step, "after", {"step": dep})
                    elif ds.status == "done" and dep in allowed and ds.outcome not in allowed[dep]:
                        self.close_not_needed(step, "branch", {"step": dep, "outcome": ds.outcome})
                    else:
                        continue
                    changed = True
                    break

    def complete_case_if_done(self) -> bool:
        if self.state.status != "open" or self.case_fields.get("status", "open") != "open":
            return False
        if any(self.get(sid).status not in SETTLED for sid in self.template.required_ids):
            return False
        # What is still open or waiting (optional steps, an unused fallback) will never be needed now:
        # it is closed as such, so no card of a completed case still reads "in progress".
        for step in self.template.steps:
            if self.get(step.id).status in ("locked", "active"):
                self.close_not_needed(step, "case_completed", {})
        self.close_case("completed")
        self.notify(Role.EMPLOYEE, None, "completion")
        self.notify(Role.HR, None, "completion")
        return True

    def close_case(self, status: str) -> None:
        self.case_fields["status"] = status
        self.case_fields["closed_at"] = self.at
        # Steps still open (optional ones, unused fallback steps) stop nagging and show the case as closed.
        for step in self.template.steps:
            if self.get(step.id).status == "active":
                self.effects.append(CancelTimers(step.id))
                self.effects.append(UpdateStep(step.id))
        # Unanswered questions stop reminding HR, and their cards drop the answer button.
        for q in self.questions.values():
            if not q.answered:
                self.effects.append(CancelTimers(q.id))
                self.effects.append(UpdateStep(q.id))

    def decide(self, kind: str, data: dict[str, Any]) -> Decision:
        new_state = self.state
        if self.steps is not None or self.case_fields:
            fields = dict(self.case_fields)
            if self.steps is not None:
                fields["steps"] = self.steps
            new_state = self.state.evolve(**fields)
        audit = {
            "case_id": self.state.case_id,
            "at": dump_time(self.at),
            **data,
            "activated": list(self.activated),
            "completed": list(self.completed),
            "case_status": new_state.status,
        }
        if self.not_needed:  # only when there are some, so entries written before this key stay as they were
            audit["not_needed"] = list(self.not_needed)
        self.effects.append(Audit(kind, audit))
        return Decision(new_state, tuple(self.effects))


def _noop(state: CaseState) -> Decision:
    return Decision(state, ())


def new_state(template: FlowTemplate, case_id: str, at: datetime) -> CaseState:
    """A case with every step locked, before Start."""
    locked = StepState()
    return CaseState(
        case_id=case_id,
        template_id=template.id,
        status="open",
        steps={s.id: locked for s in template.steps},
        fallback_started=False,
        started_at=utc(at),
        closed_at=None,
        template_version=template.version,
    )


def start(template: FlowTemplate, case_id: str, at: datetime,
          prepared: dict[str, dict[str, Any]] | None = None) -> Decision:
    """Create a case and activate its first steps; `prepared` is what HR added to steps at the start."""
    decision = apply(template, new_state(template, case_id, at), Start(at, prepared or {}))
    if isinstance(decision, Refusal):
        raise RuntimeError(f"a new case refused to start: {decision.message_en}")
    return decision


def apply(template: FlowTemplate, state: CaseState, event: Event) -> Decision | Refusal:
    """Apply one event. Refusals change nothing; a Decision without effects is a harmless no-op."""
    if state.template_id != template.id:
        raise ValueError(f"case {state.case_id} uses template {state.template_id!r}, not {template.id!r}")
    handler = _HANDLERS.get(type(event))
    if handler is None:
        raise TypeError(f"not a workflow event: {event!r}")
    return handler(template, state, event)


# --- helpers shared by the handlers -------------------------------------------------------------


def _closed(state: CaseState) -> Refusal | None:
    if state.status != "open":
        return refuse("case_closed", msg.case_closed(state.status))
    return None


def _step(template: FlowTemplate, step_id: str) -> StepTemplate | Refusal:
    step = template.by_id.get(step_id)
    return step if step is not None else refuse("unknown_step", msg.unknown_step(step_id), (step_id,))


def _open_step(template: FlowTemplate, state: CaseState, step_id: str) -> StepTemplate | Refusal:
    """The step an event names, if the case is still open and the template has it."""
    return _closed(state) or _step(template, step_id)


def _wrong_role(
    state: CaseState, step: StepTemplate | None, needed: Role, event: Any, what: str
) -> Refusal:
    audit = Audit(
        "refused",
        {
            "case_id": state.case_id,
            "at": dump_time(event.at),
            "attempt": what,
            "step_id": None if step is None else step.id,
            "actor_id": event.actor_id,
            "actor_roles": _roles(event.actor_roles),
            "required_role": str(needed),
            "code": "wrong_role",
        },
    )
    return refuse("wrong_role", msg.wrong_role(step, needed), audit=audit)


def _unsigned(step: StepTemplate, ss: StepState) -> tuple[str, ...]:
    return tuple(d for d in step.documents if d not in ss.documents_signed)


def _blocked(template: FlowTemplate, state: CaseState, step: StepTemplate, ss: StepState) -> Refusal | None:
    """Why a step cannot be acted on yet (locked by dependencies, or waiting for the fallback)."""
    if ss.status == "done":
        return refuse("already_done", msg.already_done(step))
    if ss.status == "not_needed":
        return refuse("not_needed", msg.not_needed(step, msg.not_needed_reason(template.by_id, ss.outcome, ss.data)))
    if ss.status == "active":
        return None
    waiting = [template.by_id[d] for d in step.depends_on if state.steps[d].status != "done"]
    if waiting:
        blockers = [msg.unfinished(w, _unsigned(w, state.steps[w.id])) for w in waiting]
        docs = tuple(d for w in waiting for d in _unsigned(w, state.steps[w.id]))
        return refuse("locked", msg.locked(step, blockers), tuple(w.id for w in waiting), missing_documents=docs)
    return refuse("not_active", msg.not_active(step))


def _check_fields(step: StepTemplate, data: dict[str, Any], uploaded: dict[str, Any] | None = None
                  ) -> Refusal | None:
    """`uploaded`: the step's data so far, where Evidence recorded each uploaded file; a file field's
    value must name one of those uploads, never text typed in its place."""
    missing: list[str] = []
    labels_missing: list[Text] = []
    labels_invalid: list[Text] = []
    for f in step.fields:
        value = data.get(f.key)
        if value is None or (isinstance(value, str) and not value.strip()):
            if f.required:
                missing.append(f.key)
                labels_missing.append(f.label)
            continue
        if f.type == "file" and value != (uploaded or {}).get(f.key):
            missing.append(f.key)
            labels_invalid.append(f.label)
            continue
        if not _valid_value(f.type, value) or (f.type == "choice" and str(value).strip() not in
                                                 {v for v, _ in f.options}):
            missing.append(f.key)
            labels_invalid.append(f.label)
    if missing:
        return refuse("missing_data", msg.missing_data(step, labels_missing, labels_invalid), tuple(missing))
    return None


def _valid_value(kind: str, value: Any) -> bool:
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            return False
        try:
            return Decimal(str(value).strip()).is_finite()
        except InvalidOperation:
            return False
    if not isinstance(value, str):
        return False
    if kind == "date":
        try:
            date.fromisoformat(value.strip())
        except ValueError:
            return False
    return True


def _next_actor(step: StepTemplate, ss: StepState) -> Role:
    """Who a reminder should reach: whose turn it is to sign while documents are unsigned, else the
    acting role."""
    turn = step.turn(ss)
    return turn[1] if turn is not None else step.role


def _with_hr_data(step: StepTemplate, ss: StepState, data: dict[str, Any]) -> dict[str, Any]:
    """A step's new data keeps what HR added to it (hr_fields) beside what the actor entered."""
    kept = {f.key: ss.data[f.key] for f in step.hr_fields if f.key in ss.data and f.key not in data}
    return {**kept, **data} if kept else data


def _prepared(step: StepTemplate, ss: StepState, data: Any) -> dict[str, Any] | Refusal:
    """The step's data with HR's additions merged in: a textarea's lines are added to the lines already
    there (each line once), any other value replaces the one there."""
    if not step.hr_fields:
        return refuse("bad_action", msg.nothing_to_prepare(step))
    if not isinstance(data, dict):
        return refuse("missing_data", msg.nothing_added(step))
    specs = {f.key: f for f in step.hr_fields}
    unknown = sorted(str(k) for k in data if k not in specs)
    if unknown:
        return refuse("bad_action", msg.unknown_fields(step, unknown), tuple(unknown))
    given = {k: v for k, v in data.items() if v is not None and not (isinstance(v, str) and not v.strip())}
    if not given:
        return refuse("missing_data", msg.nothing_added(step), tuple(specs))
    invalid = [specs[k] for k, v in given.items() if not _valid_value(specs[k].type, v)]
    if invalid:
        return refuse("missing_data", msg.missing_data(step, [], [f.label for f in invalid]),
                      tuple(f.key for f in invalid))
    merged = dict(ss.data)
    for key, value in given.items():
        if specs[key].type == "textarea":
            lines = split_items(str(merged.get(key) or ""))
            new = [ln for ln in split_items(str(value)) if ln not in lines]
            problem = item_problem(new, len(lines)) if new else None
            if problem is not None:
                return refuse("too_many" if len(lines) + len(new) > MAX_ITEMS else "missing_data", problem, (key,))
            merged[key] = "\n".join(lines + new)
        else:
            merged[key] = value.strip() if isinstance(value, str) else value
    return merged


def missing_for_completion(template: FlowTemplate, state: CaseState) -> Refusal | None:
    """Everything that keeps the case from completing, as an `incomplete` refusal; None if nothing."""
    items: list[Text] = []
    steps: list[str] = []
    docs: list[str] = []
    for sid in template.required_ids:
        ss = state.steps[sid]
        if ss.status in SETTLED:
            continue
        step = template.by_id[sid]
        unsigned = _unsigned(step, ss)
        items.append(msg.unfinished(step, unsigned))
        steps.append(sid)
        docs.extend(unsigned)
    if not items:
        return None
    return refuse("incomplete", msg.incomplete(items), tuple(steps), missing_documents=tuple(docs))


def why_blocked(template: FlowTemplate, state: CaseState, step_id: str) -> Refusal | None:
    """Why a step's buttons are disabled right now (for cards), or None if it can be acted on."""
    step = _open_step(template, state, step_id)
    if isinstance(step, Refusal):
        return step
    return _blocked(template, state, step, state.steps[step_id])


def deadline_of(template: FlowTemplate, state: CaseState, step_id: str) -> datetime | None:
    ss = state.steps[step_id]
    if ss.activated_at is None:
        return None
    return template.by_id[step_id].due_by(ss.activated_at)


# --- handlers ---------------------------------------------------------------------------------


def _on_start(template: FlowTemplate, state: CaseState, event: Start) -> Decision | Refusal:
    closed = _closed(state)
    if closed:
        return closed
    if any(ss.status != "locked" for ss in state.steps.values()):
        return refuse("already_done", msg.already_started())
    tx = _Tx(template, state, event.at)
    for sid, data in event.prepared.items():
        step = _step(template, sid)
        if isinstance(step, Refusal):
            return step
        merged = _prepared(step, tx.get(sid), data)
        if isinstance(merged, Refusal):
            return merged
        tx.put(sid, data=merged)
    for sid in template.initial:
        tx.activate(template.by_id[sid])
    facts: dict[str, Any] = {"template_id": template.id, "template_version": template.version}
    if event.prepared:
        facts["prepared"] = plain_copy(event.prepared)
    return tx.decide("case_started", facts)


def _on_viewed(template: FlowTemplate, state: CaseState, event: Viewed) -> Decision | Refusal:
    step = _step(template, event.step_id)
    if isinstance(step, Refusal):
        return step
    if state.status != "open":
        return _noop(state)  # looking at an old card is fine; it just records nothing
    if step.role not in event.actor_roles and not step.signs(event.actor_roles):
        return _wrong_role(state, step, step.role, event, "view")
    ss = state.steps[step.id]
    if ss.status == "locked":
        blocked = _blocked(template, state, step, ss)
        if blocked:
            return blocked
    # Kept per holder and per role they hold in the step (acting, signing), so a reminder to a
    # role skips exactly those of its holders who have looked.
    roles = frozenset({step.role, *step.signers}) & event.actor_roles
    marks = frozenset(viewer_mark(r, event.actor_id) for r in roles)
    if ss.status != "active" or marks <= ss.viewed_by:
        return _noop(state)
    tx = _Tx(template, state, event.at)
    tx.put(step.id, viewed_at=ss.viewed_at or event.at, viewed_by=ss.viewed_by | marks)
    return tx.decide("step_viewed", {"step_id": step.id, "actor_id": event.actor_id, "actor_roles": _roles(roles)})


def _on_act(template: FlowTemplate, state: CaseState, event: Act) -> Decision | Refusal:
    step = _open_step(template, state, event.step_id)
    if isinstance(step, Refusal):
        return step
    if step.role not in event.actor_roles:
        return _wrong_role(state, step, step.role, event, event.action)
    ss = state.steps[step.id]
    blocked = _blocked(template, state, step, ss)
    if blocked:
        return blocked
    allowed = ALLOWED_ACTIONS[step.kind]
    if event.action not in allowed:
        return refuse("bad_action", msg.bad_action(step, event.action, allowed))
    data = plain_copy(event.data)
    base = {
        "step_id": step.id,
        "action": event.action,
        "actor_id": event.actor_id,
        "actor_roles": _roles(event.actor_roles),
        "data": data,
    }
    if event.action == "reject":
        reason = data.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            return refuse("reason_required", msg.reason_required(step), ("reason",))
        tx = _Tx(template, state, event.at)
        rejections = ss.rejections + 1
        tx.put(step.id, status="active", outcome="rejected", rejections=rejections,
               data=_with_hr_data(step, ss, data))
        tx.effects.append(UpdateStep(step.id))
        tx.notify(Role.HR, step.id, "rejected", rejections)
        return tx.decide("step_rejected", {**base, "reason": reason.strip(), "rejections": rejections})
    unsigned = _unsigned(step, ss)
    if unsigned:
        return refuse("missing_documents", msg.missing_documents(step, unsigned), unsigned, missing_documents=unsigned)
    # A file already uploaded for the step counts without being sent again with the action.
    for f in step.file_fields:
        if f.key in ss.data and not data.get(f.key):
            data[f.key] = ss.data[f.key]
    bad = _check_fields(step, data, ss.data)
    if bad:
        return bad
    tx = _Tx(template, state, event.at)
    # A step with an outcome field ends with the chosen value (e.g. the mail was returned), so that
    # later steps can open on it (depends_on_outcome).
    outcome = str(data[step.outcome_field]).strip() if step.outcome_field else OUTCOMES[event.action]
    tx.finish(step, event.actor_id, outcome, _with_hr_data(step, ss, data))
    _replace_steps(tx, step, outcome, event.actor_id)
    tx.unlock()
    tx.complete_case_if_done()
    return tx.decide("step_done", base)


def _replace_steps(tx: _Tx, step: StepTemplate, outcome: str, actor_id: str) -> None:
    """A finished fallback step (mail / newspaper) stands in for the signatures it replaces, if its
    outcome is one that does (mail that came back undelivered proves nothing)."""
    if step.replaces_on and outcome not in step.replaces_on:
        return
    for target_id in step.replaces:
        if tx.get(target_id).status != "done":
            tx.finish(tx.template.by_id[target_id], actor_id, "replaced", {"replaced_by": step.id})


def _on_signed(template: FlowTemplate, state: CaseState, event: DocumentSigned) -> Decision | Refusal:
    step = _open_step(template, state, event.step_id)
    if isinstance(step, Refusal):
        return step
    if not step.signs(event.actor_roles):
        return _wrong_role(state, step, step.signed_by, event, f"sign {event.document}")
    if event.document not in step.documents:
        return refuse("bad_action", msg.foreign_document(step, event.document), (event.document,))
    ss = state.steps[step.id]
    blocked = _blocked(template, state, step, ss)
    if blocked:
        return blocked
    if event.document in ss.documents_signed:
        return refuse("already_done", msg.already_signed(step, event.document))
    signer = step.next_signer(ss, event.document)
    assert signer is not None  # the document is not fully signed
    if signer not in event.actor_roles:
        # One of the document's signers, but not the one whose turn it is: either they signed already
        # (one signature per party), or an earlier signer has not yet.
        mine = [r for r in step.signers if r in event.actor_roles]
        if all(r in step.signed_roles(ss, event.document) for r in mine):
            return refuse("already_signed", msg.signed_by_you(step, event.document, signer))
        return refuse("not_your_turn", msg.not_your_turn(step, event.document, signer), (str(signer),))
    tx = _Tx(template, state, event.at)
    signed = ss.documents_signed | {event.document}
    if step.cosigned:
        signed = ss.documents_signed | {signature_mark(event.document, signer)}
        if step.next_signer(ss.evolve(documents_signed=signed), event.document) is None:
            signed |= {event.document}
    ss = tx.put(step.id, documents_signed=signed)
    if step.kind is StepKind.SIGN and not _unsigned(step, ss):
        tx.finish(step, event.actor_id, "signed")
        tx.unlock()
        tx.complete_case_if_done()
    else:
        tx.effects.append(UpdateStep(step.id))
        turn = step.turn(ss)
        if turn is not None and turn[1] != signer:
            # The next signer gets a card of their own with the link (their earlier card, if any, is
            # updated in place as well); keyed by the time, so signing again after a seal failure
            # tells them again. Their turn is reminded like a step of its own: what the previous
            # signer viewed says nothing about whether they have seen it.
            stamp = f"{event.at:%Y%m%d%H%M%S%f}"
            tx.notify(turn[1], step.id, "step", f"turn-{stamp}")
            tx.put(step.id, viewed_at=None, viewed_by=frozenset(), timers_fired=ss.timers_fired - {"remind"})
            tx.effects.append(SetTimer(step.id, "remind", step.policy.due("remind", event.at),
                                       f"{state.case_id}:{step.id}:remind:turn-{stamp}"))
    facts: dict[str, Any] = {
        "step_id": step.id,
        "document": event.document,
        "actor_id": event.actor_id,
        "actor_roles": _roles(event.actor_roles),
    }
    if step.cosigned:
        facts["signed_as"] = str(signer)
    return tx.decide("document_signed", facts)


def _on_timer(template: FlowTemplate, state: CaseState, event: TimerFired) -> Decision | Refusal:
    if event.kind == "question":
        return _on_question_timer(template, state, event)
    step = _step(template, event.step_id)
    if isinstance(step, Refusal):
        return step
    ss = state.steps[step.id]
    # Stale or redelivered timers (step done, case closed, already fired) must be harmless.
    if state.status != "open" or ss.status != "active" or event.kind in ss.timers_fired:
        return _noop(state)
    tx = _Tx(template, state, event.at)
    base = {"step_id": step.id, "timer": event.kind}
    if event.kind in ("remind", "remind_due"):
        target = _next_actor(step, ss)
        # The first reminder asks those who have not opened the step to look (policy.remind_to); the one
        # before the deadline goes to everyone who still has to act, whether they looked or not.
        seen = viewers(ss.viewed_by, target) if event.kind == "remind" and step.policy.remind_to == "not_viewed" \
            else ()
        if seen and target in _ONE_HOLDER:
            return _noop(state)
        n = ss.reminders_sent + 1
        tx.put(step.id, reminders_sent=n, timers_fired=ss.timers_fired | {event.kind})
        # A fixed key: even if a store forgets timers_fired, a redelivered timer cannot send twice.
        tx.notify(target, step.id, "reminder", "timer" if event.kind == "remind" else "due", skip=seen)
        facts: dict[str, Any] = {**base, "reminders_sent": n, "trigger": "timer"}
        if seen:
            facts["not_to"] = list(seen)
        return tx.decide("reminder_sent", facts)
    if event.kind == "alert":
        if not step.required:
            return _noop(state)  # timers set before optional steps stopped alerting stay harmless
        tx.put(step.id, timers_fired=ss.timers_fired | {"alert"})
        tx.notify(Role.HR, step.id, "alert")
        return tx.decide("hr_alerted", base)
    if not step.fallback or state.fallback_started:
        return _noop(state)
    tx.put(step.id, timers_fired=ss.timers_fired | {"fallback"})
    _open_fallback(tx, step)
    return tx.decide("fallback_started", base)


def _open_fallback(tx: _Tx, step: StepTemplate) -> None:
    """Start the fallback path (HR told on `step`'s behalf); the fallback steps that can open, open:
    registered mail first, the newspaper notice only after mail came back (depends_on_outcome)."""
    tx.case_fields["fallback_started"] = True
    tx.notify(Role.HR, step.id, "fallback")
    for sid in tx.template.fallback_only_ids:
        fb = tx.template.by_id[sid]
        if tx.can_start(fb):
            tx.activate(fb)


def _on_start_fallback(template: FlowTemplate, state: CaseState, event: StartFallback) -> Decision | Refusal:
    """HR starts the fallback at once (the employee refused outright), without waiting for the timer."""
    refused = _require_hr(state, event, "fallback")
    if refused:
        return refused
    reason = event.reason.strip() if isinstance(event.reason, str) else ""
    if not reason:
        return refuse("reason_required", msg.reason_required(None), ("reason",))
    if state.fallback_started:
        return refuse("already_done", msg.fallback_already())
    # The step the employee leaves unsigned: the first open one whose lateness would start the fallback.
    waiting = next((s for s in template.steps if s.fallback and state.steps[s.id].status == "active"), None)
    if waiting is None or not template.fallback_only_ids:
        return refuse("no_fallback", msg.no_fallback(template.title))
    tx = _Tx(template, state, event.at)
    _open_fallback(tx, waiting)
    return tx.decide("fallback_started", {"step_id": waiting.id, "trigger": "manual", "reason": reason,
                                          "actor_id": event.actor_id, "actor_roles": _roles(event.actor_roles)})


def _on_evidence(template: FlowTemplate, state: CaseState, event: Evidence) -> Decision | Refusal:
    """An uploaded file recorded against a step's file field (its hash in the audit chain); the step's
    data names it, so completing the step can rest on it."""
    step = _open_step(template, state, event.step_id)
    if isinstance(step, Refusal):
        return step
    if step.role not in event.actor_roles:
        return _wrong_role(state, step, step.role, event, "upload")
    if event.field not in {f.key for f in step.file_fields}:
        return refuse("bad_action", msg.not_a_file_field(step, event.field), (event.field,))
    ss = state.steps[step.id]
    blocked = _blocked(template, state, step, ss)
    if blocked:
        return blocked
    digest = event.sha256.lower() if isinstance(event.sha256, str) else ""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        return refuse("bad_action", msg.not_a_file_field(step, event.field), (event.field,))
    tx = _Tx(template, state, event.at)
    tx.put(step.id, data={**ss.data, event.field: f"sha256:{digest}"})
    tx.effects.append(UpdateStep(step.id))
    return tx.decide("evidence_uploaded", {
        "step_id": step.id, "field": event.field, "upload_key": event.upload_key, "sha256": digest,
        "size": event.size, "content_type": event.content_type, "actor_id": event.actor_id,
        "actor_roles": _roles(event.actor_roles)})


def _require_hr(state: CaseState, event: Cancel | Close | Remind | Answer | Reopen | StartFallback,
                what: str) -> Refusal | None:
    closed = _closed(state)
    if closed:
        return closed
    if Role.HR not in event.actor_roles:
        return _wrong_role(state, None, Role.HR, event, what)
    return None


def _on_cancel(template: FlowTemplate, state: CaseState, event: Cancel) -> Decision | Refusal:
    refused = _require_hr(state, event, "cancel")
    if refused:
        return refused
    reason = event.reason.strip() if isinstance(event.reason, str) else ""
    if not reason:
        return refuse("reason_required", msg.reason_required(None), ("reason",))
    tx = _Tx(template, state, event.at)
    told = [Role.EMPLOYEE, Role.HR]
    for sid in state.active_steps():
        role = template.by_id[sid].role
        if role not in told:
            told.append(role)
    tx.close_case("cancelled")
    for role in told:
        tx.notify(role, None, "cancelled")
    return tx.decide(
        "case_cancelled", {"actor_id": event.actor_id, "actor_roles": _roles(event.actor_roles), "reason": reason}
    )


def _on_close(template: FlowTemplate, state: CaseState, event: Close) -> Decision | Refusal:
    refused = _require_hr(state, event, "close")
    if refused:
        return refused
    missing = missing_for_completion(template, state)
    if missing:
        return missing
    tx = _Tx(template, state, event.at)
    tx.complete_case_if_done()
    return tx.decide("case_closed", {"actor_id": event.actor_id, "actor_roles": _roles(event.actor_roles)})


def _on_remind(template: FlowTemplate, state: CaseState, event: Remind) -> Decision | Refusal:
    refused = _require_hr(state, event, "remind")
    if refused:
        return refused
    active = state.active_steps()
    if not active:
        return _noop(state)
    tx = _Tx(template, state, event.at)
    for sid in active:
        ss = state.steps[sid]
        n = ss.reminders_sent + 1
        tx.put(sid, reminders_sent=n)
        tx.notify(_next_actor(template.by_id[sid], ss), sid, "reminder", n)
    return tx.decide(
        "reminder_sent",
        {
            "steps": list(active),
            "trigger": "manual",
            "actor_id": event.actor_id,
            "actor_roles": _roles(event.actor_roles),
        },
    )


# --- questions to HR ---------------------------------------------------------------------------


def _checked_text(raw: Any, what: Text) -> str | Refusal:
    text = raw.strip() if isinstance(raw, str) else ""
    if not text:
        return refuse("missing_data", msg.empty_text(what), ("text",))
    if len(text) > MAX_QUESTION_CHARS:
        return refuse("too_long", msg.too_long(what, MAX_QUESTION_CHARS), ("text",))
    return text


def _on_ask(template: FlowTemplate, state: CaseState, event: Ask) -> Decision | Refusal:
    closed = _closed(state)
    if closed:
        return closed
    if Role.EMPLOYEE not in event.actor_roles:
        return _wrong_role(state, None, Role.EMPLOYEE, event, "ask")
    text = _checked_text(event.text, msg.QUESTION)
    if isinstance(text, Refusal):
        return text
    if len(state.questions) >= MAX_QUESTIONS:
        return refuse("too_many", msg.too_many_questions(MAX_QUESTIONS))
    # The step it is about: the card it was asked from, else where the case stands now.
    step_id = event.step_id if event.step_id in template.by_id else None
    active = state.active_steps()
    if step_id is None and active:
        step_id = active[0]
    qid = f"Q{len(state.questions) + 1}"
    tx = _Tx(template, state, event.at)
    tx.put_question(Question(qid, event.actor_id, event.at, text, step_id))
    tx.notify(Role.HR, qid, "question")
    tx.effects.append(SetTimer(qid, "question", template.policy.due("question", event.at),
                               f"{state.case_id}:{qid}:question"))
    return tx.decide("question_asked", {
        "question_id": qid, "actor_id": event.actor_id, "actor_roles": _roles(event.actor_roles),
        "text": text, "step_id": step_id, "active_steps": list(active),
    })


def _on_answer(template: FlowTemplate, state: CaseState, event: Answer) -> Decision | Refusal:
    refused = _require_hr(state, event, "answer")
    if refused:
        return refused
    q = state.questions.get(event.question_id)
    if q is None:
        return refuse("unknown_question", msg.unknown_question(event.question_id), (event.question_id,))
    if q.answered:
        return refuse("already_done", msg.already_answered(q.id))
    text = _checked_text(event.text, msg.ANSWER)
    if isinstance(text, Refusal):
        return text
    tx = _Tx(template, state, event.at)
    tx.put_question(Question(q.id, q.asked_by, q.asked_at, q.text, q.step_id, event.at, event.actor_id, text,
                             q.reminded))
    tx.effects.append(CancelTimers(q.id))
    tx.effects.append(UpdateStep(q.id))  # HR's question cards now show the answer, without a button
    tx.notify(Role.EMPLOYEE, q.id, "answer")
    # The question is repeated so that this one entry reads as the whole exchange in the archive.
    return tx.decide("question_answered", {
        "question_id": q.id, "actor_id": event.actor_id, "actor_roles": _roles(event.actor_roles),
        "question": q.text, "asked_by": q.asked_by, "asked_at": dump_time(q.asked_at), "text": text,
    })


def _on_question_timer(template: FlowTemplate, state: CaseState, event: TimerFired) -> Decision | Refusal:
    q = state.questions.get(event.step_id)
    # Answered meanwhile, case closed, or a redelivered timer: nothing to do.
    if state.status != "open" or q is None or q.answered or q.reminded:
        return _noop(state)
    tx = _Tx(template, state, event.at)
    tx.put_question(Question(q.id, q.asked_by, q.asked_at, q.text, q.step_id, reminded=True))
    tx.notify(Role.HR, q.id, "question_reminder", "timer")
    return tx.decide("question_reminded", {
        "question_id": q.id, "timer": "question",
        "after_hours": template.policy.question_remind_after_hours,
    })
def _on_reopen(template: FlowTemplate, state: CaseState, event: Reopen) -> Decision | Refusal:
    refused = _require_hr(state, event, "reopen")
    if refused:
        return refused
    step = _step(template, event.step_id)
    if isinstance(step, Refusal):
        return step
    ss = state.steps[step.id]
    if ss.status != "done":
        return refuse("not_active", msg.not_done_yet(step))
    later: list[str] = []
    todo = list(template.dependants[step.id])
    while todo:
        sid = todo.pop(0)
        if sid in later:
            continue
        later.append(sid)
        todo.extend(template.dependants[sid])
    for sid in later:
        st = state.steps[sid]
        if st.status == "done" or st.documents_signed:
            return refuse("not_reopenable", msg.not_reopenable(step, template.by_id[sid], bool(st.documents_signed)),
                          (sid,))
    tx = _Tx(template, state, event.at)
    # No new timers for the reopened step: HR reopened it to act on it now, and its card is updated in place.
    tx.put(step.id, status="active", activated_at=event.at, done_at=None, done_by=None, outcome=None,
           reminders_sent=0, timers_fired=frozenset())
    tx.effects.append(UpdateStep(step.id))
    relocked = []
    for sid in later:
        if state.steps[sid].status == "not_needed":
            # Closed because of the outcome being redone: it waits again for the new one.
            tx.put(sid, status="locked", done_at=None, outcome=None, data={})
            if state.steps[sid].activated_at is not None:
                tx.effects.append(UpdateStep(sid))
            relocked.append(sid)
        elif state.steps[sid].status == "active":
            # activated_at stays: activate() then knows the step's cards are out (see _Tx.activate).
            tx.put(sid, status="locked", viewed_at=None, viewed_by=frozenset(), reminders_sent=0,
                   timers_fired=frozenset())
            tx.effects.append(CancelTimers(sid))
            tx.effects.append(UpdateStep(sid))
            relocked.append(sid)
    return tx.decide("step_reopened", {
        "step_id": step.id, "actor_id": event.actor_id, "actor_roles": _roles(event.actor_roles),
        "reason": event.reason.strip() if isinstance(event.reason, str) else "", "relocked": relocked,
    })


def _on_prepare(template: FlowTemplate, state: CaseState, event: Prepare) -> Decision | Refusal:
    """HR adds to a step's document (hr_fields) before anyone has signed it."""
    step = _open_step(template, state, event.step_id)
    if isinstance(step, Refusal):
        return step
    if Role.HR not in event.actor_roles:
        return _wrong_role(state, step, Role.HR, event, "prepare")
    ss = state.steps[step.id]
    if ss.status == "done":
        return refuse("already_done", msg.already_done(step))
    if ss.documents_signed:
        return refuse("already_signed", msg.prepare_after_signing(step))
    merged = _prepared(step, ss, event.data)
    if isinstance(merged, Refusal):
        return merged
    tx = _Tx(template, state, event.at)
    tx.put(step.id, data=merged)
    tx.effects.append(UpdateStep(step.id))
    return tx.decide("step_prepared", {"step_id": step.id, "actor_id": event.actor_id,
                                       "actor_roles": _roles(event.actor_roles), "data": plain_copy(event.data)})


def _on_note(template: FlowTemplate, state: CaseState, event: Note) -> Decision | Refusal:
    closed = _closed(state)
    if closed:
        return closed
    tx = _Tx(template, state, event.at)
    return tx.decide(event.kind, {**plain_copy(event.data), "actor_id": event.actor_id,
                                  "actor_roles": _roles(event.actor_roles)})


def _on_seal_failed(template: FlowTemplate, state: CaseState, event: SealFailed) -> Decision | Refusal:
    """Take back a signature whose document could not be sealed, so the step is never done on it.

    The step opens again (the signer gets a fresh card with a new link) and steps that started because
    it was done go back to waiting, unless someone already finished them: their decisions stand.
    """
    step = _step(template, event.step_id)
    if isinstance(step, Refusal):
        return step
    ss = state.steps[step.id]
    if event.document not in ss.documents_signed:
        return _noop(state)
    tx = _Tx(template, state, event.at)
    if state.status != "open":
        # A finished case is not reopened; HR is still told, so the document can be handled by hand.
        tx.notify(Role.HR, step.id, "seal_failed", event.attempt_key)
        return tx.decide("seal_failed", {"step_id": step.id, "document": event.document,
                                         "reason": event.reason, "reopened": False})
    # Every signature on it stops counting (for a document several people sign, each signer's too):
    # the new draft is signed again from the first signer on.
    signed = frozenset(d for d in ss.documents_signed
                       if d != event.document and not d.startswith(signature_mark(event.document, "")))
    reopened = ss.status == "done"
    if reopened:
        tx.put(step.id, status="active", documents_signed=signed, done_at=None, done_by=None, outcome=None)
        for dep in template.dependants[step.id]:
            if tx.get(dep).status == "active":
                tx.put(dep, status="locked", activated_at=None)
                tx.effects.append(CancelTimers(dep))
                tx.effects.append(UpdateStep(dep))
    else:
        tx.put(step.id, documents_signed=signed)
    tx.effects.append(UpdateStep(step.id))
    tx.notify(step.signed_by, step.id, "step", f"reseal-{event.attempt_key}")
    tx.notify(Role.HR, step.id, "seal_failed", event.attempt_key)
    return tx.decide("seal_failed", {"step_id": step.id, "document": event.document,
                                     "reason": event.reason, "reopened": reopened})


_HANDLERS: dict[type, Any] = {
    Start: _on_start,
    Viewed: _on_viewed,
    Act: _on_act,
    DocumentSigned: _on_signed,
    TimerFired: _on_timer,
    Cancel: _on_cancel,
    Close: _on_close,
    Remind: _on_remind,
    Ask: _on_ask,
    Answer: _on_answer,
    Reopen: _on_reopen,
    Note: _on_note,
    SealFailed: _on_seal_failed,
    Prepare: _on_prepare,
    StartFallback: _on_start_fallback,
    Evidence: _on_evidence,
}
