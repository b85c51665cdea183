"""The demo organisation for `make run`: a small directory and an open case to look at.

The demo case is started by typing the same command HR would type, through the same router,
so it gets everything a real case gets (HR summary card, employee card, timers, audit).
"""

from __future__ import annotations

from importlib import resources

from bot.app import build_service
from bot.inbound import Inbound, build_router
from bot.runtime import database
from chat.router import Incoming
from config.settings import Settings
from storage.directory import import_csv
from storage.models import Case, Employee

# (HR who types it, the command)
DEMO_COMMANDS = [
    ("E001", "/离职 E003 试用期 2025-07-31 试用期绩效未达标（完成率60%，要求80%） 交接人:E006"),
]


async def load_demo(settings: Settings) -> None:
    text = resources.files("bot").joinpath("demo_data/org.csv").read_text(encoding="utf-8")
    async with database(settings):
        report = await import_csv(text)
        if not report.applied:
            raise RuntimeError("demo directory is invalid: " + "; ".join(map(str, report.errors)))
        inbound = Inbound(build_router(), settings, build_service(settings))
        for sender, command in DEMO_COMMANDS:
            employee_id = command.split()[1]
            emp = await Employee.get(employee_id=employee_id)
            if await Case.filter(employee_id=emp.id).exists():
                continue  # idempotent across restarts
            reply = await inbound.handle(Incoming(platform="emulator", sender=sender, kind="text",
                                                  payload={"text": command}, dedup_key=f"demo:{employee_id}"))
            if not reply.ok:
                raise RuntimeError(f"demo case for {employee_id} was refused: {reply.text}")
    print(f"demo organisation loaded ({report.created + report.updated} people)")
