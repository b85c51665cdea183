"""A fake WeCom API on 127.0.0.1 for the real client code: records every request, keeps tokens,
task ids and response codes the way WeCom does, and answers scripted faults."""

from __future__ import annotations

import secrets
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

CORP_ID = "ww1436e0e65a779aee"
SECRET = "fake-app-secret-0123456789abcdef"
AGENT_ID = 1000002


@dataclass
class FakeWeCom:
    expires_in: int = 7200
    delay: float = 0.0
    calls: Counter[str] = field(default_factory=Counter)
    sent: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    # path -> queue of errcodes to answer before behaving normally
    faults: dict[str, deque[int]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    task_ids: set[str] = field(default_factory=set)
    codes: dict[str, bool] = field(default_factory=dict)  # response_code -> used
    oauth_codes: dict[str, str] = field(default_factory=dict)
    recalled: list[str] = field(default_factory=list)
    # WeCom's limits: above 30 messages a minute to one member it answers ok and drops the message
    # (recorded here, so a test can say none was); above `max_concurrent` calls in flight, 45033.
    member_per_minute: int = 30
    dropped: list[dict[str, Any]] = field(default_factory=list)
    max_concurrent: int | None = None
    limit_errors: int = 0
    _member_times: dict[str, deque[float]] = field(default_factory=dict)
    _in_flight: int = 0

    def fail(self, path: str, *codes: int) -> None:
        self.faults.setdefault(path, deque()).extend(codes)

    def revoke_tokens(self) -> None:
        self.tokens.clear()

    def issue_code(self) -> str:
        code = secrets.token_hex(8)
        self.codes[code] = False
        return code

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/cgi-bin/gettoken", self._gettoken)
        app.router.add_post("/cgi-bin/message/send", self._send)
        app.router.add_post("/cgi-bin/message/update_template_card", self._update)
        app.router.add_post("/cgi-bin/message/recall", self._recall)
        app.router.add_get("/cgi-bin/user/get", self._user_get)
        app.router.add_get("/cgi-bin/department/list", self._departments)
        app.router.add_get("/cgi-bin/user/list", self._user_list)
        app.router.add_get("/cgi-bin/auth/getuserinfo", self._getuserinfo)
        return app

    async def _common(self, request: web.Request) -> web.Response | None:
        import asyncio

        self.calls[request.path] += 1
        if self.max_concurrent is not None and self._in_flight >= self.max_concurrent:
            self.limit_errors += 1
            return web.json_response({"errcode": 45033, "errmsg": "api concurrent out of limit"})
        self._in_flight += 1
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
        finally:
            self._in_flight -= 1
        queue = self.faults.get(request.path)
        if queue:
            return web.json_response({"errcode": queue.popleft(), "errmsg": "scripted"})
        if request.path != "/cgi-bin/gettoken" and request.query.get("access_token") not in self.tokens:
            return web.json_response({"errcode": 42001, "errmsg": "access_token expired"})
        return None

    async def _gettoken(self, request: web.Request) -> web.Response:
        if (answer := await self._common(request)) is not None:
            return answer
        if request.query.get("corpid") != CORP_ID or request.query.get("corpsecret") != SECRET:
            return web.json_response({"errcode": 40001, "errmsg": "invalid credential"})
        token = secrets.token_hex(16)
        self.tokens.add(token)
        return web.json_response({"errcode": 0, "errmsg": "ok", "access_token": token,
                                  "expires_in": self.expires_in})

    async def _send(self, request: web.Request) -> web.Response:
        if (answer := await self._common(request)) is not None:
            return answer
        body = await request.json()
        card = body.get("template_card") or {}
        task = card.get("task_id")
        if task is not None:
            if task in self.task_ids:
                return web.json_response({"errcode": 42018, "errmsg": "task_id exist"})
            self.task_ids.add(task)
        users = [u for u in body.get("touser", "").split("|") if u]
        known = [u for u in users if not self.users or u in self.users]
        if not known:
            return web.json_response({"errcode": 81013, "errmsg": "user & party & tag all invalid"})
        now = time.monotonic()
        for u in known:
            times = self._member_times.setdefault(u, deque())
            while times and times[0] <= now - 60:
                times.popleft()
            times.append(now)
        if any(len(self._member_times[u]) > self.member_per_minute for u in known):
            self.dropped.append(body)  # WeCom's answer is ok; the member never sees it
        else:
            self.sent.append(body)
        out: dict[str, Any] = {"errcode": 0, "errmsg": "ok", "msgid": f"msg{len(self.sent) + len(self.dropped)}",
                               "invaliduser": "|".join(u for u in users if u not in known)}
        if card.get("card_type") in ("button_interaction", "vote_interaction", "multiple_interaction"):
            out["response_code"] = self.issue_code()
        return web.json_response(out)

    async def _update(self, request: web.Request) -> web.Response:
        if (answer := await self._common(request)) is not None:
            return answer
        body = await request.json()
        code = body.get("response_code")
        if code not in self.codes or self.codes[code]:
            return web.json_response({"errcode": 40078, "errmsg": "invalid response_code"})  # our choice [U]
        self.codes[code] = True
        self.updates.append(body)
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def _recall(self, request: web.Request) -> web.Response:
        if (answer := await self._common(request)) is not None:
            return answer
        msgid = (await request.json()).get("msgid")
        if msgid not in {f"msg{i}" for i in range(1, len(self.sent) + len(self.dropped) + 1)} or msgid in self.recalled:
            return web.json_response({"errcode": 86014, "errmsg": "invalid msgid"})
        self.recalled.append(msgid)
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def _user_get(self, request: web.Request) -> web.Response:
        if (answer := await self._common(request)) is not None:
            return answer
        user = self.users.get(request.query.get("userid", ""))
        if user is None:
            return web.json_response({"errcode": 60111, "errmsg": "userid not found"})
        return web.json_response({"errcode": 0, "errmsg": "ok", **user})

    async def _departments(self, request: web.Request) -> web.Response:
        if (answer := await self._common(request)) is not None:
            return answer
        depts = sorted({d for u in self.users.values() for d in u.get("department", [])})
        return web.json_response({"errcode": 0, "errmsg": "ok",
                                  "department": [{"id": d, "name": f"部门{d}", "parentid": 1} for d in depts]})

    async def _user_list(self, request: web.Request) -> web.Response:
        if (answer := await self._common(request)) is not None:
            return answer
        dept = int(request.query.get("department_id", "0"))
        members = [u for u in self.users.values() if dept in u.get("department", [])]
        return web.json_response({"errcode": 0, "errmsg": "ok", "userlist": members})

    async def _getuserinfo(self, request: web.Request) -> web.Response:
        if (answer := await self._common(request)) is not None:
            return answer
        userid = self.oauth_codes.pop(request.query.get("code", ""), None)
        if userid is None:
            return web.json_response({"errcode": 40029, "errmsg": "invalid code"})
        return web.json_response({"errcode": 0, "errmsg": "ok", "userid": userid})
