"""KPI values with their provenance, stored as Smart Data Models ``KeyPerformanceIndicator`` entities.

Why entities and not a side table: a KPI value written through ``app.state.entities`` is
queryable with NGSI-LD, subscribable, historised by the temporal store and exported like
any other city data — and it passes through the same service layer (and its future access
decisions) as everything else. One entity per city (tenant), KPI (+ component, e.g. the
pollutant) and period: ``urn:ngsi-ld:KeyPerformanceIndicator:<tenant>:<code slug>[.<component>]:<period>``.
Recomputing a period replaces its value; the temporal history keeps the earlier ones.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, cast

from urbanmim.errors import BadRequestData
from urbanmim.kpi import context, quality
from urbanmim.kpi.catalogue import KpiDefinition, slug
from urbanmim.kpi.periods import Period, parse_period
from urbanmim.ngsild.payload import parse_entity
from urbanmim.service.entities import EntityService, now_iso
from urbanmim.store.base import EntityQuery, Mutation

ID_PREFIX = "urn:ngsi-ld:KeyPerformanceIndicator:"
MAX_LISTED_IDS = 50      # provenance lists entity ids up to this many, else a count and the query
log = logging.getLogger("urbanmim.kpi")


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
    def from_json(cls, d: Any) -> Input:
        """An input as sent (import): each member checked, so a bad one is a 400, never a 500 later."""
        if not isinstance(d, dict):
            raise BadRequestData("an input is an object {entityType, attrs, count, query, ids}")
        count = d.get("count") or 0
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise BadRequestData("input count must be a non-negative integer")
        ids = d.get("ids")
        return cls(_string(d.get("entityType", ""), "input entityType"), _strings(d.get("attrs"), "input attrs"),
                   count, _string(d.get("query", ""), "input query"),
                   None if ids is None else _strings(ids, "input ids"))

    @classmethod
    def lenient(cls, d: Any) -> Input | None:
        """An input as stored (anyone may write the entity through NGSI-LD): junk is dropped, not raised."""
        try:
            return cls.from_json(d)
        except BadRequestData:
            return None


MAX_MAGNITUDE = 1e15
"""No U4SSC indicator comes near this; a bigger value is a typo, and squaring it for the temporal
store's aggregates overflows a float."""
_TENANT_RE = re.compile(r"[A-Za-z0-9_\-.:/]{1,200}")


def number(x: Any, what: str) -> float | None:
    """A KPI number (value, target, denominator): finite, at most MAX_MAGNITUDE; None stays None."""
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, int | float):
        raise BadRequestData(f"{what} must be a number")
    try:
        f = float(x)
    except OverflowError:
        f = math.inf
    if not math.isfinite(f) or abs(f) > MAX_MAGNITUDE:
        raise BadRequestData(f"{what} must be a finite number of magnitude at most {MAX_MAGNITUDE:g}")
    return f


def _string(x: Any, what: str) -> str:
    if not isinstance(x, str):
        raise BadRequestData(f"{what} must be a string")
    return x


def _strings(x: Any, what: str) -> list[str]:
    if x is None:
        return []
    if not isinstance(x, list) or not all(isinstance(i, str) for i in x):
        raise BadRequestData(f"{what} must be a list of strings")
    return list(x)


def numbers(x: Any, what: str) -> dict[str, float]:
    """``denominators``: an object of names to numbers."""
    if x is None:
        return {}
    if not isinstance(x, dict):
        raise BadRequestData(f"{what} must be an object of names to numbers")
    return {k: cast(float, number(v, f"{what}.{k}")) for k, v in x.items() if v is not None}


def input_of(entity_type: str, attrs: list[str], ids: list[str], query: str) -> Input:
    return Input(entity_type, attrs, len(ids), query, sorted(ids) if len(ids) <= MAX_LISTED_IDS else None)


# JSON member names (camelCase, as NGSI-LD and the SDM model write them) of the snake_case fields
_CAMEL = {"quality": "dataQuality", "sub_dimension": "subDimension", "kpi_type": "kpiType",
          "verified_by": "verifiedBy", "formula_id": "formulaId", "formula_version": "formulaVersion",
          "computed_at": "computedAt", "next_calculation": "nextCalculation"}
