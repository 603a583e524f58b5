"""Temporal queries: parameters → spans, instance paging, and the three representations.

The HTTP handlers (``ngsild/routes/temporal.py``) stay thin; everything a temporal GET or
POST-query decides lives here so both forms behave the same:

* :func:`parse_temporal` — timerel/timeAt/endTimeAt/timeproperty/lastN/aggr* (400s);
* :func:`collect` — per entity and attribute, the instances in the span, cut to a
  consistent time window when an attribute has more than the instance limit
  (clause 6.3.10: forwards without lastN, backwards with it; the caller answers 206
  with ``Content-Range: date-time <start>-<end>/<size>``);
* :func:`render_temporal` — normalized, temporalValues (simplified) or aggregatedValues.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from urbanmim.errors import BadRequestData, InvalidRequest
from urbanmim.ngsild.entity import VALUE_KEY
from urbanmim.ngsild.render import View, render_instance
from urbanmim.store.base import AggrInputs, Store, StoredInstance, TemporalEntity, TemporalSpan
from urbanmim.temporal import aggregate as agg
from urbanmim.temporal.timeutil import HOUR_MS, Duration, iso, parse_instant

DEFAULT_INSTANCE_LIMIT = 10     # instances per attribute per response before 206 paging (6.3.10)
TIMEPROPERTIES = ("observedAt", "createdAt", "modifiedAt", "deletedAt")
_PLURAL = {"Property": "values", "GeoProperty": "values", "Relationship": "objects",
           "LanguageProperty": "languageMaps", "VocabProperty": "vocabs", "JsonProperty": "jsons",
           "ListProperty": "valueLists", "ListRelationship": "objectLists"}
_WRAPPED = {"LanguageProperty", "VocabProperty", "JsonProperty"}


@dataclass
class TemporalParams:
    span: TemporalSpan
    timerel: str | None = None
    last_n: int | None = None
    mode: str = "normalized"            # normalized | temporalValues | aggregatedValues
    methods: list[str] = field(default_factory=list)
    duration: Duration | None = None
    aggr_text: str | None = None


def parse_temporal(p: Mapping[str, Any], *, require_timerel: bool = False) -> TemporalParams:
    """The temporal part of a request (clause 4.11, 6.3.x); every mistake is a 400."""
    timerel = p.get("timerel") or None
    tp = p.get("timeproperty") or "observedAt"
    if tp not in TIMEPROPERTIES:
        raise BadRequestData(f"timeproperty must be one of {', '.join(TIMEPROPERTIES)}, got {tp!r}")
    span = TemporalSpan(timeproperty=tp)
    if timerel is None:
        if p.get("timeAt") or p.get("endTimeAt"):
            raise BadRequestData("timeAt needs timerel")
        if require_timerel:
            raise BadRequestData("timerel and timeAt are required")
    else:
        if timerel not in ("before", "after", "between"):
            raise BadRequestData(f"timerel must be before, after or between, got {timerel!r}")
        at = parse_instant(p.get("timeAt"), "timeAt")
        if timerel == "before":
            span.end = at
        elif timerel == "after":
            span.start = at
        else:
            end = parse_instant(p.get("endTimeAt"), "endTimeAt (required with between)")
            if end <= at:
                raise BadRequestData("endTimeAt must be later than timeAt")
            span.start, span.end = at, end
    if p.get("endTimeAt") and timerel != "between":
        raise BadRequestData("endTimeAt is only allowed with timerel=between")
    out = TemporalParams(span=span, timerel=timerel)
    if p.get("lastN") not in (None, ""):
        text = str(p["lastN"]).strip()
        if not text.isdigit() or int(text) < 1:
            raise BadRequestData(f"lastN must be a positive integer, got {p['lastN']!r}")
        out.last_n = int(text)
    opts = {o.strip() for o in str(p.get("options") or "").split(",") if o.strip()}
    fmt = p.get("format")
    wants = {o for o in opts if o in ("temporalValues", "aggregatedValues")}
    if "simplified" in opts or "keyValues" in opts:
        wants.add("temporalValues")
    if fmt in ("temporalValues", "simplified", "aggregatedValues"):
        wants = {"temporalValues" if fmt == "simplified" else fmt}   # format wins over options (6.3.12)
    elif fmt == "normalized":
        wants = set()
    elif fmt not in (None, ""):
        raise InvalidRequest(f"unknown format {fmt!r}")
    if len(wants) > 1:
        raise BadRequestData("temporalValues and aggregatedValues cannot be combined")
    if wants:
        out.mode = wants.pop()
    if out.mode == "aggregatedValues":
        out.methods = agg.parse_methods(p.get("aggrMethods"))
        out.aggr_text = p.get("aggrPeriodDuration") or "P0D"
        out.duration = Duration(p["aggrPeriodDuration"]) if p.get("aggrPeriodDuration") else None
    elif p.get("aggrPeriodDuration"):
        Duration(p["aggrPeriodDuration"])   # still validated
    if p.get("aggrMethods") and out.mode != "aggregatedValues":
        agg.parse_methods(p.get("aggrMethods"))
    return out


@dataclass
class Collected:
    """The instances of one response, per entity and attribute, plus the paging outcome."""

    per_entity: dict[str, dict[str, list[StoredInstance]]]
    truncated: bool = False
    range_start: int | None = None
    range_end: int | None = None
    size: str = "*"


async def collect(store: Store, tenant: str, entities: list[TemporalEntity], attrs: set[str] | None,
                  tp: TemporalParams, limit: int) -> Collected:
    """Instances of the wanted attributes, cut to one time window shared by every attribute."""
    backwards = tp.last_n is not None
    want = min(tp.last_n, limit) if backwards and tp.last_n is not None else limit
    per: dict[str, dict[str, list[StoredInstance]]] = {}
    cuts: list[int] = []
    for ent in entities:
        got: dict[str, list[StoredInstance]] = {}
        for attr in sorted(a for a in ent.attrs if attrs is None or a in attrs):
            rows = await store.temporal_instances(tenant, ent.entity_id, attr, tp.span, newest_first=backwards,
                                                  limit=want + 1)
            more_than_limit = len(rows) > limit or (backwards and tp.last_n is not None and tp.last_n > limit
                                                   and len(rows) > want)
            rows = rows[:want]
            if more_than_limit and rows:
                cuts.append(rows[-1].ts)
            if rows:   # an attribute without instances in the span is left out; one emptied by the cut stays
                got[attr] = rows
        per[ent.entity_id] = got
    out = Collected(per)
    if cuts:
        cut = max(cuts) if backwards else min(cuts)
        for got in per.values():
            for attr, rows in got.items():
                got[attr] = [r for r in rows if (r.ts >= cut if backwards else r.ts <= cut)]
        out.truncated = True
    for got in per.values():
        for rows in got.values():
            rows.sort(key=lambda r: (r.ts, r.instance_id))
    if out.truncated:
        stamps = [r.ts for got in per.values() for rows in got.values() for r in rows]
        lo, hi = (min(stamps), max(stamps)) if stamps else (0, 0)
        if backwards:
            out.range_start = tp.span.end if tp.span.end is not None else hi
            out.range_end = lo
            out.size = str(tp.last_n)
        else:
            out.range_start = tp.span.start if tp.span.start is not None else lo
            out.range_end = hi
    return out


def content_range(c: Collected) -> str:
    return f"date-time {iso(c.range_start or 0)}-{iso(c.range_end or 0)}/{c.size}"


def _stamp(inst: StoredInstance, tp: TemporalParams) -> str:
    v = inst.instance.get(tp.span.timeproperty)
    return v if isinstance(v, str) else iso(inst.ts)


def _render_one(inst: StoredInstance, view: View) -> dict[str, Any]:
    body = render_instance(inst.instance, view)
    if not isinstance(body, dict):
        body = {"value": body}
    body["instanceId"] = inst.instance_id
    if "deletedAt" in inst.instance:
        body["deletedAt"] = inst.instance["deletedAt"]
    return body


def _simple_value(inst: StoredInstance, view: View) -> Any:
    typ = inst.instance.get("type", "Property")
    vkey = VALUE_KEY.get(typ, "value")
    if typ == "VocabProperty":
        v = inst.instance.get("vocab")
        return {"vocab": [view.ctx.compact(x) for x in v] if isinstance(v, list) else view.ctx.compact(v)}
    if typ in _WRAPPED:
        return {vkey: inst.instance.get(vkey)}
    return inst.instance.get(vkey)


def _by_dataset(rows: list[StoredInstance]) -> dict[str | None, list[StoredInstance]]:
    out: dict[str | None, list[StoredInstance]] = {}
    for r in rows:
        out.setdefault(r.dataset_id, []).append(r)
    return out


def _attr_type(rows: list[StoredInstance]) -> str:
    live = [r for r in rows if "deletedAt" not in r.instance]
    return str((live or rows)[-1].instance.get("type", "Property")) if rows else "Property"


def render_temporal_values(rows: list[StoredInstance], view: View, tp: TemporalParams) -> Any:
    groups = _by_dataset(rows)
    out = []
    for ds, items in groups.items():
        typ = _attr_type(items)
        body: dict[str, Any] = {"type": typ, _PLURAL.get(typ, "values"): [[_simple_value(i, view), _stamp(i, tp)]
                                                                          for i in items]}
        if ds is not None:
            body["datasetId"] = ds
        out.append(body)
    if not out:
        return {"type": "Property", "values": []}
    return out[0] if len(out) == 1 else out


async def render_aggregated(store: Store, tenant: str, entity_id: str, attr: str, view: View,
                            tp: TemporalParams) -> Any:
    """One attribute's aggregatedValues, from hour buckets where they can answer (see aggregate.py)."""
    span = tp.span
    first = await store.temporal_instances(tenant, entity_id, attr, TemporalSpan(
        span.timeproperty, span.start, span.end, dataset_ids=span.dataset_ids), newest_first=False, limit=1)
    if not first:
        return {"type": "Property", **{m: [] for m in tp.methods}}
    last = await store.temporal_instances(tenant, entity_id, attr, span, newest_first=True, limit=1)
    origin = span.start if span.start is not None else first[0].ts
    end = span.end if span.end is not None else last[0].ts + 1
    dur = tp.duration or Duration(f"PT{max(1, (end - origin + 999) // 1000)}S")
    buckets: list[Any] = []
    raw_from = origin
    if agg.can_use_buckets(tp.methods, span.timeproperty, origin, dur):
        full_end = end - end % HOUR_MS
        buckets = await store.temporal_buckets(tenant, entity_id, attr, origin, full_end)
        if span.dataset_ids is not None:
            buckets = [b for b in buckets if (b.dataset_id or "@none") in span.dataset_ids]
        if all(b.count == b.ncount for b in buckets):
            raw_from = full_end
        else:
            buckets = []
    raw = await store.temporal_instances(tenant, entity_id, attr, TemporalSpan(
        span.timeproperty, raw_from, end, dataset_ids=span.dataset_ids), newest_first=False, limit=1 << 62)
    return _aggregated_body(first[0], raw, buckets, tp, origin, dur)


