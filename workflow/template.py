"""Compiled flow templates: validated once at load, then read by the engine on every event.

Lookups the engine needs per event (step by id, dependants, step number) are precomputed here so
that applying an event never re-validates or re-scans the template.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from workflow.model import Role, StepKind, StepState, signature_mark
from workflow.text import Text
from workflow.timerules import after

FieldType = Literal["text", "textarea", "date", "number", "file", "choice"]
RemindTo = Literal["not_viewed", "everyone"]


@dataclass(frozen=True, slots=True)
class Policy:
    remind_after_hours: float = 24
    alert_after_hours: float = 72
    fallback_after_hours: float = 168
    # An employee's question unanswered this long reminds HR (once).
    question_remind_after_hours: float = 24
    # Who the first reminder goes to: "not_viewed" = holders who have not opened the step (its details
    # page or signing page), "everyone" = every holder still to act.
    remind_to: RemindTo = "not_viewed"
    # A second reminder this long before the step's deadline, to every holder still to act, whether
    # they opened the step or not (None: none).
    remind_before_deadline_hours: float | None = None

    def due_reminder(self, deadline_hours: float) -> timedelta | None:
        """When, after a step opened, its reminder before the deadline is due (None: no such reminder,
        or the deadline is too close for one)."""
        if self.remind_before_deadline_hours is None or deadline_hours <= self.remind_before_deadline_hours:
            return None
        return timedelta(hours=deadline_hours - self.remind_before_deadline_hours)

    # Count these hours (and the step's deadline) in working days of China's calendar: every 24 hours
    # is one working day (workflow.timerules).
    business_days: bool = False

    def hours(self, kind: str) -> float:
        if kind == "remind":
            return self.remind_after_hours
        if kind == "alert":
            return self.alert_after_hours
        if kind == "fallback":
            return self.fallback_after_hours
        if kind == "question":
            return self.question_remind_after_hours
        raise ValueError(f"unknown timer kind {kind!r}")

    def delay(self, kind: str) -> timedelta:
        """The span in clock hours (what a card states); `due` is when it ends."""
        return timedelta(hours=self.hours(kind))

    def due(self, kind: str, at: datetime) -> datetime:
        """When a timer of `kind` set at `at` is due (working days counted when business_days)."""
        return after(at, self.hours(kind), business_days=self.business_days)


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """A piece of data the acting person must (or may) enter when completing the step."""

    key: str
    label: Text
    type: FieldType = "text"
    required: bool = True
    options: tuple[tuple[str, Text], ...] = ()  # choice: (value, label) in the order shown


@dataclass(frozen=True, slots=True)
class StepTemplate:
    id: str
    number: int  # 1-based position in the template, shown as "step n of m"
    title: Text
    ask: Text
    why: Text
    role: Role
    kind: StepKind
    documents: tuple[str, ...]
    depends_on: tuple[str, ...]
    deadline_hours: float
    required: bool
    fallback: bool
    fallback_only: bool
    policy: Policy  # template policy with this step's overrides applied
    # Who signs this step's documents, in signing order (defaults to the acting role). With more than
    # one, each document is signed by every one of them in turn, all on the same PDF.
    signers: tuple[Role, ...]
    fields: tuple[FieldSpec, ...] = ()
    replaces: tuple[str, ...] = ()  # fallback_only: steps this one stands in for once done
    replaces_on: tuple[str, ...] = ()  # outcomes of this step that stand in for them (empty: any)
    outcome_field: str | None = None  # a choice field whose value is the step's outcome
    # dependency -> outcomes it must have finished with for this step to open; any other outcome
    # makes this step unnecessary (status not_needed)
    depends_on_outcome: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def option_label(self, key: str, value: object) -> Text | None:
        """The label of a choice field's value (what an outcome reads as on a card)."""
        for f in self.fields:
            if f.key == key:
                return next((label for v, label in f.options if v == value), None)
        return None
    # Lines the step's document lists (e.g. the handover checklist); HR may add case-specific ones.
    items: tuple[Text, ...] = ()
    # Data HR may add to the step while nothing of it is signed yet (`Prepare`, or at /offboard).
    hr_fields: tuple[FieldSpec, ...] = ()
    # fallback_only: the company-issued document HR sends or publishes for this step (the registered-mail
    # letter, the newspaper notice), rendered when the step opens, and the documents enclosed with it.
    notice: str | None = None
    encloses: tuple[str, ...] = ()

    @property
    def deadline(self) -> timedelta:
        return timedelta(hours=self.deadline_hours)

    def due_by(self, activated_at: datetime) -> datetime:
        """The step's deadline for an activation time (working days counted when its policy says so)."""
        return after(activated_at, self.deadline_hours, business_days=self.policy.business_days)

    @property
    def file_fields(self) -> tuple[FieldSpec, ...]:
        """Fields filled by an uploaded file (a scan), never by typed text."""
        return tuple(f for f in self.fields if f.type == "file")

    @property
    def signed_by(self) -> Role:
        """The first (for most steps the only) signer; `signers` has them all."""
        return self.signers[0]

    @property
    def cosigned(self) -> bool:
        """Its documents are signed by more than one person."""
        return len(self.signers) > 1

    def signs(self, roles: frozenset[Role] | set[Role]) -> bool:
        return any(r in roles for r in self.signers)

    def signed_roles(self, ss: StepState, document: str) -> tuple[Role, ...]:
        """The signers who have signed `document` so far, in signing order."""
        if not self.cosigned:
            return self.signers if document in ss.documents_signed else ()
        return tuple(r for r in self.signers if signature_mark(document, r) in ss.documents_signed)

    def next_signer(self, ss: StepState, document: str) -> Role | None:
        """Whose turn it is to sign `document` (None once everyone has)."""
        if document in ss.documents_signed:
            return None
        done = self.signed_roles(ss, document)
        return self.signers[len(done)] if len(done) < len(self.signers) else None

    def items_for(self, data: dict[str, object]) -> tuple[Text | str, ...]:
        """The lines this step's document lists for one case: the template's items, then the ones HR
        added for the case (the `items` hr field, one per line), each once."""
        out: list[Text | str] = list(self.items)
        if any(f.key == "items" for f in self.hr_fields):
            seen = {t.zh for t in self.items} | {t.en for t in self.items}
            for line in str(data.get("items") or "").split("\n"):
                line = line.strip()
                if line and line not in seen:
                    seen.add(line)
                    out.append(line)
        return tuple(out)

    def turn(self, ss: StepState) -> tuple[str, Role] | None:
        """The first unsigned document and whose turn it is to sign it, or None if all are signed."""
        for doc in self.documents:
            who = self.next_signer(ss, doc)
            if who is not None:
                return doc, who
        return None


