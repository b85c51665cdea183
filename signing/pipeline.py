"""From database rows to sealed PDFs: document context, drafts, the signed render, completion page and seal.

Order after a signature commits: render the signed version (handwritten image in its slot) → append the
completion page (evidence incl. the audit position) → seal once (PAdES B-B, or B-T with a TSA). The draft's
filled-in values are stored with it, so the signed version is rendered from exactly what the signer saw.
A crash after the commit leaves the document "signed" and a TSA outage leaves it "pending_tsa"; `sweep`
(run by a background loop) finishes both later and never downgrades B-T to B-B.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from config.settings import Settings
from settlement.basis import money
from settlement.errors import SettlementError
from settlement.social_insurance import backpay
from settlement.tables import RateTable, RateTables, bundled_tables, load_tables, merge, parse_table
from signing import settlefigures as sf
from signing.canonical import canonical_json, sha256_hex
from signing.casefacts import Notes, amount, has_backpay, mutual_compensation, non_compete, step_value, upper
from signing.channel import Channel
from signing.completion import completion_page, device_summary
from signing.documents import SignatureMark, render_document, render_signed
from signing.keys import KeyMaterial, load_or_create_keys
from signing.merge import append_pages
from signing.seal import TsaUnavailable, async_seal_pdf
from signing.templates import DocumentError, format_value, load_template, render_blocks, unfilled
from storage import casestore
from storage.models import AuditEntry, Case, CaseStep, Checkpoint, Document, Employee, Signature
from workflow.documents import document_title
from workflow.errors import TemplateError
from workflow.model import ROLE_TITLES, Role
from workflow.template import FlowTemplate, StepTemplate
from workflow.templates import load_templates

log = logging.getLogger("signing")

# The fallback paper a step issues (its `notice`): the registered-mail letter, the newspaper notice text.
NOTICE_KINDS = frozenset({"fallback_notice", "newspaper_notice"})
# Documents the company issues on its own, signed by no one: sealed as rendered, and their hashes entered
# in the audit chain when sealed (a signed document's hash is there through its signature's evidence).
COMPANY_ISSUED = frozenset({"completion_notice", *NOTICE_KINDS})
# How long the letter gives the employee to come forward (its `deadline`), counted from the letter's date.
NOTICE_REPLY_DAYS = 15
# The step id a company-issued completion notice is filed under (no flow step produces it).
ISSUED_STEP = "case_completed"
# Audit kind recording a company-issued document's hashes once sealed; not an engine decision.
ISSUED_KIND = "document_issued"

# Which signature slot a signer fills, by their role on the step (templates name slots this way).
SLOT_FOR_ROLE = {"employee": "employee", "handover": "receiver"}
# A document no longer current: failed (its seal was given up) or superseded (HR added to what it says
# before anyone signed it). Kept as a record; signing starts from a fresh draft.
NOT_CURRENT = ("failed", "superseded")
LEGAL_BASIS = {
    "probation": "《中华人民共和国劳动合同法》第三十九条第一项（在试用期间被证明不符合录用条件）",
    "misconduct": "《中华人民共和国劳动合同法》第三十九条",
}
LEGAL_BASIS_EN = {
    "probation": "Labour Contract Law of the PRC, Art. 39(1) (shown during probation not to meet the hiring "
                 "conditions)",
    "misconduct": "Labour Contract Law of the PRC, Art. 39",
}
# Values build_context words itself, per document language (basis lines come from settlement/ and
# signing.casefacts in the same language).
WORDS = {
    "zh": {"legal_basis": "《中华人民共和国劳动合同法》相关规定", "open_ended": "无固定期限", "term": "{start}至{end}",
           "hr_contact": "{name}（人事）", "hr_dept": "人力资源部", "none": "无",
           "no_backpay": "试用期社会保险已足额缴纳，无需补缴。",
           "backpay_split": "上述补缴金额 {employee} 元为个人缴费部分；单位缴费部分 {employer} 元由公司另行承担。",
           "how_to": "点击{channel}中的链接在线签署，或携带本人身份证件到本单位人力资源部现场办理",
           "pending": "{title}（{date}起）"},
    "en": {"legal_basis": "the relevant provisions of the Labour Contract Law of the PRC",
           "open_ended": "open-ended", "term": "{start} to {end}", "hr_contact": "{name} (HR)",
           "hr_dept": "Human Resources", "none": "none",
           "no_backpay": "Social insurance for the probation period was paid in full; nothing is owed.",
           "backpay_split": "The back-pay of RMB {employee} above is the employee's share; the employer's share "
                            "of RMB {employer} is borne by the company.",
           "how_to": "sign online through the link in the {channel}, or come to the company's HR department "
                     "with your ID card",
           "pending": "{title} (since {date})"},
}


def _words(lang: str) -> dict[str, str]:
    return WORDS.get(lang, WORDS["zh"])


# Chinese names of large cities a directory may hold by slug, so HR's message names the city even when no
# table of it is loaded yet.
CITY_ZH = {
    "beijing": "北京", "shanghai": "上海", "guangzhou": "广州", "shenzhen": "深圳", "hangzhou": "杭州",
    "chengdu": "成都", "tianjin": "天津", "chongqing": "重庆", "nanjing": "南京", "wuhan": "武汉",
    "suzhou": "苏州", "xian": "西安", "changsha": "长沙", "zhengzhou": "郑州", "qingdao": "青岛",
}


class PipelineError(RuntimeError):
    """A document cannot be produced (missing template, directory data or rate table); message is for HR."""


# Audit kind of rates HR entered for one case (with a reason) where no published table covers the months.
# The audit chain is where they live: tamper-evident, and read back by every later computation of the case.
ENTERED_RATES = "backpay_rates_entered"


class BackpayError(PipelineError):
    """The social-insurance back-pay cannot be computed from the directory and the tables."""


class RatesMissing(BackpayError):
    """No rate table covers some of the back-pay months for the employee's city: HR must correct the
    directory or enter the rates; the message names the city and the months."""

    def __init__(self, city: str, city_zh: str, months: Sequence[str], known: Sequence[str],
                 latest: RateTable | None = None) -> None:
        self.city = city
        self.city_zh = city_zh
        self.months = list(months)
        self.known = list(known)
        self.latest = latest  # the city's newest table: its rates pre-fill HR's entry
        known_text = "、".join(known) if known else "无"
        super().__init__(f"{city_zh} {self.period_zh} 没有社保费率表（已有期间：{known_text}），"
                         "无法计算社保补缴金额")

    @property
    def period_zh(self) -> str:
        return period_zh(self.months)


def period_zh(months: Sequence[str]) -> str:
    if not months:
        return "无"
    first, last = _month_zh(months[0]), _month_zh(months[-1])
    return first if len(months) == 1 else f"{first}至{last}"


# ---------------------------------------------------------------- keys

_keys: dict[tuple[str, str], KeyMaterial] = {}


def keys_for(settings: Settings) -> KeyMaterial:
    """The company key material for these settings, loaded (or generated) once per process."""
    cache_key = (str(Path(settings.data_dir).resolve()), str(settings.seal_pkcs12_path or ""))
    km = _keys.get(cache_key)
    if km is None:
        passphrase = (settings.seal_pkcs12_passphrase.get_secret_value()
                      if settings.seal_pkcs12_passphrase else None)
        km = load_or_create_keys(settings.data_dir, pkcs12_path=settings.seal_pkcs12_path,
                                 pkcs12_passphrase=passphrase, organization=settings.company_name)
        _keys[cache_key] = km
    return km


# ---------------------------------------------------------------- context

def _months_between(start: date, end: date) -> list[str]:
    out: list[str] = []
    y, m = start.year, start.month
    while (y, m) <= (end.year, end.month):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def _month_zh(month: str) -> str:
    y, m = month.split("-")
    return f"{int(y)}年{int(m)}月"


def _step_value(steps: list[CaseStep], key: str) -> Any:
    for st in steps:
        if isinstance(st.data, dict) and key in st.data:
            return st.data[key]
    return None


def case_tables(rate_tables_dir: Path | None, entered: Sequence[RateTable] = ()) -> RateTables:
    """Bundled (+ company) tables, plus the rates HR entered for this case. An entered table wins over a
    loaded one of the same city it overlaps (one published later): the case keeps what HR recorded."""
    base = load_tables(rate_tables_dir) if rate_tables_dir is not None else bundled_tables()
    if not entered:
        return base
    kept = [t for t in base.tables if not any(
        t.city == e.city and t.effective_from <= e.effective_to and e.effective_from <= t.effective_to
        for e in entered)]
    return merge(kept, entered)


async def entered_tables(case_id: str) -> list[RateTable]:
    """The rate tables HR entered for this case, read back from its audit chain (a later entry with the
    same id replaces an earlier one)."""
    by_id: dict[str, RateTable] = {}
    for entry in await AuditEntry.filter(case_id=case_id, kind=ENTERED_RATES).order_by("seq"):
        try:
            table = parse_table((entry.data or {}).get("table"), source=f"{case_id} audit #{entry.seq}")
        except SettlementError:
            log.error("case %s: audit entry #%s holds no valid rate table", case_id, entry.seq)
            continue
        by_id[table.id] = table
    return list(by_id.values())


def backpay_months(emp: Employee, last_day: date | None, unpaid: object) -> list[str]:
    """The probation months from the hire date to the last day; when HR entered the number of unpaid
    months, the first that many (the months before the employer registered the employee)."""
    if emp.hire_date is None or last_day is None:
        raise BackpayError("员工入职日期或最后工作日未登记，无法计算社保补缴金额")
    if emp.monthly_wage is None:
        raise BackpayError("员工月工资未登记，无法计算社保补缴金额")
    months = _months_between(emp.hire_date, last_day)
    if unpaid is not None and str(unpaid).strip() != "":
        try:
            n = int(Decimal(str(unpaid).strip()))
        except ArithmeticError as exc:
            raise BackpayError(f"未缴社保月数无效：{unpaid}") from exc
        months = months[: max(n, 0)]
    return months


def check_coverage(tables: RateTables, city: str | None, months: Sequence[str]) -> None:
    """RatesMissing (in Chinese, naming city and months) unless a table covers every month."""
    if city is None:
        if len(tables.cities()) != 1:
            raise BackpayError("员工所在城市未登记，无法选择社保费率表；请在通讯录中补充城市后重新核对")
        city = tables.cities()[0]
    try:
        slug = tables.resolve_city(city)
    except SettlementError:
        raise RatesMissing(city, CITY_ZH.get(city.strip().lower(), city), months, []) from None
    own = tables.for_city(slug)
    missing = [m for m in months if not any(t.covers(m) for t in own)]
    if missing:
        raise RatesMissing(slug, own[0].city_zh, missing, [f"{t.effective_from}至{t.effective_to}" for t in own],
                           own[-1])


def backpay_context(emp: Employee, last_day: date | None, unpaid: object, *,
                    rate_tables_dir: Path | None = None, entered: Sequence[RateTable] = (),
                    lang: str = "zh") -> dict[str, object]:
    """backpay_period, backpay_amount and basis_lines for the guarantee letter (months: `backpay_months`).

    Every failure is a PipelineError in Chinese (RatesMissing when no table covers a month): the message
    goes to HR, never to the employee, and never carries the settlement package's English text.
    """
    months = backpay_months(emp, last_day, unpaid)
    words = _words(lang)
    if not months:
        return {"backpay_period": words["none"], "backpay_amount": Decimal("0.00"),
                "basis_lines": [words["no_backpay"]]}
    try:
        tables = case_tables(rate_tables_dir, entered)
        check_coverage(tables, emp.city or None, months)
        result = backpay(months, Decimal(emp.monthly_wage), city=emp.city or None, tables=tables)
    except SettlementError as exc:
        log.warning("back-pay for %s: %s", emp.employee_id, exc)
        raise BackpayError(f"社保补缴金额无法计算（{exc.field}）：请核对通讯录中该员工的入职日期、城市和月工资，"
                            "或所用费率表") from exc
    period = period_zh(months) if lang == "zh" else (
        months[0] if len(months) == 1 else f"{months[0]} to {months[-1]}")
    lines = list(result.basis_en if lang == "en" else result.basis)
    lines.append(words["backpay_split"].format(employee=money(result.employee_total),
                                               employer=money(result.employer_total)))
    return {"backpay_period": period, "backpay_amount": result.employee_total, "basis_lines": lines}


def _years_of_service(start: date | None, end: date | None, lang: str = "zh") -> str:
    if start is None or end is None or end < start:
        return ""
    months = (end.year - start.year) * 12 + end.month - start.month + (1 if end.day >= start.day else 0)
    years, rest = divmod(max(months, 0), 12)
    if lang == "en":
        parts = [f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in ((years, "year"), (rest, "month")) if n]
        return " ".join(parts) or "0 months"
    if years and rest:
        return f"{years}年{rest}个月"
    return f"{years}年" if years else f"{rest}个月"


def _iso_date(value: object) -> date | None:
    try:
        return date.fromisoformat(str(value).strip()) if value else None
    except ValueError:
        return None


_flows: dict[str, dict[str, FlowTemplate]] = {}


def flow_of(template_id: str, settings: Settings) -> FlowTemplate:
    """The flow a case runs, loaded once per template folder (the same files the service loaded)."""
    key = str(settings.templates_dir or "")
    if key not in _flows:
        _flows[key] = load_templates([settings.templates_dir] if settings.templates_dir else [])
    flow = _flows[key].get(template_id)
    if flow is None:
        raise PipelineError(f"流程模板 {template_id} 已不存在，无法生成文件")
    return flow


# Every name build_context fills, for every kind and case type (empty when it does not apply), so a
# template can be checked at load time against what a render will give it (check_flow_documents).
CONTEXT_KEYS = frozenset({
    "company_name", "company_address", "company_registration_number", "case_type",
    "employee_name", "id_number", "department", "position",
    "termination_date", "contract_start", "contract_term", "years_of_service", "reason", "legal_basis",
    "handover_deadline", "notice_date", "issue_date", "handover_date", "receiver_name", "items", "contact",
    "backpay_period", "backpay_amount", "backpay_amount_upper", "basis_lines", "backpay_paid_on",
    "backpay_reference", "final_pay_date", "final_pay_reference", "certificate_signed_on",
    "compensation_amount", "compensation_amount_upper", "compensation_lines", "compensation_pay_date",
    "non_compete_months", "non_compete_monthly", "non_compete_lines", "source_notes", "certificate_reason",
    "compensation_zero_basis", "settlement_lines", "settlement_basis_lines",
    # The fallback paper (fallback_notice, newspaper_notice): the address on file, what is still unsigned,
    # how and when the employee was first told, what the letter encloses, the registered mail's result.
    "employee_address", "pending_items", "first_notice_date", "first_notice_channel", "deadline", "how_to",
    "attachments", "mail_tracking_number", "mail_result",
})


def _done_on(steps: list[CaseStep], step_id: str, tz: Any, *, signed_only: bool = False) -> date | None:
    for st in steps:
        if st.step_id == step_id and st.status == "done" and st.done_at is not None:
            if signed_only and st.outcome == "replaced":
                return None
            return st.done_at.astimezone(tz).date()
    return None


def _data_of(steps: list[CaseStep], step_id: str, key: str) -> str:
    for st in steps:
        if st.step_id == step_id and isinstance(st.data, dict):
            return str(st.data.get(key) or "")
    return ""


def document_step(flow: FlowTemplate, kind: str, step_id: str | None = None) -> StepTemplate | None:
    """The step whose document this is (`step_id` when given, else the first step naming the kind)."""
    if step_id is not None and step_id in flow.by_id and kind in flow.by_id[step_id].documents:
        return flow.by_id[step_id]
    return next((s for s in flow.steps if kind in s.documents), None)


def _items(step: StepTemplate | None, steps: list[CaseStep]) -> list[object]:
    if step is None:
        return []
    row = next((st for st in steps if st.step_id == step.id), None)
    return list(step.items_for(row.data if row is not None and isinstance(row.data, dict) else {}))


async def build_context(case: Case, kind: str, settings: Settings, *, channel: Channel, now: datetime,
                        lang: str | None = None, step_id: str | None = None) -> dict[str, object]:
    """Every value the templates use, from the case, its employee, its flow and the steps' data, worded
    in the document's language (default: the service's; `step_id`: the step the document belongs to,
    when the caller knows it; `channel`: what the platform the case went through is called).

    The one place a document's values come from; the keys are always exactly CONTEXT_KEYS."""
    lang = lang or settings.language
    words = _words(lang)
    emp = await Employee.get(id=case.employee_id)  # type: ignore[attr-defined]
    steps = await CaseStep.filter(case_id=case.id).order_by("position")
    flow = flow_of(case.template_id, settings)
    tz = settings.tz
    today = now.astimezone(tz).date()
    hr_steps = {s.id for s in flow.steps if s.role == Role.HR}
    hr_data = [st.data for st in steps if st.step_id in hr_steps and isinstance(st.data, dict)]
    agreed_day = _iso_date(step_value(hr_data, "last_working_day"))
    last_day = agreed_day or case.last_day
    hr = await Employee.get_or_none(employee_id=case.created_by)
    receiver = await Employee.get_or_none(employee_id=case.handover_id) if case.handover_id else None
    term_end = emp.contract_end
    contract_term = ""
    if emp.contract_start is not None:
        end_text = format_value(term_end, lang) if term_end else words["open_ended"]
        contract_term = words["term"].format(start=format_value(emp.contract_start, lang), end=end_text)
    wage = Decimal(emp.monthly_wage) if emp.monthly_wage is not None else None
    notes = Notes(lang)
    ctx: dict[str, object] = {
        "company_name": settings.company_name,
        "company_address": settings.company_address,
        "company_registration_number": settings.company_registration_number,
        "case_type": flow.case_type,
        "employee_name": emp.name,
        "id_number": emp.id_number or "",
        "department": emp.department or "",
        "position": emp.position or "",
        "termination_date": last_day or today,
        "contract_start": emp.contract_start or "",
        "contract_term": contract_term,
        "years_of_service": _years_of_service(emp.hire_date, last_day or today, lang),
        "reason": case.reason or "",
        "legal_basis": (LEGAL_BASIS_EN if lang == "en" else LEGAL_BASIS).get(case.template_id,
                                                                            words["legal_basis"]),
        "handover_deadline": last_day or today,
        "notice_date": today,
        "issue_date": today,
        "handover_date": today,
        "receiver_name": receiver.name if receiver else "",
        # The template's items for the step's document, then those HR added for this case.
        "items": _items(document_step(flow, kind, step_id), steps),
        "contact": words["hr_contact"].format(name=hr.name) if hr else words["hr_dept"],
        "backpay_period": "", "backpay_amount": "", "backpay_amount_upper": "", "basis_lines": [],
        "backpay_paid_on": _done_on(steps, "backpay", tz) or "",
        "backpay_reference": _data_of(steps, "backpay", "payment_reference"),
        "final_pay_date": _done_on(steps, "final_pay", tz) or "",
        "final_pay_reference": _data_of(steps, "final_pay", "payment_reference"),
        "certificate_signed_on": _done_on(steps, "separation_certificate", tz, signed_only=True) or "",
        "compensation_amount": "", "compensation_amount_upper": "", "compensation_lines": [],
        "compensation_pay_date": last_day or today,
        "non_compete_months": "", "non_compete_monthly": "", "non_compete_lines": [],
        # Only the employee may ask for the reason on the certificate; no flow records that request yet.
        "certificate_reason": "",
        "compensation_zero_basis": "", "settlement_lines": [], "settlement_basis_lines": [],
    }
    if has_backpay(flow):
        bp = backpay_context(emp, last_day, _step_value(steps, "unpaid_months"),
                             rate_tables_dir=settings.rate_tables_dir, entered=await entered_tables(case.id),
                             lang=lang)
        ctx.update(bp)
        ctx["backpay_amount_upper"] = upper(bp["backpay_amount"], lang)  # type: ignore[arg-type]
        # Printed as money (thousands separators), the way the basis lines print the same figure.
        ctx["backpay_amount"] = money(bp["backpay_amount"])  # type: ignore[arg-type]
        ctx["basis_lines"] = notes.lift(bp["basis_lines"])  # type: ignore[arg-type]
    rec = step_value(hr_data, sf.RECORD_KEY)
    agreed = amount(step_value(hr_data, "compensation"))

    def words(value: Decimal) -> str:  # amounts in words in the document's language
        return upper(value, lang)

    if isinstance(rec, dict):
        # The figures as HR's check recorded them (computed and agreed, handlers.settlement): the
        # documents print what the audit chain holds, in the document's language.
        figs = sf.stated(rec, lang, _recomputed(rec, lang, flow, hr_data, emp, wage, case.last_day))
        comp = figs.get("compensation")
        if comp is not None and comp.agreed is not None:
            if comp.agreed > 0:
                ctx["compensation_amount"] = money(comp.agreed)
                ctx["compensation_amount_upper"] = upper(comp.agreed, lang)
            else:
                ctx["compensation_zero_basis"] = sf.zero_basis(rec.get("ground"), lang)
            ctx["compensation_lines"] = notes.lift(sf.compensation_lines(comp, mutual=flow.case_type == "mutual",
                                                                         upper=words, lang=lang))
        ctx["settlement_lines"] = sf.summary_lines(figs, words, lang=lang)
        ctx["settlement_basis_lines"] = notes.lift(sf.basis_lines(figs, lang=lang))
    elif agreed is not None:
        comp = mutual_compensation(agreed, emp.hire_date, last_day, wage, lang)
        ctx["compensation_amount"] = money(comp.agreed)
        ctx["compensation_amount_upper"] = upper(comp.agreed, lang)
        ctx["compensation_lines"] = notes.lift(comp.lines)
    nc = non_compete(step_value(hr_data, "non_compete_months"), step_value(hr_data, "non_compete_monthly"), wage,
                     lang)
    if nc is not None:
        ctx["non_compete_months"] = nc.months
        ctx["non_compete_monthly"] = money(nc.monthly)
        ctx["non_compete_lines"] = list(nc.lines)
    ctx["source_notes"] = notes.printed()
    ctx.update(_fallback_values(flow, steps, case, emp, settings, channel, lang, today, step_id))
    if set(ctx) != CONTEXT_KEYS:  # keeps the load-time check honest
        raise PipelineError(f"render context keys drifted: {sorted(set(ctx) ^ CONTEXT_KEYS)}")
    return ctx


