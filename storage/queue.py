"""The leased-claim queue: the one way rows of `outbox` and `timer` are inserted, claimed and marked
(and a delivered card's `delivery` kept: see the end of this module).

A row is `pending` until it is due, then claimable; a claim is a compare-and-set in one statement
(`UPDATE ... WHERE id IN (due candidates) AND <still claimable> RETURNING ...`) that sets
`claimed`, the claimer and a lease, so exactly one worker wins a row on SQLite and PostgreSQL
alike. On PostgreSQL the candidates are locked `FOR UPDATE SKIP LOCKED` (storage/dialect), so
replicas take disjoint rows instead of waiting on each other's. A claimed row whose lease ran out
(its claimer died) is claimable again. Marks (sent, done, back to pending, failed) are written
only while the claim is still the marker's: a worker that lost its lease changes nothing.

The due scan reads the (status, due) index: `status IN ('pending', 'claimed') AND due <= now`
walks only rows that are due (a claimed row was due when it was claimed), however many are pending
for later; bench/timers.py shows the plan and its cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from tortoise.models import Model
from tortoise.transactions import in_transaction

from storage.dialect import Target, columns, dialect_of, quote, table, write
from storage.models import OutboxMessage, Timer
from storage.rows import converter, from_row, insert_rows, update_statement


@dataclass(frozen=True)
class LeasedQueue:
    model: type[Model]
    due: str  # the column from which a pending row may be claimed
    order: str  # which claimable rows go first


OUTBOX = LeasedQueue(OutboxMessage, "next_attempt_at", "id")
TIMERS = LeasedQueue(Timer, "due_at", "due_at")


@cache
def _claim_sql(queue: LeasedQueue, n_filters: tuple[tuple[str, int], ...], skip_locked: str,
               returned: tuple[str, ...]) -> str:
    t = quote(table(queue.model))
    due = quote(queue.due)
    # The candidates come from the (status, due) index. The compare-and-set repeats the condition
    # on each candidate found by id; `"status" || ''` keeps the planner from walking the index a
    # second time for it (SQLite did, scanning every due row twice per claim).
    claimable = (f" IN ('pending', 'claimed') AND {due} <= ? "
                 "AND (\"status\" = 'pending' OR \"lease_until\" < ?)")
    for column, n in n_filters:
        claimable += f" AND {quote(column)} IN ({', '.join('?' for _ in range(n))})"
    cols = ", ".join(quote(c) for c in returned)
    return (f"UPDATE {t} SET \"status\" = 'claimed', \"lease_until\" = ?, \"claimed_by\" = ?, "
            f"\"attempts\" = \"attempts\" + 1 WHERE \"id\" IN (SELECT \"id\" FROM {t} WHERE \"status\"{claimable} "
            f"ORDER BY {quote(queue.order)} LIMIT {{limit}}{skip_locked}) AND \"status\" || ''{claimable} "
            f"RETURNING {cols}")


def claim_statement(queue: LeasedQueue, conn: Any, now: datetime, *, worker: str, lease: timedelta, limit: int,
                    only: dict[str, Sequence[str]] | None = None) -> tuple[str, list[Any]]:
    """The claim as (sql, values) for `conn`'s dialect; `only` narrows it (column -> values)."""
    only = only or {}
    d = dialect_of(conn)
    filters = tuple((c, len(v)) for c, v in only.items())
    at = converter(queue.model, queue.due)
    stamp = [at(now), at(now), *(x for v in only.values() for x in v)]
    sql = _claim_sql(queue, filters, d.skip_locked, columns(queue.model)).replace("{limit}", str(int(limit)))
    lease_at = converter(queue.model, "lease_until")
    return sql, [lease_at(now + lease), worker, *stamp, *stamp]


async def claim(queue: LeasedQueue, conn: Any, now: datetime, *, worker: str, lease: timedelta, limit: int,
                only: dict[str, Sequence[str]] | None = None) -> list[Any]:
    """Claim up to `limit` due rows for `worker` until `now + lease`; the rows as claimed, in
    queue order. One statement: run it on the default connection (no transaction needed)."""
    if only is not None and any(not v for v in only.values()):
        return []
    sql, values = claim_statement(queue, conn, now, worker=worker, lease=lease, limit=limit, only=only)
    rows = await dialect_of(conn).fetch(conn, sql, values)
    got = [from_row(queue.model, dict(r)) for r in rows]
    got.sort(key=lambda r: (getattr(r, queue.order), r.id))
    return got


async def mark(queue: LeasedQueue, conn: Any, row_id: int, worker: str, changes: dict[str, Any]) -> bool:
    """Record a claimed row's outcome, only while `worker` still holds the claim."""
    sql, values = update_statement(queue.model, changes, {"id": row_id, "status": "claimed", "claimed_by": worker})
    n, _ = await dialect_of(conn).query(conn, sql, values)
    return n == 1


