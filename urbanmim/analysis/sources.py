"""Where the models' data comes from: the platform's service layer, and nothing else.

Why one module: the models are pure, and every read they cause happens here, through
``app.state.entities.query`` (the EntityService, where the access-control decision is made),
``app.state.entities.temporal_visible`` (the same decision for temporal entities) and the
temporal service (``urbanmim/temporal/service.py``, the functions the ``/temporal/entities``
routes use). When the service layer learns who is asking, this is the
one place that passes it on.

Types and attributes are asked for by short name ("District", "population"); a type is
looked up under the IRIs it has in the vocabularies the platform knows (the default
vocabulary of the core @context, and the Smart Data Models subject of the type), or exactly
when given as an IRI. Attributes are matched by the last segment of their IRI
(``data.local_name``).
"""

from __future__ import annotations

from typing import Any

from urbanmim.analysis.data import Inputs, Needs, Record, Series, SeriesRequest, local_name, record_of
from urbanmim.ingest.demo.sdm import TYPE_SUBJECT, term_iri
from urbanmim.ngsild.entity import DEFAULT_VOCAB
from urbanmim.store.base import EntityQuery, TemporalSpan
from urbanmim.temporal import service as tsvc

PAGE = 1000
MAX_INSTANCES = 1_000_000
DAY_MS = 86_400_000


def type_iris(name: str) -> frozenset[str]:
    """The IRIs a short type name may have been expanded to (a name with ``:`` is already an IRI)."""
    if ":" in name:
        return frozenset({name})
    out = {DEFAULT_VOCAB + name}
    if name in TYPE_SUBJECT:
        out.add(term_iri(TYPE_SUBJECT[name], name))
    return frozenset(out)


def _matches(iri: str, name: str) -> bool:
    return iri == name if ":" in name else local_name(iri) == name


async def records(app: Any, tenant: str, type_name: str) -> list[Record]:
    """Every entity of one type, as records (paged through the EntityService)."""
    query_types = [frozenset({t}) for t in sorted(type_iris(type_name))]
    out: list[Record] = []
    offset = 0
    while True:
        got = (await app.state.entities.query(EntityQuery(tenant=tenant, types=query_types, limit=PAGE,
                                                          offset=offset))).entities
        for ent in got:
            rec = record_of(ent)
            rec.type = type_name          # the name the model asked for, whichever IRI matched
            out.append(rec)
        if len(got) < PAGE:
            return out
        offset += PAGE


async def series(app: Any, tenant: str, req: SeriesRequest, candidates: list[Record]) -> Series | None:
    """The history of ``req.attribute`` over ``req.days`` days before its latest value (default instance)."""
    store = app.state.store
    ids = [req.entity_id] if req.entity_id else [r.id for r in candidates]
    if not ids:
        return None
    # the temporal entities as the caller may see them (MIM6: hidden ones and hidden attributes dropped)
    visible = await app.state.entities.temporal_visible(tenant, await store.temporal_entities(tenant, ids))
    temporal = {t.entity_id: t for t in visible}
    for eid in ids:
        tent = temporal.get(eid)
        if tent is None:
            continue
        attr = next((a for a in sorted(tent.attrs) if _matches(a, req.attribute)), None)
        if attr is None:
            continue
        span = TemporalSpan(dataset_ids=frozenset({"@none"}))
        latest = await store.temporal_instances(tenant, eid, attr, span, newest_first=True, limit=1)
        if not latest:
            continue
        end = latest[0].ts + 1
        tp = tsvc.TemporalParams(span=TemporalSpan(start=end - req.days * DAY_MS, end=end,
                                                   dataset_ids=frozenset({"@none"})), timerel="between")
        got = await tsvc.collect(store, tenant, [tent], {attr}, tp, MAX_INSTANCES)
        rows = got.per_entity.get(eid, {}).get(attr, [])
        points = [(r.ts, float(r.num)) for r in rows if r.num is not None and "deletedAt" not in r.instance]
        if not points:
            continue
        unit = next((r.instance.get("unitCode") for r in reversed(rows) if r.instance.get("unitCode")), None)
        return Series(entity_id=eid, attribute=req.attribute, points=points, unit=unit)
    return None


async def read(app: Any, tenant: str, needs: Needs) -> Inputs:
    """What a model said it needs, read through the service layer."""
    inputs = Inputs()
    for t in dict.fromkeys(needs.types):
        inputs.records[t] = await records(app, tenant, t)
    if needs.series is not None:
        inputs.series = await series(app, tenant, needs.series, inputs.of(needs.series.type))
    return inputs
