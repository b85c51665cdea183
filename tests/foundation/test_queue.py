"""The leased-claim queue (storage/queue) that the outbox relay and the timers share, on the real
database: due rows only, each claimed by one worker, a dead claimer's rows taken over when its
lease runs out, and a marker that lost its claim changes nothing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from tortoise import connections

from storage import queue
from storage.models import Case, Employee, OutboxMessage, Timer

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)


async def _case() -> str:
    emp = await Employee.create(employee_id="Q1", name="测试")
    await Case.create(id="OB-QUEUE1", employee=emp, open_key="Q1", template_id="probation", created_by="HR",
                      started_at=NOW)
    return "OB-QUEUE1"


async def _timers(case_id: str, due: int, later: int) -> None:
    conn = connections.get("default")
    await queue.insert_timers(conn, [
        {"key": f"t{i}", "case_id": case_id, "step_id": "s", "kind": "remind",
         "due_at": NOW - timedelta(seconds=i) if i < due else NOW + timedelta(hours=1)}
        for i in range(due + later)
    ])


async def test_concurrent_claimers_take_each_due_row_once(db) -> None:
    await _timers(await _case(), due=40, later=15)
    conn = connections.get("default")

    async def worker(name: str) -> list[str]:
        got: list[str] = []
        while batch := await queue.claim(queue.TIMERS, conn, NOW, worker=name, lease=LEASE, limit=4):
            assert all(t.status == "claimed" and t.claimed_by == name and t.attempts == 1 for t in batch)
            assert [t.due_at for t in batch] == sorted(t.due_at for t in batch)  # oldest first
            got += [t.key for t in batch]
            await asyncio.sleep(0)
        return got

    results = await asyncio.gather(*(worker(f"w{i}") for i in range(3)))
    claimed = [k for r in results for k in r]
    assert sorted(claimed) == sorted(f"t{i}" for i in range(40))  # every due row, each once
    assert await Timer.filter(status="pending").count() == 15  # none of the later ones


async def test_an_expired_lease_is_taken_over_and_the_old_claim_marks_nothing(db) -> None:
    await _timers(await _case(), due=2, later=0)
    conn = connections.get("default")
    first = await queue.claim(queue.TIMERS, conn, NOW, worker="dead", lease=LEASE, limit=10)
    assert len(first) == 2
    # Still leased: nobody else gets them.
    assert await queue.claim(queue.TIMERS, conn, NOW + LEASE / 2, worker="w2", lease=LEASE, limit=10) == []
    later = NOW + LEASE + timedelta(seconds=1)
    second = await queue.claim(queue.TIMERS, conn, later, worker="w2", lease=LEASE, limit=10)
    assert sorted(t.key for t in second) == ["t0", "t1"] and all(t.attempts == 2 for t in second)
    assert not await queue.mark(queue.TIMERS, conn, first[0].id, "dead", {"status": "done", "fired_at": later})
    assert await queue.mark(queue.TIMERS, conn, second[0].id, "w2", {"status": "done", "fired_at": later})
    row = await Timer.get(id=second[0].id)
    assert (row.status, row.claimed_by, row.fired_at) == ("done", "w2", later)
    # Done is done: never claimed again.
    assert [t.id for t in await queue.claim(queue.TIMERS, conn, later + 2 * LEASE, worker="w3", lease=LEASE,
                                            limit=10)] == [second[1].id]


async def test_outbox_claims_only_its_platforms_and_backs_off(db) -> None:
    cid = await _case()
    conn = connections.get("default")
    await queue.insert_outbox(conn, [
        {"key": f"k{i}", "case_id": cid, "platform": p, "recipient": "Q1", "step_id": None, "kind": "text",
         "payload": {"text": str(i)}, "next_attempt_at": NOW, "created_at": NOW}
        for i, p in enumerate(["emulator", "dingtalk", "emulator"])
    ])
    # A replayed effect (same key) queues nothing.
    await queue.insert_outbox(conn, [{"key": "k0", "case_id": cid, "platform": "emulator", "recipient": "Q1",
                                      "step_id": None, "kind": "text", "payload": {}, "next_attempt_at": NOW,
                                      "created_at": NOW}])
    assert await OutboxMessage.all().count() == 3
    got = await queue.claim(queue.OUTBOX, conn, NOW, worker="r1", lease=LEASE, limit=10,
                            only={"platform": ["emulator"]})
    assert [r.key for r in got] == ["k0", "k2"] and got[0].payload == {"text": "0"}
    assert await queue.claim(queue.OUTBOX, conn, NOW, worker="r1", lease=LEASE, limit=10, only={"platform": []}) == []
    # Back to pending with a later attempt: not due before then.
    assert await queue.mark(queue.OUTBOX, conn, got[0].id, "r1", {"status": "pending", "lease_until": None,
                                                                  "next_attempt_at": NOW + timedelta(seconds=30)})
    assert await queue.claim(queue.OUTBOX, conn, NOW + timedelta(seconds=10), worker="r2", lease=LEASE, limit=10,
                             only={"platform": ["emulator"]}) == []
    again = await queue.claim(queue.OUTBOX, conn, NOW + timedelta(seconds=30), worker="r2", lease=LEASE, limit=10,
                              only={"platform": ["emulator"]})
    assert [(r.key, r.attempts) for r in again] == [("k0", 2)]


async def test_the_due_scan_reads_the_status_due_index(db) -> None:
    """The claim's candidate scan is a range on (status, due), and the compare-and-set finds each
    candidate by id: nothing walks the timers that are pending for later (bench/timers.py measures)."""
    from tortoise.transactions import in_transaction

    from storage.dialect import dialect_of

    await _timers(await _case(), due=5, later=3000)
    conn = connections.get("default")
    sql, values = queue.claim_statement(queue.TIMERS, conn, NOW, worker="w", lease=LEASE, limit=50)
    d = dialect_of(conn)
    if d.name == "postgres":
        async with in_transaction() as tx:
            await tx.execute_script("ANALYZE timer")
            rows = await tx.execute_query_dict("EXPLAIN " + d.sql(sql), values)
        plan = "\n".join(r["QUERY PLAN"] for r in rows)
        assert "idx_timer_status_" in plan and "Seq Scan on timer" not in plan, plan
    else:
        await conn.execute_script("ANALYZE")
        plan = "\n".join(r[-1] for r in (await conn.execute_query("EXPLAIN QUERY PLAN " + sql, values))[1])
        # Candidates by the index; the compare-and-set finds each by its id.
        assert plan.count("USING INDEX idx_timer_status_") == 1 and "SCAN timer" not in plan, plan
        assert "PRIMARY KEY" in plan, plan


async def test_a_cards_delivery_keeps_the_newest_update_token(db) -> None:
    """The relay's write-back after an update and a click's fresh token meet on one row: whichever
    token is newest stays, and a row with no delivery yet takes no token."""
    case_id = await _case()
    conn = connections.get("default")
    await queue.insert_outbox(conn, [{"key": "card-1", "case_id": case_id, "platform": "p", "recipient": "Q1",
                                      "step_id": "s", "kind": "card", "payload": {}, "next_attempt_at": NOW,
                                      "created_at": NOW}])
    row = await OutboxMessage.get(key="card-1")
    assert not await queue.keep_update_token(row.id, "from-a-click")  # not delivered yet: nothing to update
    await queue.replace_delivery(row.id, {"message_id": "m1", "update_token": "t1", "state": {}, "calls": 1})

    # An update that used t1 answers with t2 and nobody clicked meanwhile: t2 is kept.
    await queue.keep_delivery(row.id, {"message_id": "m2", "update_token": "t2", "state": {}, "calls": 1}, "t1")
    got = await OutboxMessage.get(id=row.id)
    assert got.delivery["update_token"] == "t2" and got.platform_message_id == "m2"

    # A click brings t3 while an update that used t2 runs; the update answers t4: the click's t3 wins.
    assert await queue.keep_update_token(row.id, "t3")
    await queue.keep_delivery(row.id, {"message_id": "m3", "update_token": "t4", "state": {"x": 1}, "calls": 1}, "t2")
    got = await OutboxMessage.get(id=row.id)
    assert got.delivery == {"message_id": "m3", "update_token": "t3", "state": {"x": 1}, "calls": 1}

    # A resend is a new card: its delivery replaces the old one, tokens and all.
    await queue.replace_delivery(row.id, {"message_id": "m9", "update_token": None, "state": {}, "calls": 1})
    got = await OutboxMessage.get(id=row.id)
    assert got.delivery["update_token"] is None and got.platform_message_id == "m9"
