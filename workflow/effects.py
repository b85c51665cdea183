"""What the engine asks the service to do, in the same transaction as the new state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal

from workflow.model import Role
from workflow.plain import plain_copy
from workflow.timeutil import dump_time, load_time

Purpose = Literal["step", "reminder", "alert", "fallback", "completion", "cancelled", "rejected",
                  "question", "question_reminder", "answer", "seal_failed"]
# remind: the first reminder (policy.remind_after_hours after the step opened); remind_due: the one
# before the step's deadline (policy.remind_before_deadline_hours), to whoever has not acted yet.
TimerKind = Literal["remind", "remind_due", "alert", "fallback", "question"]


@dataclass(frozen=True, slots=True)
class Notify:
    """Send a message/card to whoever holds `role` in this case; `key` makes the send idempotent.
    For the question purposes `step_id` holds the question id (cards of a question update together
    like cards of a step)."""

    role: Role
    step_id: str | None
    purpose: Purpose
    key: str
    skip: tuple[str, ...] = ()  # employee ids holding the role who are not to get it (they opened the step)
    type: ClassVar[str] = "Notify"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.type,
            "role": str(self.role),
            "step_id": self.step_id,
            "purpose": self.purpose,
            "key": self.key,
        }
        if self.skip:
            out["skip"] = list(self.skip)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Notify:
        return cls(Role(data["role"]), data.get("step_id"), data["purpose"], data["key"],
                   tuple(data.get("skip") or ()))


@dataclass(frozen=True, slots=True)
class UpdateStep:
    """Cards already sent for this step are out of date and must be re-rendered everywhere."""

    step_id: str
    type: ClassVar[str] = "UpdateStep"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "step_id": self.step_id}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UpdateStep:
        return cls(data["step_id"])


@dataclass(frozen=True, slots=True)
class SetTimer:
    step_id: str
    kind: TimerKind
    due_at: datetime
    key: str
    type: ClassVar[str] = "SetTimer"

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "step_id": self.step_id,
            "kind": self.kind,
            "due_at": dump_time(self.due_at),
            "key": self.key,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SetTimer:
        due = load_time(data["due_at"])
        if due is None:
            raise ValueError("due_at is required")
        return cls(data["step_id"], data["kind"], due, data["key"])


@dataclass(frozen=True, slots=True)
class CancelTimers:
    step_id: str
    type: ClassVar[str] = "CancelTimers"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "step_id": self.step_id}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CancelTimers:
        return cls(data["step_id"])


@dataclass(frozen=True, slots=True)
class Audit:
    """One audit-log entry; `data` is plain JSON (times as ISO strings, roles as names)."""

    kind: str
    data: dict[str, Any]
    type: ClassVar[str] = "Audit"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "kind": self.kind, "data": plain_copy(self.data)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Audit:
        return cls(data["kind"], plain_copy(data["data"]))


Effect = Notify | UpdateStep | SetTimer | CancelTimers | Audit

_EFFECT_TYPES: dict[str, Any] = {cls.type: cls for cls in (Notify, UpdateStep, SetTimer, CancelTimers, Audit)}


def effect_from_dict(data: dict[str, Any]) -> Effect:
    try:
        cls = _EFFECT_TYPES[data["type"]]
    except KeyError as exc:
        raise ValueError(f"unknown effect type {data.get('type')!r}") from exc
    return cls.from_dict(data)
