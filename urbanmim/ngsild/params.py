"""Query-string parameters of the NGSI-LD API → typed, expanded values (clause 6.3/6.4).

One function per concern (type expressions, options, attrs/pick/omit, paging) so that
entity queries, retrievals, temporal queries and subscriptions parse them the same way
and reject bad input with the same clear 400.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from urbanmim.errors import BadRequestData, InvalidRequest, TooManyResults
from urbanmim.ngsild.contexts import TermMap
from urbanmim.ngsild.entity import LOCATION
from urbanmim.ngsild.payload import is_uri
from urbanmim.ngsild.render import View
from urbanmim.store.base import EntityQuery

MAX_LIMIT = 1000
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
            groups = [a | b for a in groups for b in right]
        return groups

    def parse_atom() -> list[frozenset[str]]:
        nonlocal i
        if i >= len(tokens):
            raise BadRequestData(f"invalid type expression {text!r}")
        tok = tokens[i]
        if tok == "(":
            i += 1
            g = parse_or()
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
        raise BadRequestData(f"unknown option(s): {', '.join(sorted(unknown))}")
    fmt = "normalized"
    if "format" in params:
        f = params["format"]
        if f not in _FORMAT_ALIASES:
            raise BadRequestData(f"unknown format {f!r}")
        fmt = _FORMAT_ALIASES[f]
    else:
        chosen = [o for o in ("keyValues", "simplified", "concise", "normalized") if o in opts]
        if len(chosen) > 1 and set(chosen) != {"keyValues", "simplified"}:
            raise BadRequestData(f"conflicting representation options: {', '.join(chosen)}")
        if chosen:
            fmt = _FORMAT_ALIASES[chosen[0]]
    return fmt, "sysAttrs" in opts


def make_view(params: Mapping[str, str], ctx: TermMap, *, allowed_extra: frozenset[str] = frozenset()) -> View:
    fmt, sys_attrs = representation(params, allowed_extra=allowed_extra)
    view = View(ctx=ctx, fmt=fmt, sys_attrs=sys_attrs, lang=params.get("lang"))
    attrs = split_list(params.get("attrs"))
    pick = split_list(params.get("pick"))
    omit = split_list(params.get("omit"))
    if pick is not None and omit is not None:
        raise BadRequestData("pick and omit cannot be used together")
    if pick is not None and attrs is not None:
        raise BadRequestData("pick and attrs cannot be used together")
    if attrs is not None:
        view.attrs = {ctx.expand(a) for a in attrs}
    if pick is not None:
        members = {p for p in pick if p in ("id", "type", "scope")}
        view.pick_members = members or {"__none__"}
        view.attrs = {ctx.expand(p) for p in pick if p not in ("id", "type", "scope")}
    if omit is not None:
        view.omit = {o if o in ("id", "type", "scope") else ctx.expand(o) for o in omit}
    gp = params.get("geometryProperty")
    view.geometry_property = ctx.expand(gp) if gp else LOCATION
    return view


def parse_int(params: Mapping[str, str], name: str, default: int) -> int:
    v = params.get(name)
    if v is None:
        return default
    if not re.fullmatch(r"-?\d+", v.strip()):
        raise BadRequestData(f"{name} must be an integer, got {v!r}")
    n = int(v)
    if n < 0:
        raise BadRequestData(f"{name} must not be negative")
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
    pick = split_list(params.get("pick"))
    attrs = {ctx.expand(a) for a in attrs_list} if attrs_list else None
    if attrs is None and pick:
        attrs = {ctx.expand(p) for p in pick if p not in ("id", "type", "scope")} or None
    q = parse_q(params["q"], ctx.expand) if params.get("q") else None
    scope_q = parse_scope_q(params["scopeQ"]) if params.get("scopeQ") else None
    geo = parse_geo_query(params.get("georel"), params.get("geometry"), params.get("coordinates"),
                          params.get("geoproperty"), ctx.expand)
    if require_filter and types is None and attrs is None and q is None and geo is None and ids is None \
            and id_pattern is None and scope_q is None:
        raise BadRequestData("a query needs at least one of type, id, idPattern, attrs, q, scopeQ or a geo-query")
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


def check_known(params: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = [k for k in params.keys() if k not in allowed]
    if unknown:
        raise InvalidRequest(f"unknown query parameter(s): {', '.join(sorted(unknown))}")
