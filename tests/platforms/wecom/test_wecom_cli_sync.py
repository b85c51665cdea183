"""`python -m bot directory sync --platform wecom` as a process, against a fake WeCom on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from aiohttp.test_utils import TestServer

from config.settings import Settings
from storage.models import Employee
from tests.platforms.wecom.fake_wecom import FakeWeCom
from tests.platforms.wecom.rig import settings_for

ROOT = Path(__file__).resolve().parents[3]
USERS = {
    "zhangsan": {"userid": "zhangsan", "name": "张三", "department": [3], "main_department": 3,
                 "position": "销售代表", "direct_leader": ["wangwu"]},
    "wangwu": {"userid": "wangwu", "name": "王五", "department": [3], "main_department": 3, "position": "销售总监",
               "direct_leader": []},
}


async def _run(settings: Settings, extra: dict[str, str]) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WECOM_")}
    env.update({k.upper(): str(v) for k, v in extra.items()})
    env.update({"DATABASE_URL": settings.database_url, "DATA_DIR": str(settings.data_dir),
                "SECRET_KEY": settings.secret_bytes().decode(), "PLATFORMS": "wecom"})
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "directory", "sync", "--platform", "wecom",
                                                cwd=settings.data_dir, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_sync_command_upserts_and_reports(db: Settings) -> None:
    await Employee.create(employee_id="E003", name="张三", wecom_userid="zhangsan", monthly_wage="5000.00")
    fake = FakeWeCom(users=USERS)
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    try:
        base = str(server.make_url("/")).rstrip("/")
        code, out, err = await _run(db, settings_for(base))
        assert code == 0, err
        assert "synced from wecom: 1 created, 1 updated, 0 unchanged, 0 skipped" in out
        assert "fetched 2 people from wecom" in err and "2/2" in err  # progress, then the summary
        zhang = await Employee.get(employee_id="E003")
        assert (zhang.position, zhang.manager_id, str(zhang.monthly_wage)) == ("销售代表", "wangwu", "5000.00")
        code, out, _ = await _run(db, settings_for(base))
        assert code == 0 and "0 created, 0 updated, 2 unchanged" in out
        # Missing settings: one line naming them, nothing changed.
        code, out, err = await _run(db, {"wecom_corp_id": "ww1"})
        assert code == 2 and "WECOM_AGENT_ID" in err and len(err.strip().splitlines()) == 1
        # A wrong secret: WeCom's 40001 with the fix, nothing changed.
        code, out, err = await _run(db, settings_for(base, wecom_secret="wrongSecretXYZ123"))
        assert code == 1 and "40001" in err and "WECOM_SECRET" in err and "wrongSecretXYZ123" not in err
    finally:
        await server.close()
    assert await Employee.all().count() == 2
