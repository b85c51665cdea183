"""The facts a document states about one case, derived from the directory, the flow and its steps.

Pure functions over plain values (no database): `signing.pipeline.build_context` gathers the rows
and calls these. What a fact reads like per case type is template data (`variants` in
`signing/doc_templates/*.toml`); here are only the facts and their computation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from settlement.basis import money
from settlement.compensation import compensation
from settlement.errors import SettlementError
from signing.amounts import rmb_upper, rmb_words
from workflow.template import FlowTemplate

# Supreme People's Court, Interpretation (I) on labour disputes (法释〔2020〕26号) Art. 36: without an
# agreed amount, 30 % of the average monthly wage of the 12 months before the contract ended, and
# not below the local minimum wage.
NON_COMPETE_FLOOR_RATE = Decimal("0.30")
NON_COMPETE_MAX_MONTHS = 24  # Labour Contract Law Art. 24

_URL = re.compile(r"(来源|[Ss]ource:?)?\s*(https?://[^\s，；。、）)]+)")

# The wording of the facts below in each document language ({placeholders} filled by the functions that
# use them): an English document must not fall back to Chinese basis lines.
LINES: dict[str, dict[str, str]] = {
    "see_note_source": {"zh": "来源见注{n}", "en": "source: see note {n}"},
    "see_note": {"zh": "（见注{n}）", "en": " (see note {n})"},
    "note": {"zh": "注{n}：{url}", "en": "Note {n}: {url}"},
    "nc_period": {
        "zh": "竞业限制期限：自劳动合同解除之日起 {months} 个月（不超过二年，《劳动合同法》第二十四条）。",
        "en": "Non-compete period: {months} months from the end of the labour contract (at most two years, "
              "Labour Contract Law Art. 24).",
    },
    "nc_monthly": {
        "zh": "竞业限制期间，本单位按月向你支付经济补偿 {monthly} 元（大写：{monthly_upper}）"
              "（《劳动合同法》第二十三条）。",
        "en": "During the non-compete period the company pays you monthly compensation of RMB {monthly} "
              "(Labour Contract Law Art. 23).",
    },
    "nc_floor_ok": {"zh": "按登记月工资计算的下限", "en": "the floor computed from the registered monthly wage"},
    "nc_floor_raised": {"zh": "登记金额低于法定下限，按下限支付",
                        "en": "the recorded amount is below the legal floor, so the floor is paid"},
    "nc_floor": {
        "zh": "该金额不低于你劳动合同解除前十二个月平均工资的 30%（{wage} × 30% = {floor}，{note}；"
              "《最高人民法院关于审理劳动争议案件适用法律问题的解释（一）》第三十六条），且不低于当地最低工资标准。",
        "en": "The amount is not below 30% of your average wage in the twelve months before the contract ended "
              "({wage} × 30% = {floor}, {note}; Supreme People's Court Interpretation (I) on labour disputes, "
              "Art. 36), nor below the local minimum wage.",
    },
    "nc_release": {
        "zh": "在竞业限制期限内，本单位可以解除竞业限制协议；解除时你可以请求额外支付三个月的竞业限制经济补偿"
              "（同一解释第三十九条）。",
        "en": "The company may release you from the non-compete during its term; you may then claim three "
              "further months of non-compete compensation (same Interpretation, Art. 39).",
    },
    "nc_unpaid": {
        "zh": "因本单位原因连续三个月未支付经济补偿的，你可以解除竞业限制约定（同一解释第三十八条）。",
        "en": "If the company fails to pay the compensation for three consecutive months for reasons of its "
              "own, you may end the non-compete (same Interpretation, Art. 38).",
    },
    "comp_agreed": {"zh": "经济补偿金额 {agreed} 元为双方协商确定。",
                    "en": "The compensation of RMB {agreed} was agreed by both parties."},
    "comp_standard": {"zh": "经济补偿金额 {agreed} 元按《劳动合同法》第四十七条计算，计算依据如下：",
                      "en": "The compensation of RMB {agreed} is computed under Labour Contract Law Art. 47, "
                            "as follows:"},
    "comp_reference": {
        "zh": "供核对：如由本单位提出解除，按《劳动合同法》第四十七条计算的经济补偿为 {total} 元，计算依据如下：",
        "en": "For reference: had the company proposed the termination, the compensation under Labour Contract "
              "Law Art. 47 would be RMB {total}, computed as follows:",
    },
    "comp_wage": {"zh": "月工资按员工名册登记的月工资 {wage} 元计。",
                  "en": "The monthly wage is the RMB {wage} registered in the staff directory."},
    # HR's recorded settlement figures (signing.settlefigures), as the agreement and its annexes state them.
    "comp_zero": {"zh": "经济补偿金额为 0 元，依据如下：", "en": "The compensation is RMB 0, on the following basis:"},
    "comp_set_by_both": {"zh": "经济补偿金额 {agreed} 元（大写：{upper}）为双方协商确定。",
                         "en": "The compensation of RMB {agreed} ({upper}) was agreed by both parties."},
    "comp_set_by_company": {"zh": "经济补偿金额 {agreed} 元（大写：{upper}）为本单位确定。",
                            "en": "The compensation of RMB {agreed} ({upper}) was set by the company."},
    "comp_computed": {
        "zh": "供核对：按《劳动合同法》计算的经济补偿为 {computed} 元（大写：{upper}），计算依据如下：",
        "en": "For reference: the compensation computed under the Labour Contract Law is RMB {computed} "
              "({upper}), as follows:",
    },
    "sum_amount": {"zh": "{item}：人民币 {amount} 元（大写：{upper}）", "en": "{item}: RMB {amount} ({upper})"},
    "sum_standard": {"zh": "，按标准计算为 {computed} 元（大写：{upper}）",
                     "en": "; computed by the standard: RMB {computed} ({upper})"},
    "sum_annex": {"zh": "，计算依据见附件。", "en": "; the basis is in the annex."},
    "basis_head": {"zh": "【{item}】", "en": "[{item}]"},
}


def wording(key: str, lang: str, **values: object) -> str:
    """One fact's wording in `lang` (Chinese when the language has none)."""
    forms = LINES[key]
    return (forms.get(lang) or forms["zh"]).format(**values)


