"""The case service: applies one workflow event in one database transaction.

load case (version) -> pure engine decides -> case/step rows, audit entry, outbox rows and
timer rows written -> version bumped with a compare-and-set -> commit. A lost race (another
writer bumped the version first) re-runs the whole thing on fresh state; the engine is pure, so
re-running is safe. Callers may add their own writes to the same transaction (`also`), which
is how the inbox row of an inbound event and the claim of a fired timer commit atomically with
the effect they cause.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from storage import audit
from storage.models import Case, CaseStep, Employee, OutboxMessage, Timer
from workflow import effects as fx
from workflow import engine
from workflow.model import CaseState, Role, StepState
from workflow.template import FlowTemplate

Also = Callable[[Any], Awaitable[None]]
_ID_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O, 1/I: typed by HR from a phone


class CaseError(Exception):
    """A request the service cannot carry out (unknown case, second open case, ...)."""

    def __init__(self, code: str, message_zh: str, message_en: str) -> None:
        super().__init__(message_en)
        self.code = code
        self.message_zh = message_zh
        self.message_en = message_en


class VersionConflict(Exception):
    pass


@dataclass
class Outcome:
    case_id: str
    decision: engine.Decision | None = None
    refusal: engine.Refusal | None = None
    attempts: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.refusal is None


def new_case_id() -> str:
    return "OB-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(6))


def utcnow() -> datetime:
    return datetime.now(UTC)


class CaseService:
    def __init__(self, templates: dict[str, FlowTemplate], platforms: Sequence[str] = ("emulator",)) -> None:
        self.templates = templates
        self.platforms = tuple(platforms)
        # Run inside the transaction that completes or cancels a case, after every other write of it
        # (signing/ adds the Ed25519 checkpoint over the final audit head here).
        self.on_closed: list[Callable[[Any, str], Awaitable[None]]] = []

    # ---- reading -------------------------------------------------------------------------
    def template(self, template_id: str) -> FlowTemplate:
        try:
            return self.templates[template_id]
        except KeyError:
            raise CaseError(
                "unknown_template", f"未知的离职类型：{template_id}", f"unknown case type: {template_id}"
            ) from None

    async def load_state(self, case: Case, conn: Any = None) -> CaseState:
        rows = await CaseStep.filter(case_id=case.id).using_db(conn).order_by("position")
        steps = {
            r.step_id: StepState(
                status=r.status, activated_at=r.activated_at, viewed_at=r.viewed_at, done_at=r.done_at,
                done_by=r.done_by, outcome=r.outcome, data=dict(r.data or {}),
                documents_signed=frozenset(r.documents_signed or ()), reminders_sent=r.reminders_sent,
                rejections=r.rejections,
            )
            for r in rows
        }
        return CaseState(
            case_id=case.id, template_id=case.template_id, status=case.status, steps=steps,
            fallback_started=case.fallback_started, started_at=case.started_at, closed_at=case.closed_at,
        )

    async def roles_of(self, case: Case, actor: Employee) -> frozenset[Role]:
        roles: set[Role] = set()
        if actor.id == case.employee_id:  # type: ignore[attr-defined]
            roles.add(Role.EMPLOYEE)
        if case.manager_id and actor.employee_id == case.manager_id:
            roles.add(Role.MANAGER)
        if case.handover_id and actor.employee_id == case.handover_id:
            roles.add(Role.HANDOVER)
        known = {r.value for r in Role}
        roles.update(Role(r) for r in actor.role_set if r in known)
        return frozenset(roles)

    # ---- writing -------------------------------------------------------------------------
    async def start_case(
        self, *, employee: Employee, template_id: str, last_day: date | None, reason: str, created_by: str,
        handover_id: str | None = None, at: datetime | None = None, also: Also | None = None,
    ) -> Outcome:
        at = at or utcnow()
        template = self.template(template_id)
        case_id = new_case_id()
        decision = engine.start(template, case_id, at)
        try:
            async with in_transaction() as conn:
                case = await Case.create(
                    using_db=conn, id=case_id, employee_id=employee.id, open_key=employee.employee_id,
                    template_id=template.id, template_version=template.version, status="open",
                    last_day=last_day, reason=reason, manager_id=employee.manager_id,
                    handover_id=handover_id, created_by=created_by, started_at=at,
                )
                for pos, step in enumerate(template.steps):
                    st = decision.state.steps[step.id]
                    await CaseStep.create(using_db=conn, case_id=case_id, step_id=step.id, position=pos,
                                          **_step_columns(st))
                await audit.append(case_id, at=at, actor=created_by, kind="case_opened", using=conn, data={
                    "employee": employee.employee_id, "template": template.id, "version": template.version,
                    "last_day": last_day.isoformat() if last_day else None, "reason": reason,
                })
                await self._apply_effects(conn, case, decision.effects, at, actor=created_by)
                if also:
                    await also(conn)
        except IntegrityError:
            if await Case.filter(open_key=employee.employee_id).exists():
                raise CaseError(
                    "already_open", f"{employee.name} 已有进行中的离职流程",
                    f"{employee.name} already has an open case",
                ) from None
            raise
        return Outcome(case_id=case_id, decision=decision)

    async def apply(
        self, case_id: str, make_event: Callable[[Case, CaseState], Any], *, actor: str = "",
        also: Also | None = None, max_attempts: int = 5,
    ) -> Outcome:
        """Apply the event built by `make_event(case, state)`; retried on a lost version race."""
        for attempt in range(1, max_attempts + 1):
            try:
                out = await self._apply_once(case_id, make_event, actor=actor, also=also)
                out.attempts = attempt
                return out
            except VersionConflict:
                if attempt == max_attempts:
                    raise
        raise AssertionError("unreachable")

    async def _apply_once(
        self, case_id: str, make_event: Callable[[Case, CaseState], Any], *, actor: str, also: Also | None
    ) -> Outcome:
        async with in_transaction() as conn:
            case = await Case.get_or_none(id=case_id).using_db(conn)
            if case is None:
                raise CaseError("unknown_case", f"找不到流程 {case_id}", f"no case {case_id}")
            state = await self.load_state(case, conn)
            event = make_event(case, state)
            template = self.template(case.template_id)
            result = engine.apply(template, state, event)
            at = getattr(event, "at", None) or utcnow()
            if isinstance(result, engine.Refusal):
                if result.audit is not None:
                    await self._bump(conn, case, {})
                    await audit.append(case.id, at=at, actor=actor, kind=result.audit.kind,
                                       data=result.audit.data, using=conn)
                if also:
                    await also(conn)
                return Outcome(case_id=case.id, refusal=result)
            new = result.state
            changes: dict[str, Any] = {}
            if new.status != state.status:
                changes["status"] = new.status
                if new.status != "open":
                    changes["open_key"] = None
            if new.fallback_started != state.fallback_started:
                changes["fallback_started"] = new.fallback_started
            if new.closed_at != state.closed_at:
                changes["closed_at"] = new.closed_at
            await self._bump(conn, case, changes)
            for step_id, st in new.steps.items():
                if state.steps.get(step_id) != st:
                    await CaseStep.filter(case_id=case.id, step_id=step_id).using_db(conn).update(
                        **_step_columns(st)
                    )
            for k, v in changes.items():
                setattr(case, k, v)
            await self._apply_effects(conn, case, result.effects, at, actor=actor)
            if also:
                await also(conn)
            if state.status == "open" and new.status != "open":
                for hook in self.on_closed:
                    await hook(conn, case.id)
            return Outcome(case_id=case.id, decision=result)

    async def _bump(self, conn: Any, case: Case, changes: dict[str, Any]) -> None:
        n = await Case.filter(id=case.id, version=case.version).using_db(conn).update(
            version=case.version + 1, **changes
        )
        if n != 1:
            raise VersionConflict(case.id)
        case.version += 1

    # ---- effects -> rows -----------------------------------------------------------------
    async def _apply_effects(
        self, conn: Any, case: Case, effects: Sequence[Any], at: datetime, *, actor: str
    ) -> None:
        for effect in effects:
            if isinstance(effect, fx.Audit):
                await audit.append(case.id, at=at, actor=actor, kind=effect.kind, data=effect.data, using=conn)
            elif isinstance(effect, fx.Notify):
                for emp in await self.recipients(conn, case, effect.role):
                    await _insert_outbox(conn, OutboxMessage(
                        key=f"{effect.key}:{emp.employee_id}", case_id=case.id, platform=self.platform_for(emp),
                        recipient=emp.employee_id, step_id=effect.step_id, kind="card",
                        payload={"case_id": case.id, "step_id": effect.step_id, "purpose": effect.purpose,
                                 "role": str(effect.role)},
                        next_attempt_at=at, created_at=at,
                    ))
            elif isinstance(effect, fx.UpdateStep):
                holders = await OutboxMessage.filter(
                    case_id=case.id, step_id=effect.step_id, kind="card"
                ).using_db(conn).values_list("recipient", "platform")
                for recipient, platform in sorted(set(holders)):
                    await _insert_outbox(conn, OutboxMessage(
                        key=f"{case.id}:{effect.step_id}:update:v{case.version}:{recipient}", case_id=case.id,
                        platform=platform, recipient=recipient, step_id=effect.step_id, kind="update",
                        payload={"case_id": case.id, "step_id": effect.step_id}, next_attempt_at=at,
                        created_at=at,
                    ))
            elif isinstance(effect, fx.SetTimer):
                if not await Timer.filter(key=effect.key).using_db(conn).exists():
                    await Timer.create(using_db=conn, key=effect.key, case_id=case.id, step_id=effect.step_id,
                                       kind=effect.kind, due_at=effect.due_at)
            elif isinstance(effect, fx.CancelTimers):
                await Timer.filter(case_id=case.id, step_id=effect.step_id, status="pending").using_db(
                    conn
                ).update(status="cancelled")
            else:  # pragma: no cover - a new effect type must be handled here
                raise TypeError(f"unhandled effect {effect!r}")

    async def recipients(self, conn: Any, case: Case, role: Role) -> list[Employee]:
        ids: list[str] = []
        if role == Role.EMPLOYEE:
            emp = await Employee.get(id=case.employee_id).using_db(conn)  # type: ignore[attr-defined]
            return [emp]
        if role == Role.MANAGER and case.manager_id:
            ids = [case.manager_id]
        elif role == Role.HANDOVER and case.handover_id:
            ids = [case.handover_id]
        elif role in (Role.FINANCE, Role.IT):
            people = await Employee.filter(active=True, roles__contains=str(role)).using_db(conn)
            found = [p for p in people if str(role) in p.role_set]
            if found:
                return found
        if not ids:
            # Nobody holds the role for this case: HR who opened it acts in their place,
            # so the step never silently waits on no one.
            ids = [case.created_by]
        return list(await Employee.filter(employee_id__in=ids).using_db(conn))

    def platform_for(self, emp: Employee) -> str:
        for p in self.platforms:
            if p == "emulator" or (p == "dingtalk" and emp.dingtalk_userid) or (
                p == "wecom" and emp.wecom_userid
            ):
                return p
        return self.platforms[0]


async def _insert_outbox(conn: Any, msg: OutboxMessage) -> None:
    # Idempotency: the key is unique, so a replayed effect cannot queue a second message.
    if not await OutboxMessage.filter(key=msg.key).using_db(conn).exists():
        await msg.save(using_db=conn)


def _step_columns(st: StepState) -> dict[str, Any]:
    return {
        "status": st.status, "activated_at": st.activated_at, "viewed_at": st.viewed_at, "done_at": st.done_at,
        "done_by": st.done_by, "outcome": st.outcome, "data": dict(st.data),
        "documents_signed": sorted(st.documents_signed), "reminders_sent": st.reminders_sent,
        "rejections": st.rejections,
    }
