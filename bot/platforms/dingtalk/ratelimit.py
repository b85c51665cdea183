"""Client-side pacing for DingTalk's per-app, per-API limit (20 QPS on a standard org) and a hook
to count calls against the monthly budget (10,000 non-exempt calls on a standard org).

The bucket is GCRA ("virtual scheduling"): each caller reserves the next free slot and sleeps until
it, so concurrent callers queue fairly without a lock and never exceed `rate` in any 1 s window
(with burst=1). The clock is injectable so tests step time instead of sleeping.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_RATE = 20.0
# DingTalk counts its monthly quota per natural month of the org, i.e. China time.
CHINA = timezone(timedelta(hours=8))


class Clock(Protocol):
    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class MonotonicClock:
    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class TokenBucket:
    """`rate` acquisitions per second sustained, `burst` at once after an idle period."""

    def __init__(self, rate: float = DEFAULT_RATE, *, burst: int = 1, clock: Clock | None = None,
                 cap: int | None = None) -> None:
        if rate <= 0 or burst < 1 or (cap is not None and cap < 1):
            raise ValueError("rate must be > 0, burst >= 1 and cap >= 1")
        self.rate = rate
        self.burst = burst
        self.clock = clock or MonotonicClock()
        self._interval = 1.0 / rate
        self._tat = float("-inf")  # theoretical arrival time of the next slot
        self._hold_until = float("-inf")
        # `cap`: at most this many acquisitions in any 1 s by our clock. Pacing alone spaces the
        # slots, but a caller that wakes late (the loop was busy) goes out together with the next
        # ones, and DingTalk counts arrivals: the log of actual send times catches that bunching.
        self.cap = cap
        self._sent: deque[float] = deque()

    def reserve(self) -> float:
        """Take the next slot; return how long the caller must wait for it (0 if now)."""
        now = self.clock.now()
        slot = max(self._tat, now - (self.burst - 1) * self._interval)
        self._tat = slot + self._interval
        return max(0.0, slot - now)

    async def acquire(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await self.clock.sleep(delay)
        # A throttle answer that arrived while we waited voids the slot we reserved before it.
        while (left := self._hold_until - self.clock.now()) > 0:
            await self.clock.sleep(left)
            delay = self.reserve()
            if delay > 0:
                await self.clock.sleep(delay)
        if self.cap is not None:
            while True:
                now = self.clock.now()
                while self._sent and self._sent[0] <= now - 1.0:
                    self._sent.popleft()
                if len(self._sent) < self.cap:
                    break
                await self.clock.sleep(self._sent[0] + 1.0 - now)
            self._sent.append(self.clock.now())

    @property
    def held_until(self) -> float:
        return self._hold_until

    def hold(self, seconds: float) -> None:
        """The platform said "too fast": nobody gets a slot for `seconds` (the doc says wait 1 s)."""
        self._hold_until = max(self._hold_until, self.clock.now() + seconds)
        self._tat = max(self._tat, self._hold_until)


@dataclass
class RateLimits:
    """One bucket per API name, created on first use; `overrides` sets a different rate for some.

    `rate` is the platform's documented limit; we pace `margin` below it because DingTalk counts
    arrivals, not our sends: at exactly 20/s a few ms of scheduling or network jitter puts a 21st
    request into some 1 s window, and each throttle answer then costs a 1 s pause for everyone.
    """

    rate: float = DEFAULT_RATE
    overrides: dict[str, float] = field(default_factory=dict)
    clock: Clock = field(default_factory=MonotonicClock)
    margin: float = 0.07
    _buckets: dict[str, TokenBucket] = field(default_factory=dict, init=False, repr=False)

    def bucket(self, api: str) -> TokenBucket:
        b = self._buckets.get(api)
        if b is None:
            limit = self.overrides.get(api, self.rate)
            # At most limit - 1 in any second of ours leaves one for jitter on the way.
            cap = max(1, math.ceil(limit) - 1) if limit >= 2 else None
            b = self._buckets[api] = TokenBucket(limit * (1 - self.margin), clock=self.clock, cap=cap)
        return b

    async def acquire(self, api: str) -> None:
        await self.bucket(api).acquire()


async def map_bounded(fn: Callable[[T], Awaitable[R]], items: Iterable[T], *, limit: int) -> list[R | BaseException]:
    """Run `fn` over `items` with at most `limit` in flight; results (or the exception each raised)
    in input order. Bounded so a backlog of 600 cards does not open 600 sockets at once."""
    if limit < 1:
        raise ValueError("limit must be >= 1")
    sem = asyncio.Semaphore(limit)

    async def one(item: T) -> R | BaseException:
        async with sem:
            try:
                return await fn(item)
            except Exception as exc:  # collected for the caller, one failure must not cancel the rest
                return exc

    return list(await asyncio.gather(*(one(i) for i in items)))


def month_key(at: datetime) -> str:
    """'2026-12': the budget month an API call at `at` counts against."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(CHINA).strftime("%Y-%m")


class CallCounter(Protocol):
    """Counts non-exempt API calls for the monthly budget. Storage (a DB row per month) comes with
    the connector; it must not raise into the caller, a lost count is better than a lost card."""

    async def record(self, api: str, month: str) -> None: ...


class MemoryCallCounter:
    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}

    async def record(self, api: str, month: str) -> None:
        self.counts[(month, api)] = self.counts.get((month, api), 0) + 1

    def total(self, month: str) -> int:
        return sum(n for (m, _), n in self.counts.items() if m == month)
