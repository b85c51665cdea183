"""Card button taps -> workflow events.

A tap names a card (its id is the outbox key it was delivered under) and an action. We check, in
order: the card exists; it was delivered to this person (a card's buttons belong to its holder);
the card offers that action. Then the engine decides with the actor's roles in this case; its
refusal (wrong role, flow lock, twice) is passed on word for word and nothing changes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from cases.answer import apply_and_answer
from chat.router import Context, Reply, Router
from handlers import backpay, settlement
from handlers.cardview import CardRenderer
from signing.pipeline import supersede_drafts
from storage import cardids, hotpath
from storage.models import Case, Employee, OutboxMessage
from workflow import cleantext, engine
from workflow.events import ACTIONS, Act, Close, Prepare, Remind
from workflow.items import item_problem, split_items
from workflow.model import Role

router = Router("actions")

_DONE_TEXT: dict[str, tuple[str, str]] = {
    "approve": ("已批准。", "Approved."), "reject": ("已驳回，HR 会收到通知。", "Rejected; HR is told."),
    "confirm": ("已确认。", "Confirmed."), "acknowledge": ("已确认知悉。", "Acknowledged."),
    "submit": ("已提交。", "Submitted."), "complete": ("已完成。", "Done."),
    "close": ("流程已结案。", "Case closed."), "remind": ("已发送提醒。", "Reminders sent."),
    "prepare": ("已补充，文件会按新内容重新生成。", "Added; the document is produced again with it."),
}


async def case_roles(ctx: Context, case: Case) -> frozenset[Role]:
    return frozenset() if ctx.actor is None else await ctx.service.roles_of(case, ctx.actor)


async def _card_and_case(ctx: Context) -> tuple[OutboxMessage, Case] | Reply:
    conn = hotpath.default_conn()
    row = await cardids.find(conn, ctx.card_id)
    if row is None or row.kind != "card":
        return ctx.refuse("unknown_card", "这张卡片已失效。", "This card is no longer valid.")
    actor: Employee | None = ctx.actor
    if actor is None or row.recipient != actor.employee_id:
        return ctx.refuse("not_your_card", "这张卡片不是发给你的，不能在上面操作。",
                          "This card was not sent to you, so you cannot act on it.")
    case = await hotpath.get_one(conn, Case, "id", row.case_id)  # type: ignore[attr-defined]
    if case is None:
        return ctx.refuse("unknown_card", "这张卡片已失效。", "This card is no longer valid.")
    # Only its buttons matter here: which actions the card offers this person now.
    card = await CardRenderer(ctx.settings, ctx.service).card_of(
        case, str((row.payload or {}).get("purpose", "step")), row.step_id, actor, language=ctx.language,
        detail=False)
    if card is None or card.button(ctx.action) is None:
        return ctx.refuse("no_such_button", "此卡片上没有这个操作。", "This card has no such button.")
    return row, case


def refused(ctx: Context, refusal: engine.Refusal) -> Reply:
    """The engine's refusal, word for word, with the fields it found missing."""
    return ctx.refuse(refusal.code, refusal.message_zh, refusal.message_en, missing=list(refusal.missing))


async def apply_and_reply(
    ctx: Context, case_id: str, make_event: Callable[[Case, Any], Any], done: Callable[[engine.Decision], Reply],
    *, accepted: Callable[[Any, engine.Decision], Awaitable[None]] | None = None,
) -> Reply:
    """Apply a chat event (a command, a tap, a question) to a case and reply to it: the chat wording
    of `cases.answer.apply_and_answer`. The reply commits with the inbox row; `done(decision)` words
    success, the engine's refusal
    and a service error are passed on as they are; `accepted` adds writes of the caller's that only
    an accepted event makes."""
    actor = ctx.actor

    async def inside(conn: Any, reply: Reply) -> None:
        ctx.expected = reply
        await ctx.record(conn)

    return await apply_and_answer(
        ctx.service, case_id, make_event, actor=actor.employee_id if actor else "", word=done,
        refused=lambda r: refused(ctx, r), failed=lambda e: ctx.refuse(e.code, e.message_zh, e.message_en),
        accepted=accepted, inside=inside,
    )


async def _apply(ctx: Context, case: Case, make_event: Callable[[Case, Any], Any],
                 more: Callable[[Any, engine.Decision], Awaitable[None]] | None = None) -> Reply:
    """A tap's event, answered with the action's own wording."""
    zh, en = _DONE_TEXT.get(ctx.action, ("已完成。", "Done."))
    return await apply_and_reply(ctx, case.id, make_event,
                                 lambda d: ctx.done(ctx.action, zh, en, changed=True, case_id=case.id), accepted=more)