def _recomputed(rec: Mapping[str, Any], lang: str, flow: FlowTemplate, hr_data: Sequence[Mapping[str, Any]],
                emp: Employee, wage: Decimal | None, case_last_day: date | None) -> dict[str, sf.Figure] | None:
    """For an English document of a record that older code wrote in Chinese only: the figures computed now
    from the check step's data, which `sf.stated` uses only where they reproduce the recorded lines."""
    if lang != "en" or not sf.lacks_english(rec):
        return None
    data = next((d for d in hr_data if d.get(sf.RECORD_KEY) is rec), {})
    return sf.compute_for_step(flow.case_type, data, hire_date=emp.hire_date, wage=wage,
                               case_last_day=case_last_day)[0]


def _fallback_values(flow: FlowTemplate, steps: list[CaseStep], case: Case, emp: Employee, settings: Settings,
                     via: Channel, lang: str, today: date, step_id: str | None) -> dict[str, object]:
    """The values only the fallback paper prints (empty lists / text where they do not apply)."""
    tz = settings.tz
    rows = {st.step_id: st for st in steps}
    channel = via.notice.get(lang)
    words = _words(lang)
    pending: list[str] = []
    for s in flow.steps:  # what the employee was asked to sign and has not: the steps the fallback stands in for
        row = rows.get(s.id)
        if s.fallback and row is not None and row.status in ("active", "locked"):
            # A step still locked behind another was never put to the employee: no date to name.
            pending.append(words["pending"].format(title=s.title.get(lang), date=format_value(
                row.activated_at.astimezone(tz).date(), lang)) if row.activated_at else s.title.get(lang))
    notice_step = flow.by_id.get(step_id) if step_id else None
    attachments = [document_title(k).get(lang) for k in (notice_step.encloses if notice_step else ())]
    mail = next((s for s in flow.steps if s.notice == "fallback_notice"), None)
    mail_row = rows.get(mail.id) if mail else None
    mail_result = ""
    if mail is not None and mail_row is not None and mail_row.status == "done" and mail.outcome_field:
        label = mail.option_label(mail.outcome_field, mail_row.outcome)
        mail_result = label.get(lang) if label else str(mail_row.outcome or "")
        if lang == "en":  # it reads inside a sentence ("the mail was returned (…)")
            mail_result = mail_result[:1].lower() + mail_result[1:]
    return {
        "employee_address": emp.address or "",
        "pending_items": pending,
        "first_notice_date": case.started_at.astimezone(tz).date(),
        "first_notice_channel": channel,
        "deadline": today + timedelta(days=NOTICE_REPLY_DAYS),
        "how_to": words["how_to"].format(channel=channel),
        "attachments": attachments,
        "mail_tracking_number": str((mail_row.data or {}).get("tracking_number") or "") if mail_row else "",
        "mail_result": mail_result,
    }


