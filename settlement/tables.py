"""City social-insurance rate tables: schema, validation, loading and lookup by month.

Tables are data (``settlement/tables/*.toml``), one file per city and effective period, so a new
contribution year is a new file rather than a code change. Companies add or override tables from a
folder of their own; a company table with the same ``id`` replaces the bundled one.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import cached_property, lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from settlement.basis import ROUNDING_MODES
from settlement.errors import SettlementError
from settlement.months import parse_month

BUNDLED_DIR = Path(__file__).parent / "tables"

ITEM_NAMES = ("pension", "medical", "unemployment", "injury", "maternity", "housing_fund")
# Employees pay no work-injury (SIL Art. 33) and no maternity (SIL Art. 53) contribution.
EMPLOYER_ONLY = {"injury": "SIL Art. 33", "maternity": "SIL Art. 53"}

Rate = Annotated[Decimal, Field(ge=0, lt=1, allow_inf_nan=False)]
Amount = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]


class Rounding(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["half_up", "up", "down"] = "half_up"
    unit: Literal["0.01", "0.1", "1"] = "0.01"


class ItemRate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    employee_rate: Rate = Decimal(0)
    employer_rate: Rate = Decimal(0)
    employee_fixed: Amount = Decimal(0)
    base_floor: Amount | None = None
    base_cap: Amount | None = None
    rounding: Rounding | None = None

    @field_validator("base_cap")
    @classmethod
    def _cap_above_floor(cls, cap: Decimal | None, info: ValidationInfo) -> Decimal | None:
        floor = info.data.get("base_floor")
        if cap is not None and floor is not None and cap < floor:
            raise ValueError(f"base_cap {cap} is below base_floor {floor}")
        return cap


class RateTable(BaseModel):
    """One city's contribution parameters for one effective period (months inclusive)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    city: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    city_zh: str = Field(min_length=1)
    name: str = Field(min_length=1)
    name_en: str = Field(min_length=1)
    effective_from: str
    effective_to: str
    source_url: str = Field(pattern=r"^https?://\S+$")
    checked: date
    confidence: str = ""
    notes: str = ""
    rounding: Rounding = Rounding()
    base_floor: Amount
    base_cap: Amount
    items: dict[str, ItemRate]

    _path: str | None = PrivateAttr(default=None)

    @field_validator("effective_from", "effective_to")
    @classmethod
    def _month(cls, value: str) -> str:
        try:
            return parse_month(value, "month")
        except SettlementError as exc:
            raise ValueError(exc.message) from None

    @field_validator("items")
    @classmethod
    def _item_names(cls, items: dict[str, ItemRate]) -> dict[str, ItemRate]:
        if not items:
            raise ValueError("at least one item is required")
        for name, item in items.items():
            if name not in ITEM_NAMES:
                raise ValueError(f"unknown item {name!r}; expected one of {', '.join(ITEM_NAMES)}")
            if name in EMPLOYER_ONLY and (item.employee_rate or item.employee_fixed):
                raise ValueError(f"{name}: employees do not contribute ({EMPLOYER_ONLY[name]})")
        return items

    @field_validator("effective_to")
    @classmethod
    def _to_after_from(cls, value: str, info: ValidationInfo) -> str:
        start = info.data.get("effective_from")
        if start is not None and value < start:
            raise ValueError(f"{value} is before effective_from {start}")
        return value

    @field_validator("base_cap")
    @classmethod
    def _cap_above_floor(cls, cap: Decimal, info: ValidationInfo) -> Decimal:
        floor = info.data.get("base_floor")
        if floor is not None and cap < floor:
            raise ValueError(f"base_cap {cap} is below base_floor {floor}")
        return cap

    @property
    def path(self) -> str | None:
        """The file the table was loaded from (None for inline tables)."""
        return self._path

    def covers(self, month: str) -> bool:
        return self.effective_from <= month <= self.effective_to

    def limits(self, item: str) -> tuple[Decimal, Decimal]:
        rates = self.items[item]
        floor = self.base_floor if rates.base_floor is None else rates.base_floor
        cap = self.base_cap if rates.base_cap is None else rates.base_cap
        return floor, cap

    def rounding_for(self, item: str) -> Rounding:
        return self.items[item].rounding or self.rounding

    @cached_property
    def plan(self) -> tuple[ItemPlan, ...]:
        """Per-item parameters resolved once (limits, rounding), since every month of a back-payment reuses them."""
        plans = []
        for name, rates in self.items.items():
            floor, cap = self.limits(name)
            rounding = self.rounding_for(name)
            own = rates.base_floor is not None or rates.base_cap is not None
            plans.append(ItemPlan(name, floor, cap, rates.employee_rate, rates.employer_rate, rates.employee_fixed,
                                  rounding, Decimal(rounding.unit), ROUNDING_MODES[rounding.mode], own))
        return tuple(plans)


@dataclass(frozen=True, slots=True)
class ItemPlan:
    name: str
    floor: Decimal
    cap: Decimal
    employee_rate: Decimal
    employer_rate: Decimal
    employee_fixed: Decimal
    rounding: Rounding
    quantum: Decimal
    mode: str
    own_limits: bool


