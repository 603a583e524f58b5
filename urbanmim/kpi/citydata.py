"""The one door through which KPI formulas read city data.

Why one door: formulas are clients of the platform, like any app. They ask for entities
through the service layer (``app.state.entities.query``) and for history through the
temporal service (:func:`urbanmim.temporal.service.render_aggregated`), never the tables,
so the decisions the service layer makes (tenancy today, access control as it arrives)
hold for KPI computation too — which runs *as the platform*, for the whole city. When the
service layer grows an identity argument, this module is the only place to pass it.

It also caches what several formulas share within one computation (the districts, the
population, the stops), so computing all KPIs reads each entity type once.

Types and attributes are asked for by their short name ("District", "population"): a city
may have loaded them with the core @context (default vocabulary) or a Smart Data Models
one, so each short name is looked up under both IRIs, and records use short names
(``urbanmim.analysis.data.Record``, shared with the analysis models).
"""

from __future__ import annotations

import time
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any

from urbanmim.analysis.data import Record, local_name, record_of
from urbanmim.ingest.demo import sdm
from urbanmim.kpi.periods import Period
from urbanmim.ngsild.entity import Entity
from urbanmim.ngsild.render import View
from urbanmim.store.base import EntityQuery, TemporalSpan
from urbanmim.temporal import service as temporal
from urbanmim.temporal.timeutil import HOUR_MS, Duration, opt_ms

DEFAULT_VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"
# Smart Data Models subjects of types the demo does not load but cities do (green areas)
EXTRA_SUBJECTS = {t: ("ParksAndGardens",) for t in ("Park", "Garden", "GreenspaceRecord", "FlowerBed")}


def type_iris(short: str) -> list[str]:
    """Every IRI a short type name may have been stored under (default vocabulary, SDM subjects)."""
    out = [DEFAULT_VOCAB + short]
    subj = sdm.TYPE_SUBJECT.get(short)
    if subj:
        out.append(sdm.term_iri(subj, short))
    for s in EXTRA_SUBJECTS.get(short, ()):
        out.append(f"{sdm.SDM}dataModel.{s}/{short}")
    return list(dict.fromkeys(out))


def ngsi_query(short: str, q: str = "") -> str:
    """The NGSI-LD request that selects these entities (for provenance: anyone can re-run it)."""
    return f"GET /ngsi-ld/v1/entities?type={short}" + (f"&q={q}" if q else "")


@dataclass
class Mean:
    """An attribute's mean over a period, from the temporal service's monthly aggregates."""

    value: float | None
    count: int
    months: int           # months (or shorter periods) with at least one value


