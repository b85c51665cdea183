"""Copying of free-form step data into a JSON-safe value.

Step data is stored in the case state and the audit log, so anything that cannot round-trip through
JSON is refused at the door. Floats are refused because amounts arrive here from forms and must stay
exact (team rule: money is Decimal, carried as a decimal string).
"""

from __future__ import annotations

from typing import Any


def plain_copy(value: Any, where: str = "data") -> Any:
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}: keys must be strings, got {key!r}")
            out[key] = plain_copy(item, f"{where}.{key}")
        return out
    if isinstance(value, (list, tuple)):
        return [plain_copy(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, float):
        raise TypeError(f"{where}: floats are not accepted; pass numbers as decimal strings")
    raise TypeError(f"{where}: {type(value).__name__} is not JSON data")
