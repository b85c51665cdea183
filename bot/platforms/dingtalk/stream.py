"""Inbound DingTalk: the real `dingtalk-stream` client (0.24.3), with its unsafe parts replaced.

Kept from the SDK: the open-connection contract, frame classes, `route_message` (dispatch by
type/topic and the ACK it sends after the handler returned), `background_task` (closes the socket
on a `disconnect` frame), `SystemHandler` (the ping ACK echoing `opaque`) and `CallbackHandler`.

Replaced, because in 0.24.3 (research brief §1.7, §1.8):
- `open_connection` is a sync `requests.post` with no timeout, called on the event loop: ours has a
  timeout and `start()` runs it in a thread, so a dead gateway cannot freeze the loop.
- `start()` swallows `CancelledError` (one cancel does not stop it), sleeps a fixed 10 s after a
  dropped socket, and spawns an unbounded task per frame: ours stops on one cancel or `stop()`,
  backs off exponentially with jitter (1 s → 60 s; a clean close such as `disconnect` reconnects at
  once), and bounds in-flight frames (reading pauses when full).
- `import websockets.exceptions` here: in websockets ≥ 14 it is a lazy attribute, and the SDK's
  `except websockets.exceptions...` clauses die with AttributeError if nothing touched it first.

A frame is ACKed only after `dispatch` returned (the connector commits before returning); if it
raises there is no ACK, so DingTalk may redeliver. Redeliveries are absorbed by messageId (and
msgId) in a bounded in-memory LRU; the database inbox dedups durably later.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

import dingtalk_stream
import requests
import websockets
import websockets.exceptions  # binds the lazy attribute the SDK's except clauses use
from dingtalk_stream import AckMessage, CallbackHandler, CallbackMessage, ChatbotMessage, Credential, SystemHandler
from dingtalk_stream.frames import SystemMessage

from bot.platforms.dingtalk.inbound import BadFrame, Inbound, parse_card_callback, parse_text

log = logging.getLogger(__name__)

OPEN_PATH = "/v1.0/gateway/connections/open"
TOPIC_BOT = ChatbotMessage.TOPIC
TOPIC_CARD = CallbackHandler.TOPIC_CARD_CALLBACK

# What the connector does with an event; for a card click, the returned mapping (e.g.
# {"cardData": {"cardParamMap": {...}}}) goes back to DingTalk in the ACK.
Dispatch = Callable[[Inbound], Awaitable[Mapping[str, Any] | None]]


@dataclass(frozen=True)
class Backoff:
    base: float = 1.0
    cap: float = 60.0

    def delay(self, failures: int) -> float:
        # Full-ish jitter so many replicas dropped together do not reconnect in lock-step.
        return min(self.cap, self.base * 2 ** max(0, failures - 1)) * (0.5 + random.random() / 2)


class _SdkNoise(logging.Filter):
    """0.24.3 logs every (correctly ACKed) ping as 'unknown message topic'."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Must never raise: a failing filter would abort the SDK's route_message before its ACK.
        msg, args = record.msg, record.args
        return not (isinstance(msg, str) and msg.startswith("unknown message topic")
                    and isinstance(args, tuple) and bool(args) and args[0] == "ping")


