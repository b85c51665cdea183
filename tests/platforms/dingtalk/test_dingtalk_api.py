"""Our aiohttp OpenAPI client against the fake DingTalk over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from bot.platforms.dingtalk.api import AppCredentials, DingTalkApi, RetryPolicy
from bot.platforms.dingtalk.directory import manager_of
from bot.platforms.dingtalk.errors import (
    ConfigurationError,
    PermanentError,
    PermissionDenied,
    ThrottledError,
    UnknownUser,
)
from bot.platforms.dingtalk.ratelimit import MemoryCallCounter, RateLimits, month_key
from tests.platforms.dingtalk.fake import CLIENT_ID, CLIENT_SECRET, FakeDingTalk

CREATE = "/v1.0/card/instances/createAndDeliver"
QPS_403 = (403, {"code": "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi", "message": "调用过于频繁"})
FAST = RetryPolicy(attempts=4, base=0.01, cap=0.05, throttle_wait=0.02)


class StepClock:
    """Time that moves only when told or slept through; sleeping does not wait."""

    def __init__(self) -> None:
        self.t = 1000.0

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds
        await asyncio.sleep(0)


def make_api(fake: FakeDingTalk, *, secret: str = CLIENT_SECRET, timeout: float = 5.0,
             limits: RateLimits | None = None, counter: MemoryCallCounter | None = None) -> DingTalkApi:
    return DingTalkApi(AppCredentials(CLIENT_ID, secret), api_base=fake.base, oapi_base=fake.base, timeout=timeout,
                       limits=limits or RateLimits(rate=1000), retry=FAST, counter=counter)


@pytest.fixture
async def api(fake: FakeDingTalk) -> AsyncIterator[DingTalkApi]:
    async with make_api(fake) as a:
        yield a


async def test_create_and_deliver_sends_the_documented_body(fake: FakeDingTalk, api: DingTalkApi) -> None:
    d = await api.create_and_deliver_card("tpl.schema", "offb-42-emp", "emp001", {"title": "离职交接"},
                                          {"emp001": {"canSign": "true"}})
    body = fake.cards["offb-42-emp"]
    assert body == {
        "cardTemplateId": "tpl.schema", "outTrackId": "offb-42-emp", "callbackType": "STREAM",
        "openSpaceId": "dtv1.card//IM_ROBOT.emp001", "imRobotOpenSpaceModel": {"supportForward": False},
        "imRobotOpenDeliverModel": {"spaceType": "IM_ROBOT", "robotCode": CLIENT_ID}, "userIdType": 1,
        "cardData": {"cardParamMap": {"title": "离职交接"}},
        "privateData": {"emp001": {"cardParamMap": {"canSign": "true"}}},
    }
    assert d.out_track_id == "offb-42-emp" and d.results[0]["carrierId"] == "carrier-offb-42-emp"


async def test_update_card_in_place_by_key(fake: FakeDingTalk, api: DingTalkApi) -> None:
    await api.create_and_deliver_card("tpl.schema", "offb-1-mgr", "mgr001", {"status": "等待你操作"})
    await api.update_card("offb-1-mgr", {"status": "已批准"})
    (body,) = fake.updates
    assert body["outTrackId"] == "offb-1-mgr" and body["cardData"] == {"cardParamMap": {"status": "已批准"}}
    assert body["cardUpdateOptions"] == {"updateCardDataByKey": True, "updatePrivateDataByKey": True}


async def test_fifty_concurrent_calls_at_a_cold_start_fetch_one_token(fake: FakeDingTalk, api: DingTalkApi) -> None:
    await asyncio.gather(*(api.update_card(f"x{i}", {}) for i in range(50)), return_exceptions=True)
    assert fake.token_requests == 1
    assert len(fake.requests) == 50


async def test_token_refused_mid_run_is_refetched_once_for_all_callers(fake: FakeDingTalk, api: DingTalkApi) -> None:
    await api.create_and_deliver_card("tpl.schema", "c0", "emp001", {})
    fake.expire_tokens()
    await asyncio.gather(*(api.create_and_deliver_card("tpl.schema", f"c{i}", "emp001", {}) for i in range(1, 21)))
    assert fake.token_requests == 2
    assert sorted(fake.cards_made.values()) == [1] * 21


async def test_old_api_token_error_88_40014_is_refetched(fake: FakeDingTalk, api: DingTalkApi) -> None:
    await api.get_user("emp001")
    fake.expire_tokens()
    user = await api.get_user("emp001")
    assert user.name == "李四" and fake.token_requests == 2


async def test_token_endpoint_failing_once_is_retried(fake: FakeDingTalk, api: DingTalkApi) -> None:
    fake.script("/v1.0/oauth2/accessToken", (503, "<html>busy</html>"))
    assert (await api.get_user("emp001")).userid == "emp001"
    assert fake.token_requests == 2


async def test_token_is_refreshed_before_it_expires(fake: FakeDingTalk) -> None:
    clock = StepClock()
    async with make_api(fake, limits=RateLimits(rate=1000, clock=clock)) as api:
        await api.get_user("emp001")
        clock.t += 7200 - 301  # still valid for 301 s: more than the 300 s margin
        await api.get_user("emp001")
        assert fake.token_requests == 1
        clock.t += 2
        await api.get_user("emp001")
        assert fake.token_requests == 2


async def test_throttled_card_is_retried_and_made_once(fake: FakeDingTalk, api: DingTalkApi) -> None:
    fake.script(CREATE, QPS_403, QPS_403)
    await api.create_and_deliver_card("tpl.schema", "offb-7-emp", "emp001", {})
    assert fake.card_requests["offb-7-emp"] == 3
    assert fake.cards_made["offb-7-emp"] == 1


async def test_still_throttled_after_all_attempts_is_a_retryable_error(fake: FakeDingTalk, api: DingTalkApi) -> None:
    fake.script(CREATE, *[QPS_403] * FAST.attempts)
    with pytest.raises(ThrottledError) as err:
        await api.create_and_deliver_card("tpl.schema", "offb-8-emp", "emp001", {})
    assert err.value.retryable
    assert fake.card_requests["offb-8-emp"] == FAST.attempts and "offb-8-emp" not in fake.cards


async def test_old_api_90018_is_throttling_and_retried(fake: FakeDingTalk, api: DingTalkApi) -> None:
    fake.script("/topapi/v2/user/get", (200, {"errcode": 90018, "errmsg": "qps"}))
    assert (await api.get_user("mgr001")).name == "王五"
    assert fake.requests.count(("POST", "/topapi/v2/user/get")) == 2


async def test_lost_answer_then_resend_with_the_same_out_track_id_makes_no_second_card(fake: FakeDingTalk) -> None:
    fake.lose_next_answer(CREATE, 1.0)
    async with make_api(fake, timeout=0.3) as api:
        await api.create_and_deliver_card("tpl.schema", "offb-9-emp", "emp001", {})
    assert fake.card_requests["offb-9-emp"] == 2
    assert fake.cards_made["offb-9-emp"] == 1


async def test_server_error_page_is_transient_and_retried(fake: FakeDingTalk, api: DingTalkApi) -> None:
    fake.script(CREATE, (502, "<html>Bad Gateway</html>"))
    await api.create_and_deliver_card("tpl.schema", "offb-10-emp", "emp001", {})
    assert fake.card_requests["offb-10-emp"] == 2


async def test_permission_denied_is_permanent_with_the_fix_and_not_retried(fake: FakeDingTalk,
                                                                          api: DingTalkApi) -> None:
    fake.script(CREATE, (403, {"code": "Forbidden.AccessDenied.AccessTokenPermissionDenied",
                               "message": "没有调用该接口的权限",
                               "accessdenieddetail": {"requiredScopes": ["Card.Instance.Write"]}}))
    with pytest.raises(PermissionDenied) as err:
        await api.create_and_deliver_card("tpl.schema", "offb-11-emp", "emp001", {})
    text = str(err.value)
    assert "Card.Instance.Write" in text and "权限管理" in text and "Permissions" in text
    assert not err.value.retryable
    assert fake.requests.count(("POST", CREATE)) == 1


async def test_old_api_60011_names_the_contacts_permission(fake: FakeDingTalk, api: DingTalkApi) -> None:
    fake.script("/topapi/v2/user/get", (200, {"errcode": 60011, "errmsg": "no permission"}))
    with pytest.raises(PermissionDenied) as err:
        await api.get_user("emp001")
    assert err.value.scope == "qyapi_get_member"
    assert fake.requests.count(("POST", "/topapi/v2/user/get")) == 1


async def test_unpublished_template_names_the_setting(fake: FakeDingTalk, api: DingTalkApi) -> None:
    fake.script(CREATE, (400, {"code": "cardInstance.wrong", "message": "卡片模板错误"}))
    with pytest.raises(ConfigurationError) as err:
        await api.create_and_deliver_card("tpl.schema", "offb-12-emp", "emp001", {})
    assert "DINGTALK_CARD_TEMPLATE_ID" in str(err.value) and "发布" in str(err.value)


async def test_unknown_user(fake: FakeDingTalk, api: DingTalkApi) -> None:
    with pytest.raises(UnknownUser) as err:
        await api.get_user("ghost")
    assert err.value.user_ids == ["ghost"] and "ghost" in str(err.value)
    with pytest.raises(UnknownUser):
        await api.send_text("ghost", "hello")


async def test_wrong_secret_is_a_configuration_error_and_the_secret_never_shows(
        fake: FakeDingTalk, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "wrong-secret-xyz"
    async with make_api(fake, secret=secret) as api:
        with pytest.raises(ConfigurationError) as err:
            await api.get_user("emp001")
        assert "DINGTALK_CLIENT_SECRET" in str(err.value)
        assert secret not in str(err.value) and secret not in repr(api) and secret not in repr(api.creds)
    assert secret not in caplog.text


async def test_tokens_never_appear_in_logs(fake: FakeDingTalk, api: DingTalkApi,
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake.script(CREATE, QPS_403)
    await api.create_and_deliver_card("tpl.schema", "offb-13-emp", "emp001", {})
    await api.get_user("emp001")
    assert "tok-1" not in caplog.text and CLIENT_SECRET not in caplog.text


async def test_flow_controlled_users_are_resent_alone(fake: FakeDingTalk, api: DingTalkApi) -> None:
    fake.script("/v1.0/robot/oToMessages/batchSend",
                (200, {"processQueryKey": "k1", "flowControlledStaffIdList": ["mgr001"], "invalidStaffIdList": []}))
    (result,) = await api.send_oto(["emp001", "mgr001"], "sampleText", {"content": "你好"})
    assert result.process_query_key == "k1"
    assert [b["userIds"] for b in fake.oto] == [["mgr001"]]  # the scripted first answer is not recorded by the fake
    assert fake.oto[0]["msgParam"] == '{"content": "你好"}' and fake.oto[0]["msgKey"] == "sampleText"


async def test_markdown_to_one_user(fake: FakeDingTalk, api: DingTalkApi) -> None:
    await api.send_markdown("emp001", "提醒", "**请尽快签署**")
    assert fake.oto[0]["userIds"] == ["emp001"] and fake.oto[0]["msgKey"] == "sampleMarkdown"


async def test_directory_reads(fake: FakeDingTalk, api: DingTalkApi) -> None:
    user = await api.get_user("emp001")
    assert (user.name, user.title, user.dept_ids, user.manager_userid) == ("李四", "工程师", (4,), "mgr001")
    assert (await api.get_user("mgr001")).leader_in_depts == (4,)
    depts = await api.walk_departments()
    assert sorted((d.dept_id, d.name, d.parent_id) for d in depts) == [(2, "研发部", 1), (3, "人事部", 1),
                                                                       (4, "后端组", 2)]
    assert sorted(await api.list_user_ids(4)) == ["emp001", "mgr001"]


async def test_monthly_counter_counts_card_and_robot_calls_not_token_or_contacts(fake: FakeDingTalk) -> None:
    counter = MemoryCallCounter()
    async with make_api(fake, counter=counter) as api:
        fake.script(CREATE, QPS_403)
        await api.create_and_deliver_card("tpl.schema", "offb-14-emp", "emp001", {})
        await api.update_card("offb-14-emp", {"status": "x"})
        await api.send_text("emp001", "hi")
        await api.get_user("emp001")
    month = month_key(datetime.now(UTC))
    assert counter.counts == {(month, "card.create"): 2, (month, "card.update"): 1, (month, "robot.oto"): 1}


async def test_pacing_holds_callers_after_a_throttle_answer(fake: FakeDingTalk) -> None:
    clock = StepClock()
    limits = RateLimits(rate=1000, clock=clock)
    start = clock.t
    async with make_api(fake, limits=limits) as api:
        fake.script(CREATE, QPS_403)
        await api.create_and_deliver_card("tpl.schema", "offb-15-emp", "emp001", {})
    # the throttle answer closed the bucket for every caller, not just the one that was refused
    assert limits.bucket("card.create").held_until >= start + FAST.throttle_wait
    assert limits.bucket("card.update").held_until == float("-inf")


async def test_permanent_errors_are_not_retryable(fake: FakeDingTalk, api: DingTalkApi) -> None:
    fake.script(CREATE, (400, {"code": "param.contentUnsafe", "message": "内容不安全"}))
    with pytest.raises(PermanentError) as err:
        await api.create_and_deliver_card("tpl.schema", "offb-16-emp", "emp001", {})
    assert not err.value.retryable and "param.contentUnsafe" in str(err.value)
    assert fake.requests.count(("POST", CREATE)) == 1


async def test_manager_falls_back_to_the_department_head_then_up_the_tree(fake: FakeDingTalk,
                                                                          api: DingTalkApi) -> None:
    fake.users["dev002"] = {"userid": "dev002", "name": "赵六", "dept_id_list": [4]}  # no manager_userid
    fake.users["cto001"] = {"userid": "cto001", "name": "钱七", "dept_id_list": [2],
                            "leader_in_dept": [{"dept_id": 2, "leader": True}]}
    assert await manager_of(api, await api.get_user("emp001")) == "mgr001"  # manager_userid
    assert await manager_of(api, await api.get_user("dev002")) == "mgr001"  # head of dept 4
    assert await manager_of(api, await api.get_user("mgr001")) == "cto001"  # heads dept 4: parent's head
    assert await manager_of(api, await api.get_user("cto001")) is None  # nobody above


async def test_batch_send_goes_20_users_per_request_and_reports_unknown_ones(fake: FakeDingTalk,
                                                                            api: DingTalkApi) -> None:
    users = ["emp001", *[f"ghost{i}" for i in range(43)], "mgr001"]
    results = await api.send_oto(users, "sampleText", {"content": "通知"})
    assert [len(b["userIds"]) for b in fake.oto] == [20, 20, 5]
    assert [u for b in fake.oto for u in b["userIds"]] == users
    assert sorted(u for r in results for u in r.invalid) == sorted(f"ghost{i}" for i in range(43))
