"""The dashboard's overview: cases with the step they are on, who it waits for and since when, its
deadline; overdue first. Read-only; filters run in SQL where they can (state, type, department, search)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tortoise.expressions import Q

from cases.service import utcnow
from storage.models import Case, CaseStep, Employee
from workflow.model import ROLE_TITLES, Role
from workflow.template import FlowTemplate, StepTemplate
from workflow.text import Text

STATES = ("open", "overdue", "completed", "cancelled", "all")
# Open cases are read in full (the order is overdue first, which a LIMIT before sorting would break); closed
# ones accumulate for years, so those states read the newest CLOSED_ROWS. The page shows the first SHOWN.
CLOSED_ROWS = 2000
SHOWN = 300
MAX_QUERY = 64


@dataclass(frozen=True)
class Filters:
    state: str = "open"
    template: str = ""
    department: str = ""
    q: str = ""

    @classmethod
    def parse(cls, query: Mapping[str, str], templates: Iterable[str]) -> Filters:
        state = query.get("state", "open")
        template = query.get("type", "")
        return cls(state=state if state in STATES else "open",
                   template=template if template in set(templates) else "",
                   department=query.get("dept", "")[:128],
                   q=" ".join(query.get("q", "").split())[:MAX_QUERY])


@dataclass(frozen=True)
class Waiting:
    """One step a case is on, and who it waits for."""

    step_id: str
    number: int
    title: Text
    role: Role
    people: tuple[str, ...]  # names (employee id) of whoever holds the role for this case
    since: datetime | None
    deadline: datetime | None
    overdue: bool
    viewed: bool


@dataclass(frozen=True)
class Row:
    case_id: str
    employee_id: str
    employee_name: str
    department: str
    template_id: str
    title: Text
    status: str
    started_at: datetime
    closed_at: datetime | None
    waiting: tuple[Waiting, ...]

    @property
    def overdue(self) -> bool:
        return any(w.overdue for w in self.waiting)

    @property
    def deadline(self) -> datetime | None:
        return min((w.deadline for w in self.waiting if w.deadline), default=None)

    @property
    def since(self) -> datetime | None:
        return min((w.since for w in self.waiting if w.since), default=None)


@dataclass(frozen=True)
class Counts:
    open: int
    overdue: int
    due_soon: int  # open, not overdue, a deadline within 24 hours
    completed: int
    cancelled: int


def waiting_role(step: StepTemplate, documents_signed: Sequence[str]) -> Role:
    """Whose move it is on an active step: the next signer of a document several people sign, else the
    step's own role."""
    for doc in step.documents:
        if doc in documents_signed:
            continue
        if step.cosigned:
            done = [r for r in step.signers if f"{doc}@{r}" in documents_signed]
            if len(done) < len(step.signers):
                return step.signers[len(done)]
        return step.signed_by
    return step.role


def _search(q: str) -> Q:
    found = Q(employee__name__icontains=q) | Q(employee__employee_id__iexact=q)
    if q.upper().startswith("OB-") or len(q) == 6:
        found |= Q(id__iexact=q if q.upper().startswith("OB-") else f"OB-{q}")
    return found


_CASE_COLUMNS = ("id", "template_id", "status", "started_at", "closed_at", "manager_id", "handover_id", "created_by")
_CHUNK = 500  # ids per IN list


@dataclass(frozen=True)
class _Case:
    """The columns the overview reads (plain values: building ORM objects, with the employee's encrypted
    columns decrypted, cost most of the page)."""

    id: str
    template_id: str
    status: str
    started_at: datetime
    closed_at: datetime | None
    manager_id: str | None
    handover_id: str | None
    created_by: str
    employee_id: str
    employee_name: str
    department: str


