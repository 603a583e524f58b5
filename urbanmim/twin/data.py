"""What the twin page reads: GeoJSON per layer, a layer as it was at an instant, one entity's history.

Every read goes through the platform's service layer (``app.state.entities``) or the store
interface's temporal reads — never a table — so the access decisions being added there apply to
the twin as to any client. Features are small on purpose: key-values with short (compact)
names, only what the map and the panel show; the full entity is one NGSI-LD request away.

A layer's FeatureCollection is cached per tenant, and the cache entry is dropped by the change
listener (``live.py``) when an entity of the layer's types changes, so the 1,500 buildings of a
capital are serialised once, not at every page load, while sensor layers stay exact. The cache
serves only callers the access decision does not filter (security off, or the platform itself):
with security on, every caller's layer is read through the service layer, as they may see it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson

from urbanmim.ingest.demo import sdm
from urbanmim.ngsild.entity import LOCATION, VALUE_KEY, Entity
from urbanmim.security.principal import current_principal
from urbanmim.store.base import EntityQuery, TemporalSpan
from urbanmim.twin.layers import LAYERS, Layer

PAGE = 1000                    # entities per store read
MAX_FEATURES = 50_000          # a layer never grows past this (a safety bound, not a product limit)
NAME_IRIS = ("https://smartdatamodels.org/name", "https://uri.etsi.org/ngsi-ld/name",
             "https://uri.etsi.org/ngsi-ld/default-context/name")


def short_type(iri: str) -> str:
    return iri.rstrip("/").rsplit("/", 1)[-1].rsplit("#", 1)[-1]


def _value(inst: dict[str, Any]) -> Any:
    key = VALUE_KEY.get(inst.get("type", "Property"), "value")
    return inst.get(key)


def entity_name(ent: Entity) -> str | None:
    for iri in NAME_IRIS:
        insts = ent["attrs"].get(iri)
        if insts:
            v = _value(insts[0])
            if isinstance(v, str):
                return v
    return None


def street_address(ent: Entity) -> str | None:
    """A sensor has no name in Smart Data Models, but usually an address: the twin labels it by street."""
    for iri in ("https://smartdatamodels.org/address", "https://uri.etsi.org/ngsi-ld/default-context/address"):
        insts = ent["attrs"].get(iri)
        if insts:
            v = _value(insts[0])
            if isinstance(v, dict) and isinstance(v.get("streetAddress"), str):
                return v["streetAddress"]
    return None


def properties(ent: Entity, *, full: bool = False) -> dict[str, Any]:
    """Key-values with compact names (the SDM term map of the entity's type); ``full`` adds observedAt/units."""
    etype = short_type(ent["type"][0])
    tm = sdm.for_type(etype)
    props: dict[str, Any] = {"id": ent["id"], "type": etype}
    observed: dict[str, str] = {}
    units: dict[str, str] = {}
    for iri, insts in ent["attrs"].items():
        if iri == LOCATION or not insts:
            continue
        inst = insts[0]
        name = tm.compact(iri)
        if ":" in name:        # not a term of the type's context: keep the IRI's last segment
            name = short_type(iri)
        value = _value(inst)
        if isinstance(value, dict) and inst.get("type") == "LanguageProperty":
            value = next(iter(value.values()), None)
        if not full and isinstance(value, dict | list):
            continue           # addresses, lists: only in the panel, not on every feature
        props[name] = value
        if inst.get("observedAt"):
            observed[name] = inst["observedAt"]
        if inst.get("unitCode"):
            units[name] = inst["unitCode"]
    real_name = entity_name(ent)
    label = real_name or street_address(ent)
    if full:              # the panel: the real name attribute, and a label for its heading
        if real_name is not None:
            props["name"] = real_name
        props["label"] = label
    elif label is not None:
        props["name"] = label
    if full:
        props["observedAt"] = observed
        props["unitCode"] = units
        props["modifiedAt"] = ent.get("modifiedAt")
    elif observed:
        props["observedAt"] = max(observed.values())
    return props


def feature(ent: Entity, layer: Layer) -> dict[str, Any] | None:
    loc = ent["attrs"].get(LOCATION)
    if not loc:
        return None
    geom = loc[0].get("value")
    if not isinstance(geom, dict):
        return None
    props = properties(ent)
    props["layer"] = layer.id
    return {"type": "Feature", "id": ent["id"], "geometry": geom, "properties": props}


async def layer_entities(app: Any, tenant: str, layer: Layer) -> list[Entity]:
    """Every entity of the layer's types in ``tenant``, through the service layer, page by page."""
    service = app.state.entities
    out: list[Entity] = []
    types = [frozenset({iri}) for iri in layer.type_iris()]
    offset = 0
    while len(out) < MAX_FEATURES:
        got = (await service.query(EntityQuery(tenant=tenant, types=types, limit=PAGE, offset=offset))).entities
        out.extend(got)
        if len(got) < PAGE:
            break
        offset += PAGE
    return out


class LayerCache:
    """Serialised FeatureCollections per (tenant, layer), dropped when an entity of the layer changes."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], bytes] = {}

    def invalidate(self, tenant: str, layer_id: str | None = None) -> None:
        if layer_id is None:
            for key in [k for k in self.entries if k[0] == tenant]:
                del self.entries[key]
        else:
            self.entries.pop((tenant, layer_id), None)

    async def get(self, app: Any, tenant: str, layer: Layer) -> bytes:
        shared = not filtering(app)
        key = (tenant, layer.id)
        hit = self.entries.get(key) if shared else None
        if hit is not None:
            return hit
        ents = await layer_entities(app, tenant, layer)
        feats = [f for f in (feature(e, layer) for e in ents) if f is not None]
        body = orjson.dumps({"type": "FeatureCollection", "features": feats})
        if shared:
            self.entries[key] = body
        return body


def filtering(app: Any) -> bool:
    """Does the access decision filter what the current caller sees (then nothing may be shared)?"""
    access = getattr(app.state.entities, "access", None)
    return bool(access is not None and access.enabled and not current_principal().system)


# ---- time: a layer at an instant, one entity's history ------------------------------------------

def to_ms(text: str) -> int:
    """``2024-05-01T10:00:00Z`` (or epoch milliseconds) → epoch ms."""
    if text.isdigit():
        return int(text)
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace("000Z", "Z")


async def values_at(app: Any, tenant: str, layer: Layer, at_ms: int) -> dict[str, dict[str, Any]]:
    """For a live layer: each entity's value of the layer's attribute as observed at or before ``at_ms``.

    Looks back at most a day (a sensor silent for longer shows "no data"). The entity list comes
    from the service layer, as the caller may see it (an attribute hidden from the caller has no
    history either); the values from the temporal history of the store interface.
    """
    store = app.state.store
    attr = layer.attr_iri()
    if attr is None:
        return {}
    span = TemporalSpan("observedAt", at_ms - 24 * 3600 * 1000, at_ms, end_inclusive=True)
    out: dict[str, dict[str, Any]] = {}
    for ent in await layer_entities(app, tenant, layer):
        if attr not in ent["attrs"]:
            out[ent["id"]] = {"value": None, "observedAt": None}
            continue
        rows = await store.temporal_instances(tenant, ent["id"], attr, span, newest_first=True, limit=1)
        if rows:
            out[ent["id"]] = {"value": _value(rows[0].instance), "observedAt": iso(rows[0].ts)}
        else:
            out[ent["id"]] = {"value": None, "observedAt": None}
    return out


async def history(app: Any, tenant: str, entity_id: str, attr_name: str, hours: float,
                  end_ms: int | None = None) -> dict[str, Any]:
    """The recent history of one attribute: raw instances for a short span, hourly means beyond 6 h."""
    ent = await app.state.entities.retrieve(tenant, entity_id)     # ResourceNotFound when unknown/not visible
    tm = sdm.for_type(short_type(ent["type"][0]))
    attr = tm.expand(attr_name)
    end = end_ms or int(time.time() * 1000)
    start = end - int(hours * 3600 * 1000)
    store = app.state.store
    points: list[tuple[int, float]] = []
    mode = "instances"
    known = attr in ent["attrs"]          # unknown, or hidden from this caller: no history to show
    if known and hours > 6:
        buckets = await store.temporal_buckets(tenant, entity_id, attr, start - start % 3_600_000, end + 1)
        numeric = [b for b in buckets if b.dataset_id is None and b.ncount]
        if len(numeric) >= 3:
            points = [(b.hour + 1_800_000, b.sum / b.ncount) for b in numeric]
            mode = "hourly mean"
    if known and not points:
        rows = await store.temporal_instances(tenant, entity_id, attr, TemporalSpan("observedAt", start, end,
                                              end_inclusive=True), newest_first=True, limit=500)
        points = [(r.ts, float(r.num)) for r in reversed(rows) if r.num is not None and r.dataset_id is None]
    unit = None
    for inst in ent["attrs"].get(attr, []):
        unit = inst.get("unitCode") or unit
    return {"id": entity_id, "attr": attr_name, "unitCode": unit, "mode": mode,
            "points": [{"t": iso(t), "v": round(v, 3)} for t, v in points]}


def bbox(geojson: bytes) -> list[float] | None:
    """[west, south, east, north] of a serialised FeatureCollection (the page opens on it: no zoom-1 tiles)."""
    xs: list[float] = []
    ys: list[float] = []

    def walk(c: Any) -> None:
        if c and isinstance(c[0], int | float):
            xs.append(float(c[0]))
            ys.append(float(c[1]))
        else:
            for sub in c:
                walk(sub)

    for f in orjson.loads(geojson)["features"]:
        walk((f.get("geometry") or {}).get("coordinates") or [])
    return [min(xs), min(ys), max(xs), max(ys)] if xs else None


def core_bbox(geojson: bytes, share: float = 0.8) -> list[float] | None:
    """The extent of the central ``share`` of the features (by their first vertex, per axis): where
    most buildings stand, so the 3D city fills the first view instead of specks in a wide suburb."""
    xs: list[float] = []
    ys: list[float] = []
    for f in orjson.loads(geojson)["features"]:
        c: Any = (f.get("geometry") or {}).get("coordinates")
        while c and not isinstance(c[0], int | float):
            c = c[0]
        if c:
            xs.append(float(c[0]))
            ys.append(float(c[1]))
    if len(xs) < 10:
        return None
    xs.sort()
    ys.sort()
    lo, hi = int(len(xs) * (1 - share) / 2), int(len(xs) * (1 + share) / 2) - 1
    return [xs[lo], ys[lo], xs[hi], ys[hi]]


def layers_json() -> list[dict[str, Any]]:
    return [layer.to_json() for layer in LAYERS]
