"""Parse and validate ODRL 2.2 policies (the subset of :mod:`urbanmim.sharing.odrl`).

Why strict: a member the evaluator does not understand would be silently ignored, and an
ignored prohibition or constraint grants more than its author meant. So every member is
either understood or refused with a 400 ``BadRequestData`` whose detail names it by its
path (``policy.permission[0].constraint[1].operator: 'within' is not one of ...``).

Policies are read in the compact form of the ODRL 2.2 JSON-LD context (``"permission"``,
``"action": "read"``); ``odrl:`` CURIEs and full ``http://www.w3.org/ns/odrl/2/`` IRIs are
accepted for keys and values, and ``{"@id": ...}`` / ``{"@value": ...}`` wrappers are unwrapped.
Entity types and attribute names in targets are expanded with the request's @context by
the ``expand`` function the caller passes (identity for stored, already-expanded policies).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import shapely

from urbanmim.errors import BadRequestData
from urbanmim.sharing import purposes
from urbanmim.sharing.odrl import (
    ACTIONS,
    DUTIES,
    LEFT_OPERANDS,
    LOGICAL,
    OPERATORS,
    POLICY_TYPES,
    AnyConstraint,
    Asset,
    Constraint,
    Duty,
    Logical,
    Policy,
    Rule,
)

ODRL_NS = "http://www.w3.org/ns/odrl/2/"
ORG_PREFIX = "urn:ngsi-ld:Organisation:"
MAX_RULES = 100
MAX_DEPTH = 5
MAX_PATTERN = 256
ORG_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")

_POLICY_KEYS = {"@context", "@type", "type", "uid", "@id", "profile", "assigner", "assignee", "target",
                "permission", "prohibition", "conflict"}
_RULE_KEYS = {"@type", "type", "uid", "@id", "target", "action", "constraint", "duty", "assigner", "assignee"}
_CONSTRAINT_KEYS = {"@type", "type", "uid", "@id", "leftOperand", "operator", "rightOperand", "dataType", "unit"}
_ASSET_KEYS = {"@type", "type", "uid", "@id", "entityType", "idPattern", "attributes"}
_UNSUPPORTED = {
    "obligation": "policy-level obligations are not supported (put duties in a permission's 'duty')",
    "inheritFrom": "policy inheritance is not supported",
    "refinement": "action refinements are not supported",
    "remedy": "remedies are not supported",
    "consequence": "consequences are not supported",
    "rightOperandReference": "rightOperandReference is not supported (give the value)",
    "partOf": "asset collections by partOf are not supported (use entityType / idPattern)",
    "hasPolicy": "nested policies are not supported",
    "andSequence": "andSequence is not supported (use and)",
}
_META = ("dct:", "dcterms:", "http://purl.org/dc/terms/", "rdfs:", "@")


def _bad(path: str, msg: str) -> BadRequestData:
    return BadRequestData(f"{path}: {msg}", title="Invalid ODRL policy")


def _key(k: str) -> str:
    if k.startswith(ODRL_NS):
        return k[len(ODRL_NS):]
    if k.startswith("odrl:"):
        return k[5:]
    return k


def _members(obj: Any, path: str, allowed: set[str], what: str) -> dict[str, Any]:
    """The object's members with ``odrl:`` keys shortened; unknown members are a 400."""
    if not isinstance(obj, dict):
        raise _bad(path, f"{what} must be a JSON object")
    out: dict[str, Any] = {}
    for k, v in obj.items():
        if not isinstance(k, str):
            raise _bad(path, "member names must be strings")
        short = _key(k)
        if short in _UNSUPPORTED:
            raise _bad(f"{path}.{short}", _UNSUPPORTED[short])
        if short in allowed:
            out[short] = v
        elif short.startswith(_META) and short not in ("@list", "@set"):
            continue                                # descriptive metadata (dct:title, rdfs:comment, @language)
        else:
            raise _bad(f"{path}.{short}", f"unknown {what} member (supported: {', '.join(sorted(allowed))})")
    return out


def _unwrap(v: Any) -> Any:
    if isinstance(v, dict):
        if "@id" in v and len(v) == 1:
            return v["@id"]
        if "@value" in v and set(v) <= {"@value", "@type", "@language"}:
            return v["@value"]
    return v


