"""WeCom callbacks through the bot's real pipeline (router, service, database, relay): WeCom's retries
make one effect, a click by anyone but the card's holder changes nothing and tells the clicker why,
and a member the bot does not know is fetched from WeCom's address book."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta

import pytest

from config.settings import Settings
from storage.models import AuditEntry, Case, CaseStep, Employee, InboxEvent, OutboxMessage
from tests.platforms.wecom.fake_wecom import CORP_ID
from tests.platforms.wecom.harness import WeComCase
from tests.platforms.wecom.rig import encrypt, text_xml

START = "/离职 张三 试用期 2025-07-31 绩效未达标 交接人:周八"


async def _state() -> tuple:
    return (await Case.all().count(), await OutboxMessage.all().count(),
            await AuditEntry.filter(kind__not="refused").count(),
            tuple(await CaseStep.all().order_by("id").values_list("status", flat=True)))


async def test_the_same_callback_four_times_is_one_effect(wcase: WeComCase) -> None:
    w = wcase
    query, body = encrypt(text_xml("lina", START))
    # WeCom's first try and its three retries, two of them racing each other.
    first = await w.rig.post(query, body)
    rest = await asyncio.gather(*(w.rig.post(query, body) for _ in range(3)))
    assert [first, *rest] == [(200, "")] * 4
    await w.deliver()
    assert await Case.all().count() == 1
    assert await InboxEvent.filter(dedup_key__startswith="wecom:msg:").count() == 1
    # HR is told once that the case was created, and every card went out once.
    assert [m["touser"] for m in w.fake.sent if m["msgtype"] == "text"] == ["lina"]
    tasks = [m["template_card"]["task_id"] for m in w.fake.sent if m["msgtype"] == "template_card"]
    assert tasks and len(tasks) == len(set(tasks)) == await OutboxMessage.filter(kind="card").count()


async def test_a_click_by_anyone_but_the_holder_is_refused(wcase: WeComCase) -> None:
    w = wcase
    assert await w.rig.callback(text_xml("lina", START)) == (200, "")
    await w.deliver()
    summary_id, _ = await w.card("E001", purpose="summary")
    before, updates, sent = await _state(), len(w.fake.updates), len(w.fake.sent)
    # 吴九 (outside the case) and 王五 (the manager) press HR's summary card: "remind" on it is real.
    for who in ("E007", "E002"):
        await w.click(who, summary_id, "remind")
    await w.deliver()
    assert await _state() == before
    refusals = [(m["touser"], m["text"]["content"]) for m in w.fake.sent[sent:]]
    assert [u for u, _ in refusals] == ["wujiu", "wangwu"] and all("不是发给你的" in t for _, t in refusals)
    assert len(w.fake.updates) == updates  # nobody's card changed
    # The holder's own press works.
    await w.click("E001", summary_id, "remind")
    await w.deliver()
    assert await _state() != before


async def test_an_unknown_sender_is_fetched_from_wecom_and_kept(wcase: WeComCase) -> None:
    w = wcase
    w.fake.users["xinren"] = {"userid": "xinren", "name": "新人", "department": [2], "main_department": 2,
                              "position": "工程师", "direct_leader": ["wangwu"]}
    assert await w.rig.callback(text_xml("xinren", "/help")) == (200, "")
    assert await w.rig.callback(text_xml("stranger", "/help")) == (200, "")  # not in WeCom's book either
    await w.rig.connector.drain()
    new = await Employee.get(wecom_userid="xinren")
    assert (new.name, new.position, new.department, new.manager_id, new.roles) == ("新人", "工程师", "部门2",
                                                                                   "E002", "")
    told = {m["touser"]: m["text"]["content"] for m in w.fake.sent}
    assert "请再发送一次" in told["xinren"]
    assert "stranger" not in told  # outside the app: WeCom refuses to deliver to them (81013, logged)
    assert not await Employee.filter(wecom_userid="stranger").exists()
    # Sent again, the command now works; WeCom is not asked twice.
    assert await w.rig.callback(text_xml("xinren", "/help")) == (200, "")
    await w.rig.connector.drain()
    assert w.fake.calls["/cgi-bin/user/get"] == 2
    assert w.fake.sent[-1]["touser"] == "xinren" and "请再发送" not in w.fake.sent[-1]["text"]["content"]


async def test_busy_and_limit_answers_are_retried_and_delivered_once(wcase: WeComCase) -> None:
    w = wcase
    w.fake.fail("/cgi-bin/message/send", -1, -1, 45009)  # busy twice (retried at once), then a limit
    assert await w.rig.callback(text_xml("lina", START)) == (200, "")
    await w.deliver()
    held = await OutboxMessage.filter(status="pending")
    assert len(held) == 1 and "45009" in (held[0].last_error or "")  # backed off, not failed
    assert held[0].next_attempt_at >= datetime.now(UTC) + timedelta(seconds=50)
    w.fake.revoke_tokens()  # and the token expires meanwhile
    await w.relay.run_once(datetime.now(UTC) + timedelta(seconds=61))
    await w.deliver()
    assert not await OutboxMessage.filter(status__in=["pending", "failed", "claimed"]).exists()
    tasks = [m["template_card"]["task_id"] for m in w.fake.sent if m["msgtype"] == "template_card"]
    assert len(tasks) == len(set(tasks)) == await OutboxMessage.filter(kind="card").count()
    assert w.fake.calls["/cgi-bin/gettoken"] == 2


async def test_a_configuration_error_parks_the_card_and_tells_hr_the_fix(wcase: WeComCase) -> None:
    w = wcase
    w.fake.users.pop("zhangsan")  # outside the app's visibility: WeCom answers 81013
    assert await w.rig.callback(text_xml("lina", START)) == (200, "")
    await w.deliver()
    failed = await OutboxMessage.get(status="failed", recipient="E003")
    assert "81013" in (failed.last_error or "") and "可见范围" in (failed.last_error or "")
    told = [m["text"]["content"] for m in w.fake.sent if m["msgtype"] == "text" and m["touser"] == "lina"]
    assert any("可见范围" in t and "E003" in t for t in told), told


@pytest.mark.parametrize("case", ["bad_signature", "stale", "oversized", "billion_laughs", "wrong_corp"])
async def test_hostile_callbacks_store_nothing(wcase: WeComCase, case: str) -> None:
    w = wcase
    query, body = encrypt(text_xml("lina", START))
    if case == "bad_signature":
        query["msg_signature"] = "0" * 40
    elif case == "stale":
        query, body = encrypt(text_xml("lina", START), timestamp=int(time.time()) - 3600)
    elif case == "oversized":
        body = "<xml><Encrypt>" + "A" * 70_000 + "</Encrypt></xml>"
    elif case == "billion_laughs":
        body = ('<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
                "<xml><Encrypt>&b;</Encrypt></xml>")
    elif case == "wrong_corp":
        query, body = encrypt(text_xml("lina", START), corp_id="wwSOMEONEELSE0000")
    status, _ = await w.rig.post(query, body)
    assert status in (400, 403, 413)
    await w.deliver()
    assert await _state() == (0, 0, 0, ())
    assert not await InboxEvent.all().exists() and w.fake.sent == []


def test_incomplete_settings_stop_start_up_with_one_line(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.app import create_app

    for k in list(os.environ):
        if k.startswith("WECOM_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("WECOM_CORP_ID", CORP_ID)
    with pytest.raises(SystemExit) as exc:
        create_app(settings.model_copy(update={"platforms": ("wecom",)}), with_db=False)
    text = str(exc.value)
    assert text.startswith("wecom") and "WECOM_AGENT_ID, WECOM_SECRET, WECOM_TOKEN, WECOM_AES_KEY" in text
    assert "\n" not in text
