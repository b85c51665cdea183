"""Case B over the fake DingTalk, the way phones would do it: the real app (`create_app`,
PLATFORMS=dingtalk) connects its Stream client to the fake gateway; HR types the command in a robot
chat, every card arrives through `createAndDeliver`, every tap goes back as a Stream card callback,
every signing link from a card is opened and confirmed through DingTalk sign-in against the fake.

Used by tests/platforms/dingtalk/test_dingtalk_case_b.py and bench/dingtalk.py (API calls per case).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
from aiohttp import web

from bot.app import create_app
from bot.platforms.dingtalk.cardvars import from_vars
from cards.model import Card
from config.settings import Settings
from storage.models import Case, CaseStep, Employee, InboxEvent, OutboxMessage
from tests.platforms.dingtalk.fake import CLIENT_ID, CLIENT_SECRET, FakeDingTalk, bot_frame, card_frame
from workflow.model import StepState
from workflow.templates import load_templates

HR, EMPLOYEE, MANAGER, FINANCE, IT, HANDOVER = "E001", "E003", "E002", "E004", "E005", "E006"
START = "/离职 张三 试用期 2025-07-31 绩效未达标 交接人:周八"
TEMPLATE = "offboard.schema"
COMPANY = {"company_name": "上海示例科技有限公司", "company_address": "上海市浦东新区示例路 1 号",
           "company_registration_number": "91310115MA1H000000"}
FLOWS = load_templates()
# Budget-counted DingTalk APIs (token, identity and contacts calls are exempt).
COUNTED = {"/v1.0/card/instances/createAndDeliver", "/v1.0/card/instances", "/v1.0/robot/oToMessages/batchSend"}
_ids = itertools.count(1)


def dt(employee_id: str) -> str:
    return f"dt-{employee_id}"


def fake_for_demo() -> FakeDingTalk:
    """The fake, knowing the demo org's people by their DingTalk user ids."""
    return FakeDingTalk(users={dt(f"E00{i}"): {"userid": dt(f"E00{i}"), "name": f"E00{i}"} for i in range(1, 10)})


