"""WeCom's address book: every department, its members, their direct leader.

`direct_leader` lists only leaders inside the app's visibility; a member without one keeps no
manager here (HR's CSV or the department leader may supply one later). Department names are
fetched once per connector (one `department/list`) and reused for single look-ups.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from bot.platforms.wecom.api import Permanent, WeComAPI
from chat.connector import DirectoryUser
from storage.people_sync import PlatformPerson

NOT_FOUND = 60111  # userid not found


def _user(raw: Mapping[str, Any], names: Mapping[int, str], fallback_dept: int | None = None) -> DirectoryUser:
    depts = [int(d) for d in raw.get("department") or [] if str(d).lstrip("-").isdigit()]
    main = raw.get("main_department") or (depts[0] if depts else fallback_dept)
    leaders = [str(x) for x in (raw.get("direct_leader") or []) if x]
    try:
        department = names.get(int(main), "") if main is not None else ""
    except (TypeError, ValueError):
        department = ""
    return DirectoryUser(user_id=str(raw.get("userid", "")), name=str(raw.get("name", "")),
                         title=str(raw.get("position", "") or ""), department=department,
                         manager_user_id=leaders[0] if leaders else "")


class WeComDirectory:
    def __init__(self, api: Callable[[], Awaitable[WeComAPI]],
                 progress: Callable[[int, int], None] | None = None) -> None:
        self._api = api
        self._names: dict[int, str] | None = None
        self.progress = progress  # (departments done, departments) while `users()` runs

    async def _departments(self) -> dict[int, str]:
        if self._names is None:
            api = await self._api()
            self._names = {int(d["id"]): str(d.get("name", "")) for d in await api.department_list() if "id" in d}
        return self._names

    async def users(self) -> AsyncIterator[DirectoryUser]:
        self._names = None  # a sync reads the departments afresh
        names = await self._departments()
        api = await self._api()
        seen: set[str] = set()
        for i, dept in enumerate(sorted(names), start=1):
            for raw in await api.user_list(dept):
                user = _user(raw, names, dept)
                if user.user_id and user.user_id not in seen:
                    seen.add(user.user_id)
                    yield user
            if self.progress:
                self.progress(i, len(names))

    async def user(self, user_id: str) -> DirectoryUser | None:
        api = await self._api()
        try:
            raw = await api.user_get(user_id)
        except Permanent as exc:
            if exc.code == NOT_FOUND:
                return None
            raise
        return _user(raw, await self._departments())


def person(user: DirectoryUser) -> PlatformPerson:
    return PlatformPerson(userid=user.user_id, name=user.name, department=user.department, position=user.title,
                          manager_userid=user.manager_user_id or None)


async def fetch_people(api: WeComAPI, *, progress: Callable[[int, int], None] | None = None) -> list[PlatformPerson]:
    async def get() -> WeComAPI:
        return api

    return [person(u) async for u in WeComDirectory(get, progress).users()]
