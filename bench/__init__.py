"""Benchmarks that print figures (speed targets live here, not in tests).

Each script runs as `python bench/X.py` or as `python -m bench.X` from the project's root. `make bench`
runs them all at quick sizes (`BENCH_QUICK=1`, its default: a few seconds to a minute each, enough to
show every script starts and prints its figures) and fails if one fails; `make bench BENCH_QUICK=0`
runs the full sizes the README's figures come from. In quick mode PostgreSQL parts run only when
`BENCH_PG_URL` names a server. `bench/compare.py` (this tree against an older one) needs `--old DIR`
and is run by hand.
"""

from __future__ import annotations

import os


def quick() -> bool:
    """BENCH_QUICK is set (and not 0): small sizes."""
    return os.environ.get("BENCH_QUICK", "") not in ("", "0")


def size(full: int, small: int) -> int:
    """The full size, or the small one in quick mode."""
    return small if quick() else full


def pg_url(default: str) -> str:
    """Where PostgreSQL parts run: BENCH_PG_URL, else `default`; in quick mode only BENCH_PG_URL
    ("" = skip them), so a quick run never touches a server nobody named."""
    named = os.environ.get("BENCH_PG_URL")
    if named is not None:
        return named
    return "" if quick() else default


def org_csv(employees: list[str]) -> str:
    """A directory CSV: a manager M, HR H, finance F and a handover colleague O, then `employees`
    (rows of the same columns)."""
    return "\n".join([
        "employee_id,name,department,position,manager_id,roles,city,hire_date,contract_start,contract_end,"
        "monthly_wage,dingtalk_userid,wecom_userid,phone", "M,经理,d,p,,,beijing,,,,,,,",
        "H,人事,d,p,,hr,beijing,,,,,,,", "F,财务,d,p,,finance,beijing,,,,,,,", "O,交接,d,p,M,,beijing,,,,,,,",
        *employees])
