"""Query-string parameters of the NGSI-LD API → typed, expanded values (clause 6.3/6.4).

One function per concern (type expressions, options, attrs/pick/omit, paging) so that
entity queries, retrievals, temporal queries and subscriptions parse them the same way
and reject bad input with the same clear 400.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from urbanmim.errors import BadRequestData, InvalidRequest, TooManyResults
from urbanmim.ngsild.contexts import TermMap
from urbanmim.ngsild.entity import LOCATION
from urbanmim.ngsild.payload import is_uri
from urbanmim.ngsild.render import CORE_MEMBERS, Projection, View, apply_projection
from urbanmim.store.base import EntityQuery

MAX_LIMIT = 1000
MAX_NESTING = 16          # parentheses in a type expression / braces in pick-omit
MAX_TYPE_GROUPS = 1024   # AND-groups a type expression may expand to
MAX_OFFSET = 2**62        # anything larger cannot be a position in a result set (and overflows SQLite)
DEFAULT_LIMIT = 20
_FORMAT_ALIASES = {"normalized": "normalized", "concise": "concise", "keyValues": "keyValues",
                   "simplified": "keyValues"}
_TYPE_TOKEN = re.compile(r"\s*([()|,;])\s*|([^()|,;]+)")


def parse_type_expression(text: str, ctx: TermMap) -> list[frozenset[str]]:
    """``A,B`` / ``A|B`` (or), ``A;B`` (and), parentheses → OR of AND-groups (disjunctive normal form)."""
    tokens: list[str] = []
    pos = 0
    while pos < len(text):
        m = _TYPE_TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise BadRequestData(f"invalid type expression {text!r}")
        tokens.append(m.group(1) or m.group(2).strip())
        pos = m.end()
    i = 0
    depth = 0

    def parse_or() -> list[frozenset[str]]:
        nonlocal i
        groups = parse_and()
        while i < len(tokens) and tokens[i] in ("|", ","):
            i += 1
            groups = groups + parse_and()
        return groups

    def parse_and() -> list[frozenset[str]]:
        nonlocal i
        groups = parse_atom()
        while i < len(tokens) and tokens[i] == ";":
            i += 1
            right = parse_atom()
            if len(groups) * len(right) > MAX_TYPE_GROUPS:
                raise BadRequestData(f"type expression {text!r} is too complex")
            groups = [a | b for a in groups for b in right]
        return groups

    def parse_atom() -> list[frozenset[str]]:
        nonlocal i, depth
        if i >= len(tokens):
            raise BadRequestData(f"invalid type expression {text!r}")
        tok = tokens[i]
        if tok == "(":
            depth += 1
            if depth > MAX_NESTING:
                raise BadRequestData(f"type expression nested deeper than {MAX_NESTING} levels")
            i += 1
            g = parse_or()
            depth -= 1
            if i >= len(tokens) or tokens[i] != ")":
                raise BadRequestData(f"unbalanced parentheses in type expression {text!r}")
            i += 1
            return g
        if tok in ")|,;":
            raise BadRequestData(f"invalid type expression {text!r}")
        if re.search(r"[\s<>\"'=]", tok):
            raise BadRequestData(f"invalid entity type {tok!r}")
        i += 1
        return [frozenset({ctx.expand(tok)})]

    groups = parse_or()
    if i != len(tokens):
        raise BadRequestData(f"invalid type expression {text!r}")
    return groups


def split_list(value: str | None) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",")]
    if any(not v for v in items):
        raise BadRequestData(f"empty item in list {value!r}")
    return items


def options_of(params: Mapping[str, str]) -> set[str]:
    opts: set[str] = set()
    for key in ("options",):
        v = params.get(key)
        if v:
            opts.update(o.strip() for o in v.split(","))
    return opts


def representation(params: Mapping[str, str], *, allowed_extra: frozenset[str] = frozenset()) -> tuple[str, bool]:
    """(format, sysAttrs) from ``format`` / ``options``; 400 on unknown values."""
    opts = options_of(params)
    known = {"keyValues", "concise", "normalized", "sysAttrs", "simplified"} | allowed_extra
    unknown = opts - known
    if unknown:
        # a malformed parameter value, not bad NGSI-LD content (clause 6.3.7, 6.3.20)
        raise InvalidRequest(f"unknown option(s): {', '.join(sorted(unknown))}")
    fmt = "normalized"
    if "format" in params:
        f = params["format"]
        if f not in _FORMAT_ALIASES:
            raise InvalidRequest(f"unknown format {f!r}")
        fmt = _FORMAT_ALIASES[f]
    else:
        chosen = [o for o in ("keyValues", "simplified", "concise", "normalized") if o in opts]
        if len(chosen) > 1 and set(chosen) != {"keyValues", "simplified"}:
            raise BadRequestData(f"conflicting representation options: {', '.join(chosen)}")
        if chosen:
            fmt = _FORMAT_ALIASES[chosen[0]]
    return fmt, "sysAttrs" in opts


_PROJ_NAME = re.compile(r"[^\s,{};()<>\"'=|\[\]]+")


def parse_projection(text: str, ctx: TermMap, name: str = "pick") -> Projection:
    """``pick`` / ``omit`` (clause 4.21): ``a,b,rel{c,rel2{d}}`` → a tree of expanded names.

    Core members (id, type, scope) stay as they are; attribute names are expanded.
    Any syntax error (stray separator, unbalanced or empty braces, forbidden
    character) is a 400 BadRequestData.
    """
    pos = 0

    def bad(why: str) -> BadRequestData:
        return BadRequestData(f"invalid {name} expression {text!r}: {why}")

    def parse_list(depth: int) -> Projection:
        nonlocal pos
        out: Projection = {}
        while True:
            m = _PROJ_NAME.match(text, pos)
            if not m:
                raise bad(f"attribute name expected at position {pos}")
            term = m.group(0)
            pos = m.end()
            key = term if term in CORE_MEMBERS else ctx.expand(term)
            sub: Projection | None = None
            if pos < len(text) and text[pos] == "{":
                if term in CORE_MEMBERS:
                    raise bad(f"{term} cannot select a linked entity")
                if depth >= MAX_NESTING:
                    raise bad(f"nested deeper than {MAX_NESTING} levels")
                pos += 1
                sub = parse_list(depth + 1)
                if pos >= len(text) or text[pos] != "}":
                    raise bad("unclosed brace")
                pos += 1
            out[key] = sub
            if pos >= len(text):
                if depth:
                    raise bad("unclosed brace")
                return out
            ch = text[pos]
            if ch == ",":
                pos += 1
                continue
            if ch == "}" and depth:
                return out
            raise bad(f"unexpected {ch!r} at position {pos}")

    if not text:
        raise bad("empty")
    return parse_list(0)


def _has_nested(tree: Projection | None) -> bool:
    return tree is not None and any(v is not None for v in tree.values())


def make_view(params: Mapping[str, str], ctx: TermMap, *, allowed_extra: frozenset[str] = frozenset()) -> View:
    fmt, sys_attrs = representation(params, allowed_extra=allowed_extra)
    view = View(ctx=ctx, fmt=fmt, sys_attrs=sys_attrs, lang=params.get("lang"))
    attrs = split_list(params.get("attrs"))
    pick = parse_projection(params["pick"], ctx, "pick") if "pick" in params else None
    omit = parse_projection(params["omit"], ctx, "omit") if "omit" in params else None
    if pick is not None and attrs is not None:
        raise BadRequestData("pick and attrs cannot be used together")
    if omit is not None and attrs is not None:
        raise BadRequestData("omit and attrs cannot be used together")
    if pick is not None and omit is not None:
        both = sorted(k for k in pick if k in omit)
        if both:
            raise BadRequestData(f"{', '.join(both)} cannot be both picked and omitted")
    if attrs is not None:
        view.attrs = {ctx.expand(a) for a in attrs}
    view.join, view.join_level = join_of(params)
    if (_has_nested(pick) or _has_nested(omit)) and view.join is None:
        raise BadRequestData("selecting linked entity members with {...} needs join=inline or join=flat")
    apply_projection(view, pick, omit)
    gp = params.get("geometryProperty")
    view.geometry_property = ctx.expand(gp) if gp else LOCATION
    ds = split_list(params.get("datasetId"))
    if ds is not None:
        for d in ds:
            if d != "@none" and not is_uri(d):
                raise BadRequestData(f"datasetId {d!r} is not a URI")
        view.dataset_ids = frozenset(ds)
    return view


def join_of(params: Mapping[str, Any]) -> tuple[str | None, int]:
    """``join`` (flat | inline | @none) and ``joinLevel`` (default 1) of clause 4.5.23."""
    join = params.get("join")
    if join in (None, "", "@none"):
        join = None
    elif join not in ("flat", "inline"):
        raise BadRequestData(f"join must be flat, inline or @none, got {join!r}")
    level_raw = params.get("joinLevel")
    level = 1
    if level_raw not in (None, ""):
        text = str(level_raw).strip()
        if not re.fullmatch(r"\d+", text) or int(text) < 1:
            raise BadRequestData(f"joinLevel must be a positive integer, got {level_raw!r}")
        level = int(text)
    return join, level


def parse_int(params: Mapping[str, str], name: str, default: int) -> int:
    v = params.get(name)
    if v is None:
        return default
    if not re.fullmatch(r"-?\d+", v.strip()):
        raise BadRequestData(f"{name} must be an integer, got {v!r}")
    n = int(v)
    if n < 0:
        raise BadRequestData(f"{name} must not be negative")
    if n > MAX_OFFSET:
        raise BadRequestData(f"{name} is too large")
    return n


def parse_bool(params: Mapping[str, str], name: str) -> bool:
    v = params.get(name)
    if v is None:
        return False
    if v.lower() in ("true", "1"):
        return True
    if v.lower() in ("false", "0"):
        return False
    raise BadRequestData(f"{name} must be true or false, got {v!r}")


def entity_query(params: Mapping[str, str], ctx: TermMap, tenant: str, *, require_filter: bool = True,
                 max_limit: int = MAX_LIMIT) -> EntityQuery:
    from urbanmim.ngsild.geo import parse_geo_query
    from urbanmim.ngsild.qlang import parse_q, parse_scope_q

    ids = split_list(params.get("id"))
    if ids is not None:
        for i in ids:
            if not is_uri(i):
                raise BadRequestData(f"entity id {i!r} is not a URI")
    id_pattern = params.get("idPattern")
    if id_pattern is not None:
        try:
            re.compile(id_pattern)
        except re.error as e:
            raise BadRequestData(f"idPattern is not a valid regular expression: {e}") from None
    types = parse_type_expression(params["type"], ctx) if params.get("type") else None
    if "type" in params and not params["type"]:
        raise BadRequestData("type must not be empty")
    attrs_list = split_list(params.get("attrs"))
    if attrs_list is not None:
        reserved = [a for a in attrs_list if a in CORE_MEMBERS or a.startswith("@")]
        if reserved:
            raise BadRequestData(f"{', '.join(reserved)} are entity members, not attribute names")
    # pick/omit only project the result (clause 4.21); they never filter entities
    attrs = {ctx.expand(a) for a in attrs_list} if attrs_list else None
    expand_values = split_list(params.get("expandValues"))
    q = parse_q(params["q"], ctx.expand, expand_values=[ctx.expand(a) for a in expand_values or ()]) \
        if params.get("q") else None
    scope_q = parse_scope_q(params["scopeQ"]) if params.get("scopeQ") else None
    geo = parse_geo_query(params.get("georel"), params.get("geometry"), params.get("coordinates"),
                          params.get("geoproperty"), ctx.expand)
    local = parse_bool(params, "local")
    # clause 5.7.2.4: an id list alone is not enough, a query needs type, attrs, q, a
    # geo-query (or scopeQ) — or local=true to ask for everything this broker holds
    if require_filter and types is None and attrs is None and q is None and geo is None \
            and scope_q is None and not local:
        raise BadRequestData("a query needs at least one of type, attrs, q, scopeQ, a geo-query or local=true")
    limit = parse_int(params, "limit", DEFAULT_LIMIT)
    offset = parse_int(params, "offset", 0)
    count = parse_bool(params, "count")
    if limit > max_limit:
        raise TooManyResults(f"limit {limit} exceeds the maximum of {max_limit}",
                             extra={"maxLimit": max_limit})
    if limit == 0 and not count:
        raise BadRequestData("limit=0 is only allowed together with count=true")
    return EntityQuery(tenant=tenant, ids=ids, id_pattern=id_pattern, types=types, attrs=attrs, q=q,
                       scope_q=scope_q, geo=geo, limit=limit, offset=offset, count=count)


def delete_attr_options(params: Mapping[str, str]) -> tuple[str | None, bool]:
    """(datasetId, deleteAll) of an attribute deletion — current state or history (5.6.5, 5.6.13)."""
    delete_all = parse_bool(params, "deleteAll")
    dataset_id = params.get("datasetId")
    if delete_all and dataset_id is not None:
        raise BadRequestData("datasetId and deleteAll cannot be used together")
    return dataset_id, delete_all


def check_known(params: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = [k for k in params.keys() if k not in allowed]
    if unknown:
        raise InvalidRequest(f"unknown query parameter(s): {', '.join(sorted(unknown))}")
