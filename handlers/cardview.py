"""Loads what a card shows from the database and hands it to the pure builders in `cards/`.

Used by the outbox relay (render at send/update time, so a card is never staler than its
delivery) and by the action handler (which buttons a card offers right now).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta

from cards import builders
from cards.builders import shows_backpay
from cards.model import Button, Card
from cards.questions import QUESTION_PURPOSES, build_question
from cards.view import CaseView
from cases.service import CaseService, utcnow
from chat.capabilities import Lookup, shipped
from config.settings import Settings
from handlers import settlement
from handlers.backpay import EMPLOYEE_STATUS
from handlers.links import dashboard_case_url, details_url, download_url, form_url, signing_url
from handlers.uploads import upload_url
from signing import settlefigures as sf
from signing.channel import Channel
from signing.pipeline import (
    PipelineError,
    build_context,
    issue_completion_notice,
    notice_lines,
    sealed_documents,
)
from signing.templates import format_value
from storage import hotpath
from storage.models import AuditEntry, Case, Employee, OutboxMessage
from workflow.documents import document_title
from workflow.model import CaseState, Role
from workflow.template import FlowTemplate

log = logging.getLogger("cards")


class CardRenderer:
    def __init__(self, settings: Settings, service: CaseService, capabilities: Lookup = shipped, *,
                 channel: Channel | None = None) -> None:
        self.settings = settings
        self.service = service
        self.capabilities = capabilities  # what each platform's cards can hold (chat.capabilities)
        # What documents say about the platform (chat.presentation.channel_of): needed by the cards that
        # issue or quote a document; a renderer built without it only tells which buttons a card offers.
        self._channel = channel

    @property
    def channel(self) -> Channel:
        if self._channel is None:
            raise RuntimeError("this card renderer was built without the documents' channel")
        return self._channel

    async def view(self, case: Case, *, recipient: Employee | None = None, language: str | None = None,
                   now: datetime | None = None, detail: bool = True, backpay_for: str | None = None,
                   completion: bool = False, progress_url: str = "") -> CaseView:
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
        settlement_view: tuple[tuple[tuple[str, str], ...], tuple[str, ...]] = ((), ())
        if detail and backpay_for is not None and roles & {Role.HR, Role.MANAGER}:
            settlement_view = await self._settlement(case, template, state, backpay_for, roles, language or
                                                     self.settings.language)
        fallback = await self._fallback_paper(case, template, state, backpay_for, recipient, roles, now,
                                              language or self.settings.language) \
            if detail and backpay_for is not None and recipient is not None else ({}, {}, {}, {})
        completion_lines: tuple[tuple[str, str], ...] = ()
        downloads: tuple[tuple[str, str], ...] = ()
        if completion and detail:
            completion_lines = await self._completion(case, now, language or self.settings.language)
            if recipient is not None and roles & {Role.EMPLOYEE, Role.HR}:
                downloads = await self._downloads(case, recipient, now, language or self.settings.language)
        return CaseView(
            case_id=case.id, template=template, state=state, employee_id=employee.employee_id,
            employee_name=employee.name, last_day=case.last_day, reason=case.reason, names=names,
            tz=self.settings.tz, language=language or self.settings.language, now=now, sign_urls=sign_urls,
            cancel_reason=cancel_reason, recipient_roles=frozenset(roles), backpay=backpay,
            completion_lines=completion_lines, downloads=downloads, settlement_fields=settlement_view[0],
            settlement_basis=settlement_view[1], upload_urls=fallback[0], notice_links=fallback[1],
            notice_problems=fallback[2], notice_text=fallback[3], progress_url=progress_url,
        )

    async def _fallback_paper(self, case: Case, template: FlowTemplate, state: CaseState, step_id: str,
                              recipient: Employee, roles: frozenset[Role], now: datetime, language: str
                              ) -> tuple[dict[str, str], dict[str, tuple[str, str]], dict[str, str],
                                         dict[str, tuple[str, ...]]]:
        """HR's card of an open fallback step: the upload page's link, and the paper the step issues (the
        registered-mail letter, the newspaper notice), issued and sealed on the first such card."""
        from signing.pipeline import PipelineError, issue_step_notice
        from signing.templates import load_template, render_blocks

        step = template.step(step_id)
        st = state.steps[step_id]
        if Role.HR not in roles or step.role != Role.HR or st.status != "active" or state.status != "open":
            return {}, {}, {}, {}
        uploads: dict[str, str] = {}
        if step.file_fields:
            uploads[step_id] = upload_url(self.settings.secret_bytes(), self.settings.public_base_url, case.id,
                                          step_id, recipient.employee_id, now=now,
                                          ttl=timedelta(hours=self.settings.link_ttl_hours))
        links: dict[str, tuple[str, str]] = {}
        problems: dict[str, str] = {}
        text: dict[str, tuple[str, ...]] = {}
        if step.notice is not None:
            try:
                doc = await issue_step_notice(case, step_id, self.settings, channel=self.channel, now=now)
                if doc is not None and doc.status == "sealed":
                    links[step_id] = (document_title(doc.kind).get(language),
                                      download_url(self.settings, case.id, doc.id, recipient.employee_id, now=now))
                if doc is not None and step.notice == "newspaper_notice":
                    # Handed to the newspaper as text: the very words of the sealed copy.
                    tpl = load_template(doc.kind, extra_dir=self.settings.doc_templates_dir)
                    values = dict((doc.context or {}).get("values") or {})
                    text[step_id] = tuple(line for kind, line in render_blocks(tpl, values, doc.lang)
                                          if kind != "title")
            except PipelineError as exc:
                problems[step_id] = str(exc)
            except Exception:  # the card still goes out; the next update of it tries again
                log.exception("case %s: the %s paper was not issued", case.id, step_id)
        return uploads, links, problems, text

    async def _completion(self, case: Case, now: datetime, language: str) -> tuple[tuple[str, str], ...]:
        try:
            return tuple(await notice_lines(case, "completion_notice", self.settings, channel=self.channel, now=now,
                                            lang=language))
        except PipelineError:
            return ()

    async def _downloads(self, case: Case, recipient: Employee, now: datetime,
                         language: str) -> tuple[tuple[str, str], ...]:
        """Personal links to every sealed document of a completed case, the completion notice among them
        (issued and sealed here on the first completion card; the signing sweep retries a failure)."""
        if case.status == "completed":
            try:
                await issue_completion_notice(case, self.settings, channel=self.channel, now=now)
            except Exception:  # the card still goes out with what is sealed; the sweep issues it later
                log.exception("case %s: completion notice not issued", case.id)
        return tuple((document_title(doc.kind).get(language),
                      download_url(self.settings, case.id, doc.id, recipient.employee_id, now=now))
                     for doc in await sealed_documents(case.id))

    async def _settlement(self, case: Case, template: FlowTemplate, state: CaseState, step_id: str,
                          roles: frozenset[Role], language: str
                          ) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
        """HR's check card shows each settlement figure and its basis: as recorded once the step is done,
        else computed now from the directory (for a mutual agreement not yet told who proposed it, as if
        the company did, with the employee's 0 beside it). The manager who approves the terms sees what
        HR recorded."""
        step = sf.check_step(template)
        if step is None:
            return (), ()
        checking = step.id == step_id and Role.HR in roles
        approving = step.id in template.step(step_id).depends_on and state.steps[step.id].status == "done"
        if not (checking or approving):
            return (), ()
        zh = language != "en"
        st = state.steps[step.id]
        rec = st.data.get(sf.RECORD_KEY) if st.status == "done" else None
        reason = ""
        assumed = False
        if isinstance(rec, dict):
            # A record older code wrote in Chinese only: English from the figures computed now from the
            # step's data, where they reproduce it (sf.stated says why).
            recomputed = (await settlement.figures_for(self.service, case, st.data))[0] \
                if not zh and sf.lacks_english(rec) else None
            figs = sf.stated(rec, language, recomputed)
            reason = str(rec.get("override_reason") or "")
        else:
            data: dict[str, str] = {}
            if any(f.key == sf.PROPOSER_FIELD for f in step.fields):
                data[sf.PROPOSER_FIELD] = "employer"
                assumed = True
            figures, _, _ = await settlement.figures_for(self.service, case, data)
            figs = sf.from_figures(figures, language)
        fields: list[tuple[str, str]] = []
        basis: list[str] = []
        for item in sf.ITEMS:
            fig = figs.get(item.key)
            if fig is None:
                continue
            label = item.zh if zh else item.en
            if item.key == "compensation" and assumed:
                label += "（如由公司提出；由员工提出则为 0）" if zh else \
                    " (if the company proposed; 0 if the employee did)"
            fields.append((label, sf.amount_text(fig, language, reason)))
            if fig.basis:
                basis.append(f"{label}：" if zh else f"{label}:")
                basis += [f"- {line}" for line in fig.basis]
        return tuple(fields), tuple(basis)

    async def _backpay(self, case: Case, template: FlowTemplate, state: CaseState,
                       now: datetime, *, hr: bool) -> tuple[str, tuple[str, ...]] | None:
        """The amount and basis the guarantee letter will state, once HR's check has recorded the
        unpaid months: the same computation the letter uses, so the card and the PDF agree. When it
        cannot be computed, HR's card says why (in Chinese); everyone else's says HR is checking."""
        wanted = [s for s in template.steps if "guarantee_letter" in s.documents or s.id == "backpay"]
        if not wanted or all(state.steps[s.id].status == "locked" for s in wanted):
            return None
        try:
            ctx = await build_context(case, "guarantee_letter", self.settings, channel=self.channel, now=now)
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
                      *, language: str | None = None, detail: bool = True, platform: str | None = None
                      ) -> Card | None:
        """The card for a case and recipient the caller has already read; `platform`: the one it is
        rendered for (what its cards can hold; None: as the emulator shows it)."""
        template = self.service.template(case.template_id)
        if purpose in QUESTION_PURPOSES and step_id is not None:
            # A question's cards carry the question id where step cards carry the step.
            qview = await self.view(case, recipient=recipient, language=language, detail=detail)
            return build_question(qview, purpose, step_id)
        if step_id is not None and step_id not in template:
            return None
        metered = platform is not None and self.capabilities(platform).metered_updates
        view = await self.view(case, recipient=recipient, language=language, detail=detail, backpay_for=step_id,
                               completion=purpose == "completion",
                               progress_url=dashboard_case_url(self.settings, case.id) if metered else "")
        return builders.build(view, purpose, step_id)

    async def for_outbox(self, row: OutboxMessage) -> Card | None:
        """The card a delivered (or to be delivered) outbox card row shows its holder now, with the
        holder's own web links: the step's details page, and where the platform's cards cannot hold
        text inputs, the step's web form in place of each button that asks for some."""
        p = row.payload or {}
        conn = hotpath.default_conn()
        case = await hotpath.get_one(conn, Case, "id", str(p.get("case_id") or row.case_id))  # type: ignore[attr-defined]
        if case is None:
            return None
        recipient = await hotpath.get_one(conn, Employee, "employee_id", row.recipient)
        purpose, step_id = str(p.get("purpose", "step")), p.get("step_id", row.step_id)
        card = await self.card_of(case, purpose, step_id, recipient, platform=row.platform)
        if card is None or recipient is None:
            return card
        return self.web_links(card, case, row.key, row.platform, purpose, step_id, recipient.employee_id)

    def web_links(self, card: Card, case: Case, row_key: str, platform: str, purpose: str, step_id: str | None,
                  holder_id: str, *, now: datetime | None = None, forms: bool | None = None) -> Card:
        """The holder's links on the card of outbox row `row_key`. `forms`: turn form buttons into
        web-form links (default: when the platform's cards cannot hold the inputs)."""
        now = now or utcnow()
        template = self.service.template(case.template_id)
        changes: dict[str, object] = {}
        if step_id is not None and purpose not in QUESTION_PURPOSES and step_id in template:
            changes["details_url"] = details_url(self.settings, case.id, step_id, holder_id, case.version, now=now)
        if forms is None:
            forms = not self.capabilities(platform).card_inputs
        if forms and any(b.form and b.action and b.enabled for b in card.buttons):
            changes["buttons"] = tuple(
                Button(label=b.label, url=form_url(self.settings, case.id, step_id or "", b.action, holder_id, row_key,
                                                   case.version, now=now), style=b.style)
                if b.form and b.action and b.enabled else b
                for b in card.buttons)
        return replace(card, **changes) if changes else card  # type: ignore[arg-type]
