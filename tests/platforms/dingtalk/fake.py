"""A fake DingTalk on 127.0.0.1: the Stream gateway (open-connection + WebSocket) and the OpenAPI
pieces the bot calls, in its own thread with its own event loop.

Its own thread because the SDK's `open_connection` is a sync `requests` call: a fake sharing the
client's loop would never get to answer it (research brief §1.7). Everything the tests read is
guarded by one lock; blocking `wait_*` helpers are meant for `asyncio.to_thread` (their timeouts
only turn a hang into a failure).

Behaviour knobs: `latency` (every OpenAPI answer waits this long), `qps` (more than this many
requests to one API within the last second are answered 403 `QpsLimitForAppkeyAndApi`), and
`script(path, *answers)` to queue canned answers for the next requests to a path.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
import uuid
from collections import Counter, defaultdict, deque
from typing import Any

from aiohttp import WSMsgType, web

CLIENT_ID = "dingtestappkey"
CLIENT_SECRET = "s3cret-never-logged"
GROUP_CID = "cidGroup=="


def frame(type_: str, topic: str, data: dict[str, Any], message_id: str | None = None) -> dict[str, Any]:
    """A server→client frame exactly as the gateway sends it: `data` is a JSON *string*."""
    return {"specVersion": "1.0", "type": type_,
            "headers": {"appId": "app", "connectionId": "conn", "contentType": "application/json",
                        "messageId": message_id or uuid.uuid4().hex, "time": str(int(time.time() * 1000)),
                        "topic": topic},
            "data": json.dumps(data, ensure_ascii=False)}


def bot_frame(message_id: str, text: str, *, sender: str = "hr001", msg_id: str | None = None,
              group: bool = False, webhook: str = "http://127.0.0.1:9/session") -> dict[str, Any]:
    data: dict[str, Any] = {
        "conversationId": GROUP_CID if group else "cid1to1==", "conversationType": "2" if group else "1",
        "msgId": msg_id or f"msg-{message_id}", "msgtype": "text", "text": {"content": f" {text} "},
        "senderNick": "张三", "senderStaffId": sender, "senderId": f"$:LWCP_v1:${sender}",
        "robotCode": CLIENT_ID, "sessionWebhook": webhook,
        "sessionWebhookExpiredTime": int(time.time() * 1000) + 90 * 60 * 1000, "createAt": 1690362102194,
        "isInAtList": group,
        "chatbotUserId": "$:LWCP_v1:$bot",
    }
    if group:
        data["atUsers"] = [{"dingtalkId": "$:LWCP_v1:$bot"}]
    return frame("CALLBACK", "/v1.0/im/bot/messages/get", data, message_id)


def card_frame(message_id: str, out_track_id: str, user_id: str, params: dict[str, Any],
               action_id: str = "act") -> dict[str, Any]:
    content = {"cardPrivateData": {"actionIds": [action_id], "params": params}}
    data = {"type": "actionCallback", "corpId": "dingcorp", "outTrackId": out_track_id, "userId": user_id,
            "userIdType": 1, "spaceType": "IM_ROBOT", "spaceId": user_id, "extension": "{}",
            "content": json.dumps(content, ensure_ascii=False)}
    return frame("CALLBACK", "/v1.0/card/instances/callback", data, message_id)


def ping_frame(message_id: str, opaque: str) -> dict[str, Any]:
    return frame("SYSTEM", "ping", {"opaque": opaque}, message_id)


def disconnect_frame(message_id: str) -> dict[str, Any]:
    return frame("SYSTEM", "disconnect", {"reason": "persistent connection is timeout"}, message_id)


class FakeDingTalk:
    def __init__(self, *, latency: float = 0.0, qps: float | None = None, token_ttl: int = 7200,
                 users: dict[str, dict[str, Any]] | None = None) -> None:
        self.latency = latency
        self.qps = qps
        self.token_ttl = token_ttl
        self.users = users or {}
        self.lock = threading.Condition()
        # what the tests read
        self.opens: list[dict[str, Any]] = []
        self.acks: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.requests: list[tuple[str, str]] = []  # (method, path) of every OpenAPI request
        self.card_requests: Counter[str] = Counter()  # createAndDeliver requests per outTrackId (all)
        self.cards: dict[str, dict[str, Any]] = {}  # outTrackId -> body of the request that made it
        self.cards_made: Counter[str] = Counter()  # cards made per outTrackId (must stay 1)
        # every card change in order: the bodies of PUT /v1.0/card/instances, and the card data a
        # click's ACK carried (DingTalk applies it to the clicked card; marked "via": "ack")
        self.updates: list[dict[str, Any]] = []
        self.oto: list[dict[str, Any]] = []
        self.session_replies: list[dict[str, Any]] = []  # bodies posted to a message's sessionWebhook
        self.oauth_codes: dict[str, str] = {}  # single-use sign-in code -> userid (OAuth and 免登)
        self.throttled = 0
        self.token_requests = 0
        self.connections = 0
        self.open_gate: threading.Event | None = None
        # internals
        self._tokens: set[str] = set()
        self._token_seq = itertools.count(1)
        self._tickets: set[str] = set()
        self._scripts: dict[str, deque[tuple[int, Any]]] = defaultdict(deque)
        self._lose_answer: dict[str, float] = {}
        self._hits: dict[str, deque[float]] = defaultdict(deque)
        self._ws: web.WebSocketResponse | None = None
        self._ack_hook: Any = None  # set by `blast`: called (in the fake's loop) with each ACKed messageId
        self._queued: list[dict[str, Any]] = []
        self._callbacks: dict[str, str] = {}  # messageId of a card callback pushed -> its outTrackId
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- lifecycle (called from the test's thread) ------------------------------------------

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def open_url(self) -> str:
        return self.base + "/v1.0/gateway/connections/open"

    def start(self) -> FakeDingTalk:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="fake-dingtalk", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake DingTalk did not start")
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def _serve(self, ready: threading.Event) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        app = web.Application()
        app.router.add_post("/v1.0/gateway/connections/open", self._open)
        app.router.add_get("/connect", self._connect)
        app.router.add_post("/v1.0/oauth2/accessToken", self._token)
        app.router.add_post("/session/{token}", self._session_webhook)
        app.router.add_get("/_stats", self._stats)
        app.router.add_post("/_blast", self._blast_route)
        app.router.add_post("/v1.0/oauth2/userAccessToken", self._user_token)
        app.router.add_get("/v1.0/contact/users/me", self._users_me)
        app.router.add_route("*", "/{path:.*}", self._api)
        self._runner = web.AppRunner(app, access_log=None)
        loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        ready.set()
        loop.run_forever()
        loop.close()

    async def _shutdown(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- test controls (thread-safe) --------------------------------------------------------

    def push(self, *frames: dict[str, Any]) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self._push(list(frames)), self._loop).result(10)

    def blast(self, frames: list[dict[str, Any]], window: int, timeout: float = 600.0) -> dict[str, float]:
        """Push `frames` keeping at most `window` un-ACKed (a closed loop, like `window` busy users);
        returns each frame's push→ACK latency in seconds, timed in the fake's own loop."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(self._blast(frames, window), self._loop).result(timeout)

    async def _blast(self, frames: list[dict[str, Any]], window: int) -> dict[str, float]:
        ws = self._ws
        assert ws is not None, "no client connected"
        slots = asyncio.Semaphore(window)
        sent: dict[str, float] = {}
        took: dict[str, float] = {}

        def acked(message_id: str) -> None:
            if message_id in sent and message_id not in took:
                took[message_id] = time.perf_counter() - sent[message_id]
                slots.release()

        self._ack_hook = acked
        try:
            for f in frames:
                await slots.acquire()
                mid = f["headers"]["messageId"]
                sent[mid] = time.perf_counter()
                await ws.send_str(json.dumps(f, ensure_ascii=False))
            for _ in range(window):
                await slots.acquire()
        finally:
            self._ack_hook = None
        return took

    def drop_socket(self) -> None:
        """Close the client's socket abruptly (no close frame), like a network failure."""
        assert self._loop is not None

        async def drop() -> None:
            if self._ws is not None and self._ws._req is not None and self._ws._req.transport is not None:
                self._ws._req.transport.abort()
        asyncio.run_coroutine_threadsafe(drop(), self._loop).result(10)

    def script(self, path: str, *answers: tuple[int, Any]) -> None:
        with self.lock:
            self._scripts[path].extend(answers)

    def lose_next_answer(self, path: str, delay: float) -> None:
        """The next request to `path` is carried out, but its answer comes `delay` s late (a client
        timeout after the server acted: the case where only an idempotency key prevents a duplicate)."""
        with self.lock:
            self._lose_answer[path] = delay

    def expire_tokens(self) -> None:
        """Every token issued so far is refused from now on (what a token past 7200 s looks like)."""
        with self.lock:
            self._tokens.clear()

    @property
    def session_webhook(self) -> str:
        return f"{self.base}/session/s-{uuid.uuid4().hex[:8]}"

    def wait_for(self, what: Any, timeout: float = 10.0) -> None:
        """Block until `what()` (read under the lock) is true."""
        with self.lock:
            if not self.lock.wait_for(what, timeout):
                raise AssertionError("condition not reached in time")

    def wait_ack(self, message_id: str, timeout: float = 10.0, count: int = 1) -> dict[str, Any]:
        with self.lock:
            if not self.lock.wait_for(lambda: len(self.acks.get(message_id, ())) >= count, timeout):
                raise AssertionError(f"fewer than {count} ACKs for {message_id}")
            return self.acks[message_id][0]

    def wait_connections(self, n: int, timeout: float = 10.0) -> None:
        with self.lock:
            if not self.lock.wait_for(lambda: self.connections >= n, timeout):
                raise AssertionError(f"{self.connections} connections, wanted {n}")

    def wait_opens(self, n: int, timeout: float = 10.0) -> None:
        with self.lock:
            if not self.lock.wait_for(lambda: len(self.opens) >= n, timeout):
                raise AssertionError(f"{len(self.opens)} open-connection requests, wanted {n}")

    def wait_disconnected(self, timeout: float = 10.0) -> None:
        with self.lock:
            if not self.lock.wait_for(lambda: self._ws is None, timeout):
                raise AssertionError("client still connected")

    # -- gateway ----------------------------------------------------------------------------

    async def _open(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("clientId") != CLIENT_ID or body.get("clientSecret") != CLIENT_SECRET:
            return web.json_response({"code": "invalidClientIdOrSecret"}, status=401)
        ticket = uuid.uuid4().hex
        with self.lock:
            self.opens.append(body)
            self.lock.notify_all()
            path = "/v1.0/gateway/connections/open"
            scripted = self._scripts[path].popleft() if self._scripts[path] else None
            self._tickets.add(ticket)
        if self.open_gate is not None:  # the test decides when the gateway answers
            await asyncio.to_thread(self.open_gate.wait, 10)
        if scripted is not None:
            return web.json_response(scripted[1], status=scripted[0])
        return web.json_response({"endpoint": f"ws://127.0.0.1:{self.port}/connect", "ticket": ticket})

    async def _connect(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        with self.lock:
            if ticket not in self._tickets:  # single use, like the real 90 s ticket
                return web.Response(status=403)
            self._tickets.discard(ticket)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        with self.lock:
            self._ws = ws
            self.connections += 1
            queued, self._queued = self._queued, []
            self.lock.notify_all()
        for f in queued:
            await ws.send_str(json.dumps(f, ensure_ascii=False))
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                ack = json.loads(msg.data)
                with self.lock:
                    self.acks[ack["headers"]["messageId"]].append(ack)
                    self._apply_ack(ack)
                    self.lock.notify_all()
                if self._ack_hook is not None:
                    self._ack_hook(ack["headers"]["messageId"])
        with self.lock:
            if self._ws is ws:
                self._ws = None
            self.lock.notify_all()
        return ws

    async def _push(self, frames: list[dict[str, Any]]) -> None:
        with self.lock:
            for f in frames:
                if f["headers"].get("topic") == "/v1.0/card/instances/callback":
                    self._callbacks[f["headers"]["messageId"]] = json.loads(f["data"])["outTrackId"]
        ws = self._ws
        if ws is None or ws.closed:
            with self.lock:
                self._queued.extend(frames)
            return
        for f in frames:
            await ws.send_str(json.dumps(f, ensure_ascii=False))

    # -- OpenAPI ----------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        body = await request.json()
        with self.lock:
            self.token_requests += 1
            path = "/v1.0/oauth2/accessToken"
            scripted = self._scripts[path].popleft() if self._scripts[path] else None
        await asyncio.sleep(self.latency)
        if scripted is not None:
            return web.Response(text=str(scripted[1]), status=scripted[0])
        if body.get("appKey") != CLIENT_ID or body.get("appSecret") != CLIENT_SECRET:
            return web.json_response({"code": "invalidClientIdOrSecret", "message": "无效的clientId或者clientSecret"},
                                     status=400)
        token = f"tok-{next(self._token_seq)}"
        with self.lock:
            self._tokens.add(token)
        return web.json_response({"accessToken": token, "expireIn": self.token_ttl})

    def _throttle(self, path: str) -> bool:
        if self.qps is None:
            return False
        now = time.monotonic()
        hits = self._hits[path]
        while hits and hits[0] <= now - 1.0:
            hits.popleft()
        hits.append(now)
        return len(hits) > self.qps

    async def _api(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["path"]
        old = path.startswith("/topapi")
        token = request.query.get("access_token", "") if old else request.headers.get("x-acs-dingtalk-access-token", "")
        body = await request.json() if request.can_read_body else {}
        with self.lock:
            self.requests.append((request.method, path))
            if path == "/v1.0/card/instances/createAndDeliver":  # every attempt, answered or not
                self.card_requests[body.get("outTrackId", "")] += 1
            scripted = self._scripts[path].popleft() if self._scripts[path] else None
            throttled = self._throttle(path)
            token_ok = token in self._tokens
            if throttled:
                self.throttled += 1
        await asyncio.sleep(self.latency)
        if scripted is not None:
            status, answer = scripted
            return web.json_response(answer, status=status) if not isinstance(answer, str) else \
                web.Response(text=answer, status=status, content_type="text/html")
        if not token_ok:
            return web.json_response({"errcode": 88, "sub_code": "40014", "sub_msg": "不合法的access_token"}) if old \
                else web.json_response({"code": "InvalidAuthentication", "message": "不合法的access_token"}, status=401)
        if throttled:
            return web.json_response({"errcode": 90018, "errmsg": "qps limit"}) if old else web.json_response(
                {"code": "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi", "message": "调用过于频繁"}, status=403)
        handler = {("POST", "/v1.0/card/instances/createAndDeliver"): self._create_card,
                   ("PUT", "/v1.0/card/instances"): self._update_card,
                   ("POST", "/v1.0/robot/oToMessages/batchSend"): self._batch_send,
                   ("POST", "/topapi/v2/user/get"): self._user_get,
                   ("POST", "/topapi/v2/department/listsub"): self._dept_listsub,
                   ("POST", "/topapi/v2/department/get"): self._dept_get,
                   ("POST", "/topapi/user/listid"): self._user_listid,
                   ("POST", "/topapi/user/getbyunionid"): self._by_unionid,
                   ("POST", "/topapi/v2/user/getuserinfo"): self._getuserinfo}.get((request.method, path))
        if handler is None:
            return web.json_response({"code": "notFound", "message": path}, status=404)
        response = handler(body)
        with self.lock:
            late = self._lose_answer.pop(path, 0.0)
        await asyncio.sleep(late)
        return response

    def _apply_ack(self, ack: dict[str, Any]) -> None:
        """A card callback's ACK may answer with card data: DingTalk shows it on the clicked card
        (the callback response, `{"cardUpdateOptions", "cardData": {"cardParamMap"}}`), no API call."""
        oid = self._callbacks.get(ack["headers"]["messageId"])
        if oid is None or oid not in self.cards or int(ack.get("code", 0)) != 200:
            return
        try:
            response = json.loads(ack.get("data") or "{}").get("response")
        except (ValueError, AttributeError):
            return
        if isinstance(response, dict) and (response.get("cardData") or {}).get("cardParamMap"):
            self.updates.append({"outTrackId": oid, "cardData": response["cardData"],
                                 "cardUpdateOptions": response.get("cardUpdateOptions"), "via": "ack"})

    def _create_card(self, body: dict[str, Any]) -> web.Response:
        oid = body.get("outTrackId", "")
        if not oid:
            return web.json_response({"code": "param.outTrackIdEmpty"}, status=400)
        with self.lock:
            if oid not in self.cards:  # the same outTrackId again does not make a second card
                self.cards[oid] = body
                self.cards_made[oid] += 1
            self.lock.notify_all()
        space = body["openSpaceId"].rsplit(".", 1)[-1]
        return web.json_response({"success": True, "result": {"outTrackId": oid, "deliverResults": [
            {"spaceType": "IM_ROBOT", "spaceId": space, "success": True, "carrierId": f"carrier-{oid}"}]}})

    def _update_card(self, body: dict[str, Any]) -> web.Response:
        with self.lock:
            if body.get("outTrackId") not in self.cards:
                return web.json_response({"code": "cardInstance.notFound", "message": "卡片不存在"}, status=400)
            self.updates.append(body)
            self.lock.notify_all()
        return web.json_response({"success": True, "result": True})

    def _batch_send(self, body: dict[str, Any]) -> web.Response:
        with self.lock:
            self.oto.append(body)
            self.lock.notify_all()
        invalid = [u for u in body["userIds"] if self.users and u not in self.users]
        return web.json_response({"processQueryKey": f"pqk-{len(self.oto)}", "invalidStaffIdList": invalid,
                                  "flowControlledStaffIdList": [], "filteredStaffIdList": []})

    def _user_get(self, body: dict[str, Any]) -> web.Response:
        user = self.users.get(body.get("userid", ""))
        if user is None:
            return web.json_response({"errcode": 60121, "errmsg": "找不到该用户"})
        return web.json_response({"errcode": 0, "errmsg": "ok", "result": user})

    def _dept_listsub(self, body: dict[str, Any]) -> web.Response:
        tree = {1: [{"dept_id": 2, "name": "研发部", "parent_id": 1}, {"dept_id": 3, "name": "人事部", "parent_id": 1}],
                2: [{"dept_id": 4, "name": "后端组", "parent_id": 2}]}
        return web.json_response({"errcode": 0, "result": tree.get(int(body["dept_id"]), [])})

    def _dept_get(self, body: dict[str, Any]) -> web.Response:
        dept_id = int(body["dept_id"])
        heads = [u for u, info in self.users.items()
                 if any(x.get("dept_id") == dept_id and x.get("leader") for x in info.get("leader_in_dept", ()))]
        parents = {1: None, 2: 1, 3: 1, 4: 2}
        if dept_id not in parents:
            return web.json_response({"errcode": 60003, "errmsg": "部门不存在"})
        return web.json_response({"errcode": 0, "result": {"dept_id": dept_id, "name": f"dept{dept_id}",
                                                          "parent_id": parents[dept_id],
                                                          "dept_manager_userid_list": heads}})

    def _user_listid(self, body: dict[str, Any]) -> web.Response:
        ids = [u for u, info in self.users.items() if int(body["dept_id"]) in info.get("dept_id_list", ())]
        return web.json_response({"errcode": 0, "result": {"userid_list": ids}})

    # -- sign-in and the session webhook ----------------------------------------------------

    async def _session_webhook(self, request: web.Request) -> web.Response:
        body = await request.json()
        with self.lock:
            self.session_replies.append(body)
            self.lock.notify_all()
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def _user_token(self, request: web.Request) -> web.Response:
        body = await request.json()
        with self.lock:
            userid = self.oauth_codes.pop(str(body.get("code", "")), None)  # single use
        if userid is None or body.get("clientId") != CLIENT_ID or body.get("clientSecret") != CLIENT_SECRET \
                or body.get("grantType") != "authorization_code":
            return web.json_response({"code": "invalidCode", "message": "code invalid"}, status=400)
        return web.json_response({"accessToken": f"USER-{userid}", "expireIn": 7200})

    async def _users_me(self, request: web.Request) -> web.Response:
        token = request.headers.get("x-acs-dingtalk-access-token", "")
        if not token.startswith("USER-"):
            return web.json_response({"code": "InvalidAuthentication"}, status=401)
        return web.json_response({"unionId": "U-" + token.removeprefix("USER-"), "nick": "x"})

    def _by_unionid(self, body: dict[str, Any]) -> web.Response:
        userid = str(body.get("unionid", "")).removeprefix("U-")
        if self.users and userid not in self.users:
            return web.json_response({"errcode": 60121, "errmsg": "找不到该用户"})
        return web.json_response({"errcode": 0, "result": {"userid": userid, "contact_type": 0}})

    def _getuserinfo(self, body: dict[str, Any]) -> web.Response:
        with self.lock:
            userid = self.oauth_codes.pop(str(body.get("code", "")), None)
        if userid is None:
            return web.json_response({"errcode": 40078, "errmsg": "不存在的临时授权码"})
        return web.json_response({"errcode": 0, "result": {"userid": userid, "name": "x"}})

    async def _stats(self, request: web.Request) -> web.Response:
        """Counters for a bench that runs the fake in its own process (no GIL shared with the client)."""
        with self.lock:
            return web.json_response({
                "throttled": self.throttled, "made": len(self.cards_made),
                "duplicates": sum(n - 1 for n in self.cards_made.values() if n > 1),
                "card_requests": sum(self.card_requests.values()), "requests": len(self.requests),
                "connections": self.connections, "session_replies": len(self.session_replies)})

    async def _blast_route(self, request: web.Request) -> web.Response:
        """`blast` for a bench driving the fake in its own process: {"frames", "window"} → each
        frame's push→ACK seconds and its ACK code."""
        body = await request.json()
        took = await self._blast(body["frames"], int(body["window"]))
        with self.lock:
            codes = {mid: self.acks[mid][0]["code"] for mid in took}
        return web.json_response({"took": took, "codes": codes})


def main() -> None:
    """`python -m tests.platforms.dingtalk.fake --latency 0.1 --qps 20`: prints the port, serves until
    stdin closes."""
    import argparse
    import sys

    ap = argparse.ArgumentParser()
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--qps", type=float, default=None)
    a = ap.parse_args()
    fake = FakeDingTalk(latency=a.latency, qps=a.qps).start()
    print(fake.port, flush=True)
    sys.stdin.read()
    fake.stop()


if __name__ == "__main__":
    main()
