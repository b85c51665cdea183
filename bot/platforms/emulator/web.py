"""The emulator's web side: a local page standing in for DingTalk/WeCom, through the same dispatch.

Enabled when `emulator` is in PLATFORMS. Its API acts as whoever the request names (start and
cancel cases as HR, read anyone's cards and signing links), so it must answer only the person at
this machine's keyboard, and no check on the connection alone can say who that is: a reverse
proxy on the same host makes every request come from 127.0.0.1. So, in `guard`:

- every call carries the per-start secret EMULATOR_TOKEN, as `Authorization: Bearer` or in the
  HttpOnly, SameSite=Strict cookie the page gets when the printed address (…/emulator?token=…)
  is opened;
- a request that names a proxy hop (`Forwarded`, `X-Forwarded-For`, `X-Real-IP`) is refused;
- the Host must be a loopback name or PUBLIC_BASE_URL's host (DNS rebinding), and a request from
  a page of another origin is refused (Origin, Sec-Fetch-Site), whatever cookie it carries:
  another port on 127.0.0.1 is the same *site*, so SameSite alone would let it through;
- POST bodies must be declared `application/json`, which a cross-origin page cannot send without
  a CORS preflight we never answer.

Start-up (`check_startup`) refuses to serve it when HTTP_HOST is not loopback or TRUSTED_PROXIES
is set, unless EMULATOR_ALLOW_EXPOSED=true.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any, Protocol
from urllib.parse import urlsplit

from aiohttp import web

from bot.platforms.emulator import signin
from bot.platforms.emulator.signin import EmulatorIdentity
from bot.platforms.emulator.store import EmulatorStore, card_json
from chat.connector import Answer, CardAction, ConfigError, InboundEvent, TextMessage
from handlers.signing_web import HEADERS
from storage.models import Case, Employee
from workflow import cleantext

log = logging.getLogger("bot.emulator")


class Config(Protocol):
    """What the start-up checks and the guard read (connector.EmulatorConfig)."""

    http_host: str
    http_port: int
    public_base_url: str
    trusted_proxies: tuple[str, ...]
    platforms: tuple[str, ...]
    language: str
    token: Any  # EMULATOR_TOKEN (a SecretStr) or None
    allow_exposed: bool  # EMULATOR_ALLOW_EXPOSED


class EmulatorConnector(Protocol):
    """What the routes use of the connector (connector.py, which imports this module)."""

    name: str
    token: str
    store: EmulatorStore
    identity: EmulatorIdentity

    @property
    def config(self) -> Config: ...

    async def dispatch(self, event: InboundEvent) -> Answer: ...


COOKIE = "emulator_token"
MAX_TEXT = 4000
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")
ASSETS = {"emulator.js": "text/javascript", "emulator.css": "text/css"}


# ---------------------------------------------------------------- start-up

def _loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure(settings: Config) -> str | None:
    """Why the emulator would be reachable by more than this machine's user, or None."""
    reasons = []
    if not _loopback_host(settings.http_host):
        reasons.append(f"HTTP_HOST={settings.http_host or '(all interfaces)'} is not a loopback address")
    if settings.trusted_proxies:
        reasons.append("TRUSTED_PROXIES is set (a reverse proxy forwards requests to this server)")
    return "; ".join(reasons) or None


def check_startup(settings: Config, *, warn: bool = True) -> None:
    """Refuse (ConfigError, one line) to serve an exposed emulator unless told to; warn (when
    `warn`) that it is exposed anyway or runs beside a real platform."""
    if "emulator" not in settings.platforms:
        return
    problem = exposure(settings)
    if problem and not settings.allow_exposed:
        raise ConfigError(f"refusing to serve the emulator: {problem}; it acts as whoever a request names. "
                            "Remove emulator from PLATFORMS, or set EMULATOR_ALLOW_EXPOSED=true to serve it anyway")
    if not warn:
        return
    if problem:
        log.warning("serving the emulator although %s (EMULATOR_ALLOW_EXPOSED=true)", problem)
    real = [p for p in settings.platforms if p != "emulator"]
    if real:
        log.warning("the emulator runs beside %s: whoever holds its token can act as any employee there",
                    ", ".join(real))


