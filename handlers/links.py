"""Personal signing links put on sign-step cards: `{public_base_url}/sign/<token>`.

The token is an HMAC over (case, step, signer, expiry, nonce) from `signing.links`; the signing page
verifies it and enforces single use by recording the nonce when the signature is accepted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from datetime import UTC, datetime, timedelta

from cases.service import utcnow
from config.settings import Settings
from signing.links import make_token, new_nonce


def signing_url(settings: Settings, case_id: str, step_id: str, signer_id: str, *,
                now: datetime | None = None) -> str:
    now = now or utcnow()
    token = make_token(settings.secret_bytes(), case_id=case_id, step_id=step_id, signer_id=signer_id,
                       expires_at=now + timedelta(hours=settings.link_ttl_hours), nonce=new_nonce())
    return f"{settings.public_base_url}/sign/{token}"


def dashboard_case_url(settings: Settings, case_id: str) -> str:
    """The case's page on HR's dashboard (it asks for sign-in; nothing personal in the link)."""
    return f"{settings.public_base_url}/dashboard/case/{case_id}"


def download_url(settings: Settings, case_id: str, document_id: int, holder_id: str, *,
                 now: datetime | None = None) -> str:
    """A personal, expiring link to one sealed document of a case (`/doc/<token>`): the token names the
    document and its holder, and the download page serves it only to the case's employee or HR."""
    now = now or utcnow()
    token = make_token(settings.secret_bytes(), case_id=case_id, step_id=str(document_id), signer_id=holder_id,
                       expires_at=now + timedelta(hours=settings.link_ttl_hours), nonce=new_nonce(),
                       purpose="download")
    return f"{settings.public_base_url}/doc/{token}"


def _stable(settings: Settings, now: datetime, *parts: object) -> tuple[datetime, str]:
    """Expiry and nonce of a link that a card carries: the same for every render of the same card in
    the same state within the same hour, so re-rendering a card that did not change yields the same
    card (a platform update can be skipped); any change of the case (its version is in `parts`) or the
    next hour gives a new link. The expiry is at least LINK_TTL_HOURS away."""
    hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    expires = hour + timedelta(hours=settings.link_ttl_hours + 1)
    text = "|".join(str(p) for p in ("link-nonce/v1", hour.isoformat(), *parts))
    mac = hmac.new(settings.secret_bytes(), text.encode("utf-8"), hashlib.sha256).digest()
    return expires, base64.urlsafe_b64encode(mac[:18]).decode("ascii")


def form_url(settings: Settings, case_id: str, step_id: str, action: str, holder_id: str, card_id: str,
             version: int, *, now: datetime | None = None) -> str:
    """The step's short web form for one button of one card (`/form/<token>`), for platforms whose cards
    cannot hold text inputs: the token binds case, step, action, the card and its holder, and expires
    like a signing link; the page submits through the same router as a tap on that card. `version`:
    the case's, so a card re-rendered after any change carries a fresh (unused) link."""
    expires, nonce = _stable(settings, now or utcnow(), "form", case_id, version, step_id, action, holder_id,
                             card_id)
    token = make_token(settings.secret_bytes(), case_id=case_id, step_id=step_id, signer_id=holder_id,
                       expires_at=expires, nonce=nonce, purpose="form", extra={"a": action, "k": card_id})
    return f"{settings.public_base_url}/form/{token}"


def details_url(settings: Settings, case_id: str, step_id: str, holder_id: str, version: int, *,
                now: datetime | None = None) -> str:
    """A step's details page for one holder (`/view/<token>`); its first opening records that this
    holder has viewed the step, which is what spares them the first reminder."""
    expires, nonce = _stable(settings, now or utcnow(), "view", case_id, version, step_id, holder_id)
    token = make_token(settings.secret_bytes(), case_id=case_id, step_id=step_id, signer_id=holder_id,
                       expires_at=expires, nonce=nonce, purpose="view")
    return f"{settings.public_base_url}/view/{token}"


_TOKEN_IN_PATH = re.compile(r"(/sign/|/doc/|/export/|/form/|/view/|/upload/)[^/\s?\"]+")


class RedactLinkTokens(logging.Filter):
    """A signing link is a bearer credential until used: an access log (aiohttp's, when someone turns
    it on; `serve` runs without one) shows `/sign/…` instead of the token."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and _TOKEN_IN_PATH.search(record.msg):
            record.msg = _TOKEN_IN_PATH.sub(r"\1…", record.msg)
        if isinstance(record.args, tuple) and any(isinstance(a, str) and _TOKEN_IN_PATH.search(a)
                                                  for a in record.args):
            record.args = tuple(_TOKEN_IN_PATH.sub(r"\1…", a) if isinstance(a, str) else a for a in record.args)
        line = getattr(record, "first_request_line", None)
        if isinstance(line, str):
            record.first_request_line = _TOKEN_IN_PATH.sub(r"\1…", line)
        return True


_REDACT = RedactLinkTokens()


def redact_link_tokens_in_access_log() -> None:
    access = logging.getLogger("aiohttp.access")
    if _REDACT not in access.filters:
        access.addFilter(_REDACT)