def _iri_term(v: Any, path: str) -> str:
    v = _unwrap(v)
    if not isinstance(v, str) or not v:
        raise _bad(path, "must be a non-empty string")
    return _key(v)


def _list(v: Any) -> list[Any]:
    if isinstance(v, dict) and set(v) <= {"@list", "@set"} and len(v) == 1:
        v = next(iter(v.values()))
    return v if isinstance(v, list) else [v]


def party(v: Any, path: str) -> str:
    """An organisation: its id, or ``urn:ngsi-ld:Organisation:<id>``; ``{"uid": ...}`` objects too."""
    if isinstance(v, dict):
        v = v.get("uid", v.get("@id", v.get("odrl:uid")))
    v = _unwrap(v)
    if not isinstance(v, str):
        raise _bad(path, "a party must be an organisation id (string)")
    org = v[len(ORG_PREFIX):] if v.startswith(ORG_PREFIX) else v
    if not ORG_ID.match(org):
        raise _bad(path, f"{v!r} is not an organisation id ([A-Za-z0-9][A-Za-z0-9._:-]*)")
    return org


def parse_asset(v: Any, path: str, expand: Callable[[str], str]) -> Asset:
    """A target: an entity id (string) or an entity selection object."""
    v = _unwrap(v)
    if isinstance(v, str):
        if not v:
            raise _bad(path, "an asset id must not be empty")
        return Asset(id_pattern="^" + re.escape(v) + "$", uid=v)
    m = _members(v, path, _ASSET_KEYS | {"urbanmim:" + k for k in ("entityType", "idPattern", "attributes")},
                 "asset")
    m = {k.removeprefix("urbanmim:"): x for k, x in m.items()}
    kind = m.get("@type", m.get("type"))
    if kind is not None and _key(str(_unwrap(kind))) not in ("Asset", "AssetCollection",
                                                               "urbanmim:EntitySelection"):
        raise _bad(f"{path}.@type", "an asset must be an Asset, AssetCollection or urbanmim:EntitySelection")
    types: set[str] = set()
    if "entityType" in m:
        for i, t in enumerate(_list(m["entityType"])):
            t = _unwrap(t)
            if not isinstance(t, str) or not t:
                raise _bad(f"{path}.entityType[{i}]", "an entity type must be a non-empty string")
            types.add(expand(t))
    pattern = m.get("idPattern")
    if pattern is not None:
        pattern = _unwrap(pattern)
        if not isinstance(pattern, str) or not pattern or len(pattern) > MAX_PATTERN:
            raise _bad(f"{path}.idPattern", f"must be a regular expression of 1 to {MAX_PATTERN} characters")
        try:
            re.compile(pattern)
        except re.error as e:
            raise _bad(f"{path}.idPattern", f"not a valid regular expression ({e})") from None
    if not types and pattern is None:
        raise _bad(path, "an asset needs entityType and/or idPattern (an offer never covers 'everything')")
    attrs: frozenset[str] | None = None
    if "attributes" in m:
        names = _list(m["attributes"])
        if not names:
            raise _bad(f"{path}.attributes", "must list at least one attribute (omit it for all attributes)")
        out = set()
        for i, a in enumerate(names):
            a = _unwrap(a)
            if not isinstance(a, str) or not a:
                raise _bad(f"{path}.attributes[{i}]", "an attribute name must be a non-empty string")
            out.add(expand(a))
        attrs = frozenset(out)
    uid = m.get("uid", m.get("@id"))
    return Asset(frozenset(types), pattern, attrs, uid if isinstance(uid, str) else None)


def parse_datetime(v: Any, path: str) -> datetime:
    if isinstance(v, str):
        try:
            if len(v) == 10:
                d = date.fromisoformat(v)
                return datetime(d.year, d.month, d.day, tzinfo=UTC)
            t = datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            t = None
        if t is not None:
            if t.tzinfo is None:
                raise _bad(path, f"{v!r} has no time zone (write e.g. 2025-07-01T00:00:00Z)")
            return t
    raise _bad(path, f"{v!r} is not an xsd:dateTime (ISO 8601 with a time zone) or xsd:date")


