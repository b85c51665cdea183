"""The demo organisation for `make run`: a small directory and two open cases to look at."""

from __future__ import annotations

from datetime import date
from importlib import resources

from bot.runtime import database
from bot.settings import Settings
from storage.directory import import_csv
from storage.models import Case, Employee

# (employee, template, last day, reason, handover colleague)
DEMO_CASES = [
    ("E003", "probation", date(2025, 7, 31), "试用期绩效未达标（完成率 60%，要求 80%）", "E006"),
]


async def load_demo(settings: Settings) -> None:
    from bot.app import build_service

    text = resources.files("bot").joinpath("demo_data/org.csv").read_text(encoding="utf-8")
    async with database(settings):
        report = await import_csv(text)
        if not report.applied:
            raise RuntimeError("demo directory is invalid: " + "; ".join(map(str, report.errors)))
        service = build_service(settings)
        for emp_id, template, last_day, reason, handover in DEMO_CASES:
            emp = await Employee.get(employee_id=emp_id)
            if await Case.filter(employee_id=emp.id).exists():
                continue
            await service.start_case(employee=emp, template_id=template, last_day=last_day, reason=reason,
                                     created_by="E001", handover_id=handover)
    print(f"demo organisation loaded ({report.created + report.updated} people)")