def freeze_context(ctx: Mapping[str, object], lang: str) -> dict[str, Any]:
    """Values as the text the template prints, so a stored context re-renders identically (JSON-safe)."""
    out: dict[str, Any] = {}
    for key, value in ctx.items():
        if isinstance(value, list | tuple):
            out[key] = [format_value(v, lang) for v in value]
        else:
            out[key] = format_value(value, lang)
    return out


async def notice_lines(case: Case, kind: str, settings: Settings, *, channel: Channel, now: datetime,
                       lang: str | None = None) -> list[tuple[str, str]]:
    """A notice's text for a card (e.g. the completion notice), from the same context as its PDF."""
    lang = lang or settings.language
    try:
        tpl = load_template(kind, extra_dir=settings.doc_templates_dir)
        values = freeze_context(await build_context(case, kind, settings, channel=channel, now=now, lang=lang),
                                lang)
        return render_blocks(tpl, values, lang)
    except DocumentError as exc:
        raise PipelineError(f"文件无法生成：{exc}") from exc


# ---------------------------------------------------------------- drafts

async def current_document(case_id: str, step_id: str, kind: str) -> Document | None:
    """The step's document of this kind; one whose seal was given up ("failed") or that HR's additions
    replaced ("superseded") is kept as a record but is no longer current, so signing starts from a
    fresh draft."""
    return await Document.filter(case_id=case_id, step_id=step_id, kind=kind).exclude(
        status__in=NOT_CURRENT).order_by("id").first()


