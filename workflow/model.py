"""Case and step state: the engine's only memory, persisted by storage/ as JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from workflow.plain import plain_copy
from workflow.text import Text
from workflow.timeutil import dump_time, load_time, utc


class Role(StrEnum):
    EMPLOYEE = "employee"
    MANAGER = "manager"
    HR = "hr"
    FINANCE = "finance"
    IT = "it"
    HANDOVER = "handover"


class StepKind(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    APPROVE = "approve"
    CONFIRM = "confirm"
    FORM = "form"
    SIGN = "sign"
    HR_TASK = "hr_task"


ROLE_TITLES: dict[Role, Text] = {
    Role.EMPLOYEE: Text("离职员工", "departing employee"),
    Role.MANAGER: Text("直属上级", "manager"),
    Role.HR: Text("人事（HR）", "HR"),
    Role.FINANCE: Text("财务", "finance"),
    Role.IT: Text("IT 管理员", "IT"),
    Role.HANDOVER: Text("工作交接人", "handover colleague"),
}

# not_needed: closed without being done, because the case completed without it or a branch
# (an outcome-dependent step, see workflow/README.md) made it unnecessary; `outcome` says why.
StepStatus = Literal["locked", "active", "done", "not_needed"]
STEP_STATUSES = ("locked", "active", "done", "not_needed")
CaseStatus = Literal["open", "completed", "cancelled"]


def signature_mark(document: str, role: Role | str) -> str:
    """How one signer's signature on a document several people sign is kept in `documents_signed`
    ("handover_confirmation@employee"); the bare kind is added once every signer has signed."""
    return f"{document}@{role}"


def roles_of(values: Any) -> frozenset[Role]:
    """Coerce role names (as the service or JSON delivers them) into Role members."""
    if isinstance(values, (str, Role)):
        raise TypeError("actor_roles must be a collection of roles, not a single string")
    return frozenset(Role(v) for v in values)


def viewer_mark(role: Role | str, employee_id: str) -> str:
    """How a holder who opened a step is kept in `StepState.viewed_by`: the role they opened it in."""
    return f"{role}:{employee_id}"


def viewers(viewed_by: frozenset[str], role: Role | str) -> tuple[str, ...]:
    """Employee ids of those who opened a step in `role`."""
    prefix = f"{role}:"
    return tuple(sorted(m[len(prefix):] for m in viewed_by if m.startswith(prefix)))


@dataclass(frozen=True, slots=True)
class StepState:
    status: StepStatus = "locked"
    activated_at: datetime | None = None
    viewed_at: datetime | None = None
    done_at: datetime | None = None
    done_by: str | None = None
    outcome: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    # Document kinds fully signed; for a document several people sign, also one `signature_mark`
    # per signer who has signed it.
    documents_signed: frozenset[str] = frozenset()
    reminders_sent: int = 0
    rejections: int = 0
    # Which timer kinds already fired for this step: a redelivered timer must not remind or alert twice.
    timers_fired: frozenset[str] = frozenset()
    # Who has opened the step, one `viewer_mark(role, employee id)` per role they opened it in: a
    # reminder goes only to holders of its role who have not looked (`viewed_at` is the first look).
    viewed_by: frozenset[str] = frozenset()

    def evolve(self, **changes: Any) -> StepState:
        """Copy with some fields changed; the engine's hot path (dataclasses.replace is 3x slower)."""
        get = changes.get
        return StepState(
            get("status", self.status),
            get("activated_at", self.activated_at),
            get("viewed_at", self.viewed_at),
            get("done_at", self.done_at),
            get("done_by", self.done_by),
            get("outcome", self.outcome),
            get("data", self.data),
            get("documents_signed", self.documents_signed),
            get("reminders_sent", self.reminders_sent),
            get("rejections", self.rejections),
            get("timers_fired", self.timers_fired),
            get("viewed_by", self.viewed_by),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "activated_at": dump_time(self.activated_at),
            "viewed_at": dump_time(self.viewed_at),
            "done_at": dump_time(self.done_at),
            "done_by": self.done_by,
            "outcome": self.outcome,
            "data": plain_copy(self.data),
            "documents_signed": sorted(self.documents_signed),
            "reminders_sent": self.reminders_sent,
            "rejections": self.rejections,
            "timers_fired": sorted(self.timers_fired),
            "viewed_by": sorted(self.viewed_by),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepState:
        status = data["status"]
        if status not in STEP_STATUSES:
            raise ValueError(f"unknown step status {status!r}")
        return cls(
            status=status,
            activated_at=load_time(data.get("activated_at")),
            viewed_at=load_time(data.get("viewed_at")),
            done_at=load_time(data.get("done_at")),
            done_by=data.get("done_by"),
            outcome=data.get("outcome"),
            data=plain_copy(data.get("data") or {}),
            documents_signed=frozenset(data.get("documents_signed") or ()),
            reminders_sent=int(data.get("reminders_sent", 0)),
            rejections=int(data.get("rejections", 0)),
            timers_fired=frozenset(data.get("timers_fired") or ()),
            viewed_by=frozenset(data.get("viewed_by") or ()),
        )


# A question is evidence (Case B's dispute was "nobody told me"), so its text is kept whole but bounded.
MAX_QUESTION_CHARS = 2000
MAX_QUESTIONS = 50  # per case: a runaway client cannot grow the case row without end


@dataclass(frozen=True, slots=True)
class Question:
    """An employee's question to HR on their case, and HR's answer once given."""

    id: str  # "Q1", "Q2", ... within the case
    asked_by: str
    asked_at: datetime
    text: str
    step_id: str | None = None  # the step the employee asked about (the card they asked from)
    answered_at: datetime | None = None
    answered_by: str | None = None
    answer: str | None = None
    reminded: bool = False  # HR was reminded once the policy time passed unanswered

    @property
    def answered(self) -> bool:
        return self.answered_at is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "asked_by": self.asked_by, "asked_at": dump_time(self.asked_at), "text": self.text,
            "step_id": self.step_id, "answered_at": dump_time(self.answered_at), "answered_by": self.answered_by,
            "answer": self.answer, "reminded": self.reminded,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Question:
        asked = load_time(data["asked_at"])
        if asked is None:
            raise ValueError("asked_at is required")
        return cls(
            id=str(data["id"]), asked_by=str(data["asked_by"]), asked_at=asked, text=str(data["text"]),
            step_id=data.get("step_id"), answered_at=load_time(data.get("answered_at")),
            answered_by=data.get("answered_by"), answer=data.get("answer"), reminded=bool(data.get("reminded")),
        )


def questions_to_list(questions: dict[str, Question]) -> list[dict[str, Any]]:
    return [q.to_dict() for q in questions.values()]


def questions_from_list(data: Any) -> dict[str, Question]:
    if not data:
        return {}
    return {q.id: q for q in (Question.from_dict(d) for d in data)}


@dataclass(frozen=True, slots=True)
class CaseState:
    case_id: str
    template_id: str
    status: CaseStatus
    steps: dict[str, StepState]
    fallback_started: bool
    started_at: datetime
    closed_at: datetime | None
    template_version: int = 1
    questions: dict[str, Question] = field(default_factory=dict)  # by id, in the order asked

    def evolve(self, **changes: Any) -> CaseState:
        get = changes.get
        return CaseState(
            self.case_id,
            self.template_id,
            get("status", self.status),
            get("steps", self.steps),
            get("fallback_started", self.fallback_started),
            self.started_at,
            get("closed_at", self.closed_at),
            self.template_version,
            get("questions", self.questions),
        )

    def step(self, step_id: str) -> StepState:
        return self.steps[step_id]

    def active_steps(self) -> tuple[str, ...]:
        return tuple(sid for sid, st in self.steps.items() if st.status == "active")

    def to_dict(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "template_id": self.template_id,
            "template_version": self.template_version,
            "status": self.status,
            "steps": {sid: st.to_dict() for sid, st in self.steps.items()},
            "fallback_started": self.fallback_started,
            "started_at": dump_time(self.started_at),
            "closed_at": dump_time(self.closed_at),
            "questions": questions_to_list(self.questions),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaseState:
        status = data["status"]
        if status not in ("open", "completed", "cancelled"):
            raise ValueError(f"unknown case status {status!r}")
        started = load_time(data["started_at"])
        if started is None:
            raise ValueError("started_at is required")
        return cls(
            case_id=str(data["case_id"]),
            template_id=str(data["template_id"]),
            template_version=int(data.get("template_version", 1)),
            status=status,
            steps={sid: StepState.from_dict(st) for sid, st in data["steps"].items()},
            fallback_started=bool(data["fallback_started"]),
            started_at=started,
            closed_at=load_time(data.get("closed_at")),
            questions=questions_from_list(data.get("questions")),
        )

    def __post_init__(self) -> None:
        utc(self.started_at)