def address(settings: Config) -> str:
    """Where the local user opens the emulator."""
    if _loopback_host(settings.http_host):
        host = settings.http_host
        host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        return f"http://{host}:{settings.http_port}/emulator"
    return f"{settings.public_base_url}/emulator"


def startup_line(settings: Config, token: str) -> str:
    """The one line that shows the token: the user has to open this address to use the emulator,
    so it is printed for them (on stdout, not through logging). Nothing else ever writes it out.
    A configured token is not repeated: whoever set it knows it."""
    if settings.token is not None:
        return f"emulator: open {address(settings)}?token=<EMULATOR_TOKEN>"
    return f"emulator: open {address(settings)}?token={token}"


# ---------------------------------------------------------------- the guard

def _refuse(request: web.Request, status: int, code: str, text: str) -> web.Response:
    if request.path.startswith("/emulator/api/"):
        return web.json_response({"ok": False, "code": code, "text": text}, status=status)
    return web.Response(status=status, text=text, content_type="text/plain", headers=_headers())


def _headers() -> dict[str, str]:
    return dict(HEADERS)  # the signing page's CSP, frame-ancestors 'none' included


def _host_name(host: str) -> str:
    if host.startswith("["):
        return host[1:].split("]", 1)[0].lower()
    return host.rsplit(":", 1)[0].lower() if host.count(":") == 1 else host.lower()


def _allowed_hosts(settings: Config) -> frozenset[str]:
    public = urlsplit(settings.public_base_url).hostname or ""
    own = settings.http_host.lower() if _loopback_host(settings.http_host) else ""
    return LOOPBACK_NAMES | {h for h in (public.lower(), own.strip("[]")) if h}


def _peer_loopback(request: web.Request) -> bool:
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        return False


def _authorised(request: web.Request, token: str) -> bool:
    given = ""
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        given = auth[7:].strip()
    elif COOKIE in request.cookies:
        given = request.cookies[COOKIE]
    return bool(given) and hmac.compare_digest(given.encode(), token.encode())


def _check(emu: EmulatorConnector, request: web.Request) -> web.Response | None:
    """A refusal for anything but the local user's own page and scripts; None lets it through."""
    settings = emu.config
    hop = next((h for h in PROXY_HEADERS if h in request.headers), None)
    if hop is not None:
        return _refuse(request, 403, "proxied", f"the emulator does not answer through a proxy ({hop} present)")
    if not settings.allow_exposed and not _peer_loopback(request):
        return _refuse(request, 403, "not_local", "the emulator answers only on the loopback interface")
    host = request.headers.get("Host", "")
    if _host_name(host) not in _allowed_hosts(settings):
        return _refuse(request, 403, "bad_host", "the emulator answers only to a loopback host name or "
                                                 "PUBLIC_BASE_URL's host")
    origin = request.headers.get("Origin")
    if origin is not None:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or parts.netloc.lower() != host.lower():
            return _refuse(request, 403, "bad_origin", "requests from another origin are refused")
    if request.headers.get("Sec-Fetch-Site") in ("cross-site", "same-site"):
        return _refuse(request, 403, "bad_origin", "requests from another origin are refused")
    token = emu.token
    if request.path == "/emulator" and "token" in request.query:
        return None  # the page handler checks it and sets the cookie
    if not _authorised(request, token):
        return _refuse(request, 401, "unauthorised", "open the emulator with the address printed when the bot "
                                                      "started (…/emulator?token=…)")
    if request.method == "POST" and request.content_type != "application/json":
        return _refuse(request, 415, "unsupported_media_type", "the body must be sent as application/json")
    return None


