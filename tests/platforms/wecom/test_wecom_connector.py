"""The WeCom connector through its contract: settings, the callback route it serves (Tencent's
official vectors, every hostile input), cards sent and updated in place against a fake WeCom on
127.0.0.1, errors a relay can act on, the per-member quota, web sign-in, directory, lifecycle."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import bot.platforms.wecom as wecom
from bot.platforms.wecom.connector import WeComConnector, card_id_of, clip_text
from bot.platforms.wecom.settings import ConfigError
from bot.platforms.wecom.settings import load as load_settings
from cards.model import Button, Card, FormField
from chat.connector import (
    Address,
    Answer,
    CardAction,
    Connector,
    ConnectorEnv,
    Delivery,
    DeliveryError,
    IdentityError,
    PermanentDeliveryError,
    TextMessage,
)
from tests.platforms.wecom.fake_wecom import AGENT_ID, CORP_ID, FakeWeCom
from tests.platforms.wecom.rig import AES_KEY, TOKEN, click_xml, encrypt, recording, settings_for, text_xml, wecom_rig

ZS = Address(platform="wecom", user_id="zhangsan", employee_id="E003")
ASK = Card(title="试用期离职申请", summary="张三 · 销售部", status="等待你操作",
           buttons=(Button("同意", action="approve", style="primary"), Button("驳回", action="reject", style="danger")))
NOTICE = Card(title="离职手续已完成", body="谢谢")


def _env() -> ConnectorEnv:
    return ConnectorEnv(public_base_url="https://bot.example", language="zh", env_file=None)


def _setenv(monkeypatch: pytest.MonkeyPatch, values: dict[str, object]) -> None:
    """The connector's own WECOM_* settings, in the environment it reads them from."""
    for k, v in values.items():
        monkeypatch.setenv(k.upper(), str(v))


# ---------------------------------------------------------------- settings


def test_missing_settings_name_every_one_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("WECOM_CORP_ID", "WECOM_AGENT_ID", "WECOM_SECRET", "WECOM_TOKEN", "WECOM_AES_KEY"):
        monkeypatch.delenv(k, raising=False)
    _setenv(monkeypatch, {"wecom_corp_id": CORP_ID, "wecom_agent_id": "1000002"})
    with pytest.raises(ConfigError) as exc:
        wecom.create(_env())
    text = str(exc.value)
    assert "\n" not in text and "WECOM_SECRET, WECOM_TOKEN, WECOM_AES_KEY" in text and "CORP_ID" not in text


