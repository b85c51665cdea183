"""The per-case hash-chained audit log.

Each entry's hash covers the previous entry's hash and the entry's own canonical form, so
changing, inserting or deleting any entry breaks every hash after it. `verify_chain` names the
first entry that does not match. Entries are stored by storage/casestore only, under the case
row's version check, which serialises writers of one case.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from storage.canonical import canonical_json, sha256_hex
from storage.models import AuditEntry, Case

GENESIS = "0" * 64


def entry_hash(prev_hash: str, *, case_id: str, seq: int, at: datetime, actor: str, kind: str, data: Any) -> str:
    return _hash(prev_hash, case_id, seq, at, actor, kind, canonical_json(data).decode("utf-8"))


def _text(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _hash(prev_hash: str, case_id: str, seq: int, at: datetime, actor: str, kind: str, data_json: str) -> str:
    """sha256(prev ‖ canonical entry), the entry spelled out in canonical order (keys sorted) around
    the canonical JSON of its data, so a new entry's data is serialised once, not three times.
    The same bytes as `canonical_json` of the whole entry; a test holds the two together."""
    body = (f'{{"actor":{_text(actor)},"at":{_text(at.isoformat())},"case":{_text(case_id)},'
            f'"data":{data_json},"kind":{_text(kind)},"seq":{int(seq)}}}')
    return sha256_hex(prev_hash.encode() + body.encode("utf-8"))


@dataclass(frozen=True, slots=True)
class NewEntry:
    """An entry built by `build_entries`, not yet stored. `data_json` is the canonical JSON of
    `data`: what is hashed and what the JSON column receives."""

    case_id: str
    seq: int
    at: datetime
    actor: str
    kind: str
    data: Any
    data_json: str
    prev_hash: str
    hash: str


def build_entries(
    case_id: str, head_seq: int, head_hash: str, items: list[tuple[datetime, str, str, dict[str, Any]]]
) -> list[NewEntry]:
    """Chain `items` (at, actor, kind, data) after the head; the caller saves them and moves the
    case's audit_seq/audit_head in its own version-checked UPDATE (one round trip for the lot)."""
    out = []
    seq, prev = head_seq, head_hash
    for at, actor, kind, data in items:
        seq += 1
        at = _ms(at)
        # Canonical JSON parsed back is canonical again, so the text stands for the clean value.
        text = canonical_json(data).decode("utf-8")
        h = _hash(prev, case_id, seq, at, actor, kind, text)
        out.append(NewEntry(case_id, seq, at, actor, kind, json.loads(text), text, prev, h))
        prev = h
    return out


def _ms(at: datetime) -> datetime:
    # Databases keep ms or µs; hash exactly what survives the round trip.
    at = at.astimezone(UTC)
    return at.replace(microsecond=(at.microsecond // 1000) * 1000)


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    entries: int
    head: str
    problem: str = ""


async def verify_chain(case_id: str) -> ChainReport:
    case = await Case.get(id=case_id)
    entries = await AuditEntry.filter(case_id=case_id).order_by("seq")
    prev = GENESIS
    for expected_seq, e in enumerate(entries, start=1):
        if e.seq != expected_seq:
            return ChainReport(False, len(entries), prev, f"entry #{expected_seq} is missing (found #{e.seq})")
        if e.prev_hash != prev:
            return ChainReport(False, len(entries), prev, f"entry #{e.seq}: previous-hash link broken")
        h = entry_hash(prev, case_id=case_id, seq=e.seq, at=e.at, actor=e.actor, kind=e.kind, data=e.data)
        if h != e.hash:
            return ChainReport(False, len(entries), prev, f"entry #{e.seq} ({e.kind}) was modified")
        prev = e.hash
    if len(entries) != case.audit_seq or prev != case.audit_head:
        return ChainReport(
            False, len(entries), prev, f"chain ends at #{len(entries)} but the case records #{case.audit_seq}"
        )
    return ChainReport(True, len(entries), prev)
