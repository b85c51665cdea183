"""`python -m bot directory sync --platform dingtalk` against the fake, and the month's API use in
`cases list` and HR's `/help`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from pydantic import SecretStr

from bot.inbound import Inbound, build_router
from bot.platforms.dingtalk.config import load
from bot.platforms.dingtalk.connector import DingTalkConnector
from cases.service import CaseService
from chat.connector import ConnectorEnv
from chat.router import Incoming
from config.settings import Settings
from storage import usage
from storage.models import Employee
from tests.platforms.dingtalk.fake import CLIENT_ID, CLIENT_SECRET, FakeDingTalk, bot_frame
from workflow.templates import load_templates

ROOT = Path(__file__).resolve().parents[3]


def _cli(settings: Settings, fake: FakeDingTalk | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DATABASE_URL": settings.database_url,
           "DATA_DIR": str(settings.data_dir), "SECRET_KEY": "test-secret-key-0123456789", "LOG_LEVEL": "WARNING"}
    if fake is not None:
        env.update(DINGTALK_CLIENT_ID=CLIENT_ID, DINGTALK_CLIENT_SECRET=CLIENT_SECRET,
                   DINGTALK_CARD_TEMPLATE_ID="t.schema", DINGTALK_API_BASE=fake.base, DINGTALK_OAPI_BASE=fake.base)
    return subprocess.run([sys.executable, "-m", "bot", *args], env=env, cwd=settings.data_dir, capture_output=True,
                          text=True, timeout=120)


async def test_directory_sync_upserts_people_and_managers(fake: FakeDingTalk, db: Settings) -> None:
    # Someone HR imported already, known by the DingTalk userid: only platform-owned fields change.
    await Employee.create(employee_id="E100", name="旧名字", dingtalk_userid="mgr001", roles="hr", city="北京")
    r = await asyncio.to_thread(_cli, db, fake, "directory", "sync", "--platform", "dingtalk")
    assert r.returncode == 0, r.stderr
    assert "synced from dingtalk: 1 created, 1 updated, 0 unchanged, 0 skipped" in r.stdout
    assert "fetched 2 people from dingtalk" in r.stderr and "syncing 2/2" in r.stderr
    emp = await Employee.get(dingtalk_userid="emp001")
    assert (emp.employee_id, emp.name, emp.position, emp.department, emp.manager_id) == \
        ("emp001", "李四", "工程师", "后端组", "E100")
    mgr = await Employee.get(employee_id="E100")
    assert (mgr.name, mgr.roles, mgr.city) == ("王五", "hr", "北京")  # HR's fields untouched
    again = await asyncio.to_thread(_cli, db, fake, "directory", "sync", "--platform", "dingtalk")
    assert "0 created, 0 updated, 2 unchanged" in again.stdout


async def test_directory_sync_refuses_clearly(db: Settings) -> None:
    r = await asyncio.to_thread(_cli, db, None, "directory", "sync", "--platform", "dingtalk")
    assert r.returncode == 2 and "DINGTALK_CLIENT_SECRET" in r.stderr and "Traceback" not in r.stderr
    r = await asyncio.to_thread(_cli, db, None, "directory", "sync", "--platform", "emulator")
    assert r.returncode == 2 and "offers no directory" in r.stderr


async def test_month_usage_in_cases_list_and_hr_help(demo_org: Settings) -> None:
    await usage.record("dingtalk", 8123, 10_000)
    r = await asyncio.to_thread(_cli, demo_org, None, "cases", "list")
    assert r.returncode == 0 and "dingtalk 本月" in r.stdout and "8,123 / 10,000（81%）" in r.stdout
    inbound = Inbound(build_router(), demo_org, CaseService(load_templates([])))
    hr = await inbound.handle(Incoming("emulator", "E001", "text", {"text": "/help"}, "emulator:h1"))
    assert "8,123 / 10,000" in hr.text
    other = await inbound.handle(Incoming("emulator", "E003", "text", {"text": "/help"}, "emulator:h2"))
    assert "10,000" not in other.text


async def test_an_unknown_sender_in_the_dingtalk_org_is_added_and_answered(fake: FakeDingTalk,
                                                                           demo_org: Settings) -> None:
    inbound = Inbound(build_router(), demo_org, CaseService(load_templates([])))
    s = load(None, client_id=CLIENT_ID, client_secret=SecretStr(CLIENT_SECRET), card_template_id="t.schema",
             api_base=fake.base, oapi_base=fake.base)
    conn = DingTalkConnector(s, ConnectorEnv("http://127.0.0.1:8080", "zh"))
    await conn.start(inbound.dispatch)
    try:
        await asyncio.to_thread(fake.wait_connections, 1)
        fake.push(bot_frame("u1", "/help", sender="emp001", webhook=fake.session_webhook))
        await asyncio.to_thread(fake.wait_ack, "u1")
        await asyncio.to_thread(fake.wait_for, lambda: len(fake.session_replies) == 1)
        assert "离职助手会把需要你处理的事项" in fake.session_replies[0]["text"]["content"]  # answered, not refused
        emp = await Employee.get(dingtalk_userid="emp001")
        assert (emp.name, emp.position, emp.roles) == ("李四", "工程师", "")  # no role from DingTalk
        # Someone DingTalk does not know either is refused.
        fake.push(bot_frame("u2", "/help", sender="ghost", webhook=fake.session_webhook))
        await asyncio.to_thread(fake.wait_for, lambda: len(fake.session_replies) == 2)
        assert "不在公司通讯录中" in fake.session_replies[1]["text"]["content"]
        assert not await Employee.filter(dingtalk_userid="ghost").exists()
    finally:
        await conn.stop()
