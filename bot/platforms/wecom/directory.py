"""WeCom's address book as `PlatformPerson`s: every department, its members, their direct leader.

`direct_leader` lists only leaders inside the app's visibility; a member without one keeps no
manager here (HR's CSV or the department leader may supply one later).
"""

from __future__ import annotations

from collections.abc import Callable

from bot.platforms.wecom.api import WeComAPI
from storage.people_sync import PlatformPerson


async def fetch_people(api: WeComAPI, *, progress: Callable[[int, int], None] | None = None) -> list[PlatformPerson]:
    departments = await api.department_list()
    names = {int(d["id"]): str(d.get("name", "")) for d in departments if "id" in d}
    people: dict[str, PlatformPerson] = {}
    for i, dept in enumerate(sorted(names), start=1):
        for user in await api.user_list(dept):
            userid = str(user.get("userid", ""))
            if not userid or userid in people:
                continue
            main = user.get("main_department") or (user.get("department") or [dept])[0]
            leaders = [str(x) for x in (user.get("direct_leader") or []) if x]
            people[userid] = PlatformPerson(
                userid=userid, name=str(user.get("name", "")), department=names.get(int(main), ""),
                position=str(user.get("position", "")), manager_userid=leaders[0] if leaders else None)
        if progress:
            progress(i, len(names))
    return list(people.values())
