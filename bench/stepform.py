"""A step's web form over loopback: what the page costs a WeCom holder, against a tap on the card.

For N employees on WeCom (cards hold no text input) a probation case is opened and its cards are
delivered; then for each employee, timed one at a time on the real application's routes:
- GET  /view/<token>   the details page (its first opening records the step viewed: one transaction)
- GET  /form/<token>   the form page (link checks, the card rendered for its holder, the form)
- POST /form/<token>   the submission (origin and double-submit checks, the link claimed, the router's
                       full path: hygiene, dedup, holder, form validation, one transaction, link used)
and, on a second set of cases, the same submission as a tap on the card (the event the WeCom callback
hands the router), so the form's own overhead shows. Server and client share one event loop here:
the figures compare paths, they are not a capacity.

    .venv/bin/python bench/stepform.py [--employees 200] [--pg URL]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from datetime import date
from html import unescape
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

if __package__ in (None, ""):  # run as `python bench/X.py`: the project's root first, not bench/
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import size
from bot.app import build_service
from bot.inbound import Inbound, build_router
from bot.outbox import Relay
from bot.platforms.emulator import EmulatorConnector
from bot.platforms.wecom import WeComConnector
from chat import capabilities, presentation
from chat.appkeys import CONNECTORS, SERVICE, SETTINGS
from chat.connector import Capabilities, CardAction
from config.settings import load_settings
from handlers import signing_web, stepforms
from handlers.cardview import CardRenderer
from storage import cardids, crypto
from storage.db import close_db, init_db, migrate
from storage.directory import import_csv
from storage.models import Employee, OutboxMessage


class FakeWeCom(EmulatorConnector):
    """Cards kept as the emulator keeps them, under WeCom's name and with WeCom's card capabilities
    (but links opened without the platform's sign-in: a sign-in round trip is not what is timed)."""

    name = "wecom"
    capabilities = Capabilities(card_inputs=False, links_need_sign_in=False)
    presentation = WeComConnector.presentation


FORM = {"last_working_day": "2025-07-31", "reason": "收到通知，无异议"}


def directory_csv(n: int) -> str:
    lines = ["employee_id,name,department,position,manager_id,roles,city,hire_date,contract_start,contract_end,"
             "monthly_wage,dingtalk_userid,wecom_userid,phone",
             "H001,人事甲,人力资源部,HRBP,,hr,beijing,2019-03-01,2019-03-01,,18000.00,,wx_H001,",
             "M001,经理乙,销售部,总监,,,beijing,2018-03-01,2018-03-01,,30000.00,,wx_M001,"]
    lines += [f"B{i:05d},员工{i},销售部,销售代表,M001,,beijing,2025-05-06,2025-05-06,2028-05-05,5000.00,,wx_B{i:05d},"
              for i in range(n)]
    return "\n".join(lines) + "\n"


def ms(xs: list[float]) -> str:
    xs = sorted(xs)
    p90 = xs[min(len(xs) - 1, int(len(xs) * 0.90))]
    p99 = xs[min(len(xs) - 1, int(len(xs) * 0.99))]
    return (f"p50 {statistics.median(xs) * 1000:6.1f} ms   p90 {p90 * 1000:6.1f} ms   p99 {p99 * 1000:6.1f} ms   "
            f"(n={len(xs)})")


async def run(n: int, url: str, data: Path) -> None:
    settings = load_settings(database_url=url, data_dir=data, secret_key="bench-secret-key-0123456789",
                             platforms="wecom", _env_file=None)
    await migrate(url)
    crypto.configure(settings.secret_bytes())
    await init_db(url)
    try:
        report = await import_csv(directory_csv(2 * n))
        assert report.applied, report.errors
        service = build_service(settings)
        inbound = Inbound(build_router(), settings, service)
        wecom = FakeWeCom()
        renderer = CardRenderer(settings, service, capabilities.of_connectors({"wecom": wecom}),
                                channel=presentation.channel_of({"wecom": wecom}, ("wecom",)))
        relay = Relay({"wecom": wecom}, renderer.for_outbox, addresses=service.addresses)
        for i in range(2 * n):
            emp = await Employee.get(employee_id=f"B{i:05d}")
            await service.start_case(employee=emp, template_id="probation", last_day=date(2025, 7, 31),
                                     reason="绩效未达标", created_by="H001")
        t0 = time.perf_counter()
        while await relay.run_once():
            pass
        print(f"{2 * n} cases opened, cards delivered in {time.perf_counter() - t0:.1f} s")
        app = web.Application()
        app[SETTINGS], app[SERVICE], app[CONNECTORS] = settings, service, {"wecom": wecom}
        signing_web.setup(app)
        stepforms.setup(app, dispatch=inbound.dispatch)
        view_t, get_t, post_t, tap_t = [], [], [], []
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            for i in range(n):
                row = await OutboxMessage.get(recipient=f"B{i:05d}", step_id="application", kind="card")
                card = await relay.render(row)
                assert card is not None
                form = urlsplit(next(b.url for b in card.buttons if b.url and "/form/" in b.url)).path
                view = urlsplit(card.details_url).path
                t = time.perf_counter()
                resp = await client.get(view)
                await resp.read()
                view_t.append(time.perf_counter() - t)
                t = time.perf_counter()
                resp = await client.get(form)
                page = await resp.text()
                get_t.append(time.perf_counter() - t)
                csrf = unescape(re.search(r'name="csrf" value="([^"]+)"', page).group(1))  # type: ignore[union-attr]
                t = time.perf_counter()
                resp = await client.post(form, data={"csrf": csrf, **FORM})
                await resp.read()
                post_t.append(time.perf_counter() - t)
                assert resp.status == 200, await resp.text()
            for i in range(n, 2 * n):
                row = await OutboxMessage.get(recipient=f"B{i:05d}", step_id="application", kind="card")
                t = time.perf_counter()
                reply = await inbound.dispatch(CardAction("wecom", f"wx_B{i:05d}", cardids.card_id_of(row), "submit",
                                                          f"bench-{i}", form=FORM))
                tap_t.append(time.perf_counter() - t)
                assert reply.ok, reply.text
        print(f"details page (first open: records viewed)  {ms(view_t)}")
        print(f"form page                                  {ms(get_t)}")
        print(f"form POST (router path + link claim/use)   {ms(post_t)}")
        print(f"the same submission as a card tap           {ms(tap_t)}")
        print(f"form POST over the tap, at p50:            "
              f"{(statistics.median(post_t) - statistics.median(tap_t)) * 1000:+.1f} ms")
    finally:
        await close_db()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--employees", type=int, default=size(200, 10))
    ap.add_argument("--pg", default="")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.pg or f"sqlite://{Path(tmp) / 'bench.sqlite3'}"
        print(f"database: {'PostgreSQL' if args.pg else 'SQLite'}")
        asyncio.run(run(args.employees, url, Path(tmp)))


if __name__ == "__main__":
    main()
