"""UTC timestamps and their JSON form; the engine only ever sees timezone-aware UTC datetimes."""

from __future__ import annotations

from datetime import UTC, datetime


def utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: the workflow needs timezone-aware times")
    if value.tzinfo is UTC:
        return value
    return value.astimezone(UTC)


def dump_time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def load_time(value: str | None) -> datetime | None:
    return None if value is None else utc(datetime.fromisoformat(value))
