"""Aggregated temporal representation (clause 4.5.19): periods, methods, and the bucket shortcut.

Periods start at the query's ``timeAt`` (after/between) or else at the attribute's first
instance, and last ``aggrPeriodDuration``; empty periods are left out. Two ways to get
the numbers, same results:

* **hour buckets** (count, sum, sumsq, min, max per hour, kept by the store) when every
  period boundary is hour-aligned, the methods are among :data:`BUCKETABLE`, the time
  property is observedAt and every value is numeric — "avg per day over a month" then
  reads ~720 bucket rows, not the raw instances; a partial last hour is read raw;
* **raw instances** otherwise (distinctCount, non-numeric values, odd periods).

A store may hand the hour buckets over already merged per period (:func:`period_grid`;
PostgreSQL adds them up in SQL, in hour order): :func:`aggregate` treats a merged bucket
like an hour bucket whose hour is the period's start, so the numbers are the same.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from urbanmim.errors import BadRequestData
from urbanmim.store.base import HourBucket, PeriodGrid, StoredInstance
from urbanmim.temporal.timeutil import HOUR_MS, Duration, iso

METHODS = ("totalCount", "distinctCount", "sum", "avg", "min", "max", "stddev", "sumsq")
BUCKETABLE = frozenset({"totalCount", "sum", "avg", "min", "max", "stddev", "sumsq"})


def parse_methods(text: str | None) -> list[str]:
    if not text:
        raise BadRequestData("aggregatedValues needs aggrMethods")
    items = [m.strip() for m in text.split(",")]
    bad = [m for m in items if m not in METHODS]
    if bad or not all(items):
        raise BadRequestData(f"unknown aggregation method(s): {', '.join(bad) or text!r}")
    return list(dict.fromkeys(items))


@dataclass
class Acc:
    """The running state of one period (enough for every method but distinctCount)."""

    count: int = 0
    ncount: int = 0
    sum: float = 0.0
    sumsq: float = 0.0
    min: Any = None
    max: Any = None
    distinct: set[bytes] = field(default_factory=set)

    def add_value(self, value: Any, num: float | None, *, distinct: bool) -> None:
        self.count += 1
        if distinct:
            self.distinct.add(orjson.dumps(value, option=orjson.OPT_SORT_KEYS))
        if num is not None:
            self.ncount += 1
            self.sum += num
            self.sumsq += num * num
            if self.min is None or isinstance(self.min, str) or num < self.min:
                self.min = num
            if self.max is None or isinstance(self.max, str) or num > self.max:
                self.max = num
        elif isinstance(value, str) and self.ncount == 0:   # strings compare only among themselves
            if self.min is None or value < self.min:
                self.min = value
            if self.max is None or value > self.max:
                self.max = value

    def add_bucket(self, b: HourBucket) -> None:
        self.count += b.count
        self.ncount += b.ncount
        self.sum += b.sum
        self.sumsq += b.sumsq
        if b.min is not None and (self.min is None or b.min < self.min):
            self.min = b.min
        if b.max is not None and (self.max is None or b.max > self.max):
            self.max = b.max

    def result(self, method: str) -> Any:
        if method == "totalCount":
            return self.count
        if method == "distinctCount":
            return len(self.distinct)
        if method in ("min", "max"):
            return self.min if method == "min" else self.max
        if self.ncount == 0:
            return None
        if method == "sum":
            return self.sum
        if method == "sumsq":
            return self.sumsq
        mean = self.sum / self.ncount
        if method == "avg":
            return mean
        return math.sqrt(max(0.0, self.sumsq / self.ncount - mean * mean))   # stddev (population)


def periods(origin: int, end: int, dur: Duration) -> Iterator[tuple[int, int]]:
    start = origin
    while start < end:
        nxt = dur.add(start)
        yield start, nxt
        start = nxt


class PeriodIndex:
    """Maps instants (ascending or not) to their period, for fixed and calendar durations."""

    def __init__(self, origin: int, dur: Duration):
        self.origin, self.dur = origin, dur
        self._bounds: list[int] = [origin]

    def of(self, ts: int) -> int | None:
        if ts < self.origin:
            return None
        if not self.dur.months:
            return self.origin + (ts - self.origin) // self.dur.fixed_ms * self.dur.fixed_ms
        while self._bounds[-1] <= ts:
            self._bounds.append(self.dur.add(self._bounds[-1]))
        lo, hi = 0, len(self._bounds) - 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self._bounds[mid] <= ts:
                lo = mid
            else:
                hi = mid
        return self._bounds[lo]


def period_grid(origin: int, end: int, dur: Duration) -> PeriodGrid:
    """The periods up to ``end`` as a store can merge hour buckets into them (PostgreSQL does,
    in SQL: the same sums in the same order, so :func:`aggregate` gives the same numbers)."""
    if not dur.months:
        return PeriodGrid(origin, dur.fixed_ms)
    return PeriodGrid(origin, dur.fixed_ms, [start for start, _ in periods(origin, max(end, origin + 1), dur)])


def can_use_buckets(methods: list[str], timeproperty: str, origin: int, dur: Duration) -> bool:
    return set(methods) <= BUCKETABLE and timeproperty == "observedAt" and origin % HOUR_MS == 0 \
        and (dur.whole_hours or (dur.months > 0 and dur.fixed_ms % HOUR_MS == 0))


def aggregate(raw: list[StoredInstance], buckets: list[HourBucket], methods: list[str], origin: int,
              dur: Duration) -> dict[str | None, list[tuple[int, Acc]]]:
    """Per datasetId, the non-empty periods in time order with their accumulated state."""
    index = PeriodIndex(origin, dur)
    accs: dict[str | None, dict[int, Acc]] = {}
    distinct = "distinctCount" in methods
    for b in buckets:
        p = index.of(b.hour)
        if p is not None:
            accs.setdefault(b.dataset_id, {}).setdefault(p, Acc()).add_bucket(b)
    for inst in raw:
        p = index.of(inst.ts)
        if p is not None:
            value = inst.instance.get(_value_key(inst.instance))
            accs.setdefault(inst.dataset_id, {}).setdefault(p, Acc()).add_value(value, inst.num, distinct=distinct)
    return {ds: sorted(per.items()) for ds, per in accs.items()}


def _value_key(inst: dict[str, Any]) -> str:
    from urbanmim.ngsild.entity import VALUE_KEY
    return VALUE_KEY.get(inst.get("type", "Property"), "value")


# the period bounds of a page repeat for every entity of it: 1,200 strftime calls for 20 x 30 days
_iso = functools.lru_cache(maxsize=1 << 14)(iso)


def render_periods(per: list[tuple[int, Acc]], methods: list[str], dur: Duration) -> dict[str, Any]:
    out: dict[str, Any] = {}
    bounds = [(_iso(start), _iso(dur.add(start))) for start, _ in per]
    for m in methods:
        out[m] = [[acc.result(m), *b] for (_, acc), b in zip(per, bounds, strict=True)]
    return out
