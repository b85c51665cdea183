"""One access token per app, shared by every caller.

DingTalk tokens live 7200 s and fetching again while one is valid returns the same token, so
there is never a reason for two fetches at once: the first caller fetches, the others wait on the
lock and find it cached (single flight). It is refreshed `margin` seconds before it expires (the
SDK uses 300 s) and dropped when an API refuses it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from bot.platforms.dingtalk.ratelimit import Clock, MonotonicClock

Fetch = Callable[[], Awaitable[tuple[str, float]]]  # -> (token, seconds it is valid)


class TokenCache:
    def __init__(self, fetch: Fetch, *, margin: float = 300.0, clock: Clock | None = None) -> None:
        self._fetch = fetch
        self._margin = margin
        self._clock = clock or MonotonicClock()
        self._token: str | None = None
        self._refresh_at = 0.0
        self._lock = asyncio.Lock()
        self.fetches = 0  # how many times the token endpoint was called (for the budget and tests)

    def _fresh(self) -> str | None:
        return self._token if self._token is not None and self._clock.now() < self._refresh_at else None

    async def get(self) -> str:
        token = self._fresh()
        if token is not None:
            return token
        async with self._lock:
            token = self._fresh()
            if token is not None:
                return token
            self.fetches += 1
            token, lifetime = await self._fetch()
            # A lifetime shorter than the margin still gets half its life, never a token that is stale at once.
            self._refresh_at = self._clock.now() + max(lifetime - self._margin, lifetime / 2)
            self._token = token
            return token

    def invalidate(self, token: str) -> None:
        """Drop `token` if it is still the current one: of 50 callers refused with the same old
        token, only the first causes a refetch."""
        if self._token == token:
            self._token = None
