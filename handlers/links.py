"""Personal signing links put on sign-step cards: `{public_base_url}/sign/<token>`.

The token is an HMAC over (case, step, signer, expiry, nonce) from `signing.links`; the signing page
verifies it and enforces single use by recording the nonce when the signature is accepted.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta

from cases.service import utcnow
from config.settings import Settings
from signing.links import make_token, new_nonce


def signing_url(settings: Settings, case_id: str, step_id: str, signer_id: str, *,
                now: datetime | None = None) -> str:
    now = now or utcnow()
    token = make_token(settings.secret_bytes(), case_id=case_id, step_id=step_id, signer_id=signer_id,
                       expires_at=now + timedelta(hours=settings.link_ttl_hours), nonce=new_nonce())
    return f"{settings.public_base_url}/sign/{token}"


def download_url(settings: Settings, case_id: str, document_id: int, holder_id: str, *,
                 now: datetime | None = None) -> str:
    """A personal, expiring link to one sealed document of a case (`/doc/<token>`): the token names the
    document and its holder, and the download page serves it only to the case's employee or HR."""
    now = now or utcnow()
    token = make_token(settings.secret_bytes(), case_id=case_id, step_id=str(document_id), signer_id=holder_id,
                       expires_at=now + timedelta(hours=settings.link_ttl_hours), nonce=new_nonce(),
                       purpose="download")
    return f"{settings.public_base_url}/doc/{token}"


_TOKEN_IN_PATH = re.compile(r"(/sign/|/doc/|/export/|/upload/)[^/\s?\"]+")


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
