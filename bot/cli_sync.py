"""`python -m bot directory sync --platform NAME`: a platform's address book into ours.

Generic: any connector that offers a `directory` (see `chat.connector.Directory`) can be synced.
People are upserted like the CSV import (`storage.people_sync`): new people are created with
their platform user id as employee id; known ones get only the fields the platform owns (name,
department, position, manager) refreshed; what HR owns (wages, dates, roles) is never touched.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any


def run(args: argparse.Namespace) -> int:
    from bot.platforms import registry
    from bot.runtime import database
    from config.settings import get_settings
    from storage.people_sync import PlatformPerson, sync_people

    settings = get_settings()
    try:
        connector = registry.build(settings, [args.platform])[args.platform]
    except registry.PlatformError as exc:  # unknown platform, or its settings: one line naming them
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if connector.directory is None:
        print(f"error: {args.platform} offers no directory to sync", file=sys.stderr)
        return 2
    column = registry.user_id_column(args.platform)

    async def go() -> int:
        people: list[PlatformPerson] = []
        try:
            async for u in connector.directory.users():
                people.append(PlatformPerson(userid=u.user_id, name=u.name, department=u.department,
                                             position=u.title, manager_userid=u.manager_user_id or None))
                if len(people) % 100 == 0:
                    print(f"\rfetched {len(people)} people", end="", file=sys.stderr, flush=True)
        except Exception as exc:  # the platform's own error, already naming the cause and fix
            print(f"\nerror: {args.platform} directory: {getattr(exc, 'message', None) or exc}", file=sys.stderr)
            return 1
        finally:
            await connector.stop()
        print(f"\rfetched {len(people)} people from {args.platform}", file=sys.stderr, flush=True)

        def progress(done: int, total: int) -> None:
            print(f"\rsyncing {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)

        async with database(settings):
            report = await sync_people(column, people, progress=progress)
        for why in report.skipped:
            print(f"skipped {why}", file=sys.stderr)
        print(f"synced from {args.platform}: {report.created} created, {report.updated} updated, "
              f"{report.unchanged} unchanged, {len(report.skipped)} skipped")
        return 0

    return asyncio.run(go())


def add_parser(directory_actions: Any) -> None:
    ds = directory_actions.add_parser("sync", help="upsert people from a platform's address book")
    ds.add_argument("--platform", required=True, help="a platform whose connector has a directory (e.g. wecom)")
    ds.set_defaults(func=run)
