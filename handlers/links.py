"""Personal signing links put on sign-step cards: `{public_base_url}/sign/<token>`.

The token is an HMAC over (case, step, signer, expiry, nonce) from `signing.links`; the signing page
verifies it and enforces single use by recording the nonce when the signature is accepted.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.settings import Settings
from handlers.cases import utcnow
from signing.links import make_token, new_nonce


def signing_url(settings: Settings, case_id: str, step_id: str, signer_id: str, *,
                now: datetime | None = None) -> str:
    now = now or utcnow()
    token = make_token(settings.secret_bytes(), case_id=case_id, step_id=step_id, signer_id=signer_id,
                       expires_at=now + timedelta(hours=settings.link_ttl_hours), nonce=new_nonce())
    return f"{settings.public_base_url}/sign/{token}"
