"""DingTalk's monthly API budget (10,000 non-exempt calls on a standard org), counted in the database.

`BudgetCounter` is the API client's `CallCounter`: every counted call adds one to this month's row
of `platform_usage` (storage/usage.py), and the first call past the warning share (80 %) makes
exactly one process, once a month, tell HR. Counting never fails a send: a lost count is better
than a lost card. `meter()` measures what one delivery cost, for `Delivery.calls`.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Awaitable, Callable

from storage import usage

log = logging.getLogger(__name__)
PLATFORM = "dingtalk"

class CallMeter:
    """`with counter.meter() as m: ...; m.calls`: the counted calls made inside, in this task."""

    def __init__(self, cost: contextvars.ContextVar[list[int] | None]) -> None:
        self._cost = cost
        self._box = [0]

    def __enter__(self) -> CallMeter:
        self._token = self._cost.set(self._box)
        return self

    def __exit__(self, *exc: object) -> None:
        self._cost.reset(self._token)

    @property
    def calls(self) -> int:
        return self._box[0]


class BudgetCounter:
    """`quota` 0: calls are metered for `Delivery.calls` but not stored (no budget to watch)."""

    def __init__(self, quota: int, warn_share: float = 0.8,
                 warn: Callable[[usage.Usage], Awaitable[None]] | None = None) -> None:
        self.quota = quota
        self.warn_share = warn_share
        self.warn = warn
        self.last: usage.Usage | None = None
        # Per counter, not per module: the calls of the task that opened a meter (contextvars
        # follow the task, so concurrent sends each see their own).
        self._cost: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
            f"dingtalk_call_cost_{id(self)}", default=None)

    def meter(self) -> CallMeter:
        return CallMeter(self._cost)

    async def record(self, api: str, month: str) -> None:
        box = self._cost.get()
        if box is not None:
            box[0] += 1
        if not self.quota:
            return
        now = await usage.record(PLATFORM, 1, self.quota, month=month)
        self.last = now
        if self.quota and not now.warned and now.calls >= self.quota * self.warn_share:
            if await usage.claim_warning(PLATFORM, month) and self.warn is not None:
                await self.warn(now)
