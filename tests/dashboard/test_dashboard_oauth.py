"""Dashboard sign-in with a real platform: the OAuth code flow against fake DingTalk / WeCom servers on
127.0.0.1, through the same identity code as the signing page (signing/oauth.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import SecretStr

from config.settings import Settings
from signing import oauth
from storage.models import Employee
from tests.dashboard.conftest import EMPLOYEE, HR, Dash, serve
from tests.platforms.wecom import rig as wecom_rig
from tests.signing_flow.test_signflow_oauth import FakePlatforms, fake  # noqa: F401 (fixture)


@pytest.fixture(params=["dingtalk", "wecom"])
async def pdash(request: pytest.FixtureRequest, demo_org: Settings, fake: tuple[FakePlatforms, str],  # noqa: F811
                monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Dash, FakePlatforms, str]]:
    platform = request.param
    # The WeCom connector also wants its callback's Token and EncodingAESKey (its own WECOM_* settings).
    monkeypatch.setenv("WECOM_TOKEN", wecom_rig.TOKEN)
    monkeypatch.setenv("WECOM_AES_KEY", wecom_rig.AES_KEY)
    monkeypatch.setenv("DINGTALK_CARD_TEMPLATE_ID", "t.schema")  # the connector refuses to start without one
    platforms, base = fake
    oauth._tokens.clear()
    field = "dingtalk_userid" if platform == "dingtalk" else "wecom_userid"
    await Employee.filter(employee_id=HR).update(**{field: "lina"})
    await Employee.filter(employee_id=EMPLOYEE).update(**{field: "zhangsan"})
    async with serve(demo_org, platforms=(platform,), dingtalk_client_id="ding-client",
                     dingtalk_api_base=base, dingtalk_oapi_base=base, dingtalk_login_url=f"{base}/login",
                     wecom_corp_id="wwcorp", wecom_agent_id="1000002", wecom_api_base=base,
                     wecom_oauth_url=f"{base}/authorize", dingtalk_client_secret=SecretStr("ding-secret"),
                     wecom_secret=SecretStr("wc-secret")) as d:
        yield d, platforms, platform


async def _round_trip(d: Dash, http, platforms: FakePlatforms, platform: str, as_user: str | None):  # type: ignore[no-untyped-def]
    async with http.get(f"{d.base}/dashboard/signin") as r:
        page = await r.text()
    assert f'id="signin-{platform}"' in page and 'id="signin-emulator"' not in page
    async with http.get(f"{d.base}/dashboard/signin/{platform}", allow_redirects=False) as r:
        assert r.status == 302
        target = urlsplit(r.headers["Location"])
    q = parse_qs(target.query)
    assert q["redirect_uri"] == [f"{d.base}/dashboard/oauth/{platform}"]
    if platform == "wecom":
        assert q["scope"] == ["snsapi_base"] and q["appid"] == ["wwcorp"] and target.fragment == "wechat_redirect"
    if as_user is not None:
        platforms.codes["CODE1"] = as_user
    return await http.get(f"{d.base}/dashboard/oauth/{platform}?code=CODE1&state={q['state'][0]}",
                          allow_redirects=False)


async def test_hr_signs_in_through_the_platform(pdash: tuple[Dash, FakePlatforms, str]) -> None:
    d, platforms, platform = pdash
    async with d.client() as http:
        back = await _round_trip(d, http, platforms, platform, "lina")
        assert back.status == 303 and back.headers["Location"] == "/dashboard"
        async with http.get(f"{d.base}/dashboard") as r:
            assert r.status == 200 and "李娜（E001）" in await r.text()


async def test_platform_user_who_is_not_hr_or_unknown_is_refused(pdash: tuple[Dash, FakePlatforms, str]) -> None:
    d, platforms, platform = pdash
    for who, status, text in (("zhangsan", 403, "只有人事"), ("stranger", 403, "只有人事"),
                              (None, 403, "平台未能确认")):  # None: the platform refuses the code
        async with d.client() as http:
            back = await _round_trip(d, http, platforms, platform, who)
            assert back.status == status and text in await back.text(), who
            async with http.get(f"{d.base}/dashboard", allow_redirects=False) as r:
                assert r.status == 303