def _area(v: Any, path: str) -> shapely.Geometry:
    from urbanmim.ngsild.geo import validate_geometry
    if isinstance(v, str):
        try:
            g = shapely.from_wkt(v)
        except (shapely.errors.GEOSException, ValueError) as e:
            raise _bad(path, f"not valid WKT ({e})") from None
    else:
        try:
            g = validate_geometry(v)
        except BadRequestData as e:
            raise _bad(path, f"not a GeoJSON geometry: {e.detail}") from None
        except TypeError:           # e.g. {"type": []}: validate_geometry assumes a hashable type
            raise _bad(path, "not a GeoJSON geometry: its type must be a string") from None
    if g.geom_type not in ("Polygon", "MultiPolygon") or g.is_empty or not g.is_valid:
        raise _bad(path, "a spatial area must be a valid Polygon or MultiPolygon (GeoJSON or WKT)")
    shapely.prepare(g)
    return g


def _purpose(v: Any, path: str) -> str:
    v = _unwrap(v)
    p = purposes.known(v) if isinstance(v, str) else None
    if p is None:
        raise _bad(path, f"{v!r} is not a known DPV purpose such as dpv:ResearchAndDevelopment "
                         "(the list: GET /consent/v1/purposes)")
    return p


def parse_constraint(v: Any, path: str, depth: int = 0) -> AnyConstraint:
    if depth > MAX_DEPTH:
        raise _bad(path, f"logical constraints nest at most {MAX_DEPTH} deep")
    if isinstance(v, dict):
        logical = [k for k in v if _key(k) in LOGICAL]
        if logical:
            if len(v) - sum(1 for k in v if k in ("@type", "type", "uid", "@id")) != 1:
                raise _bad(path, "a logical constraint has exactly one of and / or / xone")
            op = _key(logical[0])
            items = _list(v[logical[0]])
            if len(items) < 2:
                raise _bad(f"{path}.{op}", "a logical constraint needs at least two constraints")
            return Logical(op, tuple(parse_constraint(c, f"{path}.{op}[{i}]", depth + 1)
                                     for i, c in enumerate(items)), path)
    m = _members(v, path, _CONSTRAINT_KEYS, "constraint")
    for k in ("leftOperand", "operator", "rightOperand"):
        if k not in m:
            raise _bad(f"{path}.{k}", "is required")
    left = _iri_term(m["leftOperand"], f"{path}.leftOperand")
    if left not in LEFT_OPERANDS:
        raise _bad(f"{path}.leftOperand", f"{left!r} is not supported (supported: {', '.join(LEFT_OPERANDS)})")
    op = _iri_term(m["operator"], f"{path}.operator")
    if op not in OPERATORS[left]:
        raise _bad(f"{path}.operator", f"{op!r} is not supported with {left} (supported: "
                                       f"{', '.join(OPERATORS[left])})")
    raw = m["rightOperand"]
    rpath = f"{path}.rightOperand"
    right: Any
    if left == "purpose":
        if op in ("isAnyOf", "isNoneOf"):
            vals = _list(raw)
            if not vals:
                raise _bad(rpath, f"{op} needs a non-empty list of purposes")
            right = tuple(_purpose(x, f"{rpath}[{i}]") for i, x in enumerate(vals))
        else:
            if isinstance(raw, list):
                raise _bad(rpath, f"{op} takes one purpose (use isAnyOf for several)")
            right = (_purpose(raw, rpath),)
        raw = list(right) if op in ("isAnyOf", "isNoneOf") else right[0]
    elif left == "dateTime":
        right = parse_datetime(_unwrap(raw), rpath)
        raw = _unwrap(raw)
    elif left == "count":
        n = _unwrap(raw)
        if isinstance(n, str) and n.isdigit():
            n = int(n)
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise _bad(rpath, "count takes a non-negative integer")
        right = raw = n
    else:
        raw = _unwrap(raw)
        right = _area(raw, rpath)
    return Constraint(left, op, right, raw, path)


