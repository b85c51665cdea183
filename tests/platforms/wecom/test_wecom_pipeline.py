"""WeCom callbacks through the real pipeline (router, service, database): WeCom's retries make one
effect, and a click by anyone but the card's holder changes nothing and tells the clicker why."""

from __future__ import annotations

import asyncio

from bot.app import build_service
from bot.inbound import Inbound, build_router
from chat.connector import Answer, CardAction, Dispatch, InboundEvent
from chat.router import Incoming
from config.settings import Settings
from storage.models import AuditEntry, Case, CaseStep, Employee, InboxEvent, OutboxMessage
from tests.platforms.wecom.fake_wecom import FakeWeCom
from tests.platforms.wecom.rig import USERIDS, click_xml, encrypt, text_xml, wecom_rig

START = "/离职 张三 试用期 2025-07-31 绩效未达标 交接人:周八"


def core_dispatch(inbound: Inbound) -> Dispatch:
    """What the bot hands a connector's `start`: the contract's event into the router, answered
    after the commit."""

    async def dispatch(event: InboundEvent) -> Answer:
        if isinstance(event, CardAction):
            incoming = Incoming(event.platform, event.sender, "action",
                                {"card_id": event.card_id, "action": event.action, "form": dict(event.form)},
                                f"{event.platform}:{event.event_id}")
        else:
            incoming = Incoming(event.platform, event.sender, "text", {"text": event.text},
                                f"{event.platform}:{event.event_id}")
        reply = await inbound.handle(incoming)
        return Answer(ok=reply.ok, text=reply.text, code=reply.code, duplicate=reply.duplicate)

    return dispatch


async def _wecom_ids() -> None:
    for emp, uid in USERIDS.items():
        await Employee.filter(employee_id=emp).update(wecom_userid=uid)


async def _state() -> tuple:
    return (await Case.all().count(), await OutboxMessage.all().count(),
            await AuditEntry.filter(kind__not="refused").count(),
            tuple(await CaseStep.all().order_by("id").values_list("status", flat=True)))


async def test_the_same_callback_four_times_is_one_effect(demo_org: Settings) -> None:
    await _wecom_ids()
    inbound = Inbound(build_router(), demo_org, build_service(demo_org))
    async with wecom_rig(dispatch=core_dispatch(inbound)) as rig:
        query, body = encrypt(text_xml("lina", START))
        # WeCom's first try and its three retries, two of them racing each other.
        first = await rig.post(query, body)
        rest = await asyncio.gather(*(rig.post(query, body) for _ in range(3)))
        assert [first, *rest] == [(200, "")] * 4
        await rig.connector.drain()
        assert await Case.all().count() == 1
        assert await InboxEvent.filter(dedup_key__startswith="wecom:msg:").count() == 1
        # The HR person is told once that the case was created.
        (told,) = rig.fake.sent
        assert told["touser"] == "lina" and told["msgtype"] == "text"


async def test_a_click_by_anyone_but_the_holder_is_refused(demo_org: Settings) -> None:
    await _wecom_ids()
    inbound = Inbound(build_router(), demo_org, build_service(demo_org))
    async with wecom_rig(dispatch=core_dispatch(inbound)) as rig:
        assert await rig.callback(text_xml("lina", START)) == (200, "")
        row = await OutboxMessage.filter(recipient="E003", kind="card").first()
        assert row is not None
        before = await _state()
        # 吴九 (outside the case) and 王五 (the manager) press the employee's card.
        for who in ("wujiu", "wangwu"):
            assert await rig.callback(click_xml(who, row.key, "submit", "RC-x")) == (200, "")
        await rig.connector.drain()
        assert await _state() == before
        refusals = [(m["touser"], m["text"]["content"]) for m in rig.fake.sent if m["touser"] != "lina"]
        assert [u for u, _ in refusals] == ["wujiu", "wangwu"]
        assert all("不是发给你的" in t for _, t in refusals)
        assert rig.fake.updates == []  # nobody's card changed


async def test_an_unknown_sender_is_fetched_from_wecom_and_kept(demo_org: Settings) -> None:
    await _wecom_ids()
    inbound = Inbound(build_router(), demo_org, build_service(demo_org))
    fake = FakeWeCom(users={"xinren": {"userid": "xinren", "name": "新人", "department": [2], "main_department": 2,
                                       "position": "工程师", "direct_leader": ["wangwu"]},
                            **{u: {"userid": u, "name": u, "department": [2]} for u in USERIDS.values()}})
    async with wecom_rig(fake, dispatch=core_dispatch(inbound)) as rig:
        assert await rig.callback(text_xml("xinren", "/help")) == (200, "")
        assert await rig.callback(text_xml("stranger", "/help")) == (200, "")  # not in WeCom's book either
        await rig.connector.drain()
        new = await Employee.get(wecom_userid="xinren")
        assert (new.name, new.position, new.department, new.manager_id, new.roles) == ("新人", "工程师", "部门2",
                                                                                       "E002", "")
        told = {m["touser"]: m["text"]["content"] for m in rig.fake.sent}
        assert "请再发送一次" in told["xinren"]
        assert "stranger" not in told  # outside the app: WeCom refuses to deliver to them (81013, logged)
        assert not await Employee.filter(wecom_userid="stranger").exists()
        # Sent again, the command now works; WeCom is not asked twice.
        assert await rig.callback(text_xml("xinren", "/help")) == (200, "")
        await rig.connector.drain()
        assert rig.fake.calls["/cgi-bin/user/get"] == 2
        assert "/离职" not in rig.fake.sent[-1]["text"]["content"] and rig.fake.sent[-1]["touser"] == "xinren"