@pytest.mark.parametrize(("key", "value", "names"), [
    ("wecom_aes_key", "short", "WECOM_AES_KEY"), ("wecom_token", "has space", "WECOM_TOKEN"),
    ("wecom_agent_id", "abc", "WECOM_AGENT_ID"), ("wecom_callback_path", "no-slash", "WECOM_CALLBACK_PATH"),
    ("wecom_api_base", "ftp://x", "WECOM_API_BASE"), ("wecom_max_clock_skew_seconds", "-1",
                                                      "WECOM_MAX_CLOCK_SKEW_SECONDS"),
])
def test_bad_settings_name_the_setting(key: str, value: str, names: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _setenv(monkeypatch, {**settings_for("http://127.0.0.1:9"), key: value})
    with pytest.raises(ConfigError) as exc:
        wecom.create(_env())
    assert str(exc.value).startswith(f"bad setting {names}:") and AES_KEY not in str(exc.value)


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    _setenv(monkeypatch, settings_for("http://127.0.0.1:9", wecom_callback_path="/hooks/wecom"))
    c = wecom.create(_env())
    assert isinstance(c, Connector) and c.name == "wecom"
    assert [(r.method, r.path) for r in c.web_routes()] == [("GET", "/hooks/wecom"), ("POST", "/hooks/wecom")]
    assert c.capabilities.card_inputs is False and c.capabilities.update_in_place
    assert (c.limits.per_recipient_per_minute, c.limits.per_recipient_per_hour) == (30, 1000)
    assert c.limits.concurrency > 1 and c.identity is not None and c.directory is not None


# ---------------------------------------------------------------- inbound

GET_VECTOR = {"msg_signature": "012bc692d0a58dd4b10f8dfe5c4ac00ae211ebeb", "timestamp": "1476416373",
              "nonce": "47744683",
              "echostr": "fsi1xnbH4yQh0+PJxcOdhhK6TDXkjMyhEPA7xB2TGz6b+g7xyAbEkRxN/3cNXW9qdqjnoVzEtpbhnFyq6SVHyA=="}
POST_QUERY = {"msg_signature": "0c3914025cb4b4d68103f6bfc8db550f79dcf48e", "timestamp": "1476422779",
              "nonce": "1597212914"}
POST_BODY = (
    "<xml><ToUserName><![CDATA[ww1436e0e65a779aee]]></ToUserName>\n<Encrypt><![CDATA[Kl7kjoSf6DMD1zh7rtrHjFaDapSCkaOnwu"
    "3bqLc5tAybhhMl9pFeK8NslNPVdMwmBQTNoW4mY7AIjeLvEl3NyeTkAgGzBhzTtRLNshw2AEew+kkYcD+Fq72Kt00fT0WnN87hGrW8SqGc+NcT3mu8"
    "7Ha3dz1pSDi6GaUA6A0sqfde0VJPQbZ9U+3JWcoD4Z5jaU0y9GSh010wsHF8KZD24YhmZH4ch4Ka7ilEbjbfvhKkNL65HHL0J6EYJIZUC2pFrdkJ7M"
    "hmEbU2qARR4iQHE7wy24qy0cRX3Mfp6iELcDNfSsPGjUQVDGxQDCWjayJOpcwocugux082f49HKYg84EpHSGXAyh+/oxwaWbvL6aSDPOYuPDGOCI8jmn"
    "KiypE+]]></Encrypt>\n<AgentID><![CDATA[1000002]]></AgentID>\n</xml>"
)


async def test_official_vectors_against_our_endpoint() -> None:
    clock = [1476416373.0]  # the vectors are from 2016: the connector's clock reads their time
    c = WeComConnector(load_settings(settings_for("http://127.0.0.1:9"), None), _env(), clock=lambda: clock[0])
    app = web.Application()
    app.add_routes(c.web_routes())
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    events: list = []
    await c.start(recording(events))
    try:
        url = str(server.make_url("/wecom/callback"))
        async with aiohttp.ClientSession() as session:
            async with session.get(url, params=GET_VECTOR) as resp:
                assert resp.status == 200 and await resp.read() == b"1288432023552776189"
            clock[0] = 1476422779.0
            async with session.post(url, params=POST_QUERY, data=POST_BODY) as resp:
                assert (resp.status, await resp.text()) == (200, "")
            clock[0] += 601  # the same request ten minutes later is a replay
            async with session.post(url, params=POST_QUERY, data=POST_BODY) as resp:
                assert resp.status == 403
    finally:
        await c.stop()
        await server.close()
    assert events == [TextMessage(platform="wecom", sender="ChenJiaShun", text="你好",
                                  event_id="msg:1456453720", at=events[0].at)]


async def test_text_and_click_become_contract_events() -> None:
    async with wecom_rig() as rig:
        assert await rig.callback(text_xml("lina", "/离职 张三 试用期 2026-12-31", msg_id="CAIQg/PKx==")) == (200, "")
        assert await rig.callback(click_xml("zhangsan", "o12-abcdefghijklmnop@@2", "approve", "RC9", created=1700000000,
                                            selected={"q1": ["a", "b"]})) == (200, "")
        enter = (f"<xml><ToUserName>{CORP_ID}</ToUserName><FromUserName>zhangsan</FromUserName>"
                 f"<CreateTime>1</CreateTime><MsgType>event</MsgType><Event>enter_agent</Event><AgentID>{AGENT_ID}</AgentID></xml>")
        query, body = encrypt(enter)
        assert await rig.post(query, body) == (200, "")
    text, click = rig.events  # enter_agent is acknowledged, not dispatched
    assert isinstance(text, TextMessage) and text.sender == "lina" and text.text == "/离职 张三 试用期 2026-12-31"
    assert text.event_id == "msg:CAIQg/PKx=="
    assert isinstance(click, CardAction) and click.card_id == "o12-abcdefghijklmnop" and click.action == "approve"
    assert click.update_token == "RC9" and dict(click.form) == {"q1": "a,b"} and click.sender == "zhangsan"
    assert click.event_id == "card:zhangsan:1700000000:approve:o12-abcdefghijklmnop@@2"
    assert card_id_of("o1-x@@y") == "o1-x@@y" and card_id_of("@@3") == "@@3"


BILLION_LAUGHS = ('<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa">'
                  '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
                  "<xml><Encrypt>&c;</Encrypt></xml>")
XXE = '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]><xml><Encrypt>&x;</Encrypt></xml>'


@pytest.mark.parametrize(("case", "status"), [
    ("bad_signature", 403), ("wrong_corp", 403), ("stale", 403), ("future", 403), ("oversized", 413),
    ("malformed", 400), ("billion_laughs", 400), ("xxe", 400), ("inner_doctype", 400),
])
async def test_hostile_callbacks_dispatch_nothing(case: str, status: int) -> None:
    import time

    async with wecom_rig(wecom_max_clock_skew_seconds=300) as rig:
        query, body = encrypt(text_xml("lina", "/cancel x y"))
        if case == "bad_signature":
            query["msg_signature"] = "0" * 40
        elif case == "wrong_corp":
            query, body = encrypt(text_xml("lina", "x"), corp_id="wwSOMEONEELSE0000")
        elif case == "stale":
            query, body = encrypt(text_xml("lina", "x"), timestamp=int(time.time()) - 301)
        elif case == "future":
            query, body = encrypt(text_xml("lina", "x"), timestamp=int(time.time()) + 301)
        elif case == "oversized":
            body = "<xml><Encrypt>" + "A" * 70_000 + "</Encrypt></xml>"
        elif case == "malformed":
            body = "<xml><Encrypt>abc</Encrypt"
        elif case == "billion_laughs":
            body = BILLION_LAUGHS
        elif case == "xxe":
            body = XXE
        elif case == "inner_doctype":
            query, body = encrypt('<!DOCTYPE xml [<!ENTITY e "boom">]><xml><FromUserName>&e;</FromUserName></xml>')
        got, text = await rig.post(query, body)
        assert got == status, text
        assert TOKEN not in text and AES_KEY not in text
    assert rig.events == [] and rig.fake.sent == []


async def test_a_failed_dispatch_is_not_acknowledged_and_before_start_is_503() -> None:
    async with wecom_rig(dispatch=recording([], Answer(ok=False, text="处理失败", code="error"))) as rig:
        status, _ = await rig.callback(text_xml("lina", "hi"))
        assert status == 500 and rig.fake.sent == []  # WeCom retries; nobody is told "failed" twice
        await rig.connector.stop()
        status, _ = await rig.callback(text_xml("lina", "hi"))
        assert status == 503


async def test_answers_reach_the_sender_as_text() -> None:
    answers = iter([Answer(ok=True, text="已创建离职流程 OB-1"), Answer(ok=True, text="已批准"),
                    Answer(ok=False, text="这张卡片不是给你的。", code="not_your_card"),
                    Answer(ok=True, text="已创建离职流程 OB-1", duplicate=True)])

    async def dispatch(event):  # type: ignore[no-untyped-def]
        return next(answers)

    async with wecom_rig(dispatch=dispatch) as rig:
        await rig.callback(text_xml("lina", "/离职 张三"))
        await rig.callback(click_xml("wangwu", "o1-aaaaaaaaaaaaaaaa", "approve", "RC1"))
        await rig.callback(click_xml("wujiu", "o1-aaaaaaaaaaaaaaaa", "approve", "RC2"))
        await rig.callback(text_xml("lina", "/离职 张三"))
        await rig.connector.drain()
    # A command's answer, and a refused click's; a click that worked changes its card instead.
    assert [(m["touser"], m["text"]["content"]) for m in rig.fake.sent] == [
        ("lina", "已创建离职流程 OB-1"), ("wujiu", "这张卡片不是给你的。")]


# ---------------------------------------------------------------- outbound


async def test_send_card_update_in_place_then_fresh_card() -> None:
    async with wecom_rig() as rig:
        c = rig.connector
        d1 = await c.send_card(ZS, ASK, "o7-abcdefghijklmnop")
        (sent,) = rig.fake.sent
        card = sent["template_card"]
        assert sent["touser"] == "zhangsan" and sent["agentid"] == AGENT_ID and sent["msgtype"] == "template_card"
        assert card["card_type"] == "button_interaction" and card["task_id"] == "o7-abcdefghijklmnop"
        assert [b["key"] for b in card["button_list"]] == ["approve", "reject"]
        assert d1.message_id == "msg1" and d1.update_token and d1.state["task_id"] == "o7-abcdefghijklmnop"
        # A resend of the same card (the relay crashed before marking it sent) makes no second card.
        again = await c.send_card(ZS, ASK, "o7-abcdefghijklmnop")
        assert len(rig.fake.sent) == 1 and again.state.get("resent") and again.update_token is None
        # In place, with the delivery's code; the code is spent.
        done = Card(title="试用期离职申请", status="已由 王五 批准")
        d2 = await c.update_card(ZS, done, "o7-abcdefghijklmnop", d1)
        (upd,) = rig.fake.updates
        assert upd["response_code"] == d1.update_token and upd["userids"] == ["zhangsan"]
        assert upd["template_card"]["main_title"]["title"] == "试用期离职申请"
        assert "已由 王五 批准" in upd["template_card"]["sub_title_text"]
        assert d2.update_token is None and d2.message_id == "msg1"
        # Nothing changed: no update, and no fresh card either (it would ring the holder's phone).
        same = await c.update_card(ZS, done, "o7-abcdefghijklmnop", d2)
        assert len(rig.fake.updates) == 1 and len(rig.fake.sent) == 1 and same.calls == 0
        # A click's code (handed back by the bot) updates it in place again.
        click_code = rig.fake.issue_code()
        later = Card(title="试用期离职申请", status="已由 王五 批准（已归档）")
        d3 = await c.update_card(ZS, later, "o7-abcdefghijklmnop", Delivery(d2.message_id, click_code, d2.state))
        assert rig.fake.updates[-1]["response_code"] == click_code and len(rig.fake.sent) == 1
        # No code left: a fresh card under a new task id, the old message recalled.
        d4 = await c.update_card(ZS, ASK, "o7-abcdefghijklmnop", d3)
        assert len(rig.fake.sent) == 2 and rig.fake.sent[1]["template_card"]["task_id"] == "o7-abcdefghijklmnop@@1"
        assert rig.fake.recalled == ["msg1"] and d4.message_id == "msg2" and d4.update_token
        assert card_id_of(d4.state["task_id"]) == "o7-abcdefghijklmnop"
        # A spent or expired code (WeCom refuses it) falls back the same way.
        d5 = await c.update_card(ZS, done, "o7-abcdefghijklmnop", Delivery("msg2", d1.update_token, d4.state))
        assert rig.fake.sent[-1]["template_card"]["task_id"] == "o7-abcdefghijklmnop@@2" and d5.message_id == "msg3"


async def test_notice_cards_links_and_form_buttons() -> None:
    async with wecom_rig() as rig:
        c = rig.connector
        d = await c.send_card(ZS, NOTICE, "o8-abcdefghijklmnop")
        card = rig.fake.sent[0]["template_card"]
        assert card["card_type"] == "text_notice" and card["card_action"] == {"type": 1, "url": "http://127.0.0.1:8080"}
        assert d.update_token is None  # a notice cannot be updated in place
        # A step that asks for text: the bot gives the button its web form link (card_inputs=False).
        ask = Card(title="申请", buttons=(
            Button("提交", url="https://bot.example/form/abc"),
            Button("撤回", action="withdraw")))
        await c.send_card(ZS, ask, "o9-abcdefghijklmnop")
        buttons = rig.fake.sent[1]["template_card"]["button_list"]
        assert buttons[0] == {"type": 1, "text": "提交", "style": 3, "url": "https://bot.example/form/abc"}
        assert buttons[1]["key"] == "withdraw"
        # Without a link it is shown locked with why, never as a button whose press would be refused.
        bare = Card(title="申请", buttons=(Button("提交", action="submit", form=(FormField("reason", "原因"),)),))
        await c.send_card(ZS, bare, "o10-abcdefghijklmnop")
        out = rig.fake.sent[2]["template_card"]
        assert out["card_type"] == "text_notice" and "🔒 提交：需填写表单" in out["sub_title_text"]


async def test_text_messages_and_byte_limit() -> None:
    async with wecom_rig() as rig:
        d = await rig.connector.send_text(ZS, "请尽快完成交接。", "k1")
        assert rig.fake.sent[0]["text"] == {"content": "请尽快完成交接。"} and d.message_id == "msg1"
        long = "字" * 1000
        await rig.connector.send_text(ZS, long, "k2")
        assert len(rig.fake.sent[1]["text"]["content"].encode()) <= 2048
    assert clip_text("a" * 10, 8) == "aaaaa…"


async def test_token_expiry_mid_run_costs_one_refetch() -> None:
    async with wecom_rig() as rig:
        await rig.connector.send_text(ZS, "1", "k1")
        rig.fake.revoke_tokens()  # WeCom ends the token early
        await asyncio.gather(*(rig.connector.send_card(Address("wecom", f"u{i}"), ASK, f"o{i}-abcdefghijklmnop")
                               for i in range(8)))
        assert rig.fake.calls["/cgi-bin/gettoken"] == 2 and len(rig.fake.sent) == 9


async def test_busy_and_limits_are_retried_and_delivered_once() -> None:
    async with wecom_rig() as rig:
        rig.fake.fail("/cgi-bin/message/send", -1, -1, -1)
        d = await rig.connector.send_card(ZS, ASK, "o1-abcdefghijklmnop")
        assert len(rig.fake.sent) == 1 and rig.fake.calls["/cgi-bin/message/send"] == 4 and d.update_token
        rig.fake.fail("/cgi-bin/message/send", 45009)
        with pytest.raises(DeliveryError) as exc:
            await rig.connector.send_card(ZS, ASK, "o2-abcdefghijklmnop")
        assert exc.value.transient and exc.value.retry_after and exc.value.retry_after >= 60
        await rig.connector.send_card(ZS, ASK, "o2-abcdefghijklmnop")  # the relay's retry after the back-off
        tasks = [m["template_card"]["task_id"] for m in rig.fake.sent]
        assert tasks == ["o1-abcdefghijklmnop", "o2-abcdefghijklmnop"]


@pytest.mark.parametrize(("code", "says"), [(60020, "企业可信IP"), (81013, "可见范围"), (40001, "WECOM_SECRET")])
async def test_configuration_errors_are_permanent_with_the_fix(code: int, says: str) -> None:
    async with wecom_rig() as rig:
        rig.fake.fail("/cgi-bin/message/send", code)
        with pytest.raises(PermanentDeliveryError) as exc:
            await rig.connector.send_card(ZS, ASK, "o1-abcdefghijklmnop")
        assert says in exc.value.hint and str(code) in str(exc.value) and not exc.value.transient
        # An update whose code WeCom accepts but whose app is misconfigured is not "fixed" by a fresh card.
        rig.fake.fail("/cgi-bin/message/update_template_card", code)
        with pytest.raises(PermanentDeliveryError):
            await rig.connector.update_card(ZS, ASK, "o1-abcdefghijklmnop",
                                            Delivery("msg0", rig.fake.issue_code(), {"task_id": "o1-abcdefghijklmnop"}))
        assert rig.fake.sent == []


async def test_english_hint() -> None:
    async with wecom_rig(language="en") as rig:
        rig.fake.fail("/cgi-bin/message/send", 60020)
        with pytest.raises(PermanentDeliveryError) as exc:
            await rig.connector.send_text(ZS, "x", "k")
        assert "trusted IPs" in exc.value.hint


async def test_per_member_quota_is_never_exceeded() -> None:
    async with wecom_rig() as rig:
        for i in range(30):
            await rig.connector.send_text(ZS, f"提醒 {i}", f"k{i}")
        with pytest.raises(DeliveryError) as exc:
            await rig.connector.send_card(ZS, ASK, "o1-abcdefghijklmnop")
        assert exc.value.transient and 0 < (exc.value.retry_after or 0) <= 60
        await rig.connector.send_text(Address("wecom", "lisi"), "x", "k")  # another member is not held up
        assert len(rig.fake.sent) == 31


# ---------------------------------------------------------------- identity, directory, lifecycle


async def test_web_sign_in_through_wecom_oauth() -> None:
    async with wecom_rig() as rig:
        ident = rig.connector.identity
        assert ident is not None
        url = ident.authorize_url("https://bot.example/sign/t/oauth/wecom", "abc123")
        parts = urlsplit(url)
        q = parse_qs(parts.query)
        assert parts.fragment == "wechat_redirect" and q["scope"] == ["snsapi_base"] and q["appid"] == [CORP_ID]
        assert q["agentid"] == [str(AGENT_ID)] and q["state"] == ["abc123"]
        with pytest.raises(ValueError):
            ident.authorize_url("https://bot.example/x", "not allowed!")
        rig.fake.oauth_codes["C1"] = "zhangsan"
        assert await ident.user_id({"code": "C1", "state": "abc123"}) == "zhangsan"
        for params in ({"code": "C1"}, {"code": "forged"}, {}, {"code": "x" * 600}):
            with pytest.raises(IdentityError):
                await ident.user_id(params)


async def test_directory_lists_and_looks_up() -> None:
    fake = FakeWeCom(users={
        "zhangsan": {"userid": "zhangsan", "name": "张三", "department": [3], "main_department": 3,
                     "position": "销售代表", "direct_leader": ["wangwu"]},
        "wangwu": {"userid": "wangwu", "name": "王五", "department": [3, 2], "main_department": 3,
                   "position": "销售总监", "direct_leader": []}})
    async with wecom_rig(fake) as rig:
        directory = rig.connector.directory
        assert directory is not None
        users = [u async for u in directory.users()]
        assert {(u.user_id, u.department, u.title, u.manager_user_id) for u in users} == {
            ("zhangsan", "部门3", "销售代表", "wangwu"), ("wangwu", "部门3", "销售总监", "")}
        assert (await directory.user("zhangsan")).name == "张三"  # type: ignore[union-attr]
        assert await directory.user("ghost") is None


async def test_stop_leaves_no_task_and_closes_the_session() -> None:
    gate = asyncio.Event()

    async with wecom_rig() as rig:
        c = rig.connector
        c._spawn(gate.wait())  # an answer still on its way
        session = c._session
        await c.stop()
        assert not c._tasks and session is not None and session.closed
        mine = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and "wecom" in repr(t.get_coro())]
        assert mine == []


