"""`/录入费率` and `/重算` through the chat harness (router, service, database, outbox relay, emulator
adapter): a city with no table at all, bad entries refused with nothing changed, redo refused once the
letter is signed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from storage.models import AuditEntry, Case, CaseStep, Employee
from tests.chat.conftest import Chat
from workflow.events import DocumentSigned
from workflow.model import Role

HR, MANAGER, EMPLOYEE = "E001", "E002", "E003"
GZ = ("下限=5284 上限=26421 养老=8/15 医疗=2/5.35 失业=0.2/0.8 工伤=0.2 "
      "来源=https://forvismazars.com/cn/en/insights/our-publications/accounting-outsourcing-newsletters/"
      "dec.-2024-social-insurance-base-of-2024")


async def hr_texts(chat: Chat) -> list[str]:
    return [m.text for m in await chat.emulator.store.history(HR) if m.kind == "text"]


async def to_hr_check(chat: Chat) -> str:
    started = await chat.send(HR, "/离职 张三 试用期 2025-07-31 绩效未达标 交接人:周八")
    assert started.ok, started
    case_id = started.data["case_id"]
    await chat.deliver()
    app = await chat.card(EMPLOYEE, step="application")
    assert (await chat.click(EMPLOYEE, app.card_id, "submit", {"last_working_day": "2025-07-31",
                                                                "reason": "试用期考核未通过"})).ok
    await chat.deliver()
    review = await chat.card(MANAGER, step="performance_review")
    assert (await chat.click(MANAGER, review.card_id, "approve", {"result": "完成率 60%"})).ok
    await chat.deliver()
    return case_id


async def test_city_without_any_table_named_in_chinese_then_rates_entered(chat: Chat) -> None:
    await Employee.filter(employee_id=EMPLOYEE).update(city="guangzhou")
    case_id = await to_hr_check(chat)
    check = await chat.card(HR, step="hr_check")
    reply = await chat.click(HR, check.card_id, "complete", {"unpaid_months": "2"})
    assert not reply.ok and reply.code == "backpay_blocked"
    await chat.deliver()
    texts = await hr_texts(chat)
    told = [t for t in texts if "没有社保费率表" in t]
    assert len(told) == 1, texts
    assert "广州 2025年5月至2025年6月 没有社保费率表（已有期间：无）" in told[0], told[0]
    assert f"/录入费率 {case_id} 2024-07至2025-06" in told[0], told[0]

    reason = "广州 2024 年度，按 Forvis 2024-12 通讯"
    answer = await chat.send(HR, f"/录入费率 {case_id} 2024-07至2025-06 {GZ} 原因：{reason}")
    assert answer.ok, answer
    entry = await AuditEntry.get(case_id=case_id, kind="backpay_rates_entered")
    assert entry.data["city"] == "guangzhou" and entry.data["city_zh"] == "广州"
    assert entry.data["table"]["items"]["pension"] == {"employee_rate": "0.08", "employer_rate": "0.15",
                                                       "employee_fixed": "0"}
    reply = await chat.click(HR, check.card_id, "complete", {"unpaid_months": "2"})
    assert reply.ok, reply
    await chat.deliver()
    # Base 5,284 (wage 5,000 below the floor): 422.72 + 105.68 + 10.568 → 10.57 = 538.97 a month; × 2.
    letter = await chat.card(EMPLOYEE, step="guarantee")
    assert letter.card is not None and "1,077.94 元" in str(letter.card.fields), letter.card.fields


@pytest.mark.parametrize(("tail", "words"), [
    (GZ.replace("来源=https", "出处=https"), "看不懂"),
    (GZ.replace(" 来源=https://forvismazars.com/cn/en/insights/our-publications/accounting-outsourcing-newsletters/"
                "dec.-2024-social-insurance-base-of-2024", ""), "缺少：来源"),
    (GZ.replace("上限=26421", "上限=5000"), "不低于下限"),
    (GZ.replace("养老=8/15", "养老=8"), "个人%/单位%"),
    (GZ.replace("养老=8/15", "养老=八/15"), "不是数字"),
    (GZ.replace("养老=8/15", "养老=8/15 养老=8/16"), "写了两次"),
    (GZ.replace("来源=https://", "来源=ftp://"), "网址"),
    (GZ.replace("来源=https://", "来源=https://x/<b>"), "网址"),
])
async def test_bad_rate_entries_change_nothing(chat: Chat, tail: str, words: str) -> None:
    case_id = await to_hr_check(chat)
    before = (await Case.get(id=case_id)).audit_seq
    answer = await chat.send(HR, f"/录入费率 {case_id} 2024-07至2025-06 {tail} 原因：测试")
    assert not answer.ok and words in answer.text, answer.text
    for text, why in ((f"/录入费率 {case_id} 2025-07至2024-06 {GZ} 原因：x", "期间"),
                      (f"/录入费率 {case_id} 2024-13至2025-06 {GZ} 原因：x", "期间"),
                      (f"/录入费率 {case_id} 2024-07至2025-06 {GZ} 原因：", "原因"),
                      (f"/录入费率 OB-NOPE22 2024-07至2025-06 {GZ} 原因：x", "找不到流程")):
        answer = await chat.send(HR, text)
        assert not answer.ok and why in answer.text, (text, answer.text)
    assert (await Case.get(id=case_id)).audit_seq == before
    assert not await AuditEntry.filter(case_id=case_id, kind="backpay_rates_entered").exists()
    # Only HR may enter rates (the employee's attempt is refused by the HR-only commands).
    answer = await chat.send(EMPLOYEE, f"/录入费率 {case_id} 2024-07至2025-06 {GZ} 原因：x")
    assert not answer.ok


async def test_redo_refused_once_the_letter_is_signed(chat: Chat) -> None:
    case_id = await to_hr_check(chat)
    assert (await chat.click(HR, (await chat.card(HR, step="hr_check")).card_id, "complete", {"unpaid_months": "2"})).ok
    # The signature itself is the signing page's business (tests/signing_flow); here only its event.
    service = chat.inbound.service
    emp = await Employee.get(employee_id=EMPLOYEE)
    roles = await service.roles_of(await Case.get(id=case_id), emp)
    assert Role.EMPLOYEE in roles
    out = await service.apply(case_id, lambda c, s: DocumentSigned("guarantee", "guarantee_letter", EMPLOYEE, roles,
                                                                   datetime.now(UTC)), actor=EMPLOYEE)
    assert out.ok
    before = (await Case.get(id=case_id)).audit_seq
    answer = await chat.send(HR, f"/重算 {case_id} 金额有误")
    assert not answer.ok and "已签署" in answer.text, answer.text
    assert (await Case.get(id=case_id)).audit_seq == before
    assert (await CaseStep.get(case_id=case_id, step_id="hr_check")).status == "done"
