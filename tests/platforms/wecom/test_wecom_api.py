"""Our WeCom API client against a fake WeCom on 127.0.0.1: tokens, retries, limits, clear errors."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bot.platforms.wecom.api import Permanent, Throttled, Transient, WeComAPI
from tests.platforms.wecom.fake_wecom import AGENT_ID, CORP_ID, SECRET, FakeWeCom

CARD = {"card_type": "button_interaction", "main_title": {"title": "离职交接确认"}, "task_id": "t1",
        "button_list": [{"text": "同意", "style": 1, "key": "approve"}]}


@dataclass
class Rig:
    fake: FakeWeCom
    api: WeComAPI
    now: list[float]
    sleeps: list[float]
    base: str


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    fake = FakeWeCom()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    now = [1000.0]
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async with aiohttp.ClientSession() as session:
        base = str(server.make_url("/")).rstrip("/")
        api = WeComAPI(session, base_url=base, corp_id=CORP_ID, secret=SECRET, agent_id=AGENT_ID,
                       clock=lambda: now[0], sleep=sleep, timeout=2.0)
        yield Rig(fake, api, now, sleeps, base)
    await server.close()


async def test_send_card_returns_msgid_and_response_code(rig: Rig) -> None:
    result = await rig.api.send_template_card(["zhangsan"], CARD)
    assert result.msgid == "msg1" and result.response_code and result.invalid_users == ()
    (body,) = rig.fake.sent
    assert body["touser"] == "zhangsan" and body["agentid"] == AGENT_ID and body["msgtype"] == "template_card"
    assert body["template_card"] == CARD
    await rig.api.update_template_card(["zhangsan"], result.response_code, replace_name="已同意")
    assert rig.fake.updates[0]["button"] == {"replace_name": "已同意"}
    assert rig.fake.updates[0]["userids"] == ["zhangsan"]
    # A response code works once: the second use is an error WeCom gives, not a silent success.
    with pytest.raises(Permanent):
        await rig.api.update_template_card(["zhangsan"], result.response_code, card=CARD)


async def test_one_token_for_a_burst_at_cold_start(rig: Rig) -> None:
    await asyncio.gather(*(rig.api.send_text([f"u{i}"], f"m{i}") for i in range(50)))
    assert rig.fake.calls["/cgi-bin/gettoken"] == 1 and len(rig.fake.sent) == 50


async def test_token_refreshed_five_minutes_before_expiry(rig: Rig) -> None:
    await rig.api.send_text(["a"], "1")
    rig.now[0] += 7200 - 301
    await rig.api.send_text(["a"], "2")
    assert rig.fake.calls["/cgi-bin/gettoken"] == 1
    rig.now[0] += 2
    await rig.api.send_text(["a"], "3")
    assert rig.fake.calls["/cgi-bin/gettoken"] == 2


async def test_revoked_token_refetched_once_and_retried_once(rig: Rig) -> None:
    await rig.api.send_text(["a"], "1")
    rig.fake.revoke_tokens()  # WeCom may end a token early
    await asyncio.gather(*(rig.api.send_text(["a"], f"x{i}") for i in range(10)))
    assert rig.fake.calls["/cgi-bin/gettoken"] == 2 and len(rig.fake.sent) == 11


async def test_persistent_token_error_is_not_retried_forever(rig: Rig) -> None:
    # wechatpy retries 40014 without bound (51 gettoken for 50 answers); we refetch once.
    rig.fake.fail("/cgi-bin/message/send", *([40014] * 50))
    with pytest.raises(Permanent) as exc:
        await rig.api.send_text(["a"], "x")
    assert exc.value.code == 40014
    assert rig.fake.calls["/cgi-bin/message/send"] == 2 and rig.fake.calls["/cgi-bin/gettoken"] == 2


async def test_busy_retried_up_to_three_times_then_delivered_once(rig: Rig) -> None:
    rig.fake.fail("/cgi-bin/message/send", -1, -1, -1)
    await rig.api.send_template_card(["a"], CARD)
    assert len(rig.fake.sent) == 1 and rig.fake.calls["/cgi-bin/message/send"] == 4
    assert rig.sleeps == [0.2, 0.4, 0.8]


async def test_busy_four_times_is_transient(rig: Rig) -> None:
    rig.fake.fail("/cgi-bin/message/send", -1, -1, -1, -1)
    with pytest.raises(Transient) as exc:
        await rig.api.send_text(["a"], "x")
    assert not isinstance(exc.value, Permanent) and rig.fake.sent == []


@pytest.mark.parametrize("code", [45009, 45033])
async def test_limits_are_throttled_without_retrying(rig: Rig, code: int) -> None:
    rig.fake.fail("/cgi-bin/message/send", code)
    with pytest.raises(Throttled) as exc:
        await rig.api.send_text(["a"], "x")
    assert exc.value.retry_after >= 60 and rig.fake.calls["/cgi-bin/message/send"] == 1
    await rig.api.send_text(["a"], "x")  # the next attempt, after the back-off, goes through once
    assert len(rig.fake.sent) == 1


@pytest.mark.parametrize(("code", "says"), [(60020, "企业可信IP"), (81013, "可见范围"), (40001, "WECOM_SECRET"),
                                             (43012, "回调")])
async def test_configuration_errors_name_the_fix_and_stop(rig: Rig, code: int, says: str) -> None:
    rig.fake.fail("/cgi-bin/message/send", code)
    with pytest.raises(Permanent) as exc:
        await rig.api.send_text(["a"], "x")
    assert exc.value.code == code and says in exc.value.message and str(code) in exc.value.message_en
    assert rig.fake.calls["/cgi-bin/message/send"] == 1


async def test_unknown_recipient_is_81013(rig: Rig) -> None:
    rig.fake.users = {"zhangsan": {"userid": "zhangsan", "name": "张三", "department": [2]}}
    with pytest.raises(Permanent) as exc:
        await rig.api.send_text(["ghost"], "x")
    assert exc.value.code == 81013
    partial = await rig.api.send_text(["zhangsan", "ghost"], "x")
    assert partial.invalid_users == ("ghost",)


async def test_wrong_secret_is_a_clear_permanent_error(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with aiohttp.ClientSession() as session:
        api = WeComAPI(session, base_url=rig.base, corp_id=CORP_ID, secret="wrong-secret-value", agent_id=AGENT_ID)
        with pytest.raises(Permanent) as exc:
            await api.send_text(["a"], "x")
    assert exc.value.code == 40001
    ours = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("aiohttp.access"))  # the fake's
    assert "wrong-secret-value" not in str(exc.value) and "wrong-secret-value" not in ours


async def test_timeouts_and_server_errors_are_transient_and_quote_no_token(rig: Rig) -> None:
    await rig.api.send_text(["a"], "warm")  # a token exists now; a quoted URL would carry it
    token = next(iter(rig.fake.tokens))
    rig.fake.delay = 3.0
    with pytest.raises(Transient) as exc:
        await rig.api.send_text(["a"], "slow")
    assert token not in str(exc.value) and SECRET not in str(exc.value)


async def test_directory_and_sign_in_calls(rig: Rig) -> None:
    rig.fake.users = {
        "zhangsan": {"userid": "zhangsan", "name": "张三", "department": [2], "position": "工程师",
                     "direct_leader": ["lisi"]},
        "lisi": {"userid": "lisi", "name": "李四", "department": [2], "position": "经理", "direct_leader": []},
    }
    assert (await rig.api.user_get("zhangsan"))["direct_leader"] == ["lisi"]
    assert [d["id"] for d in await rig.api.department_list()] == [2]
    assert {u["userid"] for u in await rig.api.user_list(2)} == {"zhangsan", "lisi"}
    rig.fake.oauth_codes["c1"] = "zhangsan"
    assert await rig.api.userid_from_code("c1") == "zhangsan"
    with pytest.raises(Permanent):  # a code works once (40029)
        await rig.api.userid_from_code("c1")