async def test_a_step_card_with_only_links_is_still_updatable() -> None:
    async with wecom_rig() as rig:
        sign = Card(title="签署离职保证书", step_id="guarantee", buttons=(Button("去签署", url="https://bot.example/sign/t"),))
        d = await rig.connector.send_card(ZS, sign, "o11-abcdefghijklmnop")
        out = rig.fake.sent[0]["template_card"]
        assert out["card_type"] == "button_interaction" and out["button_list"][0]["url"] == "https://bot.example/sign/t"
        assert out["card_action"] == {"type": 1, "url": "https://bot.example/sign/t"} and d.update_token
        await rig.connector.update_card(ZS, replace(sign, status="已签署"), "o11-abcdefghijklmnop", d)
        assert len(rig.fake.updates) == 1 and len(rig.fake.sent) == 1


def test_env_example_documents_every_wecom_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path

    from bot.platforms.wecom.settings import WeComSettings

    example = Path(__file__).resolve().parents[3] / ".env.example"
    text = example.read_text(encoding="utf-8")
    for name in WeComSettings.model_fields:
        assert f"WECOM_{name.upper()}=" in text, f"WECOM_{name.upper()} missing from .env.example"
    for k in ("WECOM_CORP_ID", "WECOM_AGENT_ID", "WECOM_SECRET", "WECOM_TOKEN", "WECOM_AES_KEY"):
        monkeypatch.delenv(k, raising=False)
    # Copied as it is, the example parses; only the app's own values are missing.
    with pytest.raises(ConfigError) as exc:
        load_settings(None, str(example))
    assert str(exc.value).startswith("wecom needs WECOM_CORP_ID, WECOM_AGENT_ID, WECOM_SECRET, WECOM_TOKEN")


async def test_an_answer_that_meets_a_busy_wecom_is_tried_again() -> None:
    sleeps: list[float] = []
    answers = iter([Answer(ok=True, text="已创建"), Answer(ok=True, text="已创建 2")])

    async def dispatch(event):  # type: ignore[no-untyped-def]
        return next(answers)

    async with wecom_rig(dispatch=dispatch) as rig:
        async def no_wait(seconds: float) -> None:
            sleeps.append(seconds)

        rig.connector._sleep = no_wait
        rig.fake.fail("/cgi-bin/message/send", -1, -1, -1, -1, 45009)  # busy past the client's retries, then a limit
        await rig.callback(text_xml("lina", "/离职 张三"))
        await rig.connector.drain()
        assert [m["text"]["content"] for m in rig.fake.sent] == ["已创建"]  # once, on the third try
        rig.fake.fail("/cgi-bin/message/send", 81013)  # permanent: not tried again
        await rig.callback(text_xml("lina", "/离职 张三"))
        await rig.connector.drain()
        assert len(rig.fake.sent) == 1 and rig.fake.calls["/cgi-bin/message/send"] == 7
    assert 60.0 in sleeps
