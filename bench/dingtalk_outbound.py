"""DingTalk outbound at platform speed: N interactive cards through our OpenAPI client against a
fake DingTalk (tests/platforms/dingtalk/fake.py, own thread) that answers every request after
100 ms and throttles any API above 20 requests in the last second (403 QpsLimitForAppkeyAndApi).

Delivery uses bounded concurrency (`map_bounded`) and the per-API pacing of `RateLimits`, the way
an outbox relay will. Printed: achieved cards/s against the allowed rate (target ≥ 90 %),
throttling answers the fake had to give (target 0), cards made twice for one outTrackId
(target 0), and request count (= cards when nothing is retried).

    .venv/bin/python bench/dingtalk_outbound.py [--cards 600] [--rate 20] [--latency 0.1] [--concurrency 8]
                                                [--margin 0.07]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/X.py`: the project's root first, not bench/
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import size
from bot.platforms.dingtalk.api import AppCredentials, DingTalkApi
from bot.platforms.dingtalk.ratelimit import RateLimits, map_bounded
from tests.platforms.dingtalk.fake import CLIENT_ID, CLIENT_SECRET, FakeDingTalk


async def run(cards: int, rate: float, latency: float, concurrency: int, margin: float) -> dict[str, float]:
    fake = FakeDingTalk(latency=latency, qps=rate).start()
    try:
        async with DingTalkApi(AppCredentials(CLIENT_ID, CLIENT_SECRET), api_base=fake.base, oapi_base=fake.base,
                               limits=RateLimits(rate=rate, margin=margin)) as api:
            await api.tokens.get()  # the token fetch is not a card; keep it out of the timing

            async def send(i: int) -> object:
                return await api.create_and_deliver_card("bench.schema", f"offb-{i:05d}-emp", f"user{i % 97}",
                                                         {"title": f"card {i}", "status": "等待你操作"})

            t0 = time.perf_counter()
            results = await map_bounded(send, range(cards), limit=concurrency)
            elapsed = time.perf_counter() - t0
        failed = [r for r in results if isinstance(r, BaseException)]
        with fake.lock:
            return {"elapsed": elapsed, "achieved": cards / elapsed, "allowed": rate,
                    "throttled": fake.throttled, "duplicates": sum(n - 1 for n in fake.cards_made.values() if n > 1),
                    "made": len(fake.cards_made), "requests": sum(fake.card_requests.values()),
                    "failed": len(failed)}
    finally:
        fake.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cards", type=int, default=size(600, 40))
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--latency", type=float, default=0.1)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--margin", type=float, default=RateLimits.margin,
                    help="pace this fraction below --rate (0 shows why the default is not 0)")
    a = ap.parse_args()
    r = asyncio.run(run(a.cards, a.rate, a.latency, a.concurrency, a.margin))
    share = r["achieved"] / r["allowed"]
    print(f"dingtalk outbound: {a.cards} cards, fake answers after {a.latency * 1000:.0f} ms, throttles above "
          f"{a.rate:.0f} QPS, concurrency {a.concurrency}, pacing {a.margin:.0%} below the limit")
    print(f"  achieved   {r['achieved']:.2f} cards/s of {r['allowed']:.0f} allowed = {share:.1%}  (target >= 90%)"
          f"  [{r['elapsed']:.1f} s]")
    print(f"  throttled  {r['throttled']}  (target 0)")
    print(f"  duplicates {r['duplicates']}  (target 0); cards made {r['made']}, requests {r['requests']}, "
          f"failed {r['failed']}")
    ok = share >= 0.9 and r["throttled"] == 0 and r["duplicates"] == 0 and r["made"] == a.cards
    print("  OK" if ok else "  BELOW TARGET")


if __name__ == "__main__":
    main()
