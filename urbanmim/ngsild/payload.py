"""Client payloads → the internal entity shape (see ``entity.py``), validated.

Accepts both the normalized and the concise representation (clause 4.5), infers
attribute types the way the spec does for concise input, expands every term with the
request's TermMap and rejects what NGSI-LD forbids with ``BadRequestData`` naming the
attribute and the rule. Nothing here touches storage: the result is a plain dict.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from urbanmim.errors import BadRequestData, InvalidRequest
from urbanmim.ngsild.contexts import TermMap
from urbanmim.ngsild.entity import (
    ATTRIBUTE_TYPES,
    LOCATION,
    META_KEYS,
    OBSERVATION_SPACE,
    OPERATION_SPACE,
    VALUE_KEY,
    VALUE_KEYS,
    Entity,
    Instance,
)

GEOMETRY_TYPES = frozenset({"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon",
                            "GeometryCollection"})
GEO_ATTRS = frozenset({LOCATION, OBSERVATION_SPACE, OPERATION_SPACE})
NULL = "urn:ngsi-ld:null"
# characters the spec forbids in attribute names (they would break q and URLs)
_BAD_NAME = re.compile(r"[\s<>\"'=;()\[\]\\&?#%\x00-\x1f\x7f]")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>\"{}|\\^`]*$")


def is_uri(value: Any) -> bool:
    return isinstance(value, str) and bool(_URI.match(value))


def check_datetime(value: Any, what: str) -> str:
    """Validate an ISO 8601 DateTime and return it normalised to UTC with a Z."""
    if not isinstance(value, str):
        raise BadRequestData(f"{what} must be a DateTime string")
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadRequestData(f"{what} is not a valid DateTime: {value!r}") from None
    if dt.tzinfo is None:
        return value if value.endswith("Z") else value + "Z"
    return value


def check_entity_id(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequestData("entity id must be a non-empty string")
    if not is_uri(value):
        raise BadRequestData(f"entity id {value!r} is not a URI")
    return value


# names and IRIs already checked: a city's payloads reuse a few dozen of them
_GOOD_NAMES: set[str] = set()
_GOOD_IRIS: set[str] = set()


def check_attr_name(name: str) -> None:
    """Attribute names must be usable in q and URLs, and never a JSON-LD keyword (``@...``)."""
    if name in _GOOD_NAMES:
        return
    if not name or _BAD_NAME.search(name) or name.startswith("@"):
        raise BadRequestData(f"attribute name {name!r} is not allowed")
    if len(_GOOD_NAMES) < 100_000:
        _GOOD_NAMES.add(name)


def _is_plain_point(value: Any) -> bool:
    """A valid lon/lat(/alt) GeoJSON Point, checked without building a Shapely geometry (the
    common case of sensor locations; anything else goes through ``geo.validate_geometry``)."""
    if type(value) is not dict or value.get("type") != "Point" or len(value) != 2:
        return False
    c = value.get("coordinates")
    if type(c) is not list or not 2 <= len(c) <= 3 or not all(type(x) in (int, float) for x in c):
        return False
    return -180.0 <= c[0] <= 180.0 and -90.0 <= c[1] <= 90.0 and all(x == x and abs(x) != float("inf") for x in c)


def _check_iri(iri: str, what: str, term: str) -> str:
    """An expanded term must be an absolute IRI: a term the @context maps to a JSON-LD keyword
    (e.g. ``type`` → ``@type`` in the core context) names nothing and is rejected."""
    if iri in _GOOD_IRIS:
        return iri
    if iri.startswith("@") or not is_uri(iri):
        raise BadRequestData(f"{what} {term!r} does not expand to an IRI (got {iri!r})")
    if len(_GOOD_IRIS) < 100_000:
        _GOOD_IRIS.add(iri)
    return iri


def expand_types(value: Any, ctx: TermMap) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise BadRequestData("entity type must not be empty")
    out: list[str] = []
    for t in items:
        if not isinstance(t, str) or not t or _BAD_NAME.search(t):
            raise BadRequestData(f"entity type {t!r} is not valid")
        iri = _check_iri(ctx.expand(t), "entity type", t)
        if iri not in out:
            out.append(iri)
    return out


def _scope(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    for s in items:
        if not isinstance(s, str) or not re.fullmatch(r"/[^\s/#+\x00-\x1f\x7f]+(/[^\s/#+\x00-\x1f\x7f]+)*", s):
            raise BadRequestData(f"scope {s!r} is not valid (e.g. /Madrid/Centro)")
    return list(dict.fromkeys(items))


def _infer_type(name: str, raw: dict[str, Any]) -> str:
    """Concise representation: the attribute type is implied by which value key is present."""
    for key, typ in (("object", "Relationship"), ("languageMap", "LanguageProperty"), ("vocab", "VocabProperty"),
                     ("json", "JsonProperty"), ("valueList", "ListProperty"), ("objectList", "ListRelationship")):
        if key in raw:
            return typ
    if "value" in raw:
        v = raw["value"]
        if isinstance(v, dict) and v.get("type") in GEOMETRY_TYPES and "coordinates" in v:
            return "GeoProperty"
        return "GeoProperty" if name in GEO_ATTRS and isinstance(v, dict) else "Property"
    return "Property"


def is_ngsild_null(vkey: str, value: Any) -> bool:
    """The NGSI-LD Null of each attribute type (clause 4.5.x): what a merge/update uses to delete."""
    if value == NULL:
        return True
    if vkey == "languageMap":
        return isinstance(value, dict) and value == {"@none": NULL}
    if vkey in ("valueList", "objectList") and isinstance(value, list) and len(value) == 1:
        only = value[0]
        return only == NULL or (isinstance(only, dict) and only.get("object") == NULL)
    return False


def parse_instance(name: str, raw: Any, ctx: TermMap, *, allow_null: bool = False, sub: bool = False) -> Instance:
    """One attribute instance (normalized or concise) → internal instance dict."""
    if not isinstance(raw, dict):
        if raw is None:
            raise BadRequestData(f"attribute {name!r} has a null value")
        if isinstance(raw, list):
            # concise: a bare array is a Property whose value is the array
            return {"type": "Property", "value": raw}
        return {"type": "Property", "value": raw}
    typ = raw.get("type")
    if typ is not None and not isinstance(typ, str):
        raise BadRequestData(f"attribute {name!r}: type must be a string, not {typ!r}")
    if typ in GEOMETRY_TYPES and "coordinates" in raw and "value" not in raw:
        # concise GeoProperty: the GeoJSON geometry itself
        from urbanmim.ngsild.geo import validate_geometry
        validate_geometry(raw)
        return {"type": "GeoProperty", "value": raw}
    if typ is None:
        typ = _infer_type(name, raw)
        if typ == "Property" and "value" not in raw:
            # a concise Property whose value is a JSON object
            return {"type": "Property", "value": raw}
    if typ not in ATTRIBUTE_TYPES:
        raise BadRequestData(f"attribute {name!r} has an unknown type {typ!r}")
    vkey = VALUE_KEY[typ]
    if vkey not in raw:
        raise BadRequestData(f"{typ} {name!r} has no {vkey!r}")
    value = raw[vkey]
    inst: Instance = {"type": typ}
    if value is None:
        raise BadRequestData(f"attribute {name!r}: {vkey} must not be null")
    if allow_null and is_ngsild_null(vkey, value):
        inst[vkey] = NULL
    elif typ == "Relationship":
        objs = value if isinstance(value, list) else [value]
        if not objs or not all(is_uri(o) for o in objs):
            raise BadRequestData(f"Relationship {name!r}: object must be a URI (or a list of URIs)")
        inst["object"] = value
        if "objectType" in raw:
            inst["objectType"] = expand_types(raw["objectType"], ctx)
    elif typ == "GeoProperty":
        from urbanmim.ngsild.geo import validate_geometry
        if isinstance(value, str):
            raise BadRequestData(f"GeoProperty {name!r}: value must be a GeoJSON geometry")
        if not _is_plain_point(value):
            validate_geometry(value)
        inst["value"] = value
    elif typ == "LanguageProperty":
        if not isinstance(value, dict) or not value:
            raise BadRequestData(f"LanguageProperty {name!r}: languageMap must be an object of language → string")
        for lang, text in value.items():
            if not isinstance(lang, str) or not (isinstance(text, str) or
                                                 (isinstance(text, list) and all(isinstance(x, str) for x in text))):
                raise BadRequestData(f"LanguageProperty {name!r}: languageMap values must be strings")
        inst["languageMap"] = value
    elif typ == "VocabProperty":
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str) and v for v in items):
            raise BadRequestData(f"VocabProperty {name!r}: vocab must be a string or a list of strings")
        exp = [ctx.expand(v) for v in items]
        inst["vocab"] = exp if isinstance(value, list) else exp[0]
    elif typ == "ListProperty":
        if not isinstance(value, list):
            raise BadRequestData(f"ListProperty {name!r}: valueList must be an array")
        inst["valueList"] = value
    elif typ == "ListRelationship":
        if not isinstance(value, list):
            raise BadRequestData(f"ListRelationship {name!r}: objectList must be an array")
        objs = [o.get("object") if isinstance(o, dict) else o for o in value]
        if not all(is_uri(o) for o in objs):
            raise BadRequestData(f"ListRelationship {name!r}: objectList members must be URIs")
        inst["objectList"] = objs
        if "objectType" in raw:
            inst["objectType"] = expand_types(raw["objectType"], ctx)
    elif typ == "Property":
        if isinstance(value, dict) and value.get("@type") == "DateTime" and "@value" in value:
            check_datetime(value["@value"], f"{name} value")
        inst["value"] = value
    else:  # JsonProperty
        inst["json"] = value
    _parse_members(name, raw, inst, ctx, skip=("type", vkey), allow_null=allow_null, sub=sub)
    return inst


def _parse_members(name: str, raw: dict[str, Any], inst: Instance, ctx: TermMap, *, skip: tuple[str, ...],
                   allow_null: bool, sub: bool) -> None:
    """The meta members (observedAt, unitCode, datasetId, lang) and sub-attributes of an instance."""
    for key, v in raw.items():
        if key in skip:
            continue
        if key == "observedAt":
            inst["observedAt"] = check_datetime(v, f"{name}.observedAt")
        elif key == "unitCode":
            if not isinstance(v, str):
                raise BadRequestData(f"{name}.unitCode must be a string")
            inst["unitCode"] = v
        elif key == "datasetId":
            if sub:
                raise BadRequestData(f"sub-attribute {name!r} cannot have a datasetId")
            if not is_uri(v):
                raise BadRequestData(f"{name}.datasetId must be a URI")
            inst["datasetId"] = v
        elif key == "lang":
            if not isinstance(v, str):
                raise BadRequestData(f"{name}.lang must be a string")
            inst["lang"] = v
        elif key in ("createdAt", "modifiedAt", "deletedAt", "instanceId", "objectType"):
            continue  # system-generated, or handled above
        elif key in VALUE_KEYS or key in META_KEYS or key == "@context":
            continue
        else:
            check_attr_name(key)
            inst[ctx.expand(key)] = parse_instance(key, v, ctx, allow_null=allow_null, sub=True)


def parse_attr_fragment(name: str, raw: Any, ctx: TermMap) -> tuple[Instance, bool]:
    """A Partial Attribute Update body (5.6.4): any subset of one attribute's members.

    Unlike a full attribute it may omit both ``type`` and the value (e.g. only a
    sub-attribute). Returns the instance fragment and whether the type was given
    explicitly (a given type must match the stored one; an inferred one is only a guess
    from the concise form). NGSI-LD Null values are kept as :data:`NULL`.
    """
    if not isinstance(raw, dict):
        return parse_instance(name, raw, ctx, allow_null=True), False
    typ = raw.get("type")
    if typ is not None and not isinstance(typ, str):
        raise BadRequestData(f"attribute {name!r}: type must be a string, not {typ!r}")
    explicit = typ in ATTRIBUTE_TYPES
    if typ is not None and not explicit and typ not in GEOMETRY_TYPES:
        raise BadRequestData(f"attribute {name!r} has an unknown type {typ!r}")
    if typ is not None and not explicit or any(k in raw for k in VALUE_KEYS):
        return parse_instance(name, raw, ctx, allow_null=True), explicit
    if not raw:
        raise BadRequestData(f"the fragment for attribute {name!r} is empty")
    inst: Instance = {"type": typ} if explicit else {}
    _parse_members(name, raw, inst, ctx, skip=("type",), allow_null=True, sub=False)
    return inst, explicit


def parse_attribute(name: str, raw: Any, ctx: TermMap, *, allow_null: bool = False) -> list[Instance]:
    """An attribute as sent: one instance, or an array of instances with distinct datasetIds."""
    check_attr_name(name)
    if isinstance(raw, list) and raw and all(isinstance(x, dict) for x in raw) and \
            all(("type" in x and x["type"] in ATTRIBUTE_TYPES) or any(k in x for k in VALUE_KEYS) for x in raw):
        insts = [parse_instance(name, x, ctx, allow_null=allow_null) for x in raw]
        seen: set[str | None] = set()
        for inst in insts:
            ds = inst.get("datasetId")
            if ds in seen:
                raise BadRequestData(f"attribute {name!r} has two instances with the same datasetId")
            seen.add(ds)
        return insts
    inst = parse_instance(name, raw, ctx, allow_null=allow_null)
    return [inst]


def parse_attributes(body: dict[str, Any], ctx: TermMap, *, allow_null: bool = False,
                     skip: frozenset[str] = frozenset({"id", "type", "scope", "@context", "createdAt",
                                                       "modifiedAt", "deletedAt"})) -> dict[str, list[Instance]]:
    attrs: dict[str, list[Instance]] = {}
    for name, raw in body.items():
        if name in skip:
            continue
        check_attr_name(name)
        iri = _check_iri(ctx.expand(name), "attribute", name)
        insts = parse_attribute(name, raw, ctx, allow_null=allow_null)
        if iri in GEO_ATTRS:
            for inst in insts:
                if inst["type"] != "GeoProperty" and inst.get("value") != NULL:
                    raise BadRequestData(f"{name!r} must be a GeoProperty")
        attrs[iri] = insts
    return attrs


def parse_entity(body: Any, ctx: TermMap, *, require_type: bool = True) -> Entity:
    """A whole entity payload → internal entity (without system timestamps)."""
    if not isinstance(body, dict):
        raise InvalidRequest("an entity must be a JSON object")
    if "id" not in body and "@id" not in body:
        raise BadRequestData("entity id is missing")
    eid = check_entity_id(body.get("id", body.get("@id")))
    ent: Entity = {"id": eid}
    typ = body.get("type", body.get("@type"))
    if typ is None:
        if require_type:
            raise BadRequestData("entity type is missing")
    else:
        ent["type"] = expand_types(typ, ctx)
    if "scope" in body:
        ent["scope"] = _scope(body["scope"])
    ent["attrs"] = parse_attributes({k: v for k, v in body.items() if k not in ("@id", "@type")}, ctx)
    return ent


def parse_fragment(body: Any, ctx: TermMap, *, allow_null: bool = False) -> dict[str, Any]:
    """An attributes fragment (PATCH/POST .../attrs): attrs plus optional type/scope."""
    if not isinstance(body, dict):
        raise BadRequestData("the payload must be a JSON object of attributes")
    out: dict[str, Any] = {"attrs": parse_attributes(body, ctx, allow_null=allow_null)}
    if "type" in body:
        out["type"] = expand_types(body["type"], ctx)
    if "scope" in body:
        out["scope"] = None if body["scope"] == NULL else _scope(body["scope"])
    if "id" in body:
        out["id"] = check_entity_id(body["id"])
    return out