_SNAKE = {v: k for k, v in _CAMEL.items()}
_STR_FIELDS = ("tenant", "code", "period", "unit", "quality", "component", "name", "dimension", "sub_dimension",
               "kpi_type", "frequency", "method", "verified_by", "formula_id", "formula_version", "formula",
               "evidence", "computed_at", "next_calculation", "organization")


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
        """A value as imported: every member checked against its type (a 400 now, not a 500 on a later read)."""
        known = {f for f in cls.__dataclass_fields__}
        kw = {_SNAKE.get(k, k): v for k, v in d.items()}
        kw = {k: v for k, v in kw.items() if k in known}
        for k in ("tenant", "code", "period", "unit", "quality"):
            if k not in kw:
                raise BadRequestData(f"not a KPI value: {_CAMEL.get(k, k)} is missing")
        for k in _STR_FIELDS:
            if k in kw:
                kw[k] = _string(kw[k], _CAMEL.get(k, k))
        if kw["tenant"] and not _TENANT_RE.fullmatch(kw["tenant"]):
            raise BadRequestData(f"invalid tenant name {kw['tenant']!r}")
        if not kw["code"].strip():
            raise BadRequestData("code (the KPI code) must not be empty")
        kw["value"] = number(kw.get("value"), "value")
        kw["target"] = number(kw.get("target"), "target")
        if not isinstance(kw.get("verified", False), bool):
            raise BadRequestData("verified must be true or false")
        kw["notes"] = _strings(kw.get("notes"), "notes")
        kw["denominators"] = numbers(kw.get("denominators"), "denominators")
        details = kw.get("details") or {}
        if not isinstance(details, dict):
            raise BadRequestData("details must be an object")
        kw["details"] = details
        inputs = d.get("inputs") or []
        if not isinstance(inputs, list):
            raise BadRequestData("inputs must be a list")
        kw["inputs"] = [Input.from_json(i) for i in inputs]
        out = cls(**kw)
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


def _num_or_none(x: Any) -> float | None:
    try:
        return number(x, "")
    except BadRequestData:
        return None


def from_entity(tenant: str, ent: dict[str, Any]) -> KpiValue:
    """Lenient: a KeyPerformanceIndicator entity may have been written by hand through NGSI-LD, so a
    member of the wrong type reads as its default instead of failing every later KPI read."""
    def s(term: str, default: str = "") -> str:
        x = _get(ent, term, default)
        return x if isinstance(x, str) else default

    prov = _get(ent, "provenance", {})
    prov = prov if isinstance(prov, dict) else {}
    inputs, notes = prov.get("inputs"), prov.get("notes")
    dens, details = prov.get("denominators"), prov.get("details")
    return KpiValue(
        tenant=tenant, code=s("kpiCode"), period=s("kpiPeriod"), value=_num_or_none(_get(ent, "kpiValue")),
        unit=s("kpiUnit"), quality=s("dataQuality", "not-traceable"),
        component=s("kpiComponent"), name=s("name"), dimension=s("dimension"),
        sub_dimension=s("subDimension"), kpi_type=s("kpiType"),
        frequency=s("calculationFrequency", "yearly"), method=s("calculationMethod", "automatic"),
        verified=_get(ent, "verified", False) is True, verified_by=s("verifiedBy"),
        formula_id=s("formulaId"), formula_version=s("formulaVersion"), formula=s("calculationFormula"),
        inputs=[i for i in map(Input.lenient, inputs if isinstance(inputs, list) else []) if i is not None],
        notes=[n for n in notes if isinstance(n, str)] if isinstance(notes, list) else [],
        denominators={k: f for k, v in dens.items() if (f := _num_or_none(v)) is not None}
        if isinstance(dens, dict) else {},
        details=details if isinstance(details, dict) else {},
        evidence=s("evidence"), target=_num_or_none(_get(ent, "kpiTarget")),
        computed_at=s("updatedAt"), next_calculation=s("dateNextCalculation"), organization=s("organization"))


def _readable(v: KpiValue) -> bool:
    try:
        parse_period(v.period)
    except BadRequestData:
        log.warning("KPI value entity %s has no valid kpiPeriod (%r); skipped", v.entity_id, v.period)
        return False
    return True


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
    out = [v for v in (from_entity(tenant, e) for e in res.entities) if _readable(v)]
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
