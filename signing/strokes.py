"""Handwritten signature stroke data: validation, triviality check, deterministic server-side rendering.

The browser pad (handlers/static/signpad.js) sends raw points; the server never trusts the client's
picture. It re-renders the PNG here with the same velocity-based width model as the pad, so the image in
the PDF is a pure function of the stored stroke data and `verify` can reproduce it byte for byte.
"""

from __future__ import annotations

import io
import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageDraw
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from signing.canonical import canonical_json, sha256_hex

# Cost limits. Rendering costs grow with the drawn length (about one sample per canvas pixel) and the
# image area, not with the point count: four points across a large canvas once cost gigabytes. Every
# limit below is checked from the numbers before anything is drawn (`plan`), and `bench/signing_cost.py`
# measures the worst payload that passes them (targets: <= 0.5 s CPU, <= 50 MB).
MAX_POINTS = 2_500  # 20 s of drawing at 120 Hz, 40 s at 60 Hz
MAX_STROKES = 500
MAX_CANVAS = 2048  # CSS pixels of the pad; phones are ~400 wide, a landscape tablet ~1400
MAX_PATH_LENGTH = 10_000.0  # total drawn length in canvas px; a dense name on a phone is 1,500-4,000
MAX_IMAGE_PIXELS = 480_000  # output image area; with RGBA this keeps any PNG under MAX_SIGNATURE_PNG
MAX_SIGNATURE_PNG = 2_000_000  # the sealing pipeline's limit (signing.documents re-exports it)
MAX_PAYLOAD_BYTES = 2_000_000
MAX_T_MS = 1e13  # relative ms since the pad opened; anything larger is garbage

# Pen model shared with signpad.js: widths are line thickness in canvas (CSS) pixels.
MIN_WIDTH = 1.5
MAX_WIDTH = 5.0
VELOCITY_WEIGHT = 0.7
WIDTH_RATE = 0.2  # width may change by at most 20 % per point (gives the tapered 笔锋 look)

# Triviality thresholds (canvas pixels).
MIN_PATH_LENGTH = 60.0
MIN_BOX_LONG = 40.0
MIN_BOX_SHORT = 15.0
MIN_LINE_SPREAD = 3.0  # RMS distance of all points from their best-fit line


class StrokeError(ValueError):
    """The stroke payload is malformed, too large, or out of bounds; the message says which."""


class Point(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)
    x: float
    y: float
    t: float = Field(ge=0, le=MAX_T_MS)
    p: float = Field(default=0.5, ge=0, le=1)


class StrokePayload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)
    width: int = Field(ge=1, le=MAX_CANVAS)
    height: int = Field(ge=1, le=MAX_CANVAS)
    strokes: list[list[Point]]

    @model_validator(mode="before")
    @classmethod
    def _caps_before_parsing(cls, data: Any) -> Any:
        # Count before pydantic builds 20k+ objects, so an oversized payload is cheap to refuse.
        if isinstance(data, dict):
            strokes = data.get("strokes")
            if isinstance(strokes, list):
                if len(strokes) > MAX_STROKES:
                    raise ValueError(f"too many strokes ({len(strokes)} > {MAX_STROKES})")
                total = sum(len(s) for s in strokes if isinstance(s, list))
                if total > MAX_POINTS:
                    raise ValueError(f"too many points ({total} > {MAX_POINTS})")
        return data

    @model_validator(mode="after")
    def _geometry(self) -> StrokePayload:
        for i, stroke in enumerate(self.strokes):
            if not stroke:
                raise ValueError(f"stroke {i} is empty")
            last_t = -1.0
            for pt in stroke:
                if not (0 <= pt.x <= self.width and 0 <= pt.y <= self.height):
                    raise ValueError(f"stroke {i}: point ({pt.x}, {pt.y}) outside the canvas")
                if pt.t < last_t:
                    raise ValueError(f"stroke {i}: time goes backwards")
                last_t = pt.t
        return self

    def canonical(self) -> bytes:
        return canonical_json(self.model_dump())

    def sha256(self) -> str:
        return sha256_hex(self.canonical())

    @property
    def point_count(self) -> int:
        return sum(len(s) for s in self.strokes)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ()))
    msg = str(err.get("msg", "invalid"))
    msg = msg.removeprefix("Value error, ")
    return f"{where}: {msg}" if where else msg


