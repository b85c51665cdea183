"""The WeCom connector between a fake WeCom API and our callback endpoint, both on 127.0.0.1.

Callbacks are built exactly as WeCom builds them, with wechatpy's own crypto, and posted over real
HTTP to the route the connector serves."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from wechatpy.work.crypto import WeChatCrypto

from bot.platforms.wecom import xmlsafe
from bot.platforms.wecom.connector import WeComConnector
from bot.platforms.wecom.settings import load as load_settings
from chat.connector import Answer, ConnectorEnv, Dispatch, InboundEvent
from tests.platforms.wecom.fake_wecom import AGENT_ID, CORP_ID, SECRET, FakeWeCom

TOKEN = "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo"
AES_KEY = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt"
# Who is who on the fake WeCom: the demo organisation's employees and their WeCom userids.
USERIDS = {"E001": "lina", "E002": "wangwu", "E003": "zhangsan", "E004": "zhaoliu", "E005": "sunqi",
           "E006": "zhouba", "E007": "wujiu", "E008": "zhengshi"}
_nonces = itertools.count(1000)
_times = itertools.count(1)


def settings_for(api_base: str, **more: Any) -> dict[str, Any]:
    return {"wecom_corp_id": CORP_ID, "wecom_agent_id": str(AGENT_ID), "wecom_secret": SECRET,
            "wecom_token": TOKEN, "wecom_aes_key": AES_KEY, "wecom_api_base": api_base,
            "wecom_oauth_url": f"{api_base}/connect/oauth2/authorize", **more}


def encrypt(plain: str, *, timestamp: int | None = None, nonce: str | None = None, corp_id: str = CORP_ID,
            token: str = TOKEN) -> tuple[dict[str, str], str]:
    """A callback exactly as WeCom sends it: query and envelope."""
    ts = int(time.time()) if timestamp is None else timestamp
    nonce = nonce or str(next(_nonces))
    env = xmlsafe.parse(WeChatCrypto(token, AES_KEY, corp_id).encrypt_message(plain, nonce, ts))
    body = (f"<xml><ToUserName><![CDATA[{corp_id}]]></ToUserName><Encrypt><![CDATA[{env['Encrypt']}]]></Encrypt>"
            f"<AgentID><![CDATA[{AGENT_ID}]]></AgentID></xml>")
    return {"msg_signature": env["MsgSignature"], "timestamp": str(ts), "nonce": nonce}, body


def text_xml(sender: str, content: str, msg_id: str | None = None, created: int | None = None) -> str:
    msg_id = msg_id or f"CAIQ{next(_times)}/PKxgYY2sC9tpuAgAMg9=="
    created = created or int(time.time())
    return (f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><FromUserName><![CDATA[{sender}]]></FromUserName>"
            f"<CreateTime>{created}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId><AgentID>{AGENT_ID}</AgentID></xml>")


def click_xml(sender: str, task_id: str, key: str, code: str, created: int | None = None,
              selected: dict[str, list[str]] | None = None) -> str:
    created = created or int(time.time()) + next(_times)  # two presses never share a dedup key
    items = "".join(
        f"<SelectedItem><QuestionKey><![CDATA[{q}]]></QuestionKey><OptionIds>"
        + "".join(f"<OptionId><![CDATA[{o}]]></OptionId>" for o in opts) + "</OptionIds></SelectedItem>"
        for q, opts in (selected or {}).items())
    return (f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><FromUserName><![CDATA[{sender}]]></FromUserName>"
            f"<CreateTime>{created}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
            "<Event><![CDATA[template_card_event]]></Event>"
            f"<EventKey><![CDATA[{key}]]></EventKey><TaskId><![CDATA[{task_id}]]></TaskId>"
            "<CardType><![CDATA[button_interaction]]></CardType>"
            f"<ResponseCode><![CDATA[{code}]]></ResponseCode><AgentID>{AGENT_ID}</AgentID>"
            + (f"<SelectedItems>{items}</SelectedItems>" if items else "") + "</xml>")


@dataclass
class Rig:
    fake: FakeWeCom
    connector: WeComConnector
    api_base: str
    callback_url: str
    session: aiohttp.ClientSession
    events: list[InboundEvent] = field(default_factory=list)

    async def post(self, query: dict[str, str], body: str | bytes) -> tuple[int, str]:
        async with self.session.post(self.callback_url, params=query, data=body) as resp:
            return resp.status, await resp.text()

    async def callback(self, plain: str, **kw: Any) -> tuple[int, str]:
        query, body = encrypt(plain, **kw)
        return await self.post(query, body)


def recording(rig_events: list[InboundEvent], answer: Answer | None = None) -> Dispatch:
    async def dispatch(event: InboundEvent) -> Answer:
        rig_events.append(event)
        return answer or Answer(ok=True, text="")

    return dispatch


@asynccontextmanager
async def wecom_rig(fake: FakeWeCom | None = None, *, dispatch: Dispatch | None = None, language: str = "zh",
                    public_base_url: str = "http://127.0.0.1:8080", **more: Any) -> AsyncIterator[Rig]:
    fake = fake or FakeWeCom()
    api_server = TestServer(fake.app(), host="127.0.0.1")
    await api_server.start_server()
    base = str(api_server.make_url("/")).rstrip("/")
    # The connector's own settings, pointing at the fake (given directly, not through the environment).
    connector = WeComConnector(load_settings(settings_for(base, **more), None),
                               ConnectorEnv(public_base_url=public_base_url, language=language, env_file=None))
    app = web.Application()
    app.add_routes(connector.web_routes())
    cb_server = TestServer(app, host="127.0.0.1")
    await cb_server.start_server()
    events: list[InboundEvent] = []
    await connector.start(dispatch or recording(events))
    try:
        async with aiohttp.ClientSession() as session:
            yield Rig(fake, connector, base, str(cb_server.make_url(connector.settings.callback_path)), session,
                      events)
    finally:
        await connector.stop()
        await cb_server.close()
        await api_server.close()
