"""Directory sync from a fake WeCom into the real database: platform fields refreshed, HR's kept."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import aiohttp
from aiohttp.test_utils import TestServer

from bot.platforms.wecom.api import WeComAPI
from bot.platforms.wecom.directory import fetch_people
from storage.models import Employee
from storage.people_sync import sync_people
from tests.platforms.wecom.fake_wecom import AGENT_ID, CORP_ID, SECRET, FakeWeCom

USERS = {
    "lina": {"userid": "lina", "name": "李娜", "department": [2], "main_department": 2, "position": "HRBP",
             "direct_leader": []},
    "zhangsan": {"userid": "zhangsan", "name": "张三（新）", "department": [3], "main_department": 3,
                 "position": "高级销售", "direct_leader": ["wangwu"]},
    "wangwu": {"userid": "wangwu", "name": "王五", "department": [3, 2], "main_department": 3, "position": "销售总监",
               "direct_leader": []},
    "bad\u0000id": {"userid": "bad\u0000id", "name": "坏", "department": [3], "direct_leader": []},
}


async def _sync(fake: FakeWeCom) -> tuple[object, list[tuple[int, int]]]:
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    steps: list[tuple[int, int]] = []
    try:
        async with aiohttp.ClientSession() as session:
            api = WeComAPI(session, base_url=str(server.make_url("/")).rstrip("/"), corp_id=CORP_ID, secret=SECRET,
                           agent_id=AGENT_ID)
            people = await fetch_people(api, progress=lambda i, n: steps.append((i, n)))
    finally:
        await server.close()
    return await sync_people("wecom_userid", people), steps


async def test_sync_creates_updates_and_keeps_hr_fields(db) -> None:  # type: ignore[no-untyped-def]
    await Employee.create(employee_id="E003", name="张三", wecom_userid="zhangsan", hire_date=date(2025, 5, 6),
                          monthly_wage=Decimal("5000.00"), city="beijing", roles="")
    await Employee.create(employee_id="E001", name="李娜", wecom_userid="lina", roles="hr", department="人力资源部",
                          position="HRBP")
    fake = FakeWeCom(users=USERS)
    report, steps = await _sync(fake)
    assert (report.created, report.updated, report.unchanged) == (1, 2, 0)  # type: ignore[attr-defined]
    assert any("bad" in s and "employee id" in s for s in report.skipped)  # type: ignore[attr-defined]
    assert steps[-1] == (2, 2)
    zhang = await Employee.get(employee_id="E003")
    assert (zhang.name, zhang.department, zhang.position) == ("张三（新）", "部门3", "高级销售")
    assert zhang.manager_id == "wangwu"  # the leader's employee id (new, so their user id)
    assert zhang.monthly_wage == Decimal("5000.00") and zhang.hire_date == date(2025, 5, 6)  # HR's, kept
    assert zhang.city == "beijing"
    wang = await Employee.get(employee_id="wangwu")
    assert wang.wecom_userid == "wangwu" and wang.department == "部门3" and wang.manager_id is None
    lina = await Employee.get(employee_id="E001")
    assert lina.roles == "hr" and lina.department == "部门2"
    # A second run changes nothing.
    report, _ = await _sync(fake)
    assert (report.created, report.updated, report.unchanged) == (0, 0, 3)  # type: ignore[attr-defined]


async def test_a_user_id_that_is_someone_elses_employee_id_is_skipped(db) -> None:  # type: ignore[no-untyped-def]
    await Employee.create(employee_id="wangwu", name="另一个王五")
    report, _ = await _sync(FakeWeCom(users={"wangwu": USERS["wangwu"]}))
    assert report.created == 0 and report.skipped == ["wangwu: employee id already used by someone else"]  # type: ignore[attr-defined]
    assert (await Employee.get(employee_id="wangwu")).name == "另一个王五"