def _aggregated_body(first: StoredInstance, raw: list[StoredInstance], buckets: list[Any], tp: TemporalParams,
                     origin: int, dur: Duration) -> Any:
    raw = [r for r in raw if "deletedAt" not in r.instance]
    typ = str(first.instance.get("type", "Property"))
    out = []
    for ds, periods in agg.aggregate(raw, buckets, tp.methods, origin, dur).items():
        body: dict[str, Any] = {"type": typ, **agg.render_periods(periods, tp.methods, dur)}
        if ds is not None:
            body["datasetId"] = ds
        out.append(body)
    if not out:
        return {"type": typ, **{m: [] for m in tp.methods}}
    return out[0] if len(out) == 1 else out


def aggregated_keys(ents: list[TemporalEntity], view: View) -> list[tuple[str, str]]:
    """The (entity id, attribute) pairs an aggregatedValues answer renders, in answer order."""
    return [(e.entity_id, a) for e in ents for a in sorted(e.attrs)
            if (view.attrs is None or a in view.attrs) and view.keeps(a)]


async def aggregate_page(store: Store, tenant: str, ents: list[TemporalEntity], view: View,
                         tp: TemporalParams) -> dict[tuple[str, str], Any]:
    """aggregatedValues of every attribute of a page of entities, same output as
    :func:`render_aggregated` per attribute but in a constant number of store statements
    when the span is closed (timerel=between): one :meth:`Store.temporal_aggr_inputs` call
    reads the first instance, hour buckets and raw tail of all of them. Open spans, and an
    attribute whose buckets hold non-numeric instances, take the per-attribute path."""
    keys = aggregated_keys(ents, view)
    span = tp.span
    if span.start is None or span.end is None or not keys:
        return {k: await render_aggregated(store, tenant, k[0], k[1], view, tp) for k in keys}
    origin, end = span.start, span.end
    dur = tp.duration or Duration(f"PT{max(1, (end - origin + 999) // 1000)}S")
    bucket_end = end - end % HOUR_MS if agg.can_use_buckets(tp.methods, span.timeproperty, origin, dur) else None
    grid = agg.period_grid(origin, bucket_end, dur) if bucket_end is not None else None
    inputs: dict[tuple[str, str], AggrInputs] = await store.temporal_aggr_inputs(
        tenant, keys, TemporalSpan(span.timeproperty, origin, end, dataset_ids=span.dataset_ids), bucket_end, grid)
    out: dict[tuple[str, str], Any] = {}
    for key in keys:
        got = inputs.get(key)
        if got is None:
            out[key] = {"type": "Property", **{m: [] for m in tp.methods}}
            continue
        buckets = got.buckets
        if bucket_end is not None:
            if span.dataset_ids is not None:
                buckets = [b for b in buckets if (b.dataset_id or "@none") in span.dataset_ids]
            if not all(b.count == b.ncount for b in buckets):   # raw rows needed from the start
                out[key] = await render_aggregated(store, tenant, key[0], key[1], view, tp)
                continue
        out[key] = _aggregated_body(got.first, got.raw, buckets, tp, origin, dur)
    return out


