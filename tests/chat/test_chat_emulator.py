"""The emulator over real HTTP (its JSON API and page), escaping, and Case B in a headless browser."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.app import create_app
from cards.html import render
from cards.model import Button, Card
from config.settings import Settings
from storage.models import Employee
from tests.conftest import emulator_env

START = "/离职 张三 试用期 2025-07-31 绩效未达标 交接人:周八"
TOKEN = "test-emulator-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def server(demo_org: Settings) -> AsyncIterator[str]:
    """The real application on 127.0.0.1 (random port), sharing the test's database."""
    port = _free_port()
    settings = demo_org.model_copy(update={"http_port": port, "outbox_poll_seconds": 0.05,
                                           "public_base_url": f"http://127.0.0.1:{port}"})
    with emulator_env(token=TOKEN):
        app = create_app(settings, with_db=False)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def _cards(http: aiohttp.ClientSession, base: str, user: str) -> list[dict[str, Any]]:
    async with http.get(f"{base}/emulator/api/cards", params={"user": user}) as r:
        return (await r.json())["cards"]


async def _post(http: aiohttp.ClientSession, base: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with http.post(f"{base}/emulator/api/{path}", json=body) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def _wait_card(http, base: str, user: str, pred, tries: int = 100) -> dict[str, Any]:
    for _ in range(tries):
        for c in await _cards(http, base, user):
            if pred(c):
                return c
        await asyncio.sleep(0.05)
    raise AssertionError(f"no matching card for {user}: {await _cards(http, base, user)}")


async def test_json_api_round_trip(server: str) -> None:
    async with aiohttp.ClientSession(headers=AUTH) as http:
        async with http.post(f"{server}/emulator/api/send", json={"user": "E001", "text": START}) as r:
            body = await r.json()
        assert r.status == 200 and body["ok"], body
        card = await _wait_card(http, server, "E003", lambda c: c["step_id"] == "application")
        assert card["title"] and card["card_id"] and card["fields"]
        submit = next(b for b in card["buttons"] if b["action"] == "submit")
        assert submit["enabled"] and submit["url"] is None and submit["label"] == "提交"
        click = {"user": "E003", "card_id": card["card_id"], "action": "submit",
                 "form": {"last_working_day": "2025-07-31", "reason": "个人原因"}, "event_id": "c1"}
        for _ in range(3):  # a redelivered click: one effect, same answer
            async with http.post(f"{server}/emulator/api/click", json=click) as r:
                assert (await r.json())["ok"]
        await _wait_card(http, server, "E003", lambda c: c["step_id"] == "application" and
                         c["status"].startswith("已由 张三"))
        mgr = await _wait_card(http, server, "E002", lambda c: c["step_id"] == "performance_review")
        assert "绩效未达标" in str(mgr["fields"])  # the performance result is on the approval card
        # Bad requests get a clear 400, never a stack trace.
        for payload in ({"text": "x"}, {"user": "E001"}, [1, 2]):
            async with http.post(f"{server}/emulator/api/send", json=payload) as r:
                assert r.status == 400 and "text" in await r.json()
        async with http.post(f"{server}/emulator/api/send", data=b"{nope",
                             headers={"Content-Type": "application/json"}) as r:
            assert r.status == 400
        async with http.get(f"{server}/emulator/api/cards") as r:
            assert r.status == 400


async def test_question_to_hr_over_http(server: str) -> None:
    """Issue 14: the employee asks from a card, HR answers on the question card, the employee
    reads the answer and their own progress, all through the emulator's JSON API."""
    async with aiohttp.ClientSession(headers=AUTH) as http:
        started = await _post(http, server, "send", {"user": "E001", "text": START})
        case_id = started["data"]["case_id"]
        card = await _wait_card(http, server, "E003", lambda c: c["step_id"] == "application")
        ask = next(b for b in card["buttons"] if b["action"] == "ask")
        assert ask["label"] == "问HR" and [f["name"] for f in ask["form"]] == ["question"]
        assert 'data-action="ask"' in card["html"]
        asked = await _post(http, server, "click", {"user": "E003", "card_id": card["card_id"], "action": "ask",
                                                    "form": {"question": "保证书是必要环节吗？"}})
        assert asked["ok"] and asked["data"]["question"] == f"{case_id}-Q1", asked
        question = await _wait_card(http, server, "E001", lambda c: c["purpose"] == "question")
        assert "保证书是必要环节吗？" in question["body"]
        assert {"label": "当前步骤", "value": "第 1 步「确认收到解除通知并陈述意见」（离职员工）"} in question["fields"]
        # The manager cannot answer on HR's card.
        refused = await _post(http, server, "click", {"user": "E002", "card_id": question["card_id"],
                                                      "action": "answer", "form": {"answer": "是"}})
        assert not refused["ok"] and refused["code"] == "not_your_card"
        answered = await _post(http, server, "click", {"user": "E001", "card_id": question["card_id"],
                                                       "action": "answer",
                                                       "form": {"answer": "是的，签署保证书是补缴社保的前提。"}})
        assert answered["ok"], answered
        got = await _wait_card(http, server, "E003", lambda c: c["purpose"] == "answer")
        assert "签署保证书是补缴社保的前提" in got["body"]
        await _wait_card(http, server, "E001", lambda c: c["purpose"] == "question" and c["version"] > 1
                         and not any(b["action"] == "answer" for b in c["buttons"]))
        own = await _post(http, server, "send", {"user": "E003", "text": "/进度"})
        assert own["ok"] and f"{case_id}-Q1：保证书是必要环节吗？ → 李娜 已回复" in own["text"]


def test_html_renderer_escapes_everything() -> None:
    evil = '<script>alert(1)</script>"\'&'
    card = Card(title=evil, summary=evil, fields=((evil, evil),), body=f"**{evil}**\n- {evil}", status=evil,
                buttons=(Button(label=evil, action="approve", enabled=False, reason=evil),
                         Button(label=evil, url='javascript:"><script>x</script>')))
    html = render(card, evil)
    assert "<script>" not in html and "alert(1)</script>" not in html
    assert html.count("&lt;script&gt;") >= 8


async def test_script_in_a_name_stays_text_in_the_page(server: str) -> None:
    await Employee.filter(employee_id="E003").update(name="<img src=x onerror=alert(1)>张三")
    async with aiohttp.ClientSession(headers=AUTH) as http:
        start = {"user": "E001", "text": "/离职 E003 试用期 2025-07-31"}
        async with http.post(f"{server}/emulator/api/send", json=start) as r:
            assert (await r.json())["ok"]
        card = await _wait_card(http, server, "E003", lambda c: c["step_id"] == "application")
        assert "<img" not in card["html"] and "&lt;img src=x" in card["html"]


BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run"]


@pytest.mark.browser
async def test_case_b_in_the_browser(server: str) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=BROWSER_ARGS)
        page = await browser.new_page(viewport={"width": 1500, "height": 950})
        try:
            # The address printed at start-up; the page moves the token into a cookie and off the URL.
            await page.goto(f"{server}/emulator?token={TOKEN}")
            assert page.url == f"{server}/emulator"
            hr, emp, mgr = page.locator("#pane-hr"), page.locator("#pane-employee"), page.locator("#pane-manager")
            await hr.locator(".who").select_option("E001")
            await emp.locator(".who").select_option("E003")
            await mgr.locator(".who").select_option("E002")

            # HR starts Case B by typing the command.
            await hr.locator(".compose input").fill(START)
            await hr.locator(".compose button").click()
            await hr.get_by_text("已为 张三").wait_for()
            summary = hr.locator(".card", has_text="离职流程 OB-")
            await summary.wait_for()

            # The employee submits the written application from the phone.
            app_card = emp.locator(".card", has_text="确认收到解除通知并陈述意见")
            await app_card.locator("button", has_text="提交").click()  # opens the form
            await app_card.locator("input[name=last_working_day]").fill("2025-07-31")
            await app_card.locator("textarea[name=reason]").fill("试用期考核未通过")
            await app_card.locator("button", has_text="提交").click()
            await app_card.get_by_text("已由 张三 于").wait_for()

            # The manager sees the performance result on the card and approves.
            review = mgr.locator(".card", has_text="部门负责人确认考核结果")
            await review.get_by_text("绩效未达标").first.wait_for()
            await review.locator("button", has_text="批准").click()
            await review.locator("input[name=result]").fill("完成率 60%，要求 80%")
            await review.locator("button", has_text="批准").click()
            await review.get_by_text("已由 王五 于").wait_for()

            # HR records the attendance / social-insurance check on their own card.
            check = hr.locator(".card", has_text="HR 核对考勤与社保缴纳").filter(has_not_text="离职流程 OB-")
            await check.locator("button", has_text="标记完成").click()
            await check.locator("input[name=unpaid_months]").fill("2")
            await check.locator("button", has_text="标记完成").click()
            await check.locator(".status", has_text="已由 李娜 于").wait_for()

            # The guarantee letter now waits for the employee's signature: the card says so and links
            # to the signing page; the back-payment stays locked and HR cannot close the case.
            sign = emp.locator(".card", has_text="签署离职保证书")
            await sign.get_by_text("等待：已签署的《离职保证书》").wait_for()
            # The amount the employee signs for is on the card, with how it was computed: the
            # 5,000 wage is below Beijing's floor, so the base is 6,821.00 (not 5000 × 10.5%).
            await sign.get_by_text("1,438.42").first.wait_for()
            await sign.get_by_text("6,821.00").first.wait_for()
            link = sign.locator("a", has_text="去签署")
            assert (await link.get_attribute("href") or "").startswith(f"{server}/sign/")
            await summary.get_by_text("🔒 6. 财务确认社保补缴").wait_for()
            close = summary.locator("button", has_text="结案")
            assert await close.is_disabled()
            why = await summary.locator(".why").first.inner_text()
            assert "不能结案" in why and "《离职保证书》" in why
        finally:
            await browser.close()