async def _active_steps(case_ids: Sequence[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(0, len(case_ids), _CHUNK):
        out += await CaseStep.filter(case_id__in=case_ids[i:i + _CHUNK], status="active").order_by("position").values(
            "case_id", "step_id", "position", "activated_at", "viewed_at", "documents_signed")
    return out


async def rows(templates: Mapping[str, FlowTemplate], filters: Filters, *, now: datetime | None = None
               ) -> list[Row]:
    now = now or utcnow()
    qs = Case.all()
    if filters.state in ("open", "overdue"):
        qs = qs.filter(status="open")
    elif filters.state in ("completed", "cancelled"):
        qs = qs.filter(status=filters.state)
    if filters.template:
        qs = qs.filter(template_id=filters.template)
    if filters.department:
        qs = qs.filter(employee__department=filters.department)
    if filters.q:
        qs = qs.filter(_search(filters.q))
    if filters.state not in ("open", "overdue"):
        qs = qs.limit(CLOSED_ROWS)
    found = await qs.order_by("-started_at").values(
        *_CASE_COLUMNS, employee_id="employee__employee_id", employee_name="employee__name",
        department="employee__department")
    cases = [_Case(**r) for r in found]
    by_case: dict[str, list[dict[str, Any]]] = {}
    for s in await _active_steps([c.id for c in cases]):
        by_case.setdefault(s["case_id"], []).append(s)
    people = await _people(cases)
    out: list[Row] = []
    for c in cases:
        template = templates.get(c.template_id)
        waiting = tuple(_waiting(c, template, s, people, now) for s in by_case.get(c.id, []))
        row = Row(c.id, c.employee_id, c.employee_name, c.department, c.template_id,
                  template.title if template else Text(c.template_id, c.template_id), c.status, c.started_at,
                  c.closed_at, waiting)
        if filters.state == "overdue" and not row.overdue:
            continue
        out.append(row)
    far = now + timedelta(days=36500)
    out.sort(key=lambda r: (r.status != "open", not r.overdue, r.deadline or far, r.since or far, r.case_id))
    return out


@dataclass(frozen=True)
class _People:
    named: Mapping[str, str]  # employee id -> name
    by_role: Mapping[str, list[str]]  # finance / it -> "name（id）" of everyone holding it


async def _people(cases: Sequence[_Case]) -> _People:
    """Names of everyone a step of these cases may wait for, and finance / IT by role."""
    ids = sorted({i for c in cases for i in (c.manager_id, c.handover_id, c.created_by) if i})
    named: dict[str, str] = {}
    for i in range(0, len(ids), _CHUNK):
        named.update(await Employee.filter(employee_id__in=ids[i:i + _CHUNK]).values_list("employee_id", "name"))
    by_role: dict[str, list[str]] = {"finance": [], "it": []}
    for emp_id, name, roles in await Employee.filter(active=True, roles__not="").order_by("employee_id").values_list(
            "employee_id", "name", "roles"):
        for r in ("finance", "it"):
            if r in str(roles).split(";"):
                by_role[r].append(f"{name}（{emp_id}）")
    return _People(named, by_role)


def _waiting(case: _Case, template: FlowTemplate | None, s: Mapping[str, Any], people: _People,
             now: datetime) -> Waiting:
    step = template.by_id.get(s["step_id"]) if template else None
    activated, viewed = s["activated_at"], s["viewed_at"] is not None
    if step is None:
        return Waiting(s["step_id"], s["position"] + 1, Text(s["step_id"], s["step_id"]), Role.HR, (), activated,
                       None, False, viewed)
    role = waiting_role(step, list(s["documents_signed"] or ()))

    def label(emp_id: str | None) -> tuple[str, ...]:
        return (f"{people.named.get(emp_id, emp_id)}（{emp_id}）",) if emp_id else ()

    if role == Role.EMPLOYEE:
        who: tuple[str, ...] = (f"{case.employee_name}（{case.employee_id}）",)
    elif role == Role.MANAGER:
        who = label(case.manager_id)
    elif role == Role.HANDOVER:
        who = label(case.handover_id)
    elif role == Role.HR:
        who = label(case.created_by)
    else:
        who = tuple(people.by_role.get(str(role), []))
    if not who:  # nobody holds the role: the service gives the step to the HR who opened the case
        who = label(case.created_by)
    deadline = step.due_by(activated) if activated else None  # working days where the flow counts them
    return Waiting(step.id, step.number, step.title, role, who, activated, deadline,
                   deadline is not None and deadline < now, viewed)


async def counts(templates: Mapping[str, FlowTemplate], *, now: datetime | None = None) -> Counts:
    """The figures at the top, from the active steps of open cases alone (no people, no names)."""
    now = now or utcnow()
    soon = now + timedelta(hours=24)
    earliest: dict[str, datetime | None] = {}
    overdue: set[str] = set()
    for case_id, template_id, step_id, activated in await CaseStep.filter(
            status="active", case__status="open").values_list("case_id", "case__template_id", "step_id",
                                                              "activated_at"):
        template = templates.get(template_id)
        step = template.by_id.get(step_id) if template else None
        deadline = step.due_by(activated) if step is not None and activated else None
        if deadline is not None and deadline < now:
            overdue.add(case_id)
        if deadline is not None and (earliest.get(case_id) is None or deadline < earliest[case_id]):  # type: ignore[operator]
            earliest[case_id] = deadline
    return Counts(
        open=await Case.filter(status="open").count(), overdue=len(overdue),
        due_soon=sum(1 for cid, d in earliest.items() if cid not in overdue and d is not None and d <= soon),
        completed=await Case.filter(status="completed").count(),
        cancelled=await Case.filter(status="cancelled").count(),
    )


async def departments() -> list[str]:
    return sorted(d for d in await Employee.filter(cases__id__isnull=False).distinct()
                  .values_list("department", flat=True) if d)


def role_title(role: Role) -> Text:
    return ROLE_TITLES[role]
