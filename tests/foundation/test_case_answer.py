"""cases.answer.apply_and_answer: one event, the caller's rows and its answer, in one transaction."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from bot.app import build_service
from cases.answer import apply_and_answer
from cases.service import CaseError, CaseService
from storage import audit, hotpath
from storage.models import AuditEntry, Case, CaseStep, Employee, InboxEvent
from workflow import engine
from workflow.events import Act

T0 = datetime(2025, 7, 1, 2, 0, tzinfo=UTC)
SUBMIT = {"last_working_day": "2025-07-31", "reason": "个人原因"}


class Claimed(Exception):
    """What the signing page raises when the link was used meanwhile."""


@pytest.fixture
async def svc(demo_org: Any) -> CaseService:
    return build_service(demo_org)


async def _open(svc: CaseService) -> str:
    emp = await Employee.get(employee_id="E003")
    out = await svc.start_case(employee=emp, template_id="probation", last_day=date(2025, 7, 31),
                               reason="绩效未达标", created_by="E001", at=T0)
    return out.case_id


async def _submit_event(svc: CaseService, case_id: str, who: str) -> Any:
    roles = await svc.roles_of(await Case.get(id=case_id), await Employee.get(employee_id=who))
    return lambda c, s: Act("application", "submit", who, roles, SUBMIT, at=T0)


def _words(log: list[tuple[str, Any]]) -> dict[str, Any]:
    """Callbacks that answer with plain strings and log what ran, in order."""

    async def accepted(conn: Any, decision: engine.Decision) -> None:
        log.append(("accepted", decision.state.steps["application"].status))

    async def inside(conn: Any, answer: str) -> None:
        log.append(("inside", answer))
        await hotpath.insert_inbox(conn, dedup_key=f"t:{len(log)}", platform="emulator", sender="E003",
                                   kind="text", received_at=T0, result={"text": answer})

    return {"word": lambda d: "done", "refused": lambda r: f"refused:{r.code}",
            "failed": lambda e: f"failed:{e.code}", "accepted": accepted, "inside": inside}


async def test_accepted_event_runs_both_callbacks_and_commits_the_answer(svc: CaseService) -> None:
    cid = await _open(svc)
    log: list[tuple[str, Any]] = []
    answer = await apply_and_answer(svc, cid, await _submit_event(svc, cid, "E003"), actor="E003", **_words(log))
    assert answer == "done"
    assert log == [("accepted", "done"), ("inside", "done")]
    assert (await CaseStep.get(case_id=cid, step_id="application")).status == "done"
    assert [r.result for r in await InboxEvent.all()] == [{"text": "done"}]


async def test_refusal_skips_accepted_but_records_the_refusal(svc: CaseService) -> None:
    cid = await _open(svc)
    log: list[tuple[str, Any]] = []
    # The manager cannot submit the employee's application: the engine refuses.
    answer = await apply_and_answer(svc, cid, await _submit_event(svc, cid, "E002"), actor="E002", **_words(log))
    assert answer.startswith("refused:")
    assert [name for name, _ in log] == ["inside"] and log[0][1] == answer
    assert (await CaseStep.get(case_id=cid, step_id="application")).status == "active"
    assert [r.result for r in await InboxEvent.all()] == [{"text": answer}]


async def test_unknown_case_is_failed_and_writes_nothing(svc: CaseService) -> None:
    log: list[tuple[str, Any]] = []
    answer = await apply_and_answer(svc, "OB-NOPE22", lambda c, s: None, actor="E003", **_words(log))
    assert answer == "failed:unknown_case" and log == []
    assert await InboxEvent.all().count() == 0


async def test_exception_in_accepted_rolls_back_the_event(svc: CaseService) -> None:
    cid = await _open(svc)
    before = (await Case.get(id=cid)).version, await AuditEntry.filter(case_id=cid).count()

    async def claim(conn: Any, decision: engine.Decision) -> None:
        raise Claimed

    words = _words([])
    words["accepted"] = claim
    with pytest.raises(Claimed):
        await apply_and_answer(svc, cid, await _submit_event(svc, cid, "E003"), actor="E003", **words)
    assert ((await Case.get(id=cid)).version, await AuditEntry.filter(case_id=cid).count()) == before
    assert (await CaseStep.get(case_id=cid, step_id="application")).status == "active"
    assert await InboxEvent.all().count() == 0
    # The cached snapshot was dropped with the transaction: the next event decides on the real state.
    assert await apply_and_answer(svc, cid, await _submit_event(svc, cid, "E003"), actor="E003",
                                  **_words([])) == "done"
    assert (await audit.verify_chain(cid)).ok


async def test_lost_race_answers_from_the_attempt_that_committed(svc: CaseService) -> None:
    cid = await _open(svc)
    roles = await svc.roles_of(await Case.get(id=cid), await Employee.get(employee_id="E003"))
    calls = 0

    def make(case: Case, state: Any) -> Act:
        nonlocal calls
        calls += 1
        if calls == 1:
            case.version -= 1  # another writer moved the case: this attempt's compare-and-set fails
        return Act("application", "submit", "E003", roles, SUBMIT, at=T0)

    log: list[tuple[str, Any]] = []
    answer = await apply_and_answer(svc, cid, make, actor="E003", **_words(log))
    assert answer == "done" and calls == 2
    # The lost attempt failed its compare-and-set before the callbacks, so they ran once, for the
    # attempt that committed, and the answer is that attempt's.
    assert log == [("accepted", "done"), ("inside", "done")]
    assert await InboxEvent.all().count() == 1


async def test_service_error_class_is_what_failed_receives(svc: CaseService) -> None:
    seen: list[CaseError] = []
    words = _words([])
    words["failed"] = lambda e: seen.append(e) or "x"
    await apply_and_answer(svc, "OB-NOPE22", lambda c, s: None, actor="", **words)
    assert len(seen) == 1 and seen[0].message_en.startswith("no case")
