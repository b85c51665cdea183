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

    async def watch(step_id: str) -> None:
        # At the guarantee-letter step HR's summary shows the locked close button, with its reason.
        if step_id == "guarantee" and not locked_seen:
            held = await phones.wait_card(HR, lambda h: h.variables.get("purpose") == "summary"
                                          and "《离职保证书》" in h.variables.get("lock_reason", ""), "the lock")
            close = next(b for b in json.loads(held.variables["buttons"]) if b["disabled"])
            assert close["reason"] and "《离职保证书》" in close["reason"]
            locked_seen.append(close["label"])

    steps = await drive(phones, case.id, on_step=watch)
    assert "application:submit by E003 (web form)" in steps and "guarantee:signed by E003" in steps
    assert locked_seen, "the guarantee-letter lock was never shown"

    await phones.wait_card(EMPLOYEE, lambda h: h.variables.get("purpose") == "completion", "the completion card")
    case = await Case.get(id=case.id)
    assert case.status == "completed"
    docs = await Document.filter(case_id=case.id)
    assert docs and all(d.status == "sealed" for d in docs)

    # Cards were updated in place: never a second card per outTrackId, updates by key on known cards.
    assert all(n == 1 for n in fake.cards_made.values())
    assert fake.updates and all(u["outTrackId"] in fake.cards for u in fake.updates)
    # The summary's lock was released once the letter was signed.
    final = next(h for h in phones.held(HR) if h.out_track_id == summary.out_track_id)
    assert "《离职保证书》" not in final.variables.get("lock_reason", "")

    # Every budget-counted call the fake saw is in this month's count (bench/dingtalk.py prints the figure).
    await asyncio.sleep(0.5)  # the relay's last updates
    counted, _, _ = counted_calls(fake)
    u = next(x for x in await usage.month_usage() if x.platform == "dingtalk")
    assert u.calls == counted and 0 < counted <= 40


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
