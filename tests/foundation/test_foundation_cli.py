"""The run contract: migrate, demo organisation, `cases list`, `/healthz`, `--help` everywhere."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import PG_URL


def _env(tmp_path: Path, url: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "DATABASE_URL": url, "DATA_DIR": str(tmp_path / "data"), "LOG_LEVEL": "WARNING"}


def _run(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("args", [[], ["serve"], ["migrate"], ["directory", "import"], ["cases", "list"],
                                  ["calc", "compensation"], ["verify"]])
def test_help_on_every_command(tmp_path: Path, args: list[str]) -> None:
    r = _run(_env(tmp_path, "sqlite://x.sqlite3"), *args, "--help", cwd=tmp_path)
    assert r.returncode == 0 and "usage:" in r.stdout


@pytest.mark.skipif(bool(PG_URL), reason="uses its own SQLite file; the PostgreSQL suite covers the service")
def test_serve_demo_healthz_and_cases_list(tmp_path: Path) -> None:
    env = _env(tmp_path, f"sqlite://{tmp_path}/bot.sqlite3")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env["HTTP_PORT"] = str(port)
    proc = subprocess.Popen([sys.executable, "-m", "bot", "serve", "--migrate", "--demo"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        body = ""
        for _ in range(150):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                    body = resp.read().decode()
                    break
            except OSError:
                time.sleep(0.2)
        assert '"ok"' in body
        listed = _run(env, "cases", "list", cwd=tmp_path)
        assert listed.returncode == 0
        lines = [ln for ln in listed.stdout.splitlines() if ln.startswith("OB-")]
        assert len(lines) == 1 and "E003" in lines[0] and "张三" in lines[0] and "application" in lines[0]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    # Restarting with --demo again does not start a second case.
    proc = subprocess.run([sys.executable, "-m", "bot", "migrate"], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0


async def test_demo_is_idempotent_and_goes_through_the_router(db) -> None:
    from bot.demo import load_demo
    from storage.db import init_db
    from storage.models import Case, OutboxMessage

    await load_demo(db)
    await load_demo(db)
    await init_db(db.database_url)  # load_demo closed the connection it opened
    cases = await Case.all()
    assert len(cases) == 1 and cases[0].handover_id == "E006"
    recipients = set(await OutboxMessage.filter(case_id=cases[0].id).values_list("recipient", flat=True))
    assert {"E001", "E003"} <= recipients  # HR summary card and the employee's first step


async def test_list_cases_overdue_first(db) -> None:
    from datetime import UTC, datetime, timedelta

    from bot.app import build_service
    from handlers.queries import list_cases
    from storage.directory import import_csv
    from storage.models import Employee
    from tests.conftest import DEMO_CSV

    assert (await import_csv(DEMO_CSV.read_text(encoding="utf-8"))).applied
    svc = build_service(db)
    t0 = datetime(2025, 7, 1, tzinfo=UTC)
    recent = await svc.start_case(employee=await Employee.get(employee_id="E007"), template_id="resignation",
                                  last_day=None, reason="", created_by="E001", at=t0 + timedelta(hours=20))
    old = await svc.start_case(employee=await Employee.get(employee_id="E003"), template_id="probation",
                               last_day=None, reason="", created_by="E001", at=t0)
    rows = await list_cases(templates=svc.templates, now=t0 + timedelta(hours=30))
    assert [r.case_id for r in rows] == [old.case_id, recent.case_id]
    assert rows[0].overdue and not rows[1].overdue  # application's deadline is 24 h
    assert "OVERDUE" in list(rows[0])


async def test_list_cases_counts_a_business_day_deadline_as_the_cards_do(db) -> None:
    """A flow that counts working days: a step opened on Friday evening is not overdue on Saturday
    (its deadline is Monday evening), as its cards and reminders say; 24 clock hours would flag it."""
    import tomllib
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    from cases.service import CaseService
    from handlers.queries import list_cases
    from storage.directory import import_csv
    from storage.models import Employee
    from tests.conftest import DEMO_CSV
    from workflow.schema import compile_template
    from workflow.templates import BUNDLED_DIR

    assert (await import_csv(DEMO_CSV.read_text(encoding="utf-8"))).applied
    raw = tomllib.loads((BUNDLED_DIR / "probation.toml").read_text(encoding="utf-8"))
    raw["policy"]["business_days"] = True
    svc = CaseService({"probation": compile_template(raw)})
    friday = datetime(2026, 12, 4, 18, tzinfo=ZoneInfo("Asia/Shanghai")).astimezone(UTC)
    out = await svc.start_case(employee=await Employee.get(employee_id="E003"), template_id="probation",
                               last_day=None, reason="", created_by="E001", at=friday)
    saturday_night = friday + timedelta(hours=26)
    (row,) = await list_cases(templates=svc.templates, now=saturday_night)
    assert row.case_id == out.case_id and not row.overdue
    (row,) = await list_cases(templates=svc.templates, now=friday + timedelta(days=3, hours=1))  # Monday 19:00
    assert row.overdue
    # The dashboard counts and lists it the same way.
    from handlers.dashboard import overview

    assert (await overview.counts(svc.templates, now=saturday_night)).overdue == 0
    (shown,) = await overview.rows(svc.templates, overview.Filters(), now=saturday_night)
    assert not shown.overdue and shown.deadline == friday + timedelta(days=3)  # Monday 18:00
    assert (await overview.counts(svc.templates, now=friday + timedelta(days=3, hours=1))).overdue == 1
