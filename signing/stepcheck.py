"""Do a case's stored state and its audit chain tell the same story?

The hash chain proves the entries were not changed after a checkpoint signed them; it says nothing
about the case and step rows beside it. Every state change of a case is the engine's decision on one
event, and its audit entry records that event (who, what, when, the form data). So the entries are
turned back into events and replayed through the pure engine from a fresh case: each replayed
decision must produce exactly the entry that is stored, and the state the replay ends in must be the
stored state. A step marked done with no entry for it, an entry edited (hashes recomputed) to say
something else, or a deleted entry whose effect is still in the step rows all show up here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from storage import casestore
from storage.canonical import canonical_json
from storage.models import AuditEntry, Case, CaseStep, Employee
from workflow import engine
from workflow.effects import Audit
from workflow.events import (
    NOTE_KINDS,
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
    StartFallback,
    TimerFired,
    Viewed,
)
from workflow.model import CaseState, Role, StepState
from workflow.template import FlowTemplate
from workflow.timeutil import load_time

# Entries that record no engine decision: the case row's opening facts (checked against the row),
# the signature evidence (checked against the signature row), a company-issued document's hashes
# (checked against the document row) and refusals (which change nothing).
_NOT_DECISIONS = frozenset({"case_opened", "refused", "signature_evidence", "document_issued"})
_ALL_ROLES = frozenset(Role)
# What every entry carries beside its event's own facts (see engine._Tx.decide).
_ENVELOPE = frozenset({"case_id", "at", "activated", "completed", "case_status", "actor_id", "actor_roles"})


def _roles(data: Mapping[str, Any]) -> frozenset[Role]:
    return frozenset(Role(r) for r in data.get("actor_roles") or ())


def event_of(kind: str, data: Mapping[str, Any]) -> Event | None:
    """The event an engine entry records (None for a kind the engine does not write)."""
    at = load_time(data["at"])
    step = data.get("step_id")
    if kind == "step_viewed":
        # A view records the roles the holder opened the step in (which reminders they stop); an entry
        # written before views were kept per holder has none: that the engine accepted it is what it says.
        roles = _roles(data) if "actor_roles" in data else _ALL_ROLES
        return Viewed(step, data["actor_id"], roles, at)  # type: ignore[arg-type]
    if kind in ("step_done", "step_rejected"):
        return Act(step, data["action"], data["actor_id"], _roles(data), dict(data.get("data") or {}), at)
    if kind == "document_signed":
        return DocumentSigned(step, data["document"], data["actor_id"], _roles(data), at)  # type: ignore[arg-type]
    if kind == "reminder_sent":
        if data.get("trigger") == "timer":
            return TimerFired(step, data.get("timer", "remind"), at)  # type: ignore[arg-type]
        return Remind(data["actor_id"], _roles(data), at)  # type: ignore[arg-type]
    if kind == "hr_alerted":
        return TimerFired(step, "alert", at)  # type: ignore[arg-type]
    if kind == "fallback_started":
        if data.get("trigger") == "manual":  # HR's /fallback, with the reason
            return StartFallback(data["actor_id"], _roles(data), data["reason"], at)  # type: ignore[arg-type]
        return TimerFired(step, "fallback", at)  # type: ignore[arg-type]
    if kind == "evidence_uploaded":
        return Evidence(step, data["field"], data["upload_key"], data["sha256"], int(data["size"]),  # type: ignore[arg-type]
                        data["content_type"], data["actor_id"], _roles(data), at)  # type: ignore[arg-type]
    if kind == "case_cancelled":
        return Cancel(data["actor_id"], _roles(data), data["reason"], at)  # type: ignore[arg-type]
    if kind == "case_closed":
        return Close(data["actor_id"], _roles(data), at)  # type: ignore[arg-type]
    if kind == "question_asked":
        return Ask(data["actor_id"], _roles(data), data["text"], at, step)
    if kind == "question_answered":
        return Answer(data["question_id"], data["actor_id"], _roles(data), data["text"], at)
    if kind == "question_reminded":
        return TimerFired(data["question_id"], "question", at)
    if kind == "step_reopened":
        return Reopen(step, data["actor_id"], _roles(data), data.get("reason", ""), at)  # type: ignore[arg-type]
    if kind == "step_prepared":
        return Prepare(step, data["actor_id"], _roles(data), dict(data.get("data") or {}), at)  # type: ignore[arg-type]
    if kind == "seal_failed":
        # The attempt key only tells the messages of two give-ups apart; the entry does not depend on it.
        return SealFailed(step, data["document"], "", data["reason"], at)  # type: ignore[arg-type]
    if kind in NOTE_KINDS or kind.startswith("note_"):
        facts = {k: v for k, v in data.items() if k not in _ENVELOPE}
        return Note(kind, data["actor_id"], _roles(data), facts, at)
    return None


def replay(template: FlowTemplate, case_id: str, entries: Sequence[tuple[int, str, Mapping[str, Any]]]
           ) -> CaseState | str:
    """The state the chain's entries (seq, kind, data) lead to, or the first entry that does not
    follow from the ones before it."""
    state: CaseState | None = None
    for seq, kind, data in entries:
        if kind in _NOT_DECISIONS:
            continue
        try:
            if kind == "case_started":
                if state is not None:
                    return f"entry #{seq}: the case is started twice"
                decision: engine.Decision | engine.Refusal = engine.start(
                    template, case_id, load_time(data["at"]), prepared=data.get("prepared"))
            elif state is None:
                return f"entry #{seq} ({kind}) comes before the case was started"
            else:
                event = event_of(kind, data)
                if event is None:
                    return f"entry #{seq}: unknown kind {kind!r}"
                decision = engine.apply(template, state, event)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            return f"entry #{seq} ({kind}) cannot be read as an event ({type(exc).__name__}: {exc})"
        if isinstance(decision, engine.Refusal):
            return f"entry #{seq} ({kind}) does not follow from the entries before it ({decision.code})"
        made = [e for e in decision.effects if isinstance(e, Audit)]
        if len(made) != 1 or made[0].kind != kind or canonical_json(made[0].data) != canonical_json(data):
            return f"entry #{seq} ({kind}) is not what the engine records for that event"
        state = decision.state
    if state is None:
        return "no case_started entry"
    return state


_STEP_FIELDS = casestore.step_columns()  # the case_step columns that hold a step's state


def _stored(row: CaseStep) -> StepState:
    return casestore.step_state({c: getattr(row, c) for c in _STEP_FIELDS})


def differences(expected: CaseState, case: Case, rows: Sequence[CaseStep]) -> list[str]:
    """Where the stored case and steps differ from the replayed state."""
    out: list[str] = []
    for name in ("status", "fallback_started", "started_at", "closed_at"):
        if getattr(case, name) != getattr(expected, name):
            out.append(f"case {name} is {getattr(case, name)!r}, the chain says {getattr(expected, name)!r}")
    by_id = {r.step_id: r for r in rows}
    for step_id, want in expected.steps.items():
        row = by_id.pop(step_id, None)
        if row is None:
            out.append(f"step {step_id} is missing")
            continue
        have = _stored(row)
        for name in _STEP_FIELDS:
            if name == "viewed_by" and row.viewed_by is None:
                continue  # a step row not written since viewers were kept (migration 0011)
            if getattr(have, name) != getattr(want, name):
                out.append(f"step {step_id} {name} is {getattr(have, name)!r}, "
                           f"the chain says {getattr(want, name)!r}")
    out += [f"step {sid} is not in the template" for sid in sorted(by_id)]
    return out


def _opening(case: Case, employee_id: str, data: Mapping[str, Any]) -> list[str]:
    want = {"employee": employee_id, "template": case.template_id, "version": case.template_version,
            "last_day": case.last_day.isoformat() if isinstance(case.last_day, date) else None,
            "reason": case.reason}
    return [f"case {k} is {v!r}, the opening entry says {data.get(k)!r}" for k, v in want.items()
            if data.get(k) != v]


async def check_case_state(case: Case, templates: Mapping[str, FlowTemplate]) -> tuple[bool, str]:
    """(ok, detail): the case row and every step row agree with a replay of the audit chain."""
    template = templates.get(case.template_id)
    if template is None:
        return False, f"template {case.template_id!r} is not loaded, so the steps cannot be checked"
    if template.version != case.template_version:
        # A company may have changed the template since; a replay under other rules proves nothing.
        return True, (f"not replayed: the case uses version {case.template_version} of {template.id}, "
                      f"version {template.version} is loaded")
    entries = [(e.seq, e.kind, e.data or {}) for e in await AuditEntry.filter(case_id=case.id).order_by("seq")]
    problems: list[str] = []
    opened = [d for _, k, d in entries if k == "case_opened"]
    if len(opened) != 1:
        problems.append(f"{len(opened)} opening entries")
    else:
        emp = await Employee.get_or_none(id=case.employee_id)  # type: ignore[attr-defined]
        problems += _opening(case, emp.employee_id if emp else "?", opened[0])
    result = replay(template, case.id, entries)
    if isinstance(result, str):
        problems.append(result)
    else:
        problems += differences(result, case, await CaseStep.filter(case_id=case.id))
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return False, problems[0] + more
    return True, f"{len(entries)} entries replayed; case and {len(template.steps)} steps agree"
