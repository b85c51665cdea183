"""Platform identity on the signing page against fake DingTalk / WeCom servers on 127.0.0.1."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.app import build_service
from bot.platforms import registry
from chat.connector import Capabilities, Connector
from chat.presentation import neutral
from config.settings import Settings
from handlers.signin import IdentityError, SignIn, oauth_state
from signing.links import read_token
from storage.models import Employee, Signature
from tests.platforms.wecom import rig as wecom_rig
from tests.signing_flow.conftest import (
    EMPLOYEE,
    Flow,
    make_app,
    signature_strokes,
    start_probation,
    to_guarantee_step,
)


class FakePlatforms:
    """DingTalk (new + old API) and WeCom endpoints; codes map to whoever "logged in"."""

    def __init__(self) -> None:
        self.codes: dict[str, str] = {}  # code -> userid
        self.calls: list[str] = []

    def app(self) -> web.Application:
        app = web.Application()
        r = app.router
        r.add_post("/v1.0/oauth2/accessToken", self.dt_app_token)
        r.add_post("/v1.0/oauth2/userAccessToken", self.dt_user_token)
        r.add_get("/v1.0/contact/users/me", self.dt_me)
        r.add_post("/topapi/user/getbyunionid", self.dt_by_union)
        r.add_post("/topapi/v2/user/getuserinfo", self.dt_getuserinfo)
        r.add_get("/cgi-bin/gettoken", self.wc_token)
        r.add_get("/cgi-bin/auth/getuserinfo", self.wc_userinfo)
        return app

    async def dt_app_token(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.calls.append("dt_app_token")
        if body != {"appKey": "ding-client", "appSecret": "ding-secret"}:
            return web.json_response({"code": "invalidClient", "message": "bad app"}, status=400)
        return web.json_response({"accessToken": "APP", "expireIn": 7200})

    async def dt_user_token(self, request: web.Request) -> web.Response:
        body = await request.json()
        userid = self.codes.pop(body.get("code", ""), None)  # single use, like the real thing
        if userid is None or body.get("grantType") != "authorization_code":
            return web.json_response({"code": "invalidCode", "message": "code invalid"}, status=400)
        return web.json_response({"accessToken": f"USER-{userid}", "expireIn": 7200})

    async def dt_me(self, request: web.Request) -> web.Response:
        token = request.headers.get("x-acs-dingtalk-access-token", "")
        return web.json_response({"unionId": "U-" + token.removeprefix("USER-"), "nick": "x"})

    async def dt_by_union(self, request: web.Request) -> web.Response:
        if request.query.get("access_token") != "APP":
            return web.json_response({"errcode": 88, "sub_code": "40014", "sub_msg": "不合法的access_token"})
        union = (await request.json())["unionid"]
        return web.json_response({"errcode": 0, "result": {"userid": union.removeprefix("U-")}})

    async def dt_getuserinfo(self, request: web.Request) -> web.Response:
        userid = self.codes.pop((await request.json()).get("code", ""), None)
        if userid is None:
            return web.json_response({"errcode": 40078, "errmsg": "不存在的临时授权码"})
        return web.json_response({"errcode": 0, "result": {"userid": userid}})

    async def wc_token(self, request: web.Request) -> web.Response:
        ok = request.query.get("corpid") == "wwcorp" and request.query.get("corpsecret") == "wc-secret"
        return web.json_response({"errcode": 0, "access_token": "WCAPP", "expires_in": 7200} if ok
                                 else {"errcode": 40001, "errmsg": "invalid credential"})

    async def wc_userinfo(self, request: web.Request) -> web.Response:
        userid = self.codes.pop(request.query.get("code", ""), None)
        if request.query.get("access_token") != "WCAPP" or userid is None:
            return web.json_response({"errcode": 40029, "errmsg": "invalid code"})
        return web.json_response({"errcode": 0, "UserId": userid})  # the legacy spelling


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakePlatforms, str]]:
    platforms = FakePlatforms()
    async with TestServer(platforms.app(), host="127.0.0.1") as server:
        yield platforms, str(server.make_url("")).rstrip("/")


def platform_env(monkeypatch: pytest.MonkeyPatch, base: str) -> None:
    """Both connectors' own settings (DINGTALK_*, WECOM_*), pointing at the fake: the only place a
    platform's credentials and addresses are read from."""
    values = {"DINGTALK_CLIENT_ID": "ding-client", "DINGTALK_CLIENT_SECRET": "ding-secret",
              "DINGTALK_CARD_TEMPLATE_ID": "t.schema", "DINGTALK_API_BASE": base, "DINGTALK_OAPI_BASE": base,
              "DINGTALK_LOGIN_URL": f"{base}/login",
              "WECOM_CORP_ID": "wwcorp", "WECOM_AGENT_ID": "1000002", "WECOM_SECRET": "wc-secret",
              "WECOM_TOKEN": wecom_rig.TOKEN, "WECOM_AES_KEY": wecom_rig.AES_KEY, "WECOM_API_BASE": base,
              "WECOM_OAUTH_URL": f"{base}/authorize"}
    for name, value in values.items():
        monkeypatch.setenv(name, value)


