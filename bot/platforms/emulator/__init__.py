"""The emulator platform: a local web page standing in for DingTalk/WeCom, through the same router.

Enabled when `emulator` is in PLATFORMS. Its API acts as whoever the request names, so it only
answers requests from the loopback interface, whatever HTTP_HOST is.
"""

from __future__ import annotations

import ipaddress
import uuid
from importlib import resources
from typing import Any

from aiohttp import web

from bot.platforms.emulator.adapter import EmulatorAdapter, EmulatorStore, card_json
from bot.router import Incoming
from storage.models import Case, Employee, OutboxMessage

EMULATOR = web.AppKey("emulator", EmulatorAdapter)
MAX_TEXT = 4000


def _loopback(request: web.Request) -> bool:
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        return False


@web.middleware
async def loopback_only(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.path.startswith("/emulator") and not _loopback(request):
        raise web.HTTPForbidden(text="the emulator answers only on 127.0.0.1")
    return await handler(request)


def _bad(message: str) -> web.Response:
    return web.json_response({"ok": False, "code": "bad_request", "text": message}, status=400)


async def _body(request: web.Request) -> dict[str, Any] | web.Response:
    try:
        data = await request.json()
    except ValueError:
        return _bad("body must be JSON")
    if not isinstance(data, dict):
        return _bad("body must be a JSON object")
    user = data.get("user")
    if not isinstance(user, str) or not user or len(user) > 64:
        return _bad("'user' (an employee id) is required")
    return data


# The page's own labels in English, applied when LANGUAGE=en (cards and replies are rendered in
# the settings' language by the server already). Keys are exact fragments of page.html.
_PAGE_EN: tuple[tuple[str, str], ...] = (
    ('<html lang="zh-CN">', '<html lang="en">'),
    ('${p.name}（${p.employee_id}${p.department ? " · " + p.department : ""}）',
     '${p.name} (${p.employee_id}${p.department ? " · " + p.department : ""})'),
    ("<title>离职助手 · 模拟器</title>", "<title>Offboarding bot · emulator</title>"),
    ("<h1>离职助手 · 本地模拟器</h1>", "<h1>Offboarding bot · local emulator</h1>"),
    ("<span>与钉钉 / 企业微信走同一套代码</span>", "<span>Same code path as DingTalk / WeCom</span>"),
    ('<label class="lang">语言 ', '<label class="lang">Language '),
    ('<option value="zh">中文</option><option value="en">English</option>',
     '<option value="zh">中文</option><option value="en" selected>English</option>'),
    ("<b>员工</b>", "<b>Employee</b>"),
    ("<b>上级 / 其他</b>", "<b>Manager / others</b>"),
    ('placeholder="/离职 张三 试用期 2025-07-31 绩效未达标"',
     'placeholder="/offboard E003 probation 2025-07-31 missed targets"'),
    ("<button>发送</button>", "<button>Send</button>"),
)


def page_text(language: str) -> str:
    text = resources.files("bot.platforms.emulator").joinpath("page.html").read_text(encoding="utf-8")
    if language == "en":
        for zh, en in _PAGE_EN:
            text = text.replace(zh, en)
    return text


async def page(request: web.Request) -> web.Response:
    from bot.app import SETTINGS

    text = page_text(request.app[SETTINGS].language)
    return web.Response(text=text, content_type="text/html", headers={
        "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
                                   "style-src 'self' 'unsafe-inline'; img-src 'self' data:",
        "Cache-Control": "no-store",
    })


async def directory(request: web.Request) -> web.Response:
    people = await Employee.filter(active=True).order_by("employee_id")
    open_cases = await Case.filter(status="open").prefetch_related("employee").order_by("-started_at")
    return web.json_response({
        "people": [{"employee_id": p.employee_id, "name": p.name, "department": p.department,
                    "roles": sorted(p.role_set), "manager_id": p.manager_id} for p in people],
        "open_cases": [{"case_id": c.id, "employee_id": c.employee.employee_id, "manager_id": c.manager_id,
                        "created_by": c.created_by} for c in open_cases],
    })


async def _dispatch(request: web.Request, data: dict[str, Any], kind: str, payload: dict[str, Any]) -> web.Response:
    from bot.inbound import INBOUND

    event_id = data.get("event_id")
    if event_id is not None and (not isinstance(event_id, str) or not 0 < len(event_id) <= 128):
        return _bad("'event_id' must be a string of at most 128 characters")
    if data.get("lang") in ("zh", "en"):
        payload["lang"] = data["lang"]
    incoming = Incoming(platform="emulator", sender=data["user"], kind=kind,  # type: ignore[arg-type]
                        payload=payload, dedup_key=f"emulator:{event_id or uuid.uuid4().hex}")
    reply = await request.app[INBOUND].handle(incoming)
    # Acknowledged only now, after the handler's transaction committed.
    store = request.app[EMULATOR].store
    if not reply.duplicate and reply.text:
        store.text(data["user"], "bot", reply.text)
    body = reply.to_json() | {"duplicate": reply.duplicate}
    return web.json_response(body, status=500 if reply.code == "error" else 200)


async def send(request: web.Request) -> web.Response:
    data = await _body(request)
    if isinstance(data, web.Response):
        return data
    text = data.get("text")
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
        return _bad(f"'text' is required (at most {MAX_TEXT} characters)")
    store = request.app[EMULATOR].store
    if not data.get("event_id"):
        store.text(data["user"], data["user"], text)
    elif f"in:{data['event_id']}" not in store.inbound_ids:  # a redelivered send shows once
        store.inbound_ids.add(f"in:{data['event_id']}")
        store.text(data["user"], data["user"], text).card_id = f"in:{data['event_id']}"
    return await _dispatch(request, data, "text", {"text": text})


async def click(request: web.Request) -> web.Response:
    data = await _body(request)
    if isinstance(data, web.Response):
        return data
    card_id, action, form = data.get("card_id"), data.get("action"), data.get("form") or {}
    if not isinstance(card_id, str) or not card_id or len(card_id) > 255:
        return _bad("'card_id' is required")
    if not isinstance(action, str) or not action or len(action) > 64:
        return _bad("'action' is required")
    if not isinstance(form, dict) or not all(isinstance(k, str) and isinstance(v, str) and len(v) <= MAX_TEXT
                                             for k, v in form.items()):
        return _bad("'form' must map field names to strings")
    return await _dispatch(request, data, "action", {"card_id": card_id, "action": action, "form": form})


def _user(request: web.Request) -> str | web.Response:
    user = request.query.get("user", "")
    if not user or len(user) > 64:
        return _bad("query parameter 'user' is required")
    return user


async def cards(request: web.Request) -> web.Response:
    user = _user(request)
    if isinstance(user, web.Response):
        return user
    held = request.app[EMULATOR].store.cards_of(user)
    return web.json_response({"user": user, "cards": [card_json(m) for m in held]})


async def messages(request: web.Request) -> web.Response:
    user = _user(request)
    if isinstance(user, web.Response):
        return user
    try:
        since = int(request.query.get("since", "0"))
    except ValueError:
        return _bad("'since' must be an integer")
    store = request.app[EMULATOR].store
    history = store.history(user, since)
    return web.json_response({"user": user, "messages": [m.to_json() for m in history],
                              "last": max((m.seq for m in store.messages.get(user, [])), default=0)})


async def _replay(app: web.Application) -> None:
    """Show, after a restart, the cards that were delivered before it (rendered from current state)."""
    from bot.outbox import RELAY

    adapter = app[EMULATOR]
    rows = await OutboxMessage.filter(platform="emulator", kind="card", status="sent").order_by("id")
    for row in rows:
        card = await app[RELAY].render(row)
        if card is not None:
            await adapter.send_card(row.recipient, card, row.key)


def setup(app: web.Application) -> None:
    from bot.app import SETTINGS
    from bot.outbox import ADAPTERS

    if "emulator" not in app[SETTINGS].platforms:
        return
    adapter = EmulatorAdapter(EmulatorStore())
    app[EMULATOR] = adapter
    app.setdefault(ADAPTERS, {})["emulator"] = adapter  # type: ignore[call-overload]
    app.middlewares.append(loopback_only)
    app.router.add_get("/emulator", page)
    app.router.add_get("/emulator/api/directory", directory)
    app.router.add_post("/emulator/api/send", send)
    app.router.add_post("/emulator/api/click", click)
    app.router.add_get("/emulator/api/cards", cards)
    app.router.add_get("/emulator/api/messages", messages)

    async def replay(app: web.Application) -> None:
        await _replay(app)

    app.on_startup.append(replay)
