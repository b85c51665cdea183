"""A back-pay that cannot be computed must not strand the case.

The letter the employee signs states the social-insurance back-pay, so the HR step it depends on (the
probation flow's "HR 核对考勤与社保缴纳") is only completed when the amount can be computed from what HR
entered. When it cannot (a month outside every rate table, no wage on file, ...):
- the step stays open and HR gets one Chinese message (outbox text) naming the city and the months and
  what to do: correct the directory, or enter that period's rates with a reason (`/录入费率`);
- the refused attempt is a `backpay_blocked` entry in the case's audit chain;
- employees never see the reason: their cards and the signing page say HR is checking the amount.
`handlers.backpay_commands` holds the HR commands (enter rates, redo the step).
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal
from typing import Any

from cards.builders import shows_backpay
from cases.service import CaseError, CaseService, CaseTx
from chat.router import Context, Reply
from settlement.tables import RateTable
from signing.pipeline import BackpayError, PipelineError, RatesMissing, backpay_context, entered_tables
from storage import queue
from storage.canonical import canonical_json, sha256_hex
from storage.models import Case, Employee, OutboxMessage
from workflow import engine
from workflow.documents import document_title
from workflow.events import Act, Note
from workflow.model import Role
from workflow.template import FlowTemplate

log = logging.getLogger("handlers.backpay")

BLOCKED = "backpay_blocked"
# What an employee (or finance) reads while HR sorts the amount out: never the reason itself.
EMPLOYEE_STATUS = ("HR 正在核对补缴金额，核对完成后会通知你", "HR is checking the amount; you will be told when done")
EMPLOYEE_PAGE = "文件正在由 HR 核对，核对完成后会通知你再来签署。"


def gate_steps(template: FlowTemplate) -> tuple[str, ...]:
    """HR steps whose completion starts a step that shows the back-pay (the HR check before the letter)."""
    hr_steps = {s.id for s in template.steps if s.role == Role.HR}
    out: list[str] = []
    for step in template.steps:
        if shows_backpay(step):
            out.extend(d for d in step.depends_on if d in hr_steps and d not in out)
    return tuple(out)


def contribution_year(month: str) -> tuple[str, str]:
    """The July–June year a month falls in: the period HR is most likely to find one notice for."""
    year, mon = int(month[:4]), int(month[5:7])
    start = year if mon >= 7 else year - 1
    return f"{start:04d}-07", f"{start + 1:04d}-06"


_ITEM_ZH = {"pension": "养老", "medical": "医疗", "unemployment": "失业", "injury": "工伤", "maternity": "生育"}


def _pct(rate: Decimal) -> str:
    text = format(rate * 100, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def rates_hint(table: RateTable | None) -> str:
    """The rate words of `/录入费率`, pre-filled from the city's newest table (rates rarely change; the
    base limits do every year, so those stay for HR to fill in)."""
    if table is None:
        return "养老=8/16 医疗=2/9.8 失业=0.5/0.5"
    words = []
    for name, zh in _ITEM_ZH.items():
        item = table.items.get(name)
        if item is None:
            continue
        if name in ("injury", "maternity"):
            words.append(f"{zh}={_pct(item.employer_rate)}")
        else:
            words.append(f"{zh}={_pct(item.employee_rate)}/{_pct(item.employer_rate)}")
        if item.employee_fixed:
            words.append(f"医疗定额={_pct(item.employee_fixed / 100)}")
    return " ".join(words)


def hr_message(case: Case, employee: Employee, problem: PipelineError, step_title: str) -> str:
    """The one message HR gets: what failed, for which city and months, and the two ways out."""
    head = f"流程 {case.id}（{employee.name}，{employee.employee_id}）：「{step_title}」未能完成。"
    again = f"处理后请在「{step_title}」卡片上重新点「标记完成」，或发送 /重算 {case.id}。"
    wait = "在此之前员工不会收到《离职保证书》，员工卡片只显示“HR 正在核对补缴金额”。"
    if isinstance(problem, RatesMissing):
        start, end = contribution_year(problem.months[0])
        return "\n".join([
            head,
            f"原因：{problem}。",
            "请任选其一：",
            "① 核对通讯录中该员工的入职日期、所在城市和月工资；如有误，更正后重新导入通讯录。",
            f"② 按{problem.city_zh}公布的该期间社保缴费标准录入费率（连同原因写入本流程审计记录）：",
            f"/录入费率 {case.id} {start}至{end} 下限=<元> 上限=<元> {rates_hint(problem.latest)} "
            "来源=<公告网址> 原因：<原因>",
            *([f"（费率按「{problem.latest.name}」预填，请按通知核对；下限、上限请按通知填写。）"]
              if problem.latest else []),
            again, wait,
        ])
    fix = "请核对通讯录中该员工的入职日期、所在城市和月工资，更正后重新导入通讯录。"
    return "\n".join([head, f"原因：{problem}。", fix, again, wait])


async def check(settings: Any, case: Case, unpaid: object) -> PipelineError | None:
    """Whether the letter's back-pay can be computed with `unpaid` months; the problem if not."""
    employee = await Employee.get(id=case.employee_id)  # type: ignore[attr-defined]
    try:
        backpay_context(employee, case.last_day, unpaid, rate_tables_dir=settings.rate_tables_dir,
                        entered=await entered_tables(case.id))
    except PipelineError as exc:
        return exc
    return None


