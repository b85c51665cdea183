"""HR commands for a back-pay that cannot be computed (see handlers.backpay):

/录入费率 <流程号|员工> <起始月>至<结束月> 下限=… 上限=… 养老=8/16 医疗=2/9.8 失业=0.5/0.5 [医疗定额=3]
          [工伤=0.2] [生育=0.8] 来源=<网址> 原因：<原因>
    the rates of a period no published table covers, for this case only; the table and the reason go
    into the case's audit chain, where every later computation of the case reads them.
/重算 <流程号|员工> [原因]
    redo the HR check that the back-pay letter depends on (after correcting the directory or entering
    rates), while the letter is not yet signed: the check opens again and the letter waits for it.

Both go through the case service like every other change: one transaction with the audit entry and
the inbox row; bad input is refused with a clear message and changes nothing.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from chat.router import Context, Reply, Router
from handlers.actions import apply_and_reply, case_roles
from handlers.backpay import gate_steps
from handlers.commands import find_case
from settlement.errors import SettlementError
from settlement.tables import RateTable, parse_table
from signing.pipeline import CITY_ZH, ENTERED_RATES, case_tables, entered_tables, period_zh
from storage.canonical import sha256_hex
from storage.models import Case, Document, Employee
from workflow import engine
from workflow.events import Note, Reopen

router = Router("backpay")

USAGE_RATES = (
    "/录入费率 <流程号|员工> <起始月>至<结束月> 下限=<元> 上限=<元> 养老=<个人%>/<单位%> 医疗=<个人%>/<单位%> "
    "失业=<个人%>/<单位%> [医疗定额=<元>] [工伤=<单位%>] [生育=<单位%>] 来源=<网址> 原因：<原因>\n"
    "  例：/录入费率 OB-XXXXXX 2026-07至2027-06 下限=7270 上限=36348 养老=8/16 医疗=2/9.8 医疗定额=3 "
    "失业=0.5/0.5 工伤=0.2 来源=https://rsj.beijing.gov.cn/… 原因：北京 2026 年度基数已公布，系统尚未收录",
    "/rates <case|employee> <from>..<to> floor=<CNY> cap=<CNY> pension=<ee%>/<er%> medical=<ee%>/<er%> "
    "unemployment=<ee%>/<er%> [medical_fixed=<CNY>] [injury=<er%>] [maternity=<er%>] source=<url> reason: <why>",
)
USAGE_REDO = ("/重算 <流程号|员工> [原因]", "/redo <case|employee> [reason]")

_REASON = re.compile(r"(?:原因|理由|reason)\s*[:：=]\s*", re.I)
_PERIOD = re.compile(r"^(\d{4}-\d{2})(?:\.\.|至|到|~|～|—)(\d{4}-\d{2})$")
_KEYS = {
    "下限": "floor", "floor": "floor", "上限": "cap", "cap": "cap",
    "养老": "pension", "pension": "pension", "医疗": "medical", "medical": "medical",
    "失业": "unemployment", "unemployment": "unemployment", "工伤": "injury", "injury": "injury",
    "生育": "maternity", "maternity": "maternity", "医疗定额": "medical_fixed", "大额医疗": "medical_fixed",
    "medical_fixed": "medical_fixed", "来源": "source", "source": "source",
}
_LABEL = {"floor": "下限", "cap": "上限", "pension": "养老", "medical": "医疗", "unemployment": "失业",
          "injury": "工伤", "maternity": "生育", "medical_fixed": "医疗定额", "source": "来源"}
_SHARED = ("pension", "medical", "unemployment")  # employee and employer both pay
_EMPLOYER_ONLY = ("injury", "maternity")
_MAX_AMOUNT = Decimal("1000000")


class BadInput(Exception):
    def __init__(self, zh: str, en: str) -> None:
        super().__init__(en)
        self.zh = zh
        self.en = en


def _usage(ctx: Context, usage: tuple[str, str], zh: str, en: str) -> Reply:
    return ctx.refuse("usage", f"{zh}\n用法：{usage[0]}", f"{en}\nUsage: {usage[1]}")


def _number(key: str, text: str) -> Decimal:
    try:
        value = Decimal(text.strip().rstrip("%％"))
    except InvalidOperation:
        raise BadInput(f"「{_LABEL[key]}」不是数字：{text}", f"{key} is not a number: {text}") from None
    if not value.is_finite() or value < 0 or value > _MAX_AMOUNT:
        raise BadInput(f"「{_LABEL[key]}」超出范围：{text}", f"{key} is out of range: {text}")
    return value


def _percent(key: str, text: str) -> str:
    value = _number(key, text)
    if value >= 100:
        raise BadInput(f"「{_LABEL[key]}」是百分数，应小于 100：{text}", f"{key} is a percentage below 100: {text}")
    return str(value / 100)


def parse_rates(pairs: list[str]) -> dict[str, Any]:
    """`key=value` words into the items of a rate table (percentages as fractions, as text)."""
    seen: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            key, sep, value = pair.partition("＝")
        name = _KEYS.get(key.strip().lower())
        if not sep or name is None:
            raise BadInput(f"看不懂「{pair}」：应为 名称=数值，如 养老=8/16", f"cannot read \"{pair}\": use name=value")
        if name in seen:
            raise BadInput(f"「{_LABEL[name]}」写了两次", f"{name} given twice")
        seen[name] = value.strip()
    missing = [k for k in ("floor", "cap", *_SHARED, "source") if k not in seen]
    if missing:
        raise BadInput("缺少：" + "、".join(_LABEL[k] for k in missing), "missing: " + ", ".join(missing))
    floor, cap = _number("floor", seen["floor"]), _number("cap", seen["cap"])
    if floor <= 0 or cap < floor:
        raise BadInput(f"上限 {cap} 应不低于下限 {floor}，且下限大于 0", f"cap {cap} must be >= floor {floor} > 0")
    source = seen["source"]
    # Printed in the letter's basis lines: plain URL characters only (no quotes or angle brackets).
    if not re.fullmatch(r"https?://[A-Za-z0-9._~:/?#@!$&()*+,;=%-]{1,500}", source):
        raise BadInput("「来源」应为公告的网址（http:// 或 https:// 开头）", "source must be an http(s) URL")
    items: dict[str, dict[str, str]] = {}
    for name in _SHARED:
        ee, slash, er = seen[name].partition("/")
        if not slash:
            raise BadInput(f"「{_LABEL[name]}」应写成 个人%/单位%，如 {_LABEL[name]}=8/16",
                           f"{name} must be employee%/employer%, e.g. 8/16")
        items[name] = {"employee_rate": _percent(name, ee), "employer_rate": _percent(name, er)}
    for name in _EMPLOYER_ONLY:
        if name in seen:
            items[name] = {"employer_rate": _percent(name, seen[name])}
    if "medical_fixed" in seen:
        items["medical"]["employee_fixed"] = str(_number("medical_fixed", seen["medical_fixed"]))
    return {"base_floor": str(floor), "base_cap": str(cap), "source_url": source, "items": items}


def _city_slug(city: str) -> str:
    slug = city.strip().lower()
    if re.fullmatch(r"[a-z][a-z0-9_-]*", slug):
        return slug
    # A city on file only by its Chinese name: a stable slug; lookups still match the Chinese name.
    return "city-" + sha256_hex(city.strip().encode("utf-8"))[:8]


async def _table_for(ctx: Context, case: Case, employee: Employee, start: str, end: str,
                     rates: dict[str, Any], reason: str) -> RateTable:
    city = (employee.city or "").strip()
    if not city:
        raise BadInput(f"通讯录中 {employee.name} 没有所在城市，请先补充城市后再录入费率",
                       f"{employee.name} has no city in the directory; add it first")
    entered = await entered_tables(case.id)
    tables = case_tables(ctx.settings.rate_tables_dir, entered)
    try:
        slug = tables.resolve_city(city)
        city_zh = tables.for_city(slug)[0].city_zh
    except SettlementError:
        slug = _city_slug(city)
        city_zh = CITY_ZH.get(slug, city)
    table_id = f"case-{case.id.lower()}-{slug}-{start}"
    published = [t for t in tables.tables if t.city == slug and t.id not in {e.id for e in entered}
                 and t.effective_from <= end and start <= t.effective_to]
    if published:
        t = published[0]
        raise BadInput(f"{city_zh} {t.effective_from}至{t.effective_to} 已有费率表「{t.name}」，该期间无需录入；"
                       "如金额不对，请核对通讯录中的入职日期、城市和月工资",
                       f"{t.name} already covers {t.effective_from}..{t.effective_to}; nothing to enter")
    others = [e for e in entered if e.id != table_id and e.city == slug
              and e.effective_from <= end and start <= e.effective_to]
    if others:
        e = others[0]
        raise BadInput(f"本流程已录入 {e.effective_from}至{e.effective_to} 的费率，与 {start}至{end} 重叠",
                       f"rates for {e.effective_from}..{e.effective_to} were already entered and overlap")
    data = {
        "id": table_id, "city": slug, "city_zh": city_zh, "name": f"HR 录入的{city_zh}费率",
        "name_en": f"{city_zh} rates entered by HR for case {case.id}", "effective_from": start,
        "effective_to": end, "checked": ctx.incoming.at.date().isoformat(), "confidence": "entered by HR with a reason",
        "notes": reason, **rates,
    }
    try:
        return parse_table(data)
    except SettlementError as exc:
        raise BadInput(f"费率有误（{exc.field}）：{exc.message}", f"bad rates ({exc.field}): {exc.message}") from None


def _table_json(table: RateTable) -> dict[str, Any]:
    return table.model_dump(mode="json", exclude_none=True)


@router.command("rates", aliases=["录入费率", "费率"], usage_zh=USAGE_RATES[0], usage_en=USAGE_RATES[1])
async def enter_rates(ctx: Context) -> Reply:
    marker = _REASON.search(ctx.args)
    if marker is None or not ctx.args[marker.end():].strip():
        return _usage(ctx, USAGE_RATES, "录入费率必须写明原因（原因：…）。",
                      "Entering rates needs a reason (reason: …).")
    reason = " ".join(ctx.args[marker.end():].split())[:500]
    words = ctx.args[:marker.start()].split()
    if len(words) < 2:
        return _usage(ctx, USAGE_RATES, "缺少流程号或期间。", "Missing the case or the period.")
    period = _PERIOD.match(words[1])
    if period is None:
        return _usage(ctx, USAGE_RATES, f"「{words[1]}」不是期间（如 2026-07至2027-06）。",
                      f"\"{words[1]}\" is not a period (e.g. 2026-07..2027-06).")
    start, end = period.group(1), period.group(2)
    if not ("01" <= start[5:] <= "12" and "01" <= end[5:] <= "12") or end < start:
        return _usage(ctx, USAGE_RATES, f"期间「{words[1]}」无效。", f"Invalid period \"{words[1]}\".")
    try:
        rates = parse_rates(words[2:])
    except BadInput as exc:
        return _usage(ctx, USAGE_RATES, exc.zh + "。", exc.en + ".")
    found = await find_case(ctx, words[0])
    if isinstance(found, Reply):
        return found
    case = found
    employee = await Employee.get(id=case.employee_id)  # type: ignore[attr-defined]
    try:
        table = await _table_for(ctx, case, employee, start, end, rates, reason)
    except BadInput as exc:
        return ctx.refuse("bad_rates", exc.zh + "。", exc.en + ".")
    actor = ctx.actor
    assert actor is not None  # the actor middleware refused unknown senders
    roles = await case_roles(ctx, case)
    span = period_zh([start, end])
    gated = gate_steps(ctx.service.template(case.template_id))
    step = ctx.service.template(case.template_id).step(gated[0]).title.zh if gated else ""
    then = f"现在请在「{step}」卡片上重新点「标记完成」（已完成的请发送 /重算 {case.id}）。" if step else ""
    note = {"table": _table_json(table), "reason": reason, "city": table.city, "city_zh": table.city_zh,
            "effective_from": start, "effective_to": end}
    return await apply_and_reply(
        ctx, case.id, lambda c, s: Note(ENTERED_RATES, actor.employee_id, roles, note, ctx.incoming.at),
        lambda d: ctx.done(
            "rates_entered",
            f"已为流程 {case.id} 录入 {table.city_zh} {span} 的社保费率（原因：{reason}），已写入审计记录。{then}",
            f"Rates for {table.city_zh} {start}..{end} entered for case {case.id} (reason: {reason}) and recorded "
            "in its audit chain. Now redo the HR check.",
            changed=True, case_id=case.id, table_id=table.id,
        ),
    )


@router.command("redo", aliases=["重算", "重新核对"], usage_zh=USAGE_REDO[0], usage_en=USAGE_REDO[1])
async def redo(ctx: Context) -> Reply:
    words = ctx.args.split(maxsplit=1)
    if not words:
        return _usage(ctx, USAGE_REDO, "请给出流程号或员工。", "Give a case or an employee.")
    found = await find_case(ctx, words[0])
    if isinstance(found, Reply):
        return found
    case = found
    reason = " ".join(words[1].split())[:500] if len(words) > 1 else ""
    template = ctx.service.template(case.template_id)
    gated = gate_steps(template)
    if not gated:
        return ctx.refuse("nothing_to_redo", f"流程 {case.id} 没有社保补缴金额需要重算。",
                          f"Case {case.id} has no back-pay to recompute.")
    step_id = gated[0]
    actor = ctx.actor
    assert actor is not None  # the actor middleware refused unknown senders
    roles = await case_roles(ctx, case)
    title = template.step(step_id)

    def done(result: engine.Decision) -> Reply:
        return ctx.done("redo", f"已重新打开流程 {case.id} 的「{title.title.zh}」：请核对后在卡片上重新点「标记完成」，"
                                "补缴金额和《离职保证书》会按最新的信息重新生成。",
                        f"\"{title.title.en}\" of case {case.id} is open again: check and mark it done; the "
                        "back-pay and the letter are recomputed from the current data.", changed=True, case_id=case.id)

    async def drop_drafts(conn: Any, result: engine.Decision) -> None:
        if result.audit is not None:
            # The unsigned drafts of the relocked steps froze the old amount: drop them so the letter is
            # rendered again from the corrected data when its step opens again.
            relocked = list(result.audit.data.get("relocked") or ())
            if relocked:
                await Document.filter(case_id=case.id, step_id__in=relocked, status="draft").using_db(conn).delete()

    return await apply_and_reply(
        ctx, case.id, lambda c, s: Reopen(step_id, actor.employee_id, roles, reason, ctx.incoming.at), done,
        accepted=drop_drafts,
    )