async def supersede_drafts(case_id: str, step_id: str, *, using: Any = None) -> int:
    """HR added to what the step's documents say: drafts nobody has signed yet are replaced by a fresh
    render on the next open (a page still showing the old one is refused as "document changed")."""
    signed = await Signature.filter(case_id=case_id, step_id=step_id).using_db(using).values_list(
        "document_id", flat=True)
    return await Document.filter(case_id=case_id, step_id=step_id, status="draft").exclude(
        id__in=list(signed)).using_db(using).update(status="superseded")


async def ensure_draft(case: Case, step_id: str, kind: str, settings: Settings, *, channel: Channel,
                       now: datetime) -> Document:
    """The unsigned document for this step, rendered and stored on first use and reused afterwards."""
    existing = await current_document(case.id, step_id, kind)
    if existing is not None:
        return existing
    lang = settings.language
    try:
        tpl = load_template(kind, extra_dir=settings.doc_templates_dir)
        values = freeze_context(await build_context(case, kind, settings, channel=channel, now=now, lang=lang,
                                                    step_id=step_id), lang)
        pdf = await asyncio.to_thread(render_document, kind, values, lang=lang,
                                      extra_dir=settings.doc_templates_dir, font_path=_font(settings))
    except DocumentError as exc:
        raise PipelineError(f"文件无法生成：{exc}") from exc
    doc = await Document.create(
        case_id=case.id, step_id=step_id, kind=kind, status="draft", sha256_unsigned=sha256_hex(pdf),
        pdf_unsigned=pdf, context={"values": values, "template_sha256": tpl.sha256, "template_version": tpl.version},
        lang=lang, created_at=now,
    )
    # Two first opens at once may both render; keep the oldest so every page shows one hash.
    first = await current_document(case.id, step_id, kind)
    if first is not None and first.id != doc.id:
        await doc.delete()
        return first
    return doc


