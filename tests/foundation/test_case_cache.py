"""The service's snapshot of a case: used when it is current, never when another writer moved on.

Two `CaseService` objects on one database stand for two replicas: each keeps its own snapshots,
so every write one of them makes leaves the other's snapshot stale.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from tortoise.transactions import in_transaction

from bot.app import build_service
from cases.service import CaseService, CaseTx
from storage import audit, casestore
from storage.models import AuditEntry, Case, CaseStep, Employee, OutboxMessage
from workflow.events import Act
from workflow.model import Role

T0 = datetime(2025, 7, 1, 2, 0, tzinfo=UTC)
SUBMIT = {"last_working_day": "2025-07-31", "reason": "个人原因"}


@pytest.fixture
async def replicas(demo_org) -> tuple[CaseService, CaseService]:
    return build_service(demo_org), build_service(demo_org)


async def _open(svc: CaseService) -> str:
    emp = await Employee.get(employee_id="E003")
    out = await svc.start_case(employee=emp, template_id="probation", last_day=date(2025, 7, 31),
                               reason="绩效未达标", created_by="E001", handover_id="E006", at=T0)
    return out.case_id


def _act(step: str, action: str, who: str, role: Role, data: dict | None = None):
    return lambda case, state: Act(step, action, who, frozenset({role}), data or {}, at=T0)


async def test_a_current_snapshot_is_used_and_reads_nothing(replicas) -> None:
    a, _ = replicas
    cid = await _open(a)
    hits = a.cache.hits
    out = await a.apply(cid, _act("application", "submit", "E003", Role.EMPLOYEE, SUBMIT), actor="E003")
    assert out.ok and out.attempts == 1 and a.cache.hits == hits + 1
    assert (await Case.get(id=cid)).version == 2
    steps = dict(await CaseStep.filter(case_id=cid).values_list("step_id", "status"))
    assert steps["application"] == "done" and steps["performance_review"] == "active"


async def test_stale_snapshot_loses_the_compare_and_set_and_runs_again_on_fresh_state(replicas) -> None:
    a, b = replicas
    cid = await _open(a)  # a holds version 1
    assert (await b.apply(cid, _act("application", "submit", "E003", Role.EMPLOYEE, SUBMIT), actor="E003")).ok
    # a's snapshot still shows the application step active; the manager's approval needs it done.
    out = await a.apply(cid, _act("performance_review", "approve", "E002", Role.MANAGER, {"result": "60%"}),
                        actor="E002")
    assert out.ok, out.refusal
    assert out.attempts == 2  # first try on the stale snapshot failed the compare-and-set
    case = await Case.get(id=cid)
    assert case.version == 3
    assert (await audit.verify_chain(cid)).ok
    steps = dict(await CaseStep.filter(case_id=cid).values_list("step_id", "status"))
    assert steps["performance_review"] == "done" and steps["hr_check"] == "active"


async def test_a_refusal_is_never_answered_from_a_stale_snapshot(replicas) -> None:
    a, b = replicas
    cid = await _open(a)  # a's snapshot: hr_check locked behind the first two steps
    assert (await b.apply(cid, _act("application", "submit", "E003", Role.EMPLOYEE, SUBMIT), actor="E003")).ok
    assert (await b.apply(cid, _act("performance_review", "approve", "E002", Role.MANAGER, {"result": "60%"}),
                          actor="E002")).ok
    # On a's snapshot the engine refuses (step locked); the current state accepts.
    out = await a.apply(cid, _act("hr_check", "complete", "E001", Role.HR, {"unpaid_months": 2}), actor="E001")
    assert out.ok, out.refusal
    assert out.attempts == 2
    # And a refusal that is right stays a refusal, with nothing written.
    version = (await Case.get(id=cid)).version
    again = await a.apply(cid, _act("hr_check", "complete", "E001", Role.HR, {"unpaid_months": 2}), actor="E001")
    assert not again.ok and (await Case.get(id=cid)).version == version
    assert (await audit.verify_chain(cid)).ok


async def test_an_audit_entry_written_beside_the_service_is_chained_after(replicas) -> None:
    a, _ = replicas
    cid = await _open(a)
    # A writer outside the service (a sealed company document) appends through the case store:
    # it bumps the version, so the service's snapshot is stale and the next event re-reads.
    async with in_transaction() as conn:
        await casestore.append_audit(conn, cid, [(T0, "E003", "evidence", {"x": 1})])
    out = await a.apply(cid, _act("application", "submit", "E003", Role.EMPLOYEE, SUBMIT), actor="E003")
    assert out.ok and out.attempts == 2
    report = await audit.verify_chain(cid)
    assert report.ok, report.problem
    kinds = await AuditEntry.filter(case_id=cid).order_by("seq").values_list("kind", flat=True)
    assert kinds.index("evidence") < len(kinds) - 1


async def test_an_entry_the_caller_adds_keeps_the_snapshot_current(replicas) -> None:
    """The signing page's evidence entry is added by its `also`, under the event's own version
    check: the next event on the case is decided from the snapshot, with no read and no retry."""
    a, _ = replicas
    cid = await _open(a)
    seqs: list[int] = []

    async def evidence(tx: CaseTx) -> None:
        seqs.append((await tx.audit("evidence", {"x": 1}, actor="E003", at=T0)).seq)

    out = await a.apply(cid, _act("application", "submit", "E003", Role.EMPLOYEE, SUBMIT), actor="E003",
                        also=evidence)
    assert out.ok and out.attempts == 1
    stored = await Case.get(id=cid)
    assert seqs == [stored.audit_seq]
    snap = a.cache.get(cid)
    assert snap is not None and snap.stamp == (stored.version, stored.audit_seq)
    assert snap.case.audit_head == stored.audit_head
    hits = a.cache.hits
    out = await a.apply(cid, _act("performance_review", "approve", "E002", Role.MANAGER, {"result": "60%"}),
                        actor="E002")
    assert out.ok and out.attempts == 1 and a.cache.hits == hits + 1
    report = await audit.verify_chain(cid)
    assert report.ok, report.problem
    kinds = await AuditEntry.filter(case_id=cid).order_by("seq").values_list("kind", flat=True)
    assert kinds.index("evidence") < len(kinds) - 1


async def test_a_refused_event_cannot_add_entries(replicas) -> None:
    a, _ = replicas
    cid = await _open(a)

    async def evidence(tx: CaseTx) -> None:
        await tx.audit("evidence", {"x": 1}, actor="E002", at=T0)

    # Approving before the application is in: refused with nothing written.
    with pytest.raises(RuntimeError, match="writes nothing"):
        await a.apply(cid, _act("performance_review", "approve", "E002", Role.MANAGER, {"result": "60%"}),
                      actor="E002", also=evidence)
    stored = await Case.get(id=cid)
    assert stored.version == 1 and not await AuditEntry.filter(case_id=cid, kind="evidence").exists()


async def test_step_updates_reach_cards_queued_while_the_snapshot_was_held(replicas) -> None:
    a, b = replicas
    cid = await _open(a)
    # b's first event reads the case fresh (its card holders included) and queues the manager's card.
    assert (await b.apply(cid, _act("application", "submit", "E003", Role.EMPLOYEE, SUBMIT), actor="E003")).ok
    # a (stale) approves: its retry must see b's manager card and queue an update for it.
    assert (await a.apply(cid, _act("performance_review", "approve", "E002", Role.MANAGER, {"result": "60%"}),
                          actor="E002")).ok
    updates = await OutboxMessage.filter(case_id=cid, kind="update", step_id="performance_review")
    assert [u.recipient for u in updates] == ["E002"]


async def test_a_failed_transaction_drops_the_snapshot(replicas) -> None:
    a, _ = replicas
    cid = await _open(a)

    async def boom(conn) -> None:
        raise RuntimeError("caller's own write failed")

    with pytest.raises(RuntimeError):
        await a.apply(cid, _act("application", "submit", "E003", Role.EMPLOYEE, SUBMIT), actor="E003", also=boom)
    assert a.cache.get(cid) is None
    assert (await Case.get(id=cid)).version == 1
    out = await a.apply(cid, _act("application", "submit", "E003", Role.EMPLOYEE, SUBMIT), actor="E003")
    assert out.ok and (await Case.get(id=cid)).version == 2


async def test_reading_a_state_keeps_a_snapshot_for_the_next_event(replicas) -> None:
    a, b = replicas
    cid = await _open(a)
    assert b.cache.get(cid) is None  # b never saw this case
    state = await b.load_state(await Case.get(id=cid))  # e.g. rendering a card
    assert state.steps["application"].status == "active"
    snap = b.cache.get(cid)
    assert snap is not None and snap.stamp == (1, (await Case.get(id=cid)).audit_seq)
    out = await b.apply(cid, _act("application", "submit", "E003", Role.EMPLOYEE, SUBMIT), actor="E003")
    assert out.ok and out.attempts == 1
    assert (await audit.verify_chain(cid)).ok
