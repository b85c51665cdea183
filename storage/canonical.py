"""Canonical JSON (RFC 8785-like: sorted keys, no whitespace, UTF-8) and SHA-256: the bytes we hash as evidence.

The one implementation; `signing.canonical` re-exports it. Integral floats print as integers (JCS prints
1.0 as 1) so a value hashes the same whichever client serialised it, and NaN/Infinity are refused because
they have no JSON form. Dates, Decimals and sets are turned into their plain JSON forms first.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import date, datetime
from decimal import Decimal


def _normalise(obj: object) -> object:
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
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    if isinstance(obj, Decimal):
        # Money travels as its exact decimal string, never through float.
        return str(obj)
    if isinstance(obj, set | frozenset):
        return sorted(_normalise(v) for v in obj)  # type: ignore[type-var]
    raise TypeError(f"type {type(obj).__name__} has no canonical JSON form")


def canonical_json(obj: object) -> bytes:
    """Sorted keys, no whitespace, UTF-8, integral floats as integers, NaN/Infinity refused."""
    return json.dumps(
        _normalise(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
