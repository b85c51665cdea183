"""Dashboard sessions: an encrypted cookie (aiohttp-session, Fernet) with an absolute expiry, a CSRF token
per session, and the security headers every dashboard response carries.

The cookie holds only who signed in (employee id, platform), until when, the CSRF token and the language.
It is HttpOnly, SameSite=Lax (the platform's OAuth redirect back to us is a top-level cross-site GET, which
Strict would strip of the cookie holding the sign-in state), Secure when PUBLIC_BASE_URL is https, and
scoped to /dashboard. The expiry is ours (`exp`, set at sign-in and never extended) as well as the cookie's
and Fernet's: a stolen cookie stops working at the same time whatever the browser does with it. Whoever the
session names is looked up again on every request, so an employee who loses the HR role or leaves is shut
out at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp_session import Session, get_session, new_session, session_middleware
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from cryptography.fernet import Fernet

from handlers.dashboard.deps import DASHBOARD, Dashboard
from storage.models import Employee

COOKIE = "offboard_dashboard"
PREFIX = "/dashboard"
SIGNIN_SECONDS = 600  # how long a started sign-in (the OAuth state) may take
GRACE_SECONDS = 3600
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
       "base-uri 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def fernet_key(secret: bytes) -> bytes:
    """The session cookie's key, derived from SECRET_KEY for this use only."""
    return base64.urlsafe_b64encode(hmac.new(secret, b"offboard-dashboard-session/v1", hashlib.sha256).digest())


def storage(dash: Dashboard) -> EncryptedCookieStorage:
    cfg = dash.config
    # The cookie (and Fernet's own ttl, a backstop) outlives the session by GRACE_SECONDS, so that a visitor
    # whose session ended is told so instead of meeting a bare sign-in page; `exp` is what shuts them out.
    return EncryptedCookieStorage(Fernet(fernet_key(cfg.secret)), cookie_name=COOKIE, path=PREFIX,
                                  max_age=cfg.session_seconds + GRACE_SECONDS, httponly=True, secure=cfg.https,
                                  samesite="Lax")


@web.middleware
async def headers(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(HEADERS)
        raise
    if not response.prepared:
        response.headers.update(HEADERS)
    return response


def middlewares(dash: Dashboard) -> list[Any]:
    # Headers outermost so that whatever the session middleware answers carries them too.
    return [headers, session_middleware(storage(dash))]


@dataclass(frozen=True)
class SignedIn:
    employee: Employee
    platform: str
    csrf: str
    lang: str


def _now() -> float:
    return time.time()


async def begin_signin(request: web.Request, platform: str, next_path: str) -> str:
    """A fresh OAuth state bound to this browser's session, for the platform round trip."""
    session = await get_session(request)
    state = secrets.token_hex(20)  # WeCom allows [A-Za-z0-9] only, up to 128
    session["signin"] = {"state": state, "platform": platform, "at": int(_now()), "next": next_path}
    return state


async def finish_signin(request: web.Request, platform: str, state: str) -> str | None:
    """The path to go to after sign-in if `state` is the one this browser started for `platform`; the
    pending sign-in is used up either way."""
    session = await get_session(request)
    pending = session.pop("signin", None)
    if not isinstance(pending, dict) or pending.get("platform") != platform:
        return None
    if not hmac.compare_digest(str(pending.get("state", "")), state or ""):
        return None
    if _now() - int(pending.get("at", 0)) > SIGNIN_SECONDS:
        return None
    return str(pending.get("next") or PREFIX)


async def sign_in(request: web.Request, employee: Employee, platform: str, lang: str) -> None:
    """A new session (never the one the visitor came with: no fixation) naming `employee`."""
    dash = request.app[DASHBOARD]
    old = await get_session(request)
    old.invalidate()
    session = await new_session(request)
    session["uid"] = employee.employee_id
    session["platform"] = platform
    session["exp"] = int(_now()) + dash.config.session_seconds
    session["csrf"] = secrets.token_urlsafe(32)
    session["lang"] = lang


async def sign_out(request: web.Request) -> None:
    (await get_session(request)).invalidate()


async def language(request: web.Request) -> str:
    """?lang= switches and is remembered; else the session's, else the configured default."""
    dash = request.app[DASHBOARD]
    session = await get_session(request)
    wanted = request.query.get("lang")
    if wanted in ("zh", "en"):
        if session.get("lang") != wanted:
            session["lang"] = wanted
        return wanted
    lang = session.get("lang")
    return lang if lang in ("zh", "en") else dash.config.language


class NotSignedIn(Exception):
    def __init__(self, expired: bool = False) -> None:
        super().__init__("expired" if expired else "signed out")
        self.expired = expired


class NotHR(Exception):
    pass


async def current(request: web.Request) -> SignedIn:
    """Who is signed in, if they still may use the dashboard; NotSignedIn / NotHR otherwise."""
    dash = request.app[DASHBOARD]
    session: Session = await get_session(request)
    uid = session.get("uid")
    if not isinstance(uid, str):
        raise NotSignedIn()
    if int(session.get("exp", 0)) <= _now():
        session.invalidate()
        raise NotSignedIn(expired=True)
    employee = await Employee.get_or_none(employee_id=uid, active=True)
    if not dash.is_hr(employee):
        raise NotHR()
    assert employee is not None  # is_hr(None) is False
    return SignedIn(employee, str(session.get("platform", "")), str(session.get("csrf", "")),
                    await language(request))


def csrf_ok(who: SignedIn, given: object) -> bool:
    return isinstance(given, str) and bool(who.csrf) and hmac.compare_digest(who.csrf.encode(), given.encode())
