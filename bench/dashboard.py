"""The HR dashboard's read cost: the overview (query, counts, HTML) with N open cases, and one case's
timeline, on SQLite. Prints milliseconds per page.

    .venv/bin/python -m bench.dashboard [open cases]      # default 1000 (or python bench/dashboard.py)
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

if __package__ in (None, ""):  # run as `python bench/X.py`: the project's root first, not bench/
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import org_csv, size
from bot.app import build_service
from config.settings import load_settings
from handlers.dashboard import overview as ov
from handlers.dashboard import pages
from handlers.dashboard.timeline import timeline
from storage import crypto
from storage.db import close_db, init_db, migrate
from storage.directory import import_csv
from storage.models import Employee

T0 = datetime.now(UTC)


async def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else size(1000, 40)
    data = Path(tempfile.mkdtemp(prefix="bench-dash-"))
    url = f"sqlite://{data}/bench.sqlite3"
    settings = load_settings(database_url=url, data_dir=data, secret_key="bench-secret-0123456789abcdef",
                             _env_file=None)
    await migrate(url)
    crypto.configure(settings.secret_bytes())
    await init_db(url)
    try:
        rows = [f"E{i},员工{i},部门{i % 7},p,M,,beijing,2025-01-01,,,5000,,," for i in range(n)]
        assert (await import_csv(org_csv(rows))).applied
        svc = build_service(settings)
        emps = {e.employee_id: e for e in await Employee.all()}
        types = ["probation", "resignation", "mutual", "misconduct"]
        first = ""
        for i in range(n):
            # Started over the last ten days: some overdue, some not.
            out = await svc.start_case(employee=emps[f"E{i}"], template_id=types[i % 4], last_day=None, reason="",
                                       created_by="H", handover_id="O", at=T0 - timedelta(hours=(i * 37) % 240))
            first = first or out.case_id
        view = pages.View("zh", ZoneInfo("Asia/Shanghai"), "人事（H）", "x" * 43)
        deps = sorted({f"部门{i % 7}" for i in range(n)})

        async def overview(filters: ov.Filters) -> str:
            found = await ov.rows(svc.templates, filters)
            counts = await ov.counts(svc.templates)
            return pages.overview(view, found, counts, filters, {k: t.title for k, t in svc.templates.items()}, deps)

        for label, filters in (("overview, all open", ov.Filters()), ("overview, one department", ov.Filters(
                department="部门3")), ("overview, search by name", ov.Filters(q="员工12"))):
            await overview(filters)  # warm
            runs = 5
            start = time.perf_counter()
            for _ in range(runs):
                html = await overview(filters)
            ms = (time.perf_counter() - start) / runs * 1000
            print(f"{label:28s} {ms:8.1f} ms/page   ({n} open cases, page {len(html) // 1024} KiB)")
        start = time.perf_counter()
        for _ in range(20):
            items = await timeline(first, svc.templates["probation"])
        print(f"{'one case timeline':28s} {(time.perf_counter() - start) / 20 * 1000:8.1f} ms   ({len(items)} items)")
    finally:
        await close_db()


if __name__ == "__main__":
    asyncio.run(main())