def _font(settings: Settings) -> str | None:
    return str(settings.cjk_font_path) if settings.cjk_font_path else None


# ---------------------------------------------------------------- signed render + seal

def seal_level(settings: Settings) -> str:
    return "PAdES B-T" if settings.tsa_url else "PAdES B-B"


async def _audit_hashes(case_id: str, seqs: Sequence[int | None], using: Any = None) -> dict[int, AuditEntry]:
    wanted = [q for q in seqs if q is not None]
    if not wanted:
        return {}
    rows = await AuditEntry.filter(case_id=case_id, seq__in=wanted).using_db(using)
    return {e.seq: e for e in rows}


async def prior_evidence(doc_id: int, case_id: str, *, before: int | None = None,
                         using: Any = None) -> list[str]:
    """The evidence hashes (as written in the audit chain) of the signatures on a document, in signing
    order; with `before`, only those made before that signature. What a later signer saw on the page."""
    qs = Signature.filter(document_id=doc_id).using_db(using)
    if before is not None:
        qs = qs.filter(id__lt=before)
    sigs = await qs.order_by("id")
    entries = await _audit_hashes(case_id, [s.audit_seq for s in sigs], using)
    out: list[str] = []
    for sig in sigs:
        entry = entries.get(sig.audit_seq) if sig.audit_seq is not None else None
        out.append(str((entry.data or {}).get("evidence_sha256", "?")) if entry is not None else "?")
    return out


async def signer_role(case: Case, signer_id: str) -> str:
    """The role a signer holds in the case, as signature slots and evidence name it."""
    emp = await Employee.get_or_none(employee_id=signer_id)
    if emp is not None and emp.id == case.employee_id:  # type: ignore[attr-defined]
        return "employee"
    if case.handover_id and signer_id == case.handover_id:
        return "handover"
    return "other"


