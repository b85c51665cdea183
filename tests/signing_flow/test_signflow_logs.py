"""LOG_LEVEL=DEBUG carries no SQL parameters, document bytes, link nonces or secrets (issue 11, finding 5).

The whole signing path runs in this process with every logger at DEBUG and the records captured as
the configured handler would see them.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta

import pytest

from signing.links import make_token, new_nonce
from signing.pipeline import keys_for
from signing.verify import verify_case
from storage.db import close_db, init_db
from storage.models import Case
from tests.conftest import PG_URL
from tests.signing_flow.conftest import EMPLOYEE, HANDOVER, HR, Flow, sign_step, signature_strokes
from tests.signing_flow.test_signflow_at_rest import ID_NUMBER, PHONE, _with_identity
from workflow.events import Prepare
from workflow.model import Role

SECRET = "test-secret-key-0123456789"
FREE_TEXT = "交接说明：钥匙已放在前台抽屉"


async def test_debug_log_of_a_signing_flow_holds_no_parameters_or_secrets(
        flow: Flow, caplog: pytest.LogCaptureFixture) -> None:
    await _with_identity(flow)
    caplog.set_level(logging.DEBUG)
    nonce = new_nonce()
    token = make_token(flow.settings.secret_bytes(), case_id=flow.case_id, step_id="guarantee",
                       signer_id=EMPLOYEE, expires_at=datetime.now(UTC) + timedelta(hours=1), nonce=nonce)
    status, page = await flow.open(token)
    assert status == 200
    assert (await flow.client.get(f"/sign/{token}/page/1.png")).status == 200
    presented = re.search(r'\?h=([0-9a-f]{64})"', page)
    assert presented
    status, body = await flow.post(token, {"token": token, "consent": True, "consent_version": "2025-01",
                                           "strokes": signature_strokes()}, h=presented.group(1))
    assert status == 200, body
    pdf = await (await flow.client.get(f"/sign/{token}/document.pdf")).read()
    assert pdf.startswith(b"%PDF")
    # HR's free text goes into the handover sheet both sides sign.
    out = await flow.service.apply(flow.case_id, lambda c, s: Prepare("handover", HR, frozenset({Role.HR}),
                                                                      {"items": FREE_TEXT}, datetime.now(UTC)))
    assert out.ok, out.refusal
    await sign_step(flow, "handover")
    await sign_step(flow, "handover", HANDOVER)
    keys = keys_for(flow.settings)
    assert all(c.ok for c in await verify_case(flow.case_id, keys=keys, trust_root=keys.root_cert))

    messages = [r.getMessage() for r in caplog.records]
    text = "\n".join(messages) + "\n" + caplog.text
    needles = {"link nonce": nonce, "link token": token, "ID number": ID_NUMBER, "phone": PHONE,
               "PDF bytes": "%PDF", "PDF base64": "JVBER", "PNG bytes": "\\x89PNG", "secret key": SECRET,
               "stroke data": '"height"', "stroke timing": '"t":', "free text": FREE_TEXT,
               "ciphertext": "\\x00ENC1"}
    found = [what for what, needle in needles.items() if needle in text]
    assert found == [], found
    statements = [m for m in messages if "parameters not logged" in m]
    assert len(statements) > 20, "the SQL statements themselves are still logged at DEBUG"
    assert any('"signature"' in m for m in statements)


@pytest.mark.skipif(not PG_URL, reason="the DSN with a password is PostgreSQL's")
async def test_debug_log_of_a_postgres_connection_holds_no_password(caplog: pytest.LogCaptureFixture) -> None:
    password = "pw-" + new_nonce()
    url = PG_URL.replace("://postgres@", f"://postgres:{password}@", 1)
    assert password in url, "TEST_DATABASE_URL is not postgres://postgres@…"
    caplog.set_level(logging.DEBUG)
    await init_db(url)  # the test server trusts local connections, so any password is accepted
    try:
        await Case.filter(id="none").exists()
    finally:
        await close_db()
    assert password not in caplog.text
    assert any("details not logged" in r.getMessage() for r in caplog.records)
