"""Inbound through the real dingtalk-stream SDK code path against the fake gateway (own thread)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.platforms.dingtalk.inbound import CardCallback, Inbound, TextMessage
from bot.platforms.dingtalk.stream import Backoff, StreamClient
from tests.platforms.dingtalk.fake import (
    CLIENT_ID,
    CLIENT_SECRET,
    FakeDingTalk,
    bot_frame,
    card_frame,
    disconnect_frame,
    ping_frame,
)


class Recorder:
    """The connector's dispatch: records events; `gate` (when set up) holds a dispatch open."""

    def __init__(self) -> None:
        self.events: list[Inbound] = []
        self.entered = asyncio.Event()
        self.gate: asyncio.Event | None = None
        self.fail_next = False
        self.answer: dict[str, Any] | None = None

    async def __call__(self, event: Inbound) -> dict[str, Any] | None:
        self.events.append(event)
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("transaction failed")
        return self.answer


def make_client(fake: FakeDingTalk, dispatch: Recorder, secret: str = CLIENT_SECRET) -> StreamClient:
    return StreamClient(CLIENT_ID, secret, dispatch, open_url=fake.open_url, http_timeout=5,
                        backoff=Backoff(base=0.05, cap=0.2))


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
async def client(fake: FakeDingTalk, rec: Recorder) -> AsyncIterator[StreamClient]:
    c = make_client(fake, rec)
    task = asyncio.create_task(c.start())
    await asyncio.to_thread(fake.wait_connections, 1)
    yield c
    await c.stop()
    assert task.done()


async def ack(fake: FakeDingTalk, message_id: str) -> dict[str, Any]:
    return await asyncio.to_thread(fake.wait_ack, message_id)


async def test_open_connection_subscribes_to_bot_messages_and_card_callbacks(fake: FakeDingTalk,
                                                                             client: StreamClient) -> None:
    body = fake.opens[0]
    assert body["clientId"] == CLIENT_ID and body["clientSecret"] == CLIENT_SECRET
    assert {s["topic"] for s in body["subscriptions"]} == {"/v1.0/im/bot/messages/get",
                                                           "/v1.0/card/instances/callback"}
    assert all(s["type"] == "CALLBACK" for s in body["subscriptions"])


async def test_text_frame_is_dispatched_and_acked_only_after_dispatch_returned(
        fake: FakeDingTalk, client: StreamClient, rec: Recorder) -> None:
    rec.gate = asyncio.Event()
    fake.push(bot_frame("m1", "/offboard emp001", sender="hr001"))
    await asyncio.wait_for(rec.entered.wait(), 10)
    # A ping pushed after the message is ACKed; the message, still being dispatched, is not.
    fake.push(ping_frame("p1", "opaque-1"))
    await ack(fake, "p1")
    assert fake.acks.get("m1", []) == []
    rec.gate.set()
    answer = await ack(fake, "m1")
    assert answer["code"] == 200 and json.loads(answer["data"]) == {"response": "OK"}
    (event,) = rec.events
    assert isinstance(event, TextMessage)
    assert (event.sender_user_id, event.conversation, event.text, event.msg_id, event.message_id) == \
        ("hr001", "single", "/offboard emp001", "msg-m1", "m1")


async def test_group_at_mention_is_a_group_text(fake: FakeDingTalk, client: StreamClient, rec: Recorder) -> None:
    fake.push(bot_frame("g1", "/status", sender="hr002", group=True))
    await ack(fake, "g1")
    (event,) = rec.events
    assert isinstance(event, TextMessage)
    assert (event.conversation, event.conversation_id, event.sender_user_id) == ("group", "cidGroup==", "hr002")


async def test_same_message_id_twice_dispatches_once_and_acks_both(fake: FakeDingTalk, client: StreamClient,
                                                                   rec: Recorder) -> None:
    rec.gate = asyncio.Event()
    f = bot_frame("dup1", "/offboard emp001")
    fake.push(f, f)  # the second arrives while the first is still being dispatched
    await asyncio.wait_for(rec.entered.wait(), 10)
    rec.gate.set()
    await ack(fake, "dup1")
    fake.push(f)  # and once more after it was ACKed
    await asyncio.to_thread(fake.wait_ack, "dup1", 10.0, 3)
    assert len(rec.events) == 1
    assert [a["code"] for a in fake.acks["dup1"]] == [200, 200, 200]


