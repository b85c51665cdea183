"""The HR dashboard over real HTTP on SQLite and PostgreSQL: who gets in (HR only, signed in, unexpired),
CSRF, the overview's order and filters, the case page and its access log, actions through the chat path,
escaping, headers and cookies."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp.test_utils import TestClient, TestServer
from cryptography.fernet import Fernet
from tortoise.transactions import in_transaction

from config.settings import Settings
from handlers.dashboard.deps import Dashboard, DashboardConfig
from handlers.dashboard.session import COOKIE, fernet_key, storage
from handlers.dashboard.timeline import facts_of
from signing import settlefigures as sf
from storage import casestore
from storage.models import AuditEntry, Case, CaseAccess, Document, Employee
from tests.dashboard.conftest import AUTH, EMPLOYEE, HR, MANAGER, OTHER, Dash, serve, start
from tests.signing_flow.conftest import Flow, make_app, sign_step, to_guarantee_step
from workflow.text import Text


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, str, aiohttp.ClientResponse]:
    async with http.get(url, allow_redirects=False) as r:
        return r.status, await r.text(), r


async def test_signed_out_visitor_is_sent_to_sign_in_and_sees_nothing(dash: Dash) -> None:
    case_id = await start(dash.service, EMPLOYEE, "probation")
    async with dash.client() as http:
        for path in ("/dashboard", f"/dashboard/case/{case_id}", f"/dashboard/case/{case_id}/archive.zip",
                     f"/dashboard/case/{case_id}/document/1.pdf"):
            status, body, r = await _get(http, dash.base + path)
            assert status == 303 and r.headers["Location"].startswith("/dashboard/signin?next="), (path, status)
            assert case_id not in body
        async with http.post(f"{dash.base}/dashboard/case/{case_id}/remind", data={"csrf": "x"}) as r:
            assert r.status == 401
        status, body, _ = await _get(http, dash.base + "/dashboard/signin")
        assert status == 200 and 'id="signin-emulator"' in body
    assert await CaseAccess.filter(case_id=case_id).count() == 0
    assert await AuditEntry.filter(case_id=case_id, kind="reminder_sent").count() == 0


async def test_non_hr_is_refused_and_gets_no_session(dash: Dash) -> None:
    await start(dash.service, EMPLOYEE, "probation")
    async with dash.client() as http:
        for who in (EMPLOYEE, MANAGER):
            r = await dash.sign_in(http, who)
            assert r.status == 403 and "只有人事" in await r.text()
            status, _, resp = await _get(http, dash.base + "/dashboard")
            assert status == 303 and resp.headers["Location"].startswith("/dashboard/signin")


async def test_hr_who_loses_the_role_is_shut_out_at_once(dash: Dash) -> None:
    async with dash.client() as http:
        r = await dash.sign_in(http, HR)
        assert r.status == 303 and r.headers["Location"] == "/dashboard"
        status, _, _ = await _get(http, dash.base + "/dashboard")
        assert status == 200
        await Employee.filter(employee_id=HR).update(roles="")
        status, body, _ = await _get(http, dash.base + "/dashboard")
        assert status == 403 and "只有人事" in body


async def test_sign_in_state_is_bound_to_the_browser(dash: Dash) -> None:
    async with dash.client() as mine, dash.client() as theirs:
        async with mine.get(f"{dash.base}/dashboard/signin/emulator", allow_redirects=False) as r:
            picker = r.headers["Location"]
        async with mine.get(dash.base + picker, headers=AUTH) as r:
            href = re.search(r'id="as-E001" href="([^"]+)"', await r.text()).group(1).replace("&amp;", "&")
        # The code and state in another browser (no sign-in started there): refused.
        status, body, _ = await _get(theirs, dash.base + href)
        assert status == 403 and "登录请求无效" in body
        # A forged code with the right state: refused, and the pending sign-in is used up.
        state = parse_qs(urlsplit(href).query)["state"][0]
        status, _, _ = await _get(mine, f"{dash.base}/dashboard/oauth/emulator?code=E001.9999999999.00&state={state}")
        assert status == 403
        status, _, _ = await _get(mine, dash.base + href)
        assert status == 403
        # The picker itself answers only with the emulator's token.
        async with theirs.get(dash.base + picker) as r:
            assert r.status == 401


async def test_next_is_kept_and_never_leaves_the_dashboard(dash: Dash) -> None:
    case_id = await start(dash.service, EMPLOYEE, "probation")
    async with dash.client() as http:
        status, _, r = await _get(http, f"{dash.base}/dashboard/case/{case_id}")
        signin = r.headers["Location"]
        status, body, _ = await _get(http, dash.base + signin)
        href = re.search(r'id="signin-emulator" href="([^"]+)"', body).group(1).replace("&amp;", "&")
        async with http.get(dash.base + href, allow_redirects=False) as r:
            picker = r.headers["Location"]
        async with http.get(dash.base + picker, headers=AUTH) as r:
            code = re.search(r'id="as-E001" href="([^"]+)"', await r.text()).group(1).replace("&amp;", "&")
        status, _, r = await _get(http, dash.base + code)
        assert status == 303 and r.headers["Location"] == f"/dashboard/case/{case_id}"
    async with dash.client() as http:
        async with http.get(f"{dash.base}/dashboard/signin/emulator?next=//evil.example/x",
                            allow_redirects=False) as r:
            picker = r.headers["Location"]
        async with http.get(dash.base + picker, headers=AUTH) as r:
            code = re.search(r'id="as-E001" href="([^"]+)"', await r.text()).group(1).replace("&amp;", "&")
        status, _, r = await _get(http, dash.base + code)
        assert r.headers["Location"] == "/dashboard"
        # The picker sends codes only to a path on this server.
        async with http.get(f"{dash.base}/emulator/signin?redirect_uri=https://evil.example/&state=abc",
                            headers=AUTH) as r:
            assert r.status == 400


async def test_overview_overdue_first_with_counts_and_filters(dash: Dash) -> None:
    fresh = await start(dash.service, EMPLOYEE, "probation")
    late = await start(dash.service, OTHER, "resignation", days_ago=6)
    async with dash.client() as http:
        await dash.sign_in(http, HR)
        status, body, _ = await _get(http, dash.base + "/dashboard")
        assert status == 200
        order = re.findall(r'<tr class="case( overdue)?" data-case="(OB-[0-9A-Z]{6})"', body)
        assert [c for _, c in order] == [late, fresh] and order[0][0] == " overdue" and order[1][0] == ""
        assert re.search(r'id="count-open"[^>]*><b>2</b>', body)
        assert re.search(r'id="count-overdue"[^>]*><b>1</b>', body)
        assert "吴九（E007）" in body and "张三（E003）" in body
        # Who each waits on, and since when (shown in Asia/Shanghai).
        assert "直属上级" in body or "离职员工" in body
        for query, expect in ((f"?q={fresh}", [fresh]), ("?q=吴", [late]), ("?q=E003", [fresh]),
                              ("?state=overdue", [late]), ("?type=probation", [fresh]),
                              ("?dept=研发部", [late]), ("?state=completed", [])):
            _, body, _ = await _get(http, dash.base + "/dashboard" + query)
            assert re.findall(r'data-case="(OB-[0-9A-Z]{6})"', body) == expect, query
        _, body, _ = await _get(http, dash.base + "/dashboard?lang=en")
        assert "Offboarding cases" in body and 'lang="en"' in body
        _, body, _ = await _get(http, dash.base + "/dashboard")  # remembered in the session
        assert "Offboarding cases" in body


async def test_case_page_is_logged_and_shows_timeline_and_access(dash: Dash) -> None:
    case_id = await start(dash.service, EMPLOYEE, "probation", handover="E006")
    async with dash.client() as http:
        await dash.sign_in(http, HR)
        status, body, _ = await _get(http, f"{dash.base}/dashboard/case/{case_id}")
        assert status == 200
        assert 'data-kind="case_started"' in body and "#1" in body
        assert 'id="verify-result"' in body and 'id="action-remind"' in body and 'id="action-cancel"' in body
        # Probation has no fallback path, so no fallback form: the page offers only what chat would accept.
        assert 'id="action-fallback"' not in body
        misconduct = await start(dash.service, OTHER, "misconduct", reason="严重违反规章制度", handover="E008")
        _, other, _ = await _get(http, f"{dash.base}/dashboard/case/{misconduct}")
        assert 'id="action-fallback"' in other  # a flow with a fallback path offers it, as /送达 would accept
        status, body, _ = await _get(http, f"{dash.base}/dashboard/case/{case_id}")
        assert body.count("<td>view</td>") == 2  # this read and the one before, on the page itself
        status, _, _ = await _get(http, f"{dash.base}/dashboard/case/OB-NOPE00")
        assert status == 404
    rows = await CaseAccess.filter(case_id=case_id).order_by("id")
    assert [(a.actor, a.action, a.detail["via"]) for a in rows] == [(HR, "view", "dashboard")] * 2


async def test_actions_need_the_csrf_token_and_go_through_the_chat_path(dash: Dash) -> None:
    case_id = await start(dash.service, EMPLOYEE, "probation")
    async with dash.client() as http:
        await dash.sign_in(http, HR)
        _, body, _ = await _get(http, f"{dash.base}/dashboard/case/{case_id}")
        csrf = re.search(r'name="csrf" value="([^"]+)"', body).group(1)
        nonce = re.search(r'id="action-remind">.*?name="nonce" value="([^"]+)"', body).group(1)
        url = f"{dash.base}/dashboard/case/{case_id}/remind"
        for bad in ({}, {"csrf": "wrong"}, {"csrf": csrf[:-1]}):
            async with http.post(url, data={**bad, "nonce": nonce}, allow_redirects=False) as r:
                assert r.status == 403 and "未执行任何操作" in await r.text()
        async with http.post(url, data=json.dumps({"csrf": csrf}), allow_redirects=False,
                             headers={"Content-Type": "application/json"}) as r:
            assert r.status == 403
        assert await AuditEntry.filter(case_id=case_id, kind="reminder_sent").count() == 0
        for _ in range(2):  # a double submit of one form acts once (the chat's dedup key)
            async with http.post(url, data={"csrf": csrf, "nonce": nonce}, allow_redirects=False) as r:
                assert r.status == 303 and r.headers["Location"] == f"/dashboard/case/{case_id}"
        assert await AuditEntry.filter(case_id=case_id, kind="reminder_sent").count() == 1
        entry = await AuditEntry.get(case_id=case_id, kind="reminder_sent")
        assert entry.actor == HR and entry.data["trigger"] == "manual"
        _, body, _ = await _get(http, f"{dash.base}/dashboard/case/{case_id}")
        assert 'id="flash"' in body and "提醒" in body
        # Cancel needs a reason, like /cancel: refused with the command's own usage, nothing changed.
        async with http.post(f"{dash.base}/dashboard/case/{case_id}/cancel", data={"csrf": csrf, "reason": " "},
                             allow_redirects=False) as r:
            assert r.status == 303
        _, body, _ = await _get(http, f"{dash.base}/dashboard/case/{case_id}")
        assert 'class="flash bad"' in body and "原因" in body
        assert (await Case.get(id=case_id)).status == "open"
        async with http.post(f"{dash.base}/dashboard/case/{case_id}/cancel",
                             data={"csrf": csrf, "reason": "员工撤回辞职"}, allow_redirects=False) as r:
            assert r.status == 303
        case = await Case.get(id=case_id)
        assert case.status == "cancelled"
        cancelled = await AuditEntry.get(case_id=case_id, kind="case_cancelled")
        assert cancelled.actor == HR and cancelled.data["reason"] == "员工撤回辞职"


async def test_expired_session_means_sign_in_again(dash: Dash) -> None:
    await start(dash.service, EMPLOYEE, "probation")
    key = Fernet(fernet_key(dash.settings.secret_bytes()))
    now = int(time.time())
    data = {"uid": HR, "platform": "emulator", "exp": now - 1, "csrf": "c" * 43, "lang": "zh"}
    expired = key.encrypt(json.dumps({"created": now - 10, "session": data}).encode()).decode()
    async with dash.client() as http:
        http.cookie_jar.update_cookies({COOKIE: expired}, response_url=aiohttp.client.URL(dash.base + "/dashboard"))
        status, body, r = await _get(http, dash.base + "/dashboard")
        assert status == 303 and "expired=1" in r.headers["Location"]
        _, body, _ = await _get(http, dash.base + r.headers["Location"])
        assert "登录已过期" in body
        # The same cookie unexpired works: it was only the expiry.
        fresh = key.encrypt(json.dumps({"created": now, "session": {**data, "exp": now + 600}}).encode()).decode()
        http.cookie_jar.update_cookies({COOKIE: fresh}, response_url=aiohttp.client.URL(dash.base + "/dashboard"))
        status, _, _ = await _get(http, dash.base + "/dashboard")
        assert status == 200
        # A cookie not made with our key is no session at all.
        http.cookie_jar.update_cookies({COOKIE: Fernet(Fernet.generate_key()).encrypt(b"{}").decode()},
                                       response_url=aiohttp.client.URL(dash.base + "/dashboard"))
        status, _, _ = await _get(http, dash.base + "/dashboard")
        assert status == 303


async def test_script_in_names_is_text(dash: Dash) -> None:
    evil = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
    await Employee.filter(employee_id=EMPLOYEE).update(name=evil, department=evil)
    case_id = await start(dash.service, EMPLOYEE, "probation", reason=evil)
    async with dash.client() as http:
        await dash.sign_in(http, HR)
        for path in ("/dashboard", f"/dashboard/case/{case_id}", f"/dashboard?q={evil}"):
            _, body, _ = await _get(http, dash.base + path)
            assert "<script>alert" not in body and "<img src=x" not in body, path
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body, path


async def test_headers_and_cookie_attributes(dash: Dash) -> None:
    async with dash.client() as http:
        r = await dash.sign_in(http, HR)
        cookie = r.headers.get("Set-Cookie", "")
        assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "Path=/dashboard" in cookie
        assert "SameSite=Lax" in cookie and "Secure" not in cookie  # http://127.0.0.1: no Secure
        for path in ("/dashboard", "/dashboard/signin"):
            async with http.get(dash.base + path) as r:
                h = r.headers
                assert "frame-ancestors 'none'" in h["Content-Security-Policy"]
                assert "script-src" not in h["Content-Security-Policy"]  # default-src 'none': no script at all
                assert h["Referrer-Policy"] == "no-referrer" and h["X-Content-Type-Options"] == "nosniff"
                assert h["Cache-Control"] == "no-store"


async def test_sealed_document_download_is_logged_and_scoped_to_its_case(dash: Dash) -> None:
    case_id = await start(dash.service, EMPLOYEE, "probation", handover="E006")
    other = await start(dash.service, OTHER, "resignation")
    await to_guarantee_step(dash.service, case_id)
    async with TestClient(TestServer(make_app(dash.settings, dash.service), host="127.0.0.1")) as client:
        await sign_step(Flow(dash.settings, dash.service, case_id, client), "guarantee")
    doc = await Document.get(case_id=case_id, kind="guarantee_letter", status="sealed")
    async with dash.client() as http:
        await dash.sign_in(http, HR)
        _, page, _ = await _get(http, f"{dash.base}/dashboard/case/{case_id}")
        assert f'href="/dashboard/case/{case_id}/document/{doc.id}.pdf"' in page
        async with http.get(f"{dash.base}/dashboard/case/{case_id}/document/{doc.id}.pdf") as r:
            assert r.status == 200 and r.content_type == "application/pdf"
            assert await r.read() == bytes(doc.pdf_signed)
        # The same document asked for under another case, or a document that does not exist: nothing.
        for path in (f"/dashboard/case/{other}/document/{doc.id}.pdf", f"/dashboard/case/{case_id}/document/999.pdf"):
            status, _, _ = await _get(http, dash.base + path)
            assert status == 404
    logged = await CaseAccess.get(case_id=case_id, action="document")
    assert logged.actor == HR and logged.detail["document_id"] == doc.id
    assert logged.detail["sha256"] == doc.sha256_signed
    assert await CaseAccess.filter(case_id=other).count() == 0


def test_cookie_is_secure_behind_https() -> None:
    def params(base: str) -> dict[str, object]:
        cfg = DashboardConfig(secret=b"s" * 32, public_base_url=base, language="zh", tz=ZoneInfo("Asia/Shanghai"),
                              session_seconds=60, data_dir=Path("."))
        dash = Dashboard(config=cfg, service=None, identities={}, resolve_user=None, is_hr=None,  # type: ignore[arg-type]
                         run_command=None, has_command=None)  # type: ignore[arg-type]
        return dict(storage(dash).cookie_params)

    assert params("https://hr.example.com")["secure"] is True
    assert params("http://127.0.0.1:8080")["secure"] is False
    assert params("https://hr.example.com")["samesite"] == "Lax" and params("https://x")["httponly"] is True


async def test_sign_out_needs_the_csrf_token(dash: Dash) -> None:
    async with dash.client() as http:
        await dash.sign_in(http, HR)
        _, body, _ = await _get(http, dash.base + "/dashboard")
        csrf = re.search(r'name="csrf" value="([^"]+)"', body).group(1)
        async with http.post(f"{dash.base}/dashboard/signout", data={"csrf": "forged"}, allow_redirects=False) as r:
            assert r.status == 403
        status, _, _ = await _get(http, dash.base + "/dashboard")
        assert status == 200  # still signed in
        async with http.post(f"{dash.base}/dashboard/signout", data={"csrf": csrf}, allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/dashboard/signin"
        status, _, _ = await _get(http, dash.base + "/dashboard")
        assert status == 303


def test_timeline_facts_keep_form_data_and_unknown_kinds() -> None:
    facts = facts_of("step_done", {"step_id": "hr_check", "action": "complete",
                                   "data": {"override_reason": "员工确认放弃", "unpaid_months": "2"}})
    shown = {k.zh: v for k, v in facts}
    assert shown["调整原因"] == "员工确认放弃" and shown["unpaid_months"] == "2" and shown["操作"] == "complete"
    # HR's settlement record: one line per figure in either language, not the record's raw text.
    figs = sf.compute("mutual", hire_date=date(2016, 3, 1), last_day=date(2026, 1, 30), wage=Decimal("12000"),
                      proposed_by="employer")
    rec = sf.record(figs, {"compensation": Decimal("150000")}, "多付", ground="36-employer", last_day=None)
    shown = {k.en: v for k, v in facts_of("step_done", {"step_id": "terms", "data": {sf.RECORD_KEY: rec}})}
    comp = shown["Compensation"]
    assert isinstance(comp, Text) and comp.en == "CNY 150,000.00 (computed 120,000.00)"
    assert comp.zh == "150,000.00 元（计算结果 120,000.00 元）" and set(shown) == {i.en for i in sf.ITEMS}
    # A kind nobody taught the dashboard (e.g. an evidence upload) still shows what it recorded.
    upload = facts_of("evidence_uploaded", {"filename": "ems.jpg", "sha256": "ab" * 32, "tracking_number": "EA1"})
    assert {k.zh for k, _ in upload} == {"文件名", "SHA-256", "邮寄单号"}


async def _append(case_id: str, kind: str, data: dict[str, object]) -> None:
    """An audit entry written by some other writer, through the case's one write path."""
    async with in_transaction() as conn:
        await casestore.append_audit(conn, case_id, [(datetime.now(UTC), HR, kind, data)])