def _action(v: Any, path: str) -> str:
    if isinstance(v, list):
        if len(v) != 1:
            raise _bad(path, "a rule has exactly one action")
        v = v[0]
    if isinstance(v, dict) and ("rdf:value" in v or "value" in v):
        extra = set(v) - {"rdf:value", "value"}
        if extra:
            raise _bad(f"{path}.{_key(sorted(extra)[0])}", "action refinements are not supported")
        v = v.get("rdf:value", v.get("value"))
    a = _iri_term(v, path)
    if a not in ACTIONS:
        raise _bad(path, f"{a!r} is not a supported action (supported: {', '.join(ACTIONS)})")
    return a


def _rule(kind: str, v: Any, path: str, target: Asset | None, expand: Callable[[str], str],
          assigner: str | None, assignee: str | None) -> Rule:
    m = _members(v, path, _RULE_KEYS, kind)
    if "action" not in m:
        raise _bad(f"{path}.action", "is required")
    action = _action(m["action"], f"{path}.action")
    for k, pol in (("assigner", assigner), ("assignee", assignee)):
        if k in m and party(m[k], f"{path}.{k}") != pol:
            raise _bad(f"{path}.{k}", f"a rule's {k} must be the policy's ({pol})")
    tgt = parse_asset(m["target"], f"{path}.target", expand) if "target" in m else target
    if tgt is None:
        raise _bad(f"{path}.target", "is required (on the rule or the policy)")
    cons = tuple(parse_constraint(c, f"{path}.constraint[{i}]") for i, c in enumerate(_list(m.get("constraint", []))))
    duties: list[Duty] = []
    if "duty" in m:
        if kind != "permission":
            raise _bad(f"{path}.duty", "only permissions have duties")
        for i, d in enumerate(_list(m["duty"])):
            dpath = f"{path}.duty[{i}]"
            dm = _members(d, dpath, {"@type", "type", "uid", "@id", "action"}, "duty")
            if "action" not in dm:
                raise _bad(f"{dpath}.action", "is required")
            a = _iri_term(dm["action"], f"{dpath}.action")
            if a not in DUTIES:
                raise _bad(f"{dpath}.action", f"{a!r} is not a supported duty (supported: {', '.join(DUTIES)})")
            duties.append(Duty(a, dpath))
    return Rule(kind, action, tgt, cons, tuple(duties), path)  # type: ignore[arg-type]


def parse_policy(doc: Any, expand: Callable[[str], str] = lambda s: s, *, path: str = "policy",
                 uid: str | None = None) -> Policy:
    """An ODRL policy document → :class:`Policy`; ``uid`` replaces the document's own when given."""
    m = _members(doc, path, _POLICY_KEYS, "policy")
    kind = m.get("@type", m.get("type"))
    if kind is None:
        raise _bad(f"{path}.@type", f"is required (one of {', '.join(POLICY_TYPES)})")
    kind = _iri_term(kind, f"{path}.@type")
    if kind not in POLICY_TYPES:
        raise _bad(f"{path}.@type", f"{kind!r} is not one of {', '.join(POLICY_TYPES)}")
    if "conflict" in m and _iri_term(m["conflict"], f"{path}.conflict") != "prohibit":
        raise _bad(f"{path}.conflict", "only 'prohibit' is supported (prohibitions always win)")
    the_uid = uid or _unwrap(m.get("uid", m.get("@id")))
    if not isinstance(the_uid, str) or not the_uid:
        raise _bad(f"{path}.uid", "is required")
    assigner = party(m["assigner"], f"{path}.assigner") if "assigner" in m else None
    assignee = party(m["assignee"], f"{path}.assignee") if "assignee" in m else None
    target = parse_asset(m["target"], f"{path}.target", expand) if "target" in m else None
    perms = _list(m.get("permission", []))
    prohs = _list(m.get("prohibition", []))
    if not perms:
        raise _bad(f"{path}.permission", "a policy needs at least one permission (default deny)")
    if len(perms) + len(prohs) > MAX_RULES:
        raise _bad(path, f"at most {MAX_RULES} rules per policy")
    return Policy(
        uid=the_uid, type=kind, assigner=assigner, assignee=assignee,
        permissions=tuple(_rule("permission", r, f"{path}.permission[{i}]", target, expand, assigner, assignee)
                          for i, r in enumerate(perms)),
        prohibitions=tuple(_rule("prohibition", r, f"{path}.prohibition[{i}]", target, expand, assigner, assignee)
                           for i, r in enumerate(prohs)))
