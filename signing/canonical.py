"""Canonical JSON bytes for hashing (RFC 8785-like) and SHA-256 helpers."""

from __future__ import annotations

import hashlib
import json
import math


def _normalise(obj: object) -> object:
    # JCS prints 1.0 as 1; Python would print 1.0, so integral floats become ints to hash the same
    # value the same way whichever client serialised it.
    if isinstance(obj, bool) or obj is None or isinstance(obj, int | str):
        return obj
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError("non-finite number cannot be canonicalised")
        if obj.is_integer() and abs(obj) < 2**53:
            return int(obj)
        return obj
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise TypeError("canonical JSON object keys must be strings")
        return {k: _normalise(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_normalise(v) for v in obj]
    raise TypeError(f"type {type(obj).__name__} has no canonical JSON form")


def canonical_json(obj: object) -> bytes:
    """Sorted keys, no whitespace, UTF-8, integral floats as integers, NaN/Infinity refused."""
    return json.dumps(
        _normalise(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