async def insert(target: Target, queue: LeasedQueue, rows: Sequence[dict[str, Any]]) -> None:
    """New pending rows; every row names the same columns. The unique key makes a replayed
    effect a no-op (an existing key is kept)."""
    await insert_rows(target, queue.model, [{"status": "pending", "attempts": 0, **r} for r in rows],
                      ignore_conflicts=True)


async def insert_outbox(target: Target, rows: Sequence[dict[str, Any]]) -> None:
    """Outbox rows (key, case_id, platform, recipient, step_id, kind, payload, next_attempt_at,
    created_at)."""
    await insert(target, OUTBOX, rows)


async def insert_timers(target: Target, rows: Sequence[dict[str, Any]]) -> None:
    """Timer rows (key, case_id, step_id, kind, due_at)."""
    await insert(target, TIMERS, rows)


async def cancel_timers(target: Target, case_id: str, step_ids: Sequence[str]) -> None:
    # `"status" || ''`: no index on status for this one. Left bare, SQLite's planner picked the
    # (status, due) index and walked every pending timer of every case (0.5 ms per event, growing);
    # the (case, step) index finds the handful that matter.
    marks = ", ".join("?" for _ in step_ids)
    await write(target, f'UPDATE "timer" SET "status" = \'cancelled\' WHERE "case_id" = ? '
                f'AND "step_id" IN ({marks}) AND "status" || \'\' = \'pending\'', [[case_id, *step_ids]])


# ---- outbox rows of a case ------------------------------------------------------------------
SUMMARY = "*summary"  # the step id card_holders gives HR's summary cards (no step id is like it)


async def card_holders(conn: Any, case_id: str) -> list[tuple[str, str, str]]:
    """(step_id, recipient, platform) of every step card queued or sent for the case, and of every
    HR summary card under the step id SUMMARY (it shows every step, so it changes with any of them)."""
    # HR's summary card is the only card row keyed `<case>:summary:<hr>` (handlers.commands); other
    # cards without a step are keyed `<case>:case:<purpose>:…` (workflow.engine), update rows are no cards.
    _, rows = await dialect_of(conn).query(
        conn, 'SELECT DISTINCT "step_id", "recipient", "platform" FROM "outbox" WHERE "case_id" = ? '
        'AND "kind" = \'card\' AND ("step_id" IS NOT NULL OR "key" LIKE ?)', [case_id, f"{case_id}:summary:%"],
    )
    return sorted((r[0] if r[0] is not None else SUMMARY, r[1], r[2]) for r in rows)


# ---- what the platform answered for a delivered card ----------------------------------------
# `delivery` (chat.connector.Delivery as JSON) is written by the relay after a send or an update and
# by the inbound side when a click brings a fresh update token. Both write here, under the row's lock
# (FOR UPDATE on PostgreSQL; SQLite has one writer), so the newest update token always wins.

async def keep_delivery(row_id: int, fresh: dict[str, Any], used_token: str | None) -> None:
    """The card of `row_id` now carries `fresh` (what an update answered); but a click that brought
    a newer update token while the update ran (one other than `used_token`, the token the update
    used) keeps its token."""
    async with in_transaction() as conn:
        current = await OutboxMessage.filter(id=row_id).using_db(conn).select_for_update().first()
        if current is None:
            return
        held = current.delivery if isinstance(current.delivery, dict) and current.delivery.get("message_id") else None
        keep = dict(fresh)
        newer = held.get("update_token") if held is not None else None
        if newer and newer != used_token:
            keep["update_token"] = newer
        await OutboxMessage.filter(id=row_id).using_db(conn).update(
            delivery=keep, platform_message_id=str(fresh["message_id"])[:255])


async def keep_update_token(row_id: int, token: str | None) -> bool:
    """A click's fresh update token into the card's delivery, before the click is handled; False when
    the row is gone or has no delivery (not delivered yet: nothing to update with it)."""
    async with in_transaction() as conn:
        current = await OutboxMessage.filter(id=row_id).using_db(conn).select_for_update().first()
        if current is None or current.delivery is None:
            return False
        delivery = dict(current.delivery)
        delivery["update_token"] = token
        await OutboxMessage.filter(id=row_id).using_db(conn).update(delivery=delivery)
        return True


async def replace_delivery(row_id: int, fresh: dict[str, Any]) -> None:
    """The card was delivered anew (a platform that lost it): its old delivery, tokens included, is
    replaced, as they belong to a card that no longer exists."""
    await OutboxMessage.filter(id=row_id).update(delivery=fresh, platform_message_id=str(fresh["message_id"])[:255])
