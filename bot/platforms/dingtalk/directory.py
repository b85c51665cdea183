"""Who someone's manager is, the DingTalk way: `manager_userid` when the directory has it
("主管", only set for some users), else the head of the person's department, walking up to the
parent department when that head is the person themselves (a department head's manager)."""

from __future__ import annotations

from bot.platforms.dingtalk.api import DingTalkApi, DingTalkUser


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
