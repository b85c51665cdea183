"""Platform-neutral inbound events and the router that hands them to handlers.

Read it like aiogram: handlers register with `@router.command("offboard", aliases=["离职"])` and
`@router.action("approve")`; middlewares wrap every dispatch, outermost first:

    dedup (inbox row, unique key)  ->  actor (platform id -> employee)  ->  language
        ->  authorisation (HR-only commands)  ->  handler

Dedup has two halves. The fast half looks the key up before anything runs, so a redelivery gets
the stored answer. The exact half is the unique index: a handler that changes state writes the
inbox row inside its own transaction (`ctx.record` as the service's `also`), so the effect and the
row commit together; a concurrent duplicate then fails on the index and is answered from the row
that won. Handlers that change nothing get their row written after them.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from tortoise.exceptions import IntegrityError

from cases.service import CaseService
from config.settings import Settings
from storage import hotpath
from storage.models import Employee
from workflow import cleantext

log = logging.getLogger("chat.router")

Kind = Literal["text", "action"]
HR_ROLES = frozenset({"hr", "admin"})
PENDING_POLLS = 40
PENDING_POLL_SECONDS = 0.05


@dataclass(frozen=True)
class Incoming:
    """One event from any platform, after the adapter verified and parsed it."""

    platform: str
    sender: str  # the platform's user id (the emulator uses employee ids)
    kind: Kind
    payload: Mapping[str, Any]  # text: {"text"}; action: {"card_id", "action", "form"}
    dedup_key: str  # the platform's message / callback id, prefixed with the platform
    chat_id: str = ""
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class Reply:
    """What the sender is told. `changed` is true when a transaction committed an effect."""

    ok: bool
    code: str
    text: str
    data: dict[str, Any] = field(default_factory=dict)
    changed: bool = False
    duplicate: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "code": self.code, "text": self.text, "data": self.data, "changed": self.changed}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, duplicate: bool = False) -> Reply:
        return cls(ok=bool(data.get("ok", True)), code=str(data.get("code", "duplicate")),
                   text=str(data.get("text", "")), data=dict(data.get("data") or {}),
                   changed=bool(data.get("changed", False)), duplicate=duplicate)


@dataclass
class Route:
    kind: Kind
    name: str
    handler: Handler
    hr_only: bool = False
    usage_zh: str = ""
    usage_en: str = ""
    aliases: tuple[str, ...] = ()


@dataclass
class Context:
    incoming: Incoming
    settings: Settings
    service: CaseService
    actor: Employee | None = None
    language: str = "zh"
    route: Route | None = None
    command: str = ""  # the word typed, e.g. "离职"
    args: str = ""
    recorded: bool = False  # the inbox row was written inside the handler's transaction
    # The answer a handler expects to give if its transaction commits; `record` stores it with the
    # row, which spares the answer's own UPDATE after the commit when the handler does give it.
    expected: Reply | None = None
    recorded_answer: dict[str, Any] | None = None

    def t(self, zh: str, en: str) -> str:
        return en if self.language == "en" else zh

    @property
    def action(self) -> str:
        return str(self.incoming.payload.get("action", ""))

    @property
    def card_id(self) -> str:
        return str(self.incoming.payload.get("card_id", ""))

    @property
    def form(self) -> dict[str, Any]:
        form = self.incoming.payload.get("form") or {}
        return dict(form) if isinstance(form, Mapping) else {}

    async def record(self, conn: Any) -> None:
        """Write the inbox row in the caller's transaction (pass as the service's `also`)."""
        answer = self.expected.to_json() if self.expected else {"ok": True, "code": "pending", "text": ""}
        await hotpath.insert_inbox(
            conn, dedup_key=self.incoming.dedup_key, platform=self.incoming.platform,
            sender=self.incoming.sender[:128], kind=self.incoming.kind, received_at=self.incoming.at,
            result=answer,
        )
        self.recorded = True
        self.recorded_answer = answer

    def refuse(self, code: str, zh: str, en: str, **data: Any) -> Reply:
        return Reply(ok=False, code=code, text=self.t(zh, en), data=data)

    def done(self, code: str, zh: str, en: str, *, changed: bool = False, **data: Any) -> Reply:
        return Reply(ok=True, code=code, text=self.t(zh, en), data=data, changed=changed)


Handler = Callable[[Context], Awaitable[Reply]]
Middleware = Callable[[Context, Handler], Awaitable[Reply]]

# A command is the first word, with or without a slash (full-width too), after an optional
# @-mention of the bot in a group.
_COMMAND = re.compile(r"^\s*(?:@\S+\s+)*[/／]?(?P<cmd>[^\s/／]+)(?:\s+(?P<args>.*))?$", re.S)


class Router:
    def __init__(self, name: str = "root") -> None:
        self.name = name
        self.commands: dict[str, Route] = {}
        self.actions: dict[str, Route] = {}
        self.middlewares: list[Middleware] = []
        self.fallback_text: Handler | None = None
        self.fallback_action: Handler | None = None

    # ---- registration ---------------------------------------------------------------------
    def command(
        self, name: str, *, aliases: Iterable[str] = (), hr_only: bool = True, usage_zh: str = "",
        usage_en: str = "",
    ) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            route = Route("text", name, fn, hr_only=hr_only, usage_zh=usage_zh, usage_en=usage_en,
                          aliases=tuple(aliases))
            for word in (name, *route.aliases):
                key = word.lower()
                if key in self.commands:
                    raise ValueError(f"command {word!r} registered twice")
                self.commands[key] = route
            return fn

        return register

    def action(self, name: str) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            if name in self.actions:
                raise ValueError(f"action {name!r} registered twice")
            self.actions[name] = Route("action", name, fn)
            return fn

        return register

    def unknown_command(self, fn: Handler) -> Handler:
        self.fallback_text = fn
        return fn

    def unknown_action(self, fn: Handler) -> Handler:
        self.fallback_action = fn
        return fn

    def use(self, middleware: Middleware) -> Middleware:
        self.middlewares.append(middleware)
        return middleware

    def include(self, other: Router) -> None:
        """Take over `other`'s routes and fallbacks, each still wrapped by `other`'s middlewares.

        The order is this router's middlewares, then `other`'s, then the handler: a child's
        middleware sees only the child's routes, inside whatever the parent does first. The child's
        list is read on every call, so a middleware it gains after being included still applies.
        """
        scoped: dict[int, Route] = {}  # a route under several aliases is wrapped once

        def adopt(route: Route) -> Route:
            if id(route) not in scoped:
                scoped[id(route)] = replace(route, handler=_scoped(other, route.handler))
            return scoped[id(route)]

        for key, route in other.commands.items():
            if key in self.commands:
                raise ValueError(f"command {key!r} registered twice")
            self.commands[key] = adopt(route)
        for key, route in other.actions.items():
            if key in self.actions:
                raise ValueError(f"action {key!r} registered twice")
            self.actions[key] = adopt(route)
        if self.fallback_text is None and other.fallback_text is not None:
            self.fallback_text = _scoped(other, other.fallback_text)
        if self.fallback_action is None and other.fallback_action is not None:
            self.fallback_action = _scoped(other, other.fallback_action)

    # ---- dispatch -------------------------------------------------------------------------
    def resolve(self, ctx: Context) -> Handler:
        inc = ctx.incoming
        if inc.kind == "text":
            m = _COMMAND.match(str(inc.payload.get("text", "")))
            if m:
                ctx.command = m.group("cmd")
                ctx.args = (m.group("args") or "").strip()
                ctx.route = self.commands.get(ctx.command.lower())
            if ctx.route is None:
                return self.fallback_text or _nothing
        else:
            ctx.route = self.actions.get(ctx.action)
            if ctx.route is None:
                return self.fallback_action or _nothing
        return ctx.route.handler

    async def dispatch(self, ctx: Context) -> Reply:
        async def innermost(c: Context) -> Reply:
            return await self.resolve(c)(c)

        call: Handler = innermost
        for mw in reversed(self.middlewares):
            call = _bind(mw, call)
        return await call(ctx)


def _scoped(owner: Router, handler: Handler) -> Handler:
    """`handler` run inside `owner`'s middlewares (none: called directly, nothing added)."""

    async def call(ctx: Context) -> Reply:
        chain = handler
        for mw in reversed(owner.middlewares):
            chain = _bind(mw, chain)
        return await chain(ctx)

    return call


