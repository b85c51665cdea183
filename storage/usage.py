"""Platform API calls counted per budget month (table `platform_usage`, migration 0013).

A platform connector records its calls here (`record`); HR-facing views (`cases list`, `/help`)
read the month's figures (`month_usage`) without knowing any platform. `claim_warning` lets exactly
one process, once per month, send the "80 % used" warning.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from storage.dialect import default_conn, dialect_of

# DingTalk counts its quota per natural month of the org: China time.
CHINA = timezone(timedelta(hours=8))


def month_of(at: datetime | None = None) -> str:
    at = at or datetime.now(UTC)
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(CHINA).strftime("%Y-%m")


@dataclass(frozen=True)
class Usage:
    platform: str
    month: str
    calls: int
    quota: int  # 0: no quota known
    warned: bool = False

    @property
    def share(self) -> float:
        return self.calls / self.quota if self.quota else 0.0

    def line(self, language: str = "zh") -> str:
        if language == "en":
            tail = f" of {self.quota:,} ({self.share:.0%})" if self.quota else ""
            return f"{self.platform} API calls in {self.month}: {self.calls:,}{tail}"
        tail = f" / {self.quota:,}（{self.share:.0%}）" if self.quota else ""
        return f"{self.platform} 本月（{self.month}）接口调用：{self.calls:,}{tail}"


async def record(platform: str, calls: int, quota: int, *, month: str | None = None) -> Usage:
    """Add `calls` to this month's count; the new totals."""
    conn = default_conn()
    m = month or month_of()
    # execute_query_dict: the asyncpg client's execute_query drops the rows of an INSERT … RETURNING.
    rows = await conn.execute_query_dict(dialect_of(conn).sql(
        "INSERT INTO platform_usage (platform, month, calls, quota, warned) VALUES (?, ?, ?, ?, FALSE) "
        "ON CONFLICT (platform, month) DO UPDATE SET calls = platform_usage.calls + excluded.calls, "
        "quota = excluded.quota RETURNING calls, quota, warned"),
        [platform, m, calls, quota])
    row = rows[0]
    return Usage(platform, m, int(row["calls"]), int(row["quota"]), bool(row["warned"]))


async def claim_warning(platform: str, month: str) -> bool:
    """True for exactly one caller per (platform, month): the one who sends the warning."""
    conn = default_conn()
    n, _ = await dialect_of(conn).query(conn, "UPDATE platform_usage SET warned = TRUE WHERE platform = ? "
                                        "AND month = ? AND warned = FALSE", [platform, month])
    return n == 1


async def month_usage(month: str | None = None) -> list[Usage]:
    """Every platform's figures for the month (none when nothing was counted)."""
    m = month or month_of()
    conn = default_conn()
    rows = await dialect_of(conn).fetch(conn, "SELECT platform, calls, quota, warned FROM platform_usage "
                                        "WHERE month = ? ORDER BY platform", [m])
    return [Usage(str(r["platform"]), m, int(r["calls"]), int(r["quota"]), bool(r["warned"])) for r in rows]
