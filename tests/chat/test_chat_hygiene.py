"""Free text from chat and cards, over real HTTP through the emulator API: control characters and
over-long text are refused with a clear answer and change nothing, on SQLite and PostgreSQL alike;
a card's form carries only the inputs its step declares."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.app import create_app
from config.settings import Settings
from storage.models import AuditEntry, Case, CaseStep, Checkpoint, InboxEvent, OutboxMessage
from tests.chat.test_chat_emulator import AUTH, TOKEN
from tests.conftest import emulator_env

START = "/离职 张三 试用期 2025-07-31 绩效未达标 交接人:周八"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def server(demo_org: Settings) -> AsyncIterator[str]:
    port = _free_port()
    settings = demo_org.model_copy(update={"http_port": port, "outbox_poll_seconds": 0.05,
                                           "public_base_url": f"http://127.0.0.1:{port}",
                                           "checkpoint_seconds": 0.1})
    with emulator_env(token=TOKEN):
        app = create_app(settings, with_db=False)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def api(http: aiohttp.ClientSession, base: str, path: str, body: dict[str, Any] | None = None,
              params: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    """Every emulator API call of these tests, so that a header the API comes to require (its
    bearer token) is added here once."""
    headers = dict(AUTH)
    if body is None:
        async with http.get(f"{base}/emulator/api/{path}", params=params, headers=headers) as r:
            return r.status, await r.json()
    async with http.post(f"{base}/emulator/api/{path}", json=body, headers=headers) as r:
        return r.status, await r.json()


async def _card(http: aiohttp.ClientSession, base: str, user: str, step: str) -> dict[str, Any]:
    for _ in range(200):
        _, body = await api(http, base, "cards", params={"user": user})
        for c in body["cards"]:
            if c["step_id"] == step:
                return c
        await asyncio.sleep(0.05)
    raise AssertionError(f"{user} got no card for {step}")


async def _snapshot() -> tuple[int, int, int, int, list[tuple[str, str, Any]]]:
    steps = [(s.step_id, s.status, s.data) for s in await CaseStep.all().order_by("id")]
    return (await Case.all().count(), await AuditEntry.all().count(), await InboxEvent.all().count(),
            await OutboxMessage.all().count(), steps)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.mark.parametrize("bad", ["\x00", "a\x00b", "\x07", "x\ry", "\u2028", "\x1b[31m", "\x85"])
async def test_control_characters_in_an_offboard_reason_are_refused(server: str, http, bad: str) -> None:
    before = await _snapshot()
    status, body = await api(http, server, "send", {"user": "E001", "text": START.replace("绩效未达标", f"绩效{bad}"),
                                                    "event_id": "nul-offboard"})
    assert status == 200 and not body["ok"] and body["code"] == "bad_text", body
    assert "控制字符" in body["text"]
    assert await _snapshot() == before  # no case, no audit entry, no inbox row, no message
    assert not await InboxEvent.filter(dedup_key="emulator:nul-offboard").exists()


async def test_a_lone_surrogate_is_refused_not_a_500(server: str, http) -> None:
    raw = ('{"user": "E001", "text": "/离职 张三 试用期 2025-07-31 \\ud800", "event_id": "sur"}').encode()
    async with http.post(f"{server}/emulator/api/send", data=raw,
                         headers={**AUTH, "Content-Type": "application/json"}) as r:
        body = await r.json()
    assert r.status == 200 and body["code"] == "bad_text", body
    assert await Case.all().count() == 0


async def test_nul_in_a_cancel_reason_is_refused_and_the_case_stays_open(server: str, http) -> None:
    _, body = await api(http, server, "send", {"user": "E001", "text": START})
    assert body["ok"], body
    case_id = body["data"]["case_id"]
    before = await _snapshot()
    status, body = await api(http, server, "send", {"user": "E001", "text": f"/取消 {case_id} 误\x00操作",
                                                    "lang": "en"})
    assert status == 200 and body["code"] == "bad_text" and "control characters" in body["text"], body
    assert (await Case.get(id=case_id)).status == "open"
    assert await _snapshot() == before
    # The same command without the NUL goes through: it was the character, nothing else.
    _, body = await api(http, server, "send", {"user": "E001", "text": f"/取消 {case_id} 误操作"})
    assert body["ok"] and (await Case.get(id=case_id)).status == "cancelled", body


async def test_reasons_are_limited_to_500_characters(server: str, http) -> None:
    _, body = await api(http, server, "send", {"user": "E001", "text": START.replace("绩效未达标", "长" * 501)})
    assert body["code"] == "bad_text" and "500" in body["text"], body
    assert await Case.all().count() == 0
    _, body = await api(http, server, "send", {"user": "E001", "text": START.replace("绩效未达标", "长" * 500)})
    assert body["ok"], body
    assert (await Case.get(id=body["data"]["case_id"])).reason == "长" * 500
    case_id = body["data"]["case_id"]
    _status, body = await api(http, server, "send", {"user": "E001", "text": f"/cancel {case_id} {'x' * 501}"})
    assert body["code"] == "bad_text" and (await Case.get(id=case_id)).status == "open", body


async def test_over_long_message_is_refused_before_anything(server: str, http) -> None:
    before = await _snapshot()
    _status, body = await api(http, server, "send", {"user": "E001", "text": "/status " + "x" * 2100})
    assert body["code"] == "bad_text" and "2000" in body["text"], body
    assert await _snapshot() == before


async def _application_card(http, server: str) -> tuple[str, dict[str, Any]]:
    _status, body = await api(http, server, "send", {"user": "E001", "text": START})
    assert body["ok"], body
    return body["data"]["case_id"], await _card(http, server, "E003", "application")


@pytest.mark.parametrize("form", [
    {"last_working_day": "2025-07-31", "reason": "个人\x00原因"},
    {"last_working_day": "2025-07-31\x00", "reason": "个人原因"},
    {"last_working_day": "2025-07-31", "reason": "个人原因\ud800"},
])
async def test_nul_in_a_card_form_field_is_refused(server: str, http, form: dict[str, str]) -> None:
    case_id, card = await _application_card(http, server)
    before = await _snapshot()
    status, body = await api(http, server, "click", {"user": "E003", "card_id": card["card_id"],
                                                     "action": "submit", "form": form, "event_id": "nul-form"})
    assert status == 200 and body["code"] == "bad_text" and "控制字符" in body["text"], body
    assert await _snapshot() == before
    assert (await CaseStep.get(case_id=case_id, step_id="application")).status == "active"


async def test_undeclared_form_fields_are_refused_and_nothing_is_stored(server: str, http) -> None:
    case_id, card = await _application_card(http, server)
    declared = {f["name"] for b in card["buttons"] for f in b["form"]}
    assert declared == {"last_working_day", "reason", "question"}  # "question": the 问HR button's box
    before = await _snapshot()
    form = {"last_working_day": "2025-07-31", "reason": "个人原因", "padding": "x" * 1500}
    _, body = await api(http, server, "click", {"user": "E003", "card_id": card["card_id"],
                                                     "action": "submit", "form": form})
    assert body["code"] == "undeclared_field" and "padding" in body["text"], body
    # Many small undeclared fields (829 KB per tap in the finding) are refused the same way.
    form = {"last_working_day": "2025-07-31", "reason": "个人原因", **{f"k{i}": "v" * 100 for i in range(500)}}
    _, body = await api(http, server, "click", {"user": "E003", "card_id": card["card_id"],
                                                     "action": "submit", "form": form})
    assert body["code"] == "undeclared_field" and "500" in body["text"], body
    after = await _snapshot()
    assert after[:2] == before[:2] and after[3:] == before[3:]  # no case change, audit entry or message
    # The declared inputs alone, with a newline and a tab in the textarea, are taken as typed.
    form = {"last_working_day": "2025-07-31", "reason": "个人原因\n\t另有安排\r\n谢谢"}
    _status, body = await api(http, server, "click", {"user": "E003", "card_id": card["card_id"],
                                                     "action": "submit", "form": form})
    assert body["ok"], body
    step = await CaseStep.get(case_id=case_id, step_id="application")
    assert step.status == "done" and step.data == form


async def test_form_values_are_held_to_their_type_limits(server: str, http) -> None:
    case_id, card = await _application_card(http, server)
    for form, limit in (({"last_working_day": "2" * 65, "reason": "r"}, "64"),
                        ({"last_working_day": "2025-07-31", "reason": "r" * 2001}, "2000")):
        _, body = await api(http, server, "click", {"user": "E003", "card_id": card["card_id"],
                                                         "action": "submit", "form": form})
        assert body["code"] == "bad_text" and limit in body["text"], body
    assert (await CaseStep.get(case_id=case_id, step_id="application")).status == "active"
    # A rejection carries its reason and nothing else, also within 500 characters.
    _, body = await api(http, server, "click", {"user": "E003", "card_id": card["card_id"],
                                                     "action": "submit",
                                                     "form": {"last_working_day": "2025-07-31", "reason": "ok"}})
    assert body["ok"], body
    review = await _card(http, server, "E002", "performance_review")
    for form, code in (({"reason": "r" * 501}, "bad_text"), ({"reason": "no", "result": "x"}, "undeclared_field")):
        _status, body = await api(http, server, "click", {"user": "E002", "card_id": review["card_id"],
                                                         "action": "reject", "form": form})
        assert body["code"] == code, body
    assert (await CaseStep.get(case_id=case_id, step_id="performance_review")).rejections == 0


async def test_open_cases_get_checkpoints_from_the_running_server(server: str, http) -> None:
    _status, body = await api(http, server, "send", {"user": "E001", "text": START})
    case_id = body["data"]["case_id"]
    for _ in range(100):
        cp = await Checkpoint.filter(case_id=case_id).order_by("-seq").first()
        if cp is not None:
            break
        await asyncio.sleep(0.05)
    case = await Case.get(id=case_id)
    assert cp is not None and cp.seq == case.audit_seq and cp.head_hash == case.audit_head
