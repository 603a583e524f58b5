"""Internal entities → the representations a client asked for (clause 4.5).

normalized, concise and keyValues (simplified), optionally with system attributes,
a language pick (``lang``), attribute projection (``attrs``/``pick``/``omit``) and
GeoJSON Features. Terms are compacted with the caller's TermMap here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from urbanmim.ngsild.contexts import TermMap
from urbanmim.ngsild.entity import LOCATION, VALUE_KEY, Entity, Instance, is_subattr_key


@dataclass
class View:
    """How to render: decided once per request from its query parameters."""

    ctx: TermMap
    fmt: str = "normalized"            # normalized | concise | keyValues
    sys_attrs: bool = False
    lang: str | None = None
    attrs: set[str] | None = None       # expanded attribute IRIs to keep (attrs= / pick=)
    pick_members: set[str] = field(default_factory=set)   # "id"/"type"/"scope" kept by pick
    omit: set[str] | None = None        # expanded IRIs or member names to drop
    geometry_property: str = LOCATION
    entity_map: bool = False


def _pick_lang(lmap: dict[str, Any], lang: str) -> tuple[str | None, Any]:
    if lang == "*":
        return None, None
    wanted = [p.split(";")[0].strip() for p in lang.split(",") if p.strip()]
    for w in wanted:
        if w == "*":
            break
        if w in lmap:
            return w, lmap[w]
    if "@none" in lmap:
        return "@none", lmap["@none"]
    if lmap:
        k = next(iter(lmap))
        return k, lmap[k]
    return None, None


def _vocab(inst: Instance, ctx: TermMap) -> Any:
    v = inst["vocab"]
    return [ctx.compact(x) for x in v] if isinstance(v, list) else ctx.compact(v)


def render_instance(inst: Instance, view: View, *, sub: bool = False) -> Any:
    ctx, fmt = view.ctx, view.fmt
    typ = inst.get("type", "Property")
    if fmt == "keyValues":
        if typ == "LanguageProperty" and view.lang:
            return _pick_lang(inst["languageMap"], view.lang)[1] if view.lang != "*" else inst["languageMap"]
        if typ == "VocabProperty":
            return _vocab(inst, ctx)
        if typ == "LanguageProperty":
            return {"languageMap": inst["languageMap"]}
        if typ == "JsonProperty":
            return {"json": inst["json"]}
        return inst.get(VALUE_KEY.get(typ, "value"))
    out: dict[str, Any] = {}
    if fmt == "normalized":
        out["type"] = typ
    for key, val in inst.items():
        if key == "type":
            continue
        if is_subattr_key(key):
            out[ctx.compact(key)] = render_instance(val, view, sub=True)
        elif key in ("createdAt", "modifiedAt", "deletedAt"):
            if view.sys_attrs:
                out[key] = val
        elif key == "vocab":
            out["vocab"] = _vocab(inst, ctx)
        elif key == "objectType":
            out["objectType"] = [ctx.compact(x) for x in val] if isinstance(val, list) else ctx.compact(val)
        elif key == "objectList":
            out["objectList"] = [{"object": o} for o in val]
        elif key == "languageMap" and view.lang and view.lang != "*":
            tag, text = _pick_lang(val, view.lang)
            if fmt == "normalized":
                out["type"] = "Property"
            out["value"] = text
            if tag is not None:
                out["lang"] = tag
        else:
            out[key] = val
    if fmt == "concise":
        only_value = len(out) == 1
        if typ == "Property" and only_value and "value" in out and not isinstance(out["value"], dict):
            return out["value"]
        if typ == "Property" and "value" in out and isinstance(out["value"], dict) and "type" not in out["value"] \
                and only_value:
            return {"value": out["value"]}
        if typ == "GeoProperty" and only_value and "value" in out:
            return out["value"]
    return out


def render_attribute(instances: list[Instance], view: View) -> Any:
    if len(instances) == 1:
        return render_instance(instances[0], view)
    if view.fmt == "keyValues":
        # several datasetIds: keyValues keeps the default instance only (spec 4.5.4)
        default = next((i for i in instances if "datasetId" not in i), instances[0])
        return render_instance(default, view)
    return [render_instance(i, view) for i in instances]


def render_entity(ent: Entity, view: View) -> dict[str, Any]:
    ctx = view.ctx
    out: dict[str, Any] = {}
    pick_members = view.pick_members
    omit = view.omit or set()
    if (not pick_members or "id" in pick_members or view.attrs is None) and "id" not in omit:
        out["id"] = ent["id"]
    if (not pick_members or "type" in pick_members or view.attrs is None) and "type" not in omit:
        types = [ctx.compact(t) for t in ent["type"]]
        out["type"] = types[0] if len(types) == 1 else types
    if "scope" in ent and (not pick_members or "scope" in pick_members) and "scope" not in omit \
            and (view.attrs is None or "scope" in pick_members):
        sc = ent["scope"]
        out["scope"] = sc[0] if len(sc) == 1 and view.fmt != "keyValues" else sc
    if view.sys_attrs and view.fmt != "keyValues":
        out["createdAt"] = ent.get("createdAt")
        out["modifiedAt"] = ent.get("modifiedAt")
    wanted = view.attrs
    for iri, insts in ent["attrs"].items():
        if wanted is not None and iri not in wanted:
            continue
        if iri in omit:
            continue
        out[ctx.compact(iri)] = render_attribute(insts, view)
    return out


def render_feature(ent: Entity, view: View) -> dict[str, Any]:
    """A GeoJSON Feature (clause 4.5.16): geometry from the geometry property, the rest as properties."""
    body = render_entity(ent, view)
    feature: dict[str, Any] = {"id": body.pop("id", ent["id"]), "type": "Feature"}
    geo = ent["attrs"].get(view.geometry_property)
    geometry = None
    if geo:
        inst = next((i for i in geo if "datasetId" not in i), geo[0])
        if inst.get("type") == "GeoProperty":
            geometry = inst.get("value")
    feature["geometry"] = geometry
    feature["properties"] = body
    return feature


def feature_collection(features: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": features}