def _bind(mw: Middleware, nxt: Handler) -> Handler:
    async def call(ctx: Context) -> Reply:
        return await mw(ctx, nxt)

    return call


async def _nothing(ctx: Context) -> Reply:
    return ctx.refuse("unknown", "无法识别的消息。", "Not understood.")


# ---- the standard middlewares ------------------------------------------------------------
_FIELD_NAMES = {"text": ("消息", "message"), "card_id": ("卡片", "card"), "action": ("操作", "action"),
                "form": ("表单", "form"), "sender": ("发送者", "sender"), "event id": ("事件编号", "event id"),
                "chat": ("会话", "chat")}


def _inbound_problem(inc: Incoming) -> cleantext.TextProblem | None:
    """The first part of an event that is not clean text within its limit. Checked before anything
    else runs: PostgreSQL fails on a NUL even in a lookup, so not even dedup may see one."""
    checks: list[tuple[object, str, int, bool]] = [
        (inc.sender, "sender", 128, False), (inc.dedup_key, "event id", cleantext.ID_MAX, False),
        (inc.chat_id, "chat", cleantext.ID_MAX, False),
    ]
    p = inc.payload
    if inc.kind == "text":
        checks.append((p.get("text", ""), "text", cleantext.MESSAGE_MAX, True))
    else:
        checks += [(p.get("card_id", ""), "card_id", cleantext.ID_MAX, False),
                   (p.get("action", ""), "action", cleantext.NAME_MAX, False)]
        form = p.get("form") or {}
        if not isinstance(form, Mapping):
            return cleantext.TextProblem("form", "not_text")
        for key, value in form.items():
            # Keys are checked first, so a value's name is clean when it is shown. Each value is
            # held to its own field's limit by the action handler; this bound only keeps anything
            # oversized from reaching it.
            checks += [(key, "form", cleantext.NAME_MAX, False), (value, str(key), cleantext.FORM_TEXT_MAX, True)]
    for value, name, limit, multiline in checks:
        code = cleantext.problem(value, max_len=limit, multiline=multiline)
        if code is not None:
            return cleantext.TextProblem(name, code, limit)
    return None


