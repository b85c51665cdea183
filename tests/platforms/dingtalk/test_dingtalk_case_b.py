"""The whole Case B over the fake DingTalk, through the real app and the real SDK code path: HR's
command in the robot chat, every card delivered with createAndDeliver and updated in place, every
tap a Stream card callback, every signing link opened from its card and confirmed through DingTalk
sign-in, the guarantee-letter lock and its release; plus the refusals (someone else's card, a
replayed callback) and the API calls the case cost."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from config.settings import Settings
from storage import usage
from storage.models import Case, CaseStep, Document, InboxEvent
from tests.platforms.dingtalk.caseb import (
    EMPLOYEE,
    FINANCE,
    HR,
    MANAGER,
    START,
    TEMPLATE,
    Phones,
    counted_calls,
    dingtalk_app,
    drive,
    dt,
    fake_for_demo,
    settled,
    whole_case,
)
from tests.platforms.dingtalk.fake import CLIENT_ID, FakeDingTalk

pytestmark = pytest.mark.slow


@pytest.fixture
async def world(demo_org: Settings) -> AsyncIterator[tuple[Phones, FakeDingTalk, str]]:
    fake = fake_for_demo().start()
    try:
        async with dingtalk_app(demo_org, fake) as (base, _), \
                aiohttp.ClientSession(base_url=None, cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            yield Phones(fake, http), fake, base
    finally:
        fake.stop()


async def test_case_b_end_to_end_over_dingtalk(world: tuple[Phones, FakeDingTalk, str]) -> None:
    phones, fake, _ = world
    answer = await phones.say(HR, START)
    assert "已为 张三" in answer["text"]["content"]
    case = await Case.filter(template_id="probation").first()
    assert case is not None

    # The employee's first card: created once, in the robot's 1:1 chat, calling back over Stream.
    app_card = await phones.wait_card(EMPLOYEE, lambda h: h.variables.get("step_id") == "application",
                                      "the application card")
    body = fake.cards[app_card.out_track_id]
    assert body["cardTemplateId"] == TEMPLATE and body["callbackType"] == "STREAM"
    assert body["openSpaceId"] == f"dtv1.card//IM_ROBOT.{dt(EMPLOYEE)}"
    assert body["imRobotOpenDeliverModel"]["robotCode"] == CLIENT_ID
    # The step asks for text the card cannot hold: its button opens the step's web form.
    assert app_card.card.title and any("/form/" in b.url for b in app_card.card.buttons if b.url)
    summary = await phones.wait_card(HR, lambda h: h.variables.get("purpose") == "summary", "HR's summary")

    # Someone else taps HR's card: refused, nothing changes, they are told why.
    action = next(b["action"] for b in json.loads(summary.variables["buttons"]) if b["action"])
    refused = await phones.tap(MANAGER, summary, action)
    assert not refused["ok"] and refused["code"] == "not_your_card"
    await asyncio.to_thread(fake.wait_for, lambda: any(o["userIds"] == [dt(MANAGER)] for o in fake.oto))
    assert (await CaseStep.get(case_id=case.id, step_id="application")).status == "active"

    locked_seen: list[str] = []

    async def each(step_id: str) -> None:
        # Every step settles before the next (steps are hours apart in real life), so the calls
        # counted below are what a real case costs, not what merged updates would hide.
        await settled()
        if step_id == "guarantee" and not locked_seen:
            # The guarantee letter is the flow lock: the employee's card waits for it, finance has no
            # back-payment card yet, and HR's progress (the free answer to /进度) shows the step locked.
            held = await phones.wait_card(EMPLOYEE, lambda h: h.variables.get("step_id") == "guarantee"
                                          and h.link() is not None, "the guarantee letter")
            assert held.variables["status"] == "等待：已签署的《离职保证书》"
            assert not [h for h in phones.held(FINANCE) if h.variables.get("step_id") == "backpay"]
            progress = (await phones.say(HR, f"/进度 {case.id}"))["text"]["content"]
            assert "🔒 6. 财务确认社保补缴" in progress, progress
            locked_seen.append(progress)

    steps = await drive(phones, case.id, on_step=each)
    assert "application:submit by E003 (web form)" in steps and "guarantee:signed by E003" in steps
    assert locked_seen, "the guarantee-letter lock was never shown"
    # The lock released: finance got the back-payment card and confirmed on it.
    assert "backpay:confirm by E004 (web form)" in steps

    await phones.wait_card(EMPLOYEE, lambda h: h.variables.get("purpose") == "completion", "the completion card")
    case = await Case.get(id=case.id)
    assert case.status == "completed"
    docs = await Document.filter(case_id=case.id)
    assert docs and all(d.status == "sealed" for d in docs)

    # Cards were updated in place: never a second card per outTrackId, updates by key on known cards.
    assert all(n == 1 for n in fake.cards_made.values())
    assert fake.updates and all(u["outTrackId"] in fake.cards for u in fake.updates)
    # HR's summary never changed (every update costs budget): it links to the live page, and the
    # end of the case reached HR as the completion card.
    assert not [u for u in fake.updates if u["outTrackId"] == summary.out_track_id]
    assert summary.button("remind") is not None and "/dashboard/case/" + case.id in str(summary.link())
    await phones.wait_card(HR, lambda h: h.variables.get("purpose") == "completion", "HR's completion card")
    # The clicked card of a plain tap changed through the click's ACK, at no cost.
    assert [u for u in fake.updates if u.get("via") == "ack"]

    # Every budget-counted call the fake saw is in this month's count, within the budget target.
    await settled()
    counted, _, by_path = counted_calls(fake)
    u = next(x for x in await usage.month_usage() if x.platform == "dingtalk")
    assert u.calls == counted, by_path
    # One robot message told the manager why their tap on HR's card was refused: not the case's cost.
    assert by_path.get("/v1.0/robot/oToMessages/batchSend") == 1
    assert 0 < counted - 1 <= 25, by_path


async def test_with_update_in_reply_off_the_clicked_card_changes_by_put(demo_org: Settings) -> None:
    """DINGTALK_UPDATE_IN_REPLY=false (for a tenant whose client ignores a callback's card data):
    the clicked card is updated by a PUT like every other, and the ACK carries nothing."""
    fake = fake_for_demo().start()
    try:
        async with dingtalk_app(demo_org, fake, DINGTALK_UPDATE_IN_REPLY="false"), \
                aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            phones = Phones(fake, http)
            await whole_case(phones)
            ack = next(h for h in phones.held(EMPLOYEE) if h.variables.get("step_id") == "rights_notice")
            puts = [u for u in fake.updates if u["outTrackId"] == ack.out_track_id]
            assert puts and "确认知悉" in puts[-1]["cardData"]["cardParamMap"]["status"]
            assert not [u for u in fake.updates if u.get("via") == "ack"]
    finally:
        fake.stop()


async def test_a_replayed_callback_has_one_effect(world: tuple[Phones, FakeDingTalk, str]) -> None:
    phones, _, _ = world
    await phones.say(HR, START)
    held = await phones.wait_card(HR, lambda h: h.variables.get("purpose") == "summary", "HR's summary")
    action = next(b["action"] for b in json.loads(held.variables["buttons"]) if b["action"])
    first = await phones.tap(HR, held, action)
    again = await phones.tap(HR, held, action)  # a redelivery under a new messageId
    assert again == first
    rows = await InboxEvent.filter(dedup_key__startswith=f"dingtalk:card:{held.out_track_id}").count()
    assert rows == 1


async def test_a_permission_error_tells_hr_once_and_is_not_retried(world: tuple[Phones, FakeDingTalk, str]) -> None:
    phones, fake, _ = world
    denied = (403, {"code": "Forbidden.AccessDenied.AccessTokenPermissionDenied", "message": "没有调用该接口的权限",
                    "accessdenieddetail": {"requiredScopes": ["Card.Instance.Write"]}})
    fake.script("/v1.0/card/instances/createAndDeliver", denied)
    await phones.say(HR, START)
    await asyncio.to_thread(fake.wait_for, lambda: any(o["userIds"] == [dt(HR)] for o in fake.oto))
    # The other cards go out (the relay sends recipients side by side: which one was refused varies).
    await asyncio.to_thread(fake.wait_for, lambda: len(fake.cards) >= 1)
    await asyncio.sleep(0.5)  # several relay rounds: a retry would show now
    refused = [oid for oid, n in fake.card_requests.items() if oid not in fake.cards]
    assert len(refused) == 1 and fake.card_requests[refused[0]] == 1  # one request, no retry storm
    (notice,) = [json.loads(o["msgParam"])["content"] for o in fake.oto if o["userIds"] == [dt(HR)]]
    assert "Card.Instance.Write" in notice and "权限管理" in notice