async def test_an_entry_kind_the_dashboard_does_not_know_is_shown_not_dropped(dash: Dash) -> None:
    case_id = await start(dash.service, EMPLOYEE, "probation")
    await _append(case_id, "evidence_uploaded",
                  {"step_id": "application", "filename": "<b>ems</b>.jpg", "sha256": "ab" * 32})
    async with dash.client() as http:
        await dash.sign_in(http, HR)
        _, body, _ = await _get(http, f"{dash.base}/dashboard/case/{case_id}")
    assert 'data-kind="evidence_uploaded"' in body and "&lt;b&gt;ems&lt;/b&gt;.jpg" in body and "ab" * 32 in body


async def test_upload_entries_link_the_upload_page_for_the_viewer(demo_org: Settings) -> None:
    def upload_url(case_id: str, step_id: str, hr_id: str) -> str:
        return f"/upload/for-{case_id}-{step_id}-{hr_id}"

    async with serve(demo_org, dashboard={"upload_url": upload_url}) as dash:
        case_id = await start(dash.service, EMPLOYEE, "probation")
        await _append(case_id, "evidence_uploaded", {"step_id": "application", "sha256": "cd" * 32})
        async with dash.client() as http:
            await dash.sign_in(http, HR)
            _, body, _ = await _get(http, f"{dash.base}/dashboard/case/{case_id}")
    assert f'href="/upload/for-{case_id}-application-{HR}"' in body