async def signers_evidence(doc: Document, settings: Settings, channel: Channel) -> list[dict[str, object]]:
    sigs = await Signature.filter(document_id=doc.id).order_by("id")
    out: list[dict[str, object]] = []
    case = await Case.get(id=doc.case_id)  # type: ignore[attr-defined]
    entries = await _audit_hashes(case.id, [s.audit_seq for s in sigs])
    several = len(sigs) > 1
    evidence_hashes: list[str] = []
    for n, s in enumerate(sigs, 1):
        entry = entries.get(s.audit_seq) if s.audit_seq is not None else None
        evidence_hashes.append(str(((entry.data or {}) if entry else {}).get("evidence_sha256", "?")))
        emp = await Employee.get_or_none(employee_id=s.signer_id)
        item: dict[str, object] = {
            "signer_name": f"{emp.name if emp else s.signer_id}（{s.signer_id}）",
            "identity_method": s.identity_method,
            "platform_identity": s.platform_identity,
            "signed_at": s.server_time,
            "ip": s.ip,
            "user_agent": s.user_agent,
            "device": device_summary(s.user_agent, channel.clients),
            "strokes_sha256": s.strokes_hash,
            "image_sha256": s.image_hash,
            "consent_version": s.consent_version,
            "audit_seq": s.audit_seq,
            "audit_entry_hash": entry.hash if entry else "?",
            "signature_png": bytes(s.image_png),
        }
        if several:
            role = await signer_role(case, s.signer_id)
            title = ROLE_TITLES.get(Role(role)) if role in {r.value for r in Role} else None
            item["role"] = f"{title.zh} · {title.en}" if title else role
            item["order"] = f"{n} / {len(sigs)}"
            item["evidence_sha256"] = evidence_hashes[-1]
            # The earlier signatures this signer saw on the document, by their evidence records.
            earlier = [f"签署人 {i} · Signer {i}：{evidence_hashes[i - 1]}" for i in range(1, n)]
            item["signed_after"] = "；".join(earlier) if earlier else "—"
        out.append(item)
    return out


async def _marks(doc: Document, sigs: Sequence[Signature], settings: Settings) -> list[SignatureMark]:
    """Each signature's image for its slot in the document (signers without a slot are left out)."""
    tpl = load_template(doc.kind, extra_dir=settings.doc_templates_dir)
    text = tpl.texts.get(doc.lang) or next(iter(tpl.texts.values()))
    slots = {s.role for s in text.signatures}
    case = await Case.get(id=doc.case_id)  # type: ignore[attr-defined]
    marks: list[SignatureMark] = []
    for s in sigs:
        role = SLOT_FOR_ROLE.get(await signer_role(case, s.signer_id), "employee")
        if role in slots and all(m.role != role for m in marks):
            local = s.server_time.astimezone(settings.tz)
            marks.append(SignatureMark(role, bytes(s.image_png), f"{local:%Y-%m-%d %H:%M}"))
    return marks


async def shown_key(doc: Document) -> str:
    """Names what a signer is shown for `doc` (the draft, plus the signatures already on it)."""
    ids = await Signature.filter(document_id=doc.id).order_by("id").values_list("id", flat=True)
    return doc.sha256_unsigned + ("+" + ",".join(str(i) for i in ids) if ids else "")


async def shown_pdf(doc: Document, settings: Settings) -> bytes:
    """What a signer is shown on the signing page: the draft with the signatures already on it in their
    slots (a later signer of a document several people sign sees the earlier signatures on it)."""
    sigs = await Signature.filter(document_id=doc.id).order_by("id")
    marks = await _marks(doc, sigs, settings) if sigs else []
    if not marks:
        return bytes(doc.pdf_unsigned)
    values = dict((doc.context or {}).get("values") or {})
    return await asyncio.to_thread(render_signed, doc.kind, values, marks, lang=doc.lang,
                                   extra_dir=settings.doc_templates_dir, font_path=_font(settings))


async def assemble_signed(doc: Document, settings: Settings, keys: KeyMaterial, channel: Channel) -> bytes:
    """The complete PDF before the seal: signed render + completion page (one evidence page per signer)."""
    sigs = await Signature.filter(document_id=doc.id).order_by("id")
    if not sigs and doc.kind in COMPANY_ISSUED:
        return bytes(doc.pdf_unsigned)  # nobody signs it: no signature slot, no evidence page
    if not sigs:
        raise PipelineError(f"document {doc.id} has no signature")
    marks = await _marks(doc, sigs, settings)
    values = dict((doc.context or {}).get("values") or {})
    font = _font(settings)
    if marks:
        body = await asyncio.to_thread(render_signed, doc.kind, values, marks, lang=doc.lang,
                                       extra_dir=settings.doc_templates_dir, font_path=font)
    else:
        # The template has no slot for this signer (e.g. an acknowledged notice): the handwritten image
        # is shown on the completion page only.
        body = bytes(doc.pdf_unsigned)
    evidence: dict[str, object] = {
        "document_title": document_title(doc.kind).get("zh"),
        "document_kind": doc.kind,
        "document_sha256": doc.sha256_unsigned,
        "case_id": doc.case_id,  # type: ignore[attr-defined]
        "root_fingerprint": keys.root_fingerprint(),
        "seal_level": seal_level(settings),
        "signers": await signers_evidence(doc, settings, channel),
    }
    page = await asyncio.to_thread(completion_page, evidence, font_path=font)
    return await asyncio.to_thread(append_pages, body, page)