def _first_error(exc: ValidationError) -> tuple[str, str]:
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"]) or "table"
    message = error["msg"].removeprefix("Value error, ")
    return field, message


def parse_table(data: Any, *, source: str | None = None, field_prefix: str = "") -> RateTable:
    """Validate one table (a TOML document or an inline JSON object) or raise SettlementError."""
    if not isinstance(data, dict):
        raise SettlementError(field_prefix.rstrip(".") or "table", "expected an object", source=source)
    try:
        table = RateTable.model_validate(data)
    except ValidationError as exc:
        field, message = _first_error(exc)
        raise SettlementError(field_prefix + field, message, source=source) from None
    table._path = source
    return table


def load_table_file(path: Path) -> RateTable:
    try:
        with path.open("rb") as handle:
            # parse_float=Decimal keeps "0.105" exact; a float would already be off before any rounding.
            data = tomllib.load(handle, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        raise SettlementError("toml", str(exc), source=str(path)) from None
    except OSError as exc:
        raise SettlementError("file", exc.strerror or str(exc), source=str(path)) from None
    return parse_table(data, source=str(path))


def _load_dir(directory: Path) -> list[RateTable]:
    return [load_table_file(path) for path in sorted(directory.glob("*.toml"))]


@dataclass(frozen=True)
class RateTables:
    """A validated set of tables with no two tables of one city covering the same month."""

    tables: tuple[RateTable, ...]

    def __post_init__(self) -> None:
        by_city: dict[str, list[RateTable]] = {}
        seen: dict[str, RateTable] = {}
        for table in self.tables:
            if table.id in seen:
                raise SettlementError("id", f"duplicate table id {table.id!r}", source=table.path)
            seen[table.id] = table
            by_city.setdefault(table.city, []).append(table)
        for tables in by_city.values():
            tables.sort(key=lambda t: t.effective_from)
            for earlier, later in pairwise(tables):
                if later.effective_from <= earlier.effective_to:
                    where = f" ({earlier.path})" if earlier.path else ""
                    raise SettlementError(
                        "effective_from",
                        f"table {later.id!r} overlaps table {earlier.id!r}{where} "
                        f"in {later.effective_from}..{earlier.effective_to}",
                        source=later.path,
                    )
        object.__setattr__(self, "_by_city", {city: tuple(ts) for city, ts in by_city.items()})

    def cities(self) -> list[str]:
        return sorted(self._by_city)  # type: ignore[attr-defined]

    def get(self, table_id: str) -> RateTable:
        for table in self.tables:
            if table.id == table_id:
                return table
        raise SettlementError("table", f"unknown table id {table_id!r}")

    def resolve_city(self, city: str) -> str:
        """Accept the slug ('beijing'), any letter case, or the Chinese name ('北京')."""
        by_city: dict[str, tuple[RateTable, ...]] = self._by_city  # type: ignore[attr-defined]
        if city in by_city:
            return city
        wanted = city.strip().lower()
        for slug, tables in by_city.items():
            if wanted == slug or any(wanted == t.city_zh for t in tables):
                return slug
        known = ", ".join(self.cities()) or "none"
        raise SettlementError("city", f"unknown city {city!r}; known: {known}")

    def for_city(self, city: str) -> tuple[RateTable, ...]:
        return self._by_city[self.resolve_city(city)]  # type: ignore[attr-defined]

    def lookup(self, month: str, city: str | None = None) -> RateTable:
        """The table in force in ``month``; with no city, the set must hold exactly one city."""
        if city is None:
            cities = self.cities()
            if len(cities) != 1:
                raise SettlementError("city", f"required to choose among {', '.join(cities) or 'no tables'}")
            city = cities[0]
        for table in self.for_city(city):
            if table.covers(month):
                return table
        periods = ", ".join(f"{t.effective_from}..{t.effective_to}" for t in self.for_city(city))
        raise SettlementError("months", f"{month} is outside every {city} table ({periods})")


def merge(bundled: Iterable[RateTable], extra: Iterable[RateTable]) -> RateTables:
    by_id = {table.id: table for table in bundled}
    for table in extra:
        by_id[table.id] = table
    return RateTables(tuple(by_id.values()))


@lru_cache(maxsize=1)
def _bundled() -> tuple[RateTable, ...]:
    return tuple(_load_dir(BUNDLED_DIR))


def bundled_tables() -> RateTables:
    return merge(_bundled(), ())


def load_tables(extra_dir: Path | None = None) -> RateTables:
    """Bundled tables plus a company folder of ``*.toml`` (same id replaces; all validated)."""
    if extra_dir is None:
        return bundled_tables()
    extra_dir = Path(extra_dir)
    if not extra_dir.is_dir():
        raise SettlementError("tables_dir", f"{extra_dir} is not a directory")
    return merge(_bundled(), _load_dir(extra_dir))


def as_tables(tables: RateTables | Sequence[RateTable] | None) -> RateTables:
    if tables is None:
        return bundled_tables()
    if isinstance(tables, RateTables):
        return tables
    return RateTables(tuple(tables))