ATTACKER_PAGE = """<!doctype html><meta charset="utf-8"><title>cat pictures</title>
<iframe name="sink"></iframe>
<script>
(async () => {
  const target = "%(server)s/emulator/api/send";
  const body = JSON.stringify({user: "E001", text: "/cancel %(case)s 恶意撤销"});
  const seen = [];
  const attempt = async (name, go) => {
    try { seen.push(name + ":" + await go()); } catch (e) { seen.push(name + ":blocked"); }
  };
  await attempt("no-cors", async () => (await fetch(target, {method: "POST", mode: "no-cors", credentials: "include",
                                                            headers: {"Content-Type": "text/plain"}, body})).type);
  const json = {"Content-Type": "application/json"};
  await attempt("cors-json", async () => (await fetch(target, {method: "POST", credentials: "include",
                                                              headers: json, body})).status);
  await attempt("read", async () => (await (await fetch("%(server)s/emulator/api/cards?user=E003",
                                                         {credentials: "include"})).text()).length);
  const form = document.createElement("form");
  Object.assign(form, {method: "POST", action: target, enctype: "text/plain", target: "sink"});
  const field = document.createElement("input");
  field.name = body.slice(0, -1) + ', "pad": "';
  field.value = '"}';
  form.appendChild(field);
  document.body.appendChild(form);
  form.submit();
  await new Promise(r => setTimeout(r, 1500));
  document.title = "done " + seen.join(" ");
})();
</script>"""