def parse_strokes(data: object) -> StrokePayload:
    """Validate a decoded JSON value; raise StrokeError with a short reason."""
    if not isinstance(data, dict):
        raise StrokeError("stroke payload must be a JSON object")
    try:
        return StrokePayload.model_validate(data)
    except ValidationError as exc:
        raise StrokeError(f"invalid stroke payload: {_first_error(exc)}") from None


def parse_strokes_json(raw: bytes | str) -> StrokePayload:
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise StrokeError("stroke payload too large")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise StrokeError(f"stroke payload is not JSON: {exc}") from None
    return parse_strokes(data)


# ---------------------------------------------------------------- triviality

def _path_length(stroke: Sequence[Point]) -> float:
    return sum(math.dist((a.x, a.y), (b.x, b.y)) for a, b in itertools.pairwise(stroke))


def _line_spread(points: Sequence[Point]) -> float:
    """RMS distance of the points from their principal axis (0 for a perfectly straight mark)."""
    n = len(points)
    mx = sum(p.x for p in points) / n
    my = sum(p.y for p in points) / n
    sxx = sum((p.x - mx) ** 2 for p in points) / n
    syy = sum((p.y - my) ** 2 for p in points) / n
    sxy = sum((p.x - mx) * (p.y - my) for p in points) / n
    # Smaller eigenvalue of the 2x2 covariance matrix = variance across the best-fit line.
    half_trace = (sxx + syy) / 2
    disc = math.sqrt(max(half_trace**2 - (sxx * syy - sxy**2), 0.0))
    return math.sqrt(max(half_trace - disc, 0.0))


def trivial_reason(payload: StrokePayload) -> str | None:
    """Why this mark is not accepted as a signature (empty, a dot, a straight line), or None."""
    points = [p for s in payload.strokes for p in s]
    if not points:
        return "empty"
    length = sum(_path_length(s) for s in payload.strokes)
    xs = [p.x for p in points]
    ys = [p.y for p in points]
    bw, bh = max(xs) - min(xs), max(ys) - min(ys)
    if length < MIN_PATH_LENGTH or max(bw, bh) < MIN_BOX_LONG:
        return "too small"
    if min(bw, bh) < MIN_BOX_SHORT or _line_spread(points) < MIN_LINE_SPREAD:
        # A flat mark, or all points (across strokes) along one line: an underline, not a signature.
        return "straight line"
    return None


def is_trivial(payload: StrokePayload) -> bool:
    return trivial_reason(payload) is not None


# ---------------------------------------------------------------- rendering

def stroke_widths(stroke: Sequence[Point]) -> list[float]:
    """Line thickness at each point: fast → thin, slow → thick, change rate-limited (signpad.js)."""
    widths: list[float] = []
    velocity = 0.0
    width = (MIN_WIDTH + MAX_WIDTH) / 2
    for i, pt in enumerate(stroke):
        if i > 0:
            prev = stroke[i - 1]
            dt = max(pt.t - prev.t, 1.0)
            v = math.dist((pt.x, pt.y), (prev.x, prev.y)) / dt
            velocity = VELOCITY_WEIGHT * v + (1 - VELOCITY_WEIGHT) * velocity
            target = max(MAX_WIDTH / (velocity + 1), MIN_WIDTH)
            lo, hi = width * (1 - WIDTH_RATE), width * (1 + WIDTH_RATE)
            width = min(max(target, lo), hi)
        widths.append(width)
    return widths