async def test_redelivery_under_a_new_message_id_with_the_same_msg_id_dispatches_once(
        fake: FakeDingTalk, client: StreamClient, rec: Recorder) -> None:
    fake.push(bot_frame("r1", "/offboard emp001", msg_id="msgX"))
    await ack(fake, "r1")
    fake.push(bot_frame("r2", "/offboard emp001", msg_id="msgX"))
    assert (await ack(fake, "r2"))["code"] == 200
    assert len(rec.events) == 1


async def test_failed_dispatch_is_not_acked_and_a_redelivery_is_dispatched_again(
        fake: FakeDingTalk, client: StreamClient, rec: Recorder) -> None:
    rec.fail_next = True
    f = bot_frame("f1", "/offboard emp001")
    fake.push(f)
    fake.push(ping_frame("p2", "y"))
    await ack(fake, "p2")
    await asyncio.wait_for(rec.entered.wait(), 10)
    fake.push(ping_frame("p3", "z"))  # frames are handled concurrently: one more round trip
    await ack(fake, "p3")
    assert fake.acks.get("f1", []) == []
    fake.push(f)
    assert (await ack(fake, "f1"))["code"] == 200
    assert len(rec.events) == 2


async def test_ping_ack_echoes_opaque(fake: FakeDingTalk, client: StreamClient) -> None:
    assert client.last_system_frame == 0.0
    fake.push(ping_frame("ping-7", "opaque-abc"))
    answer = await ack(fake, "ping-7")
    assert answer["code"] == 200
    assert json.loads(answer["data"]) == {"opaque": "opaque-abc"}
    assert client.last_system_frame > 0  # what a watchdog reads


async def test_card_callback_becomes_a_card_action_with_form_values_and_the_ack_carries_the_answer(
        fake: FakeDingTalk, client: StreamClient, rec: Recorder) -> None:
    rec.answer = {"cardData": {"cardParamMap": {"status": "已驳回"}}}
    fake.push(card_frame("c1", "offb-42-mgr", "mgr001", {"action": "reject", "reason": "材料不全"},
                         action_id="reject"))
    answer = await ack(fake, "c1")
    assert json.loads(answer["data"]) == {"response": {"cardData": {"cardParamMap": {"status": "已驳回"}}}}
    (event,) = rec.events
    assert isinstance(event, CardCallback)
    assert (event.out_track_id, event.user_id, event.action, event.params["reason"], event.space_type) == \
        ("offb-42-mgr", "mgr001", "reject", "材料不全", "IM_ROBOT")


async def test_unreadable_card_callback_is_acked_400_not_dispatched(fake: FakeDingTalk, client: StreamClient,
                                                                    rec: Recorder) -> None:
    f = card_frame("bad1", "", "mgr001", {})
    fake.push(f)
    assert (await ack(fake, "bad1"))["code"] == 400
    assert rec.events == []


async def test_disconnect_frame_reconnects_and_frames_flow_on_the_new_socket(
        fake: FakeDingTalk, client: StreamClient, rec: Recorder) -> None:
    fake.push(disconnect_frame("d1"))
    await asyncio.to_thread(fake.wait_connections, 2)
    assert len(fake.opens) == 2  # a new ticket for the new socket
    fake.push(bot_frame("after-d", "/help"))
    await ack(fake, "after-d")
    assert [e.text for e in rec.events if isinstance(e, TextMessage)] == ["/help"]


async def test_dropped_socket_reconnects(fake: FakeDingTalk, client: StreamClient, rec: Recorder) -> None:
    fake.drop_socket()
    await asyncio.to_thread(fake.wait_connections, 2)
    fake.push(bot_frame("after-drop", "/help"))
    await ack(fake, "after-drop")
    assert len(rec.events) == 1


