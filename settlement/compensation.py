"""Economic compensation (经济补偿) N, N+1 and damages 2N under the Labour Contract Law (LCL).

Every legal fork is an explicit input (ground, notice given, the pre-2008 rule); the calculator
never guesses, and every choice lands in the basis. research/calc.md §2 has the statutes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from settlement.basis import Basis, money, money_plain, number, to_cent
from settlement.errors import SettlementError
from settlement.months import add_months

LCL_START = date(2008, 1, 1)
HALF = Decimal("0.5")


@dataclass(frozen=True)
class Ground:
    owes: bool
    zh: str
    en: str


GROUNDS: dict[str, Ground] = {
    "36-employer": Ground(True, "协商一致解除，由用人单位提出（第三十六条、第四十六条第（二）项）",
                          "mutual termination proposed by the employer (Arts. 36, 46(2))"),
    "36-employee": Ground(False, "协商一致解除，由劳动者提出（第三十六条；第四十六条不适用）",
                          "mutual termination proposed by the employee (Art. 36; Art. 46 does not apply)"),
    "37": Ground(False, "劳动者提前通知辞职（第三十七条；不支付经济补偿）",
                 "employee resigns with notice (Art. 37; no compensation)"),
    "38": Ground(True, "用人单位过错，劳动者解除（第三十八条、第四十六条第（一）项）",
                 "employee terminates for the employer's fault (Arts. 38, 46(1))"),
    "39": Ground(False, "用人单位因劳动者过错解除（第三十九条；不支付经济补偿）",
                 "employer dismisses for the employee's fault (Art. 39; no compensation)"),
    "40": Ground(True, "无过失性辞退（第四十条、第四十六条第（三）项）",
                 "no-fault dismissal (Arts. 40, 46(3))"),
    "41": Ground(True, "经济性裁员（第四十一条第一款、第四十六条第（四）项）",
                 "economic layoff (Art. 41(1), Art. 46(4))"),
    "44-expiry": Ground(True, "劳动合同期满终止（第四十四条第（一）项、第四十六条第（五）项）",
                        "fixed-term contract expired (Arts. 44(1), 46(5))"),
    "44-expiry-renewal-refused": Ground(
        False, "合同期满，用人单位维持或提高条件续订而劳动者不同意（第四十六条第（五）项除外情形）",
        "contract expired and the employee refused renewal on the same or better terms (Art. 46(5) exception)"),
    "44-dissolution": Ground(True,
                             "用人单位破产、被吊销营业执照、责令关闭、撤销或提前解散（第四十四条第（四）（五）项、"
                             "第四十六条第（六）项）",
                             "employer bankrupt, licence revoked, closed or dissolved early (Arts. 44(4)(5), 46(6))"),
    "unlawful": Ground(True, "违法解除或终止（第四十八条、第八十七条）",
                       "unlawful termination (Arts. 48, 87)"),
}

# 劳部发〔1994〕481号 (《违反和解除劳动合同的经济补偿办法》), which governs service before 2008 (LCL Art. 97(3)).
PRE2008_RULES: dict[str, tuple[str, str, int | None, bool]] = {
    # rule: (zh, en, month cap, enterprise-average floor applies (Art. 11))
    "481-art5": ("481号第五条（协商解除，最多 12 个月）", "Decree 481 Art. 5 (mutual termination, at most 12 months)",
                 12, False),
    "481-art6": ("481号第六条（患病或非因工负伤，不封顶；医疗补助费另计）",
                 "Decree 481 Art. 6 (illness, no cap; medical subsidy not included)", None, True),
    "481-art7": ("481号第七条（不能胜任，最多 12 个月）", "Decree 481 Art. 7 (incompetence, at most 12 months)",
                 12, False),
    "481-art8": ("481号第八条（客观情况重大变化，不封顶）", "Decree 481 Art. 8 (major change of circumstances, no cap)",
                 None, True),
    "481-art9": ("481号第九条（经济性裁员，不封顶）", "Decree 481 Art. 9 (economic layoff, no cap)", None, True),
}
PRE2008_CHOICES = ("none", "lcl-from-hire", *PRE2008_RULES)


@dataclass(frozen=True)
class Service:
    """Inclusive service length as whole calendar months plus leftover days."""

    start: date
    end: date
    months: int
    days: int

    @classmethod
    def between(cls, start: date, last_day: date) -> Service:
        end_exclusive = last_day + timedelta(days=1)
        count = (end_exclusive.year - start.year) * 12 + end_exclusive.month - start.month
        while count > 0 and add_months(start, count) > end_exclusive:
            count -= 1
        return cls(start, last_day, count, (end_exclusive - add_months(start, count)).days)

    @property
    def years(self) -> int:
        return self.months // 12

    def zh(self) -> str:
        return f"{self.years} 年 {self.months % 12} 个月 {self.days} 天"

    def en(self) -> str:
        return f"{self.years} years {self.months % 12} months {self.days} days"


def art47_months(service: Service) -> tuple[Decimal, str, str]:
    """N under LCL Art. 47: full years, plus 1 for a leftover of 6 months or more, else 0.5 for any leftover."""
    years = Decimal(service.years)
    leftover_months = service.months % 12
    if leftover_months >= 6:
        return years + 1, "余数满六个月，按一年计", "leftover of six months or more counts as a year"
    if leftover_months or service.days:
        return years + HALF, "余数不满六个月，按半个月计", "leftover under six months counts as half a month"
    return years, "无余数", "no leftover"


@dataclass(frozen=True)
class Segment:
    start: date
    end: date
    rule: str
    months: Decimal
    monthly_base: Decimal
    amount: Decimal

    def to_json(self) -> dict[str, str]:
        return {
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "rule": self.rule,
            "months": number(self.months),
            "monthly_base": money_plain(self.monthly_base),
            "amount": money_plain(self.amount),
        }


@dataclass(frozen=True)
class CompensationResult:
    ground: str
    total: Decimal
    months: Decimal
    monthly_base: Decimal
    extra_month: Decimal
    multiplier: int
    segments: tuple[Segment, ...]
    basis: list[str] = field(default_factory=list)
    basis_en: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "total": money_plain(self.total),
            "months": number(self.months),
            "monthly_base": money_plain(self.monthly_base),
            "extra_month": money_plain(self.extra_month),
            "multiplier": self.multiplier,
            "ground": self.ground,
            "segments": [segment.to_json() for segment in self.segments],
            "basis": self.basis,
            "basis_en": self.basis_en,
        }


def _amount(value: Decimal | None, name: str, *, positive: bool = False) -> Decimal | None:
    if value is None:
        return None
    if not isinstance(value, Decimal) or not value.is_finite() or value < 0 or (positive and value == 0):
        raise SettlementError(name, f"must be a {'positive' if positive else 'non-negative'} amount, got {value}")
    return value


def _average_wage(
    monthly_wages: Sequence[Decimal] | None, average_monthly_wage: Decimal | None, basis: Basis
) -> Decimal:
    if monthly_wages is not None and average_monthly_wage is not None:
        raise SettlementError("average_monthly_wage", "give either monthly_wages or average_monthly_wage, not both")
    if average_monthly_wage is not None:
        average = to_cent(_amount(average_monthly_wage, "average_monthly_wage") or Decimal(0))
        basis.add(
            f"月工资：前十二个月平均应得工资 {money(average)}（按输入；《劳动合同法》第四十七条第三款、"
            f"《实施条例》第二十七条）",
            f"Monthly wage: 12-month average of wages earned {money(average)} (as given; LCL Art. 47(3), "
            f"Implementing Regulations Art. 27)",
        )
        return average
    if monthly_wages is None:
        raise SettlementError("monthly_wages", "required (or average_monthly_wage)")
    if isinstance(monthly_wages, str) or not isinstance(monthly_wages, Sequence) or not monthly_wages:
        raise SettlementError("monthly_wages", "expected a non-empty list of amounts, oldest first")
    for index, wage in enumerate(monthly_wages):
        _amount(wage, f"monthly_wages[{index}]")
    used = list(monthly_wages[-12:])
    total = sum(used, Decimal(0))
    average = to_cent(total / len(used))
    dropped = len(monthly_wages) - len(used)
    note_zh = f"（共给出 {len(monthly_wages)} 个月，只取最近 12 个月）" if dropped else ""
    note_en = f" ({len(monthly_wages)} months given; only the latest 12 are used)" if dropped else ""
    basis.add(
        f"月工资：最近 {len(used)} 个月应得工资合计 {money(total)} ÷ {len(used)} = {money(average)}"
        f"（四舍五入到分）{note_zh}；工作不满十二个月的按实际月数平均（《劳动合同法》第四十七条第三款、"
        f"《实施条例》第二十七条）",
        f"Monthly wage: wages earned in the latest {len(used)} months total {money(total)} ÷ {len(used)} = "
        f"{money(average)} (half-up to the cent){note_en}; under 12 months of service, the months worked are "
        f"averaged (LCL Art. 47(3), Implementing Regulations Art. 27)",
    )
    return average


def _art47_segment(
    service: Service,
    wage: Decimal,
    city_avg: Decimal | None,
    basis: Basis,
    label_zh: str,
    label_en: str,
) -> Segment:
    months, why_zh, why_en = art47_months(service)
    basis.add(
        f"{label_zh}工作年限 {service.start.isoformat()} 至 {service.end.isoformat()}（首尾两日均计入）"
        f"= {service.zh()}：满 {service.years} 年计 {service.years} 个月，{why_zh}，N = {number(months)}"
        f"（第四十七条第一款；《民法典》第一千二百五十九条，“以上”含本数）",
        f"{label_en}service {service.start.isoformat()} to {service.end.isoformat()} (both days included) = "
        f"{service.en()}: {service.years} full years count {service.years} months, {why_en}, "
        f"N = {number(months)} (Art. 47(1); Civil Code Art. 1259, 'or more' includes the number)",
    )
    base = wage
    if city_avg is None:
        basis.add(
            "未提供本地区上年度职工月平均工资，未核对三倍封顶（第四十七条第二款）",
            "No city average monthly wage given, so the 3× cap (Art. 47(2)) was not checked",
        )
    else:
        cap = city_avg * 3
        if wage > cap:
            base = cap
            capped_months = min(months, Decimal(12))
            basis.add(
                f"月工资 {money(wage)} 高于本地区上年度职工月平均工资 {money(city_avg)} 的三倍 {money(cap)}："
                f"按 {money(cap)} 计算，年限最高 12 年（第四十七条第二款）",
                f"Monthly wage {money(wage)} exceeds 3 × the city average {money(city_avg)} = {money(cap)}: "
                f"{money(cap)} is used and at most 12 years count (Art. 47(2))",
            )
            if capped_months != months:
                basis.add(
                    f"补偿月数 {number(months)} 超过 12，按 12 计",
                    f"{number(months)} months exceed 12, so 12 count",
                )
            months = capped_months
        else:
            basis.add(
                f"月工资 {money(wage)} 未超过本地区上年度职工月平均工资 {money(city_avg)} 的三倍 {money(cap)}，"
                f"不封顶",
                f"Monthly wage {money(wage)} does not exceed 3 × the city average {money(city_avg)} = "
                f"{money(cap)}; no cap",
            )
    amount = to_cent(months * base)
    basis.add(
        f"{label_zh}经济补偿 = {number(months)} × {money(base)} = {money(amount)}",
        f"{label_en}compensation = {number(months)} × {money(base)} = {money(amount)}",
    )
    return Segment(service.start, service.end, "lcl-art47", months, base, amount)


def _pre2008_segment(
    rule: str,
    service: Service,
    wage: Decimal,
    partial_year: str | None,
    enterprise_avg: Decimal | None,
    basis: Basis,
) -> Segment:
    zh, en, cap, enterprise_floor = PRE2008_RULES[rule]
    # Art. 5 says in so many words that under one year counts as one; Arts. 6–9 pay per full year only.
    default_partial = "full_year" if rule == "481-art5" else "drop"
    partial = partial_year or default_partial
    leftover = service.months % 12 > 0 or service.days > 0
    months = Decimal(service.years + (1 if leftover and partial == "full_year" else 0))
    source_zh = "按输入" if partial_year else "按条文默认"
    source_en = "as given" if partial_year else "the article's default"
    partial_zh = "不满一年按一年计" if partial == "full_year" else "不满一年的部分不计"
    partial_en = "a part year counts as one" if partial == "full_year" else "a part year is dropped"
    basis.add(
        f"2008 年前工作年限 {service.start.isoformat()} 至 {service.end.isoformat()} = {service.zh()}，"
        f"按当时规定（《劳动合同法》第九十七条第三款）适用{zh}；{partial_zh}（{source_zh}）",
        f"Service before 2008, {service.start.isoformat()} to {service.end.isoformat()} = {service.en()}, under "
        f"the rules of the time (LCL Art. 97(3)): {en}; {partial_en} ({source_en})",
    )
    if cap is not None and months > cap:
        basis.add(f"2008 年前补偿月数 {number(months)} 超过 {cap}，按 {cap} 计",
                  f"Pre-2008 months {number(months)} exceed {cap}, so {cap} count")
        months = Decimal(cap)
    base = wage
    if enterprise_floor:
        if enterprise_avg is None:
            basis.add(
                "未提供企业月平均工资，未核对 481号第十一条的企业平均工资下限",
                "No enterprise average wage given, so the Decree 481 Art. 11 floor was not checked",
            )
        elif wage < enterprise_avg:
            base = enterprise_avg
            basis.add(
                f"月工资 {money(wage)} 低于企业月平均工资 {money(enterprise_avg)}，按企业平均计（481号第十一条）",
                f"Monthly wage {money(wage)} is below the enterprise average {money(enterprise_avg)}, "
                f"which is used (Decree 481 Art. 11)",
            )
    if rule == "481-art6":
        basis.add("481号第六条另有不低于六个月工资的医疗补助费，未计入本金额",
                  "Decree 481 Art. 6 also owes a medical subsidy of at least six months' wages, not included here")
    amount = to_cent(months * base)
    basis.add(
        f"2008 年前部分 = {number(months)} × {money(base)} = {money(amount)}（无三倍封顶）",
        f"Pre-2008 part = {number(months)} × {money(base)} = {money(amount)} (no 3× cap)",
    )
    return Segment(service.start, service.end, rule, months, base, amount)


def compensation(
    *,
    hire_date: date,
    last_day: date,
    ground: str,
    monthly_wages: Sequence[Decimal] | None = None,
    average_monthly_wage: Decimal | None = None,
    previous_month_wage: Decimal | None = None,
    notice_given: bool | None = None,
    city_avg_monthly_wage: Decimal | None = None,
    min_monthly_wage: Decimal | None = None,
    pre2008_rule: str | None = None,
    pre2008_partial_year: str | None = None,
    enterprise_avg_monthly_wage: Decimal | None = None,
) -> CompensationResult:
    """N (Art. 47), +1 (Art. 40 without 30 days' notice) or 2N (Arts. 48/87) for one termination.

    ``pre2008_rule`` is required when service began before 2008 and the ground owes N: one of
    ``none``, ``lcl-from-hire`` (company choice: count the whole service under Art. 47) or
    ``481-art5`` … ``481-art9``.
    """
    if ground not in GROUNDS:
        raise SettlementError("ground", f"unknown ground {ground!r}; expected one of {', '.join(GROUNDS)}")
    if not isinstance(hire_date, date) or not isinstance(last_day, date):
        raise SettlementError("hire_date", "hire_date and last_day must be dates")
    if last_day < hire_date:
        raise SettlementError("last_day", f"{last_day.isoformat()} is before hire_date {hire_date.isoformat()}")
    if last_day < LCL_START:
        raise SettlementError("last_day", "terminations before 2008-01-01 are outside the Labour Contract Law")
    city_avg = _amount(city_avg_monthly_wage, "city_avg_monthly_wage", positive=True)
    min_wage = _amount(min_monthly_wage, "min_monthly_wage")
    previous = _amount(previous_month_wage, "previous_month_wage")
    enterprise_avg = _amount(enterprise_avg_monthly_wage, "enterprise_avg_monthly_wage")
    if notice_given is not None and not isinstance(notice_given, bool):
        raise SettlementError("notice_given", "must be true or false")
    if pre2008_rule is not None and pre2008_rule not in PRE2008_CHOICES:
        raise SettlementError("pre2008_rule", f"expected one of {', '.join(PRE2008_CHOICES)}")
    if pre2008_partial_year not in (None, "full_year", "drop"):
        raise SettlementError("pre2008_partial_year", "expected 'full_year' or 'drop'")
    info = GROUNDS[ground]

    basis = Basis()
    basis.add(f"入职日期 {hire_date.isoformat()}，最后工作日 {last_day.isoformat()}",
              f"Hire date {hire_date.isoformat()}, last day of work {last_day.isoformat()}")
    basis.add(f"解除/终止情形：《劳动合同法》{info.zh}", f"Ground: Labour Contract Law, {info.en}")

    if not info.owes:
        wage = Decimal(0)
        if monthly_wages is not None or average_monthly_wage is not None:
            wage = _average_wage(monthly_wages, average_monthly_wage, basis)
        basis.add("此情形不支付经济补偿（《劳动合同法》第四十六条所列情形之外）：合计 0.00",
                  "No compensation is owed on this ground (outside the cases listed in Art. 46): total 0.00")
        return CompensationResult(ground, Decimal(0), Decimal(0), wage, Decimal(0), 0, (), basis.zh, basis.en)

    wage = _average_wage(monthly_wages, average_monthly_wage, basis)
    if min_wage is None:
        basis.add("未提供当地最低工资标准，未核对最低工资下限（《实施条例》第二十七条）",
                  "No local minimum wage given, so the minimum-wage floor was not checked "
                  "(Implementing Regulations Art. 27)")
    elif wage < min_wage:
        basis.add(
            f"月工资 {money(wage)} 低于当地最低工资标准 {money(min_wage)}，按最低工资计算（《实施条例》第二十七条）",
            f"Monthly wage {money(wage)} is below the local minimum wage {money(min_wage)}, which is used "
            f"(Implementing Regulations Art. 27)",
        )
        wage = min_wage
    else:
        basis.add(f"月工资不低于当地最低工资标准 {money(min_wage)}",
                  f"Monthly wage is not below the local minimum wage {money(min_wage)}")

    segments: list[Segment] = []
    if ground == "unlawful":
        # Impl. Regs Art. 25: damages count from the first day of employment, with no 2008 split.
        segments.append(_art47_segment(Service.between(hire_date, last_day), wage, city_avg, basis, "", ""))
        multiplier = 2
    elif hire_date >= LCL_START:
        segments.append(_art47_segment(Service.between(hire_date, last_day), wage, city_avg, basis, "", ""))
        multiplier = 1
    else:
        multiplier = 1
        rule = pre2008_rule
        if ground == "44-expiry" and rule not in (None, "none", "lcl-from-hire"):
            raise SettlementError("pre2008_rule", "expiry compensation did not exist before 2008 (LCL Art. 97(3)); "
                                  "use 'none' or 'lcl-from-hire'")
        if ground == "44-expiry" and rule is None:
            rule = "none"
        if rule is None:
            raise SettlementError("pre2008_rule", f"service began before 2008; HR must choose one of "
                                  f"{', '.join(PRE2008_CHOICES)}")
        if rule == "lcl-from-hire":
            basis.add("2008 年前的工作年限按公司选择并入第四十七条一并计算（优于当时规定）",
                      "Service before 2008 is counted under Art. 47 together with the rest, by company choice "
                      "(more favourable than the rules of the time)")
            segments.append(_art47_segment(Service.between(hire_date, last_day), wage, city_avg, basis, "", ""))
        else:
            pre = Service.between(hire_date, LCL_START - timedelta(days=1))
            if rule == "none":
                reason_zh = "劳动合同期满终止在 2008 年前无经济补偿" if ground == "44-expiry" else "按确认不计"
                reason_en = "expiry owed nothing before 2008" if ground == "44-expiry" else "as confirmed"
                basis.add(
                    f"2008 年前工作年限 {pre.zh()} 不计经济补偿（{reason_zh}；《劳动合同法》第九十七条第三款）",
                    f"Service before 2008 ({pre.en()}) is not compensated ({reason_en}; LCL Art. 97(3))",
                )
            else:
                segments.append(_pre2008_segment(rule, pre, wage, pre2008_partial_year, enterprise_avg, basis))
            basis.add("2008 年前后分段分别计算余数，不合并（各地做法不一，需 HR 确认）",
                      "The leftovers before and after 2008 are rounded separately, not combined "
                      "(local practice varies; HR to confirm)")
            segments.append(_art47_segment(Service.between(LCL_START, last_day), wage, city_avg, basis,
                                           "2008 年起", "From 2008: "))

    months = sum((segment.months for segment in segments), Decimal(0))
    standard = sum((segment.amount for segment in segments), Decimal(0))
    monthly_base = segments[-1].monthly_base

    extra = Decimal(0)
    if ground == "40":
        if notice_given is None:
            raise SettlementError("notice_given", "required for ground 40: was 30 days' written notice given?")
        if notice_given:
            basis.add("已提前三十日书面通知，不另付代通知金（第四十条）",
                      "Thirty days' written notice was given, so no pay in lieu (Art. 40)")
        else:
            if previous is None and monthly_wages:
                previous = _amount(monthly_wages[-1], "monthly_wages")
                src_zh, src_en = "取月工资列表最后一个月", "the last entry of monthly_wages"
            else:
                src_zh, src_en = "按输入", "as given"
            if previous is None:
                raise SettlementError("previous_month_wage", "required for ground 40 without notice "
                                      "(Implementing Regulations Art. 20)")
            extra = to_cent(previous)
            basis.add(
                f"未提前三十日书面通知：额外支付一个月工资 = 上一个月工资 {money(extra)}（{src_zh}；第四十条、"
                f"《实施条例》第二十条；不适用三倍封顶）",
                f"No thirty days' written notice: one extra month's wage = previous month's wage {money(extra)} "
                f"({src_en}; Art. 40, Implementing Regulations Art. 20; no 3× cap)",
            )
    elif notice_given is False:
        basis.add("代通知金（+1）仅适用于第四十条，本情形不支付",
                  "Pay in lieu of notice (+1) exists only under Art. 40; none on this ground")

    if multiplier == 2:
        total = standard * 2
        basis.add(
            f"违法解除赔偿金 = 2 × 经济补偿标准 {money(standard)} = {money(total)}（第四十八条、第八十七条）；"
            f"年限自用工之日起计算，支付赔偿金的不再支付经济补偿（《实施条例》第二十五条）",
            f"Damages for unlawful termination = 2 × the compensation standard {money(standard)} = {money(total)} "
            f"(Arts. 48, 87); years count from the first day of employment and no compensation is paid on top "
            f"(Implementing Regulations Art. 25)",
        )
    else:
        total = standard + extra
        if extra:
            basis.add(f"合计 = {money(standard)} + {money(extra)} = {money(total)}",
                      f"Total = {money(standard)} + {money(extra)} = {money(total)}")
        else:
            basis.add(f"合计 {money(total)}", f"Total {money(total)}")
    basis.add(
        "个人所得税：一次性补偿收入在当地上年职工平均工资三倍以内的部分免征（财税〔2018〕164号第五条第（一）项）",
        "Income tax: one-off termination pay up to 3 × the local previous-year average annual wage is exempt "
        "(Cai Shui [2018] No. 164 §5(1))",
    )
    return CompensationResult(ground, total, months, monthly_base, extra, multiplier, tuple(segments),
                              basis.zh, basis.en)