def has_backpay(template: FlowTemplate) -> bool:
    """Back-pay is owed only in a flow that has a back-pay step (the guarantee letter, finance's payment)."""
    return any(s.id == "backpay" or "guarantee_letter" in s.documents for s in template.steps)


def amount(value: object) -> Decimal | None:
    """A positive-or-zero amount HR typed, to the cent; None when empty or not a number."""
    if value is None or str(value).strip() == "":
        return None
    try:
        d = Decimal(str(value).strip().replace(",", ""))
    except InvalidOperation:
        return None
    if not d.is_finite() or d < 0:
        return None
    return d.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def upper(value: Decimal | None, lang: str = "zh") -> str:
    """An amount in words as a contract carries it: 大写 in Chinese, spelled out in English."""
    if value is None:
        return ""
    return rmb_words(value) if lang == "en" else rmb_upper(value)


class Notes:
    """Source URLs lifted out of basis lines into numbered notes, so no sentence carries a URL."""

    def __init__(self, lang: str = "zh") -> None:
        self.lines: list[str] = []
        self.lang = lang

    def lift(self, lines: Iterable[str]) -> list[str]:
        out = []
        for line in lines:
            def sub(m: re.Match[str]) -> str:
                url = m.group(2)
                if url in self.lines:
                    n = self.lines.index(url) + 1
                else:
                    self.lines.append(url)
                    n = len(self.lines)
                return wording("see_note_source" if m.group(1) else "see_note", self.lang, n=n)

            out.append(_URL.sub(sub, line))
        return out

    def printed(self) -> list[str]:
        return [wording("note", self.lang, n=i, url=url) for i, url in enumerate(self.lines, 1)]


@dataclass(frozen=True)
class NonCompete:
    months: int
    monthly: Decimal
    floor: Decimal
    lines: tuple[str, ...]


def non_compete(months_raw: object, monthly_raw: object, wage: Decimal | None,
                lang: str = "zh") -> NonCompete | None:
    """The non-compete HR recorded, with the monthly compensation raised to the legal floor if below it."""
    months_d = amount(months_raw)
    if months_d is None or months_d <= 0:
        return None
    months = min(int(months_d), NON_COMPETE_MAX_MONTHS)
    recorded = amount(monthly_raw) or Decimal("0.00")
    floor = (wage * NON_COMPETE_FLOOR_RATE).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP) \
        if wage is not None else Decimal("0.00")
    monthly = max(recorded, floor)
    lines = [
        wording("nc_period", lang, months=months),
        wording("nc_monthly", lang, monthly=money(monthly), monthly_upper=rmb_upper(monthly)),
    ]
    if wage is not None:
        note = wording("nc_floor_ok" if recorded >= floor else "nc_floor_raised", lang)
        lines.append(wording("nc_floor", lang, wage=money(wage), floor=money(floor), note=note))
    lines += [wording("nc_release", lang), wording("nc_unpaid", lang)]
    return NonCompete(months, monthly, floor, tuple(lines))


@dataclass(frozen=True)
class Compensation:
    agreed: Decimal
    lines: tuple[str, ...]


def mutual_compensation(agreed: Decimal, hire_date: date | None, last_day: date | None,
                        wage: Decimal | None, lang: str = "zh") -> Compensation:
    """The agreed compensation, with the Art. 47 standard beside it when the directory allows computing it."""
    lines = [wording("comp_agreed", lang, agreed=money(agreed))]
    if hire_date is None or last_day is None or wage is None:
        return Compensation(agreed, tuple(lines))
    try:
        ref = compensation(hire_date=hire_date, last_day=last_day, ground="36-employer",
                           average_monthly_wage=wage)
    except SettlementError:
        # Service before 2008 needs HR's choice of rule; the agreed figure stands on its own.
        return Compensation(agreed, tuple(lines))
    if ref.total == agreed:
        lines = [wording("comp_standard", lang, agreed=money(agreed))]
    else:
        lines.append(wording("comp_reference", lang, total=money(ref.total)))
    lines.append(wording("comp_wage", lang, wage=money(wage)))
    lines += list(ref.basis_en if lang == "en" else ref.basis)
    return Compensation(agreed, tuple(lines))


def step_value(steps_data: Iterable[Mapping[str, object]], key: str) -> object:
    for data in steps_data:
        if key in data:
            return data[key]
    return None
