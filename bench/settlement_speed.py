"""Calculations per second for each settlement kind (pure functions; no I/O after the tables load).

Run: .venv/bin/python bench/settlement_speed.py [seconds-per-kind]   (or python -m bench.settlement_speed)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python bench/X.py`: the project's root first, not bench/
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import quick


def cases() -> dict[str, Callable[[], Any]]:
    from settlement.annual_leave import annual_leave_payout
    from settlement.compensation import compensation
    from settlement.final_pay import final_month_pay
    from settlement.json_api import calculate
    from settlement.social_insurance import backpay
    from settlement.tables import load_tables

    tables = load_tables()
    D = Decimal
    return {
        "social-insurance (2 months, Beijing)": lambda: backpay(
            ["2024-07", "2024-08"], D("5000"), city="beijing", tables=tables),
        "social-insurance (12 months straddling, Shanghai)": lambda: backpay(
            [f"2025-{m:02d}" for m in range(1, 13)], D("9000"), city="shanghai", tables=tables),
        "compensation (N, capped)": lambda: compensation(
            hire_date=date(2010, 3, 1), last_day=date(2025, 6, 30), ground="36-employer",
            monthly_wages=[D("48000")] * 12, city_avg_monthly_wage=D("11937"), min_monthly_wage=D("2420")),
        "compensation (Art. 40 +1, pre-2008 split)": lambda: compensation(
            hire_date=date(2003, 5, 1), last_day=date(2025, 6, 30), ground="40", notice_given=False,
            average_monthly_wage=D("15000"), previous_month_wage=D("15200"), pre2008_rule="481-art8"),
        "annual-leave": lambda: annual_leave_payout(
            cumulative_work_months=96, last_day=date(2025, 6, 30), average_monthly_wage=D("10875")),
        "final-pay (attendance 21.75)": lambda: final_month_pay(monthly_wage=D("10000"), last_day=date(2025, 7, 15)),
        "final-pay (calendar)": lambda: final_month_pay(
            monthly_wage=D("10000"), last_day=date(2025, 7, 15), method="calendar"),
        "json_api compensation (parse + compute + to_json)": lambda: calculate("compensation", {
            "hire_date": "2022-05-01", "last_day": "2025-06-30", "ground": "36-employer",
            "average_monthly_wage": "10000"}),
    }


def rate(func: Callable[[], Any], seconds: float) -> float:
    func()  # warm caches (tables, working-day calendar)
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(50):
            func()
        count += 50
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else (0.1 if quick() else 1.0)
    results = {name: rate(func, seconds) for name, func in cases().items()}
    width = max(len(name) for name in results)
    for name, per_second in results.items():
        print(f"{name:<{width}}  {per_second:>10,.0f} calculations/s  ({1e6 / per_second:,.1f} µs each)")
    slowest = min(results, key=results.__getitem__)
    print(f"summary: slowest is {slowest} at {results[slowest]:,.0f}/s; "
          f"{'all above' if results[slowest] > 10_000 else 'NOT all above'} the 10,000/s target")


if __name__ == "__main__":
    main()
