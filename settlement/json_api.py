"""The JSON contract of ``python -m bot calc …``: one object in, one object out.

Kept here, next to the calculators, so in-process callers (handlers, workflow) and the CLI read
and validate input the same way. Money arrives as a string or a JSON number and is turned into
Decimal from its text, never through float arithmetic.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from settlement.annual_leave import annual_leave_payout
from settlement.compensation import compensation
from settlement.errors import SettlementError
from settlement.final_pay import DEFAULT_METHOD, final_month_pay
from settlement.months import parse_date
from settlement.social_insurance import backpay
from settlement.tables import RateTables, parse_table

_NUMBER = re.compile(r"^\d+(\.\d+)?$")


def _decimal(value: Any, name: str, *, places: int | None = None) -> Decimal:
    if isinstance(value, bool):
        raise SettlementError(name, f"expected a number, got {value!r}")
    if isinstance(value, float):
        value = Decimal(str(value))
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith("-") and _NUMBER.match(text[1:]):
            raise SettlementError(name, f"must not be negative, got {value!r}")
        if not _NUMBER.match(text):
            raise SettlementError(name, f"expected a number like \"5000.00\", got {value!r}")
        value = Decimal(text)
    elif isinstance(value, int):
        value = Decimal(value)
    if not isinstance(value, Decimal):
        raise SettlementError(name, f"expected a number, got {value!r}")
    try:
        finite = value.is_finite()
    except InvalidOperation:
        finite = False
    if not finite:
        raise SettlementError(name, f"expected a finite number, got {value}")
    if value < 0:
        raise SettlementError(name, f"must not be negative, got {value}")
    exponent = value.as_tuple().exponent
    if places is not None and isinstance(exponent, int) and exponent < -places:
        raise SettlementError(name, f"at most {places} decimal places, got {value}")
    return value


class _Reader:
    """Pulls typed fields out of the payload and refuses fields nobody asked for."""

    def __init__(self, payload: Any, allowed: tuple[str, ...]) -> None:
        if not isinstance(payload, Mapping):
            raise SettlementError("input", f"expected a JSON object, got {type(payload).__name__}")
        for key in payload:
            if key not in allowed:
                raise SettlementError(str(key), f"unknown field; expected one of {', '.join(allowed)}")
        self.payload = payload

    def has(self, name: str) -> bool:
        return self.payload.get(name) is not None

    def raw(self, name: str, required: bool = False) -> Any:
        value = self.payload.get(name)
        if value is None and required:
            raise SettlementError(name, "required")
        return value

    def money(self, name: str, required: bool = False) -> Decimal | None:
        value = self.raw(name, required)
        return None if value is None else _decimal(value, name, places=2)

    def number(self, name: str, required: bool = False) -> Decimal | None:
        value = self.raw(name, required)
        return None if value is None else _decimal(value, name)

    def boolean(self, name: str, default: bool | None = None) -> bool | None:
        value = self.raw(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise SettlementError(name, f"expected true or false, got {value!r}")
        return value

    def day(self, name: str, required: bool = False) -> date | None:
        value = self.raw(name, required)
        return None if value is None else parse_date(value, name)

    def text(self, name: str, required: bool = False) -> str | None:
        value = self.raw(name, required)
        if value is not None and not isinstance(value, str):
            raise SettlementError(name, f"expected a string, got {value!r}")
        return value

    def integer(self, name: str, required: bool = False) -> int | None:
        value = self.raw(name, required)
        if value is None:
            return None
        number = _decimal(value, name)
        if number != number.to_integral_value():
            raise SettlementError(name, f"expected a whole number, got {value}")
        return int(number)


def social_insurance_json(payload: Any, tables: RateTables | None = None) -> dict[str, Any]:
    reader = _Reader(payload, ("months", "wage", "city", "tables", "injury_rate"))
    months = reader.raw("months", required=True)
    if not isinstance(months, list):
        raise SettlementError("months", "expected a list of 'YYYY-MM'")
    wage = reader.money("wage", required=True)
    city = reader.text("city")
    inline = reader.raw("tables")
    chosen: RateTables | None = tables
    if inline is not None:
        if not isinstance(inline, list) or not inline:
            raise SettlementError("tables", "expected a non-empty list of rate tables")
        chosen = RateTables(tuple(parse_table(t, field_prefix=f"tables[{i}].") for i, t in enumerate(inline)))
    elif city is None:
        raise SettlementError("city", "required (or tables)")
    result = backpay(months, wage or Decimal(0), city=city, tables=chosen,
                     injury_rate=reader.number("injury_rate"))
    return result.to_json()


def compensation_json(payload: Any, tables: RateTables | None = None) -> dict[str, Any]:
    reader = _Reader(payload, (
        "hire_date", "last_day", "ground", "monthly_wages", "average_monthly_wage", "previous_month_wage",
        "notice_given", "city_avg_monthly_wage", "min_monthly_wage", "pre2008_rule", "pre2008_partial_year",
        "enterprise_avg_monthly_wage",
    ))
    wages_raw = reader.raw("monthly_wages")
    wages = None
    if wages_raw is not None:
        if not isinstance(wages_raw, list):
            raise SettlementError("monthly_wages", "expected a list of amounts, oldest first")
        wages = [_decimal(w, f"monthly_wages[{i}]", places=2) for i, w in enumerate(wages_raw)]
    result = compensation(
        hire_date=reader.day("hire_date", required=True),
        last_day=reader.day("last_day", required=True),
        ground=reader.text("ground", required=True) or "",
        monthly_wages=wages,
        average_monthly_wage=reader.money("average_monthly_wage"),
        previous_month_wage=reader.money("previous_month_wage"),
        notice_given=reader.boolean("notice_given"),
        city_avg_monthly_wage=reader.money("city_avg_monthly_wage"),
        min_monthly_wage=reader.money("min_monthly_wage"),
        pre2008_rule=reader.text("pre2008_rule"),
        pre2008_partial_year=reader.text("pre2008_partial_year"),
        enterprise_avg_monthly_wage=reader.money("enterprise_avg_monthly_wage"),
    )
    return result.to_json()


def annual_leave_json(payload: Any, tables: RateTables | None = None) -> dict[str, Any]:
    reader = _Reader(payload, (
        "cumulative_work_months", "last_day", "joined_this_year", "days_taken", "average_monthly_wage",
        "declined_in_writing",
    ))
    result = annual_leave_payout(
        cumulative_work_months=reader.integer("cumulative_work_months", required=True) or 0,
        last_day=reader.day("last_day", required=True),
        joined_this_year=reader.day("joined_this_year"),
        days_taken=reader.number("days_taken") or Decimal(0),
        average_monthly_wage=reader.money("average_monthly_wage", required=True) or Decimal(0),
        declined_in_writing=bool(reader.boolean("declined_in_writing", default=False)),
    )
    return result.to_json()


def final_pay_json(payload: Any, tables: RateTables | None = None) -> dict[str, Any]:
    reader = _Reader(payload, ("monthly_wage", "last_day", "method", "first_day"))
    result = final_month_pay(
        monthly_wage=reader.money("monthly_wage", required=True) or Decimal(0),
        last_day=reader.day("last_day", required=True),
        method=reader.text("method") or DEFAULT_METHOD,
        first_day=reader.day("first_day"),
    )
    return result.to_json()


KINDS: dict[str, Callable[[Any, RateTables | None], dict[str, Any]]] = {
    "social-insurance": social_insurance_json,
    "compensation": compensation_json,
    "annual-leave": annual_leave_json,
    "final-pay": final_pay_json,
}


def calculate(kind: str, payload: Any, tables: RateTables | None = None) -> dict[str, Any]:
    """Run one calculation from a decoded JSON payload; raises SettlementError naming the bad field."""
    try:
        handler = KINDS[kind]
    except KeyError:
        raise SettlementError("kind", f"unknown calculation {kind!r}; expected one of {', '.join(KINDS)}") from None
    return handler(payload, tables)
