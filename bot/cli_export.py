"""`python -m bot export --case ID [--out FILE.zip]`: a case's archive (signing/archive.py) for HR."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    e = sub.add_parser("export", help="write a case's archive (documents, evidence, audit log) to a zip")
    e.add_argument("--case", required=True, help="the case id, e.g. OB-7K2M9Q")
    e.add_argument("--out", help="the zip to write (default: <case>-archive.zip here)")
    e.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


def _progress(stage: str, done: int, total: int) -> None:
    end = "\n" if done >= total else ""
    print(f"\r{stage}: {done}/{total}", end=end, file=sys.stderr, flush=True)


async def _run(args: argparse.Namespace) -> int:
    from bot.runtime import database
    from config.settings import get_settings
    from handlers.archive import export_case, log_access
    from signing.archive import ArchiveError
    from workflow.templates import load_templates

    settings = get_settings()
    case_id = args.case.strip().upper()
    out = Path(args.out or f"{case_id}-archive.zip")
    templates = load_templates([settings.templates_dir] if settings.templates_dir else [])
    # Written beside the target and renamed at the end: a failed export leaves no half archive.
    part = out.with_name(out.name + ".part")
    async with database(settings):
        try:
            with part.open("wb") as f:
                result = await export_case(settings, case_id, f, templates=templates, progress=_progress)
        except ArchiveError as exc:
            part.unlink(missing_ok=True)
            print(f"error: {exc} (send `python -m bot cases list --all` to see the cases)", file=sys.stderr)
            return 2
        except OSError as exc:
            part.unlink(missing_ok=True)
            print(f"error: cannot write {out}: {exc}", file=sys.stderr)
            return 2
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        os.replace(part, out)
        await log_access(case_id, f"cli:{getpass.getuser()}", "export", manifest_sha256=result.sha256,
                         files=result.files, file=str(out))
    print(f"wrote {out}: {result.files} files, manifest sha256 {result.sha256}")
    if not result.verify_ok:
        print("warning: the case does not verify; see verify_report.txt in the archive", file=sys.stderr)
    return 0
