"""The signing page's form over real HTTP: control characters in any text field and fields the form
does not declare are refused with a clear 400 and nothing is stored (a NUL was a 500 on PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from storage.models import Case, CaseStep, Document, Signature, SigningLink
from tests.signing_flow.conftest import Flow, signature_strokes


async def _snapshot(flow: Flow) -> tuple[int, int, int, int, str]:
    case = await Case.get(id=flow.case_id)
    step = await CaseStep.get(case_id=flow.case_id, step_id="guarantee")
    return (await Signature.all().count(), await SigningLink.filter(used_at__not_isnull=True).count(),
            case.audit_seq, await Document.filter(status__not="draft").count(), step.status)


async def _open(flow: Flow) -> tuple[str, str]:
    token = flow.token()
    status, page = await flow.open(token)
    assert status == 200, page
    found = re.search(r'\?h=([0-9a-f]{64})"', page)
    assert found
    return token, found.group(1)


@pytest.mark.parametrize("change", [
    {"image_sha256": "a" * 63 + "\x00"},
    {"doc_sha256": "\x00" * 64},
    {"consent_version": "2025-01\x00"},
    {"image_sha256": "\ud800" * 64},
])
async def test_control_characters_in_the_signing_form_are_refused(flow: Flow, change: dict[str, str]) -> None:
    token, h = await _open(flow)
    before = await _snapshot(flow)
    body = {"token": token, "consent": True, "consent_version": "2025-01", "strokes": signature_strokes(),
            **change}
    # json.dumps writes a lone surrogate as \ud800, as a hostile client would send it.
    status, data = await flow.post(token, None, raw=json.dumps(body).encode(), h=h)
    assert (status, data.get("code")) == (400, "bad_text"), data
    assert "控制字符" in data["message"]
    assert await _snapshot(flow) == before


async def test_undeclared_fields_in_the_signing_form_are_refused(flow: Flow) -> None:
    token, h = await _open(flow)
    before = await _snapshot(flow)
    body = {"token": token, "consent": True, "consent_version": "2025-01", "strokes": signature_strokes(),
            "note": "x" * 100_000}
    status, data = await flow.post(token, body, h=h)
    assert (status, data.get("code")) == (400, "undeclared_field") and "note" in data["message"], data
    assert await _snapshot(flow) == before
    # The declared fields alone sign (the refusal was the extra field, nothing else).
    del body["note"]
    status, data = await flow.post(token, body, h=h)
    assert status == 200 and data["ok"], data


async def test_a_user_agent_that_is_not_utf8_is_refused_not_a_500(flow: Flow) -> None:
    """Header bytes that are not UTF-8 reach the handler as lone surrogates; stored as evidence they
    failed the insert (a 500 on both databases)."""
    token, h = await _open(flow)
    before = await _snapshot(flow)
    body = json.dumps({"token": token, "consent": True, "consent_version": "2025-01",
                       "strokes": signature_strokes()}).encode()
    server = flow.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(b"POST /sign/" + token.encode() + b"?h=" + h.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Type: application/json\r\nUser-Agent: Mozilla\x80\xff\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
    await writer.drain()
    response = await reader.read()
    writer.close()
    head, _, payload = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), response[:300]
    assert json.loads(payload)["code"] == "bad_text"
    assert await _snapshot(flow) == before
