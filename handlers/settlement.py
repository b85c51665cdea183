"""HR's settlement check: the figures are computed, HR may change one only with a reason.

Before HR completes the step that checks the settlement figures (`signing.settlefigures.check_step`):
the figures are computed from the directory and the case's dates, HR's overrides are checked (an
amount without a reason is refused, as is a reason without an amount, and nothing changes), and a
figure that cannot be computed must be entered by HR with a reason — HR is told which input is
missing. What passes is added to the step's data, so the step's audit entry holds the computed and
the agreed figure side by side, with the reason.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from cases.service import CaseService
from chat.router import Context, Reply
from signing import settlefigures as sf
from storage.models import Case, Employee
from workflow import engine
from workflow.events import Act


async def figures_for(service: CaseService, case: Case, data: dict[str, Any] | None = None
                      ) -> tuple[dict[str, sf.Figure], str | None, date | None]:
    """The computed figures of a case (with HR's entries in `data`, else what the step recorded)."""
    template = service.template(case.template_id)
    employee = await Employee.get(id=case.employee_id)  # type: ignore[attr-defined]
    wage = Decimal(employee.monthly_wage) if employee.monthly_wage is not None else None
    return sf.compute_for_step(template.case_type, data or {}, hire_date=employee.hire_date, wage=wage,
                               case_last_day=case.last_day)


async def gate(ctx: Context, case: Case, step_id: str, data: dict[str, Any]) -> dict[str, Any] | Reply:
    """`data` with the settlement record added, or the refusal (nothing stored)."""
    template = ctx.service.template(case.template_id)
    step = sf.check_step(template)
    if step is None or step.id != step_id or ctx.actor is None:
        return data
    roles = await ctx.service.roles_of(case, ctx.actor)
    state = await ctx.service.load_state(case)
    trial = engine.apply(template, state, Act(step_id=step_id, action=ctx.action,  # type: ignore[arg-type]
                                              actor_id=ctx.actor.employee_id, actor_roles=roles, data=data,
                                              at=ctx.incoming.at))
    if isinstance(trial, engine.Refusal):
        return data  # the engine's own answer (wrong role, missing field, twice) comes first
    declared = {f.key: f for f in step.fields}

    if sf.PROPOSER_FIELD in declared and sf.proposer(data.get(sf.PROPOSER_FIELD)) is None:
        label = declared[sf.PROPOSER_FIELD].label
        given = data.get(sf.PROPOSER_FIELD)
        return ctx.refuse("bad_value", f"「{label.zh}」请填写“公司”或“员工”（填写的是：{given}）。未做任何更改。",
                          f"\"{label.en}\": enter 公司 (the company) or 员工 (the employee). Nothing was changed.",
                          field=sf.PROPOSER_FIELD)
    taken = data.get(sf.LEAVE_TAKEN_FIELD)
    if taken not in (None, "") and sf.parse_amount(taken) is None:
        label = declared[sf.LEAVE_TAKEN_FIELD].label
        return ctx.refuse("bad_value", f"「{label.zh}」不是有效的天数：{taken}。未做任何更改。",
                          f"\"{label.en}\" is not a valid number of days: {taken}. Nothing was changed.",
                          field=sf.LEAVE_TAKEN_FIELD)
    overrides: dict[str, Decimal] = {}
    for item in sf.ITEMS:
        raw = data.get(item.override_field)
        if item.override_field not in declared or raw in (None, ""):
            continue
        value = sf.parse_amount(raw)
        if value is None:
            return ctx.refuse("bad_value", f"「{declared[item.override_field].label.zh}」不是有效金额：{raw}"
                              "（请填写不小于 0、最多两位小数的数字）。未做任何更改。",
                              f"\"{declared[item.override_field].label.en}\" is not a valid amount: {raw} "
                              "(a number ≥ 0 with at most two decimals). Nothing was changed.",
                              field=item.override_field)
        overrides[item.key] = value
    reason = str(data.get(sf.REASON_FIELD) or "").strip()
    if overrides and not reason:
        names = "、".join(sf.BY_KEY[k].zh for k in overrides)
        names_en = ", ".join(sf.BY_KEY[k].en.lower() for k in overrides)
        return ctx.refuse("override_reason_required",
                          f"调整了{names}的金额，但没有填写调整原因。调整计算结果必须说明原因，请填写「调整原因」。"
                          "未做任何更改。",
                          f"You changed the {names_en} but gave no reason. A computed figure may only be changed "
                          "with a reason. Nothing was changed.", field=sf.REASON_FIELD)
    if reason and not overrides:
        return ctx.refuse("override_without_amount",
                          "填写了调整原因，但没有调整任何金额；如不调整，请清空「调整原因」。未做任何更改。",
                          "You gave a reason for a change but changed no figure; clear the reason if nothing "
                          "changes. Nothing was changed.", field=sf.REASON_FIELD)

    figures, ground, last_day = await figures_for(ctx.service, case, data)
    stuck = [f for f in figures.values() if f.computed is None and f.key not in overrides]
    if stuck:
        zh = "；".join(f"{sf.BY_KEY[f.key].zh}：{f.missing}" for f in stuck)
        fields = "、".join(f"「{declared[sf.BY_KEY[f.key].override_field].label.zh}」" for f in stuck
                          if sf.BY_KEY[f.key].override_field in declared)
        en = "; ".join(f"{sf.BY_KEY[f.key].en.lower()}: {f.missing_en}" for f in stuck)
        return ctx.refuse("settlement_input_missing",
                          f"结算金额无法计算——{zh}。请在通讯录中补充后重新导入，再点「标记完成」；"
                          f"或在{fields}中填写金额并在「调整原因」中说明。未做任何更改。",
                          f"The settlement cannot be computed: {en}. Add what is missing to the directory and "
                          "try again, or enter the amount with a reason. Nothing was changed.")
    return {**data, sf.RECORD_KEY: sf.record(figures, overrides, reason, ground=ground, last_day=last_day)}
