"""Compiled flow templates: validated once at load, then read by the engine on every event.

Lookups the engine needs per event (step by id, dependants, step number) are precomputed here so
that applying an event never re-validates or re-scans the template.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from workflow.model import Role, StepKind
from workflow.text import Text

FieldType = Literal["text", "textarea", "date", "number", "file", "choice"]


@dataclass(frozen=True, slots=True)
class Policy:
    remind_after_hours: float = 24
    alert_after_hours: float = 72
    fallback_after_hours: float = 168
    # An employee's question unanswered this long reminds HR (once).
    question_remind_after_hours: float = 24

    def delay(self, kind: str) -> timedelta:
        if kind == "remind":
            return timedelta(hours=self.remind_after_hours)
        if kind == "alert":
            return timedelta(hours=self.alert_after_hours)
        if kind == "fallback":
            return timedelta(hours=self.fallback_after_hours)
        if kind == "question":
            return timedelta(hours=self.question_remind_after_hours)
        raise ValueError(f"unknown timer kind {kind!r}")


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
    signed_by: Role  # who signs this step's documents (defaults to the acting role)
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

    @property
    def deadline(self) -> timedelta:
        return timedelta(hours=self.deadline_hours)


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
