"""Dashboard sign-in with a real platform: the OAuth code flow against fake DingTalk / WeCom servers on
127.0.0.1, through the running connector's own sign-in (`identity`), as the signing page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import pytest

from config.settings import Settings
from storage.models import Employee
from tests.chat.contract_connector import NAME, ContractConnector
from tests.dashboard.conftest import EMPLOYEE, HR, Dash, serve
from tests.signing_flow.test_signflow_oauth import FakePlatforms, fake, platform_env  # noqa: F401 (fixture)


@pytest.fixture(params=["dingtalk", "wecom"])
async def pdash(request: pytest.FixtureRequest, demo_org: Settings, fake: tuple[FakePlatforms, str],  # noqa: F811
                monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Dash, FakePlatforms, str]]:
    platform = request.param
    platforms, base = fake
    platform_env(monkeypatch, base)  # the connectors' own DINGTALK_* / WECOM_* settings, nothing in the core's
    field = "dingtalk_userid" if platform == "dingtalk" else "wecom_userid"
    await Employee.filter(employee_id=HR).update(**{field: "lina"})
    await Employee.filter(employee_id=EMPLOYEE).update(**{field: "zhangsan"})
    async with serve(demo_org, platforms=(platform,)) as d:
        yield d, platforms, platform


async def _round_trip(d: Dash, http, platforms: FakePlatforms, platform: str, as_user: str | None):  # type: ignore[no-untyped-def]
    async with http.get(f"{d.base}/dashboard/signin") as r:
        page = await r.text()
    assert f'id="signin-{platform}"' in page and 'id="signin-emulator"' not in page
    # The button says what the platform's connector presents, worded as it always was.
    assert {"dingtalk": ">钉钉登录</a>", "wecom": ">企业微信登录</a>"}[platform] in page
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


async def test_no_platform_offering_sign_in_means_sign_in_is_unavailable(demo_org: Settings) -> None:
    """The dashboard offers only what running connectors offer: with none of them offering a web
    sign-in, the page says so, and no platform's sign-in can be started."""
    async with serve(demo_org, platforms=(NAME,), connectors={NAME: ContractConnector(identity=None)}) as d, \
            d.client() as http:
        async with http.get(f"{d.base}/dashboard/signin") as r:
            page = await r.text()
        assert r.status == 200 and "登录不可用" in page and 'id="signin-' not in page, page
        async with http.get(f"{d.base}/dashboard/signin/dingtalk", allow_redirects=False) as r:
            assert r.status == 404


async def test_the_emulators_sign_in_is_labelled_and_comes_back_locally(demo_org: Settings) -> None:
    """The emulator's identity declares `relative_redirect`: its picker sends the browser back to the address
    the user opened, not PUBLIC_BASE_URL; its label is its presentation's."""
    async with serve(demo_org, public_base_url="https://offboard.example.com") as d, d.client() as http:
        async with http.get(f"{d.base}/dashboard/signin") as r:
            page = await r.text()
        assert '>本地模拟器登录（演示）</a>' in page, page
        async with http.get(f"{d.base}/dashboard/signin/emulator", allow_redirects=False) as r:
            assert r.status == 302
            target = urlsplit(r.headers["Location"])
        assert target.path == "/emulator/signin"
        assert parse_qs(target.query)["redirect_uri"] == ["/dashboard/oauth/emulator"]
