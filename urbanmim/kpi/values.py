"""KPI values with their provenance, stored as Smart Data Models ``KeyPerformanceIndicator`` entities.

Why entities and not a side table: a KPI value written through ``app.state.entities`` is
queryable with NGSI-LD, subscribable, historised by the temporal store and exported like
any other city data — and it passes through the same service layer (and its future access
decisions) as everything else. One entity per city (tenant), KPI (+ component, e.g. the
pollutant) and period: ``urn:ngsi-ld:KeyPerformanceIndicator:<tenant>:<code slug>[.<component>]:<period>``.
Recomputing a period replaces its value; the temporal history keeps the earlier ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from urbanmim.errors import BadRequestData
from urbanmim.kpi import context, quality
from urbanmim.kpi.catalogue import KpiDefinition, slug
from urbanmim.kpi.periods import Period, parse_period
from urbanmim.ngsild.payload import parse_entity
from urbanmim.service.entities import EntityService, now_iso
from urbanmim.store.base import EntityQuery, Mutation

ID_PREFIX = "urn:ngsi-ld:KeyPerformanceIndicator:"
MAX_LISTED_IDS = 50      # provenance lists entity ids up to this many, else a count and the query


@dataclass
class Input:
    """One kind of data a value was computed from."""

    entity_type: str
    attrs: list[str]
    count: int
    query: str = ""                 # the NGSI-LD query that selects them (always given)
    ids: list[str] | None = None    # the ids, when there are at most MAX_LISTED_IDS

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"entityType": self.entity_type, "attrs": self.attrs, "count": self.count,
                               "query": self.query}
        if self.ids is not None:
            out["ids"] = self.ids
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Input:
        return cls(d.get("entityType", ""), list(d.get("attrs") or []), int(d.get("count") or 0),
                   d.get("query", ""), d.get("ids"))


def input_of(entity_type: str, attrs: list[str], ids: list[str], query: str) -> Input:
    return Input(entity_type, attrs, len(ids), query, sorted(ids) if len(ids) <= MAX_LISTED_IDS else None)


# JSON member names (camelCase, as NGSI-LD and the SDM model write them) of the snake_case fields
_CAMEL = {"quality": "dataQuality", "sub_dimension": "subDimension", "kpi_type": "kpiType",
          "verified_by": "verifiedBy", "formula_id": "formulaId", "formula_version": "formulaVersion",
          "computed_at": "computedAt", "next_calculation": "nextCalculation"}
_SNAKE = {v: k for k, v in _CAMEL.items()}


@dataclass
class KpiValue:
    tenant: str
    code: str
    period: str
    value: float | None
    unit: str
    quality: str
    component: str = ""                 # e.g. "no2" for Air pollution
    name: str = ""
    dimension: str = ""
    sub_dimension: str = ""
    kpi_type: str = ""
    frequency: str = "yearly"
    method: str = "automatic"           # automatic | manual (calculationMethod)
    verified: bool = False
    verified_by: str = ""
    formula_id: str = ""
    formula_version: str = ""
    formula: str = ""                   # calculationFormula text
    inputs: list[Input] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    denominators: dict[str, float] = field(default_factory=dict)   # population, areaKm2 used
    details: dict[str, Any] = field(default_factory=dict)           # e.g. per-station means
    evidence: str = ""                  # URL or document reference (manual entries)
    target: float | None = None
    computed_at: str = ""
    next_calculation: str = ""
    organization: str = ""

    @property
    def key(self) -> str:
        return slug(self.code) + (f".{self.component}" if self.component else "")

    @property
    def entity_id(self) -> str:
        return f"{ID_PREFIX}{self.tenant or 'default'}:{self.key}:{self.period}"

    @property
    def p(self) -> Period:
        return parse_period(self.period)

    def to_json(self) -> dict[str, Any]:
        out = {_CAMEL.get(k, k): v for k, v in asdict(self).items()}
        out["inputs"] = [i.to_json() for i in self.inputs]
        out["id"] = self.entity_id
        out["from"], out["to"] = self.p.start.isoformat(), self.p.last_day.isoformat()
        out["dataQualityLabel"] = quality.LABELS.get(self.quality, self.quality)
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> KpiValue:
        known = {f for f in cls.__dataclass_fields__}
        kw = {_SNAKE.get(k, k): v for k, v in d.items()}
        kw = {k: v for k, v in kw.items() if k in known}
        kw["inputs"] = [Input.from_json(i) for i in d.get("inputs") or []]
        try:
            out = cls(**kw)
        except TypeError as e:
            raise BadRequestData(f"not a KPI value: {e}") from None
        parse_period(out.period)
        quality.check(out.quality)
        return out


def apply_definition(v: KpiValue, d: KpiDefinition) -> KpiValue:
    v.name, v.dimension, v.sub_dimension, v.kpi_type = d.name, d.dimension, d.sub_dimension, d.type
    v.frequency = d.frequency
    if not v.unit:
        v.unit = d.unit
    return v


# ---- entity <-> value ------------------------------------------------------------------------------------
def _p(value: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value}


def to_payload(v: KpiValue, standing: str | None = None, achievement: float | None = None) -> dict[str, Any]:
    """The normalized NGSI-LD payload (compact terms of :mod:`urbanmim.kpi.context`)."""
    per = v.p
    provenance: dict[str, Any] = {"inputs": [i.to_json() for i in v.inputs], "notes": v.notes,
                                  "denominators": v.denominators}
    if v.details:
        provenance["details"] = v.details
    body: dict[str, Any] = {
        "id": v.entity_id, "type": context.SUBJECT,
        "name": _p(v.name or v.code + (f" ({v.component})" if v.component else "")),
        "category": _p(["quantitative"]),
        "kpiCode": _p(v.code), "kpiPeriod": _p(v.period), "kpiUnit": _p(v.unit),
        "calculationFrequency": _p(v.frequency), "calculationMethod": _p(v.method),
        "calculationPeriod": _p({"from": per.start.isoformat(), "to": per.last_day.isoformat()}),
        "dataQuality": _p(v.quality), "verified": _p(v.verified), "provenance": _p(provenance),
        "updatedAt": _p(v.computed_at or now_iso()),
        "aggregatedData": _p([{"entityType": i.entity_type, "attrs": i.attrs or ["id"]} for i in v.inputs]
                             or [{"entityType": "manual", "attrs": ["kpiValue"]}]),
    }
    if v.value is not None:
        body["kpiValue"] = _p(v.value)
    for term, val in (("kpiComponent", v.component), ("dimension", v.dimension), ("subDimension", v.sub_dimension),
                      ("kpiType", v.kpi_type), ("verifiedBy", v.verified_by), ("formulaId", v.formula_id),
                      ("formulaVersion", v.formula_version), ("calculationFormula", v.formula),
                      ("evidence", v.evidence), ("organization", v.organization),
                      ("dateNextCalculation", v.next_calculation), ("currentStanding", standing)):
        if val:
            body[term] = _p(val)
    if v.target is not None:
        body["kpiTarget"] = _p(v.target)
    if achievement is not None:
        body["targetAchievement"] = _p(round(achievement, 1))
    return body


def to_entity(v: KpiValue, standing: str | None = None, achievement: float | None = None) -> Any:
    return parse_entity(to_payload(v, standing, achievement), context.term_map())


def _get(ent: dict[str, Any], term: str, default: Any = None) -> Any:
    insts = ent["attrs"].get(context.iri(term))
    if not insts:
        return default
    return insts[0].get("value", default)


def from_entity(tenant: str, ent: dict[str, Any]) -> KpiValue:
    prov = _get(ent, "provenance", {}) or {}
    value = _get(ent, "kpiValue")
    return KpiValue(
        tenant=tenant, code=_get(ent, "kpiCode", ""), period=_get(ent, "kpiPeriod", ""),
        value=value if isinstance(value, int | float) and not isinstance(value, bool) else None,
        unit=_get(ent, "kpiUnit", ""), quality=_get(ent, "dataQuality", "not-traceable"),
        component=_get(ent, "kpiComponent", ""), name=_get(ent, "name", ""), dimension=_get(ent, "dimension", ""),
        sub_dimension=_get(ent, "subDimension", ""), kpi_type=_get(ent, "kpiType", ""),
        frequency=_get(ent, "calculationFrequency", "yearly"), method=_get(ent, "calculationMethod", "automatic"),
        verified=bool(_get(ent, "verified", False)), verified_by=_get(ent, "verifiedBy", ""),
        formula_id=_get(ent, "formulaId", ""), formula_version=_get(ent, "formulaVersion", ""),
        formula=_get(ent, "calculationFormula", ""),
        inputs=[Input.from_json(i) for i in prov.get("inputs") or []], notes=list(prov.get("notes") or []),
        denominators=dict(prov.get("denominators") or {}), details=dict(prov.get("details") or {}),
        evidence=_get(ent, "evidence", ""), target=_get(ent, "kpiTarget"),
        computed_at=_get(ent, "updatedAt", ""), next_calculation=_get(ent, "dateNextCalculation", ""),
        organization=_get(ent, "organization", ""))


# ---- through the service layer ---------------------------------------------------------------------------
async def save(app: Any, tenant: str, items: list[tuple[KpiValue, str | None, float | None]]) -> None:
    """Create or replace each value's entity (one batch: one transaction)."""
    if not items:
        return
    await context.ensure_hosted(app)
    muts = [Mutation(v.entity_id, EntityService.replace_fn(to_entity(v, s, a), must_exist=False))
            for v, s, a in items]
    outs = await app.state.entities.batch(tenant, muts)
    for out in outs:
        if out.error is not None:
            raise out.error


