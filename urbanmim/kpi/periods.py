"""Calculation periods: the span a KPI value describes, named the way people say it.

A value is always *for* a period ("2026", "2026-Q2", "2026-03", "2026-W14", "2026-03-05"),
because cities report yearly figures and a figure without its period cannot be compared.
The period's kind follows the KPI's ``calculationFrequency``; its label is part of the
KPI entity's id, so recomputing a period replaces that period's value and nothing else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from urbanmim.errors import BadRequestData

_YEAR = re.compile(r"^(\d{4})$")
_QUARTER = re.compile(r"^(\d{4})-Q([1-4])$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")
_DAY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


@dataclass(frozen=True)
class Period:
    label: str
    start: date          # first day
    end: date            # first day *after* the period

    @property
    def start_ms(self) -> int:
        return _ms(self.start)

    @property
    def end_ms(self) -> int:
        return _ms(self.end)

    @property
    def last_day(self) -> date:
        return self.end - timedelta(days=1)

    def elapsed_end_ms(self, now_ms: int) -> int:
        """Where the period's data can end today: its end, or now for a running period."""
        return max(self.start_ms, min(self.end_ms, now_ms))

    def next(self) -> Period:
        return period_of(self.end, kind_of(self.label))

    def previous(self) -> Period:
        return period_of(self.start - timedelta(days=1), kind_of(self.label))


def _ms(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() * 1000)


def _add_months(d: date, n: int) -> date:
    total = d.month - 1 + n
    return date(d.year + total // 12, total % 12 + 1, 1)


def parse_period(label: str) -> Period:
    """``2026`` | ``2026-Q2`` | ``2026-03`` | ``2026-W14`` | ``2026-03-05`` → a Period (400 otherwise)."""
    text = str(label).strip()
    try:
        if m := _YEAR.match(text):
            y = int(m[1])
            return Period(text, date(y, 1, 1), date(y + 1, 1, 1))
        if m := _QUARTER.match(text):
            s = date(int(m[1]), 3 * int(m[2]) - 2, 1)
            return Period(text, s, _add_months(s, 3))
        if m := _MONTH.match(text):
            s = date(int(m[1]), int(m[2]), 1)
            return Period(text, s, _add_months(s, 1))
        if m := _WEEK.match(text):
            s = date.fromisocalendar(int(m[1]), int(m[2]), 1)
            return Period(text, s, s + timedelta(days=7))
        if m := _DAY.match(text):
            s = date(int(m[1]), int(m[2]), int(m[3]))
            return Period(text, s, s + timedelta(days=1))
    except ValueError:
        pass
    raise BadRequestData(f"period must look like 2026, 2026-Q2, 2026-03, 2026-W14 or 2026-03-05, not {label!r}")


# calculationFrequency -> the kind of period a value covers
_KIND = {"yearly": "year", "quarterly": "quarter", "monthly": "month", "bimonthly": "month", "weekly": "week",
         "biweekly": "week", "daily": "day", "hourly": "day"}


def kind_of(label: str) -> str:
    if _YEAR.match(label):
        return "year"
    if _QUARTER.match(label):
        return "quarter"
    if _MONTH.match(label):
        return "month"
    if _WEEK.match(label):
        return "week"
    return "day"


def period_of(day: date, kind_or_frequency: str) -> Period:
    """The period of a given kind (or calculationFrequency) that contains ``day``."""
    kind = _KIND.get(kind_or_frequency, kind_or_frequency)
    if kind == "year":
        return parse_period(f"{day.year}")
    if kind == "quarter":
        return parse_period(f"{day.year}-Q{(day.month - 1) // 3 + 1}")
    if kind == "month":
        return parse_period(f"{day.year}-{day.month:02d}")
    if kind == "week":
        y, w, _ = day.isocalendar()
        return parse_period(f"{y}-W{w:02d}")
    return parse_period(day.isoformat())


def today() -> date:
    return datetime.now(UTC).date()