Handler = Callable[["EmulatorConnector", web.Request], Awaitable[web.Response]]


def guarded(emu: EmulatorConnector, handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Every emulator route goes through the guard first (the routes are the connector's own, so
    the check travels with them instead of being an app-wide middleware)."""

    @functools.wraps(handler)
    async def run(request: web.Request) -> web.Response:
        refusal = _check(emu, request)
        if refusal is not None:
            return refusal
        return await handler(emu, request)

    return run


# ---------------------------------------------------------------- page

def _bad(message: str) -> web.Response:
    return web.json_response({"ok": False, "code": "bad_request", "text": message}, status=400)


async def _body(request: web.Request) -> dict[str, Any] | web.Response:
    raw = await request.read()
    try:
        data = json.loads(raw)
    except RecursionError:
        return _bad("body is nested too deeply")
    except ValueError:  # UnicodeDecodeError included
        return _bad("body must be JSON")
    if not isinstance(data, dict):
        return _bad("body must be a JSON object")
    user = data.get("user")
    if not isinstance(user, str) or not user or len(user) > 64:
        return _bad("'user' (an employee id) is required")
    event_id = data.get("event_id")
    if event_id is not None and (not isinstance(event_id, str) or not 0 < len(event_id) <= 128):
        return _bad("'event_id' must be a string of at most 128 characters")
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
    (">HR 后台（离职档案）</a>", ">HR dashboard (case files)</a>"),
    ('<label class="lang">语言 ', '<label class="lang">Language '),
    ('<option value="zh">中文</option><option value="en">English</option>',
     '<option value="zh">中文</option><option value="en" selected>English</option>'),
    ("<b>员工</b>", "<b>Employee</b>"),
    ("<b>上级 / 其他</b>", "<b>Manager / others</b>"),
    ('placeholder="/离职 张三 试用期 2025-07-31 绩效未达标"',
     'placeholder="/offboard E003 probation 2025-07-31 missed targets"'),
    ("<button>发送</button>", "<button>Send</button>"),
)


def page_text(name: str, language: str) -> str:
    """One of the page's files, its own labels in English when LANGUAGE=en."""
    text = resources.files("bot.platforms.emulator").joinpath(name).read_text(encoding="utf-8")
    if language == "en":
        for zh, en in _PAGE_EN:
            text = text.replace(zh, en)
    return text


async def page(emu: EmulatorConnector, request: web.Request) -> web.Response:
    given = request.query.get("token")
    if given is not None:
        token = emu.token
        if not hmac.compare_digest(given.encode(), token.encode()):
            return _refuse(request, 401, "unauthorised", "this emulator address is not (or no longer) valid: open "
                                                          "the one printed when the bot started")
        # Out of the address bar (and history, screen shares) into an HttpOnly cookie.
        response = web.Response(status=303, headers={**_headers(), "Location": "/emulator"})
        response.set_cookie(COOKIE, token, path="/emulator", httponly=True, samesite="Strict",
                            secure=request.secure)
        return response
    text = page_text("page.html", emu.config.language)
    return web.Response(text=text, content_type="text/html", headers=_headers())


async def asset(emu: EmulatorConnector, request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in ASSETS:
        raise web.HTTPNotFound()
    text = page_text(name, emu.config.language)
    return web.Response(text=text, content_type=ASSETS[name], headers=_headers())


# ---------------------------------------------------------------- API

async def directory(emu: EmulatorConnector, request: web.Request) -> web.Response:
    people = await Employee.filter(active=True).order_by("employee_id")
    open_cases = await Case.filter(status="open").prefetch_related("employee").order_by("-started_at")
    return web.json_response({
        "people": [{"employee_id": p.employee_id, "name": p.name, "department": p.department,
                    "roles": sorted(p.role_set), "manager_id": p.manager_id} for p in people],
        "open_cases": [{"case_id": c.id, "employee_id": c.employee.employee_id, "manager_id": c.manager_id,
                        "created_by": c.created_by} for c in open_cases],
    })


async def _dispatch(emu: EmulatorConnector, data: dict[str, Any], event: TextMessage | CardAction) -> web.Response:
    answer = await emu.dispatch(event)
    # Acknowledged only now, after the handler's transaction committed.
    if not answer.duplicate and answer.text:
        await emu.store.text(data["user"], "bot", answer.text)
    body = {"ok": answer.ok, "code": answer.code, "text": answer.text, "data": dict(answer.data),
            "duplicate": answer.duplicate}
    return web.json_response(body, status=500 if answer.code == "error" else 200)


def _event_id(data: dict[str, Any]) -> str:
    return str(data.get("event_id") or uuid.uuid4().hex)


def _lang(data: dict[str, Any]) -> str:
    return data["lang"] if data.get("lang") in ("zh", "en") else ""


async def send(emu: EmulatorConnector, request: web.Request) -> web.Response:
    data = await _body(request)
    if isinstance(data, web.Response):
        return data
    text = data.get("text")
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
        return _bad(f"'text' is required (at most {MAX_TEXT} characters)")
    # A redelivered send (same event id) shows its line once. A line the router will refuse as unclean
    # text (NUL, lone surrogates) is not shown: the database could not store it, and the refusal says why.
    key = f"in:{data['event_id']}" if data.get("event_id") else None
    if cleantext.problem(text, max_len=MAX_TEXT) is None:
        await emu.store.text(data["user"], data["user"], text, key=key)
    return await _dispatch(emu, data, TextMessage(platform=emu.name, sender=data["user"], text=text,
                                                  event_id=_event_id(data), lang=_lang(data)))


async def click(emu: EmulatorConnector, request: web.Request) -> web.Response:
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
    return await _dispatch(emu, data, CardAction(platform=emu.name, sender=data["user"], card_id=card_id,
                                                 action=action, event_id=_event_id(data), form=form,
                                                 lang=_lang(data)))


def _user(request: web.Request) -> str | web.Response:
    user = request.query.get("user", "")
    if not user or len(user) > 64:
        return _bad("query parameter 'user' is required")
    return user


async def cards(emu: EmulatorConnector, request: web.Request) -> web.Response:
    user = _user(request)
    if isinstance(user, web.Response):
        return user
    held = await emu.store.cards_of(user)
    return web.json_response({"user": user, "cards": [card_json(m) for m in held]})


async def messages(emu: EmulatorConnector, request: web.Request) -> web.Response:
    user = _user(request)
    if isinstance(user, web.Response):
        return user
    try:
        since = int(request.query.get("since", "0"))
    except ValueError:
        return _bad("'since' must be an integer")
    history = await emu.store.history(user, since)
    # The newest number among what is returned: one read, so nothing committed in between is skipped.
    return web.json_response({"user": user, "messages": [m.to_json() for m in history],
                              "last": max((m.seq for m in history), default=since)})


def routes(emu: EmulatorConnector) -> list[web.RouteDef]:
    return [
        web.get("/emulator", guarded(emu, page)),
        web.get("/emulator/{name:emulator\\.(?:js|css)}", guarded(emu, asset)),
        web.get("/emulator/api/directory", guarded(emu, directory)),
        web.post("/emulator/api/send", guarded(emu, send)),
        web.post("/emulator/api/click", guarded(emu, click)),
        web.get("/emulator/api/cards", guarded(emu, cards)),
        web.get("/emulator/api/messages", guarded(emu, messages)),
        # The HR dashboard's local sign-in (a stand-in for a platform's OAuth), behind the same guard.
        web.get("/emulator/signin", guarded(emu, dashboard_signin)),
    ]


async def dashboard_signin(emu: EmulatorConnector, request: web.Request) -> web.Response:
    return await signin.page(emu.identity, emu.config.language, request)