@asynccontextmanager
async def built(settings: Settings) -> AsyncIterator[dict[str, Connector]]:
    """The connectors PLATFORMS names, built from their own settings (not started: sign-in needs no
    inbound connection); closed afterwards."""
    connectors = registry.build(settings)
    try:
        yield connectors
    finally:
        for connector in connectors.values():
            await connector.stop()


async def _flow(settings: Settings) -> AsyncIterator[Flow]:
    service = build_service(settings)
    case_id = await start_probation(service)
    await to_guarantee_step(service, case_id)
    async with built(settings) as connectors, \
            TestClient(TestServer(make_app(settings, service, connectors), host="127.0.0.1")) as client:
        yield Flow(settings, service, case_id, client)


@pytest.fixture(params=["dingtalk", "wecom"])
async def pflow(request: pytest.FixtureRequest, demo_org: Settings, fake: tuple[FakePlatforms, str],
                monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Flow, FakePlatforms, str]]:
    platform = request.param
    platforms, base = fake
    platform_env(monkeypatch, base)
    settings = demo_org.model_copy(update={"platforms": (platform,)})
    field = "dingtalk_userid" if platform == "dingtalk" else "wecom_userid"
    await Employee.filter(employee_id=EMPLOYEE).update(**{field: "zhangsan"})
    await Employee.filter(employee_id="E006").update(**{field: "zhouba"})
    async for f in _flow(settings):
        yield f, platforms, platform


async def _login(f: Flow, platforms: FakePlatforms, platform: str, token: str, as_user: str
                 ) -> web.Response | Any:
    first = await f.client.get(f"/sign/{token}", allow_redirects=False)
    assert first.status == 302
    target = urlsplit(first.headers["Location"])
    q = parse_qs(target.query)
    redirect = urlsplit(q["redirect_uri"][0])
    assert redirect.path == f"/sign/{token}/oauth/{platform}"
    if platform == "wecom":
        assert q["scope"] == ["snsapi_base"] and q["appid"] == ["wwcorp"] and target.fragment == "wechat_redirect"
    platforms.codes["CODE1"] = as_user
    return await f.client.get(f"{redirect.path}?code=CODE1&state={q['state'][0]}", allow_redirects=False)


async def test_platform_identity_confirmed_and_recorded(pflow: tuple[Flow, FakePlatforms, str]) -> None:
    f, platforms, platform = pflow
    token = f.token()
    back = await _login(f, platforms, platform, token, "zhangsan")
    assert back.status == 302 and back.headers["Location"] == f"/sign/{token}"
    page = await f.client.get(f"/sign/{token}")
    assert page.status == 200
    h = re.search(r'\?h=([0-9a-f]{64})"', await page.text())
    assert h
    resp = await f.client.post(f"/sign/{token}?h={h.group(1)}", json={
        "token": token, "consent": True, "consent_version": "2025-01", "strokes": signature_strokes()})
    assert resp.status == 200, await resp.text()
    sig = await Signature.get(case_id=f.case_id)
    assert sig.identity_method == f"{platform}_oauth" and sig.platform_identity == f"{platform}:zhangsan"


