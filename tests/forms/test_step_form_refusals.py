"""Everything a step's web form must refuse, each with a clear answer and nothing changed: forged,
expired, malformed and misdirected links, another person, cross-site posts, oversized and malformed
bodies, and inputs the emulator's card form refuses (the same refusal, word for word)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import aiohttp

from signing.links import make_token, new_nonce
from storage import cardids, hotpath
from storage.models import AuditEntry, CaseStep, FormLink, InboxEvent, OutboxMessage
from tests.forms.conftest import EMPLOYEE, MANAGER, Forms, csrf_of, link, message_of

GOOD = {"last_working_day": "2025-07-31", "reason": "收到通知，无异议"}


async def _state(f: Forms) -> tuple[int, int, str, dict[str, object], int]:
    case = await f.case()
    step = await CaseStep.get(case_id=case.id, step_id="application")
    done = await InboxEvent.filter(dedup_key__startswith="wecom:webform:").count()
    return await AuditEntry.filter(case_id=case.id).count(), case.version, step.status, step.data, done


async def _form_url(f: Forms) -> str:
    return link(await f.card(EMPLOYEE, step="application"), "提交")


def _token(url: str) -> str:
    return url.rsplit("/form/", 1)[1].split("?")[0]


async def test_invalid_inputs_get_the_emulators_refusal_and_can_be_corrected(forms: Forms) -> None:
    url = await _form_url(forms)
    card = await forms.card(EMPLOYEE, step="application")
    before = await _state(forms)
    cases = [
        ({"last_working_day": "2025-13-45", "reason": "好"}, "missing_data"),  # not a date
        ({"last_working_day": "", "reason": "好"}, "missing_data"),  # required
        ({**GOOD, "reason": "x" * 2001}, "bad_text"),  # over the textarea's limit
        ({**GOOD, "reason": "a\x00b"}, "bad_text"),  # NUL: PostgreSQL could not store it
        ({**GOOD, "amount": "1"}, "undeclared_field"),  # a field the step does not ask for
    ]
    for fields, code in cases:
        status, page = await forms.submit(url, fields)
        assert status == 422, (fields, page)
        # The same form tapped on the card (the platform's callback path) is refused in the same words.
        tapped = await forms.tap(EMPLOYEE, card.card_id, "submit", fields)
        assert not tapped.ok and tapped.code == code, tapped
        assert message_of(page) == tapped.text, (page, tapped.text)
    after = await _state(forms)
    # Nothing changed (the taps' refusals are recorded in the inbox like any event; the form's too).
    assert after[:4] == before[:4]
    # A refusal does not use the link up: the corrected form goes through.
    status, page = await forms.submit(url, GOOD)
    assert status == 200, page
    assert (await _state(forms))[2] == "done"


async def test_script_in_an_input_stays_text(forms: Forms) -> None:
    url = await _form_url(forms)
    evil = '<script>alert(1)</script><img src=x onerror=alert(2)>"'
    status, page = await forms.submit(url, {"last_working_day": "not a date", "reason": evil})
    assert status == 422
    assert "<script>" not in page and "<img" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    status, page = await forms.submit(url, {**GOOD, "reason": evil})
    assert status == 200
    case = await forms.case()
    step = await CaseStep.get(case_id=case.id, step_id="application")
    assert step.data["reason"] == evil  # stored as the person typed it, shown escaped everywhere
    await forms.deliver()
    mgr = await forms.card(MANAGER, step="performance_review")
    assert "<script>" not in mgr.html and "<img" not in mgr.html


async def test_forged_expired_malformed_and_foreign_links(forms: Forms) -> None:
    url = await _form_url(forms)
    token = _token(url)
    case = await forms.case()
    row = await OutboxMessage.get(case_id=case.id, recipient=EMPLOYEE, step_id="application", kind="card")
    secret = forms.settings.secret_bytes()
    now = datetime.now(UTC)

    def mint(**kw: object) -> str:
        claims: dict[str, object] = {"case_id": case.id, "step_id": "application", "signer_id": EMPLOYEE,
                                     "expires_at": now + timedelta(hours=1), "nonce": new_nonce(), "purpose": "form",
                                     "extra": {"a": "submit", "k": row.key}}
        claims.update(kw)
        return make_token(secret, **claims)  # type: ignore[arg-type]

    body, sig = token.split(".")
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1] + "." + sig
    wrong_key = make_token(b"another-secret-0123456789", case_id=case.id, step_id="application", signer_id=EMPLOYEE,
                           expires_at=now + timedelta(hours=1), nonce=new_nonce(), purpose="form",
                           extra={"a": "submit", "k": row.key})
    checks = {
        "tampered": (403, flipped), "wrong secret": (403, wrong_key),
        "signing token on the form": (403, make_token(secret, case_id=case.id, step_id="application",
                                                      signer_id=EMPLOYEE, expires_at=now + timedelta(hours=1),
                                                      nonce=new_nonce())),
        "expired": (410, mint(expires_at=now - timedelta(seconds=1))),
        "malformed": (400, "not-a-token"),
        "no action bound": (400, mint(extra={"k": row.key})),
        # Genuine tokens that do not fit the card: another holder, another step, another card.
        "another holder": (403, mint(signer_id=MANAGER)),
        "another step": (403, mint(step_id="performance_review")),
        "unknown card": (403, mint(extra={"a": "submit", "k": "no-such-card"})),
    }
    before = await _state(forms)
    for name, (want, tok) in checks.items():
        resp = await forms.client.get(f"/form/{quote(tok)}")
        assert resp.status == want, (name, await resp.text())
        page = await resp.text()
        assert message_of(page), name
        resp = await forms.client.post(f"/form/{quote(tok)}", data={"csrf": "x", **GOOD})
        assert resp.status == want, (name, await resp.text())
    assert await _state(forms) == before
    assert not await FormLink.exists()

    en = await forms.client.get(f"/form/{quote(flipped)}?lang=en")
    assert "signature does not match" in message_of(await en.text())


async def test_a_locked_or_finished_button_offers_no_form(forms: Forms) -> None:
    """Finance's back-pay confirmation waits for the guarantee letter: a link minted for it anyway shows
    the lock's reason, and a link to a step already done says it is no longer offered."""
    case = await forms.case()
    url = await _form_url(forms)
    assert (await forms.submit(url, GOOD))[0] == 200
    secret = forms.settings.secret_bytes()
    row = await OutboxMessage.get(case_id=case.id, recipient=EMPLOYEE, step_id="application", kind="card")
    again = make_token(secret, case_id=case.id, step_id="application", signer_id=EMPLOYEE,
                       expires_at=datetime.now(UTC) + timedelta(hours=1), nonce=new_nonce(), purpose="form",
                       extra={"a": "submit", "k": row.key})
    resp = await forms.client.get(f"/form/{again}")
    assert resp.status == 409 and "不可用" in message_of(await resp.text())
    # HR's case card offers closing the case only once every required step is done: a link minted
    # for it shows the lock's reason and changes nothing.
    await forms.deliver()
    summary = await forms.card("E001", purpose="summary")
    assert summary.card is not None
    locked = next(b for b in summary.card.buttons if b.action == "close")
    assert not locked.enabled and locked.reason  # a disabled button stays a disabled button, no link
    tok = make_token(secret, case_id=case.id, step_id="", signer_id="E001",
                     expires_at=datetime.now(UTC) + timedelta(hours=1), nonce=new_nonce(), purpose="form",
                     extra={"a": "close", "k": (await cardids.find(hotpath.default_conn(), summary.card_id)).key})
    before = await AuditEntry.filter(case_id=case.id).count()
    resp = await forms.client.get(f"/form/{tok}")
    assert resp.status == 409 and message_of(await resp.text()) == locked.reason
    assert await AuditEntry.filter(case_id=case.id).count() == before


