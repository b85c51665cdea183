"""The one write path of a case: its row, its steps and its audit chain.

A case is read with its steps in one statement (`load`). Every change to it is a compare-and-set
on the case row naming (version, audit_seq): `CaseWrite` queues that UPDATE first, then the
audit entries it chains after the head and the changed steps; a lost race changes nothing and the
caller runs again on fresh state. Audit entries are appended nowhere else:

- `CaseWrite.append` adds entries to a write already committed in the same transaction (the
  signing page's evidence record), moving the head under the version that write set, so the
  writer's snapshot of the case stays current;
- `append_audit` is for writers outside the case service (a sealed company document): it bumps
  the version first, which locks the row and makes holders of an older snapshot re-read.

Step columns come from the `case_step` model: whatever is not the step's identity is a field of
`StepState` of the same name (a test holds the two together).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from functools import cache
from operator import attrgetter
from typing import Any

from tortoise import fields

from storage import audit
from storage.dialect import Batch, Target, columns, dialect_of, fields_by_column, quote, write
from storage.models import AuditEntry, Case, CaseStep
from storage.rows import as_datetime, as_json, converter, converters, from_row, insert_rows, insert_sql, to_db
from workflow.model import CaseState, StepState, questions_from_list

# The columns that place a step rather than describe it.
STEP_IDENTITY = ("id", "case_id", "step_id", "position")
AuditItem = tuple[datetime, str, str, dict[str, Any]]  # (at, actor, kind, data)


class VersionConflict(Exception):
    """Another writer moved the case first; nothing was written."""


# ---- step columns, derived from the model ---------------------------------------------------
def step_columns() -> tuple[str, ...]:
    """The `case_step` columns that hold a step's state, in model order."""
    return _state_columns(columns(CaseStep))