async def test_someone_else_logging_in_is_refused(pflow: tuple[Flow, FakePlatforms, str]) -> None:
    f, platforms, platform = pflow
    token = f.token()
    back = await _login(f, platforms, platform, token, "zhouba")
    assert back.status == 403 and "不一致" in await back.text()
    again = await f.client.get(f"/sign/{token}", allow_redirects=False)
    assert again.status == 302  # still unconfirmed
    resp = await f.client.post(f"/sign/{token}", json={"token": token, "consent": True,
                                                       "consent_version": "2025-01", "strokes": signature_strokes()})
    assert resp.status == 401
    assert not await Signature.all().exists()


async def test_forged_state_and_bad_code(pflow: tuple[Flow, FakePlatforms, str]) -> None:
    f, platforms, platform = pflow
    token = f.token()
    platforms.codes["C"] = "zhangsan"
    bad_state = await f.client.get(f"/sign/{token}/oauth/{platform}?code=C&state=abc", allow_redirects=False)
    assert bad_state.status == 403
    nonce = read_token(f.settings.secret_bytes(), token, datetime.now(UTC)).nonce
    state = oauth_state(f.settings.secret_bytes(), nonce)
    unknown = await f.client.get(f"/sign/{token}/oauth/{platform}?code=NOPE&state={state}", allow_redirects=False)
    assert unknown.status == 403 and "未能通过平台确认" in await unknown.text()


async def test_dingtalk_in_app_auth_code(demo_org: Settings, fake: tuple[FakePlatforms, str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside the DingTalk client the page gets a 免登 authCode instead of an OAuth code; the
    connector's sign-in takes either."""
    platforms, base = fake
    platform_env(monkeypatch, base)
    async with built(demo_org.model_copy(update={"platforms": ("dingtalk",)})) as connectors:
        needed = SignIn("dingtalk", "zhangsan", connectors["dingtalk"].identity,  # type: ignore[arg-type]
                        connectors["dingtalk"].presentation.name)
        platforms.codes["AUTH"] = "zhangsan"
        who = await needed.confirm({"authCode": "AUTH"})
        assert who.identity == "dingtalk:zhangsan"
        with pytest.raises(IdentityError):
            await needed.confirm({"authCode": "AUTH"})  # single use


class _NoSignIn:
    """What the signing page sees of a platform that offers no web sign-in."""

    name = "nosignin"
    capabilities = Capabilities()  # its links are not local: someone must confirm who opens them
    presentation = neutral("nosignin")
    identity = None


async def test_a_platform_without_sign_in_refuses_its_links(demo_org: Settings) -> None:
    """A platform whose connector offers no web sign-in (and whose links are not local, as the
    emulator's are) cannot confirm anyone: its signer's link says so and nothing can be signed."""
    settings = demo_org.model_copy(update={"platforms": (_NoSignIn.name,)})
    service = build_service(settings)
    case_id = await start_probation(service)
    await to_guarantee_step(service, case_id)
    app = make_app(settings, service, {_NoSignIn.name: _NoSignIn()})  # type: ignore[dict-item]
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        token = Flow(settings, service, case_id, client).token()
        page = await client.get(f"/sign/{token}", allow_redirects=False)
        text = await page.text()
        assert page.status == 503 and "无法确认您的身份" in text and _NoSignIn.name in text, text
        resp = await client.post(f"/sign/{token}", json={"token": token, "consent": True,
                                                         "consent_version": "2025-01", "strokes": signature_strokes()})
        assert resp.status == 503 and (await resp.json())["code"] == "sign_in_unavailable"
    assert not await Signature.all().exists()
