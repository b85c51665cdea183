"""The limiter and the answer classification, with a stepped clock and plain values."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from bot.platforms.dingtalk.errors import (
    Answer,
    AuthError,
    BudgetExhausted,
    ConfigurationError,
    PermissionDenied,
    ThrottledError,
    TransientError,
    UnknownUser,
    classify,
)
from bot.platforms.dingtalk.ratelimit import RateLimits, TokenBucket, map_bounded, month_key


class StepClock:
    def __init__(self) -> None:
        self.t = 0.0
        self.slept: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


def test_bucket_spaces_slots_evenly_at_the_rate() -> None:
    clock = StepClock()
    b = TokenBucket(20, clock=clock)
    waits = [b.reserve() for _ in range(40)]
    assert waits == pytest.approx([i * 0.05 for i in range(40)])  # 40 calls take 2 s: never > 20 in 1 s


def test_bucket_burst_lets_a_few_through_after_idle_then_paces() -> None:
    clock = StepClock()
    b = TokenBucket(10, burst=3, clock=clock)
    clock.t = 100.0
    assert [b.reserve() for _ in range(5)] == pytest.approx([0, 0, 0, 0.1, 0.2])


def test_hold_pushes_every_next_slot_back() -> None:
    clock = StepClock()
    b = TokenBucket(20, clock=clock)
    b.reserve()
    b.hold(1.0)
    assert b.reserve() == pytest.approx(1.0)


async def test_acquire_sleeps_on_the_injected_clock() -> None:
    clock = StepClock()
    b = TokenBucket(4, clock=clock)
    for _ in range(3):
        await b.acquire()
    assert clock.slept == pytest.approx([0.25, 0.25]) and clock.t == pytest.approx(0.5)


async def test_map_bounded_keeps_order_bounds_concurrency_and_collects_failures() -> None:
    running = peak = 0

    async def work(i: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0)
        running -= 1
        if i == 3:
            raise ValueError("three")
        return i * 2

    out = await map_bounded(work, range(10), limit=4)
    assert peak == 4
    assert [x if not isinstance(x, Exception) else "err" for x in out] == [0, 2, 4, "err", 8, 10, 12, 14, 16, 18]


def test_month_key_is_china_time() -> None:
    assert month_key(datetime(2026, 11, 30, 16, 0, tzinfo=UTC)) == "2026-12"
    assert month_key(datetime(2026, 11, 30, 15, 59, tzinfo=UTC)) == "2026-11"


@pytest.mark.parametrize(("status", "body", "kind"), [
    (200, {"success": True}, None),
    (200, {"errcode": 0, "result": {}}, None),
    (403, {"code": "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"}, ThrottledError),
    (403, {"code": "Forbidden.AccessDenied.QpmLimitForAppkeyAndApi"}, ThrottledError),
    (403, {"code": "Forbidden.AccessDenied.QpsLimitForApi"}, ThrottledError),
    (200, {"errcode": 90018, "errmsg": "qps"}, ThrottledError),
    (200, {"errcode": 90002}, ThrottledError),
    (200, {"status": 1111, "punish": "deny"}, ThrottledError),
    (403, {"code": "Forbidden.AccessDenied.ApiCountLimitForOrg"}, BudgetExhausted),
    (200, {"errcode": 90020}, BudgetExhausted),
    (401, {"code": "InvalidAuthentication"}, AuthError),
    (200, {"errcode": 88, "sub_code": "40014", "sub_msg": "不合法的access_token"}, AuthError),
    (200, {"errcode": 88, "sub_code": "42001"}, AuthError),
    (403, {"code": "Forbidden.AccessDenied.AccessTokenPermissionDenied"}, PermissionDenied),
    (200, {"errcode": 60011}, PermissionDenied),
    (200, {"errcode": 88, "sub_code": "60011"}, PermissionDenied),
    (400, {"code": "cardInstance.wrong"}, ConfigurationError),
    (400, {"code": "chatbot.notFound"}, ConfigurationError),
    (200, {"errcode": 60020}, ConfigurationError),
    (200, {"errcode": 60121, "errmsg": "找不到该用户"}, UnknownUser),
    (200, {"errcode": -1, "errmsg": "系统繁忙"}, TransientError),
    (500, {"code": "ServiceUnavailable"}, TransientError),
    (502, "<html>bad gateway</html>", TransientError),
])
def test_classify(status: int, body: object, kind: type | None) -> None:
    err = classify("card.create", Answer(status, body))
    if kind is None:
        assert err is None
    else:
        assert type(err) is kind


def test_permission_message_names_the_scope_from_the_answer_or_the_api() -> None:
    named = classify("card.create", Answer(403, {"code": "Forbidden.AccessDenied.AccessTokenPermissionDenied",
                                                 "accessdenieddetail": {"requiredScopes": ["Card.Streaming.Write"]}}))
    assert isinstance(named, PermissionDenied) and named.scope == "Card.Streaming.Write"
    guessed = classify("robot.oto", Answer(403, {"code": "Forbidden.AccessDenied.AccessTokenPermissionDenied"}))
    assert isinstance(guessed, PermissionDenied) and "qyapi_robot_sendmsg" in str(guessed)
    assert "企业内机器人发送消息权限" in str(guessed)


async def test_a_hold_arriving_while_callers_wait_voids_their_earlier_slots() -> None:
    clock = StepClock()
    b = TokenBucket(10, clock=clock)
    b.reserve()  # slot at 0
    waiter = asyncio.ensure_future(b.acquire())  # reserves the slot at 0.1 and sleeps (clock moves to 0.1)
    b.hold(1.0)  # ...but a throttle answer came in at t=0 (before the clock moved)
    await waiter
    assert clock.t >= 1.0


def test_rate_limits_pace_a_margin_below_the_documented_rate() -> None:
    limits = RateLimits(rate=20, margin=0.07, overrides={"robot.oto": 10})
    assert limits.bucket("card.create").rate == pytest.approx(18.6)
    assert limits.bucket("robot.oto").rate == pytest.approx(9.3)
    assert limits.bucket("card.create") is limits.bucket("card.create")
