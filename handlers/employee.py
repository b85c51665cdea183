"""What the departing employee (and HR answering them) does in chat besides tapping step cards:
questions to HR (问HR) and their answers, and the employee's own view of the case (/进度).

A question is a workflow event on the case (`Ask`, `Answer`): the engine decides, and question,
answer and the reminder to HR go into the audit chain in the same transaction as their cards.
"""

from __future__ import annotations

import re
from typing import Any

from cards.progress import employee_progress
from cards.questions import question_ref
from chat.router import Context, Reply, Router
from handlers.actions import _card_and_case, apply_and_reply, case_roles
from handlers.cardview import CardRenderer
from storage.models import Case
from workflow import engine
from workflow import messages as msg
from workflow.events import Answer, Ask
from workflow.model import MAX_QUESTION_CHARS
from workflow.text import Text

router = Router("employee")

_QUESTION_REF = re.compile(r"^(?P<case>OB-[0-9A-Z]{6})-(?P<q>Q\d{1,4})$", re.I)
USAGE_ASK = ("/问HR <你的问题>", "/ask <your question>")
USAGE_ANSWER = ("/回复 <问题编号> <回复内容>  例：/回复 OB-7KX3PZ-Q1 保证书是必经步骤", "/answer <question> <text>"
                "  e.g. /answer OB-7KX3PZ-Q1 The guarantee letter is a required step")


def chat_text(raw: Any) -> str:
    """Free text a person typed for the record (a question, an answer): the one place where it is
    taken from the message, so the shared text validator applies to it here."""
    return raw.strip() if isinstance(raw, str) else ""


def _bad_text(ctx: Context, text: str, what: Text) -> Reply | None:
    """Empty or oversized text is refused before the case is touched (the engine checks it too)."""
    if not text:
        m = msg.empty_text(what)
        return ctx.refuse("missing_data", m.zh, m.en)
    if len(text) > MAX_QUESTION_CHARS:
        m = msg.too_long(what, MAX_QUESTION_CHARS)
        return ctx.refuse("too_long", m.zh, m.en)
    return None


async def open_case_of(ctx: Context) -> Case | None:
    """The actor's own open case (as the departing employee), if any."""
    actor = ctx.actor
    return None if actor is None else await Case.get_or_none(open_key=actor.employee_id)

# ---- asking ------------------------------------------------------------------------------
async def ask(ctx: Context, case: Case, text: str, step_id: str | None) -> Reply:
    bad = _bad_text(ctx, text, msg.QUESTION)
    if bad is not None:
        return bad
    actor = ctx.actor
    assert actor is not None  # the actor middleware refused unknown senders
    roles = await case_roles(ctx, case)
    at = ctx.incoming.at

    def reply(result: engine.Decision) -> Reply:
        qid = next(reversed(result.state.questions))
        ref = question_ref(case.id, qid)
        return ctx.done("asked", f"你的问题已转给 HR（编号 {ref}），HR 回复后会在这里通知你。"
                                 "问答会记入你的离职流程档案。",
                        f"Your question went to HR (number {ref}); you will get the answer here. Question and "
                        "answer are kept in your case record.", changed=True, case_id=case.id, question=ref)

    return await apply_and_reply(ctx, case.id, lambda c, s: Ask(actor_id=actor.employee_id, actor_roles=roles,
                                                                text=text, at=at, step_id=step_id), reply)


@router.action("ask")
async def ask_from_card(ctx: Context) -> Reply:
    found = await _card_and_case(ctx)
    if isinstance(found, Reply):
        return found
    row, case = found
    step_id = row.step_id if row.step_id in ctx.service.template(case.template_id) else None
    return await ask(ctx, case, chat_text(ctx.form.get("question")), step_id)


@router.command("ask", aliases=["问HR", "提问", "向HR提问"], hr_only=False, usage_zh=USAGE_ASK[0],
                usage_en=USAGE_ASK[1])
async def ask_command(ctx: Context) -> Reply:
    text = chat_text(ctx.args)
    if not text:
        return ctx.refuse("usage", f"请写下你的问题。\n用法：{USAGE_ASK[0]}",
                          f"Please write your question.\nUsage: {USAGE_ASK[1]}")
    case = await open_case_of(ctx)
    if case is None:
        return _no_case(ctx)
    return await ask(ctx, case, text, None)