def _note_data(step_id: str, problem: PipelineError, unpaid: object) -> dict[str, Any]:
    data: dict[str, Any] = {"step_id": step_id, "message": str(problem),
                            "unpaid_months": None if unpaid is None else str(unpaid)}
    if isinstance(problem, RatesMissing):
        data.update(city=problem.city, city_zh=problem.city_zh, months=problem.months)
    return data


async def _hr_rows(service: CaseService, case: Case, text: str, key: str, at: datetime,
                   extra: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    ids = sorted({case.created_by, *extra})
    people = await Employee.filter(employee_id__in=ids)
    return [{"key": f"{key}:{p.employee_id}", "case_id": case.id, "platform": service.platform_for(p),
             "recipient": p.employee_id, "step_id": None, "kind": "text",
             "payload": {"case_id": case.id, "text": text}, "next_attempt_at": at, "created_at": at}
            for p in people]


async def gate(ctx: Context, case: Case, step_id: str, data: dict[str, Any]) -> Reply | None:
    """Before HR completes a step that starts the back-pay letter: refuse (telling HR in Chinese, audited)
    when the amount cannot be computed. None when the step is not gated, would be refused anyway, or the
    amount computes."""
    template = ctx.service.template(case.template_id)
    if step_id not in gate_steps(template) or ctx.actor is None:
        return None
    actor = ctx.actor
    roles = await ctx.service.roles_of(case, actor)
    state = await ctx.service.load_state(case)
    at = ctx.incoming.at
    trial = engine.apply(template, state, Act(step_id=step_id, action=ctx.action,  # type: ignore[arg-type]
                                              actor_id=actor.employee_id, actor_roles=roles, data=data, at=at))
    if isinstance(trial, engine.Refusal) or state.steps[step_id].status == "done":
        return None  # the engine's own answer (wrong role, missing field, twice) comes first
    unpaid = data.get("unpaid_months")
    problem = await check(ctx.settings, case, unpaid)
    if problem is None:
        return None
    employee = await Employee.get(id=case.employee_id)  # type: ignore[attr-defined]
    step_title = template.step(step_id).title.zh
    text = hr_message(case, employee, problem, step_title)
    note = _note_data(step_id, problem, unpaid)
    key = f"{case.id}:{BLOCKED}:{sha256_hex(canonical_json(note))[:16]}"
    rows = await _hr_rows(ctx.service, case, text, key, at, (actor.employee_id,))
    reply = ctx.refuse(BLOCKED, f"「{step_title}」未完成：社保补缴金额无法计算。原因和处理办法已发到你的消息。",
                       f"\"{template.step(step_id).title.en}\" is not done: the back-pay cannot be computed. "
                       "HR has been sent the reason and what to do (in Chinese).", detail=text)

    async def also(tx: CaseTx) -> None:
        ctx.expected = reply
        await ctx.record(tx.conn)
        await queue.insert_outbox(tx.conn, rows)

    try:
        await ctx.service.apply(case.id, lambda c, s: Note(BLOCKED, actor.employee_id, roles, note, at),
                                actor=actor.employee_id, also=also)
    except CaseError as exc:
        return ctx.refuse(exc.code, exc.message_zh, exc.message_en)
    return reply


async def tell_hr(service: CaseService, case: Case, step_id: str, problem: PipelineError, *, actor_id: str,
                  at: datetime) -> None:
    """Tell HR (once per distinct problem) that a document of the case cannot be produced — from a path an
    employee triggered, such as opening the signing page of a case stranded before the gate existed."""
    template = service.template(case.template_id)
    gated = gate_steps(template)
    note = _note_data(step_id, problem, None)
    key = f"{case.id}:{BLOCKED}:{sha256_hex(canonical_json(note))[:16]}"
    if await OutboxMessage.filter(key__startswith=key).exists():
        return
    employee = await Employee.get(id=case.employee_id)  # type: ignore[attr-defined]
    if isinstance(problem, BackpayError) and gated:
        text = hr_message(case, employee, problem, template.step(gated[0]).title.zh)
    else:
        step = template.step(step_id)
        docs = "、".join(f"《{document_title(d).zh}》" for d in step.documents)
        text = (f"流程 {case.id}（{employee.name}，{employee.employee_id}）：「{step.title.zh}」的{docs}无法生成。\n"
                f"原因：{problem}。\n员工打开签署页面时只看到“文件正在由 HR 核对”；"
                f"处理后请发送 /催办 {case.id} 通知员工。")
    rows = await _hr_rows(service, case, text, key, at)

    async def also(tx: CaseTx) -> None:
        await queue.insert_outbox(tx.conn, rows)

    try:
        await service.apply(case.id, lambda c, s: Note(BLOCKED, actor_id, frozenset(), note, at), actor=actor_id,
                            also=also)
    except CaseError:
        log.exception("case %s: could not tell HR about %s", case.id, problem)
