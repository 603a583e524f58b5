"""Internal entities → the representations a client asked for (clause 4.5).

normalized, concise and keyValues (simplified), optionally with system attributes,
a language pick (``lang``, clause 4.15), attribute projection (``attrs`` / ``pick`` /
``omit``, clause 4.21), a ``datasetId`` instance filter, inline linked entities
(``join=inline``, clause 4.5.23) and GeoJSON Features. Terms are compacted with the
caller's TermMap here and nowhere else.

Everything that depends only on the request (which attributes to keep, the language
ranking, the view of each linked level) is computed once per request in :class:`View`;
the per-entity work is plain dict walking.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Optional

from urbanmim.ngsild.contexts import TermMap
from urbanmim.ngsild.entity import LOCATION, VALUE_KEY, Entity, Instance, is_subattr_key

# A pick/omit projection (clause 4.21): member name or expanded attribute IRI → the
# projection of the entity it links to (``rel{a,b}``), or None for a plain name.
Projection = dict[str, Optional["Projection"]]
CORE_MEMBERS = frozenset({"id", "type", "scope"})
NONE_DATASET = "@none"


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
    pick: Projection | None = None      # full pick tree (nested parts select linked entities)
    omit_tree: Projection | None = None  # full omit tree
    dataset_ids: frozenset[str] | None = None   # datasetId filter; "@none" = default instance
    join: str | None = None             # None | "inline" | "flat"
    join_level: int = 1
    linked: dict[str, Entity] | None = None      # linked entities fetched for this request
    _langs: list[str] | None = field(default=None, repr=False)
    _children: dict[str, View] = field(default_factory=dict, repr=False)

    def ranked_langs(self) -> list[str]:
        """``lang`` as a list of tags, best first (q-values as in Accept-Language)."""
        if self._langs is None:
            ranked: list[tuple[float, int, str]] = []
            for n, part in enumerate((self.lang or "").split(",")):
                bits = [b.strip() for b in part.split(";")]
                if not bits[0]:
                    continue
                q = 1.0
                for b in bits[1:]:
                    if b.startswith("q="):
                        try:
                            q = float(b[2:])
                        except ValueError:
                            q = 0.0
                ranked.append((-q, n, bits[0]))
            self._langs = [t for _, _, t in sorted(ranked)]
        return self._langs

    def child(self, rel_iri: str) -> View:
        """The view of the entities a Relationship ``rel_iri`` links to (one level down)."""
        got = self._children.get(rel_iri)
        if got is None:
            pick = self.pick.get(rel_iri) if self.pick is not None else None
            omit = self.omit_tree.get(rel_iri) if self.omit_tree is not None else None
            got = replace(self, attrs=None, pick_members=set(), omit=None, pick=None, omit_tree=None,
                          dataset_ids=None, join_level=self.join_level - 1, _children={})
            apply_projection(got, pick, omit)
            self._children[rel_iri] = got
        return got

    def keeps(self, iri: str) -> bool:
        """Is attribute ``iri`` part of the projection of this view?"""
        if self.attrs is not None and iri not in self.attrs:
            return False
        return not (self.omit is not None and iri in self.omit)


def apply_projection(view: View, pick: Projection | None, omit: Projection | None) -> None:
    """Set the flat projection fields of ``view`` from pick/omit trees (keys already expanded)."""
    view.pick, view.omit_tree = pick, omit
    if pick is not None:
        view.pick_members = {k for k in pick if k in CORE_MEMBERS} or {"__none__"}
        view.attrs = {k for k in pick if k not in CORE_MEMBERS}
    if omit is not None:
        # ``rel{...}`` omits inside the linked entity, not the relationship itself
        view.omit = {k for k, sub in omit.items() if sub is None}


def _pick_lang(lmap: dict[str, Any], view: View) -> tuple[str | None, Any]:
    """The (tag, text) of a LanguageProperty for the requested ranking (clause 4.15)."""
    for w in view.ranked_langs():
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


def _inline(obj: Any, view: View, rel_iri: str | None) -> Any:
    """The rendered linked entity for ``obj`` under join=inline, or None."""
    if rel_iri is None or view.join != "inline" or view.join_level < 1 or not view.linked:
        return None
    ent = view.linked.get(obj) if isinstance(obj, str) else None
    if ent is None:
        return None
    return render_entity(ent, view.child(rel_iri)) or None


def render_instance(inst: Instance, view: View, *, sub: bool = False, rel_iri: str | None = None) -> Any:
    ctx, fmt = view.ctx, view.fmt
    typ = inst.get("type", "Property")
    if fmt == "keyValues":
        if typ == "LanguageProperty" and view.lang:
            return _pick_lang(inst["languageMap"], view)[1]
        if typ == "VocabProperty":
            # like languageMap / json, the member name keeps a vocab apart from a plain string (4.5.4)
            return {"vocab": _vocab(inst, ctx)}
        if typ == "LanguageProperty":
            return {"languageMap": inst["languageMap"]}
        if typ == "JsonProperty":
            return {"json": inst["json"]}
        if typ == "Relationship" and not sub:
            linked = _inline(inst.get("object"), view, rel_iri)
            if linked is not None:
                return linked
        if typ == "ListRelationship" and not sub and view.join == "inline":
            return [_inline(o, view, rel_iri) or o for o in inst.get("objectList", [])]
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
        elif key == "languageMap" and view.lang:
            tag, text = _pick_lang(val, view)
            if fmt == "normalized":
                out["type"] = "Property"
            out["value"] = text
            if tag is not None and tag != "@none":
                out["lang"] = tag
        else:
            out[key] = val
    if not sub and view.join == "inline":
        if typ == "Relationship":
            linked = _inline(inst.get("object"), view, rel_iri)
            if linked is not None:
                out["entity"] = linked
        elif typ == "ListRelationship":
            found = [e for e in (_inline(o, view, rel_iri) for o in inst.get("objectList", [])) if e is not None]
            if found:
                out["entityList"] = found
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


def select_instances(instances: list[Instance], view: View) -> list[Instance]:
    """The instances kept by the ``datasetId`` filter (clause 4.5.5); all of them without one."""
    wanted = view.dataset_ids
    if wanted is None:
        return instances
    return [i for i in instances if i.get("datasetId", NONE_DATASET) in wanted]


def render_attribute(instances: list[Instance], view: View, rel_iri: str | None = None) -> Any:
    if len(instances) == 1:
        return render_instance(instances[0], view, rel_iri=rel_iri)
    if view.fmt == "keyValues":
        # several datasetIds: keyValues keeps the default instance only (spec 4.5.4)
        default = next((i for i in instances if "datasetId" not in i), instances[0])
        return render_instance(default, view, rel_iri=rel_iri)
    return [render_instance(i, view, rel_iri=rel_iri) for i in instances]


def render_entity(ent: Entity, view: View) -> dict[str, Any]:
    """One entity; ``{}`` when the projection leaves nothing (callers drop or 404 it)."""
    ctx = view.ctx
    out: dict[str, Any] = {}
    pick_members = view.pick_members
    omit = view.omit or set()
    if (not pick_members or "id" in pick_members) and "id" not in omit:
        out["id"] = ent["id"]
    if (not pick_members or "type" in pick_members) and "type" not in omit:
        types = [ctx.compact(t) for t in ent["type"]]
        out["type"] = types[0] if len(types) == 1 else types
    if "scope" in ent and (not pick_members or "scope" in pick_members) and "scope" not in omit \
            and (view.attrs is None or "scope" in pick_members):
        sc = ent["scope"]
        out["scope"] = sc[0] if len(sc) == 1 and view.fmt != "keyValues" else sc
    if view.sys_attrs and view.fmt != "keyValues" and out:
        out["createdAt"] = ent.get("createdAt")
        out["modifiedAt"] = ent.get("modifiedAt")
    wanted = view.attrs
    for iri, insts in ent["attrs"].items():
        if wanted is not None and iri not in wanted:
            continue
        if iri in omit:
            continue
        insts = select_instances(insts, view)
        if insts:
            out[ctx.compact(iri)] = render_attribute(insts, view, iri)
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
