"""The emulator's web sign-in: a local stand-in for DingTalk / WeCom OAuth, for the HR dashboard in demos
and tests.

`EmulatorIdentity.authorize_url` sends the browser to `/emulator/signin`, which sits behind the emulator's
guard (its token, loopback only, no proxy, same origin): only the person at this machine sees it. The page
lists the directory; picking someone follows a link back to the dashboard carrying a code, an HMAC over
(employee id, the dashboard's OAuth state, expiry) with a key of its own, valid two minutes. The state is
bound to the browser that started the sign-in (its dashboard session), so a code is worth nothing in
another browser, and the dashboard decides what the person may do (HR only), exactly as after a platform's
OAuth.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from html import escape
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from chat.connector import IdentityError
from handlers.signing_web import HEADERS  # the emulator's own page headers (CSP, frame-ancestors 'none')
from storage.models import Employee

CODE_SECONDS = 120
_MAX = 256


def _mac(key: bytes, employee_id: str, state: str, exp: int) -> str:
    body = f"{employee_id}|{state}|{exp}".encode()
    return hmac.new(key, b"emulator-signin/v1." + body, hashlib.sha256).hexdigest()


class EmulatorIdentity:
    """WebIdentity of the emulator: its user ids are employee ids."""

    # Back to whatever loopback address the user opened (the picker is local), not PUBLIC_BASE_URL.
    relative_redirect = True

    def __init__(self, secret: bytes, *, now: float | None = None) -> None:
        self._key = hmac.new(secret, b"offboard-emulator-signin-key", hashlib.sha256).digest()
        self._now = now

    def _time(self) -> float:
        return self._now if self._now is not None else time.time()

    def authorize_url(self, redirect_uri: str, state: str) -> str:
        return "/emulator/signin?" + urlencode({"redirect_uri": redirect_uri, "state": state})

    def code(self, employee_id: str, state: str) -> str:
        exp = int(self._time()) + CODE_SECONDS
        return f"{employee_id}.{exp}.{_mac(self._key, employee_id, state, exp)}"

    async def user_id(self, params: Mapping[str, str]) -> str:
        code, state = params.get("code", ""), params.get("state", "")
        if not code or len(code) > _MAX or code.count(".") < 2:
            raise IdentityError("missing or malformed sign-in code")
        employee_id, exp_text, mac = code.rsplit(".", 2)
        try:
            exp = int(exp_text)
        except ValueError:
            raise IdentityError("malformed sign-in code") from None
        if not hmac.compare_digest(_mac(self._key, employee_id, state, exp), mac):
            raise IdentityError("sign-in code does not match")
        if exp < self._time():
            raise IdentityError("sign-in code expired")
        return employee_id


def _local_path(uri: str) -> str | None:
    """A path on this server only: the picker never sends anyone (or a code) elsewhere."""
    parts = urlsplit(uri)
    if parts.scheme or parts.netloc or not uri.startswith("/") or uri.startswith("//") or "\\" in uri:
        return None
    return uri


async def page(identity: EmulatorIdentity, language: str, request: web.Request) -> web.Response:
    """The picker (the guard has already let the request in)."""
    en = language == "en"
    target = _local_path(request.query.get("redirect_uri", ""))
    state = request.query.get("state", "")
    if target is None or not state or len(state) > 128 or not state.isalnum():
        return web.Response(status=400, text="redirect_uri (a local path) and state are required", headers=HEADERS)
    people = await Employee.filter(active=True).order_by("employee_id")
    items = []
    for p in people:
        href = f"{target}?{urlencode({'code': identity.code(p.employee_id, state), 'state': state})}"
        roles = "、".join(sorted(p.role_set)) or ("no role" if en else "无角色")
        items.append(f'<li><a id="as-{escape(p.employee_id)}" href="{escape(href)}">{escape(p.name)}'
                     f'（{escape(p.employee_id)} · {escape(p.department or "—")} · {escape(roles)}）</a></li>')
    title = "Emulator sign-in: who are you?" if en else "模拟器登录：选择身份"
    note = ("Only HR (role hr or admin) get into the dashboard." if en
            else "只有 HR（角色 hr 或 admin）可以进入离职档案系统。")
    body = (f'<!DOCTYPE html><html lang="{"en" if en else "zh-CN"}"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title></head><body><h1>{escape(title)}</h1><p>{escape(note)}</p>"
            f'<ul id="people">{"".join(items)}</ul></body></html>')
    return web.Response(text=body, content_type="text/html", headers=HEADERS)
