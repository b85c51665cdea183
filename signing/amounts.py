"""Amounts in Chinese capital numerals (大写), as contracts and receipts print them beside the figure.

The written form is what a reader checks against the figure: 1,438.42 → 壹仟肆佰叁拾捌元肆角贰分.
Conventions followed (财政部《会计基础工作规范》第五十二条): 零 for each run of zeros inside the
number, "整" when there are no 角/分, "零" before 分 when 角 is zero, 壹拾 written out.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

_DIGITS = "零壹贰叁肆伍陆柒捌玖"
_SMALL = ("", "拾", "佰", "仟")
_BIG = ("", "万", "亿", "万亿")


def _group(n: int) -> str:
    """0 < n < 10000, without leading 零."""
    out = []
    zero = False
    for pos in range(3, -1, -1):
        d = n // 10**pos % 10
        if d == 0:
            zero = bool(out)
            continue
        if zero:
            out.append("零")
            zero = False
        out.append(_DIGITS[d] + _SMALL[pos])
    return "".join(out)


def _integer(n: int) -> str:
    if n == 0:
        return ""
    groups: list[int] = []
    while n:
        groups.append(n % 10000)
        n //= 10000
    if len(groups) > len(_BIG):
        raise ValueError("amount too large")
    out: list[str] = []
    need_zero = False
    for i in range(len(groups) - 1, -1, -1):
        g = groups[i]
        if g == 0:
            need_zero = bool(out)
            continue
        if out and (need_zero or g < 1000):
            out.append("零")
        out.append(_group(g) + _BIG[i])
        need_zero = False
    return "".join(out)


def rmb_upper(amount: Decimal) -> str:
    """`Decimal("1438.42")` → "壹仟肆佰叁拾捌元肆角贰分"; rounded half-up to the cent first."""
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise ValueError(f"amount must be a finite Decimal, got {amount!r}")
    cents = int((abs(amount) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    yuan, rest = divmod(cents, 100)
    jiao, fen = divmod(rest, 10)
    sign = "负" if amount < 0 and cents else ""
    if cents == 0:
        return "零元整"
    head = _integer(yuan)
    text = head + "元" if head else ""
    if jiao == 0 and fen == 0:
        return sign + text + "整"
    if jiao:
        # 1,680.32 → …捌拾元零叁角贰分: a zero in the units place is read out before the 角.
        text += ("零" if head and yuan % 10 == 0 else "") + _DIGITS[jiao] + "角"
    elif head:
        text += "零"
    if fen:
        text += _DIGITS[fen] + "分"
    return sign + text


_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"))


def _words(n: int) -> str:
    for size, name in _SCALES:
        if n >= size:
            head, rest = divmod(n, size)
            return f"{_words(head)} {name}" + (f" {_words(rest)}" if rest else "")
    if n >= 100:
        head, rest = divmod(n, 100)
        return f"{_ONES[head]} hundred" + (f" and {_words(rest)}" if rest else "")
    if n >= 20:
        tens, unit = divmod(n, 10)
        return _TENS[tens] + (f"-{_ONES[unit]}" if unit else "")
    return _ONES[n]


def rmb_words(amount: Decimal) -> str:
    """The English counterpart of `rmb_upper` for an English document: `Decimal("1438.42")` →
    "one thousand four hundred and thirty-eight yuan and forty-two fen"."""
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise ValueError(f"amount must be a finite Decimal, got {amount!r}")
    cents = int((abs(amount) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    yuan, fen = divmod(cents, 100)
    text = f"{_words(yuan)} yuan" + (f" and {_words(fen)} fen" if fen else " only")
    return ("minus " if amount < 0 and cents else "") + text
