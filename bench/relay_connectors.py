"""Outbox relay throughput through a connector whose every call takes `latency` (an HTTPS round
trip), by `limits.concurrency`: the relay keeps that many calls in flight (rows of one recipient
in order), so cards per second grow with it until the token bucket's rate caps them.

    .venv/bin/python bench/relay_connectors.py [--cases 30] [--latency 0.05] [--rate 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/X.py`: the project's root first, not bench/
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from aiohttp import web

from bench import size
from bot.app import build_service
from bot.inbound import Inbound, build_router
from bot.outbox import Relay
from cards.model import Card
from chat.connector import Address, Capabilities, Delivery, Dispatch, Limits, TextMessage
from config.settings import load_settings
from handlers.cardview import CardRenderer
from signing.channel import Channel
from storage import crypto
from storage.db import close_db, init_db, migrate
from storage.directory import import_csv
from storage.models import OutboxMessage

ROOT = Path(__file__).resolve().parent.parent


class SlowPlatform:
    """Answers every call after `latency` seconds, like a platform API across the internet."""

    name = "emulator"
    capabilities = Capabilities()
    identity = None
    directory = None

    def __init__(self, limits: Limits, latency: float) -> None:
        self.limits, self.latency, self.calls = limits, latency, 0

    async def start(self, dispatch: Dispatch) -> None: ...

    async def stop(self) -> None: ...

    def web_routes(self) -> list[web.RouteDef]:
        return []

    async def _call(self, card_id: str) -> Delivery:
        self.calls += 1
        await asyncio.sleep(self.latency)
        return Delivery(message_id=f"m-{card_id}")

    async def send_card(self, to: Address, card: Card, card_id: str) -> Delivery:
        return await self._call(card_id)

    async def update_card(self, to: Address, card: Card, card_id: str, delivery: Delivery) -> Delivery:
        return await self._call(card_id)

    async def send_text(self, to: Address, text: str, key: str) -> Delivery:
        return await self._call(key)


async def run(cases: int, latency: float, rate: float, concurrency: int, tmp: Path) -> tuple[int, float]:
    url = f"sqlite://{tmp / f'relay-{concurrency}.sqlite3'}"
    settings = load_settings(database_url=url, data_dir=tmp, secret_key="bench-secret-key-0123456789",
                             _env_file=None)
    crypto.configure(settings.secret_bytes())
    await migrate(url)
    await init_db(url)
    try:
        await import_csv((ROOT / "bot" / "demo_data" / "org.csv").read_text(encoding="utf-8"))
        service = build_service(settings)
        inbound = Inbound(build_router(), settings, service)
        people = ["E003", "E007", "E004", "E005"]
        for i in range(cases):
            who = people[i % len(people)]
            answer = await inbound.dispatch(TextMessage(platform="emulator", sender="E001", event_id=f"b{i}",
                                                        text=f"/离职 {who} 辞职 2030-08-31"))
            if answer.ok:
                # Cancel at once so the next case for the same person can start; both queue cards.
                await inbound.dispatch(TextMessage(platform="emulator", sender="E001", event_id=f"c{i}",
                                                   text=f"/取消 {answer.data['case_id']} 基准测试"))
        platform = SlowPlatform(Limits(rate_per_second=rate, burst=int(rate), concurrency=concurrency), latency)
        relay = Relay({"emulator": platform}, CardRenderer(settings, service, channel=Channel()).for_outbox,
                      addresses=service.addresses, batch=200)
        start = time.perf_counter()
        while await relay.run_once():
            pass
        elapsed = time.perf_counter() - start
        left = await OutboxMessage.filter(status__in=["pending", "claimed"]).count()
        if left:
            raise SystemExit(f"{left} rows left undelivered")
        return platform.calls, elapsed
    finally:
        await close_db()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=size(30, 4))
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--rate", type=float, default=1000.0)
    a = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"relay through a connector answering after {a.latency * 1000:.0f} ms, rate cap {a.rate:.0f}/s")
        for concurrency in (1, 4, 8):
            calls, elapsed = await run(a.cases, a.latency, a.rate, concurrency, Path(tmp))
            print(f"  concurrency {concurrency}: {calls} calls in {elapsed:.2f} s = {calls / elapsed:.1f} calls/s")


if __name__ == "__main__":
    asyncio.run(main())