async def render_temporal(store: Store, tenant: str, ent: TemporalEntity, rows: dict[str, list[StoredInstance]],
                          view: View, tp: TemporalParams,
                          aggregated: Mapping[tuple[str, str], Any] | None = None) -> dict[str, Any]:
    """One temporal entity in the requested representation (attributes compacted with the view);
    ``aggregated`` holds the page's aggregatedValues read at once by :func:`aggregate_page`."""
    ctx = view.ctx
    body: dict[str, Any] = {}
    if view.pick_members in (set(),) or "id" in view.pick_members:
        if not (view.omit and "id" in view.omit):
            body["id"] = ent.entity_id
    if view.pick_members in (set(),) or "type" in view.pick_members:
        if not (view.omit and "type" in view.omit):
            types = [ctx.compact(t) for t in ent.types]
            body["type"] = types[0] if len(types) == 1 else types
    if ent.scope and not view.pick_members and not (view.omit and "scope" in view.omit) and view.attrs is None:
        body["scope"] = ent.scope[0] if len(ent.scope) == 1 else ent.scope
    if view.sys_attrs:
        for k, v in (("createdAt", ent.created_at), ("modifiedAt", ent.modified_at), ("deletedAt", ent.deleted_at)):
            if v:
                body[k] = v
    for attr, items in rows.items():
        if not view.keeps(attr):
            continue
        name = ctx.compact(attr)
        if tp.mode == "aggregatedValues":
            key = (ent.entity_id, attr)
            body[name] = aggregated[key] if aggregated is not None and key in aggregated \
                else await render_aggregated(store, tenant, ent.entity_id, attr, view, tp)
        elif tp.mode == "temporalValues":
            body[name] = render_temporal_values(items, view, tp)
        else:
            body[name] = [_render_one(i, view) for i in items]
    return body