async def load(app: Any, tenant: str, *, code: str | None = None, period: str | None = None) -> list[KpiValue]:
    """Every KPI value of a tenant (optionally one KPI / one period), oldest period first."""
    q = None
    if code or period:
        from urbanmim.ngsild import qlang
        parts = []
        if code:
            parts.append(f'kpiCode=={_quote(code)}')
        if period:
            parts.append(f'kpiPeriod=={_quote(period)}')
        q = qlang.parse_q(";".join(parts), context.term_map().expand)
    res = await app.state.entities.query(EntityQuery(tenant=tenant, types=[frozenset({context.KPI_TYPE})], q=q,
                                                     limit=1_000_000))
    out = [from_entity(tenant, e) for e in res.entities]
    out.sort(key=lambda v: (v.code, v.component, v.p.start))
    return out


def _quote(s: str) -> str:
    return '"' + s.replace('\\', '\\\\').replace('"', '\\"') + '"'


async def get(app: Any, tenant: str, entity_id: str) -> KpiValue | None:
    from urbanmim.errors import ResourceNotFound
    try:
        ent = await app.state.entities.retrieve(tenant, entity_id)
    except ResourceNotFound:
        return None
    if context.KPI_TYPE not in ent.get("type", ()):
        return None
    return from_entity(tenant, ent)
