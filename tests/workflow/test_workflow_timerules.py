"""Quiet hours and business days: pure time arithmetic (workflow.timerules), and templates that count
deadlines in working days of China's calendar, make-up working days included."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workflow import engine
from workflow.effects import SetTimer
from workflow.schema import TemplateProblem, compile_template
from workflow.templates import load_templates
from workflow.timerules import QuietHours, add_business_hours, is_working_day

SH = ZoneInfo("Asia/Shanghai")
NIGHT = QuietHours.parse("22:00-08:00", SH)


def sh(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=SH)


@pytest.mark.parametrize("local,expected", [
    (sh(2026, 3, 2, 21, 59), sh(2026, 3, 2, 21, 59)),  # before: kept
    (sh(2026, 3, 2, 22, 0), sh(2026, 3, 3, 8, 0)),  # evening: next morning
    (sh(2026, 3, 2, 23, 30), sh(2026, 3, 3, 8, 0)),
    (sh(2026, 3, 3, 0, 0), sh(2026, 3, 3, 8, 0)),  # after midnight: this morning
    (sh(2026, 3, 3, 7, 59), sh(2026, 3, 3, 8, 0)),
    (sh(2026, 3, 3, 8, 0), sh(2026, 3, 3, 8, 0)),  # the end itself is not quiet
])
def test_quiet_hours_wrap_midnight(local: datetime, expected: datetime) -> None:
    assert NIGHT.defer(local) == expected.astimezone(UTC)
    assert NIGHT.contains(local) == (local != expected)
    assert NIGHT.defer(local).tzinfo is UTC


def test_quiet_window_within_a_day_and_none() -> None:
    lunch = QuietHours.parse("12:00-13:30", SH)
    assert lunch.defer(sh(2026, 3, 2, 12, 45)) == sh(2026, 3, 2, 13, 30).astimezone(UTC)
    assert not lunch.contains(sh(2026, 3, 2, 23, 0))
    never = QuietHours.parse("00:00-00:00", SH)
    assert never.empty and never.defer(sh(2026, 3, 2, 3)) == sh(2026, 3, 2, 3).astimezone(UTC)
    # The zone is the setting's: 23:00 in Shanghai is 15:00 UTC.
    assert NIGHT.contains(datetime(2026, 3, 2, 15, 0, tzinfo=UTC))
    assert not QuietHours.parse("22:00-08:00", ZoneInfo("UTC")).contains(datetime(2026, 3, 2, 15, 0, tzinfo=UTC))


@pytest.mark.parametrize("text", ["22-08", "25:00-08:00", "22:00-08:60", "", "22:00"])
def test_bad_quiet_hours_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        QuietHours.parse(text, SH)


@given(st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)))
def test_deferred_time_is_never_quiet_and_never_earlier(at: datetime) -> None:
    out = NIGHT.defer(at)
    assert out >= at and not NIGHT.contains(out) and out - at <= timedelta(hours=10)


def test_business_days_skip_weekends_and_holidays_and_count_make_up_days() -> None:
    # 2026 Spring Festival: 15–23 Feb off; Saturday 14 Feb and Saturday 28 Feb are make-up working days.
    assert is_working_day(date(2026, 2, 14)) and not is_working_day(date(2026, 2, 16))
    assert not is_working_day(date(2026, 2, 21)) and is_working_day(date(2026, 2, 28))
    # Friday 13 Feb 10:00 + 3 working days: Sat 14 (make-up), then the holiday, then Tue 24, Wed 25.
    assert add_business_hours(sh(2026, 2, 13, 10), 72) == sh(2026, 2, 25, 10).astimezone(UTC)
    # An ordinary week: Friday + 1 working day is Monday; hours beyond whole days are clock hours.
    assert add_business_hours(sh(2026, 3, 6, 10), 24) == sh(2026, 3, 9, 10).astimezone(UTC)
    assert add_business_hours(sh(2026, 3, 6, 10), 30) == sh(2026, 3, 9, 16).astimezone(UTC)


def test_a_year_the_calendar_does_not_know_counts_monday_to_friday() -> None:
    assert is_working_day(date(2099, 3, 6)) and not is_working_day(date(2099, 3, 7))


def _raw(business_days: object = True) -> dict[str, object]:
    step = {"id": "sign", "title": {"zh": "签", "en": "Sign"}, "ask": {"zh": "请签", "en": "Sign"},
            "why": {"zh": "因为", "en": "Because"}, "role": "employee", "kind": "acknowledge", "deadline_hours": 72}
    return {"id": "t", "version": 1, "title": {"zh": "T", "en": "T"}, "case_type": "misconduct",
            "policy": {"business_days": business_days}, "steps": [step]}


def test_a_template_counts_its_timers_and_deadline_in_business_days() -> None:
    flow = compile_template(_raw())
    started = sh(2026, 2, 13, 10).astimezone(UTC)
    d = engine.start(flow, "c1", started)
    due = {e.kind: e.due_at for e in d.effects if isinstance(e, SetTimer)}
    assert due["remind"] == sh(2026, 2, 14, 10).astimezone(UTC)  # the make-up Saturday counts
    assert due["alert"] == sh(2026, 2, 25, 10).astimezone(UTC)
    assert engine.deadline_of(flow, d.state, "sign") == sh(2026, 2, 25, 10).astimezone(UTC)
    clock = engine.start(compile_template(_raw(False)), "c2", started)
    alert = {e.kind: e.due_at for e in clock.effects if isinstance(e, SetTimer)}["alert"]
    assert alert == started + timedelta(hours=72)
    with pytest.raises(TemplateProblem):
        compile_template(_raw("yes please"))


def test_bundled_templates_keep_clock_hours() -> None:
    for flow in load_templates().values():
        assert not flow.policy.business_days and not any(s.policy.business_days for s in flow.steps)


def test_quiet_end_is_local_time() -> None:
    assert NIGHT.end == time(8, 0) and NIGHT.start == time(22, 0)
