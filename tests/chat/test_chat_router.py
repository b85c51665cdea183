"""Router.include keeps the child's middlewares: they wrap the child's routes only, inside the parent's."""

from __future__ import annotations

from typing import Any

import pytest

from bot.app import build_service
from chat.router import Context, Handler, Incoming, Middleware, Reply, Router
from config.settings import Settings


def _recorder(name: str, log: list[str]) -> Middleware:
    async def mw(ctx: Context, nxt: Handler) -> Reply:
        log.append(f"{name}>")
        reply = await nxt(ctx)
        log.append(f"<{name}")
        return reply

    return mw


def _handler(name: str, log: list[str]) -> Handler:
    async def handle(ctx: Context) -> Reply:
        log.append(name)
        return ctx.done(name, name, name)

    return handle


@pytest.fixture
def make_ctx(settings: Settings) -> Any:
    service = build_service(settings)

    def make(kind: str, payload: dict[str, Any]) -> Context:
        inc = Incoming("emulator", "E1", kind, payload, "emulator:1")  # type: ignore[arg-type]
        return Context(incoming=inc, settings=settings, service=service)

    return make


def _tree(log: list[str]) -> Router:
    root = Router("root")
    root.use(_recorder("root", log))
    child = Router("child")
    child.use(_recorder("child", log))
    child.command("ping", aliases=["p"])(_handler("ping", log))
    child.action("tap")(_handler("tap", log))
    child.unknown_command(_handler("child-fallback", log))
    sibling = Router("sibling")
    sibling.command("pong")(_handler("pong", log))
    root.include(child)
    root.include(sibling)
    # Added after the include: still applies, the child's list is read on each call.
    child.use(_recorder("late", log))
    return root


async def test_child_middleware_wraps_child_routes_inside_parent(make_ctx: Any) -> None:
    log: list[str] = []
    root = _tree(log)
    reply = await root.dispatch(make_ctx("text", {"text": "/ping"}))
    assert reply.code == "ping"
    assert log == ["root>", "child>", "late>", "ping", "<late", "<child", "<root"]

    log.clear()
    await root.dispatch(make_ctx("text", {"text": "p"}))  # an alias is the same wrapped route
    assert log == ["root>", "child>", "late>", "ping", "<late", "<child", "<root"]

    log.clear()
    await root.dispatch(make_ctx("action", {"card_id": "c", "action": "tap", "form": {}}))
    assert log == ["root>", "child>", "late>", "tap", "<late", "<child", "<root"]


async def test_child_middleware_skips_other_routes(make_ctx: Any) -> None:
    log: list[str] = []
    root = _tree(log)
    reply = await root.dispatch(make_ctx("text", {"text": "/pong"}))
    assert reply.code == "pong"
    assert log == ["root>", "pong", "<root"]


async def test_fallback_taken_over_keeps_child_middleware(make_ctx: Any) -> None:
    log: list[str] = []
    root = _tree(log)
    reply = await root.dispatch(make_ctx("text", {"text": "/nonsense"}))
    assert reply.code == "child-fallback"
    assert log == ["root>", "child>", "late>", "child-fallback", "<late", "<child", "<root"]


async def test_child_middleware_can_refuse_and_parent_sees_the_refusal(make_ctx: Any) -> None:
    log: list[str] = []
    root = Router("root")
    root.use(_recorder("root", log))
    child = Router("child")

    @child.use
    async def gate(ctx: Context, nxt: Handler) -> Reply:
        log.append("gate")
        return ctx.refuse("gated", "拒绝", "refused")

    child.command("ping")(_handler("ping", log))
    root.include(child)
    reply = await root.dispatch(make_ctx("text", {"text": "/ping"}))
    assert (reply.ok, reply.code) == (False, "gated")
    assert log == ["root>", "gate", "<root"]  # the handler never ran


async def test_nested_include_orders_outer_to_inner(make_ctx: Any) -> None:
    log: list[str] = []
    grandchild = Router("grandchild")
    grandchild.use(_recorder("grandchild", log))
    grandchild.command("deep")(_handler("deep", log))
    child = Router("child")
    child.use(_recorder("child", log))
    child.include(grandchild)
    root = Router("root")
    root.use(_recorder("root", log))
    root.include(child)
    await root.dispatch(make_ctx("text", {"text": "/deep"}))
    assert log == ["root>", "child>", "grandchild>", "deep", "<grandchild", "<child", "<root"]


def test_include_still_refuses_a_name_twice() -> None:
    async def h(ctx: Context) -> Reply:  # pragma: no cover - never dispatched
        raise AssertionError

    a, b = Router("a"), Router("b")
    a.command("x")(h)
    b.command("x")(h)
    with pytest.raises(ValueError, match="registered twice"):
        a.include(b)
