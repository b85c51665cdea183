"""Working days and statutory holidays in mainland China, from the bundled yearly arrangements."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path

from settlement.errors import SettlementError

CALENDAR_FILE = Path(__file__).with_name("workdays_cn.toml")


@dataclass(frozen=True)
class YearCalendar:
    year: int
    source_url: str
    off: frozenset[date]
    work: frozenset[date]
    statutory: frozenset[date]

    def is_working_day(self, day: date) -> bool:
        if day in self.work:
            return True
        return day.weekday() < 5 and day not in self.off


def _dates(values: list[str], year: int) -> frozenset[date]:
    parsed = frozenset(date.fromisoformat(value) for value in values)
    if any(day.year != year for day in parsed):
        raise SettlementError("workdays", f"a date outside {year} in the {year} entry", source=str(CALENDAR_FILE))
    return parsed


@lru_cache(maxsize=1)
def calendars() -> dict[int, YearCalendar]:
    with CALENDAR_FILE.open("rb") as handle:
        data = tomllib.load(handle)
    result: dict[int, YearCalendar] = {}
    for entry in data["years"]:
        year = int(entry["year"])
        off: set[date] = set()
        for first, last in entry["off"]:
            day, end = date.fromisoformat(first), date.fromisoformat(last)
            while day <= end:
                off.add(day)
                day += timedelta(days=1)
        statutory = _dates(entry["statutory"], year)
        if not statutory <= off | {d for d in statutory if d.weekday() >= 5}:
            raise SettlementError(
                "statutory", f"a {year} statutory holiday is a working day", source=str(CALENDAR_FILE)
            )
        result[year] = YearCalendar(year, entry["source_url"], frozenset(off), _dates(entry["work"], year), statutory)
    return result


def year_calendar(year: int, field: str) -> YearCalendar:
    try:
        return calendars()[year]
    except KeyError:
        known = ", ".join(str(y) for y in sorted(calendars()))
        raise SettlementError(field, f"no working-day calendar for {year} (have {known})") from None


def count_days(first: date, last: date, field: str) -> tuple[int, int]:
    """(working days, statutory holidays not on a working day) in ``first..last`` inclusive."""
    working = holidays = 0
    day = first
    while day <= last:
        cal = year_calendar(day.year, field)
        if cal.is_working_day(day):
            working += 1
        elif day in cal.statutory:
            holidays += 1
        day += timedelta(days=1)
    return working, holidays