async def step_action(ctx: Context) -> Reply:
    found = await _card_and_case(ctx)
    if isinstance(found, Reply):
        return found
    row, case = found
    if row.step_id is None:
        return ctx.refuse("no_such_button", "此卡片上没有这个操作。", "This card has no such button.")
    data = _declared_form(ctx, case, row.step_id)
    if isinstance(data, Reply):
        return data
    # The letter's back-pay must compute before the HR step that starts it may finish (handlers.backpay).
    blocked = await backpay.gate(ctx, case, row.step_id, data)
    if blocked is not None:
        return blocked
    # HR's settlement check: figures computed, a changed figure only with a reason (handlers.settlement).
    checked = await settlement.gate(ctx, case, row.step_id, data)
    if isinstance(checked, Reply):
        return checked
    data = checked
    roles = await case_roles(ctx, case)
    actor_id = ctx.actor.employee_id  # type: ignore[union-attr]
    step_id, action, at = row.step_id, ctx.action, ctx.incoming.at
    return await _apply(ctx, case, lambda c, s: Act(step_id=step_id, action=action,  # type: ignore[arg-type]
                                                    actor_id=actor_id, actor_roles=roles, data=data, at=at))


def _declared_form(ctx: Context, case: Case, step_id: str) -> dict[str, str] | Reply:
    """The tap's form values if they are exactly inputs the step declares (a rejection: its reason),
    each clean and within its type's limit; else the refusal, before anything is stored."""
    step = ctx.service.template(case.template_id).by_id.get(step_id)
    if ctx.action == "reject":
        declared = {"reason": (ctx.t("驳回理由", "Reason for rejecting"), cleantext.REASON_MAX, True)}
    else:
        declared = {f.key: (f.label.get(ctx.language), *cleantext.FIELD_RULES[f.type])
                    for f in (step.fields if step else ())}
    try:
        return cleantext.check_form(ctx.form, declared)
    except cleantext.UndeclaredField as exc:
        return ctx.refuse(exc.code, exc.message_zh, exc.message_en, field=exc.field)
    except cleantext.TextProblem as exc:
        return ctx.refuse("bad_text", exc.message_zh, exc.message_en, field=exc.field)


for _name in sorted(ACTIONS):
    router.action(_name)(step_action)


@router.action("prepare")
async def prepare(ctx: Context) -> Reply:
    """HR adds to what a step's document says (the case's own handover items) before it is signed; the
    draft rendered so far is replaced in the same transaction, so nobody signs the old text."""
    found = await _card_and_case(ctx)
    if isinstance(found, Reply):
        return found
    row, case = found
    step = ctx.service.template(case.template_id).by_id.get(row.step_id or "")
    if step is None or not step.hr_fields:
        return ctx.refuse("no_such_button", "此卡片上没有这个操作。", "This card has no such button.")
    declared = {f.key: (f.label.get(ctx.language), *cleantext.FIELD_RULES[f.type]) for f in step.hr_fields}
    try:
        data = cleantext.check_form(ctx.form, declared)
    except cleantext.UndeclaredField as exc:
        return ctx.refuse(exc.code, exc.message_zh, exc.message_en, field=exc.field)
    except cleantext.TextProblem as exc:
        return ctx.refuse("bad_text", exc.message_zh, exc.message_en, field=exc.field)
    for f in step.hr_fields:
        if f.type == "textarea" and data.get(f.key):
            problem = item_problem(split_items(data[f.key]))
            if problem is not None:
                return ctx.refuse("bad_items", problem.zh, problem.en, field=f.key)
    roles = await case_roles(ctx, case)
    actor_id, at, step_id = ctx.actor.employee_id, ctx.incoming.at, step.id  # type: ignore[union-attr]

    async def supersede(conn: Any, decision: engine.Decision) -> None:
        await supersede_drafts(case.id, step_id, using=conn)

    return await _apply(ctx, case, lambda c, s: Prepare(step_id, actor_id, roles, data, at), supersede)


async def _hr_case_event(ctx: Context, event: type[Close] | type[Remind]) -> Reply:
    found = await _card_and_case(ctx)
    if isinstance(found, Reply):
        return found
    _, case = found
    roles = await case_roles(ctx, case)
    actor_id, at = ctx.actor.employee_id, ctx.incoming.at  # type: ignore[union-attr]
    return await _apply(ctx, case, lambda c, s: event(actor_id=actor_id, actor_roles=roles, at=at))


@router.action("close")
async def close(ctx: Context) -> Reply:
    return await _hr_case_event(ctx, Close)


@router.action("remind")
async def remind(ctx: Context) -> Reply:
    return await _hr_case_event(ctx, Remind)


@router.unknown_action
async def unknown(ctx: Context) -> Reply:
    return ctx.refuse("no_such_button", "此卡片上没有这个操作。", "This card has no such button.")
