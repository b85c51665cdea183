"""Background loops tied to the web application's lifetime."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web


def background(name: str, loop: Callable[[web.Application], Awaitable[None]]) -> Callable[
    [web.Application], AsyncIterator[None]
]:
    """A cleanup_ctx that runs `loop(app)` as a task for the app's lifetime and cancels it on exit."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(loop(app), name=name)
        yield
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    return ctx
