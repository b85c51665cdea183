"""Issue 14, "a failed calculation strands the case": a probation back-pay for months outside every rate
table, end to end through the emulator API on 127.0.0.1 (real app, database, outbox relay, signing pages).

HR is told in Chinese which city and months are missing and what to do; HR enters the rates with a reason
(audited) or corrects the directory and redoes the HR check; the case completes; and no card the employee
ever holds, nor the signing page, shows an exception.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, date, datetime
from typing import Any

import aiohttp

from bot.app import build_service
from config.settings import Settings
from storage.audit import verify_chain
from storage.directory import import_csv
from storage.models import AuditEntry, Case, CaseStep, Document, Employee
from tests.chat.test_chat_emulator import AUTH, _cards, _wait_card, server  # noqa: F401  (server is a fixture)
from tests.conftest import DEMO_CSV
from tests.signing_flow.conftest import signature_strokes
from workflow.events import Act
from workflow.model import Role

HR, MANAGER, EMPLOYEE, FINANCE, HANDOVER = "E001", "E002", "E003", "E004", "E006"
# What must never reach an employee: Python/settlement error text, or HR's own explanation.
LEAKS = ("Error", "Traceback", "outside every", "months:", "wage:", "city:", "没有社保费率表", "无法计算",
         "PipelineError", "SettlementError", "/录入费率")


# ---- the emulator API, in one place (the lock-down adds its token here) ---------------------------------

async def _send(http: aiohttp.ClientSession, base: str, user: str, text: str) -> dict[str, Any]:
    async with http.post(f"{base}/emulator/api/send", json={"user": user, "text": text}) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def _click(http: aiohttp.ClientSession, base: str, user: str, card: dict[str, Any], action: str,
                 form: dict[str, str] | None = None) -> dict[str, Any]:
    async with http.post(f"{base}/emulator/api/click", json={"user": user, "card_id": card["card_id"],
                                                             "action": action, "form": form or {}}) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def _texts(http: aiohttp.ClientSession, base: str, user: str) -> list[str]:
    async with http.get(f"{base}/emulator/api/messages", params={"user": user}) as r:
        return [m["text"] for m in (await r.json())["messages"] if m["kind"] == "text" and m["sender"] == "bot"]


async def _wait_text(http: aiohttp.ClientSession, base: str, user: str, needle: str) -> str:
    for _ in range(100):
        for text in await _texts(http, base, user):
            if needle in text:
                return text
        await asyncio.sleep(0.05)
    raise AssertionError(f"{user} got no text with {needle!r}: {await _texts(http, base, user)}")


async def _no_leaks(http: aiohttp.ClientSession, base: str, user: str = EMPLOYEE) -> list[dict[str, Any]]:
    """Every card the employee holds, as shown right now: none may carry an exception or HR's reasons."""
    cards = await _cards(http, base, user)
    for card in cards:
        shown = " ".join([card["title"], card["summary"], card["status"], card["body"], str(card["fields"]),
                          str(card["buttons"]), card["html"]])
        for leak in LEAKS:
            assert leak not in shown, (leak, card["step_id"], shown)
    return cards


def _step_card(step: str) -> Any:
    return lambda c: c["step_id"] == step and c["purpose"] in ("step", "reminder")


async def _sign(http: aiohttp.ClientSession, base: str, user: str, step: str) -> None:
    """Open the signing link on the user's card for `step` and sign by hand, as the phone page does."""
    card = await _wait_card(http, base, user, lambda c: c["step_id"] == step and any(b["url"] for b in c["buttons"]))
    url = next(b["url"] for b in card["buttons"] if b["url"])
    async with http.get(url) as r:
        page = await r.text()
        assert r.status == 200, page
    h = re.search(r'\?h=([0-9a-f]{64})"', page)
    assert h, page
    token = url.rsplit("/", 1)[-1]
    body = {"token": token, "consent": True, "consent_version": "2025-01", "strokes": signature_strokes()}
    async with http.post(f"{url}?h={h.group(1)}", json=body) as r:
        assert r.status == 200, await r.text()


async def _to_hr_check(http: aiohttp.ClientSession, base: str, last_day: str) -> str:
    started = await _send(http, base, HR, f"/离职 张三 试用期 {last_day} 绩效未达标 交接人:周八")
    assert started["ok"], started
    case_id = started["data"]["case_id"]
    app = await _wait_card(http, base, EMPLOYEE, _step_card("application"))
    assert (await _click(http, base, EMPLOYEE, app, "submit", {"last_working_day": last_day,
                                                               "reason": "试用期考核未通过"}))["ok"]
    review = await _wait_card(http, base, MANAGER, _step_card("performance_review"))
    assert (await _click(http, base, MANAGER, review, "approve", {"result": "完成率 60%，要求 80%"}))["ok"]
    return case_id


