"""Loads what a card shows from the database and hands it to the pure builders in `cards/`.

Used by the outbox relay (render at send/update time, so a card is never staler than its
delivery) and by the action handler (which buttons a card offers right now).
"""

from __future__ import annotations

from datetime import datetime

from bot.settings import Settings
from cards import builders
from cards.builders import shows_backpay
from cards.model import Card
from cards.questions import QUESTION_PURPOSES, build_question
from cards.view import CaseView
from handlers.backpay import EMPLOYEE_STATUS
from handlers.cases import CaseService, utcnow
from handlers.links import signing_url
from signing.templates import format_value
from storage import hotpath
from storage.models import AuditEntry, Case, Employee, OutboxMessage
from workflow.model import CaseState, Role
from workflow.template import FlowTemplate


class CardRenderer:
    def __init__(self, settings: Settings, service: CaseService) -> None:
        self.settings = settings
        self.service = service

    async def view(self, case: Case, *, recipient: Employee | None = None, language: str | None = None,
                   now: datetime | None = None, detail: bool = True, backpay_for: str | None = None,
                   completion: bool = False) -> CaseView:
        """`detail=False` leaves out what only the card's text needs (names of who acted, signing
        links, the back-pay figure): enough to know which buttons a card offers, at half the cost."""
        now = now or utcnow()
        state = await self.service.load_state(case)
        template = self.service.template(case.template_id)
        conn = hotpath.default_conn()
        employee = await hotpath.get_one(conn, Employee, "id", case.employee_id)  # type: ignore[attr-defined]
        ids = {employee.employee_id, case.created_by}
        ids.update(st.done_by for st in state.steps.values() if st.done_by)
        for q in state.questions.values():
            ids.update(i for i in (q.asked_by, q.answered_by) if i)
        names = await hotpath.names(conn, sorted(i for i in ids if i)) if detail else {}
        sign_urls: dict[str, str] = {}
        roles = await self.service.roles_of(case, recipient) if recipient is not None else frozenset()
        if detail and recipient is not None and state.status == "open":
            for step in template.steps:
                st = state.steps[step.id]
                turn = step.turn(st)  # a link only for whoever signs next (documents several sign: in turn)
                if st.status == "active" and turn is not None and turn[1] in roles:
                    sign_urls[step.id] = signing_url(self.settings, case.id, step.id, recipient.employee_id,
                                                     now=now)
        cancel_reason = ""
        if state.status == "cancelled":
            entry = await AuditEntry.filter(case_id=case.id, kind__contains="cancel").order_by("-seq").first()
            cancel_reason = str((entry.data or {}).get("reason", "")) if entry else ""
        # The back-pay figure runs the settlement computation; only the step cards that show it
        # (cards.builders.shows_backpay) get it.
        wants_backpay = backpay_for is not None and shows_backpay(template.step(backpay_for))
        backpay = await self._backpay(case, template, state, now, hr=Role.HR in roles) \
            if detail and wants_backpay and recipient is not None else None
        completion_lines: tuple[tuple[str, str], ...] = ()
        if completion and detail:
            completion_lines = await self._completion(case, now, language or self.settings.language)
        return CaseView(
            case_id=case.id, template=template, state=state, employee_id=employee.employee_id,
            employee_name=employee.name, last_day=case.last_day, reason=case.reason, names=names,
            tz=self.settings.tz, language=language or self.settings.language, now=now, sign_urls=sign_urls,
            cancel_reason=cancel_reason, recipient_roles=frozenset(roles), backpay=backpay,
            completion_lines=completion_lines,
        )

    async def _completion(self, case: Case, now: datetime, language: str) -> tuple[tuple[str, str], ...]:
        from signing.pipeline import PipelineError, notice_lines

        try:
            return tuple(await notice_lines(case, "completion_notice", self.settings, now=now, lang=language))
        except PipelineError:
            return ()

    async def _backpay(self, case: Case, template: FlowTemplate, state: CaseState,
                       now: datetime, *, hr: bool) -> tuple[str, tuple[str, ...]] | None:
        """The amount and basis the guarantee letter will state, once HR's check has recorded the
        unpaid months: the same computation the letter uses, so the card and the PDF agree. When it
        cannot be computed, HR's card says why (in Chinese); everyone else's says HR is checking."""
        from signing.pipeline import PipelineError, build_context

        wanted = [s for s in template.steps if "guarantee_letter" in s.documents or s.id == "backpay"]
        if not wanted or all(state.steps[s.id].status == "locked" for s in wanted):
            return None
        try:
            ctx = await build_context(case, "guarantee_letter", self.settings, now=now)
        except PipelineError as exc:
            if hr:
                return (f"无法计算：{exc}", ())
            zh, en = EMPLOYEE_STATUS
            return (en if self.settings.language == "en" else zh, ())
        amount = ctx["backpay_amount"]
        return (f"{format_value(amount, 'zh')} 元（{ctx['backpay_period']}）",
                tuple(str(x) for x in ctx.get("basis_lines", ())))

    async def card(self, case_id: str, purpose: str, step_id: str | None, recipient_id: str,
                   *, language: str | None = None) -> Card | None:
        conn = hotpath.default_conn()
        case = await hotpath.get_one(conn, Case, "id", case_id)
        if case is None:
            return None
        recipient = await hotpath.get_one(conn, Employee, "employee_id", recipient_id)
        return await self.card_of(case, purpose, step_id, recipient, language=language)

    async def card_of(self, case: Case, purpose: str, step_id: str | None, recipient: Employee | None,
                      *, language: str | None = None, detail: bool = True) -> Card | None:
        """The card for a case and recipient the caller has already read."""
        template = self.service.template(case.template_id)
        if purpose in QUESTION_PURPOSES and step_id is not None:
            # A question's cards carry the question id where step cards carry the step.
            qview = await self.view(case, recipient=recipient, language=language, detail=detail)
            return build_question(qview, purpose, step_id)
        if step_id is not None and step_id not in template:
            return None
        view = await self.view(case, recipient=recipient, language=language, detail=detail, backpay_for=step_id,
                               completion=purpose == "completion")
        return builders.build(view, purpose, step_id)

    async def for_outbox(self, row: OutboxMessage) -> Card | None:
        p = row.payload or {}
        return await self.card(str(p.get("case_id") or row.case_id), str(p.get("purpose", "step")),  # type: ignore[attr-defined]
                               p.get("step_id", row.step_id), row.recipient)