async def test_stop_finishes_the_dispatch_in_flight_acks_it_and_leaves_no_task(fake: FakeDingTalk,
                                                                                rec: Recorder) -> None:
    before = asyncio.all_tasks()
    c = make_client(fake, rec)
    task = asyncio.create_task(c.start())
    await asyncio.to_thread(fake.wait_connections, 1)
    rec.gate = asyncio.Event()
    fake.push(bot_frame("s1", "/offboard emp001"))
    await asyncio.wait_for(rec.entered.wait(), 10)
    stopping = asyncio.create_task(c.stop())
    await asyncio.sleep(0)
    rec.gate.set()
    await stopping
    assert (await ack(fake, "s1"))["code"] == 200
    assert task.done()
    assert asyncio.all_tasks() - before == set()
    await asyncio.to_thread(fake.wait_disconnected)


async def test_wrong_secret_never_connects_and_one_stop_ends_the_retry_loop(fake: FakeDingTalk,
                                                                             rec: Recorder) -> None:
    before = asyncio.all_tasks()
    c = make_client(fake, rec, secret="wrong")
    task = asyncio.create_task(c.start())
    for _ in range(5):  # let it fail and back off a few times
        await asyncio.sleep(0.05)
    await c.stop()
    assert task.done()
    assert c.connections == 0 and fake.connections == 0
    assert asyncio.all_tasks() - before == set()


async def test_one_cancel_ends_start(fake: FakeDingTalk, rec: Recorder) -> None:
    # 0.24.3's own start() catches CancelledError and sleeps 10 s; ours must end on the first cancel.
    before = asyncio.all_tasks()
    c = make_client(fake, rec)
    task = asyncio.create_task(c.start())
    await asyncio.to_thread(fake.wait_connections, 1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
    assert asyncio.all_tasks() - before == set()


async def test_gateway_answer_without_endpoint_is_retried_not_fatal(fake: FakeDingTalk, rec: Recorder) -> None:
    # With websockets >= 14 this answer killed 0.24.3's start() (lazy websockets.exceptions).
    fake.script("/v1.0/gateway/connections/open", (200, {}), (500, {"code": "ServiceUnavailable"}))
    c = make_client(fake, rec)
    task = asyncio.create_task(c.start())
    await asyncio.to_thread(fake.wait_connections, 1)
    assert len(fake.opens) == 3 and not task.done()
    fake.push(bot_frame("e1", "/help"))
    await ack(fake, "e1")
    await c.stop()
    assert task.done()


async def test_a_slow_gateway_does_not_freeze_the_event_loop(fake: FakeDingTalk, rec: Recorder) -> None:
    # The SDK's open_connection is a sync requests call. The fake answers only after this test's
    # coroutine has run while the request is pending: if the call blocked the loop, the request
    # would time out first and a second open would be needed.
    fake.open_gate = threading.Event()
    c = StreamClient(CLIENT_ID, CLIENT_SECRET, rec, open_url=fake.open_url, http_timeout=3,
                     backoff=Backoff(base=0.05, cap=0.2))
    task = asyncio.create_task(c.start())
    await asyncio.to_thread(fake.wait_opens, 1)
    for _ in range(3):
        await asyncio.sleep(0)
    fake.open_gate.set()
    await asyncio.to_thread(fake.wait_connections, 1)
    assert len(fake.opens) == 1
    await c.stop()
    assert task.done()


async def test_the_secret_is_never_logged(fake: FakeDingTalk, rec: Recorder, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake.script("/v1.0/gateway/connections/open", (500, {"code": "busy"}))
    c = make_client(fake, rec)
    task = asyncio.create_task(c.start())
    await asyncio.to_thread(fake.wait_connections, 1)
    fake.push(bot_frame("l1", "/help"))
    await ack(fake, "l1")
    await c.stop()
    assert task.done()
    assert "open connection failed" in caplog.text  # the failure is logged, without the request body
    assert CLIENT_SECRET not in caplog.text and CLIENT_SECRET not in repr(c)
