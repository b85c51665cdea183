"""The whole Case B over a fake WeCom, as in the emulator: HR's command as an encrypted callback, every
card through the real relay and the WeCom connector (bodies asserted), clicks as encrypted
`template_card_event`s whose ResponseCode updates the clicker's card in place, the other holders'
cards updated too, each signature on the signing page opened from the card's link after WeCom OAuth
against the fake; and 25 reminders to one person in a minute, all delivered, none over WeCom's quota."""

from __future__ import annotations

from bot.platforms.wecom.connector import card_id_of
from storage.models import Case, CaseStep, OutboxMessage, Signature
from tests.platforms.wecom.fake_wecom import AGENT_ID
from tests.platforms.wecom.harness import WeComCase
from tests.platforms.wecom.rig import text_xml

START = "/离职 张三 试用期 2025-07-31 绩效未达标 交接人:周八"


async def test_case_b_end_to_end_over_wecom(wcase: WeComCase) -> None:
    w = wcase
    # HR types the command in WeCom: one encrypted callback, a case, and HR told so.
    assert await w.rig.callback(text_xml("lina", START)) == (200, "")
    case = await Case.get()
    await w.deliver()
    told = [m for m in w.fake.sent if m["msgtype"] == "text" and m["touser"] == "lina"]
    assert told and "张三" in told[0]["text"]["content"]
    # The cards, as WeCom received them.
    app_id, app_card = await w.card("E003", "application")
    assert app_card["task_id"] == app_id and app_card["main_title"]["title"]
    sent_to = {m["touser"] for m in w.fake.sent if m["msgtype"] == "template_card"}
    assert {"zhangsan", "lina"} <= sent_to
    summary_id, summary = await w.card("E001", purpose="summary")
    assert summary["card_type"] == "button_interaction" and "OB-" in summary["main_title"]["title"] + str(summary)
    assert all(m["agentid"] == AGENT_ID for m in w.fake.sent)

    # The steps that ask for text go through their web form; the cards follow.
    await w.submit_form("E003", app_id, "submit", {"last_working_day": "2025-07-31", "reason": "试用期考核未通过"})
    await w.deliver()
    review_id, review = await w.card("E002", "performance_review")
    assert "绩效未达标" in str(review)
    await w.submit_form("E002", review_id, "approve", {"result": "完成率 60%，要求 80%"})
    await w.deliver()
    check_id, _ = await w.card("E001", "hr_check")
    await w.submit_form("E001", check_id, "complete", {"unpaid_months": "2"})
    await w.deliver()
    _, app_now = await w.card("E003", "application")
    assert "已由 张三" in app_now.get("sub_title_text", "")  # the employee's first card shows it is done

    # Every signature from the card's link, the signer confirmed by WeCom OAuth.
    await w.sign("E003", "guarantee")
    await w.deliver()
    await w.sign("E003", "handover")
    await w.deliver()
    await w.sign("E006", "handover")  # the receiving colleague signs the same sheet
    await w.deliver()
    backpay_id, _ = await w.card("E004", "backpay")
    await w.submit_form("E004", backpay_id, "confirm", {"payment_reference": "PAY-2025-0001"})
    await w.deliver()
    await w.sign("E003", "separation_certificate")
    await w.deliver()
    await w.sign("E003", "rights_notice")
    await w.deliver()
    assert {s.platform_identity for s in await Signature.all()} == {"wecom:zhangsan", "wecom:zhouba"}
    assert {s.identity_method for s in await Signature.all()} == {"wecom_oauth"}

    # The last step is a plain button: a real click, its ResponseCode updates the card in place.
    ack_id, ack = await w.card("E003", "rights_notice")
    assert ack["card_type"] == "button_interaction" and any(b.get("key") == "acknowledge" for b in ack["button_list"])
    summary_updates_before = sum(1 for u in w.fake.updates if card_id_of(u["template_card"]["task_id"]) == summary_id)
    code = await w.click("E003", ack_id, "acknowledge")
    await w.deliver()
    mine = [u for u in w.fake.updates if u["response_code"] == code]
    assert len(mine) == 1 and mine[0]["userids"] == ["zhangsan"]
    assert card_id_of(mine[0]["template_card"]["task_id"]) == ack_id
    # HR's summary never changes on WeCom (without a click's code an update is a fresh card that
    # rings HR's phone): it links to the live page; the case's end reaches HR as its own card.
    assert sum(1 for u in w.fake.updates if card_id_of(u["template_card"]["task_id"]) == summary_id) + \
        sum(1 for m in w.fake.sent if m.get("template_card", {}).get("task_id", "").startswith(summary_id + "@@")) == \
        summary_updates_before == 0
    _, hr_done = await w.card("E001", purpose="completion")
    assert hr_done["main_title"]["title"].startswith("离职完成")
    assert (await Case.get(id=case.id)).status == "completed"
    assert await CaseStep.filter(case_id=case.id, status="done").count() >= 8
    # Nothing failed, nothing went twice, nobody over WeCom's per-member quota.
    assert not await OutboxMessage.filter(status="failed").exists()
    tasks = [m["template_card"]["task_id"] for m in w.fake.sent if m["msgtype"] == "template_card"]
    assert len(tasks) == len(set(tasks)) and w.fake.dropped == []


async def test_twenty_five_reminders_to_one_person_in_a_minute(wcase: WeComCase) -> None:
    w = wcase
    assert await w.rig.callback(text_xml("lina", START)) == (200, "")
    await w.deliver()
    case = await Case.get()
    before = len([m for m in w.fake.sent if m["touser"] == "zhangsan"])
    for _ in range(25):
        assert await w.rig.callback(text_xml("lina", f"/remind {case.id}")) == (200, "")
    await w.deliver()
    to_him = [m for m in w.fake.sent if m["touser"] == "zhangsan"]
    assert len(to_him) - before == 25  # every reminder reached him, at once
    # Nobody got more than WeCom takes: nothing was dropped silently. HR, told 25 times "reminded"
    # and shown a refreshed summary each time, reached the quota: the rest of HR's refreshes wait,
    # pending with the reason, for the window to free; none failed.
    assert w.fake.dropped == [] and not await OutboxMessage.filter(status="failed").exists()
    waiting = await OutboxMessage.filter(status="pending")
    assert {r.recipient for r in waiting} <= {"E001"} and all("quota" in (r.last_error or "") for r in waiting)
