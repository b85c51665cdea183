"""The employee's own /status, policy-true reminder and alert cards, and the chat fixes of issue 14:
/list and /status in words, OB-… always a case number, cancelled cases read cancelled, a past last
working day is warned about, the English UI, CLI output without library lines."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.timers import run_due
from cases.service import utcnow
from config.settings import Settings
from storage.models import AuditEntry, Case, CaseStep, Employee, OutboxMessage
from tests.chat.conftest import Chat, build_chat
from tests.conftest import PG_URL

START = "/离职 张三 试用期 2025-07-31 绩效未达标 交接人:周八"
BUNDLED = Path(__file__).resolve().parents[2] / "workflow" / "templates"
CJK = re.compile(r"[\u3400-\u9fff]")


async def _through_review(chat: Chat) -> str:
    reply = await chat.send("E001", START)
    assert reply.ok, reply.text
    await chat.deliver()
    r = await chat.click("E003", (await chat.card("E003", step="application")).card_id, "submit",
                         {"last_working_day": "2025-07-31", "reason": "个人原因"})
    assert r.ok, r.text
    await chat.deliver()
    r = await chat.click("E002", (await chat.card("E002", step="performance_review")).card_id, "approve",
                         {"result": "完成率 60%，要求 80%"})
    assert r.ok, r.text
    await chat.deliver()
    return reply.data["case_id"]


# ---- the employee's own view ---------------------------------------------------------------
async def test_employee_status_shows_done_next_why_deadline_and_locks(demo_org: Settings) -> None:
    # Tortoise's init sets TIMEZONE=UTC in the process environment, so settings loaded after it in
    # a test session read UTC; name the zone a real deployment runs with.
    chat = build_chat(demo_org.model_copy(update={"timezone": "Asia/Shanghai"}))
    case_id = await _through_review(chat)
    reply = await chat.send("E003", "/进度")
    assert reply.ok and reply.data["case_id"] == case_id, reply.text
    text = reply.text
    assert text.startswith(f"你的离职流程 {case_id} · 试用期不符合录用条件解除 · 进行中")
    assert "已完成（2/8）" in text
    assert re.search(r"✓ 1\. 确认收到解除通知并陈述意见 — 已由 张三 于 .+提交", text)
    assert re.search(r"✓ 2\. 部门负责人确认考核结果 — 已由 王五 于 .+批准", text)
    # Next: HR's check (someone else's) and the handover, which waits for the employee's signature.
    assert "● 3. HR 核对考勤与社保缴纳 — 由人事（HR）办理" in text
    assert "● 4. 工作交接双方签字 — 由你办理" in text
    assert "还差：离职员工签署《工作交接确认单》" in text
    assert "为什么：补缴金额按未缴月数计算" in text
    step3 = await CaseStep.get(case_id=case_id, step_id="hr_check")
    due = (step3.activated_at + timedelta(hours=48)).astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M")
    assert f"截止：{due}（北京时间）" in text
    # What is locked, and why.
    assert "🔒 5. 签署离职保证书 — 需先完成：第 3 步「HR 核对考勤与社保缴纳」" in text
    assert "🔒 6. 财务确认社保补缴 — 需先完成：第 5 步「签署离职保证书」" in text
    # Nothing is written for a look.
    assert not await AuditEntry.filter(case_id=case_id, kind__contains="status").exists()

    en = await chat.send("E003", "/status", lang="en")
    assert en.ok and "Done (2 of 8)" in en.text and "yours to do" in en.text and "waits for: step 3" in en.text
    # Their own case number is accepted; anything else is not theirs to look at.
    assert (await chat.send("E003", f"/进度 {case_id}")).ok
    for text_, user in ((f"/进度 {case_id}", "E002"), ("/进度 OB-ZZZZZZ", "E003"), ("/进度 张三", "E006")):
        r = await chat.send(user, text_)
        assert not r.ok and r.code == "forbidden" and case_id not in r.text, (text_, r.text)
    nobody = await chat.send("E007", "/进度")
    assert not nobody.ok and nobody.code == "no_case"
    # HR's /status is the case overview it always was.
    hr = await chat.send("E001", f"/状态 {case_id}")
    assert hr.ok and hr.text.startswith(f"流程 {case_id} · 张三（E003）") and "🔒 5." in hr.text


# ---- policy-true texts; alerts only for required steps -------------------------------------
@pytest.fixture
def company_templates(tmp_path: Path) -> Path:
    folder = tmp_path / "company_templates"
    folder.mkdir()
    probation = (BUNDLED / "probation.toml").read_text(encoding="utf-8")
    (folder / "probation.toml").write_text(probation.replace("alert_after_hours = 72", "alert_after_hours = 36"),
                                           encoding="utf-8")
    misconduct = (BUNDLED / "misconduct.toml").read_text(encoding="utf-8")
    (folder / "misconduct.toml").write_text(
        misconduct.replace("fallback_after_hours = 168", "fallback_after_hours = 120"), encoding="utf-8")
    return folder


async def test_alert_cards_state_the_templates_own_times(demo_org: Settings, company_templates: Path) -> None:
    chat = build_chat(demo_org.model_copy(update={"templates_dir": company_templates}))
    assert (await chat.send("E001", START)).ok
    t0 = utcnow()
    await run_due(chat.inbound.service, t0 + timedelta(hours=36, minutes=1))
    await chat.deliver(t0 + timedelta(hours=36, minutes=1))
    alert = await chat.card("E001", purpose="alert", step="application")
    assert "36 小时" in alert.card.body and "3 天" not in alert.card.body, alert.card.body
    # The reminder the employee got at 24 h states the step's own time limit.
    reminder = await chat.card("E003", purpose="reminder", step="application")
    assert "本步骤办理时限为开始后 1 天" in reminder.card.summary


async def test_fallback_card_days_and_no_alert_for_optional_steps(demo_org: Settings,
                                                                  company_templates: Path) -> None:
    chat = build_chat(demo_org.model_copy(update={"templates_dir": company_templates}))
    reply = await chat.send("E001", "/离职 张三 违纪 2025-07-31 严重违反考勤制度")
    assert reply.ok, reply.text
    case_id = reply.data["case_id"]
    t0 = utcnow()
    later = t0 + timedelta(hours=121)
    await run_due(chat.inbound.service, later)
    await chat.deliver(later)
    fallback = await chat.card("E001", purpose="fallback")
    assert "5 天" in fallback.card.body and "7 天" not in fallback.card.body, fallback.card.body
    alerted = [e.data["step_id"] for e in await AuditEntry.filter(case_id=case_id, kind="hr_alerted")]
    assert alerted == ["termination_notice"]  # employee_response is optional: no alert, ever
    held = await chat.cards("E001")
    assert not [m for m in held if m.card.purpose == "alert" and m.card.step_id == "employee_response"]
    # The optional step still reminds the employee.
    assert await AuditEntry.filter(case_id=case_id, kind="reminder_sent").count() >= 2


# ---- chat fixes ----------------------------------------------------------------------------
async def test_list_and_status_in_words(chat: Chat) -> None:
    case_id = await _through_review(chat)
    listing = await chat.send("E001", "/list")
    line = next(ln for ln in listing.text.splitlines() if case_id in ln)
    assert "张三（E003）" in line and "试用期不符合录用条件解除" in line
    assert "第 3 步 HR 核对考勤与社保缴纳" in line and "第 4 步 工作交接双方签字" in line
    assert not re.search(r"\b(probation|hr_check|handover)\b", listing.text), listing.text
    en = await chat.send("E001", "/list", lang="en")
    assert "Probation termination (performance)" in en.text and "step 3 HR checks attendance" in en.text
    status = await chat.send("E001", "/状态")  # no argument: the same list
    assert "第 3 步 HR 核对考勤与社保缴纳" in status.text and "hr_check" not in status.text
    one = await chat.send("E001", f"/status {case_id}")
    assert "— 张三 " in one.text and "— 王五 " in one.text and "E002" not in one.text.split("\n", 1)[1]


@pytest.mark.parametrize("text", ["/remind OB-NOPE", "/催办 ob-nope", "/status OB-NOPE", "/cancel OB-12 原因"])
async def test_a_case_number_that_does_not_exist_is_said_so(chat: Chat, text: str) -> None:
    assert (await chat.send("E001", START)).ok
    before = (await OutboxMessage.all().count(), await AuditEntry.all().count())
    reply = await chat.send("E001", text)
    assert not reply.ok and reply.code == "unknown_case" and "找不到流程" in reply.text, reply.text
    assert "通讯录" not in reply.text
    assert (await OutboxMessage.all().count(), await AuditEntry.all().count()) == before


async def test_cancelled_case_cards_say_cancelled(chat: Chat) -> None:
    case_id = await _through_review(chat)
    assert (await chat.send("E001", f"/催办 {case_id}")).ok
    await chat.deliver()
    assert (await chat.card("E003", purpose="reminder", step="handover")).card.title.startswith("提醒：")
    assert (await chat.send("E001", f"/取消 {case_id} 员工撤回申请")).ok
    await chat.deliver()
    # A reminder already delivered stops urging once the case is cancelled.
    reminder = (await chat.card("E003", purpose="reminder", step="handover")).card
    assert not reminder.title.startswith("提醒") and "尽快" not in reminder.summary
    assert reminder.status == "流程已取消" and reminder.tone == "closed" and not reminder.buttons
    summary = await chat.card("E001", purpose="summary")
    assert "进行中" not in summary.card.body and "已取消" in summary.card.summary
    assert "✗ 3. HR 核对考勤与社保缴纳（人事（HR）） — 已取消" in summary.card.body
    for user, step in (("E001", "hr_check"), ("E003", "handover"), ("E003", "application")):
        card = (await chat.card(user, step=step)).card
        assert "进行中" not in card.status and "等待" not in card.status
        if step != "application":
            assert card.status == "流程已取消" and not card.buttons
    status = await chat.send("E001", f"/status {case_id}")
    assert "· 已取消" in status.text and "● " not in status.text
    assert "✗ 3. HR 核对考勤与社保缴纳 — 已取消" in status.text
    own = await chat.send("E003", "/进度")
    assert own.text.startswith(f"你的离职流程 {case_id} · 试用期不符合录用条件解除 · 已取消")


async def test_a_past_last_working_day_is_warned_about(chat: Chat) -> None:
    today = utcnow().astimezone(chat.settings.tz).date()
    past = await chat.send("E001", f"/离职 张三 试用期 {today - timedelta(days=1)} 交接人:周八")
    assert past.ok and past.data["warnings"] == ["last_day_past"]
    assert f"最后工作日 {today - timedelta(days=1)} 已经过去" in past.text
    assert (await Case.get(id=past.data["case_id"])).status == "open"  # a warning, not a refusal
    await Employee.create(employee_id="E201", name="孙三", manager_id="E002")
    future = await chat.send("E001", f"/offboard E201 resignation {today + timedelta(days=30)} handover:E006",
                             lang="en")
    assert future.ok and future.data["warnings"] == [] and "already past" not in future.text
    today_ = await chat.send("E001", f"/offboard E007 resignation {today} handover:E006", lang="en")
    assert today_.ok and today_.data["warnings"] == []


# ---- English UI ----------------------------------------------------------------------------
async def test_english_ui_has_no_chinese_labels(demo_org: Settings) -> None:
    chat = build_chat(demo_org.model_copy(update={"language": "en"}))
    reply = await chat.send("E001", "/offboard E003 probation 2025-07-31 missed targets handover:E006")
    assert reply.ok and not CJK.search(reply.text.replace("张三", "")), reply.text
    case_id = reply.data["case_id"]
    await chat.deliver()
    assert (await chat.click("E003", (await chat.card("E003", step="application")).card_id, "submit",
                             {"last_working_day": "2025-07-31", "reason": "personal"})).ok
    assert (await chat.click("E003", (await chat.card("E003", step="application")).card_id, "ask",
                             {"question": "Is the guarantee letter required?"})).ok
    await chat.deliver()
    assert (await chat.click("E001", (await chat.card("E001", purpose="question")).card_id, "answer",
                             {"answer": "Yes, it is a required step."})).ok
    assert (await chat.send("E001", f"/remind {case_id}")).ok
    await chat.deliver()
    t0 = utcnow()
    await run_due(chat.inbound.service, t0 + timedelta(hours=200))
    await chat.deliver(t0 + timedelta(hours=200))
    replies = [await chat.send("E003", "/status"), await chat.send("E001", "/list"),
               await chat.send("E001", f"/status {case_id}"), await chat.send("E003", "/help")]
    assert (await chat.send("E001", f"/cancel {case_id} withdrawn")).ok
    await chat.deliver()
    # Directory data (names, departments) is whatever the company typed; everything else is ours.
    people = await Employee.all()
    names = [e.name for e in people] + [e.department for e in people]
    seen = 0
    for user in ("E001", "E002", "E003", "E006"):
        for m in (await chat.cards(user)):
            c = m.card.to_dict()
            texts = [c["title"], c["summary"], c["body"], c["status"], c["progress"],
                     *(f["label"] for f in c["fields"]), *(f["value"] for f in c["fields"]),
                     *(b["label"] for b in c["buttons"]), *(b["reason"] or "" for b in c["buttons"]),
                     *(f["label"] for b in c["buttons"] for f in b["form"])]
            for text in texts:
                for name in names:
                    text = text.replace(name, "") if name else text
                assert not CJK.search(text), (c["purpose"], c["step_id"], text)
            seen += 1
    assert seen >= 10
    for r in replies:
        text = r.text
        for name in names:
            text = text.replace(name, "") if name else text
        assert not CJK.search(text), r.text


def test_emulator_page_in_english() -> None:
    from bot.platforms.emulator import page_text

    en = page_text("page.html", "en")
    assert re.findall(r"[\u3400-\u9fff]+", en) == ["中文"]  # the language picker names Chinese in Chinese
    assert '<option value="en" selected>English</option>' in en and "<button>Send</button>" in en
    assert "<button>发送</button>" in page_text("page.html", "zh")
    assert "${p.name} (${p.employee_id}" in page_text("emulator.js", "en")


# ---- the CLI prints only its own output ----------------------------------------------------
@pytest.mark.skipif(bool(PG_URL), reason="uses its own SQLite file")
def test_cli_prints_its_own_output_only(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": f"sqlite://{tmp_path}/bot.sqlite3",
           "DATA_DIR": str(tmp_path / "data"), "LOG_LEVEL": "INFO"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bot", *args], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)

    migrated = run("migrate")
    assert migrated.returncode == 0 and migrated.stdout == "migrations applied to sqlite database\n"
    assert migrated.stderr == "", migrated.stderr
    listed = run("cases", "list")
    assert listed.returncode == 0 and listed.stdout == "no open cases\n" and listed.stderr == "", listed.stderr
