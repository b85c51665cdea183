"""Formatting helpers for money, rates and the bilingual basis lines."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_UP, ROUND_UP, Decimal

CENT = Decimal("0.01")


def to_cent(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def money(value: Decimal) -> str:
    """``Decimal('6821') -> '6,821.00'`` (HALF_UP to the cent, never float)."""
    return f"{value.quantize(CENT, rounding=ROUND_HALF_UP):,.2f}"


def money_plain(value: Decimal) -> str:
    """Money for JSON output: two decimals, no thousands separator."""
    return f"{to_cent(value):.2f}"


def number(value: Decimal) -> str:
    """A decimal without trailing zeros or exponent: ``Decimal('3.50') -> '3.5'``, ``10 -> '10'``."""
    text = f"{value.normalize():f}"
    return text


def percent(rate: Decimal) -> str:
    """``Decimal('0.08') -> '8%'``, ``Decimal('0.0016') -> '0.16%'``."""
    return f"{number(rate * 100)}%"


ROUNDING_MODES = {"half_up": ROUND_HALF_UP, "up": ROUND_UP, "down": ROUND_DOWN}
ROUNDING_ZH = {
    ("half_up", "0.01"): "四舍五入到分",
    ("half_up", "0.1"): "四舍五入到角",
    ("half_up", "1"): "四舍五入到元",
    ("up", "0.01"): "见厘进分",
    ("up", "0.1"): "见分进角",
    ("up", "1"): "见角进元",
    ("down", "0.01"): "舍去厘",
    ("down", "0.1"): "舍去分",
    ("down", "1"): "舍去角分",
}
ROUNDING_EN = {
    ("half_up", "0.01"): "rounded half-up to the cent",
    ("half_up", "0.1"): "rounded half-up to the jiao (0.1)",
    ("half_up", "1"): "rounded half-up to the yuan",
    ("up", "0.01"): "rounded up to the cent",
    ("up", "0.1"): "rounded up to the jiao (0.1)",
    ("up", "1"): "rounded up to the yuan",
    ("down", "0.01"): "truncated to the cent",
    ("down", "0.1"): "truncated to the jiao (0.1)",
    ("down", "1"): "truncated to the yuan",
}


@dataclass
class Basis:
    """Parallel Chinese and English lines; every ``add`` keeps them aligned one to one."""

    zh: list[str] = field(default_factory=list)
    en: list[str] = field(default_factory=list)

    def add(self, zh: str, en: str) -> None:
        self.zh.append(zh)
        self.en.append(en)

    def extend(self, pairs: Iterable[tuple[str, str]]) -> None:
        for zh, en in pairs:
            self.add(zh, en)