class CityData:
    """What the formulas of one computation (one tenant, one period) read, fetched once."""

    def __init__(self, app: Any, tenant: str, period: Period, now_ms: int | None = None):
        self.app, self.tenant, self.period = app, tenant, period
        self.now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        self._entities: dict[str, list[Entity]] = {}
        self._records: dict[str, list[Record]] = {}
        self.reads = 0
        self._denominators: dict[str, float] | None = None

    # ---- entities -------------------------------------------------------------------------------
    async def entities(self, short: str) -> list[Entity]:
        """All entities of a type (by short name), through the service layer."""
        hit = self._entities.get(short)
        if hit is None:
            res = await self.app.state.entities.query(EntityQuery(
                tenant=self.tenant, types=[frozenset({t}) for t in type_iris(short)], limit=10_000_000))
            self.reads += 1
            hit = self._entities[short] = res.entities
        return hit

    async def records(self, short: str) -> list[Record]:
        hit = self._records.get(short)
        if hit is None:
            hit = self._records[short] = [record_of(e) for e in await self.entities(short)]
            for r in hit:
                r.type = short
        return hit

    async def population(self) -> tuple[float | None, list[Record]]:
        """The city's residents: the sum of its districts' ``population`` (None without districts)."""
        districts = [d for d in await self.records("District") if d.number("population") is not None]
        if not districts:
            return None, []
        return sum(d.number("population") or 0.0 for d in districts), districts

    async def denominators(self) -> dict[str, float]:
        """Population and area (km², geodesic, of the district polygons) — recorded with every value so
        a comparison can normalise with the figures the value was computed against."""
        if self._denominators is None:
            from pyproj import Geod
            from shapely.geometry import shape

            pop, districts = await self.population()
            out: dict[str, float] = {}
            if pop:
                out["population"] = pop
            geod = Geod(ellps="WGS84")
            polys = [d.geometry for d in await self.records("District")
                     if isinstance(d.geometry, dict) and d.geometry.get("type") in ("Polygon", "MultiPolygon")]
            if polys:
                area = sum(abs(geod.geometry_area_perimeter(shape(g))[0]) for g in polys) / 1e6
                out["areaKm2"] = round(area, 4)
            self._denominators = out
        return self._denominators

    # ---- history, through the temporal service ---------------------------------------------------
    def span(self) -> tuple[int, int]:
        return self.period.start_ms, self.period.elapsed_end_ms(self.now_ms)

    def months_elapsed(self) -> int:
        return len(self.month_starts())

    def month_starts(self) -> list[int]:
        start, end = self.span()
        out, t, month = [], start, Duration("P1M")
        while t < end:
            out.append(t)
            t = month.add(t)
        return out or [start]

    async def mean(self, entity_id: str, attr_iri: str) -> Mean:
        """Mean of a numeric attribute over the period, and how many months have data.

        The hour buckets the temporal store keeps (count, sum per hour — what the temporal
        service's aggregation reads) are summed per month here in one pass: a year of hourly
        values is ~8,760 bucket rows, not 8,760 instances, and skipping the per-period
        machinery of ``aggregatedValues`` halves the time (bench/kpi_compute.py). The partial
        last hour of a running period is read raw. Where a bucket holds non-numeric values the
        temporal service's own ``aggregatedValues`` answers instead (:meth:`mean_via_service`)."""
        start, end = self.span()
        if end <= start:
            return Mean(None, 0, 0)
        full_end = end - end % HOUR_MS
        store = self.app.state.store
        buckets = await store.temporal_buckets(self.tenant, entity_id, attr_iri, start, full_end) \
            if full_end > start else []
        self.reads += 1
        bounds = self.month_starts()
        total, n, months = 0.0, 0, set()
        for b in buckets:
            if b.count != b.ncount:
                return await self.mean_via_service(entity_id, attr_iri)
            if b.ncount:
                total += b.sum
                n += b.ncount
                months.add(bisect_right(bounds, b.hour))
        if full_end < end:
            tail = await store.temporal_instances(self.tenant, entity_id, attr_iri,
                                                  TemporalSpan("observedAt", max(start, full_end), end),
                                                  newest_first=False, limit=1 << 30)
            for r in tail:
                if "deletedAt" in r.instance:
                    continue
                if r.num is None:
                    return await self.mean_via_service(entity_id, attr_iri)
                total += r.num
                n += 1
                months.add(bisect_right(bounds, r.ts))
        return Mean(total / n if n else None, n, len(months))

    async def mean_via_service(self, entity_id: str, attr_iri: str) -> Mean:
        """The same mean from the temporal service's ``aggregatedValues`` (avg, totalCount per month)."""
        start, end = self.span()
        tp = temporal.TemporalParams(span=TemporalSpan("observedAt", start, end), timerel="between",
                                     mode="aggregatedValues", methods=["avg", "totalCount"],
                                     duration=Duration("P1M"), aggr_text="P1M")
        view = View(ctx=sdm.term_map(None))
        out = await temporal.render_aggregated(self.app.state.store, self.tenant, entity_id, attr_iri, view, tp)
        self.reads += 1
        groups = out if isinstance(out, list) else [out]
        total = weighted = 0.0
        months: set[str] = set()
        for g in groups:
            for (avg, mstart, _), (cnt, *_) in zip(g.get("avg", []), g.get("totalCount", []), strict=False):
                if avg is None or not cnt:
                    continue
                total += cnt
                weighted += avg * cnt
                months.add(mstart)
        return Mean(weighted / total if total else None, int(total), len(months))

    async def observed_in_period(self, ent: Entity) -> list[str]:
        """Short names of the attributes of ``ent`` that a device or feed wrote (an ``observedAt``)
        during the period: the current value says which attributes are observed, the temporal
        history says whether one was written in the period."""
        start, end = self.span()
        out = []
        for iri, insts in ent.get("attrs", {}).items():
            stamps = [i.get("observedAt") for i in insts if isinstance(i.get("observedAt"), str)]
            if not stamps:
                continue
            if any(start <= (opt_ms(s) or 0) < end for s in stamps):
                out.append(local_name(iri))
                continue
            rows = await self.app.state.store.temporal_instances(
                self.tenant, ent["id"], iri, TemporalSpan("observedAt", start, end), newest_first=False, limit=1)
            self.reads += 1
            if rows:
                out.append(local_name(iri))
        return out
