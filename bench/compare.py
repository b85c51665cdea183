"""This tree against an older one, side by side in one run: server CPU per event and signing retries.

Two figures per tree, each measured the same way on both:
- server CPU per event (ms) for commands (`/offboard`) and taps (card "submit"): bench/inbound.py's
  workloads through the real `python -m bot serve` of each tree, on SQLite and (unless --no-pg) on
  PostgreSQL. The trees run alternately, `--rounds` times each, and the median is compared, so
  load from others on the machine hits both alike. Target: this tree within 10 % of the old one.
- version conflicts (retries) on the signing path: each tree's own signing web routes in-process
  (its tests' signing-flow app), completing `--cases` probation cases (five signatures each, every
  one followed by the next page opening or step on the same case), counting the `VersionConflict`s
  its case service raised. Target: no retry after a signature.

    .venv/bin/python bench/compare.py --old /work/wt/writepath-old [--events 1000] [--rounds 2]

The old tree is a checkout of an earlier commit (`git worktree add DIR SHA`); it runs with this
venv's packages and its own sources first on the path. PostgreSQL runs use databases
`bench_cmp_old` and `bench_cmp_new` beside --pg (created when absent, emptied each run).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/X.py`: the project's root first, not bench/
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

PROBE = r'''
import asyncio, json, sys, tempfile
from pathlib import Path

async def main(cases: int) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from bot.app import build_service
    try:  # where each tree keeps them (only this tree's: the venv's editable install may offer the other's)
        from config.settings import load_settings
        import config.settings as where
        if not Path(where.__file__).resolve().is_relative_to(Path.cwd().resolve()):
            raise ImportError("not this tree's")
    except ImportError:
        from bot.settings import load_settings
    from storage import crypto
    from storage.db import close_db, init_db, migrate
    from storage.directory import import_csv
    from tests.conftest import DEMO_CSV
    from tests.signing_flow.conftest import Flow, complete_case, make_app, start_probation, to_guarantee_step

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite://{tmp}/probe.sqlite3"
        data = Path(tmp) / "data"
        data.mkdir()
        settings = load_settings(database_url=url, data_dir=data, secret_key="probe-secret-0123456789abcdef",
                                 public_base_url="http://127.0.0.1:8080", _env_file=None)
        await migrate(url)
        crypto.configure(settings.secret_bytes())
        await init_db(url)
        try:
            assert (await import_csv(DEMO_CSV.read_text(encoding="utf-8"))).applied
            service = build_service(settings)
            conflicts = {"signing": 0, "other": 0}
            phase = {"now": "other"}
            original = service._apply_once

            async def counting(*args, **kwargs):
                try:
                    return await original(*args, **kwargs)
                except Exception as exc:
                    if type(exc).__name__ == "VersionConflict":
                        conflicts[phase["now"]] += 1
                    raise

            service._apply_once = counting
            # Reads of a case's row and steps: a stale snapshot is re-read on the next page open.
            # This tree's own service module (the venv's editable install may offer the other's).
            here = Path.cwd().resolve()
            try:
                import cases.service as cases_module
                if not Path(cases_module.__file__).resolve().is_relative_to(here):
                    raise ImportError("not this tree's")
            except ImportError:
                import handlers.cases as cases_module
            reads = {"signing": 0, "other": 0}
            store = getattr(cases_module, "casestore", None)
            holder, name = (store, "load") if store is not None else (cases_module.hotpath, "load_case")
            loader = getattr(holder, name)

            async def reading(*args, **kwargs):
                reads[phase["now"]] += 1
                return await loader(*args, **kwargs)

            setattr(holder, name, reading)
            app = make_app(settings, service)
            signatures = 0
            async with TestClient(TestServer(app, host="127.0.0.1")) as client:
                for _ in range(cases):
                    employee_case = await start_probation(service)
                    await to_guarantee_step(service, employee_case)
                    phase["now"] = "signing"
                    await complete_case(Flow(settings, service, employee_case, client))
                    phase["now"] = "other"
                    signatures += 5
                    # The case is finished: the next probation case needs the employee free again.
                    from storage.models import Case
                    assert (await Case.get(id=employee_case)).status != "open"
        finally:
            await close_db()
    print(json.dumps({"signatures": signatures, "conflicts": conflicts["signing"], "reads": reads["signing"]}))

asyncio.run(main(int(sys.argv[1])))
'''


def probe(tree: Path, cases: int) -> dict[str, int]:
    """Signing retries of `tree`, run with its own sources first on the path."""
    env = {**os.environ, "PYTHONPATH": str(tree), "LOG_LEVEL": "WARNING"}
    done = subprocess.run([PY, "-c", PROBE, str(cases)], cwd=tree, env=env, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"signing probe failed in {tree}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    from bench.inbound import bench_full, reset_pg

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", type=Path, help="the older source tree (a git worktree)")
    ap.add_argument("--events", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--cases", type=int, default=4, help="probation cases signed through for the retry count")
    ap.add_argument("--pg", default=os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--no-pg", action="store_true")
    args = ap.parse_args()
    if args.old is None:  # run by hand only (`make bench` skips it): it needs a second tree
        print("compare: skipped (needs --old DIR, a worktree of the commit to compare with)")
        return
    trees = {"old": args.old.resolve(), "new": ROOT}
    for name, tree in trees.items():
        head = subprocess.run(["git", "-C", str(tree), "log", "-1", "--format=%h %s"], capture_output=True,
                              text=True).stdout.strip()
        print(f"{name}: {tree}  ({head[:90]})")

    retries = {name: probe(tree, args.cases) for name, tree in trees.items()}
    dbs = ["SQLite"] + ([] if args.no_pg else ["PostgreSQL"])
    cpu: dict[tuple[str, str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, tree in (trees.items() if r % 2 == 0 else reversed(trees.items())):
                for db in dbs:
                    work = Path(tmp) / f"{name}-{db}-{r}"
                    work.mkdir()
                    url = (f"sqlite://{work}/bench.sqlite3" if db == "SQLite"
                           else reset_pg(args.pg, f"bench_cmp_{name}"))
                    got: dict[str, float] = {}
                    bench_full(f"{name} r{r + 1}, {db}", url, args.events, args.clients, work, tree, got)
                    for kind, ms in got.items():
                        cpu.setdefault((db, kind, name), []).append(ms)

    print()
    print(f"server CPU per event, median of {args.rounds} rounds ({args.events} events, {args.clients} clients)")
    print(f"{'':<22}{'old ms':>9}{'new ms':>9}{'new/old':>9}   target <= 1.10")
    for db in dbs:
        for kind in ("commands", "taps"):
            old = statistics.median(cpu.get((db, kind, "old"), [float("nan")]))
            new = statistics.median(cpu.get((db, kind, "new"), [float("nan")]))
            ratio = new / old if old else float("nan")
            print(f"{db + ', ' + kind:<22}{old:9.2f}{new:9.2f}{ratio:9.2f}   {'met' if ratio <= 1.10 else 'NOT met'}")
    print()
    print(f"signing path ({args.cases} cases through every signature, in-process, SQLite)")
    for name in trees:
        r = retries[name]
        print(f"{name}: {r['signatures']} signatures, {r['conflicts']} version conflicts (retries), "
              f"{r['conflicts'] / max(1, r['signatures']):.2f} per signature; {r['reads']} re-reads of the case "
              "(snapshot stale)")
    print(f"target: no retry after a signature: {'met' if retries['new']['conflicts'] == 0 else 'NOT met'}")


if __name__ == "__main__":
    main()