class _Dedup:
    """messageId/msgId → the first delivery's ACK outcome, bounded LRU. A redelivery that arrives
    while the first is still being dispatched waits for it instead of dispatching again."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._seen: OrderedDict[str, asyncio.Future[tuple[int, Any] | None]] = OrderedDict()

    def find(self, keys: tuple[str, ...]) -> asyncio.Future[tuple[int, Any] | None] | None:
        for k in keys:
            fut = self._seen.get(k)
            if fut is not None:
                self._seen.move_to_end(k)
                return fut
        return None

    def claim(self, keys: tuple[str, ...]) -> asyncio.Future[tuple[int, Any] | None]:
        fut: asyncio.Future[tuple[int, Any] | None] = asyncio.get_running_loop().create_future()
        for k in keys:
            self._seen[k] = fut
        while len(self._seen) > self.size:
            self._seen.popitem(last=False)
        return fut

    def forget(self, keys: tuple[str, ...]) -> None:
        for k in keys:
            self._seen.pop(k, None)


class _Handler(CallbackHandler):
    def __init__(self, client: StreamClient, parse: Callable[[CallbackMessage], Inbound]) -> None:
        super().__init__()
        self.client = client
        self.parse = parse

    async def process(self, message: CallbackMessage) -> tuple[int, Any]:
        return await self.client._process(message, self.parse)


class _System(SystemHandler):
    def __init__(self, client: StreamClient) -> None:
        super().__init__()
        self.client = client

    async def process(self, message: SystemMessage) -> tuple[int, str]:
        # A watchdog can alert when the server has been silent (no ping) for minutes.
        self.client.last_system_frame = time.monotonic()
        return await super().process(message)


class StreamClient(dingtalk_stream.DingTalkStreamClient):
    """Run with `task = asyncio.create_task(client.start())`; end with `await client.stop()`."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        dispatch: Dispatch,
        *,
        open_url: str,
        http_timeout: float = 10.0,
        backoff: Backoff | None = None,
        max_in_flight: int = 100,
        dedup_size: int = 4096,
        websocket_options: Mapping[str, Any] | None = None,
    ) -> None:
        sdk_log = logging.getLogger(f"{__name__}.sdk")
        sdk_log.addFilter(_SdkNoise())
        super().__init__(Credential(client_id, client_secret), logger=sdk_log)
        self.dispatch = dispatch
        self.open_url = open_url
        self.http_timeout = http_timeout
        self.backoff = backoff or Backoff()
        self.websocket_options = {"open_timeout": 10, "close_timeout": 2, **(websocket_options or {})}
        self.system_handler = _System(self)
        self.system_handler.dingtalk_client = self
        self.register_callback_handler(TOPIC_BOT, _Handler(self, parse_text))
        self.register_callback_handler(TOPIC_CARD, _Handler(self, parse_card_callback))
        self._dedup = _Dedup(dedup_size)
        self._slots = asyncio.Semaphore(max_in_flight)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()
        self._runner: asyncio.Task[Any] | None = None
        self.connected = asyncio.Event()
        self.connections = 0  # sockets opened so far (a reconnect adds one)
        self.last_system_frame = 0.0

    def __repr__(self) -> str:
        return f"StreamClient(client_id={self.credential.client_id!r}, open_url={self.open_url!r})"

    # -- SDK overrides --------------------------------------------------------------------

    def open_connection(self) -> dict[str, Any] | None:
        """The SDK's call, bounded by a timeout and aimed at our URL (sync: `start` runs it in a thread)."""
        topics = [{"type": "CALLBACK", "topic": t} for t in self.callback_handler_map]
        if self._is_event_required:
            topics.append({"type": "EVENT", "topic": "*"})
        body = {"clientId": self.credential.client_id, "clientSecret": self.credential.client_secret,
                "subscriptions": topics, "ua": "offboard-bot/dingtalk-stream-0.24.3", "localIp": ""}
        try:
            resp = requests.post(self.open_url, json=body, timeout=self.http_timeout,
                                 headers={"Accept": "application/json"})
            resp.raise_for_status()
            answer = resp.json()
        except (requests.RequestException, ValueError) as exc:
            log.warning("dingtalk stream: open connection failed: %s", type(exc).__name__)
            return None
        if not isinstance(answer, dict) or not answer.get("endpoint") or not answer.get("ticket"):
            log.warning("dingtalk stream: open connection answered without endpoint/ticket")
            return None
        return answer

    async def start(self) -> None:
        self._runner = asyncio.current_task()
        self._stop.clear()
        self.pre_start()
        failures = 0
        while not self._stop.is_set():
            conn = await asyncio.to_thread(self.open_connection)
            if conn is None:
                failures += 1
                await self._pause(self.backoff.delay(failures))
                continue
            uri = f"{conn['endpoint']}?ticket={quote_plus(str(conn['ticket']))}"
            try:
                async with websockets.connect(uri, **self.websocket_options) as ws:
                    self.websocket = ws
                    self.connections += 1
                    failures = 0
                    self.connected.set()
                    await self._read(ws)
                # A clean close (the server's `disconnect`, or its close frame): reconnect at once.
            except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as exc:
                failures += 1
                log.warning("dingtalk stream: connection lost (%s), retry #%d", type(exc).__name__, failures)
                await self._pause(self.backoff.delay(failures))
            finally:
                self.connected.clear()

    async def stop(self, grace: float = 5.0) -> None:
        """Let frames being dispatched finish and ACK (up to `grace`), then close. No task is left."""
        self._stop.set()
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=grace)
        pending = set(self._in_flight)
        for t in pending:
            t.cancel()
        runner = self._runner
        if runner is not None and not runner.done() and runner is not asyncio.current_task():
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
        await asyncio.gather(*pending, return_exceptions=True)

    # -- internals ------------------------------------------------------------------------

    async def _pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            pass

    async def _read(self, ws: Any) -> None:
        async for raw in ws:
            if self._stop.is_set():
                return
            try:
                frame = json.loads(raw)
            except ValueError:
                log.warning("dingtalk stream: a frame that is not JSON was dropped")
                continue
            await self._slots.acquire()  # back-pressure: stop reading while max_in_flight are busy
            task = asyncio.create_task(self.background_task(frame))
            self._in_flight.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._slots.release()

    async def _process(self, message: CallbackMessage, parse: Callable[[CallbackMessage], Inbound]) -> tuple[int, Any]:
        try:
            event = parse(message)
        except BadFrame as exc:
            log.warning("dingtalk stream: %s (messageId %s)", exc, message.headers.message_id)
            return AckMessage.STATUS_BAD_REQUEST, str(exc)
        keys = event.dedup_keys
        earlier = self._dedup.find(keys)
        if earlier is not None:
            outcome = await asyncio.shield(earlier)
            if outcome is None:  # the first delivery failed: no ACK for this copy either
                raise RuntimeError("redelivered frame whose first delivery failed")
            return outcome
        fut = self._dedup.claim(keys)
        try:
            response = await self.dispatch(event)
        except BaseException:
            self._dedup.forget(keys)  # not committed: a later redelivery must be dispatched again
            fut.set_result(None)
            raise
        # A card click's answer may carry card updates; a bot message's ACK is a plain "OK".
        payload: Any = dict(response) if response else ({} if message.headers.topic == TOPIC_CARD else "OK")
        outcome = (AckMessage.STATUS_OK, payload)
        fut.set_result(outcome)
        return outcome