@contextmanager
def dingtalk_env(fake: FakeDingTalk, **more: str) -> Iterator[None]:
    values = {"DINGTALK_CLIENT_ID": CLIENT_ID, "DINGTALK_CLIENT_SECRET": CLIENT_SECRET,
              "DINGTALK_CARD_TEMPLATE_ID": TEMPLATE, "DINGTALK_API_BASE": fake.base,
              "DINGTALK_OAPI_BASE": fake.base, "DINGTALK_LOGIN_URL": f"{fake.base}/login", **more}
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def dingtalk_app(settings: Settings, fake: FakeDingTalk, **env: str) -> AsyncIterator[tuple[str, Settings]]:
    """The real app on 127.0.0.1 with PLATFORMS=dingtalk, its Stream client connected to the fake;
    `env`: more DINGTALK_* settings."""
    for emp in await Employee.all():
        await Employee.filter(id=emp.id).update(dingtalk_userid=dt(emp.employee_id))
    port = _free_port()
    s = settings.model_copy(update={
        "platforms": ("dingtalk",), "http_port": port, "public_base_url": f"http://127.0.0.1:{port}",
        "outbox_poll_seconds": 0.05, "timer_poll_seconds": 0.05, **COMPANY})
    with dingtalk_env(fake, **env):  # the connector's own settings: sends, Stream and the signing page's sign-in
        runner = web.AppRunner(create_app(s, with_db=False), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", port).start()
            await asyncio.to_thread(fake.wait_connections, 1)
            yield f"http://127.0.0.1:{port}", s
        finally:
            await runner.cleanup()


@dataclass
class Held:
    """One card as its holder's phone shows it now: the create, with every update applied."""

    out_track_id: str
    user_id: str
    variables: dict[str, str]

    @property
    def card(self) -> Card:
        return from_vars(self.variables)

    def button(self, action: str) -> dict[str, Any] | None:
        return next((b for b in json.loads(self.variables["buttons"]) if b["action"] == action), None)

    def link(self) -> str | None:
        return next((b["url"] for b in json.loads(self.variables["buttons"]) if b["url"]), None)


class Phones:
    """Everyone's DingTalk, as the fake saw it."""

    def __init__(self, fake: FakeDingTalk, http: aiohttp.ClientSession) -> None:
        self.fake = fake
        self.http = http

    def held(self, employee_id: str) -> list[Held]:
        uid = dt(employee_id)
        with self.fake.lock:
            cards = {oid: dict(body["cardData"]["cardParamMap"]) for oid, body in self.fake.cards.items()
                     if body["openSpaceId"] == f"dtv1.card//IM_ROBOT.{uid}"}
            for up in self.fake.updates:
                if up["outTrackId"] in cards:
                    cards[up["outTrackId"]].update(up["cardData"]["cardParamMap"])
        return [Held(oid, uid, v) for oid, v in cards.items()]

    async def wait_card(self, employee_id: str, pred: Callable[[Held], bool], what: str,
                        seconds: float = 20.0) -> Held:
        for _ in range(int(seconds / 0.05)):
            found = [h for h in self.held(employee_id) if pred(h)]
            if found:
                return found[-1]
            await asyncio.sleep(0.05)
        seen = [(h.variables.get("step_id"), h.variables.get("purpose")) for h in self.held(employee_id)]
        raise AssertionError(f"{employee_id} never got {what}: {seen}")

    async def say(self, employee_id: str, text: str) -> dict[str, Any]:
        """A line typed in the robot chat; the answer the bot posted to the session webhook."""
        message_id = f"say-{next(_ids)}"
        before = len(self.fake.session_replies)
        self.fake.push(bot_frame(message_id, text, sender=dt(employee_id), webhook=self.fake.session_webhook))
        ack = await asyncio.to_thread(self.fake.wait_ack, message_id)
        assert ack["code"] == 200, ack
        await asyncio.to_thread(self.fake.wait_for, lambda: len(self.fake.session_replies) > before)
        return self.fake.session_replies[before]

    async def tap(self, employee_id: str, held: Held, action: str, form: dict[str, str] | None = None,
                  *, user_id: str | None = None) -> dict[str, Any]:
        """A tap on a card button (its callback params, plus the step's inputs); the router's answer."""
        button = held.button(action)
        assert button is not None, f"no {action} on {held.out_track_id}"
        message_id = f"tap-{next(_ids)}"
        self.fake.push(card_frame(message_id, held.out_track_id, user_id or dt(employee_id),
                                  {**button["params"], **(form or {})}, action_id=action))
        ack = await asyncio.to_thread(self.fake.wait_ack, message_id)
        assert ack["code"] == 200, ack
        key = f"dingtalk:card:{held.out_track_id}:{user_id or dt(employee_id)}:{action}:"
        row = await InboxEvent.filter(dedup_key__startswith=key).order_by("-id").first()
        assert row is not None, key
        return dict(row.result)

    async def sign_in(self, employee_id: str, url: str) -> None:
        """Open `url`; when it sends the visitor to DingTalk's login, sign in there (the fake) as
        `employee_id` and follow the way back."""
        async with self.http.get(url, allow_redirects=False) as r:
            if r.status != 302 or not r.headers["Location"].startswith(self.fake.base):
                return
            login = urlsplit(r.headers["Location"])
        assert login.path == "/login" and login.netloc == urlsplit(self.fake.base).netloc
        q = parse_qs(login.query)
        assert q["client_id"] == [CLIENT_ID]
        code = f"code-{next(_ids)}"
        self.fake.oauth_codes[code] = dt(employee_id)  # the person signs in to DingTalk
        back = q["redirect_uri"][0]
        assert "/oauth" in urlsplit(back).path
        async with self.http.get(back, params={"code": code, "state": q["state"][0]}, allow_redirects=False) as r:
            assert r.status == 302, await r.text()

    async def sign(self, employee_id: str, url: str) -> None:
        """Open the signing link from the card: DingTalk sign-in against the fake, then sign."""
        from tests.signing_flow.test_every_flow_e2e import sign_on_page

        async with self.http.get(url, allow_redirects=False) as r:
            assert r.status == 302, await r.text()  # a DingTalk holder must sign in first
        await self.sign_in(employee_id, url)
        await sign_on_page(self.http, url)

    async def fill_form(self, employee_id: str, url: str, fields: dict[str, str]) -> None:
        """A step's web form opened from the card (a card without inputs links to it): sign in if
        asked, read the page's CSRF token, post the fields the way the page does."""
        await self.sign_in(employee_id, url)
        async with self.http.get(url) as r:
            page = await r.text()
            assert r.status == 200, page
        found = re.search(r'name="csrf" value="([^"]+)"', page)
        assert found, page
        async with self.http.post(url, data={"csrf": unescape(found.group(1)), **fields},
                                  headers={"Origin": f"{urlsplit(url).scheme}://{urlsplit(url).netloc}"},
                                  allow_redirects=False) as r:
            assert r.status in (200, 303), await r.text()


def form_for(step_id: str) -> dict[str, str]:
    values = {"last_working_day": "2025-07-31", "reason": "试用期考核未通过", "result": "完成率 60%，要求 80%",
              "unpaid_months": "2", "receipt_number": "SB-2025-0001", "payment_reference": f"PAY-{step_id}",
              "tracking_number": "EMS1234567890", "proposed_by": "公司", "delivery_result": "delivered"}
    return {f.key: values[f.key] for f in FLOWS["probation"].step(step_id).fields if f.key in values}


ACTOR = {"employee": EMPLOYEE, "manager": MANAGER, "hr": HR, "finance": FINANCE, "it": IT, "handover": HANDOVER}
ACTION = {"approve": "approve", "acknowledge": "acknowledge", "confirm": "confirm", "form": "submit",
          "hr_task": "complete"}


async def drive(phones: Phones, case_id: str, *, on_step: Callable[[str], Any] | None = None) -> list[str]:
    """Every step of the case by the person it belongs to, from their DingTalk cards; the steps done."""
    template = FLOWS["probation"]
    done: list[str] = []
    for _ in range(60):
        case = await Case.get(id=case_id)
        if case.status == "completed":
            return done
        active = await CaseStep.filter(case_id=case_id, status="active").order_by("position")
        wanted = [st for st in active if template.step(st.step_id).required or template.step(st.step_id).documents]
        assert wanted, f"case {case_id} is stuck: {[st.step_id for st in active]}"
        st = wanted[0]
        step = template.step(st.step_id)
        if on_step is not None:
            await on_step(step.id)
        turn = step.turn(StepState(status="active", documents_signed=frozenset(st.documents_signed or ())))
        if turn is not None:
            signer = ACTOR[turn[1]]
            held = await phones.wait_card(signer, lambda h, s=step.id: h.variables.get("step_id") == s
                                          and h.link() is not None, f"a signing link for {step.id}")
            await phones.sign(signer, str(held.link()))
            done.append(f"{step.id}:signed by {signer}")
            continue
        if step.kind == "sign":
            await asyncio.sleep(0.05)
            continue
        actor, action = ACTOR[step.role], ACTION[str(step.kind)]
        held = await phones.wait_card(actor, lambda h, s=step.id, a=action: h.variables.get("step_id") == s and any(
            (b["action"] == a or "/form/" in b["url"]) and b["enabled"] for b in json.loads(h.variables["buttons"])),
            f"{action} on {step.id}")
        form_link = next((b["url"] for b in json.loads(held.variables["buttons"]) if "/form/" in b["url"]
                          and b["enabled"] and any(f.key in form_for(step.id) for f in step.fields)), None)
        if held.button(action) is None and form_link:
            # The step asks for text the card cannot hold: its button opens the step's web form.
            await phones.fill_form(actor, form_link, form_for(step.id))
            for _ in range(200):
                if (await CaseStep.get(case_id=case_id, step_id=step.id)).status != "active":
                    break
                await asyncio.sleep(0.05)
            done.append(f"{step.id}:{action} by {actor} (web form)")
            continue
        answer = await phones.tap(actor, held, action, form_for(step.id))
        assert answer["ok"], answer
        done.append(f"{step.id}:{action} by {actor}")
    raise AssertionError(f"case {case_id} did not complete")


def counted_calls(fake: FakeDingTalk) -> tuple[int, int, dict[str, int]]:
    with fake.lock:
        by_path = Counter(path for _, path in fake.requests)
    counted = sum(n for p, n in by_path.items() if p in COUNTED)
    return counted, sum(by_path.values()) + fake.token_requests, dict(by_path)


async def settled(seconds: float = 30.0) -> None:
    """Until the relay has delivered everything queued (nothing pending or claimed): in real life
    the steps of a case are hours apart, so each step's cards and updates go out before the next
    step; driven faster, updates of one card would merge and hide calls the budget pays for."""
    for _ in range(int(seconds / 0.05)):
        if not await OutboxMessage.filter(status__in=("pending", "claimed")).exists():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the outbox did not drain")


async def whole_case(phones: Phones) -> str:
    """HR's command, then every step by its person from their cards, each settled before the next,
    until the employee holds the completion card and the last updates are out; the case id."""
    await phones.say(HR, START)
    case = await Case.filter(template_id="probation").first()
    assert case is not None
    await drive(phones, case.id, on_step=lambda _: settled())
    await phones.wait_card(EMPLOYEE, lambda h: h.variables.get("purpose") == "completion", "the completion card")
    await settled()
    return case.id


async def measure_case_b() -> tuple[int, int, dict[str, int]]:
    """For bench/dingtalk.py: one whole Case B on a fresh SQLite database, every step settled
    before the next (as steps hours apart are); (counted calls, all requests, requests per path)."""
    import tempfile
    from pathlib import Path

    from config.settings import load_settings
    from storage import crypto
    from storage.db import close_db, init_db, migrate
    from storage.directory import import_csv
    from tests.conftest import DEMO_CSV

    with tempfile.TemporaryDirectory(prefix="bench-caseb-") as tmp:
        url = f"sqlite://{tmp}/bot.sqlite3"
        await migrate(url)
        settings = load_settings(database_url=url, data_dir=Path(tmp) / "data",
                                 secret_key="bench-secret-key-0123456789", _env_file=None)
        crypto.configure(settings.secret_bytes())
        await init_db(url)
        fake = fake_for_demo().start()
        try:
            await import_csv(DEMO_CSV.read_text(encoding="utf-8"))
            async with dingtalk_app(settings, fake) as (_, _s), \
                    aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                await whole_case(Phones(fake, http))
            return counted_calls(fake)
        finally:
            fake.stop()
            await close_db()
