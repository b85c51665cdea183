"""The DingTalk connector on the contract, against the fake DingTalk (own thread) through the real
SDK code path: inbound frames → dispatch → ACK, outbound cards/texts, errors, budget, sign-in."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr

import bot.platforms.dingtalk as dingtalk
from bot.platforms.dingtalk.config import load
from bot.platforms.dingtalk.connector import DingTalkConnector
from bot.platforms.dingtalk.stream import Backoff
from cards.model import Button, Card
from chat.connector import (
    Address,
    Answer,
    CardAction,
    ConfigError,
    Connector,
    ConnectorEnv,
    Delivery,
    DeliveryError,
    IdentityError,
    InboundEvent,
    PermanentDeliveryError,
    TextMessage,
)
from config.settings import Settings
from storage import usage
from storage.models import Employee
from tests.platforms.dingtalk.fake import CLIENT_ID, CLIENT_SECRET, FakeDingTalk, bot_frame, card_frame, ping_frame

ENV = ConnectorEnv(public_base_url="http://127.0.0.1:8080", language="zh")
TEMPLATE = "offboard.schema"


def settings_for(fake: FakeDingTalk, **more: Any) -> Any:
    return load(None, client_id=CLIENT_ID, client_secret=SecretStr(CLIENT_SECRET), card_template_id=TEMPLATE,
                api_base=fake.base, oapi_base=fake.base, login_url=f"{fake.base}/login", **more)


class Dispatcher:
    """The core's dispatch: records events, answers what the test says, and can hold one open."""

    def __init__(self) -> None:
        self.events: list[InboundEvent] = []
        self.entered = asyncio.Event()
        self.gate: asyncio.Event | None = None
        self.answer = Answer(ok=True, text="已收到")

    async def __call__(self, event: InboundEvent) -> Answer:
        self.events.append(event)
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        return self.answer


@pytest.fixture
async def conn(fake: FakeDingTalk, db: Settings) -> AsyncIterator[DingTalkConnector]:
    c = DingTalkConnector(settings_for(fake), ENV, backoff=Backoff(base=0.05, cap=0.2))
    yield c
    await c.stop()


@pytest.fixture
async def running(fake: FakeDingTalk, conn: DingTalkConnector) -> AsyncIterator[tuple[DingTalkConnector, Dispatcher]]:
    d = Dispatcher()
    await conn.start(d)
    await asyncio.to_thread(fake.wait_connections, 1)
    yield conn, d


def step_card(**kw: Any) -> Card:
    base: dict[str, Any] = dict(
        title="签署离职保证书", summary="李四 的离职流程", progress="第 5 步 / 共 9 步", status="等待你操作",
        tone="action", fields=(("员工", "李四"),), body="**请签署**",
        buttons=(Button("标记完成", action="complete", enabled=False, reason="需先完成：已签署的《离职保证书》"),
                 Button("打开签署页", url="https://bot.example/sign/abc")),
        case_id="C1", step_id="guarantee", purpose="step")
    base.update(kw)
    return Card(**base)


# ---------------------------------------------------------------- settings and the contract

def test_create_names_every_missing_setting_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("CLIENT_ID", "CLIENT_SECRET", "CARD_TEMPLATE_ID"):
        monkeypatch.delenv(f"DINGTALK_{k}", raising=False)
    monkeypatch.setenv("DINGTALK_CLIENT_ID", "ding-app")
    with pytest.raises(ConfigError) as err:
        dingtalk.create(ConnectorEnv("http://x", "zh", env_file="/nonexistent"))
    msg = str(err.value)
    assert "DINGTALK_CLIENT_SECRET" in msg and "DINGTALK_CARD_TEMPLATE_ID" in msg and "\n" not in msg
    assert "DINGTALK_CLIENT_ID" not in msg
    monkeypatch.setenv("DINGTALK_RATE_PER_SECOND", "-1")
    with pytest.raises(ConfigError, match="DINGTALK_RATE_PER_SECOND"):
        dingtalk.create(ConnectorEnv("http://x", "zh", env_file="/nonexistent"))


