"""The case service: applies one workflow event in one database transaction.

load case (version) -> pure engine decides -> case/step rows, audit entry, outbox rows and
timer rows written -> version bumped with a compare-and-set -> commit. A lost race (another
writer bumped the version first) re-runs the whole thing on fresh state; the engine is pure, so
re-running is safe. The case as this process last committed it is kept (`cases/cache.py`),
so the usual event reads nothing before it decides; the compare-and-set is what makes that safe.
Callers may add their own writes to the same transaction (`also`), which
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

from cases.cache import CaseCache, Holder, Snapshot
from storage import audit, casestore, hotpath, queue
from storage.addresses import AddressBook
from storage.casestore import VersionConflict
from storage.dialect import Batch
from storage.hotpath import Recipient
from storage.models import Case, Employee
from storage.rows import from_row
from workflow import effects as fx
from workflow import engine
from workflow.events import Start
from workflow.model import CaseState, Role, StepState, questions_to_list
from workflow.template import FlowTemplate

Also = Callable[["CaseTx"], Awaitable[None]]
_ID_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O, 1/I: typed by HR from a phone
assert len(_ID_ALPHABET) == 32


class CaseError(Exception):
    """A request the service cannot carry out (unknown case, second open case, ...)."""

    def __init__(self, code: str, message_zh: str, message_en: str) -> None:
        super().__init__(message_en)
        self.code = code
        self.message_zh = message_zh
        self.message_en = message_en


@dataclass
class CaseTx:
    """What a caller's `also` is handed, inside the transaction of one event, after the case's own
    writes: the connection for its own rows, the state the engine decided on and what it decided
    (so the caller's rows can depend on it without deciding again), and `audit` to add entries to
    the case's chain under the same version check."""

    conn: Any
    case_id: str
    before: CaseState
    result: Any  # engine.Decision | engine.Refusal
    version: int  # of the case as this transaction commits it
    write: casestore.CaseWrite | None = None  # None: the event wrote nothing to the case

    async def audit(self, kind: str, data: dict[str, Any], *, actor: str, at: datetime) -> audit.NewEntry:
        if self.write is None:
            raise RuntimeError("an event that writes nothing to its case cannot add audit entries")
        return (await self.write.append(self.conn, [(at, actor, kind, data)]))[0]


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
    # 32 letters: a random byte mod 32 is uniform, and one urandom call serves all six.
    return "OB-" + "".join(_ID_ALPHABET[b % len(_ID_ALPHABET)] for b in secrets.token_bytes(6))


def utcnow() -> datetime:
    return datetime.now(UTC)


class CaseService:
    def __init__(self, templates: dict[str, FlowTemplate], platforms: Sequence[str] = ("emulator",), *,
                 addresses: AddressBook | None = None) -> None:
        self.templates = templates
        self.platforms = tuple(platforms)
        # Who is reached on which platform: built by the app from the platform packages.
        self.addresses = addresses or AddressBook.of(self.platforms)
        # Run inside the transaction that completes or cancels a case, after every other write of it
        # (signing/ adds the Ed25519 checkpoint over the final audit head here).
        self.on_closed: list[Callable[[Any, str], Awaitable[None]]] = []
        self.cache = CaseCache()

    # ---- reading -------------------------------------------------------------------------
    def template(self, template_id: str) -> FlowTemplate:
        try:
            return self.templates[template_id]
        except KeyError:
            raise CaseError(
                "unknown_template", f"未知的离职类型：{template_id}", f"unknown case type: {template_id}"
            ) from None

    async def load_state(self, case: Case, conn: Any = None) -> CaseState:
        """The state of `case` as the caller read it: from the snapshot when that is the same
        version, else read (case row and steps in one statement, so they agree) and kept."""
        snap = self.cache.get(case.id)
        if snap is not None and snap.stamp == (case.version, case.audit_seq):
            return snap.state
        fresh = await self._read(conn or hotpath.default_conn(), case.id)
        self.cache.put(fresh)
        return fresh.state

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
        case_id: str | None = None, known: Sequence[Employee] = (), extra_outbox: Sequence[dict[str, Any]] = (),
        prepared: dict[str, dict[str, Any]] | None = None,
    ) -> Outcome:
        """Open a case. `case_id` lets a caller name the case before it exists (for rows of its own);
        `known` are directory rows the caller has just read (the HR actor), so notifying them needs no
        second read; `extra_outbox` rows are queued with the case's own messages in one statement;
        `prepared` is what HR adds to steps from the start (e.g. handover items: {step: {field: value}})."""
        at = at or utcnow()
        template = self.template(template_id)
        case_id = case_id or new_case_id()
        started = engine.apply(template, engine.new_state(template, case_id, at), Start(at, prepared or {}))
        if isinstance(started, engine.Refusal):
            raise CaseError(started.code, started.message_zh, started.message_en)
        decision = started
        opened = fx.Audit("case_opened", {
            "employee": employee.employee_id, "template": template.id, "version": template.version,
            "last_day": last_day.isoformat() if last_day else None, "reason": reason,
        })
        row: dict[str, Any] = {
            "id": case_id, "employee_id": employee.id, "open_key": employee.employee_id, "template_id": template.id,
            "template_version": template.version, "status": "open", "last_day": last_day, "reason": reason,
            "manager_id": employee.manager_id, "handover_id": handover_id, "created_by": created_by,
            "fallback_started": False, "started_at": at, "closed_at": None, "version": 1, "audit_seq": 0,
            "audit_head": audit.GENESIS, "updated_at": utcnow(), "questions": [],
        }
        # The row is inserted already at its first version with its audit head, so a new case needs
        # no compare-and-set: the unique id and open key serialise creators.
        entries = audit.build_entries(case_id, 0, audit.GENESIS, _audit_items((opened, *decision.effects), at,
                                                                              created_by))
        if entries:
            row.update(audit_seq=entries[-1].seq, audit_head=entries[-1].hash)
        case = from_row(Case, row)
        try:
            async with in_transaction() as conn:
                writes = Batch()
                await casestore.insert_case(writes, row, [
                    (step.id, pos, decision.state.steps[step.id]) for pos, step in enumerate(template.steps)
                ], entries)
                cards = await self._rows(conn, writes, case, decision.effects, at, holders=frozenset(),
                                         known=(employee, *known), extra_outbox=extra_outbox)
                await writes.flush(conn)
                if also:
                    await also(CaseTx(conn, case_id, engine.new_state(template, case_id, at), decision, 1))
        except IntegrityError:
            if await Case.filter(open_key=employee.employee_id).exists():
                raise CaseError(
                    "already_open", f"{employee.name} 已有进行中的离职流程",
                    f"{employee.name} already has an open case",
                ) from None
            raise
        self.cache.put(Snapshot(case, decision.state, cards))
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
        snap = self.cache.get(case_id)
        try:
            async with in_transaction() as conn:
                fresh = snap is None
                if snap is None:
                    snap = await self._read(conn, case_id)
                case, state = snap.case, snap.state
                event = make_event(case, state)
                template = self.template(case.template_id)
                result = engine.apply(template, state, event)
                at = getattr(event, "at", None) or utcnow()
                write: casestore.CaseWrite | None = None
                holders = snap.holders
                if isinstance(result, engine.Refusal):
                    # A refusal may write nothing, so no compare-and-set would catch a snapshot
                    # that another writer has moved past: check it before refusing on its word.
                    if not fresh and await casestore.stamp(conn, case_id) != snap.stamp:
                        raise VersionConflict(case_id)
                    new = state
                    if result.audit is not None:
                        write, holders = await self._write(conn, snap, (result.audit,), at, actor=actor, changes={})
                    outcome = Outcome(case_id=case.id, refusal=result)
                else:
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
                    if new.questions != state.questions:
                        changes["questions"] = questions_to_list(new.questions)
                    moved = {step_id: st for step_id, st in new.steps.items() if state.steps.get(step_id) != st}
                    write, holders = await self._write(conn, snap, result.effects, at, actor=actor, changes=changes,
                                                     steps=moved)
                    outcome = Outcome(case_id=case.id, decision=result)
                if also:
                    await also(CaseTx(conn, case.id, state, result, write.version if write else case.version,
                                      write))
                if outcome.decision is not None and state.status == "open" and new.status != "open":
                    for hook in self.on_closed:
                        await hook(conn, case.id)
        except BaseException:
            self.cache.drop(case_id)
            raise
        if write is not None:
            # The case as committed, audit entries the caller added included: the next event on
            # it starts from here without a read, and its compare-and-set names this stamp.
            snap = Snapshot(write.case, new, holders)
        self.cache.put(snap)
        return outcome

    async def _read(self, conn: Any, case_id: str) -> Snapshot:
        loaded = await casestore.load(conn, case_id)
        if loaded is None:
            raise CaseError("unknown_case", f"找不到流程 {case_id}", f"no case {case_id}")
        return Snapshot(loaded[0], loaded[1], None)

    # ---- effects -> rows -----------------------------------------------------------------
    async def _write(
        self, conn: Any, snap: Snapshot, effects: Sequence[Any], at: datetime, *, actor: str,
        changes: dict[str, Any], steps: dict[str, StepState] | None = None,
    ) -> tuple[casestore.CaseWrite, frozenset[Holder] | None]:
        """Persist one decision: the compare-and-set first (it serialises writers of this case and
        carries the new audit head), then audit entries, outbox and timer rows and the changed
        steps, all sent to the database together. The reads the rows need (recipients, card
        holders) run before; anything they could race with bumps the version, so the
        compare-and-set still catches it. Returns the write and the step cards out after it (None:
        not read)."""
        case = snap.case
        # HR's summary shows every step and the case's own fields (status, questions): it changes
        # with any of them.
        summary = bool(changes) or any(isinstance(e, fx.UpdateStep) for e in effects)
        if snap.holders is None and summary:
            snap = Snapshot(snap.case, snap.state, frozenset(await queue.card_holders(conn, case.id)))
        writes = Batch()
        write = casestore.CaseWrite(writes, case)
        entries = write.chain(_audit_items(effects, at, actor))
        await write.stage(changes, steps or {}, entries)
        cards = await self._rows(conn, writes, case, effects, at, version=write.version, holders=snap.holders,
                                 summary=summary)
        if not await writes.flush(conn):
            raise VersionConflict(case.id)
        return write, None if snap.holders is None else snap.holders | cards

    async def _rows(
        self, conn: Any, writes: Batch, case: Case, effects: Sequence[Any], at: datetime, *,
        holders: frozenset[Holder] | None, version: int | None = None, summary: bool = False,
        known: Sequence[Employee | Recipient] = (), extra_outbox: Sequence[dict[str, Any]] = (),
    ) -> frozenset[Holder]:
        """Queue a decision's outbox and timer rows on `writes`, reading (on `conn`) only what
        they depend on; returns the step cards it queues. `holders` are the step cards already
        out (needed when the decision updates steps, or with `summary`: HR's summary cards)."""
        version = case.version if version is None else version
        notify = [e for e in effects if isinstance(e, fx.Notify)]
        updates = [e.step_id for e in effects if isinstance(e, fx.UpdateStep)]
        outbox: list[dict[str, Any]] = list(extra_outbox)
        if notify:
            people = await self._recipients(conn, case, {e.role for e in notify}, known)
            for e in notify:
                for emp in people[e.role]:
                    if emp.employee_id in e.skip:
                        continue  # opened the step already (a reminder only for those who have not)
                    outbox.append({
                        "key": f"{e.key}:{emp.employee_id}", "case_id": case.id, "platform": self.platform_for(emp),
                        "recipient": emp.employee_id, "step_id": e.step_id, "kind": "card",
                        "payload": {"case_id": case.id, "step_id": e.step_id, "purpose": e.purpose,
                                    "role": str(e.role)},
                        "next_attempt_at": at, "created_at": at,
                    })
        if updates or summary:
            # Every card of a step that moved, and HR's summary cards (they show every step), are
            # updated in place, whatever moved it: a tap, a signature, a web form, a timer.
            wanted = {*updates, queue.SUMMARY} if summary else set(updates)
            for step_id, recipient, platform in sorted(h for h in holders or () if h[0] in wanted):
                scope, sid, more = ("summary", None, {"purpose": "summary"}) if step_id == queue.SUMMARY \
                    else (step_id, step_id, {})
                outbox.append({
                    "key": f"{case.id}:{scope}:update:v{version}:{recipient}", "case_id": case.id,
                    "platform": platform, "recipient": recipient, "step_id": sid, "kind": "update",
                    "payload": {"case_id": case.id, "step_id": sid, **more}, "next_attempt_at": at, "created_at": at,
                })
        # The key is unique: a replayed effect cannot queue a second message.
        await queue.insert_outbox(writes, outbox)
        cancel = [e.step_id for e in effects if isinstance(e, fx.CancelTimers)]
        if cancel:
            await queue.cancel_timers(writes, case.id, cancel)
        await queue.insert_timers(writes, [
            {"key": e.key, "case_id": case.id, "step_id": e.step_id, "kind": e.kind, "due_at": e.due_at}
            for e in effects if isinstance(e, fx.SetTimer)
        ])
        for e in effects:
            if not isinstance(e, (fx.Audit, fx.Notify, fx.UpdateStep, fx.CancelTimers, fx.SetTimer)):
                raise TypeError(f"unhandled effect {e!r}")  # a new effect type must be handled here
        return frozenset((r["step_id"] if r["step_id"] is not None else queue.SUMMARY, r["recipient"], r["platform"])
                         for r in outbox if r["kind"] == "card"
                         and (r["step_id"] is not None or r["payload"].get("purpose") == "summary"))

    async def _recipients(
        self, conn: Any, case: Case, roles: set[Role], known: Sequence[Employee | Recipient] = ()
    ) -> dict[Role, list[Employee | Recipient]]:
        """Who holds each role for this case, in one query (none when `known` already holds everyone
        asked for). Nobody holding a role (no manager on file, no finance person) falls back to the HR
        who opened the case, so no step waits on no one."""
        wanted: dict[Role, list[str]] = {}
        for role in roles:
            if role == Role.MANAGER and case.manager_id:
                wanted[role] = [case.manager_id]
            elif role == Role.HANDOVER and case.handover_id:
                wanted[role] = [case.handover_id]
            elif role == Role.HR:
                wanted[role] = [case.created_by]
        directory_roles = [r for r in roles if r in (Role.FINANCE, Role.IT)]
        ids = {i for ids in wanted.values() for i in ids} | {case.created_by}
        have = {p.employee_id for p in known}
        people: Sequence[Employee | Recipient]
        if not directory_roles and ids <= have and (
            Role.EMPLOYEE not in roles or any(p.id == case.employee_id for p in known)  # type: ignore[attr-defined]
        ):
            people = [p for p in known if p.employee_id in ids or p.id == case.employee_id]  # type: ignore[attr-defined]
        else:
            people = await hotpath.people(
                conn, pk=case.employee_id, employee_ids=sorted(ids),  # type: ignore[attr-defined]
                role_words=[str(r) for r in directory_roles], user_id_columns=self.addresses.user_id_columns,
            )
        by_id = {p.employee_id: p for p in people}
        out: dict[Role, list[Employee | Recipient]] = {}
        for role in roles:
            if role == Role.EMPLOYEE:
                found = [p for p in people if p.id == case.employee_id]  # type: ignore[attr-defined]
            elif role in directory_roles:
                found = sorted((p for p in people if str(role) in p.role_set), key=lambda p: p.employee_id)
            else:
                found = [by_id[i] for i in wanted.get(role, []) if i in by_id]
            if not found and case.created_by in by_id:
                found = [by_id[case.created_by]]
            out[role] = found
        return out

    def platform_for(self, emp: Employee | Recipient) -> str:
        return self.addresses.platform_for(emp)




def _audit_items(effects: Sequence[Any], at: datetime, actor: str) -> list[casestore.AuditItem]:
    return [(at, actor, e.kind, e.data) for e in effects if isinstance(e, fx.Audit)]
