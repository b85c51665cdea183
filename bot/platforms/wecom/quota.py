"""WeCom's per-member message quota: at most 30 messages a minute and 1,000 an hour from one app to
one member. Above it WeCom drops messages silently (no error), so the sender must keep count and
make a burst wait rather than vanish.

`next_allowed` is the rule, on the times of the member's recent sends (from memory or from the
outbox's sent rows, which is what makes it hold across replicas); `MemberQuota` keeps those times
in memory for one process.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    seconds: float
    limit: int


WECOM_MEMBER_LIMITS = (Window(60.0, 30), Window(3600.0, 1000))


def next_allowed(sent: Sequence[float], now: float, limits: Sequence[Window] = WECOM_MEMBER_LIMITS) -> float:
    """The earliest time (>= now) another message may go to this member. `sent` is sorted ascending."""
    at = now
    for w in limits:
        start = bisect.bisect_right(sent, at - w.seconds)
        in_window = len(sent) - start
        if in_window >= w.limit:
            # The oldest send that must leave the window before one more fits.
            oldest = sent[len(sent) - w.limit]
            at = max(at, oldest + w.seconds)
    return at


class MemberQuota:
    """Recent send times per member, pruned past the longest window."""

    def __init__(self, limits: Sequence[Window] = WECOM_MEMBER_LIMITS) -> None:
        self._limits = tuple(limits)
        self._horizon = max(w.seconds for w in self._limits)
        self._sent: dict[str, deque[float]] = {}

    def _recent(self, member: str, now: float) -> deque[float]:
        times = self._sent.setdefault(member, deque())
        while times and times[0] <= now - self._horizon:
            times.popleft()
        return times

    def wait(self, member: str, now: float) -> float:
        """Seconds to wait before the next message to `member` (0: send now)."""
        times = self._recent(member, now)
        return max(0.0, next_allowed(list(times), now, self._limits) - now)

    def record(self, member: str, at: float) -> None:
        times = self._recent(member, at)
        if times and at < times[-1]:
            bisect.insort(times, at)
        else:
            times.append(at)