def _controls(p0: tuple[float, float], p1: tuple[float, float], p2: tuple[float, float]
              ) -> tuple[tuple[float, float], tuple[float, float]]:
    """Tangent control points around p1 (before, after), as in signature_pad's calculateControlPoints."""
    m1 = ((p0[0] + p1[0]) / 2, (p0[1] + p1[1]) / 2)
    m2 = ((p1[0] + p2[0]) / 2, (p1[1] + p2[1]) / 2)
    l1 = math.dist(p0, p1)
    l2 = math.dist(p1, p2)
    k = l2 / (l1 + l2) if l1 + l2 > 0 else 0.5
    cm = (m2[0] + (m1[0] - m2[0]) * k, m2[1] + (m1[1] - m2[1]) * k)
    tx, ty = p1[0] - cm[0], p1[1] - cm[1]
    return (m1[0] + tx, m1[1] + ty), (m2[0] + tx, m2[1] + ty)


def stroke_samples(stroke: Sequence[Point]) -> list[tuple[float, float, float]]:
    """(x, y, width) samples along the smoothed stroke, about one per canvas pixel."""
    pts = [(p.x, p.y) for p in stroke]
    widths = stroke_widths(stroke)
    if len(pts) == 1:
        return [(pts[0][0], pts[0][1], widths[0])]
    samples: list[tuple[float, float, float]] = [(pts[0][0], pts[0][1], widths[0])]
    for i in range(len(pts) - 1):
        a, b = pts[i], pts[i + 1]
        before = pts[i - 1] if i > 0 else a
        after = pts[i + 2] if i + 2 < len(pts) else b
        c1 = _controls(before, a, b)[1]
        c2 = _controls(a, b, after)[0]
        n = max(1, math.ceil(math.dist(a, b)))
        w0, w1 = widths[i], widths[i + 1]
        for k in range(1, n + 1):
            t = k / n
            u = 1 - t
            x = u**3 * a[0] + 3 * u * u * t * c1[0] + 3 * u * t * t * c2[0] + t**3 * b[0]
            y = u**3 * a[1] + 3 * u * u * t * c1[1] + 3 * u * t * t * c2[1] + t**3 * b[1]
            samples.append((x, y, w0 + (w1 - w0) * t))
    return samples


SUPERSAMPLE = 3  # 4x costs 3x the time for no visible gain at scale 2
DEFAULT_SCALE = 2.0
# Large marks are drawn at a smaller scale so the image stays within MAX_IMAGE_PIXELS; a mark that fits
# at 2.0 (every phone signature) renders exactly as before, so stored images still verify.
SCALES = (2.0, 1.5, 1.0, 0.75, 0.5, 0.375, 0.25)