def _no_case(ctx: Context) -> Reply:
    return ctx.refuse("no_case", "你没有进行中的离职流程。其他事情请直接联系 HR。",
                      "You have no open offboarding case. For anything else, please contact HR directly.")


async def question_from_text(ctx: Context, text: str) -> Reply | None:
    """Free text from an employee with an open case is a question to HR; None when they have none."""
    case = await open_case_of(ctx)
    if case is None:
        return None
    return await ask(ctx, case, chat_text(text), None)


# ---- answering ---------------------------------------------------------------------------
async def answer(ctx: Context, case: Case, question_id: str, text: str) -> Reply:
    bad = _bad_text(ctx, text, msg.ANSWER)
    if bad is not None:
        return bad
    actor = ctx.actor
    assert actor is not None  # the actor middleware refused unknown senders
    roles = await case_roles(ctx, case)
    at = ctx.incoming.at
    ref = question_ref(case.id, question_id)

    def reply(result: engine.Decision) -> Reply:
        return ctx.done("answered", f"已回复 {ref}，员工会收到你的回复；问答已记入流程档案。",
                        f"Answered {ref}; the employee gets your answer, and both are in the case record.",
                        changed=True, case_id=case.id, question=ref)

    return await apply_and_reply(ctx, case.id, lambda c, s: Answer(question_id=question_id,
                                                                   actor_id=actor.employee_id, actor_roles=roles,
                                                                   text=text, at=at), reply)


@router.action("answer")
async def answer_from_card(ctx: Context) -> Reply:
    found = await _card_and_case(ctx)
    if isinstance(found, Reply):
        return found
    row, case = found
    if row.step_id is None:
        return ctx.refuse("no_such_button", "此卡片上没有这个操作。", "This card has no such button.")
    return await answer(ctx, case, row.step_id, chat_text(ctx.form.get("answer")))


@router.command("answer", aliases=["回复", "答复"], usage_zh=USAGE_ANSWER[0], usage_en=USAGE_ANSWER[1])
async def answer_command(ctx: Context) -> Reply:
    tokens = ctx.args.split(maxsplit=1)
    if len(tokens) < 2 or not chat_text(tokens[1]):
        return ctx.refuse("usage", f"请给出问题编号和回复内容。\n用法：{USAGE_ANSWER[0]}",
                          f"Give the question number and your answer.\nUsage: {USAGE_ANSWER[1]}")
    m = _QUESTION_REF.match(tokens[0])
    if m is None:
        return ctx.refuse("usage", f"「{tokens[0][:40]}」不是问题编号（形如 OB-7KX3PZ-Q1，见提问卡片）。\n"
                                   f"用法：{USAGE_ANSWER[0]}",
                          f"\"{tokens[0][:40]}\" is not a question number (like OB-7KX3PZ-Q1, on the question "
                          f"card).\nUsage: {USAGE_ANSWER[1]}")
    case = await Case.get_or_none(id=m.group("case").upper())
    if case is None:
        return ctx.refuse("unknown_case", f"找不到流程 {m.group('case').upper()}。",
                          f"No case {m.group('case').upper()}.")
    return await answer(ctx, case, m.group("q").upper(), chat_text(tokens[1]))


# ---- the employee's own view -------------------------------------------------------------
async def own_status(ctx: Context) -> Reply:
    """`/进度` from someone who is not HR: their own case, never anyone else's."""
    actor = ctx.actor
    assert actor is not None  # the actor middleware refused unknown senders
    case = await open_case_of(ctx) or await Case.filter(employee_id=actor.id).order_by("-started_at").first()
    arg = ctx.args.strip()
    if arg and (case is None or arg.upper() != case.id):
        # Whether another case exists is not theirs to learn.
        return ctx.refuse("forbidden", "你只能查看自己的离职流程：发送 /进度 即可。",
                          "You can only see your own offboarding: just send /status.")
    if case is None:
        return _no_case(ctx)
    view = await CardRenderer(ctx.settings, ctx.service).view(case, recipient=actor, language=ctx.language)
    return ctx.done("status", employee_progress(view), employee_progress(view), case_id=case.id,
                    status=case.status)
