"""Everything a card builder may look at, gathered by the caller in one place.

Builders are pure functions of a `CaseView`; the handler layer loads it from the database. That
keeps `cards/` free of storage and lets tests build cards from plain values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from workflow.model import ROLE_TITLES, CaseState, Role, StepState
from workflow.template import FlowTemplate, StepTemplate


@dataclass(frozen=True)
class CaseView:
    case_id: str
    template: FlowTemplate
    state: CaseState
    employee_id: str
    employee_name: str
    last_day: date | None
    reason: str
    names: dict[str, str]  # employee_id -> display name, for "已由 王五 …"
    tz: ZoneInfo
    language: str
    now: datetime
    sign_urls: dict[str, str] = field(default_factory=dict)  # step_id -> personal signing link
    cancel_reason: str = ""
    recipient_roles: frozenset[Role] = frozenset()  # what the card's holder is in this case
    # The social-insurance back-pay the employee signs for, with how it was computed (settlement/):
    # (amount text, basis lines), or an explanation of why it cannot be computed yet.
    backpay: tuple[str, tuple[str, ...]] | None = None
    # The completion notice (离职手续完成确认函) as (block type, text), title first, worded for this case
    # type and case from its document template; empty when it could not be produced.
    completion_lines: tuple[tuple[str, str], ...] = ()
    # The case's sealed documents for the completion card's holder: (title, personal download link).
    downloads: tuple[tuple[str, str], ...] = ()
    # HR's settlement check (signing.settlefigures): each figure as (label, amount text), and the basis
    # lines under it; empty on every other card.
    settlement_fields: tuple[tuple[str, str], ...] = ()
    settlement_basis: tuple[str, ...] = ()
    # HR's fallback steps: the link to the evidence upload page (step_id -> url), the paper the step issues
    # (step_id -> (title, download link)) or why it could not be produced, and the notice's text when HR
    # hands it on as text (the newspaper notice).
    upload_urls: dict[str, str] = field(default_factory=dict)
    notice_links: dict[str, tuple[str, str]] = field(default_factory=dict)
    notice_problems: dict[str, str] = field(default_factory=dict)
    notice_text: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Where HR follows the case live (the dashboard's case page), for a summary card kept to what
    # changes rarely because every update of it costs (chat.connector.Capabilities.metered_updates);
    # empty: the summary card lists every step itself.
    progress_url: str = ""

    def t(self, zh: str, en: str) -> str:
        return en if self.language == "en" else zh

    def step(self, step_id: str) -> StepTemplate:
        return self.template.step(step_id)

    def st(self, step_id: str) -> StepState:
        return self.state.steps[step_id]

    def name(self, employee_id: str | None) -> str:
        if not employee_id:
            return "—"
        return self.names.get(employee_id, employee_id)

    def local(self, when: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
        return when.astimezone(self.tz).strftime(fmt) if when else "—"

    def role_title(self, role: Role) -> str:
        title = ROLE_TITLES.get(role)
        return title.get(self.language) if title else str(role)
