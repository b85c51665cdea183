"""HR commands typed to the bot: /offboard (/离职), /status, /list, /remind, /cancel, /help.

Every command validates all of its input before touching anything, so a refusal changes nothing;
commands that change a case pass `ctx.record` to the service so the inbox row commits with the
effect (a redelivered command has no second effect).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from typing import Any

from cases.service import CaseError, new_case_id
from chat.router import Context, Reply, Router, is_hr
from handlers.actions import apply_and_reply, case_roles
from handlers.employee import USAGE_ANSWER, own_status, question_from_text
from handlers.queries import list_cases
from storage import hotpath, usage
from storage.models import Case, CaseStep, Employee
from workflow import cleantext
from workflow.events import Cancel, Remind, StartFallback
from workflow.items import item_problem, split_items
from workflow.messages import not_needed_reason
from workflow.model import Role

router = Router("commands")

# Case type words -> template id. Chinese words as HR says them; English as in the docs.
CASE_TYPES: dict[str, str] = {
    "probation": "probation", "试用期": "probation", "试用期解除": "probation",
    "misconduct": "misconduct", "违纪": "misconduct", "过失": "misconduct", "违纪解除": "misconduct",
    "resignation": "resignation", "辞职": "resignation", "主动离职": "resignation", "离职": "resignation",
    "mutual": "mutual", "协商": "mutual", "协商解除": "mutual", "协商一致": "mutual",
}
_HANDOVER = re.compile(r"^(?:handover|交接人|交接)[:：=](?P<who>\S+)$", re.I)
# `交接事项:` / `items:` runs to the end of the message (items may contain spaces); a 交接人: typed
# after it still names the colleague.
_ITEMS = re.compile(r"(?:^|(?<=\s))(?:交接事项|items)[:：=]", re.I)
_HANDOVER_IN = re.compile(r"(?:^|(?<=\s))(?:handover|交接人|交接)[:：=]\S+", re.I)
_DATE = re.compile(r"^(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?$")
_MENTION = re.compile(r"^(?:@|<@)(?P<who>[^>]+)>?$")
_CASE_ID = re.compile(r"^OB-[0-9A-Z]{6}$", re.I)

USAGE_OFFBOARD = ("/离职 <员工> <类型> <最后工作日> [原因] [交接人:<员工>] [交接事项:<事项>；<事项>…]\n"
                  "  员工：工号、姓名或 @姓名；类型：试用期 / 违纪 / 辞职 / 协商；日期：2025-07-31\n"
                  "  交接事项放在最后，多项用分号分隔，会列入《工作交接确认单》\n"
                  "  例：/离职 张三 试用期 2025-07-31 绩效未达标 交接人:周八 交接事项:客户A合同；项目B代码仓库",
                  "/offboard <employee> <type> <last-day> [reason] [handover:<employee>] [items:<item>; <item>…]\n"
                  "  employee: id, name or @name; type: probation / misconduct / resignation / mutual; "
                  "date: 2025-07-31\n  items come last, separated by semicolons; they are listed in the handover "
                  "confirmation\n  e.g. /offboard E003 probation 2025-07-31 missed targets handover:E006 "
                  "items:client A contracts; project B repository")
USAGE_STATUS = ("/状态 [员工|流程号]", "/status [employee|case]")
USAGE_REMIND = ("/催办 <流程号|员工>", "/remind <case|employee>")
USAGE_CANCEL = ("/取消 <流程号|员工> <原因>", "/cancel <case|employee> <reason>")
USAGE_FALLBACK = ("/送达 <流程号|员工> <原因>", "/fallback <case|employee> <reason>")


def _usage(ctx: Context, usage: tuple[str, str], problem_zh: str, problem_en: str) -> Reply:
    return ctx.refuse("usage", f"{problem_zh}\n用法：{usage[0]}", f"{problem_en}\nUsage: {usage[1]}")


def _reason(ctx: Context, text: str) -> str | Reply:
    """A reason as typed, or the refusal saying why it cannot be kept (the router already refused
    control characters in the whole message; the limit is the reason's own)."""
    try:
        return cleantext.check(text, ctx.t("原因", "reason"), max_len=cleantext.REASON_MAX)
    except cleantext.TextProblem as exc:
        return ctx.refuse("bad_text", exc.message_zh, exc.message_en, field="reason")


def parse_date(token: str) -> date | None:
    m = _DATE.match(token)
    if not m:
        return None
    try:
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None


class Lookup:
    """Outcome of finding one employee from what HR typed."""

    def __init__(self, employee: Employee | None = None, reply: Reply | None = None) -> None:
        self.employee = employee
        self.reply = reply


async def find_employee(ctx: Context, token: str) -> Lookup:
    m = _MENTION.match(token)
    if m:
        token = m.group("who")
    if len(token) > 128:
        return Lookup(reply=ctx.refuse("not_found", "找不到这个员工。", "No such employee."))
    conn = hotpath.default_conn()
    by_id = await hotpath.active_employee(conn, "employee_id", token)
    if by_id is None and token.upper() != token:
        by_id = await hotpath.active_employee(conn, "employee_id", token.upper())
    if by_id is not None:
        return Lookup(by_id)
    matches = await Employee.filter(name=token, active=True).order_by("employee_id")
    if not matches:
        return Lookup(reply=ctx.refuse("not_found", f"通讯录里没有「{token}」。请用工号或完整姓名。",
                                       f"Nobody called \"{token}\" in the directory. Use the employee id or full "
                                       "name."))
    if len(matches) > 1:
        options = "；".join(f"{e.employee_id} {e.name}（{e.department or '—'}）" for e in matches)
        return Lookup(reply=ctx.refuse(
            "ambiguous", f"有 {len(matches)} 位「{token}」，请改用工号：{options}",
            f"{len(matches)} people are called \"{token}\"; use the employee id: {options}",
            candidates=[e.employee_id for e in matches]))
    return Lookup(matches[0])


async def find_case(ctx: Context, token: str, *, open_only: bool = True) -> Case | Reply:
    # Anything that looks like a case number is one: "OB-NOPE" is a case that does not exist,
    # not a person to search the directory for.
    if _CASE_ID.match(token) or token.upper().startswith("OB-"):
        case = await Case.get_or_none(id=token.upper())
        if case is None:
            return ctx.refuse("unknown_case", f"找不到流程 {token}。发送 /list 查看进行中的流程。",
                              f"No case {token}. Send /list to see open cases.")
        return case
    found = await find_employee(ctx, token)
    if found.reply is not None:
        return found.reply
    emp = found.employee
    qs = Case.filter(employee_id=emp.id)  # type: ignore[union-attr]
    if open_only:
        qs = qs.filter(status="open")
    case = await qs.order_by("-started_at").first()
    if case is None:
        return ctx.refuse("no_case", f"{emp.name}（{emp.employee_id}）没有进行中的离职流程。",  # type: ignore[union-attr]
                          f"{emp.name} ({emp.employee_id}) has no open case.")  # type: ignore[union-attr]
    return case


# ---- /offboard ---------------------------------------------------------------------------
@router.command("offboard", aliases=["离职", "办理离职", "start"], usage_zh=USAGE_OFFBOARD[0],
                usage_en=USAGE_OFFBOARD[1])
async def offboard(ctx: Context) -> Reply:
    args, items_text = _split_items(ctx.args)
    items: list[str] = []
    if items_text is not None:
        checked = _items(ctx, items_text)
        if isinstance(checked, Reply):
            return checked
        items = checked
    tokens = args.split()
    handover_token = None
    rest = []
    for tok in tokens:
        m = _HANDOVER.match(tok)
        if m:
            handover_token = m.group("who")
        else:
            rest.append(tok)
    if len(rest) < 3:
        return _usage(ctx, USAGE_OFFBOARD, "缺少参数。", "Missing arguments.")
    who, type_word, day_word, *reason_words = rest
    template_id = CASE_TYPES.get(type_word.lower())
    if template_id is None or template_id not in ctx.service.templates:
        return _usage(ctx, USAGE_OFFBOARD, f"未知的离职类型「{type_word}」。",
                      f"Unknown case type \"{type_word}\".")
    last_day = parse_date(day_word)
    if last_day is None:
        return _usage(ctx, USAGE_OFFBOARD, f"「{day_word}」不是有效日期（格式 2025-07-31）。",
                      f"\"{day_word}\" is not a valid date (use 2025-07-31).")
    reason = _reason(ctx, " ".join(reason_words))
    if isinstance(reason, Reply):
        return reason
    found = await find_employee(ctx, who)
    if found.reply is not None:
        return found.reply
    employee = found.employee
    assert employee is not None  # find_employee returns either an employee or a reply
    if employee.employee_id == ctx.actor.employee_id:  # type: ignore[union-attr]
        return ctx.refuse("self", "不能为自己发起离职流程，请由其他 HR 发起。",
                          "You cannot start your own offboarding; ask another HR colleague.")
    handover_id = None
    if handover_token:
        h = await find_employee(ctx, handover_token)
        if h.reply is not None:
            return h.reply
        if h.employee.employee_id == employee.employee_id:  # type: ignore[union-attr]
            return _usage(ctx, USAGE_OFFBOARD, "交接人不能是离职员工本人。",
                          "The handover colleague cannot be the leaving employee.")
        handover_id = h.employee.employee_id  # type: ignore[union-attr]
    today = ctx.incoming.at.astimezone(ctx.settings.tz).date()
    past_zh = past_en = ""
    warnings: list[str] = []
    if last_day < today:
        # Allowed (a case may be recorded after the fact), but HR must not miss it.
        past_zh = (f"\n⚠ 注意：最后工作日 {last_day.isoformat()} 已经过去（今天是 {today.isoformat()}），"
                   "请确认日期无误。")
        past_en = (f"\n⚠ Note: the last working day {last_day.isoformat()} is already past (today is "
                   f"{today.isoformat()}); please check the date.")
        warnings.append("last_day_past")
    template = ctx.service.template(template_id)
    prepared: dict[str, dict[str, str]] = {}
    if items:
        # The case's own items go to the step whose document lists them (its `items` hr field).
        step = next((s for s in template.steps if any(f.key == "items" for f in s.hr_fields)), None)
        if step is None:
            return _usage(ctx, USAGE_OFFBOARD, "该离职类型没有工作交接步骤，不能指定交接事项。",
                          "This case type has no handover step to list items in.")
        prepared[step.id] = {"items": "\n".join(items)}
        past_zh += f"\n交接事项：另加 {len(items)} 项（" + "；".join(items) + "），将列入《工作交接确认单》。"
        past_en += f"\nHandover items: {len(items)} added (" + "; ".join(items) + "), listed in the handover " \
                   "confirmation."
    if handover_id is None and any(Role.HANDOVER in s.signers or s.role == Role.HANDOVER for s in template.steps):
        # Allowed as before, but the receiving colleague's signature cannot come from anyone else.
        past_zh += "\n⚠ 注意：未指定交接人（交接人:<员工>），《工作交接确认单》需交接人签字，该步骤将无人办理。"
        past_en += ("\n⚠ Note: no handover colleague was named (handover:<employee>); the handover "
                    "confirmation needs their signature, so that step has nobody to do it.")
        warnings.append("no_handover")
    hr = ctx.actor
    assert hr is not None  # the actor middleware refused unknown senders

    case_id = new_case_id()

    # HR's summary card of the case, updated in place as steps move (cases.service queues the updates).
    summary = {
        "key": f"{case_id}:summary:{hr.employee_id}", "case_id": case_id,
        "platform": ctx.service.platform_for(hr), "recipient": hr.employee_id, "step_id": None, "kind": "card",
        "payload": {"case_id": case_id, "step_id": None, "purpose": "summary", "role": "hr"},
        "next_attempt_at": ctx.incoming.at, "created_at": ctx.incoming.at,
    }
    title = template.title.get(ctx.language)
    # Known before the transaction, so the inbox row commits with it (see Context.expected).
    ctx.expected = ctx.done(
        "started",
        f"已为 {employee.name}（{employee.employee_id}）发起「{title}」流程 {case_id}，"
        f"最后工作日 {last_day.isoformat()}。员工和相关人员会收到卡片。" + past_zh,
        f"Started \"{title}\" case {case_id} for {employee.name} ({employee.employee_id}), "
        f"last working day {last_day.isoformat()}. The people involved get their cards." + past_en,
        changed=True, case_id=case_id, warnings=warnings,
    )
    try:
        await ctx.service.start_case(
            employee=employee, template_id=template_id, last_day=last_day, reason=reason,
            created_by=hr.employee_id, handover_id=handover_id, at=ctx.incoming.at, also=lambda tx: ctx.record(tx.conn),
            case_id=case_id, known=(hr,), extra_outbox=(summary,), prepared=prepared,
        )
    except CaseError as exc:
        return ctx.refuse(exc.code, exc.message_zh, exc.message_en)
    return ctx.expected


def _split_items(args: str) -> tuple[str, str | None]:
    """The arguments without the `交接事项:` part, and that part's text (None when not given)."""
    m = _ITEMS.search(args)
    if m is None:
        return args, None
    moved: list[str] = []

    def keep(found: re.Match[str]) -> str:
        moved.append(found.group(0))
        return " "

    tail = _HANDOVER_IN.sub(keep, args[m.end():])
    return " ".join([args[: m.start()], *moved]), tail


def _items(ctx: Context, text: str) -> list[str] | Reply:
    """The handover items HR typed, each checked; or the refusal naming what to fix."""
    label = ctx.t("交接事项", "handover items")
    try:
        cleantext.check(text, label, max_len=cleantext.FORM_TEXT_MAX)
    except cleantext.TextProblem as exc:
        return ctx.refuse("bad_text", exc.message_zh, exc.message_en, field="items")
    items = split_items(text)
    problem = item_problem(items)
    if problem is not None:
        return _usage(ctx, USAGE_OFFBOARD, problem.zh, problem.en)
    return items


# ---- /status -----------------------------------------------------------------------------
_STEP_MARK = {"done": "✓", "active": "●", "locked": "🔒", "not_needed": "–"}


@router.command("status", aliases=["状态", "查询", "进度"], hr_only=False, usage_zh=USAGE_STATUS[0],
                usage_en=USAGE_STATUS[1])
async def status(ctx: Context) -> Reply:
    if not is_hr(ctx.actor):
        return await own_status(ctx)
    if not ctx.args:
        return await list_open(ctx)
    if len(ctx.args.split()) != 1:
        return _usage(ctx, USAGE_STATUS, "只能查询一个员工或流程。", "Give one employee or case.")
    found = await find_case(ctx, ctx.args.strip(), open_only=False)
    if isinstance(found, Reply):
        return found
    case = found
    await case.fetch_related("employee")
    template = ctx.service.template(case.template_id)
    steps = {s.step_id: s for s in await CaseStep.filter(case_id=case.id)}
    names = dict(await Employee.filter(employee_id__in=[s.done_by for s in steps.values() if s.done_by])
                 .values_list("employee_id", "name"))
    lines = []
    for step in template.steps:
        row = steps.get(step.id)
        st = row.status if row else "locked"
        line = f"{_STEP_MARK.get(st, '?')} {step.number}. {step.title.get(ctx.language)}"
        if case.status == "cancelled" and st != "done":
            line = f"✗ {step.number}. {step.title.get(ctx.language)}" + ctx.t(" — 已取消", " — cancelled")
        if row and st == "not_needed":
            why = not_needed_reason(template.by_id, row.outcome, row.data or {})
            line += ctx.t(f" — 不再需要：{why.zh}", f" — no longer needed: {why.en}")
        elif row and row.done_at:
            when = row.done_at.astimezone(ctx.settings.tz).strftime("%m-%d %H:%M")
            line += ctx.t(f" — {names.get(row.done_by or '', row.done_by)} {when}",
                          f" — {names.get(row.done_by or '', row.done_by)} {when}")
        lines.append(line)
    head_zh = {"open": "进行中", "completed": "已完成", "cancelled": "已取消"}.get(case.status, case.status)
    return ctx.done(
        "status",
        f"流程 {case.id} · {case.employee.name}（{case.employee.employee_id}）· {template.title.zh} · {head_zh}\n"
        + "\n".join(lines),
        f"Case {case.id} · {case.employee.name} ({case.employee.employee_id}) · {template.title.en} · "
        f"{case.status}\n" + "\n".join(lines),
        case_id=case.id, status=case.status,
    )


# ---- /list -------------------------------------------------------------------------------
@router.command("list", aliases=["列表", "全部"])
async def list_open(ctx: Context) -> Reply:
    if ctx.route is not None and ctx.route.name == "list" and ctx.args:
        return _usage(ctx, ("/列表", "/list"), "/list 不需要参数。", "/list takes no arguments.")
    rows = await list_cases(tz=ctx.settings.tz, templates=ctx.service.templates)
    if not rows:
        return ctx.done("list", "目前没有进行中的离职流程。", "No open cases.", cases=[])
    lines = []
    for r in rows:
        template = ctx.service.templates.get(r.template_id)
        kind = template.title.get(ctx.language) if template else r.template_id
        # Steps in words ("第 2 步 部门负责人确认考核结果"), as HR sees them on the cards.
        steps = ctx.t("；", "; ").join(
            ctx.t(f"第 {template.step(sid).number} 步 {template.step(sid).title.zh}",
                  f"step {template.step(sid).number} {template.step(sid).title.en}")
            if template and sid in template else sid
            for sid in r.current_steps) or "—"
        flag = ctx.t("【逾期】", "[OVERDUE] ") if r.overdue else ""
        lines.append(ctx.t(f"{flag}{r.case_id} {r.employee_name}（{r.employee_id}）· {kind} · 当前：{steps}",
                           f"{flag}{r.case_id} {r.employee_name} ({r.employee_id}) · {kind} · now: {steps}"))
    return ctx.done("list", f"进行中的流程（{len(rows)}，逾期在前）：\n" + "\n".join(lines),
                    f"Open cases ({len(rows)}, overdue first):\n" + "\n".join(lines),
                    cases=[r.case_id for r in rows])


# ---- /remind -----------------------------------------------------------------------------
@router.command("remind", aliases=["催办", "提醒"], usage_zh=USAGE_REMIND[0], usage_en=USAGE_REMIND[1])
async def remind(ctx: Context) -> Reply:
    tokens = ctx.args.split()
    if len(tokens) != 1:
        return _usage(ctx, USAGE_REMIND, "请给出一个流程号或员工。", "Give one case or employee.")
    found = await find_case(ctx, tokens[0])
    if isinstance(found, Reply):
        return found
    case_id = found.id
    actor = ctx.actor
    assert actor is not None  # the actor middleware refused unknown senders
    roles = await case_roles(ctx, found)
    return await apply_and_reply(
        ctx, case_id, lambda case, state: Remind(actor_id=actor.employee_id, actor_roles=roles, at=ctx.incoming.at),
        lambda d: ctx.done("reminded", f"已向流程 {case_id} 当前的办理人发送提醒。",
                           f"Reminders sent to whoever case {case_id} is waiting for.", changed=True,
                           case_id=case_id),
    )


# ---- /cancel and /fallback: a case and a reason ----------------------------------------
async def _case_with_reason(ctx: Context, usage: tuple[str, str], missing_zh: str, missing_en: str,
                            make_event: Callable[[str, frozenset[Role], str], Any],
                            done: Callable[[Case, str], Reply]) -> Reply:
    """`/<command> <case or employee> <reason>`: the reason is required and checked, the case found,
    and the event `make_event(actor_id, actor_roles, reason)` applied to it; `done(case, reason)` words
    success."""
    tokens = ctx.args.split(maxsplit=1)
    if len(tokens) < 2 or not tokens[1].strip():
        return _usage(ctx, usage, missing_zh, missing_en)
    reason = _reason(ctx, tokens[1].strip())
    if isinstance(reason, Reply):
        return reason
    found = await find_case(ctx, tokens[0])
    if isinstance(found, Reply):
        return found
    actor = ctx.actor
    assert actor is not None  # the actor middleware refused unknown senders
    roles = await case_roles(ctx, found)
    return await apply_and_reply(ctx, found.id, lambda case, state: make_event(actor.employee_id, roles, reason),
                                 lambda d: done(found, reason))


@router.command("cancel", aliases=["取消", "撤销"], usage_zh=USAGE_CANCEL[0], usage_en=USAGE_CANCEL[1])
async def cancel(ctx: Context) -> Reply:
    return await _case_with_reason(
        ctx, USAGE_CANCEL, "取消必须写明原因。", "A cancellation needs a reason.",
        lambda actor, roles, reason: Cancel(actor_id=actor, actor_roles=roles, reason=reason, at=ctx.incoming.at),
        lambda found, reason: ctx.done(
            "cancelled", f"流程 {found.id} 已取消（原因：{reason}）。记录和审计日志完整保留。",
            f"Case {found.id} cancelled (reason: {reason}). Its record and audit trail are kept.",
            changed=True, case_id=found.id),
    )


@router.command("fallback", aliases=["送达", "备用送达"], usage_zh=USAGE_FALLBACK[0], usage_en=USAGE_FALLBACK[1])
async def fallback(ctx: Context) -> Reply:
    """HR starts the fallback delivery now (the employee refused outright), as the 7-day timer would."""
    return await _case_with_reason(
        ctx, USAGE_FALLBACK, "启动备用送达必须写明原因。", "Starting the fallback needs a reason.",
        lambda actor, roles, reason: StartFallback(actor_id=actor, actor_roles=roles, reason=reason,
                                                   at=ctx.incoming.at),
        lambda found, reason: ctx.done(
            "fallback_started",
            f"流程 {found.id} 已启动备用送达（原因：{reason}）。请先以 EMS 邮寄：邮寄通知书和上传凭证的链接"
            "在「邮寄送达」卡片上；邮件被退回或无法投递时才需登报。",
            f"Fallback delivery started for case {found.id} (reason: {reason}). Registered mail first: "
            "the letter and the evidence upload link are on the \"Delivery by registered mail\" card; "
            "a newspaper notice only if the mail comes back.",
            changed=True, case_id=found.id),
    )


# ---- /help and everything else -----------------------------------------------------------
HELP_HR = ("离职助手 · HR 命令\n"
           f"{USAGE_OFFBOARD[0]}\n{USAGE_STATUS[0]}\n/列表 — 进行中的流程（逾期在前）\n{USAGE_REMIND[0]}\n"
           f"{USAGE_CANCEL[0]}\n{USAGE_FALLBACK[0]} — 员工拒签时立即启动邮寄/登报送达\n{USAGE_ANSWER[0]}\n"
           "/导出 <流程号|员工> — 离职档案下载链接\n/帮助\n"
           "英文命令同样可用：/offboard /status /list /remind /cancel /fallback /answer /export /help",
           "Offboarding bot · HR commands\n"
           f"{USAGE_OFFBOARD[1]}\n{USAGE_STATUS[1]}\n/list — open cases, overdue first\n{USAGE_REMIND[1]}\n"
           f"{USAGE_CANCEL[1]}\n{USAGE_FALLBACK[1]} — start mail / newspaper delivery now when the employee refuses\n"
           f"{USAGE_ANSWER[1]}\n/export <case|employee> — a download link for the case archive\n"
           "/help\nChinese aliases work too: /离职 /状态 /列表 /催办 /取消 /送达 /回复 /导出 /帮助")
HELP_OTHERS = ("离职助手会把需要你处理的事项以卡片发给你，直接点卡片上的按钮即可。\n"
               "/进度 — 查看你的离职流程：已完成什么、下一步、截止时间\n"
               "正在办理离职的员工有疑问可直接发消息给我（或点卡片上的「问HR」），问题会转给 HR，回复也会发到这里；"
               "其他事情请直接联系 HR。",
               "The offboarding bot sends you cards for whatever needs you; tap their buttons.\n"
               "/status — your own offboarding: what is done, what is next, by when\n"
               "If you are leaving, just write your question to me (or tap \"Ask HR\" on a card); HR gets it "
               "and answers here. For anything else, contact HR directly.")


@router.command("help", aliases=["帮助", "?", "？"], hr_only=False)
async def help_(ctx: Context) -> Reply:
    if not is_hr(ctx.actor):
        return ctx.done("help", HELP_OTHERS[0], HELP_OTHERS[1])
    # HR also sees this month's platform API use (DingTalk's monthly quota), when any is counted.
    spent = await usage.month_usage()
    zh = "".join("\n" + u.line("zh") for u in spent)
    en = "".join("\n" + u.line("en") for u in spent)
    return ctx.done("help", HELP_HR[0] + zh, HELP_HR[1] + en)


_SLASHED = re.compile(r"^\s*(?:@\S+\s+)*[/／]")


@router.unknown_command
async def unknown(ctx: Context) -> Reply:
    text = str(ctx.incoming.payload.get("text", ""))
    if not _SLASHED.match(text):
        # Plain words from someone with an open case are a question to HR, kept in the case.
        asked = await question_from_text(ctx, text)
        if asked is not None:
            return asked
    if is_hr(ctx.actor):
        return ctx.refuse("unknown_command", f"不认识的命令「{ctx.command}」。\n{HELP_HR[0]}",
                          f"Unknown command \"{ctx.command}\".\n{HELP_HR[1]}")
    return ctx.refuse("unknown_command", HELP_OTHERS[0], HELP_OTHERS[1])
