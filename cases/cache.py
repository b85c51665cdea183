"""What the service last knew of a case, so the next event on it reads nothing before deciding.

An entry is a snapshot taken after a commit: the case row, its parsed state, and who holds a card
for which step. It stands for exactly one (version, audit_seq) of the case. The service never
trusts it blindly: every write's compare-and-set names both numbers, so a snapshot another
writer (another replica, an audit append) has moved past fails the write, the entry is dropped
and the event runs again on a fresh read. A refusal writes nothing, so before answering one from a
snapshot the service re-reads the two numbers. Entries are never changed in place (concurrent
events on one case may hold the same one); a commit stores a new entry.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from storage.models import Case
from workflow.model import CaseState

Holder = tuple[str, str, str]  # (step_id, recipient, platform) of a card row; storage.queue.SUMMARY: HR's summary


@dataclass(frozen=True)
class Snapshot:
    case: Case
    state: CaseState
    holders: frozenset[Holder] | None  # None: not read yet

    @property
    def stamp(self) -> tuple[int, int]:
        return self.case.version, self.case.audit_seq


class CaseCache:
    """Most recently used snapshots, at most `size` of them (a probation case's snapshot is about
    7 KiB, so the default is under 30 MB). Fewer than a company's open cases means a read per
    event, not a wrong answer."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._entries: OrderedDict[str, Snapshot] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, case_id: str) -> Snapshot | None:
        snap = self._entries.get(case_id)
        if snap is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(case_id)
        return snap

    def put(self, snap: Snapshot) -> None:
        self._entries[snap.case.id] = snap
        self._entries.move_to_end(snap.case.id)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def drop(self, case_id: str) -> None:
        self._entries.pop(case_id, None)

    def clear(self) -> None:
        self._entries.clear()
