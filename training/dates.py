"""Human-written dates -> ISO 8601, for a small Marian model with a monotonic alignment.

Every example is built from pieces whose roles are known (year, month, day), so the
evaluation knows which source tokens carry each target token.

Numeric dates are day-first (22/11/26 is 22 November 2026). Two-digit years follow the
POSIX `strptime` pivot: 69-99 -> 1969-1999, 00-68 -> 2000-2068; dates written with a
two-digit year are therefore drawn from 1969-2068 only.
"""

from __future__ import annotations

import datetime as dt
import random

from training.common import Example, Piece

MONTHS = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
]
MONTH_ABBR = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
WEEKDAY_ABBR = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
FIRST, LAST = dt.date(1900, 1, 1), dt.date(2099, 12, 31)
TWO_DIGIT_FIRST, TWO_DIGIT_LAST = dt.date(1969, 1, 1), dt.date(2068, 12, 31)


def ordinal(day: int) -> str:
    if 11 <= day % 100 <= 13:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")


def _y(d):  # four-digit year piece
    return Piece(str(d.year), "year")


def _yy(d):
    return Piece(f"{d.year % 100:02d}", "year")


def _m(d):
    return Piece(f"{d.month:02d}", "month")


def _d(d):
    return Piece(f"{d.day:02d}", "day")


def _dn(d):  # day without a leading zero
    return Piece(str(d.day), "day")


def _month(d):
    return Piece(MONTHS[d.month - 1], "month")


def _mon(d):
    return Piece(MONTH_ABBR[d.month - 1], "month")


def _wd(d):
    return Piece(WEEKDAYS[d.weekday()], None)


def _wda(d):
    return Piece(WEEKDAY_ABBR[d.weekday()], None)


def _ord(d):
    return Piece(ordinal(d.day), "day")


def _t(text):
    return lambda d: Piece(text, None)


SP, COMMA, SLASH, DOT, DASH = _t(" "), _t(","), _t("/"), _t("."), _t("-")

# name -> (uses a two-digit year, pieces)
FORMATS = {
    "weekday d month yyyy": (False, [_wd, COMMA, SP, _dn, SP, _month, SP, _y]),  # Sunday, 22 November 2026
    "d month yyyy": (False, [_dn, SP, _month, SP, _y]),  # 22 November 2026
    "month d, yyyy": (False, [_month, SP, _dn, COMMA, SP, _y]),  # November 22, 2026
    "mon d, yyyy": (False, [_mon, SP, _dn, COMMA, SP, _y]),  # nov 22, 2026
    "d mon yyyy": (False, [_dn, SP, _mon, SP, _y]),  # 22 nov 2026
    "dd/mm/yy": (True, [_d, SLASH, _m, SLASH, _yy]),  # 22/11/26
    "dd/mm/yyyy": (False, [_d, SLASH, _m, SLASH, _y]),  # 22/11/2026
    "dd.mm.yyyy": (False, [_d, DOT, _m, DOT, _y]),  # 22.11.2026
    "dd-mm-yyyy": (False, [_d, DASH, _m, DASH, _y]),  # 22-11-2026
    "yyyy/mm/dd": (False, [_y, SLASH, _m, SLASH, _d]),  # 2026/11/22
    "yyyy-mm-dd": (False, [_y, DASH, _m, DASH, _d]),  # 2026-11-22
    "the dth of month yyyy": (False, [_t("the"), SP, _dn, _ord, SP, _t("of"), SP, _month, SP, _y]),
    "dth month yyyy": (False, [_dn, _ord, SP, _month, SP, _y]),  # 22nd November 2026
    "d mon 'yy": (True, [_dn, SP, _mon, SP, _t("'"), _yy]),  # 22 Nov '26
    "wd d mon yyyy": (False, [_wda, SP, _dn, SP, _mon, SP, _y]),  # Sun 22 Nov 2026
    "month dth, yyyy": (False, [_month, SP, _dn, _ord, COMMA, SP, _y]),  # November 22nd, 2026
    "dd.mm.yy": (True, [_d, DOT, _m, DOT, _yy]),  # 22.11.26
}


def vocabulary() -> list[str]:
    numbers = [str(i) for i in range(100)] + [f"{i:02d}" for i in range(10)]
    years = [str(y) for y in range(FIRST.year, LAST.year + 1)]
    words = MONTHS + MONTH_ABBR + WEEKDAYS + WEEKDAY_ABBR + ["the", "of", "st", "nd", "rd", "th"]
    return numbers + years + words + [",", "/", ".", "-", "'"]


def _capitalize_names(text: str) -> str:
    return text.capitalize() if text in MONTHS + MONTH_ABBR + WEEKDAYS + WEEKDAY_ABBR else text


CASES = (_capitalize_names, str.lower, str.upper)  # "22 Nov 2026", "22 nov 2026", "22 NOV 2026"


def example(date: dt.date, fmt: str, rng: random.Random) -> Example:
    _, builders = FORMATS[fmt]
    case = rng.choice(CASES)
    source = [Piece(case(piece.text), piece.role) for piece in (build(date) for build in builders)]
    target = [
        Piece(str(date.year), "year"),
        Piece("-", None),
        Piece(f"{date.month:02d}", "month"),
        Piece("-", None),
        Piece(f"{date.day:02d}", "day"),
    ]
    return Example(source=source, target=target, tag=fmt)


def is_held_out(date: dt.date) -> bool:
    """Split by date: about 10% of all calendar dates never appear in training, in any format."""
    return random.Random(date.toordinal() * 7919).random() < 0.10


def sample(n: int, held_out: bool, seed: int) -> list[Example]:
    rng = random.Random(seed)
    out = []
    names = list(FORMATS)
    while len(out) < n:
        fmt = names[len(out) % len(names)]
        two_digit, _ = FORMATS[fmt]
        first, last = (TWO_DIGIT_FIRST, TWO_DIGIT_LAST) if two_digit else (FIRST, LAST)
        date = first + dt.timedelta(days=rng.randrange((last - first).days + 1))
        if is_held_out(date) == held_out:
            out.append(example(date, fmt, rng))
    return out