async def _finish(http: aiohttp.ClientSession, base: str, case_id: str) -> None:
    """From the signed guarantee letter to the closed case, every step by its own person."""
    await _sign(http, base, EMPLOYEE, "handover")
    await _sign(http, base, HANDOVER, "handover")  # the receiving colleague signs the same sheet
    pay = await _wait_card(http, base, FINANCE, lambda c: c["step_id"] == "backpay" and any(
        b["action"] == "confirm" and b["enabled"] for b in c["buttons"]))
    assert (await _click(http, base, FINANCE, pay, "confirm", {"payment_reference": "PAY-2026-0042"}))["ok"]
    await _sign(http, base, EMPLOYEE, "separation_certificate")
    await _sign(http, base, EMPLOYEE, "rights_notice")
    notice = await _wait_card(http, base, EMPLOYEE, lambda c: c["step_id"] == "rights_notice" and any(
        b["action"] == "acknowledge" and b["enabled"] for b in c["buttons"]))
    assert (await _click(http, base, EMPLOYEE, notice, "acknowledge"))["ok"]
    for _ in range(100):
        if (await Case.get(id=case_id)).status == "completed":
            break
        await asyncio.sleep(0.05)
    assert (await Case.get(id=case_id)).status == "completed"
    # The blocked attempt, the rates entry or the redo sit in the chain like every other entry.
    report = await verify_chain(case_id)
    assert report.ok, report.problem


async def test_months_outside_every_table_rates_entered_with_a_reason(server: str) -> None:  # noqa: F811
    # Hired in July 2026: Beijing's newest bundled table ends 2026-06, so both unpaid months are uncovered.
    await Employee.filter(employee_id=EMPLOYEE).update(hire_date=date(2026, 7, 6), contract_start=date(2026, 7, 6))
    async with aiohttp.ClientSession(headers=AUTH) as http:
        case_id = await _to_hr_check(http, server, "2026-09-30")
        check = await _wait_card(http, server, HR, _step_card("hr_check"))
        refused = await _click(http, server, HR, check, "complete", {"unpaid_months": "2"})
        assert not refused["ok"] and refused["code"] == "backpay_blocked", refused
        assert "社保补缴金额无法计算" in refused["text"]

        # HR's one message, in Chinese: city, months, the known periods and both ways out.
        told = await _wait_text(http, server, HR, "没有社保费率表")
        assert "北京 2026年7月至2026年8月 没有社保费率表" in told, told
        assert "2025-07至2026-06" in told and "通讯录" in told, told
        # The entry is pre-filled with the rates of the newest Beijing table (the limits are HR's to fill).
        assert (f"/录入费率 {case_id} 2026-07至2027-06 下限=<元> 上限=<元> 养老=8/16 医疗=2/9.8 医疗定额=3 "
                "失业=0.5/0.5 工伤=0.2 来源=<公告网址> 原因：<原因>") in told, told
        assert not re.search(r"[A-Za-z]{4,}", told.replace(case_id, "")), told
        blocked = await AuditEntry.get(case_id=case_id, kind="backpay_blocked")
        assert blocked.data["months"] == ["2026-07", "2026-08"] and blocked.actor == HR
        # Nothing moved: the HR check is still open and the letter has not gone to the employee.
        steps = {s.step_id: s.status for s in await CaseStep.filter(case_id=case_id)}
        assert steps["hr_check"] == "active" and steps["guarantee"] == "locked", steps
        await _no_leaks(http, server)

        # Bad input is refused and changes nothing: no reason, a rate above 100 %, a period a table covers.
        seq = (await Case.get(id=case_id)).audit_seq
        rates = ("下限=7270 上限=36348 养老=8/16 医疗=2/9.8 医疗定额=3 失业=0.5/0.5 工伤=0.2 "
                 "来源=https://rsj.beijing.gov.cn/notice-2026")
        for bad, words in ((f"/录入费率 {case_id} 2026-07至2027-06 {rates}", "原因"),
                           (f"/录入费率 {case_id} 2026-07至2027-06 {rates.replace('8/16', '8/160')} 原因：x",
                            "小于 100"),
                           (f"/录入费率 {case_id} 2026-01至2026-12 {rates} 原因：x", "已有费率表")):
            answer = await _send(http, server, HR, bad)
            assert not answer["ok"] and words in answer["text"], (bad, answer)
        assert (await Case.get(id=case_id)).audit_seq == seq

        reason = "北京 2026 年度缴费基数通知已发布，系统尚未收录"
        entered = await _send(http, server, HR, f"/录入费率 {case_id} 2026-07至2027-06 {rates} 原因：{reason}")
        assert entered["ok"], entered
        entry = await AuditEntry.get(case_id=case_id, kind="backpay_rates_entered")
        assert entry.actor == HR and entry.data["reason"] == reason
        assert entry.data["table"]["base_floor"] == "7270" and entry.data["table"]["effective_to"] == "2027-06"

        # Redo: the same card, the same button, the same service path; now it completes.
        done = await _click(http, server, HR, check, "complete", {"unpaid_months": "2"})
        assert done["ok"], done
        # Base 7,270 (the floor HR entered; wage 5,000 is below it): 581.60 + 145.40 + 3.00 + 36.35 = 766.35
        # a month, × 2 = 1,532.70.
        letter = await _wait_card(http, server, EMPLOYEE, lambda c: c["step_id"] == "guarantee" and
                                  "1,532.70 元" in str(c["fields"]))
        assert "HR 录入的北京费率" in letter["body"], letter["body"]
        await _no_leaks(http, server)
        await _sign(http, server, EMPLOYEE, "guarantee")
        doc = await Document.get(case_id=case_id, kind="guarantee_letter")
        assert doc.status == "sealed" and doc.context["values"]["backpay_amount"] == "1,532.70", doc.context
        await _finish(http, server, case_id)
        await _no_leaks(http, server)


