"""Calendar-month (``YYYY-MM``) and date parsing shared by the calculators."""

from __future__ import annotations

import re
from datetime import date

from settlement.errors import SettlementError

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def is_month(text: object) -> bool:
    if not isinstance(text, str) or not _MONTH.match(text):
        return False
    return 1 <= int(text[5:]) <= 12 and int(text[:4]) >= 1900


def parse_month(text: object, field: str) -> str:
    """Validate ``YYYY-MM``; the zero-padded form sorts correctly as a string, so it stays a string."""
    if not isinstance(text, str):
        raise SettlementError(field, f"expected a month 'YYYY-MM', got {text!r}")
    match = _MONTH.match(text)
    if not match or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 1900:
        raise SettlementError(field, f"expected a month 'YYYY-MM', got {text!r}")
    return text


def parse_date(value: object, field: str) -> date:
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        raise SettlementError(field, f"expected a date 'YYYY-MM-DD', got {value!r}")
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        raise SettlementError(field, f"expected a date 'YYYY-MM-DD', got {value!r}") from None
    if len(value) != 10:
        raise SettlementError(field, f"expected a date 'YYYY-MM-DD', got {value!r}")
    return parsed


def days_in_month(year: int, month: int) -> int:
    if month == 12:
        return 31
    return (date(year, month + 1, 1) - date(year, month, 1)).days


def add_months(start: date, count: int) -> date:
    """``start`` moved by ``count`` calendar months, clamped to the month's last day (like relativedelta)."""
    index = start.year * 12 + start.month - 1 + count
    year, month = divmod(index, 12)
    month += 1
    return date(year, month, min(start.day, days_in_month(year, month)))
