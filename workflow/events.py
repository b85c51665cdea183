"""Events fed to the engine. The service resolves who the actor is relative to the case
(employee, manager, handover colleague) and which directory roles (hr, finance, it) they hold."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal

from workflow.model import Role, roles_of
from workflow.plain import plain_copy
from workflow.timeutil import utc

Action = Literal["approve", "reject", "confirm", "acknowledge", "submit", "complete"]
TimerKind = Literal["remind", "alert", "fallback", "question"]
ACTIONS: frozenset[str] = frozenset(("approve", "reject", "confirm", "acknowledge", "submit", "complete"))
TIMER_KINDS: frozenset[str] = frozenset(("remind", "remind_due", "alert", "fallback", "question"))


def _normalise(event: Any) -> None:
    object.__setattr__(event, "at", utc(event.at))
    if hasattr(event, "actor_roles"):
        object.__setattr__(event, "actor_roles", roles_of(event.actor_roles))


@dataclass(frozen=True, slots=True)
class Start:
    at: datetime
    # What HR added to steps when starting the case ({step id: {hr field: value}}), e.g. the
    # case-specific handover items typed with /offboard.
    prepared: dict[str, dict[str, Any]] = field(default_factory=dict)
    type: ClassVar[str] = "Start"

    def __post_init__(self) -> None:
        _normalise(self)
        object.__setattr__(self, "prepared", plain_copy(self.prepared))


@dataclass(frozen=True, slots=True)
class Viewed:
    step_id: str
    actor_id: str
    actor_roles: frozenset[Role]
    at: datetime
    type: ClassVar[str] = "Viewed"

    def __post_init__(self) -> None:
        _normalise(self)


@dataclass(frozen=True, slots=True)
class Act:
    step_id: str
    action: Action
    actor_id: str
    actor_roles: frozenset[Role]
    data: dict[str, Any] = field(default_factory=dict)
    at: datetime | None = None
    type: ClassVar[str] = "Act"

    def __post_init__(self) -> None:
        if self.at is None:
            raise TypeError("Act needs 'at'")
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}")
        _normalise(self)
        # Own a JSON-safe copy so later changes to the caller's dict cannot leak into case state.
        object.__setattr__(self, "data", plain_copy(self.data))


@dataclass(frozen=True, slots=True)
class DocumentSigned:
    step_id: str
    document: str
    actor_id: str
    actor_roles: frozenset[Role]
    at: datetime
    type: ClassVar[str] = "DocumentSigned"

    def __post_init__(self) -> None:
        _normalise(self)


@dataclass(frozen=True, slots=True)
class Ask:
    """The employee asks HR something on their case; `step_id` is the step they asked from, if any."""

    actor_id: str
    actor_roles: frozenset[Role]
    text: str
    at: datetime
    step_id: str | None = None
    type: ClassVar[str] = "Ask"

    def __post_init__(self) -> None:
        _normalise(self)


@dataclass(frozen=True, slots=True)
class Answer:
    """HR answers one question of the case."""

    question_id: str
    actor_id: str
    actor_roles: frozenset[Role]
    text: str
    at: datetime
    type: ClassVar[str] = "Answer"

    def __post_init__(self) -> None:
        _normalise(self)


@dataclass(frozen=True, slots=True)
class TimerFired:
    step_id: str  # for kind "question": the question id
    kind: TimerKind
    at: datetime
    type: ClassVar[str] = "TimerFired"

    def __post_init__(self) -> None:
        if self.kind not in TIMER_KINDS:
            raise ValueError(f"unknown timer kind {self.kind!r}")
        _normalise(self)


@dataclass(frozen=True, slots=True)
class Cancel:
    actor_id: str
    actor_roles: frozenset[Role]
    reason: str
    at: datetime
    type: ClassVar[str] = "Cancel"

    def __post_init__(self) -> None:
        _normalise(self)


@dataclass(frozen=True, slots=True)
class Close:
    actor_id: str
    actor_roles: frozenset[Role]
    at: datetime
    type: ClassVar[str] = "Close"

    def __post_init__(self) -> None:
        _normalise(self)


@dataclass(frozen=True, slots=True)
class Remind:
    actor_id: str
    actor_roles: frozenset[Role]
    at: datetime
    type: ClassVar[str] = "Remind"

    def __post_init__(self) -> None:
        _normalise(self)


@dataclass(frozen=True, slots=True)
class Reopen:
    """HR redoes a finished step (e.g. the HR check after correcting what the back-pay is computed from):
    the step is active again and the steps waiting on it go back to locked, if nothing after it was done
    or signed."""

    step_id: str
    actor_id: str
    actor_roles: frozenset[Role]
    reason: str
    at: datetime
    type: ClassVar[str] = "Reopen"

    def __post_init__(self) -> None:
        _normalise(self)


@dataclass(frozen=True, slots=True)
class Prepare:
    """HR adds to what a step's document will say (its `hr_fields`, e.g. case-specific handover items)
    while nothing of the step is signed yet."""

    step_id: str
    actor_id: str
    actor_roles: frozenset[Role]
    data: dict[str, Any]
    at: datetime
    type: ClassVar[str] = "Prepare"

    def __post_init__(self) -> None:
        _normalise(self)
        object.__setattr__(self, "data", plain_copy(self.data))


@dataclass(frozen=True, slots=True)
class Note:
    """A fact recorded in the case's audit chain without moving any step (a computation HR must resolve,
    rates HR entered with a reason). Who may record which note is the caller's decision."""

    kind: str
    actor_id: str
    actor_roles: frozenset[Role]
    data: dict[str, Any]
    at: datetime
    type: ClassVar[str] = "Note"

    def __post_init__(self) -> None:
        if not self.kind.startswith("note_") and self.kind not in NOTE_KINDS:
            raise ValueError(f"unknown note kind {self.kind!r}")
        _normalise(self)
        object.__setattr__(self, "data", plain_copy(self.data))