def png_size_bound(width: int, height: int) -> int:
    """The largest PNG PIL can write for an RGBA image of this size (no compression at all, plus framing)."""
    raw = (width * 4 + 1) * height  # one filter byte per row
    # Incompressible data is stored in deflate blocks; zlib's deflateBound allows ~0.03 % for their
    # headers, but PIL's encoder flushes more often (0.14 % measured on noise), so allow 0.4 %.
    deflated = raw + raw // 256 + 64
    return deflated + 12 * (deflated // 65536 + 2) + 256  # IDAT chunk framing, header, IEND


@dataclass(frozen=True)
class RenderPlan:
    """What drawing a payload will cost, computed without drawing; `render_plan` does the drawing."""

    samples: tuple[tuple[tuple[float, float, float], ...], ...]
    x0: float
    y0: float
    scale: float
    out_w: int
    out_h: int
    path_length: float

    @property
    def sample_count(self) -> int:
        return sum(len(s) for s in self.samples)

    @property
    def image_pixels(self) -> int:
        return self.out_w * self.out_h

    @property
    def peak_bytes(self) -> int:
        """Pixel buffers alive at once: the supersampled mask, its reduction, the RGBA image, the PNG."""
        px = self.image_pixels
        return px * SUPERSAMPLE * SUPERSAMPLE + px + px * 4 + png_size_bound(self.out_w, self.out_h)


def path_length(payload: StrokePayload) -> float:
    return sum(_path_length(s) for s in payload.strokes)


def plan(payload: StrokePayload, *, scale: float | None = None) -> RenderPlan:
    """Check the cost limits and lay out the image; raises StrokeError naming the limit exceeded.

    The sample count is bounded by the drawn length plus the point count (one sample per pixel of each
    segment's chord), so the length check comes first and the sampling after it is cheap by construction.
    """
    if payload.width > MAX_CANVAS or payload.height > MAX_CANVAS:
        raise StrokeError(f"canvas {payload.width}x{payload.height} is larger than {MAX_CANVAS}x{MAX_CANVAS}")
    if payload.point_count > MAX_POINTS:
        raise StrokeError(f"too many points ({payload.point_count} > {MAX_POINTS})")
    length = path_length(payload)
    if length > MAX_PATH_LENGTH:
        raise StrokeError(f"the drawn length ({length:.0f} px) is longer than {MAX_PATH_LENGTH:.0f} px")
    all_samples = tuple(tuple(stroke_samples(s)) for s in payload.strokes if s)
    if not all_samples:
        raise StrokeError("nothing to render")
    pad = MAX_WIDTH * 2
    xs = [x for ss in all_samples for x, _, _ in ss]
    ys = [y for ss in all_samples for _, y, _ in ss]
    x0, y0 = min(xs) - pad, min(ys) - pad
    span_x, span_y = max(xs) + pad - x0, max(ys) + pad - y0
    for k in ((scale,) if scale is not None else SCALES):
        if not (0 < k <= 8):
            raise StrokeError("scale must be in (0, 8]")
        out_w = max(1, math.ceil(span_x * k))
        out_h = max(1, math.ceil(span_y * k))
        if out_w * out_h <= MAX_IMAGE_PIXELS and png_size_bound(out_w, out_h) <= MAX_SIGNATURE_PNG:
            return RenderPlan(all_samples, x0, y0, k, out_w, out_h, length)
    raise StrokeError(f"the signature covers too large an area ({span_x:.0f}x{span_y:.0f} px)")


def render_plan(p: RenderPlan) -> bytes:
    """Black ink on transparent background, cropped to the mark plus a margin; deterministic bytes."""
    k = p.scale * SUPERSAMPLE
    mask = Image.new("L", (p.out_w * SUPERSAMPLE, p.out_h * SUPERSAMPLE), 0)
    # ImageDraw.ellipse/line resolve the colour on every call, a third of the drawing time here; the
    # core calls below are exactly what they make (filled ellipse, plain line), with the ink resolved once.
    core = ImageDraw.Draw(mask).draw
    ink = core.draw_ink(255)
    ellipse, lines = core.draw_ellipse, core.draw_lines
    x0, y0 = p.x0, p.y0
    for samples in p.samples:
        prev: tuple[float, float] | None = None
        for x, y, w in samples:
            cx, cy, r = (x - x0) * k, (y - y0) * k, w * k / 2
            ellipse((cx - r, cy - r, cx + r, cy + r), ink, 1)
            if prev is not None:
                lines((prev[0], prev[1], cx, cy), ink, max(1, round(2 * r)))
            prev = (cx, cy)
    alpha = mask.reduce(SUPERSAMPLE)
    del mask, core
    black = Image.new("RGBA", alpha.size, (17, 17, 17, 255))
    black.putalpha(alpha)
    buf = io.BytesIO()
    black.save(buf, format="PNG", optimize=False, compress_level=6)
    png = buf.getvalue()
    if len(png) > MAX_SIGNATURE_PNG:  # cannot happen within MAX_IMAGE_PIXELS (png_size_bound); kept as a guard
        raise StrokeError("signature image too large")
    return png


def render_png(payload: StrokePayload, *, scale: float | None = None) -> bytes:
    """Plan (limits checked, nothing drawn yet), then draw. Callers on the event loop use signing.render."""
    return render_plan(plan(payload, scale=scale))
