"""Entity queries: the shared answer of ``GET /entities`` and ``POST /entityOperations/query``.

Both are the same operation (clause 5.7.2); the POST form (clause 6.23) carries the
query in a ``Query`` data type (5.2.23) instead of the URL. The POST body is turned
into the equivalent URI parameters so that parsing and validation — and therefore
every 400 — are exactly those of the GET form.

Ordering (``orderBy``), linked entity retrieval (``join``) and the ``pick``
projection all need the whole matched page first, so they live here, once, rather
than in each handler.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from urbanmim.errors import BadRequestData
from urbanmim.ngsild import http, params
from urbanmim.ngsild.contexts import TermMap
from urbanmim.ngsild.linked import fetch_linked, render_flat
from urbanmim.ngsild.ordering import parse_order_by, sort_entities
from urbanmim.ngsild.render import View, feature_collection, render_entity, render_feature
from urbanmim.store.base import EntityQuery, QueryResult


def geo_body(body: Any, ctx: TermMap, media: str) -> Any:
    """GeoJSON bodies carry their @context inside (a FeatureCollection once, at top level)."""
    if media == http.GEOJSON and isinstance(body, dict):
        body["@context"] = ctx.context_value
    return body


async def run_query(request: Request, query: EntityQuery, order_by: str | None, ctx: TermMap) -> QueryResult:
    """The matched page; with orderBy the whole match is sorted before the page is cut."""
    svc = request.app.state.entities
    if not order_by:
        return await svc.query(query)
    keys = parse_order_by(order_by, ctx)
    everything = await svc.query(replace(query, offset=0, limit=sys.maxsize >> 1, count=True))
    ordered = sort_entities(everything.entities, keys)
    page = ordered[query.offset:query.offset + query.limit] if query.limit > 0 else []
    return QueryResult(page, everything.count if query.count else None)


async def answer_query(request: Request, p: Mapping[str, Any], ctx: TermMap, tenant: str,
                       media: str) -> tuple[Any, QueryResult, EntityQuery]:
    """Parse, run, order, join and render one entity query; returns (body, result, query)."""
    if p.get("geometryProperty") and media != http.GEOJSON:
        raise BadRequestData("geometryProperty is only meaningful with Accept: application/geo+json")
    query = params.entity_query(p, ctx, tenant, max_limit=request.app.state.settings.max_limit)
    view = params.make_view(p, ctx)
    result = await run_query(request, query, p.get("orderBy"), ctx)
    return render_many(result.entities, view, media, await _linked(request, tenant, result.entities, view)), \
        result, query


async def _linked(request: Request, tenant: str, roots: list[Any], view: View) -> list[Any]:
    if view.join is None or not roots:
        return []
    return await fetch_linked(request.app.state.entities.reader(), tenant, roots, view)   # sees what the caller may


def render_many(entities: list[Any], view: View, media: str, extra: list[Any]) -> Any:
    """The response body of a query; entities the projection empties are left out (4.21)."""
    if media == http.GEOJSON:
        return feature_collection([render_feature(e, view) for e in entities])
    bodies = [b for b in (render_entity(e, view) for e in entities) if b]
    if view.join == "flat":
        return render_flat(bodies, extra)
    return bodies


def _post_params(body: Any, url_params: Mapping[str, str]) -> dict[str, Any]:
    """A ``Query`` (5.2.23) payload → the URI parameters of the equivalent GET /entities."""
    if not isinstance(body, dict):
        raise BadRequestData("the payload of a query must be a JSON object of type Query")
    if body.get("type") != "Query":
        raise BadRequestData("the payload of a query must have \"type\": \"Query\"")
    out: dict[str, Any] = dict(url_params)
    entities = body.get("entities")
    if entities is not None:
        if not isinstance(entities, list) or not entities or not all(isinstance(e, dict) for e in entities):
            raise BadRequestData("entities must be a non-empty array of EntitySelector")
        out["_selectors"] = entities
    for key in ("attrs", "pick", "omit", "datasetId"):
        v = body.get(key)
        if v is not None:
            if isinstance(v, str):
                v = [v]
            if not isinstance(v, list) or not all(isinstance(a, str) for a in v):
                raise BadRequestData(f"{key} must be an array of strings")
            out[key] = ",".join(v)
    for key in ("q", "scopeQ", "lang", "geometryProperty", "join", "orderBy", "format"):
        v = body.get(key)
        if v is not None:
            if not isinstance(v, str):
                raise BadRequestData(f"{key} must be a string")
            out[key] = v
    if body.get("joinLevel") is not None:
        out["joinLevel"] = str(body["joinLevel"])
    geo = body.get("geoQ")
    if geo is not None:
        if not isinstance(geo, dict):
            raise BadRequestData("geoQ must be a JSON object")
        for key in ("georel", "geometry", "geoproperty"):
            if geo.get(key) is not None:
                out[key] = str(geo[key])
        if "coordinates" in geo:
            c = geo["coordinates"]
            out["coordinates"] = c if isinstance(c, str) else orjson.dumps(c).decode()
    return out


def _selector_params(base: dict[str, Any], sel: dict[str, Any]) -> dict[str, Any]:
    p = {k: v for k, v in base.items() if k != "_selectors"}
    for key in ("id", "idPattern", "type"):
        v = sel.get(key)
        if v is not None:
            if not isinstance(v, str):
                raise BadRequestData(f"EntitySelector {key} must be a string")
            p[key] = v
    return p


async def post_query(request: Request) -> Response:
    """POST /entityOperations/query (clause 6.23.3.1)."""
    tenant = await http.require_tenant(request, request.app.state.store)
    media = http.negotiate(request, geo=True)
    raw, ctype = await http.read_json(request, int(request.app.state.settings.max_body_bytes))
    ctx = await http.request_context(request, raw, ctype)
    p = _post_params(raw, request.query_params)
    selectors = p.get("_selectors") or [{}]
    headers: dict[str, str] = {}
    if len(selectors) == 1:
        body, result, query = await answer_query(request, _selector_params(p, selectors[0]), ctx, tenant, media)
        count = result.count
    else:
        # several selectors are OR-ed: run each without paging, merge by id, then page
        first = _selector_params(p, selectors[0])
        page_query = params.entity_query(first, ctx, tenant, max_limit=request.app.state.settings.max_limit)
        merged: dict[str, Any] = {}
        for sel in selectors:
            sp = dict(_selector_params(p, sel), limit=str(page_query.limit or 1), offset="0")
            q = params.entity_query(sp, ctx, tenant, max_limit=sys.maxsize)
            res = await run_query(request, replace(q, limit=sys.maxsize >> 1), sp.get("orderBy"), ctx)
            for e in res.entities:
                merged.setdefault(e["id"], e)
        ents = list(merged.values())
        if p.get("orderBy"):
            ents = sort_entities(ents, parse_order_by(p["orderBy"], ctx))
        view = params.make_view(first, ctx)
        page = ents[page_query.offset:page_query.offset + page_query.limit]
        body = render_many(page, view, media, await _linked(request, tenant, page, view))
        count = len(ents) if page_query.count else None
    if count is not None:
        headers["NGSILD-Results-Count"] = str(count)
    return http.respond(geo_body(body, ctx, media), ctx, media, headers=headers, tenant=tenant or None)


routes = [Route("/entityOperations/query", post_query, methods=["POST"])]