@dataclass(frozen=True, slots=True)
class SealFailed:
    """A signed document could not be sealed after the allowed attempts: its signature no longer counts,
    the step is open again for a new signature and HR is told. `attempt_key` (the document's id) keeps
    the messages of each give-up distinct."""

    step_id: str
    document: str
    attempt_key: str
    reason: str
    at: datetime
    type: ClassVar[str] = "SealFailed"

    def __post_init__(self) -> None:
        _normalise(self)


@dataclass(frozen=True, slots=True)
class StartFallback:
    """HR starts the fallback delivery now (the employee refused outright), with the reason; the same as
    the fallback timer firing, but on HR's word."""

    actor_id: str
    actor_roles: frozenset[Role]
    reason: str
    at: datetime
    type: ClassVar[str] = "StartFallback"

    def __post_init__(self) -> None:
        _normalise(self)


@dataclass(frozen=True, slots=True)
class Evidence:
    """HR uploaded a file (a scan of the postal receipt, of the printed notice) for a step's file field.
    The bytes stay in storage; the case records their SHA-256, size and type, and `upload_key` names the
    stored file."""

    step_id: str
    field: str
    upload_key: str
    sha256: str
    size: int
    content_type: str
    actor_id: str
    actor_roles: frozenset[Role]
    at: datetime
    type: ClassVar[str] = "Evidence"

    def __post_init__(self) -> None:
        _normalise(self)


# Audit kinds a Note may carry (besides "note_*"): they must not pass for the engine's own entries.
NOTE_KINDS: frozenset[str] = frozenset(("backpay_blocked", "backpay_rates_entered"))

Event = (Start | Viewed | Act | DocumentSigned | TimerFired | Cancel | Close | Remind | Ask | Answer | Reopen | Note
         | SealFailed | Prepare | StartFallback | Evidence)
PersonEvent = (Viewed | Act | DocumentSigned | Cancel | Close | Remind | Ask | Answer | Reopen | Note | Prepare
               | StartFallback | Evidence)