async def test_cross_site_and_csrf(forms: Forms) -> None:
    url = await _form_url(forms)
    status, page = await forms.open(url)
    csrf = csrf_of(page)
    before = await _state(forms)
    refusals = [
        ({"Origin": "https://evil.example"}, csrf, 403),
        ({"Origin": "null"}, csrf, 403),
        ({"Sec-Fetch-Site": "cross-site"}, csrf, 403),
        ({}, "forged-value", 403),  # the page's value must match its cookie
        ({}, "", 403),
    ]
    for headers, value, want in refusals:
        status, page = await forms.submit(url, GOOD, csrf=value, headers=headers)
        assert status == want, (headers, page)
        assert message_of(page)
    # Without the page's cookie (another browser, a script elsewhere) the value alone is not enough.
    async with aiohttp.ClientSession() as other:
        resp = await other.post(forms.client.make_url(forms.path(url)), data={"csrf": csrf, **GOOD})
        assert resp.status == 403
    assert await _state(forms) == before
    # Same origin: accepted.
    origin = f"http://{forms.client.host}:{forms.client.port}"
    status, page = await forms.submit(url, GOOD, csrf=csrf, headers={"Origin": origin,
                                                                     "Sec-Fetch-Site": "same-origin"})
    assert status == 200, page


async def test_oversized_and_malformed_bodies(forms: Forms) -> None:
    url = await _form_url(forms)
    status, page = await forms.open(url)
    csrf = csrf_of(page)
    before = await _state(forms)
    big = f"csrf={csrf}&reason=".encode() + b"x" * (70 * 1024)
    status, page = await forms.submit(url, {}, raw=big)
    assert status == 413 and "过大" in message_of(page)

    async def chunked() -> object:
        yield f"csrf={csrf}&reason=".encode()
        for _ in range(20):
            yield b"y" * 8192

    resp = await forms.client.post(forms.path(url), data=chunked(),
                                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status == 413
    bad = [
        (f"csrf={csrf}&reason=%FF%FE&last_working_day=2025-07-31".encode(), 400),  # not UTF-8
        (f"csrf={csrf}&reason=a&reason=b".encode(), 400),  # one input twice
        ("&".join(f"f{i}=1" for i in range(40)).encode(), 400),  # more fields than any step has
    ]
    for raw, want in bad:
        status, page = await forms.submit(url, {}, raw=raw)
        assert status == want, (raw[:60], page)
    status, page = await forms.submit(url, {}, raw=b'{"reason": "x"}', headers={"Content-Type": "application/json"})
    assert status == 415
    assert await _state(forms) == before


async def test_double_submit_is_answered_once(forms: Forms) -> None:
    import asyncio

    url = await _form_url(forms)
    _, page = await forms.open(url)
    csrf = csrf_of(page)
    results = await asyncio.gather(*(forms.submit(url, GOOD, csrf=csrf) for _ in range(3)))
    assert sorted(s for s, _ in results)[0] == 200
    assert [s for s, _ in results].count(200) == 1, results
    case = await forms.case()
    assert await AuditEntry.filter(case_id=case.id, kind="step_done").count() == 1
