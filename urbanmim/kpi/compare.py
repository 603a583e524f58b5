"""Comparing cities: normalisation, target bands, ranking with data quality, trends.

Why these rules are code and not chart settings: "city A does better than city B" is a
claim, and the claim must be the same in the API, the CSV and the page. So:

* **normalisation** turns counts into rates with the denominators the value itself records
  (``denominators.population`` / ``areaKm2``), never a number looked up later;
* **target bands** follow U4SSC: achievement = value / target (or target / value when lower
  is better), capped at 100 %, then 0–33 / 33–66 / 66–100 %; the SDM ``currentStanding``
  is derived from it;
* **ranking** orders by value in the KPI's better direction, but shows each value's
  data-quality level next to it and never hides a lower-quality value — a reader decides
  whether an estimate beats a measurement;
* **trends** are the values of one KPI over a city's periods, oldest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from urbanmim.errors import BadRequestData
from urbanmim.kpi import quality
from urbanmim.kpi import values as kv
from urbanmim.kpi.catalogue import builtin, find_builtin, slug
from urbanmim.kpi.values import KpiValue

NORMALISATIONS = ("none", "per-capita", "per-100k", "per-km2")
BANDS = ("0-33", "33-66", "66-100")


def achievement(value: float | None, target: float | None, direction: str) -> float | None:
    """Percent of target reached, 0..100 (None without a target or value)."""
    if value is None or target is None:
        return None
    if direction == "lower":
        if value <= 0:
            return 100.0
        return min(100.0, max(0.0, target / value * 100.0))
    if target == 0:
        return 100.0 if value >= 0 else 0.0
    return min(100.0, max(0.0, value / target * 100.0))


def band(ach: float | None) -> str | None:
    if ach is None:
        return None
    return "0-33" if ach < 100 / 3 else "33-66" if ach < 200 / 3 else "66-100"


def standing(ach: float | None) -> str | None:
    """SDM ``currentStanding`` from the achievement: veryGood at target, good/fair/bad by band."""
    if ach is None:
        return None
    if ach >= 100.0:
        return "veryGood"
    b = band(ach)
    return {"66-100": "good", "33-66": "fair", "0-33": "bad" if ach >= 10 else "veryBad"}[b or "0-33"]


def normalised(v: KpiValue, how: str) -> tuple[float | None, str]:
    """The value under a normalisation, with its unit. Rates already per 100,000 convert to per capita
    and back; counts ('absolute') divide by the recorded population or area; percents and ratios stay."""
    if how not in NORMALISATIONS:
        raise BadRequestData(f"normalise must be one of {', '.join(NORMALISATIONS)}")
    if v.value is None or how == "none":
        return v.value, v.unit
    unit = v.unit.lower()
    pop = v.denominators.get("population")
    area = v.denominators.get("areaKm2")
    if "per 100,000" in unit:
        if how == "per-capita":
            return v.value / 100_000.0, "per inhabitant"
        if how == "per-km2" and pop and area:
            return v.value / 100_000.0 * pop / area, "per km²"
        return v.value, v.unit
    if unit in ("absolute", "count"):
        if how == "per-capita" and pop:
            return v.value / pop, "per inhabitant"
        if how == "per-100k" and pop:
            return v.value / pop * 100_000.0, "per 100,000 inhabitants"
        if how == "per-km2" and area:
            return v.value / area, "per km²"
    return v.value, v.unit


@dataclass
class Entry:
    """One city's value of one indicator in a comparison."""

    tenant: str
    value: float | None
    unit: str
    quality: str
    verified: bool
    period: str
    achievement: float | None
    band: str | None
    rank: int | None = None
    id: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "value": self.value, "unit": self.unit, "dataQuality": self.quality,
                "dataQualityLabel": quality.LABELS.get(self.quality, self.quality), "verified": self.verified,
                "period": self.period, "targetAchievement": None if self.achievement is None
                else round(self.achievement, 1), "band": self.band, "rank": self.rank, "id": self.id}


def rank(entries: list[Entry], direction: str) -> list[Entry]:
    """Best first in the KPI's direction (ties share a rank); values missing go last without a rank."""
    have = [e for e in entries if e.value is not None]
    have.sort(key=lambda e: (-(e.value or 0.0) if direction == "higher" else (e.value or 0.0), e.tenant))
    prev: float | None = None
    pos = 0
    for i, e in enumerate(have, start=1):
        if e.value != prev:
            pos, prev = i, e.value
        e.rank = pos
    return have + sorted((e for e in entries if e.value is None), key=lambda e: e.tenant)


def trend(values: list[KpiValue]) -> list[dict[str, Any]]:
    """One city's values of one indicator (and component), oldest period first, with the change."""
    vs = sorted(values, key=lambda v: v.p.start)
    out: list[dict[str, Any]] = []
    prev: float | None = None
    for v in vs:
        change = None if prev is None or v.value is None else round(v.value - prev, 6)
        out.append({"period": v.period, "value": v.value, "dataQuality": v.quality, "verified": v.verified,
                    "change": change})
        if v.value is not None:
            prev = v.value
    return out


@dataclass
class Indicator:
    """One row of a comparison: an indicator (code + component) and every city's entry, ranked."""

    code: str
    component: str
    name: str
    dimension: str
    sub_dimension: str
    unit: str
    direction: str
    target: float | None
    entries: list[Entry]

    @property
    def key(self) -> str:
        return self.code + (f" {self.component}" if self.component else "")

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "component": self.component, "name": self.name, "dimension": self.dimension,
                "subDimension": self.sub_dimension, "unit": self.unit, "direction": self.direction,
                "target": self.target, "entries": [e.to_json() for e in self.entries]}


async def comparison(app: Any, *, tenants: list[str] | None = None, period: str | None = None,
                     codes: list[str] | None = None, normalise: str = "none",
                     dimension: str | None = None) -> list[Indicator]:
    """Every indicator any of the cities has a value for (in ``period``, else each city's latest),
    side by side, ranked, in catalogue order."""
    if normalise not in NORMALISATIONS:
        raise BadRequestData(f"normalise must be one of {', '.join(NORMALISATIONS)}")
    wanted = {slug(c) for c in codes} if codes else None
    names = tenants if tenants is not None else await app.state.store.tenants()
    latest: dict[tuple[str, str], dict[str, KpiValue]] = {}
    for t in names:
        for v in await kv.load(app, t, period=period):
            if wanted is not None and slug(v.code) not in wanted:
                continue
            if dimension and v.dimension != dimension:
                continue
            slot = latest.setdefault((v.code, v.component), {})
            cur = slot.get(t)
            if cur is None or v.p.start > cur.p.start:
                slot[t] = v
    order = {d.code: i for i, d in enumerate(builtin())}
    out = []
    for (code, comp), per_city in sorted(latest.items(), key=lambda kv_: (order.get(kv_[0][0], 10_000), kv_[0])):
        d = find_builtin(code)
        direction = d.direction if d else "higher"
        any_v = next(iter(per_city.values()))
        target = any_v.target
        entries = []
        for t in names:
            cv = per_city.get(t)
            if cv is None:
                continue
            v = cv
            val, unit = normalised(v, normalise)
            ach = achievement(v.value, v.target, direction)
            entries.append(Entry(t, val, unit, v.quality, v.verified, v.period, ach, band(ach), id=v.entity_id))
        out.append(Indicator(code, comp, d.name if d else any_v.name or code, any_v.dimension or (d.dimension if d
                             else ""), any_v.sub_dimension or (d.sub_dimension if d else ""),
                             entries[0].unit if entries else any_v.unit, direction, target, rank(entries, direction)))
    return out
