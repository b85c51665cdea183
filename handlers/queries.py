"""Read-only views of cases for HR (CLI `cases list`, `/list`, the dashboard)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from cases.service import utcnow
from storage.models import Case, CaseStep
from workflow.template import FlowTemplate


@dataclass(frozen=True)
class CaseRow:
    case_id: str
    employee_id: str
    employee_name: str
    template_id: str
    status: str
    current_steps: tuple[str, ...]
    waiting_since: datetime | None
    overdue: bool

    def __iter__(self):  # type: ignore[no-untyped-def]
        # Printed as a tab-separated line by the CLI.
        waited = ""
        if self.waiting_since is not None:
            hours = int((utcnow() - self.waiting_since).total_seconds() // 3600)
            waited = f"waiting {hours}h"
        yield from (
            self.case_id, self.employee_id, self.employee_name, self.template_id, self.status,
            ",".join(self.current_steps) or "-", waited, "OVERDUE" if self.overdue else "",
        )


async def list_cases(
    *, include_closed: bool = False, tz: ZoneInfo | None = None,
    templates: Mapping[str, FlowTemplate] | None = None, now: datetime | None = None,
) -> list[CaseRow]:
    """Open cases, overdue first, then longest waiting. A step is overdue past its template's
    deadline as the step itself counts it (`due_by`: working days where the flow says so), the
    same deadline its cards and reminders state; without `templates` nothing is flagged."""
    now = now or utcnow()
    qs = Case.all().prefetch_related("employee")
    if not include_closed:
        qs = qs.filter(status="open")
    cases = await qs
    active = await CaseStep.filter(case_id__in=[c.id for c in cases], status="active").order_by("position")
    by_case: dict[str, list[CaseStep]] = {}
    for s in active:
        by_case.setdefault(s.case_id, []).append(s)  # type: ignore[attr-defined]
    rows = []
    for c in cases:
        steps = by_case.get(c.id, [])
        since = min((s.activated_at for s in steps if s.activated_at), default=None)
        template = (templates or {}).get(c.template_id)
        overdue = template is not None and any(
            s.activated_at is not None and s.step_id in template
            and template.step(s.step_id).due_by(s.activated_at) < now
            for s in steps
        )
        rows.append(CaseRow(c.id, c.employee.employee_id, c.employee.name, c.template_id, c.status,
                            tuple(s.step_id for s in steps), since, overdue))
    rows.sort(key=lambda r: (not r.overdue, r.waiting_since or now, r.case_id))
    return rows
