"""Every bad link and every bad payload gets a clear 4xx and changes nothing."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from handlers.signing_access import client_ip
from signing.links import make_token, new_nonce
from storage.models import AuditEntry, Case, CaseStep, Document, Signature, SigningLink
from tests.signing_flow.conftest import FINANCE, HANDOVER, HR, Flow, signature_strokes, token_for
from workflow.events import Cancel
from workflow.model import Role


async def _snapshot(flow: Flow) -> tuple[int, int, int, int]:
    case = await Case.get(id=flow.case_id)
    return (await Signature.all().count(), await SigningLink.filter(used_at__not_isnull=True).count(),
            case.audit_seq, await Document.filter(status__not="draft").count())


async def _open_ok(flow: Flow, token: str) -> str:
    status, page = await flow.open(token)
    assert status == 200, page
    found = re.search(r'\?h=([0-9a-f]{64})"', page)
    assert found
    return found.group(1)


def _body(token: str, **over: object) -> dict[str, object]:
    body: dict[str, object] = {"token": token, "consent": True, "consent_version": "2025-01",
                               "strokes": signature_strokes()}
    body.update(over)
    return body


async def test_tampered_expired_and_malformed_links(flow: Flow) -> None:
    before = await _snapshot(flow)
    good = flow.token()
    body, sig = good.split(".")
    tampered = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1] + "." + sig
    status, page = await flow.open(tampered)
    assert status == 403 and "链接无效" in page
    expired = make_token(flow.settings.secret_bytes(), case_id=flow.case_id, step_id="guarantee", signer_id="E003",
                         expires_at=datetime.now(UTC) - timedelta(seconds=1), nonce=new_nonce())
    status, page = await flow.open(expired)
    assert status == 410 and "已过期" in page
    status, page = await flow.open("not-a-token")
    assert status == 400 and "格式有误" in page
    status, data = await flow.post(tampered, _body(tampered))
    assert status == 403 and data["code"] == "tampered"
    assert await _snapshot(flow) == before
    assert not await SigningLink.all().exists()


async def test_someone_elses_step_or_case(flow: Flow) -> None:
    # The handover colleague holding a link for the employee's guarantee letter.
    status, page = await flow.open(flow.token("guarantee", HANDOVER))
    assert status == 403 and "不是您需要签署" in page
    # A step without documents (finance's back-payment) and a step not yet active (rights notice).
    status, page = await flow.open(flow.token("backpay", FINANCE))
    assert status == 404 and "不需要签署" in page
    status, page = await flow.open(flow.token("rights_notice", "E003"))
    assert status == 409 and "尚未开始" in page
    # A case that does not exist.
    status, page = await flow.open(token_for(flow.settings, "OB-NOPE99", "guarantee", "E003"))
    assert status == 404
    assert not await Signature.all().exists()


async def test_closed_case(flow: Flow) -> None:
    token = flow.token()
    h = await _open_ok(flow, token)
    out = await flow.service.apply(flow.case_id, lambda c, s: Cancel(HR, frozenset({Role.HR}), "员工撤回",
                                                                     datetime.now(UTC)), actor=HR)
    assert out.ok
    before = await _snapshot(flow)
    status, page = await flow.open(token)
    assert status == 409 and "已结束" in page
    status, data = await flow.post(token, _body(token), h=h)
    assert status == 409 and data["code"] == "case_closed"
    assert await _snapshot(flow) == before


async def test_used_link_and_second_link_for_signed_step(flow: Flow) -> None:
    token = flow.token()
    h = await _open_ok(flow, token)
    status, data = await flow.post(token, _body(token), h=h)
    assert status == 200, data
    before = await _snapshot(flow)
    status, data = await flow.post(token, _body(token), h=h)
    assert status == 410 and data["code"] == "used"
    status, page = await flow.open(token)
    assert status == 410 and 'id="download"' in page
    other = flow.token()
    status, page = await flow.open(other)
    assert status == 409 and "已完成" in page
    assert await _snapshot(flow) == before


@pytest.mark.parametrize(("change", "status", "code"), [
    ({"consent": False}, 422, "consent_required"),
    ({"consent_version": "1999-01"}, 422, "consent_outdated"),
    ({"strokes": "nope"}, 422, "bad_strokes"),
    ({"strokes": {"width": 300, "height": 200, "strokes": [[{"x": 1, "y": 1, "t": 0}]] * 2, "extra": 1}},
     422, "bad_strokes"),
    ({"strokes": {"width": 300, "height": 200, "strokes": [[{"x": 10.0 + i % 200, "y": 50.0, "t": float(i)}
                                                          for i in range(20_001)]]}}, 422, "bad_strokes"),
    ({"strokes": {"width": 300, "height": 200, "strokes": [[{"x": 50, "y": 50, "t": 0}]]}}, 422, "trivial"),
    ({"strokes": {"width": 300, "height": 200,
                  "strokes": [[{"x": 10.0 + i, "y": 100.0, "t": float(i)} for i in range(200)]]}}, 422, "trivial"),
    ({"token": "other.token"}, 400, "token_mismatch"),
    ({"image_sha256": "short"}, 400, "bad_image_hash"),
])
async def test_bad_payloads_store_nothing(flow: Flow, change: dict[str, object], status: int, code: str) -> None:
    token = flow.token()
    h = await _open_ok(flow, token)
    before = await _snapshot(flow)
    body = _body(token)
    body.update(change)
    got, data = await flow.post(token, body, h=h)
    assert (got, data.get("code")) == (status, code), data
    assert data["message"]
    assert await _snapshot(flow) == before


async def test_malformed_oversized_and_stale_document(flow: Flow) -> None:
    token = flow.token()
    h = await _open_ok(flow, token)
    before = await _snapshot(flow)
    status, data = await flow.post(token, None, raw=b"{not json", h=h)
    assert status == 400 and data["code"] == "bad_json"
    status, data = await flow.post(token, None, raw=b"[1, 2]", h=h)
    assert status == 400
    status, data = await flow.post(token, None, raw=json.dumps(_body(token, pad="x" * 1_100_000)).encode(), h=h)
    assert status == 413
    status, data = await flow.post(token, _body(token), h="0" * 64)
    assert status == 409 and data["code"] == "document_changed"
    assert await _snapshot(flow) == before
    step = await CaseStep.get(case_id=flow.case_id, step_id="guarantee")
    assert step.status == "active" and not step.documents_signed


async def test_script_in_name_is_escaped(flow: Flow) -> None:
    from storage.models import Employee

    await Employee.filter(employee_id="E003").update(name='张三<script>alert(1)</script>')
    status, page = await flow.open(flow.token())
    assert status == 200
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


async def test_viewed_recorded_once_in_audit(flow: Flow) -> None:
    token = flow.token()
    await _open_ok(flow, token)
    await _open_ok(flow, token)
    viewed = await AuditEntry.filter(case_id=flow.case_id, kind="step_viewed").count()
    assert viewed == 1
    assert await Document.filter(case_id=flow.case_id, kind="guarantee_letter").count() == 1


class _Req:
    def __init__(self, remote: str, xff: str | None) -> None:
        self.remote = remote
        self.headers = {"X-Forwarded-For": xff} if xff else {}


def test_forwarded_for_only_from_trusted_proxies() -> None:
    assert client_ip(_Req("203.0.113.5", "1.2.3.4"), ()) == "203.0.113.5"  # type: ignore[arg-type]
    assert client_ip(_Req("203.0.113.5", "1.2.3.4"), ("10.0.0.0/8",)) == "203.0.113.5"  # type: ignore[arg-type]
    assert client_ip(_Req("10.0.0.2", "9.9.9.9, 1.2.3.4"), ("10.0.0.0/8",)) == "1.2.3.4"  # type: ignore[arg-type]
    assert client_ip(_Req("10.0.0.2", "1.2.3.4, 10.0.0.7"), ("10.0.0.0/8",)) == "1.2.3.4"  # type: ignore[arg-type]
    assert client_ip(_Req("10.0.0.2", "garbage"), ("10.0.0.0/8",)) == "10.0.0.2"  # type: ignore[arg-type]


async def test_finance_cannot_sign_for_employee(flow: Flow) -> None:
    status, page = await flow.open(flow.token("guarantee", FINANCE))
    assert status == 403 and "不是您需要签署" in page
    # The link is refused before its body is read (parsing waits for the link's claim), so even a body
    # naming this very link gets "not the signer".
    token = flow.token("guarantee", FINANCE)
    status, data = await flow.post(token, _body(token))
    assert status == 403 and data["code"] == "not_signer"
