"""Validate a stored-shape entity against a key-values JSON Schema plus NGSI attribute types.

Why a key-values *view*: Smart Data Models (and most city schemas) describe the
simplified representation — ``{"id", "type", "temperature": 21.5, "refDevice": "urn:..."}``
— while the broker stores the normalized one with expanded IRIs. So an entity is turned
into that view first (:func:`key_values`):

* attribute IRIs are compacted with the policy's @context, then, when that term is not an
  attribute of the model, by the IRI's last segment if the model has an attribute of that
  name (the "model's short names": ``.../default-context/co`` and
  ``https://smartdatamodels.org/dataModel.Environment/co`` both validate as ``co``);
* ``type`` is the model's name, ``id`` the entity id; system members are left out;
* a value is what keyValues would show: ``value`` / ``object`` / ``objectList`` /
  ``valueList`` / ``json``, a compacted ``vocab``; each string of a ``languageMap``
  and each extra ``datasetId`` instance is validated too, as an alternative value.

The JSON Schema cannot see what kind of NGSI-LD attribute carried a value, so that is a
second check, :attr:`CompiledModel.ngsi`: an attribute the model declares a Relationship
(``ref*``) must be a Relationship (or ListRelationship), a GeoProperty (``location``) a
GeoProperty, a Property any of the property kinds. The expected kind comes from the
schema (``x-ngsi.type``, else the Smart Data Models convention of descriptions starting
``"Property."``/``"Relationship."``/``"GeoProperty."``), else from the packaged metadata,
else from the name (``ref[A-Z]…`` → Relationship, location → GeoProperty).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from urbanmim.ngsild.contexts import TermMap
from urbanmim.ngsild.entity import VALUE_KEY, Entity, Instance

if TYPE_CHECKING:
    from referencing._core import Resolver

ACCEPTS: dict[str, frozenset[str]] = {
    "Property": frozenset({"Property", "LanguageProperty", "VocabProperty", "JsonProperty", "ListProperty"}),
    "Relationship": frozenset({"Relationship", "ListRelationship"}),
    "GeoProperty": frozenset({"GeoProperty"}),
}
_REF_NAME = re.compile(r"^ref[A-Z0-9_]")
_GEO_NAMES = frozenset({"location", "observationSpace", "operationSpace"})
_DESC_KIND = re.compile(r"^\s*(Property|Relationship|GeoProperty)\b")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>\"{}|\\^`]*$")


def _iso_datetime(v: object) -> bool:
    """ISO 8601 date-time; a missing offset is accepted, as NGSI-LD payloads accept it."""
    if not isinstance(v, str):
        return True
    if "T" not in v.upper():
        return False
    try:
        datetime.fromisoformat(v.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return False
    return True


def _checker() -> FormatChecker:
    """Formats checked the same way whatever optional packages jsonschema finds installed."""
    fc = FormatChecker(formats=())
    fc.checks("date-time")(_iso_datetime)
    fc.checks("date")(lambda v: not isinstance(v, str) or _try(date.fromisoformat, v))
    fc.checks("time")(lambda v: not isinstance(v, str) or _try(time.fromisoformat, v.replace("Z", "+00:00")))
    fc.checks("uri")(lambda v: not isinstance(v, str) or bool(_URI.match(v)))
    fc.checks("email")(lambda v: not isinstance(v, str) or "@" in v)
    fc.checks("ipv4")(lambda v: not isinstance(v, str) or _try(ipaddress.IPv4Address, v))
    fc.checks("ipv6")(lambda v: not isinstance(v, str) or _try(ipaddress.IPv6Address, v))
    return fc


def _try(fn: Any, v: str) -> bool:
    try:
        fn(v)
    except ValueError:
        return False
    return True


FORMATS = _checker()


@dataclass
class Issue:
    """One reason an entity does not conform: which attribute, which rule, in words."""

    attribute: str | None
    rule: str
    message: str
    iri: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"attribute": self.attribute, "rule": self.rule, "message": self.message}
        if self.iri and self.iri != self.attribute:
            out["iri"] = self.iri
        return out


@dataclass
class CompiledModel:
    """A schema ready to run: its validator, top-level attribute names and NGSI kinds."""

    source: str
    type_name: str
    level: str                       # full | metadata | custom
    validator: Draft202012Validator
    attributes: frozenset[str]
    ngsi: dict[str, str] = field(default_factory=dict)
    required: frozenset[str] = frozenset()

    def validate(self, ent: Entity, ctx: TermMap) -> list[Issue]:
        view, extra, kinds, iris = key_values(ent, self.type_name, ctx, self.attributes)
        issues = self.schema_issues(view, iris)
        for name, values in extra.items():
            for v in values:
                alt = dict(view, **{name: v})
                issues += [i for i in self.schema_issues(alt, iris) if i.attribute == name]
        for name, found in kinds.items():
            want = self.ngsi.get(name) or _kind_by_name(name)
            if want is None:
                continue
            bad = sorted(k for k in found if k not in ACCEPTS[want])
            if bad:
                issues.append(Issue(name, "ngsiType", f"attribute {name!r} must be a {want} in {self.source}, "
                                                      f"not a {', '.join(bad)}", iris.get(name)))
        return _dedupe(issues)

    def schema_issues(self, view: dict[str, Any], iris: dict[str, str] | None = None) -> list[Issue]:
        iris = iris or {}
        out: list[Issue] = []
        try:
            errors = list(self.validator.iter_errors(view))
        except Unresolvable as e:
            return [Issue(None, "$ref", f"{self.source}: $ref {e} cannot be resolved offline")]
        for err in errors:
            out.extend(_issues_of(err, iris))
        return out


def _issues_of(err: ValidationError, iris: dict[str, str]) -> list[Issue]:
    path = list(err.absolute_path)
    if err.validator == "required" and not path:
        missing = [r for r in err.validator_value if isinstance(err.instance, dict) and r not in err.instance]
        return [Issue(m, "required", f"attribute {m!r} is required", iris.get(m)) for m in missing]
    if err.validator in ("anyOf", "oneOf") and err.context:
        leaf = best_match(err.context)
        where = ".".join(str(p) for p in leaf.absolute_path)
        msg = f"{err.validator}: no alternative matched; closest: {leaf.message}" + (f" at {where}" if where else "")
    else:
        where = ".".join(str(p) for p in path)
        msg = err.message + (f" (at {where})" if len(path) > 1 else "")
    name = str(path[0]) if path else None
    return [Issue(name, str(err.validator), (f"attribute {name!r}: " if name else "") + msg, iris.get(name or ""))]


def _dedupe(issues: list[Issue]) -> list[Issue]:
    seen: set[tuple[str | None, str, str]] = set()
    out = []
    for i in issues:
        key = (i.attribute, i.rule, i.message)
        if key not in seen:
            seen.add(key)
            out.append(i)
    return out


def _kind_by_name(name: str) -> str | None:
    if _REF_NAME.match(name):
        return "Relationship"
    if name in _GEO_NAMES:
        return "GeoProperty"
    return None


def short_name(iri: str, ctx: TermMap, known: frozenset[str]) -> str:
    """The key-values name of an attribute IRI: the context's term, else the model's short name."""
    term = ctx.compact(iri)
    if term in known:
        return term
    tail = re.split(r"[/#]", iri)[-1]
    if tail in known:
        return tail
    return term


def _candidates(inst: Instance, ctx: TermMap) -> list[Any]:
    typ = inst.get("type", "Property")
    if typ == "LanguageProperty":
        lmap = inst.get("languageMap") or {}
        return [v for v in lmap.values()] or [lmap]
    if typ == "VocabProperty":
        v = inst.get("vocab")
        return [[ctx.compact(x) for x in v] if isinstance(v, list) else ctx.compact(v) if isinstance(v, str) else v]
    return [_plain(inst.get(VALUE_KEY.get(typ, "value")))]


def _plain(value: Any) -> Any:
    """A JSON-LD value object (``{"@type": "DateTime", "@value": "..."}``, clause 4.6.3) → its value."""
    if isinstance(value, dict) and "@value" in value and set(value) <= {"@type", "@value", "@language"}:
        return value["@value"]
    return value


def key_values(ent: Entity, type_name: str, ctx: TermMap, known: frozenset[str]) -> tuple[
        dict[str, Any], dict[str, list[Any]], dict[str, set[str]], dict[str, str]]:
    """The key-values view of ``ent`` for one model (see the module docstring).

    Returns the view, the alternative values per attribute (other datasetIds, other
    languages), the NGSI attribute types seen per attribute, and name → IRI."""
    view: dict[str, Any] = {"id": ent["id"], "type": type_name}
    extra: dict[str, list[Any]] = {}
    kinds: dict[str, set[str]] = {}
    iris: dict[str, str] = {}
    # names the context gives exactly win over short-name matches
    order = sorted(ent["attrs"].items(), key=lambda kv: ctx.compact(kv[0]) not in known)
    for iri, insts in order:
        if not insts:
            continue
        name = short_name(iri, ctx, known)
        if name in view:                 # two IRIs with one short name: the second keeps its IRI
            name = iri
        insts = sorted(insts, key=lambda i: "datasetId" in i)
        values = [v for inst in insts for v in _candidates(inst, ctx)]
        view[name] = values[0]
        if len(values) > 1:
            extra[name] = values[1:]
        kinds[name] = {i.get("type", "Property") for i in insts}
        iris[name] = iri
    return view, extra, kinds, iris


# ---- compiling a schema -----------------------------------------------------------------------------
def collect_properties(schema: Any, resolver: Resolver[Any], depth: int = 0) -> dict[str, Any]:
    """Top-level property schemas of ``schema``, following allOf/anyOf/oneOf and ``$ref`` (resolved)."""
    if not isinstance(schema, dict) or depth > 8:
        return {}
    resolver = _enter(schema, resolver)
    out: dict[str, Any] = {}
    if isinstance(schema.get("$ref"), str):
        hit = resolver.lookup(schema["$ref"])
        out.update(collect_properties(hit.contents, hit.resolver, depth + 1))
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(key) or ():
            for name, prop in collect_properties(sub, resolver, depth + 1).items():
                out.setdefault(name, prop)
    for name, prop in (schema.get("properties") or {}).items():
        if isinstance(prop, dict) and isinstance(prop.get("$ref"), str):
            try:
                prop = resolver.lookup(prop["$ref"]).contents
            except Unresolvable:
                pass
        out[name] = prop
    return out


def _enter(node: dict[str, Any], resolver: Resolver[Any]) -> Resolver[Any]:
    """The resolver for refs inside ``node`` (a nested ``$id`` changes the base URI)."""
    if isinstance(node.get("$id"), str):
        return resolver.in_subresource(DRAFT202012.create_resource(node))
    return resolver


def check_refs(schema: Any, resolver: Resolver[Any]) -> None:
    """Resolve every ``$ref`` reachable from ``schema`` (raises ``Unresolvable`` naming the first bad one)."""
    seen: set[int] = set()

    def walk(node: Any, resolver: Resolver[Any], depth: int) -> None:
        if depth > 64 or id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, dict):
            resolver = _enter(node, resolver)
            if isinstance(node.get("$ref"), str):
                hit = resolver.lookup(node["$ref"])
                walk(hit.contents, hit.resolver, depth + 1)
            for k, v in node.items():
                if k not in ("enum", "const", "examples", "default"):
                    walk(v, resolver, depth + 1)
        elif isinstance(node, list):
            for v in node:
                walk(v, resolver, depth + 1)

    walk(schema, resolver, 0)


def ngsi_kinds(props: dict[str, Any], fallback: dict[str, str] | None = None) -> dict[str, str]:
    """Expected NGSI kind per attribute: ``x-ngsi.type``, the description convention, the metadata."""
    out: dict[str, str] = {}
    for name, prop in props.items():
        if name in ("id", "type") or not isinstance(prop, dict):
            continue
        xt = prop.get("x-ngsi", {}).get("type") if isinstance(prop.get("x-ngsi"), dict) else None
        m = _DESC_KIND.match(prop.get("description") or "") if isinstance(prop.get("description"), str) else None
        kind = xt if xt in ACCEPTS else m.group(1) if m else (fallback or {}).get(name)
        if kind in ACCEPTS:
            out[name] = kind
    return out


def compile_model(source: str, type_name: str, level: str, schema: dict[str, Any], registry: Registry[Any],
                  fallback_kinds: dict[str, str] | None = None) -> CompiledModel:
    """A :class:`CompiledModel`; every ``$ref`` must resolve offline (``Unresolvable`` otherwise)."""
    base = schema.get("$id", "") if isinstance(schema.get("$id"), str) else ""
    if base:
        registry = registry.with_contents([(base, schema)], default_specification=DRAFT202012)
    resolver = registry.resolver(base_uri=base)
    check_refs(schema, resolver)
    props = collect_properties(schema, resolver)
    validator = Draft202012Validator(schema, registry=registry, format_checker=FORMATS)
    required = frozenset(r for r in schema.get("required", []) if isinstance(r, str))
    return CompiledModel(source=source, type_name=type_name, level=level, validator=validator,
                         attributes=frozenset(props) | required, ngsi=ngsi_kinds(props, fallback_kinds),
                         required=required)

