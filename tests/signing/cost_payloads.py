"""Stroke payloads that probe the cost limits, and a meter for CPU time and peak RSS growth.

Shared by tests/signing_flow/test_signflow_cost.py and bench/signing_cost.py so both measure the same
payloads: the two from issue 11 (the corner stroke, the 2,000-point zigzag) and the most expensive
payload the limits still accept.
"""

from __future__ import annotations

import math
import random
import resource
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from signing.strokes import MAX_IMAGE_PIXELS, MAX_PATH_LENGTH, MAX_POINTS, MAX_WIDTH, parse_strokes, path_length


def corner(size: int = 4096) -> dict[str, Any]:
    """Four points from corner to corner of a size x size canvas (issue 11: 251 bytes, gigabytes)."""
    pts = [(0, 0), (size, size), (0, size), (size, 0)]
    return {"width": size, "height": size,
            "strokes": [[{"x": x, "y": y, "t": i * 10} for i, (x, y) in enumerate(pts)]]}


def zigzag(points: int = 2000, size: int = 4096) -> dict[str, Any]:
    """A zigzag of `points` points across the whole canvas (issue 11: HTTP 200, then never sealed)."""
    pts = []
    for i in range(points):
        x = 0.0 if i % 2 == 0 else float(size)
        y = round(size * i / (points - 1), 2)
        pts.append({"x": x, "y": y, "t": i * 8})
    return {"width": size, "height": size, "strokes": [pts]}


def worst_accepted(seed: int = 11) -> dict[str, Any]:
    """The most expensive payload the limits accept: the most points, just under the longest drawn
    length, slow (the thickest pen) and spread over the largest image drawn at full scale."""
    # Samples are one per started pixel of each segment, so a step just over 3 px costs 4 samples.
    for fill in (0.9999, 0.9995, 0.999, 0.998, 0.995, 0.99):
        data = _walk(seed, fill)
        if path_length(parse_strokes(data)) <= MAX_PATH_LENGTH:
            return data
    raise AssertionError("no walk fits the length limit")


def _walk(seed: int, fill: float) -> dict[str, Any]:
    rng = random.Random(seed)
    pad = MAX_WIDTH * 2
    # (w + 2 pad)(h + 2 pad) * scale 2 squared = MAX_IMAGE_PIXELS, with a 4:3 box.
    side = math.sqrt(MAX_IMAGE_PIXELS / 4 / 12)
    w, h = int(4 * side - 2 * pad) - 2, int(3 * side - 2 * pad) - 2
    n = MAX_POINTS
    step = MAX_PATH_LENGTH * fill / (n - 1)
    x, y, ang = w / 2, h / 2, 0.0
    pts = []
    for i in range(n):
        pts.append({"x": x, "y": y, "t": i * 60.0, "p": 0.5})
        ang += rng.uniform(-1.2, 1.2)
        for _ in range(8):  # turn back at the edges, keeping every step the same length
            nx, ny = x + step * math.cos(ang), y + step * math.sin(ang)
            if 0 <= nx <= w and 0 <= ny <= h:
                break
            ang += math.pi / 2
        x, y = min(max(nx, 0.0), float(w)), min(max(ny, 0.0), float(h))
    # Two dots in opposite corners make the mark span the whole box at no drawn length.
    dots = [[{"x": 0.0, "y": 0.0, "t": n * 60.0 + 100}], [{"x": float(w), "y": float(h), "t": n * 60.0 + 200}]]
    return {"width": w, "height": h, "strokes": [pts[: n - 2], *dots]}


def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Linux lets a process reset its own peak RSS (VmHWM) by writing 5 to clear_refs."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


@dataclass
class Cost:
    cpu_s: float = 0.0
    peak_growth_mb: float = 0.0
    exact_peak: bool = False  # False: the peak could not be reset, so growth is only a lower bound

    def line(self, label: str) -> str:
        peak = f"{self.peak_growth_mb:.1f} MB" + ("" if self.exact_peak else " (lower bound)")
        return f"{label}: CPU {self.cpu_s:.3f} s, peak RSS growth {peak}"


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)  # every thread of the process, the render pool included
    return r.ru_utime + r.ru_stime


@contextmanager
def metered() -> Iterator[Cost]:
    """CPU time and peak RSS growth of this process while the block runs."""
    cost = Cost()
    cost.exact_peak = _reset_peak()
    base = _status_kb("VmRSS") or 0
    cpu0 = _cpu()
    try:
        yield cost
    finally:
        cost.cpu_s = _cpu() - cpu0
        peak = _status_kb("VmHWM") if cost.exact_peak else None
        if peak is None:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        cost.peak_growth_mb = max(0, peak - base) / 1024
