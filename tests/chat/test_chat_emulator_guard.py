"""The emulator answers only its local user (issue 11, findings 1, 2 and 6), over real HTTP on 127.0.0.1.

Each refusal test also shows the same request going through when it is the user's own (so it could
fail), and that a refused request changed nothing in the database.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from tortoise import connections

from bot.app import create_app
from bot.connectors import CONNECTORS
from bot.platforms import registry
from bot.platforms.emulator import EmulatorConfig, check_startup
from bot.platforms.emulator import settings as emulator_settings
from chat.appkeys import ANNOUNCE
from chat.connector import Address, ConfigError
from config.settings import Settings, load_settings
from handlers.signing_web import HEADERS as SIGNING_HEADERS
from storage.models import AuditEntry, Case, EmulatorMessage, InboxEvent, OutboxMessage
from tests.conftest import PG_URL, ROOT, emulator_env

TOKEN = "test-emulator-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
COOKIE = {"Cookie": f"emulator_token={TOKEN}"}
START = "/离职 张三 试用期 2025-07-31 绩效未达标 交接人:周八"
API_GETS = ["/emulator/api/directory", "/emulator/api/cards?user=E003", "/emulator/api/messages?user=E003"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@asynccontextmanager
async def running(settings: Settings, port: int | None = None) -> AsyncIterator[str]:
    """The real application on 127.0.0.1, sharing the test's database (one replica, one process life),
    its emulator configured with EMULATOR_TOKEN=TOKEN."""
    port = port or _free_port()
    with emulator_env(token=TOKEN):
        app = create_app(settings.model_copy(update={"http_port": port}), with_db=False)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def _settings(demo_org: Settings, **extra: Any) -> Settings:
    return demo_org.model_copy(update={"outbox_poll_seconds": 0.05, **extra})


@pytest.fixture
async def emu(demo_org: Settings) -> AsyncIterator[str]:
    async with running(_settings(demo_org)) as base:
        yield base


async def _state() -> dict[str, Any]:
    """Everything an emulator request could change."""
    return {
        "inbox": await InboxEvent.all().count(), "outbox": await OutboxMessage.all().count(),
        "audit": await AuditEntry.all().count(), "messages": await EmulatorMessage.all().count(),
        "cases": sorted((c.id, c.status, c.version) for c in await Case.all()),
        "panes": sorted((m.id, m.seq, m.version) for m in await EmulatorMessage.all()),
    }


async def _cards(http: aiohttp.ClientSession, base: str, user: str) -> list[dict[str, Any]]:
    async with http.get(f"{base}/emulator/api/cards", params={"user": user}, headers=AUTH) as r:
        assert r.status == 200, await r.text()
        return (await r.json())["cards"]


async def _wait_card(http: aiohttp.ClientSession, base: str, user: str, pred: Any) -> dict[str, Any]:
    for _ in range(200):
        for c in await _cards(http, base, user):
            if pred(c):
                return c
        await asyncio.sleep(0.05)
    raise AssertionError(f"no matching card for {user}: {await _cards(http, base, user)}")


async def _open_case(http: aiohttp.ClientSession, base: str) -> str:
    """HR starts Case B through the emulator; returns the case id once the employee holds a card."""
    async with http.post(f"{base}/emulator/api/send", json={"user": "E001", "text": START}, headers=AUTH) as r:
        body = await r.json()
        assert r.status == 200 and body["ok"], body
    card = await _wait_card(http, base, "E003", lambda c: c["step_id"] == "application")
    return card["case_id"]


def _cancel(case_id: str) -> dict[str, str]:
    return {"user": "E001", "text": f"/cancel {case_id} 测试撤销"}


async def _drained() -> None:
    for _ in range(200):
        if not await OutboxMessage.filter(status__in=["pending", "claimed"]).exists():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the outbox never drained")


async def _settled() -> dict[str, Any]:
    """The state once the relays have nothing left to deliver (so a later comparison is fair)."""
    before = await _state()
    for _ in range(100):
        await asyncio.sleep(0.1)
        pending = await OutboxMessage.filter(status__in=["pending", "claimed"]).count()
        now = await _state()
        if pending == 0 and now == before:
            return now
        before = now
    raise AssertionError("the outbox never settled")


# ---------------------------------------------------------------- finding 1: a same-host reverse proxy

@asynccontextmanager
async def forwarder(upstream: str, *, add_xff: bool) -> AsyncIterator[str]:
    """A reverse proxy on loopback, like a local nginx: forwards everything (cookies and
    Authorization included), sets Host to the upstream as nginx's default does, and optionally
    adds X-Forwarded-For as a proxy configured for TRUSTED_PROXIES does."""
    hop_by_hop = {"host", "connection", "keep-alive", "transfer-encoding", "content-length"}

    async def forward(request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in hop_by_hop}
        if add_xff:
            headers["X-Forwarded-For"] = request.remote or ""
        async with aiohttp.ClientSession(auto_decompress=False) as http:
            async with http.request(request.method, upstream + request.path_qs, headers=headers,
                                    data=await request.read(), allow_redirects=False) as r:
                body = await r.read()
                out = {k: v for k, v in r.headers.items()
                       if k.lower() not in hop_by_hop | {"content-encoding", "date", "server"}}
                return web.Response(status=r.status, body=body, headers=out)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    port = _free_port()
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_a_same_host_reverse_proxy_gets_nothing(emu: str) -> None:
    async with aiohttp.ClientSession() as http:
        case_id = await _open_case(http, emu)
        state = await _settled()
        async with forwarder(emu, add_xff=True) as proxy:
            # Even a proxied request that carries the token (a browser's cookie, a header) is refused.
            for auth in ({}, AUTH, COOKIE):
                for path in [*API_GETS, "/emulator", "/emulator/emulator.js"]:
                    async with http.get(proxy + path, headers=auth) as r:
                        text = await r.text()
                        assert r.status == 403, (path, r.status, text)
                        assert "card_id" not in text and "/sign/" not in text and "张三" not in text
                async with http.get(f"{proxy}/emulator?token={TOKEN}", allow_redirects=False) as r:
                    assert r.status == 403 and "Set-Cookie" not in r.headers
                async with http.post(f"{proxy}/emulator/api/send", json=_cancel(case_id),
                                     headers={**auth, "Origin": proxy}) as r:
                    assert r.status == 403, await r.text()
        async with forwarder(emu, add_xff=False) as proxy:
            # A proxy that names no hop still needs the token, which only the local user has.
            for path in API_GETS:
                async with http.get(proxy + path) as r:
                    assert r.status == 401 and "card_id" not in await r.text()
            async with http.post(f"{proxy}/emulator/api/send", json=_cancel(case_id)) as r:
                assert r.status == 401
        assert await _state() == state
        assert (await Case.get(id=case_id)).status == "open"
        # The same request straight from the local user is answered (the refusals are not blanket).
        async with http.get(f"{emu}/emulator/api/cards?user=E003", headers=AUTH) as r:
            assert r.status == 200 and (await r.json())["cards"]


# ---------------------------------------------------------------- the token

async def test_every_emulator_route_needs_the_token(emu: str) -> None:
    async with aiohttp.ClientSession() as http:
        case_id = await _open_case(http, emu)
        state = await _settled()
        wrong = [{}, {"Authorization": "Bearer nope-nope-nope-nope"}, {"Authorization": TOKEN},
                 {"Cookie": "emulator_token=nope-nope-nope-nope"}, {"Authorization": f"Basic {TOKEN}"}]
        for headers in wrong:
            for path in [*API_GETS, "/emulator", "/emulator/emulator.js", "/emulator/emulator.css"]:
                async with http.get(emu + path, headers=headers) as r:
                    text = await r.text()
                    assert r.status == 401, (path, headers, r.status)
                    assert "card_id" not in text and "张三" not in text and "<script" not in text
            for path, body in (("/emulator/api/send", _cancel(case_id)),
                               ("/emulator/api/click", {"user": "E003", "card_id": "x", "action": "submit"})):
                async with http.post(emu + path, json=body, headers=headers) as r:
                    assert r.status == 401
        async with http.get(f"{emu}/emulator?token=not-the-token-at-all", allow_redirects=False) as r:
            assert r.status == 401 and "Set-Cookie" not in r.headers
        assert await _state() == state

        # The printed address trades the token for an HttpOnly, SameSite=Strict cookie and a clean URL.
        async with http.get(f"{emu}/emulator?token={TOKEN}", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/emulator"
            cookie = r.headers["Set-Cookie"]
        assert cookie.startswith(f"emulator_token={TOKEN};")
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/emulator" in cookie
        for headers in (AUTH, COOKIE):
            async with http.get(f"{emu}/emulator/api/cards?user=E003", headers=headers) as r:
                assert r.status == 200 and (await r.json())["cards"]
            async with http.get(f"{emu}/emulator", headers=headers) as r:
                assert r.status == 200 and "emulator.js" in await r.text()


async def test_a_random_token_per_start_when_none_is_set(demo_org: Settings) -> None:
    seen = []
    for _ in range(2):
        app = create_app(demo_org, with_db=False)
        token = app[CONNECTORS]["emulator"].token
        assert len(token) >= 32 and app[ANNOUNCE] == [f"emulator: open http://127.0.0.1:8080/emulator?token={token}"]
        seen.append(token)
    assert seen[0] != seen[1]


def test_the_token_setting(settings: Settings, tmp_path: Path) -> None:
    """EMULATOR_TOKEN is the emulator's own setting, read when its connector is created; a weak one stops
    start-up with one line naming it, before anything is served."""
    with emulator_env(token=""):  # .env.example's empty value
        assert emulator_settings.load(None).token is None
        assert len(registry.build(settings)["emulator"].token) >= 32  # random per start
    with emulator_env(token=TOKEN):
        assert emulator_settings.load(None).token.get_secret_value() == TOKEN
        assert registry.build(settings)["emulator"].token == TOKEN
        assert TOKEN not in repr(emulator_settings.load(None))
    for weak in ("short", "x" * 15, "with a space in it!!", "非ASCII字符非ASCII字符非ASCII字符",
                 "semi;colon&amp=0123456789"):
        with emulator_env(token=weak):
            with pytest.raises(ConfigError, match=r"^bad setting EMULATOR_TOKEN: .*must be at least 16 of"):
                emulator_settings.load(None)
            with pytest.raises(registry.PlatformError) as err:
                registry.build(settings)
            assert str(err.value).startswith("bad setting EMULATOR_TOKEN: ") and "\n" not in str(err.value)
    # Only where the emulator is served: the core settings do not know the setting at all.
    assert "emulator_token" not in Settings.model_fields
    with emulator_env(token="short"):
        assert load_settings(_env_file=None).platforms == ("emulator",)  # no error: not a core setting


# ---------------------------------------------------------------- finding 2: cross-site requests, DNS rebinding

async def test_text_plain_posts_are_refused_and_change_nothing(emu: str) -> None:
    async with aiohttp.ClientSession() as http:
        case_id = await _open_case(http, emu)
        state = await _settled()
        body = json.dumps(_cancel(case_id))
        for auth in (COOKIE, AUTH):  # the cookie is what a cross-site form or no-cors fetch would carry
            for ctype in ("text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
                          "multipart/form-data; boundary=x", None):
                headers = {**auth, **({"Content-Type": ctype} if ctype else {})}
                async with http.post(f"{emu}/emulator/api/send", data=body.encode(), headers=headers) as r:
                    assert r.status == 415, (ctype, r.status, await r.text())
        assert await _state() == state
        assert (await Case.get(id=case_id)).status == "open"
        # Declared as JSON, the same body from the local user cancels.
        async with http.post(f"{emu}/emulator/api/send", data=body.encode(),
                             headers={**COOKIE, "Content-Type": "application/json"}) as r:
            assert r.status == 200 and (await r.json())["ok"]
        assert (await Case.get(id=case_id)).status == "cancelled"


async def test_a_foreign_origin_is_refused_and_changes_nothing(emu: str) -> None:
    port = emu.rsplit(":", 1)[1]
    async with aiohttp.ClientSession() as http:
        case_id = await _open_case(http, emu)
        state = await _settled()
        foreign = ["http://evil.example", f"http://evil.example:{port}", "http://127.0.0.1:9",  # same site!
                   f"https://127.0.0.1:{port}.evil.example", "null", f"ftp://127.0.0.1:{port}"]
        for origin in foreign:
            for auth in (COOKIE, AUTH):
                headers = {**auth, "Origin": origin}
                async with http.post(f"{emu}/emulator/api/send", json=_cancel(case_id), headers=headers) as r:
                    assert r.status == 403, (origin, r.status)
                async with http.get(f"{emu}/emulator/api/cards?user=E003", headers=headers) as r:
                    assert r.status == 403 and "card_id" not in await r.text()
        for site in ("cross-site", "same-site"):  # what a browser says for a request another page made
            headers = {**COOKIE, "Sec-Fetch-Site": site}
            async with http.post(f"{emu}/emulator/api/send", json=_cancel(case_id), headers=headers) as r:
                assert r.status == 403
            async with http.get(f"{emu}/emulator/api/cards?user=E003", headers=headers) as r:
                assert r.status == 403
        assert await _state() == state
        # The page's own origin is welcome.
        own = {**COOKIE, "Origin": emu, "Sec-Fetch-Site": "same-origin"}
        async with http.post(f"{emu}/emulator/api/send", json=_cancel(case_id), headers=own) as r:
            assert r.status == 200 and (await r.json())["ok"]
        assert (await Case.get(id=case_id)).status == "cancelled"


async def test_a_foreign_host_is_refused_and_changes_nothing(demo_org: Settings) -> None:
    port = _free_port()
    settings = _settings(demo_org, public_base_url="https://offboard.example.com")
    async with running(settings, port) as emu, aiohttp.ClientSession() as http:
        case_id = await _open_case(http, emu)
        state = await _settled()
        for host in (f"rebind.attacker.example:{port}", "rebind.attacker.example", f"127.0.0.1.nip.io:{port}",
                     f"offboard.example.com.evil:{port}", f"[::2]:{port}", f"10.0.0.1:{port}"):
            headers = {**AUTH, "Host": host}
            for path in [*API_GETS, "/emulator"]:
                async with http.get(emu + path, headers=headers) as r:
                    text = await r.text()
                    assert r.status == 403, (host, path, r.status)
                    assert "card_id" not in text and "/sign/" not in text
            async with http.post(f"{emu}/emulator/api/send", json=_cancel(case_id), headers=headers) as r:
                assert r.status == 403
        assert await _state() == state
        # Loopback names (with the port or without) and PUBLIC_BASE_URL's host are ours.
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "LOCALHOST", "offboard.example.com"):
            async with http.get(f"{emu}/emulator/api/cards?user=E003", headers={**AUTH, "Host": host}) as r:
                assert r.status == 200 and (await r.json())["cards"], host


async def test_any_json_parse_error_is_a_400_and_changes_nothing(emu: str) -> None:
    async with aiohttp.ClientSession() as http:
        await _open_case(http, emu)
        state = await _settled()
        deep = "[" * 100_000 + "]" * 100_000
        bodies = [deep, '{"user": "E001", "text": "/help", "x": ' + deep + "}", "{nope", "", "\xff\xfe",
                  '"just a string"', "[1, 2]", '{"user": "E001", "text": "/help", "event_id": 7}']
        for path in ("/emulator/api/send", "/emulator/api/click"):
            for body in bodies:
                async with http.post(emu + path, data=body.encode("latin-1"),
                                     headers={**AUTH, "Content-Type": "application/json"}) as r:
                    answer = await r.json()
                    assert r.status == 400 and answer["code"] == "bad_request", (path, body[:20], answer)
        async with http.post(f"{emu}/emulator/api/send", data=deep.encode(),
                             headers={**AUTH, "Content-Type": "application/json"}) as r:
            assert "nested too deeply" in (await r.json())["text"]
        assert await _state() == state


async def test_the_page_gets_the_signing_pages_headers(emu: str) -> None:
    csp = SIGNING_HEADERS["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    async with aiohttp.ClientSession(headers=AUTH) as http:
        for path, kind in (("/emulator", "text/html"), ("/emulator/emulator.js", "text/javascript"),
                           ("/emulator/emulator.css", "text/css")):
            async with http.get(emu + path) as r:
                assert r.status == 200 and r.content_type == kind
                assert r.headers["Content-Security-Policy"] == csp
                assert all(r.headers[k] == v for k, v in SIGNING_HEADERS.items())
                text = await r.text()
        async with http.get(f"{emu}/emulator") as r:
            page = await r.text()
        # Nothing inline that the policy would block: every script and style comes from a file.
        assert not re.search(r"<script(?![^>]*\bsrc=)", page) and "<style" not in page and " style=" not in page
        assert not re.search(r"\son[a-z]+=", page)
        assert text  # the stylesheet is served


# ---------------------------------------------------------------- start-up

def _base(tmp_path: Path, **env: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
    # PYTHONPATH: the checkout under test, whatever is installed in the environment.
    return {**keep, "DATA_DIR": str(tmp_path / "data"), "SECRET_KEY": "test-secret-key-0123456789",
            "DATABASE_URL": f"sqlite://{tmp_path / 'data' / 'bot.sqlite3'}", "HTTP_PORT": str(_free_port()),
            "PYTHONPATH": str(ROOT), **env}


@pytest.mark.parametrize("env", [{"HTTP_HOST": "0.0.0.0"}, {"TRUSTED_PROXIES": "127.0.0.1"},
                                 {"HTTP_HOST": "::", "PLATFORMS": "emulator,wecom"}])
def test_start_up_refuses_an_exposed_emulator(tmp_path: Path, env: dict[str, str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "bot", "serve", "--migrate", "--demo"], cwd=tmp_path,
                          env=_base(tmp_path, **env), capture_output=True, text=True, timeout=30)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: refusing to serve the emulator: ") and "EMULATOR_ALLOW_EXPOSED=true" in lines[0]
    assert not (tmp_path / "data" / "bot.sqlite3").exists()  # refused before migrating or loading anything


def test_the_start_up_rules(settings: Settings) -> None:
    refused = [{"http_host": "0.0.0.0"}, {"http_host": "192.168.1.10"}, {"http_host": ""},
               {"trusted_proxies": ("127.0.0.1",)}, {"http_host": "0.0.0.0", "platforms": ("emulator", "dingtalk")}]
    for change in refused:
        with pytest.raises(ConfigError, match="refusing to serve the emulator"):
            check_startup(EmulatorConfig(**change))
        check_startup(EmulatorConfig(**change, allow_exposed=True))
        # As start-up gets there: the core's settings, the emulator's own EMULATOR_ALLOW_EXPOSED.
        exposed = settings.model_copy(update=change)
        if "emulator" in exposed.platforms:
            with pytest.raises(registry.PlatformError, match=r"^refusing to serve the emulator: .*EMULATOR_ALLOW"):
                registry.build(exposed, ["emulator"])
            with emulator_env(allow_exposed="true"):
                assert "emulator" in registry.build(exposed, ["emulator"])
    for fine in ({}, {"http_host": "localhost"}, {"http_host": "::1"}, {"http_host": "127.0.0.5"},
                 {"http_host": "0.0.0.0", "platforms": ("wecom",)}):
        check_startup(EmulatorConfig(**fine))
    assert "emulator" in registry.build(settings)


async def test_start_up_with_the_override_serves_and_prints_the_token_once(db_url: str, tmp_path: Path) -> None:
    port = _free_port()
    env = _base(tmp_path, DATABASE_URL=db_url, HTTP_PORT=str(port), TRUSTED_PROXIES="127.0.0.1",
                EMULATOR_ALLOW_EXPOSED="true", PLATFORMS="emulator,dingtalk", LOG_LEVEL="DEBUG",
                COMPANY_NAME="测试科技有限公司",
                # DingTalk's connector needs its settings to start; its gateway here answers nothing.
                DINGTALK_CLIENT_ID="ding-app", DINGTALK_CLIENT_SECRET="ding-secret",
                DINGTALK_CARD_TEMPLATE_ID="t.schema", DINGTALK_API_BASE="http://127.0.0.1:9")
    # A real install: the root CA made offline, only the seal on the server (serve refuses without it).
    keys = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "keys", "--root-dir",
                                                str(tmp_path / "offline-root"), cwd=tmp_path, env=env,
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    assert await keys.wait() == 0
    log = tmp_path / "stderr.log"
    with log.open("w") as err_file:  # a file, not a pipe: DEBUG logging must never block the server
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "serve", cwd=tmp_path, env=env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=err_file)
    try:
        raw = await asyncio.wait_for(proc.stdout.readline(), 60)  # type: ignore[union-attr]
        line = raw.decode()
        match = re.fullmatch(rf"emulator: open (http://127\.0\.0\.1:{port}/emulator)\?token=([\w-]{{32,}})\n", line)
        assert match, (line, log.read_text())
        url, token = match.groups()
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.get(f"{url}?token={token}") as r:  # the user opens the printed address
                assert r.status == 200 and str(r.url) == url
            async with http.get(f"http://127.0.0.1:{port}/emulator/api/directory") as r:  # the cookie alone
                assert r.status == 200 and (await r.json())["people"] is not None
            async with http.get(f"http://127.0.0.1:{port}/emulator/api/directory",
                                headers={"X-Forwarded-For": "203.0.113.9"}) as r:
                assert r.status == 403  # the override does not open the proxied path
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(proc.communicate(), 30)
    out, err = line + rest.decode(), log.read_text()
    assert out.count(token) == 1 and token not in err  # printed once, on the line read above, never logged
    assert "serving the emulator although TRUSTED_PROXIES is set" in err
    assert "the emulator runs beside dingtalk" in err


# ---------------------------------------------------------------- finding 6: restarts and replicas

async def test_card_updates_land_after_a_restart(demo_org: Settings) -> None:
    settings = _settings(demo_org)
    async with aiohttp.ClientSession() as http:
        async with running(settings) as first:
            await _open_case(http, first)
            await _settled()
            before = {c["card_id"]: c for c in await _cards(http, first, "E003")}
        # A new process life on the same database: nothing of the first one's memory survives.
        async with running(settings) as second:
            after = {c["card_id"]: c for c in await _cards(http, second, "E003")}
            assert {k: (c["message_id"], c["version"]) for k, c in after.items()} == \
                   {k: (c["message_id"], c["version"]) for k, c in before.items()}
            card = next(c for c in after.values() if c["step_id"] == "application")
            click = {"user": "E003", "card_id": card["card_id"], "action": "submit",
                     "form": {"last_working_day": "2025-07-31", "reason": "个人原因"}}
            async with http.post(f"{second}/emulator/api/click", json=click, headers=AUTH) as r:
                assert (await r.json())["ok"]
            done = await _wait_card(http, second, "E003", lambda c: c["card_id"] == card["card_id"]
                                    and c["version"] > card["version"])
            assert done["message_id"] == card["message_id"] and done["status"].startswith("已由 张三")
            assert not any(b["enabled"] for b in done["buttons"] if b["action"] == "submit")
            await _settled()
    assert await OutboxMessage.filter(status="failed").count() == 0
    updates = await OutboxMessage.filter(kind="update", status="sent").count()
    assert updates >= 1


async def test_two_replicas_on_one_database_show_the_same_cards(demo_org: Settings) -> None:
    settings = _settings(demo_org)
    async with running(settings) as a, running(settings) as b, aiohttp.ClientSession() as http:
        await _open_case(http, a)
        await _settled()
        for user in ("E001", "E002", "E003"):
            assert await _cards(http, a, user) == await _cards(http, b, user)
        card = next(c for c in await _cards(http, b, "E003") if c["step_id"] == "application")
        click = {"user": "E003", "card_id": card["card_id"], "action": "submit",
                 "form": {"last_working_day": "2025-07-31", "reason": "个人原因"}}
        async with http.post(f"{b}/emulator/api/click", json=click, headers=AUTH) as r:
            assert (await r.json())["ok"]
        seen_on_a = await _wait_card(http, a, "E003", lambda c: c["card_id"] == card["card_id"]
                                     and c["status"].startswith("已由 张三"))
        assert seen_on_a["message_id"] == card["message_id"]
        await _settled()
        # Polling either replica from the same point returns the same changes.
        async with http.get(f"{a}/emulator/api/messages?user=E003&since=0", headers=AUTH) as ra, \
                http.get(f"{b}/emulator/api/messages?user=E003&since=0", headers=AUTH) as rb:
            assert await ra.json() == await rb.json()
    assert await OutboxMessage.filter(status="failed").count() == 0


@pytest.mark.skipif(bool(PG_URL), reason="SQLite query planner")
async def test_emulator_statements_use_indexes(demo_org: Settings) -> None:
    raw = connections.get("default")._connection._conn
    seen: list[str] = []
    async with running(_settings(demo_org)) as emu, aiohttp.ClientSession() as http:
        await _open_case(http, emu)
        await _settled()
        raw.set_trace_callback(seen.append)
        try:
            card = next(c for c in await _cards(http, emu, "E003") if c["step_id"] == "application")
            click = {"user": "E003", "card_id": card["card_id"], "action": "submit", "event_id": "t1",
                     "form": {"last_working_day": "2025-07-31", "reason": "个人原因"}}
            async with http.post(f"{emu}/emulator/api/click", json=click, headers=AUTH) as r:
                assert (await r.json())["ok"]
            async with http.post(f"{emu}/emulator/api/send", json={"user": "E001", "text": "/help", "event_id": "t2"},
                                 headers=AUTH) as r:
                assert (await r.json())["ok"]
            await _drained()
            async with http.get(f"{emu}/emulator/api/messages?user=E003&since=1", headers=AUTH) as r:
                assert (await r.json())["messages"]
        finally:
            raw.set_trace_callback(None)
    statements = {s for s in seen if "emulator_message" in s and not s.startswith(("EXPLAIN", "PRAGMA"))}
    assert any(s.startswith("INSERT") for s in statements) and any(s.startswith("UPDATE") for s in statements)
    assert any(s.startswith("SELECT") for s in statements)
    for statement in statements:
        plan = [tuple(row)[-1] for row in raw.execute("EXPLAIN QUERY PLAN " + statement).fetchall()]
        walks = [d for d in plan if d.startswith("SCAN") and "emulator_message" in d]
        assert not walks, (statement, plan)


async def test_writers_racing_on_one_pane_never_share_a_number(demo_org: Settings) -> None:
    """Replicas writing to one person's pane at once (on PostgreSQL truly in parallel, one
    connection each): every change gets its own, higher number, so a poller misses none."""
    from bot.platforms.emulator import EmulatorConnector
    from cards.model import Card

    adapters = [EmulatorConnector() for _ in range(4)]
    to = Address("emulator", "E001", "E001")
    sent = await asyncio.gather(*(adapters[i % 4].send_card(to, Card(title=f"card {i}"), f"race-{i}")
                                  for i in range(12)))
    ids = [d.message_id for d in sent]
    seen_after_inserts = max(m.seq for m in await adapters[0].store.history("E001"))
    await asyncio.gather(*(adapters[i % 4].update_card(to, Card(title=f"card {i} v2"), f"race-{i}", sent[i])
                           for i in range(12)))
    await asyncio.gather(*(adapters[i % 4].store.text("E001", "E001", f"line {i}") for i in range(12)))
    rows = await EmulatorMessage.filter(recipient="E001").order_by("seq")
    assert len(rows) == 24 and len({r.seq for r in rows}) == 24
    cards = [r for r in rows if r.kind == "card"]
    assert all(r.version == 2 and r.seq > seen_after_inserts for r in cards)  # every update moved forward
    assert sorted(f"emu-{r.id}" for r in cards) == sorted(ids)
    # A resend of a card already held answers with its id and adds nothing.
    assert (await adapters[3].send_card(to, Card(title="again"), "race-0")).message_id == ids[0]
    assert await EmulatorMessage.filter(recipient="E001").count() == 24


async def test_an_upgraded_database_gets_its_cards_back_and_their_updates_land(demo_org: Settings) -> None:
    """Cards delivered by the in-memory emulator (before this table) left only outbox rows with ids
    like emu-142. After the upgrade they are shown again at start-up and updates find them by card id."""
    settings = _settings(demo_org)
    async with aiohttp.ClientSession() as http:
        async with running(settings) as first:
            await _open_case(http, first)
            await _settled()
        sent = await OutboxMessage.filter(platform="emulator", kind="card", status="sent").count()
        await OutboxMessage.filter(platform="emulator", status="sent").update(platform_message_id="emu-142")
        await EmulatorMessage.all().delete()  # what the old, in-memory emulator kept: nothing
        async with running(settings) as second:
            assert await EmulatorMessage.filter(kind="card").count() == sent
            card = next(c for c in await _cards(http, second, "E003") if c["step_id"] == "application")
            click = {"user": "E003", "card_id": card["card_id"], "action": "submit",
                     "form": {"last_working_day": "2025-07-31", "reason": "个人原因"}}
            async with http.post(f"{second}/emulator/api/click", json=click, headers=AUTH) as r:
                assert (await r.json())["ok"]
            done = await _wait_card(http, second, "E003", lambda c: c["card_id"] == card["card_id"]
                                    and c["status"].startswith("已由 张三"))
            assert done["message_id"] == card["message_id"]
            await _settled()
    assert await OutboxMessage.filter(status="failed").count() == 0
    assert await EmulatorMessage.filter(kind="card").count() > sent  # and the manager's new card arrived
