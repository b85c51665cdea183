"""Personal signing-link tokens: HMAC-SHA256 over (case, step, signer, expiry, nonce), URL-safe.

The token proves who it was issued to and until when; single use is enforced by the caller, who records
the nonce in the database when the signature is accepted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

DEFAULT_TTL = timedelta(hours=72)
MAX_TOKEN_LEN = 1024
# Keeps these MACs distinct from any other use of SECRET_KEY, and a link of one purpose ("sign",
# "download", "export", a step's web "form", a step's "view" details page, an HR "upload" page) from
# being accepted as one of another.
_PURPOSES = frozenset({"sign", "download", "export", "form", "view", "upload"})
_MIN_SECRET = 16
_MIN_NONCE = 16

LinkErrorCode = Literal["tampered", "expired", "malformed"]


class LinkError(ValueError):
    def __init__(self, code: LinkErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: LinkErrorCode = code


@dataclass(frozen=True)
class TokenClaims:
    case_id: str
    step_id: str
    signer_id: str
    expires_at: datetime
    nonce: str
    # More the link is bound to (a step form's action and card); signed with the rest.
    extra: Mapping[str, str] = field(default_factory=dict)


def new_nonce() -> str:
    return secrets.token_urlsafe(18)


def default_expiry(now: datetime, ttl: timedelta = DEFAULT_TTL) -> datetime:
    return now + ttl


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, body: str, purpose: str) -> bytes:
    if purpose not in _PURPOSES:
        raise ValueError(f"unknown link purpose {purpose!r}")
    domain = f"offboard-{purpose}-link/v1.".encode("ascii")
    return hmac.new(secret, domain + body.encode("ascii"), hashlib.sha256).digest()


def _check_secret(secret: bytes) -> None:
    if len(secret) < _MIN_SECRET:
        raise ValueError(f"link secret must be at least {_MIN_SECRET} bytes")


def make_token(secret: bytes, *, case_id: str | int, step_id: str | int, signer_id: str | int,
               expires_at: datetime, nonce: str, purpose: str = "sign",
               extra: Mapping[str, str] | None = None) -> str:
    _check_secret(secret)
    if expires_at.tzinfo is None:
        raise ValueError("expires_at must be timezone-aware")
    if len(nonce) < _MIN_NONCE:
        raise ValueError(f"nonce must be at least {_MIN_NONCE} characters (use new_nonce())")
    claims = {"c": str(case_id), "s": str(step_id), "u": str(signer_id),
              "e": int(expires_at.timestamp()), "n": nonce}
    if extra:
        claims["x"] = {str(k): str(v) for k, v in extra.items()}
    body = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode())
    token = f"{body}.{_b64(_mac(secret, body, purpose))}"
    if len(token) > MAX_TOKEN_LEN:
        raise ValueError("identifiers too long for a link token")
    return token


def read_token(secret: bytes, token: str, now: datetime, purpose: str = "sign") -> TokenClaims:
    """Claims of a genuine, unexpired token; LinkError(code) otherwise."""
    _check_secret(secret)
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LEN or token.count(".") != 1:
        raise LinkError("malformed", "link token is malformed")
    body, sig = token.split(".")
    try:
        given = _unb64(sig)
        body.encode("ascii")
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise LinkError("malformed", "link token is malformed") from None
    if not hmac.compare_digest(given, _mac(secret, body, purpose)):
        raise LinkError("tampered", "link token signature does not match")
    try:
        claims = json.loads(_unb64(body))
        extra = claims.get("x") or {}
        if not isinstance(extra, dict) or not all(isinstance(v, str) for v in extra.values()):
            raise ValueError("extra claims must map names to strings")
        result = TokenClaims(
            case_id=str(claims["c"]), step_id=str(claims["s"]), signer_id=str(claims["u"]),
            expires_at=datetime.fromtimestamp(int(claims["e"]), UTC), nonce=str(claims["n"]), extra=extra,
        )
    except (binascii.Error, ValueError, KeyError, TypeError, OverflowError, OSError):
        raise LinkError("malformed", "link token content is malformed") from None
    if now >= result.expires_at:
        raise LinkError("expired", "link has expired")
    return result
