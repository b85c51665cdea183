"""`python -m bot` (also the `offboard-bot` console script)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from config.settings import SettingsError, get_settings


def _run(coro_factory) -> int:  # type: ignore[no-untyped-def]
    return asyncio.run(coro_factory())


def _cmd_serve(args: argparse.Namespace) -> int:
    from bot.app import serve
    from bot.cli_keys import serving_key_problem
    from bot.platforms import registry

    settings = get_settings()
    try:
        # Every platform's settings, before migrating or loading the demo: a refused start changes nothing.
        connectors = registry.build(settings)
    except registry.PlatformError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    problem = serving_key_problem(settings, demo=args.demo)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.migrate:
        _cmd_migrate(args)
    if args.demo:
        from bot.demo import load_demo

        asyncio.run(load_demo(settings))
    asyncio.run(serve(settings, connectors))  # built once: start-up warnings are logged once
    return 0


def _cmd_migrate(args: argparse.Namespace) -> int:
    from bot.runtime import configure
    from storage.db import migrate

    settings = get_settings()
    configure(settings)  # migration 0005 encrypts old rows with the key from SECRET_KEY
    asyncio.run(migrate(settings.database_url))
    print(f"migrations applied to {settings.database_url.split('://', 1)[0]} database")
    return 0


def _cmd_directory_import(args: argparse.Namespace) -> int:
    from bot.runtime import database
    from storage.csvtext import EncodingError, decode_csv
    from storage.directory import DirectoryError, import_csv

    path = Path(args.file)
    try:
        text, used = decode_csv(path.read_bytes(), args.encoding)
    except OSError as exc:
        print(f"error: cannot read {path}: {exc}", file=sys.stderr)
        return 2
    except EncodingError as exc:
        print(f"error: {path}: {exc}", file=sys.stderr)
        return 2
    if used not in ("utf-8", "utf-8-sig"):
        print(f"reading {path} as {used}", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        print(f"\rimporting {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)

    async def go() -> int:
        async with database(get_settings()):
            try:
                report = await import_csv(text, skip_invalid=args.skip_invalid, progress=progress)
            except DirectoryError as exc:
                print(f"error: {path}: {exc}", file=sys.stderr)
                return 2
        for err in report.errors:
            print(f"{path}: {err}", file=sys.stderr)
        if not report.applied:
            print(f"nothing imported: {len(report.errors)} error(s); fix them or use --skip-invalid",
                  file=sys.stderr)
            return 1
        print(f"imported: {report.created} created, {report.updated} updated, {report.skipped} skipped")
        return 0

    return asyncio.run(go())


def _cmd_cases_list(args: argparse.Namespace) -> int:
    from bot.app import build_service
    from bot.runtime import database
    from handlers.queries import list_cases
    from storage import usage

    settings = get_settings()
    templates = build_service(settings).templates

    async def go() -> int:
        async with database(settings):
            rows = await list_cases(include_closed=args.all, tz=settings.tz, templates=templates)
            spent = await usage.month_usage()
        if not rows:
            print("no cases" if args.all else "no open cases")
        for r in rows:
            print("\t".join(str(x) for x in r))
        for u in spent:  # a platform's monthly API budget (DingTalk: 10,000 calls on a standard org)
            print(u.line(settings.language))
        return 0

    return asyncio.run(go())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="offboard-bot", description="Offboarding bot for DingTalk and WeCom")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("serve", help="run the bot (HTTP server, platforms, outbox relay, timers)")
    s.add_argument("--migrate", action="store_true", help="apply migrations first")
    s.add_argument("--demo", action="store_true", help="load the demo organisation first (idempotent)")
    s.set_defaults(func=_cmd_serve)

    m = sub.add_parser("migrate", help="apply database migrations")
    m.set_defaults(func=_cmd_migrate)

    d = sub.add_parser("directory", help="employee directory")
    dsub = d.add_subparsers(dest="directory_command", required=True, metavar="ACTION")
    di = dsub.add_parser("import", help="import employees from CSV (upsert)")
    di.add_argument("file", help="CSV with the header documented in the README")
    di.add_argument("--skip-invalid", action="store_true", help="import the good rows even if some are bad")
    di.add_argument("--encoding", help="file encoding (default: UTF-8, else GBK/GB18030 as Excel saves it)")
    di.set_defaults(func=_cmd_directory_import)
    from bot import cli_sync

    cli_sync.add_parser(dsub)

    c = sub.add_parser("cases", help="offboarding cases")
    csub = c.add_subparsers(dest="cases_command", required=True, metavar="ACTION")
    cl = csub.add_parser("list", help="list cases (open ones, overdue first)")
    cl.add_argument("--all", action="store_true", help="include completed and cancelled cases")
    cl.set_defaults(func=_cmd_cases_list)

    try:
        from bot import cli_calc
    except ImportError:  # pragma: no cover - settlement not installed
        pass
    else:
        cli_calc.add_parser(sub)
    for extra in ("cli_verify", "cli_demo", "cli_keys", "cli_export"):
        try:
            mod = __import__(f"bot.{extra}", fromlist=["add_parser"])
        except ImportError:
            continue
        mod.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> None:
    # Everything this process writes (database, WAL, secret, keys) is for its owner only.
    os.umask(0o077)
    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    if args.func is _cmd_serve:
        logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    else:
        # A one-shot command prints its own output; libraries speak only when something is wrong
        # (no "Tortoise-ORM shutdown" after every command), our own loggers at the configured level.
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        for ours in ("bot", "handlers", "signing", "storage", "workflow", "settlement"):
            logging.getLogger(ours).setLevel(settings.log_level)
    try:
        code = args.func(args)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    sys.exit(code)