@dataclass(frozen=True, eq=False)
class FlowTemplate:
    id: str
    version: int
    title: Text
    case_type: str
    policy: Policy
    steps: tuple[StepTemplate, ...]
    source: str = ""
    by_id: dict[str, StepTemplate] = field(init=False, repr=False)
    dependants: dict[str, tuple[str, ...]] = field(init=False, repr=False)
    initial: tuple[str, ...] = field(init=False, repr=False)
    required_ids: tuple[str, ...] = field(init=False, repr=False)
    fallback_only_ids: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        by_id = {s.id: s for s in self.steps}
        dependants: dict[str, list[str]] = {s.id: [] for s in self.steps}
        for s in self.steps:
            for dep in s.depends_on:
                dependants[dep].append(s.id)
        object.__setattr__(self, "by_id", by_id)
        object.__setattr__(self, "dependants", {k: tuple(v) for k, v in dependants.items()})
        object.__setattr__(
            self, "initial", tuple(s.id for s in self.steps if not s.depends_on and not s.fallback_only)
        )
        object.__setattr__(self, "required_ids", tuple(s.id for s in self.steps if s.required))
        object.__setattr__(self, "fallback_only_ids", tuple(s.id for s in self.steps if s.fallback_only))

    def step(self, step_id: str) -> StepTemplate:
        return self.by_id[step_id]

    def __contains__(self, step_id: object) -> bool:
        return step_id in self.by_id

    def __len__(self) -> int:
        return len(self.steps)
