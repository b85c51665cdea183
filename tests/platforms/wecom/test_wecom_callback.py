"""The WeCom callback endpoint: Tencent's official vectors, then every hostile input, over real HTTP.

Vectors: Tencent's sample `sbzhu/weworkapi_python` callback/Sample.py (quoted verbatim in
shared/research/wecom.md §1.7). Callbacks of our own are encrypted with wechatpy's crypto, exactly
as WeCom builds them."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from wechatpy.work.crypto import WeChatCrypto

from bot.platforms.wecom import xmlsafe
from bot.platforms.wecom.callback import (
    CallbackConfig,
    WeComCardClick,
    WeComEvent,
    WeComOther,
    WeComText,
    classify,
    decrypt,
    make_handler,
    verify_url,
)

TOKEN = "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo"
AES_KEY = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt"
CORP_ID = "ww1436e0e65a779aee"
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
NOW = 1476422779.0
CFG = CallbackConfig(token=TOKEN, aes_key=AES_KEY, corp_id=CORP_ID)


def _sig(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def test_official_get_vector() -> None:
    assert _sig(TOKEN, GET_VECTOR["timestamp"], GET_VECTOR["nonce"], GET_VECTOR["echostr"]) == \
        GET_VECTOR["msg_signature"]
    echo = verify_url(CFG.crypto(), CFG, GET_VECTOR, now=float(GET_VECTOR["timestamp"]))
    assert echo == "1288432023552776189"


def test_official_post_vector() -> None:
    encrypted = xmlsafe.parse(POST_BODY)["Encrypt"]
    assert _sig(TOKEN, POST_QUERY["timestamp"], POST_QUERY["nonce"], encrypted) == POST_QUERY["msg_signature"]
    msg = decrypt(CFG.crypto(), CFG, POST_QUERY, POST_BODY.encode(), now=NOW)
    event = classify(msg)
    assert event == WeComText(sender="ChenJiaShun", text="你好", msg_id="1456453720", create_time=1476422779,
                              agent_id="1000002")
    assert event.dedup_key == "wecom:msg:1456453720"


# ---------------------------------------------------------------- over HTTP


@dataclass
class Endpoint:
    url: str
    session: aiohttp.ClientSession
    events: list[WeComEvent] = field(default_factory=list)
    now: list[float] = field(default_factory=lambda: [NOW])
    fail_dispatch: list[bool] = field(default_factory=lambda: [False])


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    holder: dict[str, Endpoint] = {}

    async def dispatch(event: WeComEvent) -> None:
        ep = holder["ep"]
        if ep.fail_dispatch[0]:
            raise RuntimeError("database down")
        ep.events.append(event)

    app = web.Application()
    handler = make_handler(CFG, dispatch, clock=lambda: holder["ep"].now[0])
    app.router.add_route("GET", "/wecom/callback", handler)
    app.router.add_route("POST", "/wecom/callback", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        holder["ep"] = Endpoint(url=str(server.make_url("/wecom/callback")), session=session)
        yield holder["ep"]
    await server.close()


def encrypt(plain: str, *, timestamp: int = int(NOW), nonce: str = "1234567", corp_id: str = CORP_ID,
            token: str = TOKEN) -> tuple[dict[str, str], str]:
    """A callback exactly as WeCom sends it: query and envelope."""
    env = xmlsafe.parse(WeChatCrypto(token, AES_KEY, corp_id).encrypt_message(plain, nonce, timestamp))
    body = (f"<xml><ToUserName><![CDATA[{corp_id}]]></ToUserName><Encrypt><![CDATA[{env['Encrypt']}]]></Encrypt>"
            "<AgentID><![CDATA[1000002]]></AgentID></xml>")
    return {"msg_signature": env["MsgSignature"], "timestamp": str(timestamp), "nonce": nonce}, body


def text_xml(content: str, msg_id: str = "CAIQg/PKxgYY2sC9tpuAgAMg9/zKaw==", sender: str = "zhangsan") -> str:
    return (f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><FromUserName><![CDATA[{sender}]]></FromUserName>"
            f"<CreateTime>{int(NOW)}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId><AgentID>1000002</AgentID></xml>")


def click_xml(*, key: str = "approve", task: str = "OB-X-step-1a2b", code: str = "RC1", selected: str = "") -> str:
    return (f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><FromUserName><![CDATA[lisi]]></FromUserName>"
            f"<CreateTime>{int(NOW)}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
            "<Event><![CDATA[template_card_event]]></Event>"
            f"<EventKey><![CDATA[{key}]]></EventKey><TaskId><![CDATA[{task}]]></TaskId>"
            "<CardType><![CDATA[button_interaction]]></CardType>"
            f"<ResponseCode><![CDATA[{code}]]></ResponseCode><AgentID>1000002</AgentID>{selected}</xml>")


async def _post(ep: Endpoint, query: dict[str, str], body: str | bytes) -> tuple[int, str]:
    async with ep.session.post(ep.url, params=query, data=body) as resp:
        return resp.status, await resp.text()


async def test_get_verification_answers_the_plain_echostr(endpoint: Endpoint) -> None:
    endpoint.now[0] = float(GET_VECTOR["timestamp"])
    async with endpoint.session.get(endpoint.url, params=GET_VECTOR) as resp:
        assert resp.status == 200
        assert await resp.read() == b"1288432023552776189"  # no quotes, no BOM, no newline


async def test_official_post_vector_over_http(endpoint: Endpoint) -> None:
    status, text = await _post(endpoint, POST_QUERY, POST_BODY)
    assert (status, text) == (200, "")
    assert [e.text for e in endpoint.events if isinstance(e, WeComText)] == ["你好"]


async def test_text_with_string_msgid(endpoint: Endpoint) -> None:
    query, body = encrypt(text_xml("/离职 张三 试用期 2026-12-31"))
    assert await _post(endpoint, query, body) == (200, "")
    (event,) = endpoint.events
    assert isinstance(event, WeComText) and event.msg_id == "CAIQg/PKxgYY2sC9tpuAgAMg9/zKaw=="
    assert event.text == "/离职 张三 试用期 2026-12-31" and event.sender == "zhangsan"


async def test_card_click_with_one_and_many_selections(endpoint: Endpoint) -> None:
    one = ("<SelectedItems><SelectedItem><QuestionKey><![CDATA[q1]]></QuestionKey><OptionIds>"
           "<OptionId><![CDATA[a]]></OptionId></OptionIds></SelectedItem></SelectedItems>")
    many = ("<SelectedItems><SelectedItem><QuestionKey><![CDATA[q1]]></QuestionKey><OptionIds>"
            "<OptionId><![CDATA[a]]></OptionId><OptionId><![CDATA[b]]></OptionId></OptionIds></SelectedItem>"
            "<SelectedItem><QuestionKey><![CDATA[q2]]></QuestionKey><OptionIds><OptionId><![CDATA[c]]></OptionId>"
            "</OptionIds></SelectedItem></SelectedItems>")
    for selected, code in ((one, "RC1"), (many, "RC2"), ("", "RC3")):
        query, body = encrypt(click_xml(selected=selected, code=code))
        assert await _post(endpoint, query, body) == (200, "")
    clicks = [e for e in endpoint.events if isinstance(e, WeComCardClick)]
    assert [dict(c.selected) for c in clicks] == [{"q1": ("a",)}, {"q1": ("a", "b"), "q2": ("c",)}, {}]
    assert [c.response_code for c in clicks] == ["RC1", "RC2", "RC3"]
    assert clicks[0].event_key == "approve" and clicks[0].task_id == "OB-X-step-1a2b" and clicks[0].sender == "lisi"
    assert clicks[0].dedup_key == f"wecom:card:lisi:{int(NOW)}:approve:OB-X-step-1a2b"


async def test_other_events_are_acknowledged_as_other(endpoint: Endpoint) -> None:
    xml = (f"<xml><ToUserName>{CORP_ID}</ToUserName><FromUserName>zhangsan</FromUserName>"
           f"<CreateTime>{int(NOW)}</CreateTime><MsgType>event</MsgType><Event>enter_agent</Event>"
           "<AgentID>1000002</AgentID></xml>")
    query, body = encrypt(xml)
    assert await _post(endpoint, query, body) == (200, "")
    assert endpoint.events == [WeComOther(sender="zhangsan", msg_type="event", event="enter_agent",
                                          create_time=int(NOW))]


async def test_a_failing_dispatch_is_not_acknowledged(endpoint: Endpoint) -> None:
    # WeCom retries anything but a 200: an event whose transaction did not commit must not be acknowledged.
    endpoint.fail_dispatch[0] = True
    query, body = encrypt(text_xml("hi"))
    status, _ = await _post(endpoint, query, body)
    assert status == 500 and endpoint.events == []


BILLION_LAUGHS = ('<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa">'
                  '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
                  "<xml><Encrypt>&c;</Encrypt></xml>")
XXE = '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]><xml><Encrypt>&x;</Encrypt></xml>'
DOCTYPE_ONLY = '<?xml version="1.0"?><!DOCTYPE xml><xml><Encrypt>abc</Encrypt></xml>'


@pytest.mark.parametrize(
    ("case", "status"),
    [("bad_signature", 403), ("wrong_corp", 403), ("wrong_token", 403), ("stale", 403), ("future", 403),
     ("no_query", 403), ("oversized", 413), ("malformed", 400), ("billion_laughs", 400), ("xxe", 400),
     ("doctype", 400), ("not_xml_root", 400), ("no_encrypt", 400), ("garbage_base64", 400),
     ("inner_doctype", 400), ("inner_malformed", 400), ("no_sender", 400), ("bad_time", 400)],
)
async def test_hostile_input_is_refused_and_dispatches_nothing(endpoint: Endpoint, case: str, status: int) -> None:
    query, body = encrypt(text_xml("/cancel OB-1 x"))
    if case == "bad_signature":
        query["msg_signature"] = "0" * 40
    elif case == "wrong_corp":
        query, body = encrypt(text_xml("x"), corp_id="wwSOMEONEELSE0000")
    elif case == "wrong_token":
        query, body = encrypt(text_xml("x"), token="another-token")
    elif case == "stale":
        query, body = encrypt(text_xml("x"), timestamp=int(NOW) - 3600)
    elif case == "future":
        query, body = encrypt(text_xml("x"), timestamp=int(NOW) + 3600)
    elif case == "no_query":
        query = {}
    elif case == "oversized":
        body = "<xml><Encrypt>" + "A" * (CFG.max_body + 10) + "</Encrypt></xml>"
    elif case == "malformed":
        body = "<xml><Encrypt>abc</Encrypt"
    elif case == "billion_laughs":
        body = BILLION_LAUGHS
    elif case == "xxe":
        body = XXE
    elif case == "doctype":
        body = DOCTYPE_ONLY
    elif case == "not_xml_root":
        body = "<html><Encrypt>abc</Encrypt></html>"
    elif case == "no_encrypt":
        body = "<xml><ToUserName>x</ToUserName></xml>"
    elif case == "garbage_base64":
        query["msg_signature"] = _sig(TOKEN, query["timestamp"], query["nonce"], "!!notbase64!!")
        body = "<xml><Encrypt>!!notbase64!!</Encrypt></xml>"
    elif case == "inner_doctype":
        query, body = encrypt('<!DOCTYPE xml [<!ENTITY e "boom">]><xml><FromUserName>&e;</FromUserName></xml>')
    elif case == "inner_malformed":
        query, body = encrypt("<xml><FromUserName>x</xml>")
    elif case == "no_sender":
        query, body = encrypt(f"<xml><MsgType>text</MsgType><CreateTime>{int(NOW)}</CreateTime></xml>")
    elif case == "bad_time":
        query, body = encrypt("<xml><FromUserName>a</FromUserName><MsgType>text</MsgType>"
                              "<CreateTime>soon</CreateTime></xml>")
    got, text = await _post(endpoint, query, body)
    assert got == status, text
    assert endpoint.events == []
    assert TOKEN not in text and AES_KEY not in text


async def test_get_with_bad_signature_or_stale_time_is_refused(endpoint: Endpoint) -> None:
    endpoint.now[0] = float(GET_VECTOR["timestamp"])
    bad = {**GET_VECTOR, "msg_signature": "f" * 40}
    async with endpoint.session.get(endpoint.url, params=bad) as resp:
        assert resp.status == 403
    endpoint.now[0] = float(GET_VECTOR["timestamp"]) + 601
    async with endpoint.session.get(endpoint.url, params=GET_VECTOR) as resp:
        assert resp.status == 403
