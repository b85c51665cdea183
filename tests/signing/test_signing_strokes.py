from __future__ import annotations

import copy
import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from signing.canonical import canonical_json, sha256_hex
from signing.strokes import (
    MAX_POINTS,
    StrokeError,
    is_trivial,
    parse_strokes,
    parse_strokes_json,
    render_png,
    trivial_reason,
)

from .conftest import signature_payload


def test_valid_signature_accepted_and_not_trivial() -> None:
    p = parse_strokes(signature_payload())
    assert p.point_count == 180
    assert trivial_reason(p) is None and not is_trivial(p)


@pytest.mark.parametrize(("mutate", "needle"), [
    (lambda d: d.update(width=0), "width"),
    (lambda d: d.update(height=10_000), "height"),
    (lambda d: d["strokes"][0][3].update(x=1e9), "outside"),
    (lambda d: d["strokes"][0][3].update(y=-1), "outside"),
    (lambda d: d["strokes"][0][3].update(t=0), "backwards"),
    (lambda d: d["strokes"][0][3].update(p=2), "p"),
    (lambda d: d["strokes"][0][3].update(x="12"), "x"),
    (lambda d: d["strokes"][0][3].update(z=1), "z"),
    (lambda d: d["strokes"].append([]), "empty"),
    (lambda d: d.update(strokes=[[{"x": 1, "y": 1, "t": 0}]] * 501), "too many strokes"),
    (lambda d: d.update(strokes=[[{"x": 1, "y": 1, "t": i} for i in range(MAX_POINTS + 1)]]), "too many points"),
    (lambda d: d.pop("strokes"), "strokes"),
])
def test_malformed_payloads_rejected(mutate, needle: str) -> None:  # type: ignore[no-untyped-def]
    data = copy.deepcopy(signature_payload())
    mutate(data)
    with pytest.raises(StrokeError) as exc:
        parse_strokes(data)
    assert needle in str(exc.value)


def test_non_finite_and_non_json_rejected() -> None:
    raw = json.dumps(signature_payload()).replace('"p": 0.5', '"p": NaN', 1)
    with pytest.raises(StrokeError):
        parse_strokes_json(raw)
    with pytest.raises(StrokeError, match="not JSON"):
        parse_strokes_json(b"{not json")
    with pytest.raises(StrokeError, match="object"):
        parse_strokes([1, 2])
    with pytest.raises(StrokeError, match="too large"):
        parse_strokes_json(b" " * 2_000_001)


def _payload(strokes: list[list[tuple[float, float]]]) -> dict:
    t = 0.0
    out = []
    for s in strokes:
        pts = []
        for x, y in s:
            t += 10
            pts.append({"x": x, "y": y, "t": t})
        out.append(pts)
    return {"width": 400, "height": 200, "strokes": out}


@pytest.mark.parametrize(("strokes", "reason"), [
    ([], "empty"),
    ([[(100, 100)]], "too small"),
    ([[(100, 100), (101, 101), (100, 102)]], "too small"),
    ([[(20 + i * 10, 100) for i in range(30)]], "straight line"),
    ([[(20 + i * 10, 20 + i * 5) for i in range(30)]], "straight line"),
    ([[(20 + i * 10, 100) for i in range(15)], [(170 + i * 10, 100.5) for i in range(15)]], "straight line"),
])
def test_trivial_marks_refused(strokes: list, reason: str) -> None:
    assert trivial_reason(parse_strokes(_payload(strokes))) == reason


def test_cross_of_two_lines_is_not_a_single_line() -> None:
    cross = [[(50 + i * 5, 100) for i in range(30)], [(120, 30 + i * 5) for i in range(28)]]
    assert trivial_reason(parse_strokes(_payload(cross))) is None


def test_render_png_deterministic_and_transparent() -> None:
    p = parse_strokes(signature_payload())
    a, b = render_png(p), render_png(parse_strokes(signature_payload()))
    assert sha256_hex(a) == sha256_hex(b)
    img = Image.open(io.BytesIO(a))
    assert img.mode == "RGBA"
    lo, hi = img.getchannel("A").getextrema()
    assert lo == 0 and hi == 255
    # Cropped to the mark: its extent plus a 10 px margin each side, at scale 2.
    xs = [pt.x for s in p.strokes for pt in s]
    ys = [pt.y for s in p.strokes for pt in s]
    assert abs(img.width - (max(xs) - min(xs) + 20) * 2) <= 8
    assert abs(img.height - (max(ys) - min(ys) + 20) * 2) <= 8


def test_width_follows_speed() -> None:
    slow = _payload([[(20 + i * 3, 100 + (i % 2)) for i in range(60)]])
    fast = copy.deepcopy(slow)
    for pt in fast["strokes"][0]:
        pt["t"] = pt["t"] / 10
    ink = []
    for data in (slow, fast):
        img = Image.open(io.BytesIO(render_png(parse_strokes(data)))).getchannel("A")
        ink.append(sum(img.histogram()[129:]))
    assert ink[0] > ink[1] * 1.3


def test_canonical_json() -> None:
    assert canonical_json({"b": 1.0, "a": [True, None, "中"], "c": 0.5}) == \
        '{"a":[true,null,"中"],"b":1,"c":0.5}'.encode()
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})
    with pytest.raises(TypeError):
        canonical_json({"x": object()})


def test_stroke_hash_ignores_client_number_formatting() -> None:
    a = signature_payload()
    b = copy.deepcopy(a)
    b["strokes"][0][0]["t"] = float(b["strokes"][0][0]["t"])
    assert parse_strokes(a).sha256() == parse_strokes(b).sha256()
    b["strokes"][0][0]["x"] += 0.01
    assert parse_strokes(a).sha256() != parse_strokes(b).sha256()


@settings(max_examples=60, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=3), kids,
                                                                                max_size=3), max_leaves=10))
def test_canonical_json_roundtrips(obj: object) -> None:
    assert canonical_json(json.loads(canonical_json(obj))) == canonical_json(obj)