async def seal_document(doc_id: int, settings: Settings, keys: KeyMaterial | None = None, *, channel: Channel,
                        now: datetime | None = None) -> str:
    """Seal a signed document once; returns its status afterwards (sealed, pending_tsa, or unchanged)."""
    doc = await Document.get_or_none(id=doc_id)
    if doc is None or doc.status not in ("signed", "pending_tsa"):
        return doc.status if doc else "missing"
    if doc.seal_attempts >= settings.seal_max_attempts:
        return "exhausted"  # handed to the signing sweep, which tells HR and asks for a new signature
    keys = keys or keys_for(settings)
    title = document_title(doc.kind).get("zh")
    done = "公司出具" if doc.kind in COMPANY_ISSUED else "签署完成"
    try:
        pdf = await assemble_signed(doc, settings, keys, channel)
        sealed = await async_seal_pdf(pdf, keys, reason=f"{title} {done}（{doc.case_id}）",  # type: ignore[attr-defined]
                                      location=settings.company_name, tsa_url=settings.tsa_url)
    except TsaUnavailable as exc:
        log.warning("document %s: %s; will retry (never sealed without the timestamp)", doc.id, exc)
        await _count_attempt(doc.id, exc)
        await Document.filter(id=doc.id, status="signed").update(status="pending_tsa")
        return "pending_tsa"
    except Exception as exc:  # whatever the cause, it counts: a document must not be retried for ever
        log.exception("document %s could not be sealed", doc.id)
        await _count_attempt(doc.id, exc)
        raise
    now = now or datetime.now(UTC)
    async with in_transaction() as conn:
        # Compare-and-set: if the sweep and the request both sealed, only the first result is kept.
        n = await Document.filter(id=doc.id, status__in=["signed", "pending_tsa"]).using_db(conn).update(
            status="sealed", pdf_signed=sealed, sha256_signed=sha256_hex(sealed), sealed_at=now,
        )
        if n == 1 and doc.kind in COMPANY_ISSUED:
            await _record_issued(doc, sha256_hex(sealed), keys, conn, now)
    return "sealed" if n == 1 else (await Document.get(id=doc.id)).status


async def _record_issued(doc: Document, sha256_signed: str, keys: KeyMaterial, conn: Any, now: datetime) -> None:
    """The sealed company-issued document's hashes into the audit chain, and a fresh checkpoint over the new
    head (the case is usually closed already: its closing checkpoint must still cover the final entry)."""
    case_id: str = doc.case_id  # type: ignore[attr-defined]
    # The case's one write path: the version is bumped first (locking the row; a writer holding an
    # older snapshot re-reads), then the entry chained after the head.
    await casestore.append_audit(conn, case_id, [(now, "system", ISSUED_KIND, {
        "document_id": doc.id, "kind": doc.kind, "step_id": doc.step_id,
        "sha256_unsigned": doc.sha256_unsigned, "sha256_signed": sha256_signed,
        "template_sha256": str((doc.context or {}).get("template_sha256", "")),
        **({"encloses": (doc.context or {})["encloses"]} if (doc.context or {}).get("encloses") else {}),
    })])
    await write_checkpoint(case_id, keys, using=conn, now=now)


async def sealed_documents(case_id: str) -> list[Document]:
    """Every sealed document of a case, oldest first (signed ones and the completion notice): what the
    employee is sent and what an archive of the case holds."""
    return await Document.filter(case_id=case_id, status="sealed").order_by("id")


async def issue_completion_notice(case: Case, settings: Settings, *, channel: Channel, now: datetime,
                                  keys: KeyMaterial | None = None) -> Document | None:
    """The completed case's completion notice as a sealed PDF, rendered and sealed on first call and
    returned as stored afterwards; None for a case that did not complete. A seal that fails here (TSA
    down) is left "signed"/"pending_tsa" for the sweep, like a signed document."""
    if case.status != "completed":
        return None
    doc = await ensure_draft(case, ISSUED_STEP, "completion_notice", settings, channel=channel, now=now)
    # Company-issued: ready to seal as rendered (compare-and-set, so two callers move it once).
    await Document.filter(id=doc.id, status="draft").update(status="signed")
    await seal_document(doc.id, settings, keys, channel=channel, now=now)
    return await Document.get(id=doc.id)


async def unissued_completed(since: datetime) -> list[Case]:
    """Cases completed since `since` that have no completion notice yet (the sweep issues them)."""
    have = await Document.filter(kind="completion_notice", step_id=ISSUED_STEP).exclude(
        status="failed").values_list("case_id", flat=True)
    return await Case.filter(status="completed", closed_at__gte=since).exclude(id__in=list(have)).order_by("id")


async def issue_step_notice(case: Case, step_id: str, settings: Settings, *, channel: Channel, now: datetime,
                            keys: KeyMaterial | None = None) -> Document | None:
    """A fallback step's paper (its `notice`: the registered-mail letter to the address on file, the
    newspaper notice) as one sealed company-issued PDF: the notice, then every document it `encloses`
    (the step's current draft, or its sealed copy once signed). Rendered and sealed on the first call,
    returned as stored afterwards; None when the step issues nothing. PipelineError (for HR) when it
    cannot be produced, e.g. no address on file for a letter."""
    flow = flow_of(case.template_id, settings)
    step = flow.by_id.get(step_id)
    if step is None or step.notice is None:
        return None
    doc = await current_document(case.id, step_id, step.notice)
    if doc is None:
        doc = await _render_notice(case, step, settings, channel=channel, now=now)
    # Company-issued: ready to seal as rendered (compare-and-set, so two callers move it once).
    await Document.filter(id=doc.id, status="draft").update(status="signed")
    await seal_document(doc.id, settings, keys, channel=channel, now=now)
    return await Document.get(id=doc.id)


async def unissued_notices(flows: Mapping[str, FlowTemplate]) -> list[tuple[Case, str]]:
    """(case, step) of open fallback steps whose paper is not issued yet (their card could not issue it):
    the signing sweep issues them."""
    wanted = {(f.id, s.id): s.notice for f in flows.values() for s in f.steps if s.notice}
    if not wanted:
        return []
    rows = await CaseStep.filter(status="active", step_id__in=sorted({sid for _, sid in wanted}),
                                 case__status="open", case__fallback_started=True).prefetch_related("case")
    out: list[tuple[Case, str]] = []
    for row in rows:
        case: Case = row.case  # type: ignore[assignment]
        kind = wanted.get((case.template_id, row.step_id))
        if kind is not None and await current_document(case.id, row.step_id, kind) is None:
            out.append((case, row.step_id))
    return out