async def test_stranded_case_told_on_the_signing_page_then_directory_corrected_and_redone(
    server: str, demo_org: Settings,  # noqa: F811
) -> None:
    # A case stranded before the check existed: the HR check was completed although 2022 is in no table
    # (the wrong hire year typed into the directory). Set up directly through the service, as it was then.
    await Employee.filter(employee_id=EMPLOYEE).update(hire_date=date(2022, 5, 6))
    async with aiohttp.ClientSession(headers=AUTH) as http:
        case_id = await _to_hr_check(http, server, "2025-07-31")
        await _wait_card(http, server, HR, _step_card("hr_check"))
        # A second service on the same database: the running app's compare-and-set sees the change.
        out = await build_service(demo_org).apply(
            case_id, lambda c, s: Act("hr_check", "complete", HR, frozenset({Role.HR}), {"unpaid_months": "2"},
                                      datetime.now(UTC)), actor=HR)
        assert out.ok, out.refusal

        # The employee's letter card shows a neutral status, never the reason.
        card = await _wait_card(http, server, EMPLOYEE, lambda c: c["step_id"] == "guarantee" and
                                "HR 正在核对补缴金额" in str(c["fields"]))
        await _no_leaks(http, server)
        url = next(b["url"] for b in card["buttons"] if b["url"])
        for _ in range(2):  # opened twice: HR is told once
            async with http.get(url) as r:
                page = await r.text()
            assert r.status == 503 and "HR 核对" in page, page
            for leak in LEAKS:
                assert leak not in page, (leak, page)
        told = await _wait_text(http, server, HR, "没有社保费率表")
        assert "北京 2022年5月至2022年6月 没有社保费率表" in told and "/重算" in told, told
        await asyncio.sleep(0.2)
        assert sum("没有社保费率表" in t for t in await _texts(http, server, HR)) == 1

        # HR corrects the hire date in the directory (a CSV import, as HR does) and redoes the check.
        header, *rows = DEMO_CSV.read_text(encoding="utf-8").splitlines()
        fixed = [r for r in rows if r.startswith(EMPLOYEE + ",")]
        assert (await import_csv("\n".join([header, *fixed]) + "\n")).applied
        assert (await Employee.get(employee_id=EMPLOYEE)).hire_date == date(2025, 5, 6)
        redo = await _send(http, server, HR, f"/重算 {case_id} 入职日期录错，已更正为 2025-05-06")
        assert redo["ok"], redo
        reopened = await AuditEntry.get(case_id=case_id, kind="step_reopened")
        assert reopened.data["relocked"] == ["guarantee"] and "入职日期录错" in reopened.data["reason"]
        steps = {s.step_id: s.status for s in await CaseStep.filter(case_id=case_id)}
        assert steps["hr_check"] == "active" and steps["guarantee"] == "locked", steps
        assert not await Document.filter(case_id=case_id, kind="guarantee_letter").exists()
        again = await _send(http, server, HR, f"/重算 {case_id}")
        assert not again["ok"] and "尚未完成" in again["text"], again

        check = await _wait_card(http, server, HR, lambda c: c["step_id"] == "hr_check" and any(
            b["action"] == "complete" and b["enabled"] for b in c["buttons"]))
        assert (await _click(http, server, HR, check, "complete", {"unpaid_months": "2"}))["ok"]
        # Hire 2025-05: May and June 2025 under Beijing 2024 (base 6,821): 719.21 × 2 = 1,438.42.
        await _wait_card(http, server, EMPLOYEE, lambda c: c["step_id"] == "guarantee" and
                         "1,438.42 元" in str(c["fields"]))
        await _no_leaks(http, server)
        await _sign(http, server, EMPLOYEE, "guarantee")
        await _finish(http, server, case_id)
        await _no_leaks(http, server)