@pytest.mark.browser
async def test_a_page_of_another_origin_cannot_act_through_the_browser(server: str) -> None:
    """Finding 2 as reported: HR has the emulator open, then a page from another origin on the same
    machine (here another port on 127.0.0.1: the same *site*, so the SameSite cookie goes along)
    tries a no-cors fetch, a JSON fetch and a text/plain form post. The case stays open."""
    from playwright.async_api import async_playwright

    from storage.models import Case, InboxEvent

    async with aiohttp.ClientSession(headers=AUTH) as http:
        async with http.post(f"{server}/emulator/api/send", json={"user": "E001", "text": START}) as r:
            assert (await r.json())["ok"]
        case_id = (await _wait_card(http, server, "E003", lambda c: c["step_id"] == "application"))["case_id"]
    inbox = await InboxEvent.all().count()

    async def evil(request: web.Request) -> web.Response:
        return web.Response(text=ATTACKER_PAGE % {"server": server, "case": case_id}, content_type="text/html")

    attacker = web.Application()
    attacker.router.add_get("/", evil)
    runner = web.AppRunner(attacker, access_log=None)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=BROWSER_ARGS)
        try:
            context = await browser.new_context()
            page = await context.new_page()
            await page.goto(f"{server}/emulator?token={TOKEN}")
            await page.locator("#pane-hr .who option").first.wait_for(state="attached")
            other = await context.new_page()
            await other.goto(f"http://127.0.0.1:{port}/")
            await other.wait_for_function("document.title.startsWith('done')", timeout=20_000)
            outcome = await other.title()
        finally:
            await browser.close()
            await runner.cleanup()
    assert "cors-json:blocked" in outcome and "read:blocked" in outcome, outcome
    assert (await Case.get(id=case_id)).status == "open", outcome
    assert await InboxEvent.all().count() == inbox  # not one of the attempts reached the router
