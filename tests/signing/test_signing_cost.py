"""The cost model of a signature (issue 11, finding 3) and that it matches what sealing accepts (finding 4).

`plan` decides from the numbers whether a payload may be drawn and how large the image will be; these
tests check that its limits are the ones sealing needs (any image it allows fits `signature_image`, the
sealing pipeline's own check) and that phone signatures still render exactly as before the limits, so
signatures stored earlier still pass `verify`.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import math
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from signing import render as render_pool
from signing.documents import SignatureMark, render_signed, signature_image
from signing.strokes import (
    MAX_CANVAS,
    MAX_IMAGE_PIXELS,
    MAX_PATH_LENGTH,
    MAX_POINTS,
    MAX_SIGNATURE_PNG,
    StrokeError,
    parse_strokes,
    plan,
    png_size_bound,
    render_plan,
    render_png,
)

from .conftest import signature_payload
from .cost_payloads import corner, worst_accepted, zigzag


def phone_scribble() -> dict:
    """600 points across a whole 400x220 phone pad."""
    pts, t = [], 0.0
    for i in range(600):
        a = i / 599
        pts.append({"x": round(20 + 360 * a, 2), "y": round(110 + 90 * math.sin(a * 40) * math.cos(a * 7), 2),
                    "t": t})
        t += 9 + i % 3
    return {"width": 400, "height": 220, "strokes": [pts]}


@pytest.mark.parametrize(("payload", "size", "pixels_sha256"), [
    # Pixel hashes from the renderer before the limits existed (main at 9f84807): same size, same pixels.
    (signature_payload(), (600, 187), "2147ba5d9a733be6a3be3fe2bc83d8e9f6ee7b4a45ec61d12d976be40b84a40b"),
    (phone_scribble(), (760, 399), "acafef2de50507b7bb8d45caa1cf56ff194e23ffa46db7fda50bc922f57ac6ca"),
])
def test_phone_signatures_render_as_before(payload: dict, size: tuple[int, int], pixels_sha256: str) -> None:
    p = plan(parse_strokes(payload))
    assert p.scale == 2.0
    im = Image.open(io.BytesIO(render_plan(p)))
    assert im.size == size == (p.out_w, p.out_h)
    assert hashlib.sha256(im.tobytes()).hexdigest() == pixels_sha256


@pytest.mark.parametrize(("payload", "needle"), [
    (corner(4096), "2048"),
    (zigzag(2000, 4096), "2048"),
    (zigzag(2000, 2048), "drawn length"),
    ({"width": 400, "height": 200, "strokes": [[{"x": 1, "y": 1, "t": i} for i in range(MAX_POINTS + 1)]]},
     "too many points"),
])
def test_limits_refuse_before_drawing(payload: dict, needle: str) -> None:
    with pytest.raises(StrokeError, match=needle):
        plan(parse_strokes(payload))


def test_large_marks_are_drawn_smaller_not_refused() -> None:
    p = plan(parse_strokes(corner(MAX_CANVAS)))
    assert p.scale == 0.25 and p.image_pixels <= MAX_IMAGE_PIXELS
    with pytest.raises(StrokeError, match="too large an area"):
        plan(parse_strokes(corner(MAX_CANVAS)), scale=2.0)


def test_worst_accepted_payload_is_at_the_limits() -> None:
    payload = parse_strokes(worst_accepted())
    p = plan(payload)
    assert payload.point_count == MAX_POINTS
    assert MAX_PATH_LENGTH * 0.99 <= p.path_length <= MAX_PATH_LENGTH
    assert p.image_pixels >= MAX_IMAGE_PIXELS * 0.98 and p.scale == 2.0
    assert p.sample_count <= MAX_PATH_LENGTH + MAX_POINTS
    assert p.peak_bytes <= 50 * 2**20


@pytest.mark.parametrize(("w", "h"), [(800, 600), (MAX_IMAGE_PIXELS // 40, 40), (40, MAX_IMAGE_PIXELS // 40)])
def test_png_bound_holds_for_incompressible_images(w: int, h: int) -> None:
    """Random RGBA noise is the worst case for PNG; even that fits the bound, and the bound fits sealing."""
    assert w * h <= MAX_IMAGE_PIXELS
    im = Image.frombytes("RGBA", (w, h), os.urandom(w * h * 4))
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False, compress_level=6)  # as render_plan saves
    png = buf.getvalue()
    assert len(png) <= png_size_bound(w, h) <= MAX_SIGNATURE_PNG
    signature_image(png)  # the sealing pipeline's own check accepts it


def _walk(seed: int, n: int, step: float, w: int, h: int) -> dict:
    import random

    rng = random.Random(seed)
    x, y, ang, t, pts = w / 2, h / 2, 0.0, 0.0, []
    for _ in range(n):
        t += rng.choice((4.0, 16.0, 60.0))  # fast to slow: thin to thick pen
        pts.append({"x": x, "y": y, "t": t})
        ang += rng.uniform(-2, 2)
        x = min(max(x + step * math.cos(ang), 0.0), float(w))
        y = min(max(y + step * math.sin(ang), 0.0), float(h))
    return {"width": w, "height": h, "strokes": [pts]}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), n=st.integers(2, 400), step=st.floats(0.5, 400),
       w=st.integers(1, MAX_CANVAS), h=st.integers(1, MAX_CANVAS))
def test_whatever_plan_accepts_can_be_sealed(seed: int, n: int, step: float, w: int, h: int) -> None:
    """Accepted by the limits => drawn within them => accepted by the sealing pipeline's image check and
    placed in a signed document (what submit now checks before answering 200)."""
    payload = parse_strokes(_walk(seed, n, step, w, h))
    try:
        p = plan(payload)
    except StrokeError as exc:
        assert "drawn length" in str(exc) or "too large an area" in str(exc)
        return
    png = render_plan(p)
    assert len(png) <= png_size_bound(p.out_w, p.out_h) <= MAX_SIGNATURE_PNG
    assert Image.open(io.BytesIO(png)).size == (p.out_w, p.out_h)
    assert p.image_pixels <= MAX_IMAGE_PIXELS
    signature_image(png)


def test_worst_accepted_signature_goes_into_a_signed_document(guarantee_context: dict) -> None:
    png = render_png(parse_strokes(worst_accepted()))
    pdf = render_signed("guarantee_letter", guarantee_context, [SignatureMark("employee", png, "2025-04-01")])
    assert pdf.startswith(b"%PDF")


async def test_pool_refuses_beyond_its_queue() -> None:
    """Renders beyond WORKERS running + QUEUE waiting are refused at once, not queued without end."""
    payload = parse_strokes(signature_payload())
    before = render_pool.stats.refused_busy
    n = render_pool.WORKERS + render_pool.QUEUE + 3
    results = await asyncio.gather(*(render_pool.render(payload) for _ in range(n)), return_exceptions=True)
    busy = [r for r in results if isinstance(r, render_pool.RenderBusy)]
    assert len(busy) == 3 and render_pool.stats.refused_busy == before + 3
    pngs = {r for r in results if isinstance(r, bytes)}
    assert len(pngs) == 1  # the others all drew the same deterministic image
    assert render_pool.stats.in_flight == 0