@cache
def _state_columns(all_columns: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(c for c in all_columns if c not in STEP_IDENTITY)


@cache
def _step_readers() -> tuple[tuple[str, Any], ...]:
    """How each step column's stored value becomes the `StepState` field's value."""
    blank = StepState()
    out = []
    for column, field in fields_by_column(CaseStep).items():
        if column in STEP_IDENTITY:
            continue
        default = getattr(blank, column)
        if isinstance(field, fields.DatetimeField):
            out.append((column, as_datetime))
        elif isinstance(default, frozenset):
            out.append((column, lambda v: frozenset(as_json(v) or ())))
        elif isinstance(default, dict):
            out.append((column, lambda v: dict(as_json(v) or {})))
        else:
            out.append((column, None))
    return tuple(out)


def step_state(row: dict[str, Any]) -> StepState:
    """A step's state from its row (column -> stored value)."""
    return StepState(**{c: (row[c] if read is None else read(row[c])) for c, read in _step_readers()})


_Fixes = tuple[tuple[int, Callable[[Any], Any]], ...]  # (column position, how its value is stored)


@cache
def _step_writer(cols: tuple[str, ...]) -> tuple[Callable[[StepState], Any], _Fixes]:
    """All of a step's fields in one C call, and which of them are stored as another type (by the
    field's default: a set is stored as a sorted list, a mapping as a plain dict). Every step of
    every event goes through here: a `getattr` and two `isinstance` per column cost more than the
    rest of its write."""
    blank = StepState()
    kinds: dict[type, Callable[[Any], Any]] = {frozenset: sorted, dict: dict}
    fixes = tuple((i, kinds[type(getattr(blank, c))]) for i, c in enumerate(cols)
                  if type(getattr(blank, c)) in kinds)
    return attrgetter(*cols), fixes


def _step_lists(states: Iterable[StepState]) -> list[list[Any]]:
    """Each step's state as its column values, in `step_columns()` order."""
    get, fixes = _step_writer(step_columns())
    out = []
    for st in states:
        values = list(get(st))
        for i, fix in fixes:
            values[i] = fix(values[i])
        out.append(values)
    return out


def step_values(st: StepState) -> dict[str, Any]:
    """A step's state as its columns (python values; sets stored sorted)."""
    return dict(zip(step_columns(), _step_lists((st,))[0], strict=True))


def case_state(case: Case, steps: Sequence[tuple[str, StepState]]) -> CaseState:
    return CaseState(
        case_id=case.id, template_id=case.template_id, status=case.status, steps=dict(steps),
        fallback_started=case.fallback_started, started_at=case.started_at, closed_at=case.closed_at,
        questions=questions_from_list(case.questions),
    )


# ---- reading ------------------------------------------------------------------------------
@cache
def _load_sql(case_columns: tuple[str, ...], state_columns: tuple[str, ...]) -> str:
    case_cols = ", ".join(f"c.{quote(c)}" for c in case_columns)
    step_cols = ", ".join(f"s.{quote(c)} AS {quote('s_' + c)}" for c in ("step_id", *state_columns))
    return (f'SELECT {case_cols}, {step_cols} FROM "case" c LEFT JOIN "case_step" s ON s."case_id" = c."id" '
            'WHERE c."id" = ? ORDER BY s."position"')


async def load(conn: Any, case_id: str) -> tuple[Case, CaseState] | None:
    """The case row and its state (steps by position) in one round trip, so the two agree."""
    _, rows = await dialect_of(conn).query(conn, _load_sql(columns(Case), step_columns()), [case_id])
    if not rows:
        return None
    first = dict(rows[0])
    case = from_row(Case, {c: first[c] for c in columns(Case)})
    steps = []
    for row in rows:
        r = dict(row)
        if r["s_step_id"] is not None:
            steps.append((r["s_step_id"], step_state({c: r["s_" + c] for c in step_columns()})))
    return case, case_state(case, steps)


async def stamp(conn: Any, case_id: str) -> tuple[int, int] | None:
    """(version, audit_seq) of a case as stored now."""
    _, rows = await dialect_of(conn).query(conn, 'SELECT "version", "audit_seq" FROM "case" WHERE "id" = ?',
                                           [case_id])
    return (rows[0][0], rows[0][1]) if rows else None


# ---- writing ------------------------------------------------------------------------------
async def insert_case(target: Target, row: dict[str, Any], steps: Sequence[tuple[str, int, StepState]],
                      entries: Sequence[audit.NewEntry]) -> None:
    """A new case at its first version, with its steps (id, position, state) and first entries."""
    await insert_rows(target, Case, [row])
    cols = step_columns()
    await insert_rows(target, CaseStep, [
        {"case_id": row["id"], "step_id": step_id, "position": pos, **dict(zip(cols, values, strict=True))}
        for (step_id, pos, _), values in zip(steps, _step_lists(st for _, _, st in steps), strict=True)
    ])
    await _insert_entries(target, entries)


_AUDIT_COLUMNS = ("case_id", "seq", "at", "actor", "kind", "data", "prev_hash", "hash")


async def _insert_entries(target: Target, entries: Sequence[audit.NewEntry]) -> None:
    """`data` goes in as the canonical text its hash was computed over."""
    if entries:
        at = converter(AuditEntry, "at")
        await write(target, insert_sql(AuditEntry, _AUDIT_COLUMNS, False), [
            [e.case_id, e.seq, at(e.at), e.actor, e.kind, e.data_json, e.prev_hash, e.hash] for e in entries
        ])


@cache
def _step_update_sql(cols: tuple[str, ...]) -> str:
    sets = ", ".join(f"{quote(c)} = ?" for c in cols)
    return f'UPDATE "case_step" SET {sets} WHERE "case_id" = ? AND "step_id" = ?'


@cache
def _compare_and_set_sql(names: tuple[str, ...]) -> str:
    sets = ", ".join(['"version" = ?', *(f"{quote(n)} = ?" for n in names)])
    return f'UPDATE "case" SET {sets} WHERE "id" = ? AND "version" = ? AND "audit_seq" = ?'


class CaseWrite:
    """One change of a case, queued on `batch`: the compare-and-set from (version, audit_seq) to
    version+1, the audit entries chained after the head, and the changed steps. `case` is the
    row as it will be after the commit (a copy: the caller's stays as it was)."""

    def __init__(self, batch: Batch, case: Case) -> None:
        self.batch = batch
        self.before = case
        self.case = copy.copy(case)
        self.case.version = case.version + 1
        self.entries: list[audit.NewEntry] = []

    @property
    def version(self) -> int:
        return int(self.case.version)

    def chain(self, items: Sequence[AuditItem]) -> list[audit.NewEntry]:
        """Entries for `items` after the head this write has reached."""
        entries = audit.build_entries(self.case.id, self.case.audit_seq, self.case.audit_head, list(items))
        if entries:
            self.case.audit_seq, self.case.audit_head = entries[-1].seq, entries[-1].hash
            self.entries += entries
        return entries

    async def stage(
        self, changes: dict[str, Any], steps: dict[str, StepState], entries: Sequence[audit.NewEntry]
    ) -> None:
        """Queue the compare-and-set (with `changes` to case columns), the entries and the steps."""
        for k, v in changes.items():
            setattr(self.case, k, v)
        moved = {**changes, "audit_seq": self.case.audit_seq, "audit_head": self.case.audit_head}
        names = tuple(sorted(moved))
        values = [self.version, *[to_db(Case, n, moved[n]) for n in names], self.case.id, self.before.version,
                  self.before.audit_seq]
        await write(self.batch, _compare_and_set_sql(names), [values], exactly_one=True)
        await _insert_entries(self.batch, entries)
        if steps:
            cols = step_columns()
            convert = converters(CaseStep, cols)
            await write(self.batch, _step_update_sql(cols), [
                [*[f(v) for f, v in zip(convert, values, strict=True)], self.case.id, step_id]
                for step_id, values in zip(steps, _step_lists(steps.values()), strict=True)
            ])

    async def append(self, conn: Any, items: Sequence[AuditItem]) -> list[audit.NewEntry]:
        """More entries after a committed-in-this-transaction write: inserted now and the head
        moved under this write's version (the row is ours until the commit)."""
        seq = self.case.audit_seq
        entries = self.chain(items)
        if not entries:
            return entries
        await _insert_entries(conn, entries)
        ok = await write(conn, 'UPDATE "case" SET "audit_seq" = ?, "audit_head" = ? WHERE "id" = ? AND "version" = ? '
                         'AND "audit_seq" = ?', [[self.case.audit_seq, self.case.audit_head, self.case.id,
                                                   self.version, seq]], exactly_one=True)
        if not ok:
            raise VersionConflict(self.case.id)
        return entries


async def append_audit(conn: Any, case_id: str, items: Sequence[AuditItem]) -> list[audit.NewEntry]:
    """Entries from a writer outside the case service, in its transaction: the version is bumped
    first (it locks the row, and a holder of an older snapshot re-reads), then the head read and
    the entries chained after it."""
    d = dialect_of(conn)
    n, _ = await d.query(conn, 'UPDATE "case" SET "version" = "version" + 1 WHERE "id" = ?', [case_id])
    if n != 1:
        raise LookupError(f"no case {case_id}")
    _, rows = await d.query(conn, 'SELECT "audit_seq", "audit_head" FROM "case" WHERE "id" = ?', [case_id])
    seq, head = rows[0][0], rows[0][1]
    entries = audit.build_entries(case_id, seq, head, list(items))
    await _insert_entries(conn, entries)
    if entries:
        await d.query(conn, 'UPDATE "case" SET "audit_seq" = ?, "audit_head" = ? WHERE "id" = ?',
                      [entries[-1].seq, entries[-1].hash, case_id])
    return entries
