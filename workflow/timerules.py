"""Time rules for timers and deadlines: quiet hours and business days. Pure time arithmetic, no I/O.

Quiet hours: reminders and alerts never go out at night. A time inside the quiet window is moved to the
window's end (in the configured zone); any other time is kept. The window may wrap midnight (22:00–08:00)
or not (12:00–13:30); equal ends mean no quiet hours at all.

Business days: a template may count its hours in working days (`business_days = true` in `[policy]` or a
step's `policy`). Every whole 24 hours is one working day of mainland China's calendar (`chinese-calendar`:
weekends, statutory holidays, and the make-up working Saturdays and Sundays that the State Council
announces each year); the rest is added as clock hours. The calendar is China's, so it is counted in
China time. For a year the package does not know yet (announced each November), Monday to Friday count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo

import chinese_calendar

from workflow.timeutil import utc

CHINA = ZoneInfo("Asia/Shanghai")
_HHMM = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*[-–~]\s*(\d{1,2}):(\d{2})\s*$")


@dataclass(frozen=True, slots=True)
class QuietHours:
    start: time
    end: time
    tz: tzinfo

    @classmethod
    def parse(cls, text: str, tz: tzinfo) -> QuietHours:
        """"22:00-08:00" (local times in `tz`); ValueError naming what is wrong."""
        m = _HHMM.match(text)
        if m is None:
            raise ValueError(f"quiet hours must read like 22:00-08:00, got {text!r}")
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        if not (h1 < 24 and h2 < 24 and m1 < 60 and m2 < 60):
            raise ValueError(f"not a time of day in {text!r}")
        return cls(time(h1, m1), time(h2, m2), tz)

    @property
    def empty(self) -> bool:
        return self.start == self.end

    def contains(self, at: datetime) -> bool:
        if self.empty:
            return False
        t = utc(at).astimezone(self.tz).time().replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end  # wraps midnight

    def defer(self, at: datetime) -> datetime:
        """`at` if it is outside the quiet window, else the (UTC) moment the window ends."""
        if not self.contains(at):
            return utc(at)
        local = utc(at).astimezone(self.tz)
        day = local.date()
        if self.start > self.end and local.time().replace(tzinfo=None) >= self.start:
            day += timedelta(days=1)  # evening part of a window that ends tomorrow morning
        end = datetime.combine(day, self.end, tzinfo=self.tz)
        return utc(end)


@lru_cache(maxsize=4096)
def is_working_day(day: date) -> bool:
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:  # a year the package has no arrangement for yet
        return day.weekday() < 5


def add_business_hours(at: datetime, hours: float) -> datetime:
    """`at` plus `hours`, each whole 24 of them counted as one working day (same local clock time)."""
    local = utc(at).astimezone(CHINA)
    whole, rest = divmod(hours, 24)
    day, left = local.date(), int(whole)
    while left > 0:
        day += timedelta(days=1)
        if is_working_day(day):
            left -= 1
    moved = datetime.combine(day, local.time().replace(tzinfo=None), tzinfo=CHINA)
    return utc(moved + timedelta(hours=rest))


def after(at: datetime, hours: float, *, business_days: bool) -> datetime:
    """When a span of `hours` that starts at `at` ends (in clock hours, or counted in working days)."""
    if business_days:
        return add_business_hours(at, hours)
    return utc(at) + timedelta(hours=hours)