async def _render_notice(case: Case, step: StepTemplate, settings: Settings, *, channel: Channel,
                         now: datetime) -> Document:
    kind = step.notice
    assert kind is not None
    lang = settings.language
    emp = await Employee.get(id=case.employee_id)  # type: ignore[attr-defined]
    if kind == "fallback_notice" and not (emp.address or "").strip():
        # A letter without an address cannot be mailed: HR fixes the directory (address column) first.
        raise PipelineError(f"{emp.name}（{emp.employee_id}）的通讯地址未登记，无法生成邮寄通知书；"
                            "请在通讯录中补充地址（address 列）后重新打开此卡片")
    flow = flow_of(case.template_id, settings)
    try:
        tpl = load_template(kind, extra_dir=settings.doc_templates_dir)
        values = freeze_context(await build_context(case, kind, settings, channel=channel, now=now, lang=lang,
                                                    step_id=step.id), lang)
        pdf = await asyncio.to_thread(render_document, kind, values, lang=lang,
                                      extra_dir=settings.doc_templates_dir, font_path=_font(settings))
    except DocumentError as exc:
        raise PipelineError(f"文件无法生成：{exc}") from exc
    enclosed: list[dict[str, object]] = []
    for encl in step.encloses:
        owner = document_step(flow, encl)
        if owner is None:
            raise PipelineError(f"流程中没有生成《{document_title(encl).zh}》的步骤，无法附在通知后")
        part = await ensure_draft(case, owner.id, encl, settings, channel=channel, now=now)
        body = bytes(part.pdf_signed) if part.status == "sealed" and part.pdf_signed else bytes(part.pdf_unsigned)
        pdf = await asyncio.to_thread(append_pages, pdf, body)
        enclosed.append({"document_id": part.id, "kind": encl, "sha256": sha256_hex(body)})
    doc = await Document.create(
        case_id=case.id, step_id=step.id, kind=kind, status="draft", sha256_unsigned=sha256_hex(pdf),
        pdf_unsigned=pdf, context={"values": values, "template_sha256": tpl.sha256, "template_version": tpl.version,
                                   "encloses": enclosed},
        lang=lang, created_at=now,
    )
    first = await current_document(case.id, step.id, kind)  # two first renders at once: keep the oldest
    if first is not None and first.id != doc.id:
        await doc.delete()
        return first
    return doc


async def _count_attempt(doc_id: int, exc: Exception) -> None:
    await Document.filter(id=doc_id).update(seal_attempts=F("seal_attempts") + 1,
                                            seal_error=f"{type(exc).__name__}: {exc}"[:1000])


async def exhausted(settings: Settings) -> list[Document]:
    """Signed documents whose seal failed SEAL_MAX_ATTEMPTS times: to be given up and signed again.

    A company-issued document is never given up (nobody could sign it again, and a fresh one would fail
    the same way): it stays for an operator to seal, with its error stored."""
    return await Document.filter(status__in=["signed", "pending_tsa"],
                                 seal_attempts__gte=settings.seal_max_attempts).exclude(
        kind__in=sorted(COMPANY_ISSUED)).order_by("id")


async def sweep(settings: Settings, keys: KeyMaterial | None = None, *, channel: Channel) -> dict[int, str]:
    """Seal every document left signed (crash after commit) or pending a timestamp; {id: new status}.

    Documents that used up their attempts are left out (see `exhausted`)."""
    results: dict[int, str] = {}
    ids = await Document.filter(status__in=["signed", "pending_tsa"],
                                seal_attempts__lt=settings.seal_max_attempts
                                ).order_by("id").values_list("id", flat=True)
    for doc_id in ids:
        try:
            results[int(doc_id)] = await seal_document(int(doc_id), settings, keys,  # type: ignore[call-overload]
                                                       channel=channel)
        except Exception as exc:  # counted by seal_document; the other documents still get their turn
            log.error("sweep: document %s: %s", doc_id, exc)
            results[int(doc_id)] = "error"  # type: ignore[call-overload]
    return results


# ---------------------------------------------------------------- checkpoints

def checkpoint_message(case_id: str, seq: int, head_hash: str) -> bytes:
    return canonical_json({"case": case_id, "seq": seq, "head": head_hash, "v": 1})


def public_key_b64(keys: KeyMaterial) -> str:
    raw = keys.checkpoint_key.public_key().public_bytes(serialization.Encoding.Raw,
                                                        serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


async def write_checkpoint(case_id: str, keys: KeyMaterial, *, using: Any = None,
                           now: datetime | None = None) -> Checkpoint:
    """An Ed25519 signature over the case's current audit head (call inside the closing transaction)."""
    case = await Case.get(id=case_id).using_db(using)
    sig = keys.checkpoint_key.sign(checkpoint_message(case.id, case.audit_seq, case.audit_head))
    return await Checkpoint.create(
        using_db=using, case_id=case.id, seq=case.audit_seq, head_hash=case.audit_head,
        signature=base64.b64encode(sig).decode("ascii"), public_key=public_key_b64(keys),
        created_at=now or datetime.now(UTC),
    )


# ---------------------------------------------------------------- load-time check

def check_flow_documents(flows: Mapping[str, FlowTemplate], *, extra_dir: Path | str | None = None) -> None:
    """Every document kind a flow names has a template, and each template reads only values the render
    context fills; raises TemplateError naming the flow file and the step (at start-up, not at signing)."""
    for flow in flows.values():
        # Every case ends with the completion notice, whichever steps its flow has.
        named = [(step.id, kind) for step in flow.steps
                 for kind in (*step.documents, *((step.notice,) if step.notice else ()), *step.encloses)]
        for step_id, kind in [*named, (None, "completion_notice")]:
            try:
                tpl = load_template(kind, extra_dir=extra_dir)
            except DocumentError as exc:
                raise TemplateError(flow.source or flow.id, str(exc), step=step_id) from None
            missing = unfilled(tpl, CONTEXT_KEYS)
            if missing:
                raise TemplateError(
                    flow.source or flow.id,
                    f"document template {tpl.source} uses {', '.join('{' + m + '}' for m in missing)}, "
                    "which the render context never fills",
                    step=step_id,
                )