async def hygiene_middleware(ctx: Context, nxt: Handler) -> Reply:
    """Refuse an event carrying control characters or over-long text before anything reads or
    stores it; the refusal is not recorded (nothing was done, and a redelivery is refused alike)."""
    bad = _inbound_problem(ctx.incoming)
    if bad is None:
        return await nxt(ctx)
    wanted = ctx.incoming.payload.get("lang")
    ctx.language = wanted if wanted in ("zh", "en") else ctx.settings.language
    zh, en = _FIELD_NAMES.get(bad.field, (bad.field, bad.field))
    shown = cleantext.TextProblem(ctx.t(zh, en), bad.code, bad.limit)
    return ctx.refuse("bad_text", shown.message_zh, shown.message_en, field=bad.field)


async def dedup_middleware(ctx: Context, nxt: Handler) -> Reply:
    key = ctx.incoming.dedup_key
    if await hotpath.inbox_result(hotpath.default_conn(), key) is not None:
        return await _stored(key, ctx)
    try:
        reply = await nxt(ctx)
    except IntegrityError:
        # The handler's transaction lost the race on the inbox key to a concurrent delivery of the
        # same event, so it rolled back; the winner's answer is the answer.
        return await _stored(key, ctx)
    if ctx.recorded:
        answer = reply.to_json()
        if answer != ctx.recorded_answer:
            await hotpath.set_inbox_result(hotpath.default_conn(), key, answer)
        return reply
    try:
        await hotpath.insert_inbox(
            hotpath.default_conn(), dedup_key=key, platform=ctx.incoming.platform,
            sender=ctx.incoming.sender[:128], kind=ctx.incoming.kind, received_at=ctx.incoming.at,
            result=reply.to_json(),
        )
    except IntegrityError:
        # A concurrent delivery committed first; its effect (if any) is the one that counts, and a
        # refusal we computed meanwhile (say "already open" for the case it just opened) is not.
        return await _stored(key, ctx)
    return reply


async def _stored(key: str, ctx: Context) -> Reply:
    """The first delivery's answer. Its row commits with the effect but gets the answer text just
    after, so a duplicate arriving in between waits briefly for it."""
    for _ in range(PENDING_POLLS):
        result = await hotpath.inbox_result(hotpath.default_conn(), key)
        if result is None:  # pragma: no cover - the unique index said it exists
            break
        if result.get("code") != "pending":
            return Reply.from_json(result, duplicate=True)
        await asyncio.sleep(PENDING_POLL_SECONDS)
    # The first delivery committed its effect but died before recording its answer.
    return Reply(ok=True, code="duplicate", text=ctx.t("这条消息已处理过。", "This message was already handled."),
                 duplicate=True)


async def resolve_sender(service: CaseService, platform: str, sender: str) -> Employee | None:
    column = service.addresses.column(platform)  # the one place that maps platforms to people
    return await hotpath.active_employee(hotpath.default_conn(), column, sender)


async def actor_middleware(ctx: Context, nxt: Handler) -> Reply:
    ctx.actor = await resolve_sender(ctx.service, ctx.incoming.platform, ctx.incoming.sender)
    if ctx.actor is None:
        return ctx.refuse("unknown_sender", "你不在公司通讯录中，无法使用离职助手。请联系 HR。",
                          "You are not in the company directory, so the offboarding bot cannot serve you. "
                          "Please contact HR.")
    return await nxt(ctx)


async def language_middleware(ctx: Context, nxt: Handler) -> Reply:
    wanted = ctx.incoming.payload.get("lang")
    ctx.language = wanted if wanted in ("zh", "en") else ctx.settings.language
    return await nxt(ctx)


def is_hr(actor: Employee | None) -> bool:
    return actor is not None and bool(actor.role_set & HR_ROLES)


def hr_only_middleware(router: Router) -> Middleware:
    """HR-only commands refuse everybody else before the handler runs, so nothing is changed."""

    async def check(ctx: Context, nxt: Handler) -> Reply:
        if ctx.incoming.kind == "text":
            router.resolve(ctx)
            if ctx.route is not None and ctx.route.hr_only and not is_hr(ctx.actor):
                return ctx.refuse(
                    "forbidden", f"只有 HR 可以使用 /{ctx.command}。发送 /help 查看你可用的操作。",
                    f"Only HR may use /{ctx.command}. Send /help to see what you can do.",
                )
        return await nxt(ctx)

    return check


def standard_middlewares(router: Router) -> None:
    for mw in (hygiene_middleware, dedup_middleware, actor_middleware, language_middleware, hr_only_middleware(router)):
        router.use(mw)
