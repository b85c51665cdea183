"""Signature rendering off the event loop, in a small bounded pool shared by submit and verify.

Each render is already bounded by `signing.strokes.plan` (<= 0.5 s CPU, <= 50 MB); the pool bounds how
many run at once (`WORKERS`) and how many may wait (`QUEUE`), so a burst of submissions on different
links costs at most WORKERS renders of memory and is answered "busy" beyond the queue instead of
piling up. Threads, not processes: the planned cost is small, and a thread shares the already-parsed
payload instead of pickling it; the event loop still gets the GIL between drawing calls.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from signing.strokes import StrokePayload, plan, render_plan

WORKERS = 2
QUEUE = 8


class RenderBusy(RuntimeError):
    """More renders are running or waiting than the pool takes; the caller should ask to retry."""


@dataclass
class RenderStats:
    """Counters for tests and the bench: jobs taken, payloads that passed the limits and were drawn,
    and jobs turned away because the pool was full."""

    started: int = 0
    drawn: int = 0
    refused_busy: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0


_executor: ThreadPoolExecutor | None = None
_lock = threading.Lock()
stats = RenderStats()


def _pool() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="signature-render")
        return _executor


def _job(payload: StrokePayload) -> bytes:
    p = plan(payload)
    with _lock:
        stats.drawn += 1
    return render_plan(p)


async def render(payload: StrokePayload) -> bytes:
    """The signature PNG; StrokeError if the payload exceeds a cost limit, RenderBusy if the pool is full.

    Planning (the limit checks and the sampling) runs in the pool too: it is bounded but is Python code.
    """
    if stats.in_flight >= WORKERS + QUEUE:
        stats.refused_busy += 1
        raise RenderBusy(f"{stats.in_flight} signature renders running or waiting")
    stats.in_flight += 1
    stats.peak_in_flight = max(stats.peak_in_flight, stats.in_flight)
    stats.started += 1
    try:
        return await asyncio.get_running_loop().run_in_executor(_pool(), _job, payload)
    finally:
        stats.in_flight -= 1
