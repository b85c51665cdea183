"""`python -m bot calc …`: settlement calculations, one JSON object on stdin, one on stdout.

Exit status 0 on success; 2 with one line on stderr naming the field on bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from settlement.errors import SettlementError
from settlement.json_api import KINDS, calculate
from settlement.tables import RateTables, load_tables

HELP = {
    "social-insurance": "social-insurance back-payment: {months, wage, city | tables, injury_rate?}",
    "compensation": "economic compensation N / N+1 / 2N: {hire_date, last_day, ground, monthly_wages | "
    "average_monthly_wage, ...}",
    "annual-leave": "unused annual-leave payout: {cumulative_work_months, last_day, average_monthly_wage, ...}",
    "final-pay": "final-month wage proration: {monthly_wage, last_day, method?, first_day?}",
}


def _reject_constant(name: str) -> Any:
    raise SettlementError("input", f"{name} is not a number")


def _tables(args: argparse.Namespace) -> RateTables | None:
    directory = getattr(args, "tables_dir", None) or os.environ.get("RATE_TABLES_DIR") or None
    if directory is None:
        from config.settings import get_settings  # also honours RATE_TABLES_DIR from .env

        directory = get_settings().rate_tables_dir
    return load_tables(Path(directory)) if directory else None


def _runner(kind: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            text = sys.stdin.read()
            try:
                # parse_float=Decimal: 5000.1 arrives as the exact text "5000.1", never as a binary float.
                payload = json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
            except json.JSONDecodeError as exc:
                raise SettlementError("input", f"malformed JSON: {exc}") from None
            tables = _tables(args) if kind == "social-insurance" else None
            result = calculate(kind, payload, tables)
        except SettlementError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
        return 0

    return run


def _missing_kind(args: argparse.Namespace) -> int:
    print(f"error: calc: choose one of {', '.join(KINDS)}", file=sys.stderr)
    return 2


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    calc = subparsers.add_parser("calc", help="settlement calculations (JSON on stdin → JSON on stdout)")
    calc.add_argument("--tables-dir", dest="tables_dir", default=None, metavar="DIR",
                      help="extra company rate tables (*.toml); default: $RATE_TABLES_DIR")
    calc.set_defaults(func=_missing_kind)
    kinds = calc.add_subparsers(dest="calc_kind", metavar="KIND")
    for kind in KINDS:
        parser = kinds.add_parser(kind, help=HELP[kind], description=HELP[kind])
        # SUPPRESS keeps a --tables-dir given before the kind from being reset by this parser's default.
        parser.add_argument("--tables-dir", dest="tables_dir", default=argparse.SUPPRESS, metavar="DIR",
                            help="extra company rate tables (*.toml); default: $RATE_TABLES_DIR")
        parser.set_defaults(func=_runner(kind))