def test_create_reads_its_own_settings_and_is_a_connector(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DINGTALK_CLIENT_ID", "ding-app")
    monkeypatch.setenv("DINGTALK_CLIENT_SECRET", "s3")
    monkeypatch.setenv("DINGTALK_CARD_TEMPLATE_ID", "t.schema")
    monkeypatch.setenv("DINGTALK_RATE_PER_SECOND", "15")
    monkeypatch.setenv("DINGTALK_API_BASE", "http://127.0.0.1:1")
    c = dingtalk.create(ConnectorEnv("http://x", "zh", env_file="/nonexistent"))
    assert isinstance(c, Connector)
    assert c.settings.robot == "ding-app"  # robot code defaults to the client id
    assert c.settings.open_url == "http://127.0.0.1:1/v1.0/gateway/connections/open"
    assert c.limits.rate_per_second == 15 and c.limits.concurrency > 1
    assert c.capabilities.card_inputs is False and c.identity is not None and c.directory is not None
    assert "s3" not in repr(c)


# ---------------------------------------------------------------- inbound

async def test_command_frame_is_dispatched_acked_after_and_answered_through_the_session_webhook(
        fake: FakeDingTalk, running: tuple[DingTalkConnector, Dispatcher]) -> None:
    _, d = running
    d.gate = asyncio.Event()
    fake.push(bot_frame("m1", "/离职 李四", sender="hr001", webhook=fake.session_webhook))
    await asyncio.wait_for(d.entered.wait(), 10)
    fake.push(ping_frame("p1", "o"))
    await asyncio.to_thread(fake.wait_ack, "p1")
    assert fake.acks.get("m1", []) == []  # not ACKed while dispatch (the transaction) runs
    assert fake.session_replies == [] and fake.token_requests == 0  # nothing slow before the ACK
    d.gate.set()
    assert (await asyncio.to_thread(fake.wait_ack, "m1"))["code"] == 200
    await asyncio.to_thread(fake.wait_for, lambda: len(fake.session_replies) == 1)
    assert fake.session_replies[0]["text"] == {"content": "已收到"}
    (event,) = d.events
    assert isinstance(event, TextMessage)
    assert (event.platform, event.sender, event.text, event.event_id) == ("dingtalk", "hr001", "/离职 李四",
                                                                           "msg:msg-m1")


async def test_same_message_twice_is_one_dispatch(fake: FakeDingTalk,
                                                  running: tuple[DingTalkConnector, Dispatcher]) -> None:
    _, d = running
    f = bot_frame("m2", "/help", webhook=fake.session_webhook)
    fake.push(f)
    await asyncio.to_thread(fake.wait_ack, "m2")
    fake.push(f)
    await asyncio.to_thread(fake.wait_ack, "m2", 10.0, 2)
    fake.push(bot_frame("m2-again", "/help", msg_id="msg-m2", webhook=fake.session_webhook))  # new frame id
    await asyncio.to_thread(fake.wait_ack, "m2-again")
    assert len(d.events) == 1


async def test_card_callback_becomes_a_card_action_with_form_and_version_key(
        fake: FakeDingTalk, running: tuple[DingTalkConnector, Dispatcher]) -> None:
    _, d = running
    fake.push(card_frame("c1", "case1-step-E002", "mgr001",
                         {"action": "approve", "v": "abc123", "result": "完成率 60%"}, action_id="approve"))
    answer = await asyncio.to_thread(fake.wait_ack, "c1")
    assert answer["code"] == 200 and json.loads(answer["data"]) == {"response": {}}
    (event,) = d.events
    assert isinstance(event, CardAction)
    assert (event.sender, event.card_id, event.action, dict(event.form)) == \
        ("mgr001", "case1-step-E002", "approve", {"result": "完成率 60%"})
    assert event.event_id.startswith("card:case1-step-E002:mgr001:approve:abc123:")
    # The same tap on the same card version, redelivered under another frame id: the same key.
    fake.push(card_frame("c2", "case1-step-E002", "mgr001",
                         {"action": "approve", "v": "abc123", "result": "完成率 60%"}, action_id="approve"))
    await asyncio.to_thread(fake.wait_ack, "c2")
    assert d.events[1].event_id == event.event_id


async def test_a_refused_click_tells_the_clicker_after_the_ack(
        fake: FakeDingTalk, running: tuple[DingTalkConnector, Dispatcher]) -> None:
    _, d = running
    d.answer = Answer(ok=False, code="not_your_card", text="这张卡片不是发给你的，不能在上面操作。")
    fake.push(card_frame("c3", "case1-step-E002", "someone", {"action": "approve", "v": "x"}))
    await asyncio.to_thread(fake.wait_ack, "c3")
    await asyncio.to_thread(fake.wait_for, lambda: len(fake.oto) == 1)
    (sent,) = fake.oto
    assert sent["userIds"] == ["someone"] and "不是发给你的" in json.loads(sent["msgParam"])["content"]


async def test_stop_leaves_no_task(fake: FakeDingTalk, db: Settings) -> None:
    before = asyncio.all_tasks()
    c = DingTalkConnector(settings_for(fake), ENV, backoff=Backoff(base=0.05, cap=0.2))
    await c.start(Dispatcher())
    await asyncio.to_thread(fake.wait_connections, 1)
    fake.push(bot_frame("s1", "/help", webhook=fake.session_webhook))
    await asyncio.to_thread(fake.wait_ack, "s1")
    await c.stop()
    assert asyncio.all_tasks() - before == set()


# ---------------------------------------------------------------- outbound

async def test_send_card_body_and_a_resend_makes_no_second_card(fake: FakeDingTalk,
                                                                conn: DingTalkConnector) -> None:
    to = Address("dingtalk", "emp001", "E003")
    card = step_card()
    first = await conn.send_card(to, card, "C1-guarantee-E003")
    again = await conn.send_card(to, card, "C1-guarantee-E003")
    assert first.message_id == again.message_id == "C1-guarantee-E003" and first.calls == 1
    assert fake.cards_made["C1-guarantee-E003"] == 1
    body = fake.cards["C1-guarantee-E003"]
    assert body["cardTemplateId"] == TEMPLATE and body["callbackType"] == "STREAM"
    assert body["openSpaceId"] == "dtv1.card//IM_ROBOT.emp001"
    assert body["imRobotOpenDeliverModel"] == {"spaceType": "IM_ROBOT", "robotCode": CLIENT_ID}
    params = body["cardData"]["cardParamMap"]
    assert all(isinstance(v, str) for v in params.values())
    buttons = json.loads(params["buttons"])
    locked, link = buttons
    assert (locked["disabled"], locked["kind"]) == (True, "action")
    assert locked["reason"] == "需先完成：已签署的《离职保证书》"
    assert locked["params"]["action"] == "complete" and locked["params"]["v"]
    assert link["kind"] == "link" and "https%3A%2F%2Fbot.example%2Fsign%2Fabc" in link["open_url"]
    assert params["lock_reason"] == "需先完成：已签署的《离职保证书》"


async def test_update_sends_only_changed_variables_and_nothing_when_nothing_changed(
        fake: FakeDingTalk, conn: DingTalkConnector, db: Settings) -> None:
    to = Address("dingtalk", "emp001")
    sent = await conn.send_card(to, step_card(), "C1-g")
    same = await conn.update_card(to, step_card(), "C1-g", Delivery.from_json(sent.to_json()))  # type: ignore[arg-type]
    assert same.calls == 0 and fake.updates == []
    unlocked = step_card(status="可以完成了", buttons=(Button("标记完成", action="complete"),))
    done = await conn.update_card(to, unlocked, "C1-g", same)
    (body,) = fake.updates
    assert body["outTrackId"] == "C1-g" and body["cardUpdateOptions"]["updateCardDataByKey"] is True
    changed = body["cardData"]["cardParamMap"]
    assert {"status", "buttons", "lock_reason"} <= set(changed) and "title" not in changed
    assert json.loads(changed["buttons"])[0]["disabled"] is False
    assert done.calls == 1 and done.state["h"] != sent.state["h"]
    assert done.state["k"]["buttons"] != sent.state["k"]["buttons"]
    assert done.state["k"]["title"] == sent.state["k"]["title"]
    assert (await usage.month_usage())[0].calls == 2  # one create, one update: the no-op cost nothing


async def test_token_expiry_mid_run_is_refetched_once(fake: FakeDingTalk, conn: DingTalkConnector) -> None:
    to = Address("dingtalk", "emp001")
    await conn.send_card(to, step_card(), "C2-a")
    fake.expire_tokens()
    await conn.send_card(to, step_card(), "C2-b")
    assert fake.token_requests == 2 and set(fake.cards_made) == {"C2-a", "C2-b"}


async def test_throttling_is_retried_and_delivered_once(fake: FakeDingTalk, conn: DingTalkConnector) -> None:
    throttled = (403, {"code": "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi", "message": "调用过于频繁"})
    fake.script("/v1.0/card/instances/createAndDeliver", throttled, throttled)
    d = await conn.send_card(Address("dingtalk", "emp001"), step_card(), "C3")
    assert fake.card_requests["C3"] == 3 and fake.cards_made["C3"] == 1 and d.calls == 3


async def test_throttling_that_persists_is_a_retryable_error(fake: FakeDingTalk, conn: DingTalkConnector) -> None:
    throttled = (403, {"code": "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"})
    fake.script("/v1.0/card/instances/createAndDeliver", *[throttled] * 4)
    with pytest.raises(DeliveryError) as err:
        await conn.send_card(Address("dingtalk", "emp001"), step_card(), "C3b")
    assert err.value.transient and err.value.retry_after and not isinstance(err.value, PermanentDeliveryError)


async def test_permission_error_is_permanent_with_the_fix_and_not_retried(fake: FakeDingTalk,
                                                                         conn: DingTalkConnector) -> None:
    fake.script("/v1.0/card/instances/createAndDeliver",
                (403, {"code": "Forbidden.AccessDenied.AccessTokenPermissionDenied", "message": "没有权限",
                       "accessdenieddetail": {"requiredScopes": ["Card.Instance.Write"]}}))
    with pytest.raises(PermanentDeliveryError) as err:
        await conn.send_card(Address("dingtalk", "emp001"), step_card(), "C4")
    assert "Card.Instance.Write" in err.value.hint and "权限管理" in err.value.hint
    assert fake.card_requests["C4"] == 1  # one request, no retry storm


async def test_unpublished_template_and_unknown_user_are_permanent(fake: FakeDingTalk,
                                                                   conn: DingTalkConnector) -> None:
    fake.script("/v1.0/card/instances/createAndDeliver", (400, {"code": "cardInstance.wrong"}))
    with pytest.raises(PermanentDeliveryError, match=r"未发布|not published"):
        await conn.send_card(Address("dingtalk", "emp001"), step_card(), "C5")
    with pytest.raises(PermanentDeliveryError) as err:
        await conn.send_text(Address("dingtalk", "ghost"), "hi", "t-ghost")
    assert "ghost" in str(err.value) and err.value.hint


async def test_send_text_is_a_robot_one_to_one_and_not_sent_twice_for_one_key(
        fake: FakeDingTalk, conn: DingTalkConnector) -> None:
    to = Address("dingtalk", "emp001")
    a = await conn.send_text(to, "你好", "k1")
    b = await conn.send_text(to, "你好", "k1")
    assert a == b and len(fake.oto) == 1
    assert fake.oto[0]["msgKey"] == "sampleText" and fake.oto[0]["robotCode"] == CLIENT_ID


# ---------------------------------------------------------------- the monthly budget

async def test_budget_is_counted_and_hr_is_warned_once_at_80_percent(fake: FakeDingTalk, db: Settings) -> None:
    await Employee.create(employee_id="H1", name="HR", roles="hr", dingtalk_userid="hr001")
    await Employee.create(employee_id="X1", name="other", roles="", dingtalk_userid="emp001")
    c = DingTalkConnector(settings_for(fake, monthly_calls=5), ENV)
    try:
        to = Address("dingtalk", "emp001")
        for i in range(3):
            await c.send_card(to, step_card(), f"B{i}")
        assert fake.oto == []
        await c.send_card(to, step_card(), "B3")  # 4 of 5 = 80 %
        await asyncio.to_thread(fake.wait_for, lambda: len(fake.oto) == 1)
        await c.send_card(to, step_card(), "B4")
        await asyncio.sleep(0.2)
        (warning,) = fake.oto
        assert warning["userIds"] == ["hr001"] and "80%" in json.loads(warning["msgParam"])["content"]
        u = await c.usage()
        assert u is not None and u.calls == 6 and u.quota == 5 and u.warned  # the warning text counted too
        assert "6 / 5" in u.line("zh").replace(",", "")
    finally:
        await c.stop()


# ---------------------------------------------------------------- sign-in and directory

async def test_oauth_sign_in_and_in_app_auth_code(fake: FakeDingTalk, conn: DingTalkConnector) -> None:
    url = conn.identity.authorize_url("http://127.0.0.1:8080/sign/t/oauth/dingtalk", "st4te")
    assert url.startswith(f"{fake.base}/login?") and f"client_id={CLIENT_ID}" in url and "state=st4te" in url
    fake.oauth_codes["CODE1"] = "emp001"
    assert await conn.identity.user_id({"code": "CODE1"}) == "emp001"
    with pytest.raises(IdentityError):
        await conn.identity.user_id({"code": "CODE1"})  # single use
    fake.oauth_codes["AUTH1"] = "mgr001"
    assert await conn.identity.user_id({"authCode": "AUTH1"}) == "mgr001"
    with pytest.raises(IdentityError):
        await conn.identity.user_id({})
    fake.oauth_codes["CODE2"] = "stranger"  # signs in fine but is not in the org
    with pytest.raises(IdentityError):
        await conn.identity.user_id({"code": "CODE2"})


async def test_directory_lists_users_with_managers(fake: FakeDingTalk, conn: DingTalkConnector) -> None:
    users = {u.user_id: u async for u in conn.directory.users()}
    assert set(users) == {"emp001", "mgr001"}
    assert users["emp001"].manager_user_id == "mgr001" and users["emp001"].department == "后端组"
    assert users["emp001"].title == "工程师"
    assert await conn.directory.user("nobody") is None
    one = await conn.directory.user("emp001")
    assert one is not None and one.name == "李四"


def _link(claims: dict[str, Any]) -> str:
    raw = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"http://127.0.0.1:8080/sign/{raw}.c2lnbmF0dXJl"


async def test_a_link_minted_again_for_the_same_page_is_no_update(fake: FakeDingTalk,
                                                                   conn: DingTalkConnector) -> None:
    to = Address("dingtalk", "emp001")
    soon = int(time.time()) + 72 * 3600

    def card(nonce: str, expires: int, step: str = "guarantee", status: str = "等待你签署") -> Card:
        url = _link({"c": "OB-1", "e": expires, "n": nonce, "s": step, "u": "E003"})
        return step_card(status=status, buttons=(Button("去签署", url=url),))

    sent = await conn.send_card(to, card("n1", soon), "L1")
    same = await conn.update_card(to, card("n2", soon + 5), "L1", sent)
    assert same.calls == 0 and fake.updates == []  # a fresh nonce and expiry: the same page
    status_only = await conn.update_card(to, card("n3", soon + 9, status="已签署"), "L1", same)
    assert status_only.calls == 1 and set(fake.updates[-1]["cardData"]["cardParamMap"]) == {"status"}
    other = await conn.update_card(to, card("n4", soon + 9, step="handover"), "L1", status_only)
    assert other.calls == 1 and "buttons" in fake.updates[-1]["cardData"]["cardParamMap"]  # another page
    # The links the card holds expire within a day: the next render's links are sent.
    aged = Delivery(message_id="L1", state={**other.state, "exp": time.time() + 3600})
    await conn.update_card(to, card("n5", soon + 20, step="handover"), "L1", aged)
    assert len(fake.updates) == 3 and "n5" in base64.urlsafe_b64decode(
        json.loads(fake.updates[-1]["cardData"]["cardParamMap"]["buttons"])[0]["url"].rsplit("/", 1)[1]
        .split(".")[0] + "==").decode()


async def test_group_mention_is_a_text_with_its_chat_and_the_answer_mentions_the_sender(
        fake: FakeDingTalk, running: tuple[DingTalkConnector, Dispatcher]) -> None:
    _, d = running
    fake.push(bot_frame("g1", "@离职助手 /状态 张三", sender="hr002", group=True, webhook=fake.session_webhook))
    await asyncio.to_thread(fake.wait_ack, "g1")
    await asyncio.to_thread(fake.wait_for, lambda: len(fake.session_replies) == 1)
    (event,) = d.events
    assert isinstance(event, TextMessage) and event.chat_id == "cidGroup==" and event.sender == "hr002"
    assert fake.session_replies[0]["at"] == {"atUserIds": ["hr002"]}


async def test_an_expired_session_webhook_falls_back_to_a_robot_message(
        fake: FakeDingTalk, running: tuple[DingTalkConnector, Dispatcher]) -> None:
    frame = bot_frame("x1", "/help", sender="emp001", webhook=fake.session_webhook)
    data = json.loads(frame["data"])
    data["sessionWebhookExpiredTime"] = int(time.time() * 1000) - 1000
    frame["data"] = json.dumps(data)
    fake.push(frame)
    await asyncio.to_thread(fake.wait_for, lambda: len(fake.oto) == 1)
    assert fake.session_replies == [] and fake.oto[0]["userIds"] == ["emp001"]
