"""Who someone's manager is, the DingTalk way: `manager_userid` when the directory has it
("主管", only set for some users), else the head of the person's department, walking up to the
parent department when that head is the person themselves (a department head's manager)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from bot.platforms.dingtalk.api import Department, DingTalkApi, DingTalkUser
from bot.platforms.dingtalk.errors import UnknownUser
from chat.connector import DirectoryUser


async def manager_of(api: DingTalkApi, user: DingTalkUser, *, max_depth: int = 10) -> str | None:
    if user.manager_userid and user.manager_userid != user.userid:
        return user.manager_userid
    for dept_id in user.dept_ids:
        current: int | None = dept_id
        for _ in range(max_depth):
            if current is None:
                break
            dept = await api.get_department(current)
            head = next((u for u in dept.manager_userids if u != user.userid), None)
            if head:
                return head
            current = dept.parent_id if dept.parent_id not in (None, current) else None
    return None


class DingTalkDirectory:
    """The org as `chat.connector.Directory`: every user of every department (contacts calls are
    exempt from the monthly budget), with the manager resolved as above."""

    def __init__(self, api: DingTalkApi, *, root: int = 1) -> None:
        self.api = api
        self.root = root

    async def users(self) -> AsyncIterator[DirectoryUser]:
        depts = [Department(self.root, ""), *await self.api.walk_departments(self.root)]
        names = {d.dept_id: d.name for d in depts}
        seen: set[str] = set()
        for dept in depts:
            for userid in await self.api.list_user_ids(dept.dept_id):
                if userid in seen:  # someone in two departments is listed once
                    continue
                seen.add(userid)
                try:
                    user = await self.api.get_user(userid)
                except UnknownUser:  # left between the listing and the look-up
                    continue
                if not user.active:
                    continue
                yield await self._entry(user, names)

    async def user(self, user_id: str) -> DirectoryUser | None:
        try:
            user = await self.api.get_user(user_id)
        except UnknownUser:
            return None
        return await self._entry(user, {})

    async def _entry(self, user: DingTalkUser, names: dict[int, str]) -> DirectoryUser:
        dept_name = ""
        if user.dept_ids:
            first = user.dept_ids[0]
            dept_name = names.get(first) or (await self.api.get_department(first)).name
        manager = await manager_of(self.api, user) or ""
        raw = user.raw
        return DirectoryUser(user_id=user.userid, name=user.name, title=user.title, department=dept_name,
                             manager_user_id=manager, mobile=str(raw.get("mobile") or ""),
                             email=str(raw.get("email") or ""))
