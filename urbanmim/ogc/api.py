"""The HTTP handlers of the OGC API (``/ogc/...``): thin, over the catalogue and the service layer.

Each handler builds one JSON document and, when the client asked for HTML (``f=html`` or an
``Accept`` preferring ``text/html``), renders that same document as a page (:mod:`.html`).
Every read of entities goes through ``app.state.entities`` (query / retrieve), so whatever
the service layer decides about who may see what holds here too. Errors are raised as
``NgsiError`` subclasses and rendered by the app's one handler (ProblemDetails JSON).

Part 1 asks a server to refuse query parameters its API does not define; so does this one
(400), except that the names of a collection's queryables are also accepted on ``/items``
as equality filters (Part 3, "queryables as query parameters").
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from urbanmim.errors import ResourceNotFound
from urbanmim.ngsild.entity import LOCATION
from urbanmim.ngsild.qlang import And, AttrPath, Comparison, QExpr
from urbanmim.ogc import html, openapi
from urbanmim.ogc.catalogue import (
    GEOMETRY,
    GREGORIAN,
    Catalogue,
    Collection,
    Extent,
    segment_tenant,
    tenant_segment,
    tenant_title,
)
from urbanmim.ogc.cql2 import compile_filter
from urbanmim.ogc.features import (
    CRS84,
    InvalidParameter,
    parse_bbox,
    parse_datetime_param,
    parse_int,
    parse_properties,
    to_feature,
)
from urbanmim.ogc.nodes import GeoTerm
from urbanmim.store.base import EntityQuery

PREFIX = "/ogc"
GEOJSON = "application/geo+json"
JSON = "application/json"
SCHEMA_JSON = "application/schema+json"
REL_CONFORMANCE = "http://www.opengis.net/def/rel/ogc/1.0/conformance"
REL_DATA = "http://www.opengis.net/def/rel/ogc/1.0/data"
REL_QUERYABLES = "http://www.opengis.net/def/rel/ogc/1.0/queryables"
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/html",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables-query-parameters",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions-plus",
]
_COMMON = frozenset({"f"})
_ITEMS = frozenset({"f", "bbox", "bbox-crs", "datetime", "limit", "offset", "properties", "filter", "filter-lang",
                    "filter-crs"})


# ---- helpers -------------------------------------------------------------------------------------

def catalogue_of(request: Request) -> Catalogue:
    return request.app.state.ogc   # type: ignore[no-any-return]


def _root(request: Request) -> str:
    return str(request.base_url).rstrip("/") + PREFIX


def _city(request: Request) -> tuple[str, str]:
    """(tenant, this city's API base URL)."""
    seg = request.path_params["city"]
    return segment_tenant(seg), f"{_root(request)}/{quote(seg, safe='~:')}"


def wants_html(request: Request) -> bool:
    """``f`` wins; else ``Accept``: HTML only when ``text/html`` ranks at least as high as JSON."""
    f = request.query_params.get("f")
    if f is not None:
        if f == "html":
            return True
        if f in ("json", "geojson"):
            return False
        raise InvalidParameter(f"f must be json or html, got {f!r}")
    accept = request.headers.get("accept")
    if not accept:
        return False
    best_html = best_json = 0.0
    for part in accept.split(","):
        bits = [b.strip() for b in part.split(";")]
        mt, q = bits[0].lower(), 1.0
        for b in bits[1:]:
            if b.startswith("q="):
                try:
                    q = float(b[2:])
                except ValueError:
                    q = 0.0
        if mt in ("text/html", "application/xhtml+xml"):
            best_html = max(best_html, q)
        elif mt in (JSON, GEOJSON, SCHEMA_JSON, "application/vnd.oai.openapi+json", "*/*", "application/*"):
            best_json = max(best_json, q)
    return best_html > 0 and best_html >= best_json


def _check_params(params: Mapping[str, str], allowed: frozenset[str] | set[str]) -> None:
    unknown = sorted(set(params.keys()) - allowed)
    if unknown:
        raise InvalidParameter(f"unknown query parameter{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}; "
                               f"this resource takes {', '.join(sorted(allowed))}")


def _json(body: Any, media: str = JSON, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=media)


def _html(text: str) -> Response:
    return HTMLResponse(text)


def _link(href: str, rel: str, mtype: str, title: str) -> dict[str, str]:
    return {"href": href, "rel": rel, "type": mtype, "title": title}


def _alternates(href: str, json_type: str = JSON) -> list[dict[str, str]]:
    return [_link(href + "?f=json", "self", json_type, "this document"),
            _link(href + "?f=html", "alternate", "text/html", "this document as HTML")]


# ---- the list of cities ------------------------------------------------------------------------

async def cities(request: Request) -> Response:
    _check_params(request.query_params, _COMMON)
    root = _root(request)
    cities_ = [{"tenant": t, "title": tenant_title(t), "href": f"{root}/{quote(tenant_segment(t), safe='~:')}"}
               for t in await catalogue_of(request).tenants()]
    body = {"title": "urbanmim OGC API - Features",
            "description": "Each city (NGSILD-Tenant) of this platform is its own OGC API - Features; open one of "
                           "these URLs in QGIS or GDAL.",
            "cities": cities_,
            "links": [*_alternates(root), *(_link(c["href"], "child", JSON, c["title"]) for c in cities_)]}
    return _html(html.index(body, root)) if wants_html(request) else _json(body)


# ---- one city ------------------------------------------------------------------------------------

async def landing(request: Request) -> Response:
    _check_params(request.query_params, _COMMON)
    tenant, base = _city(request)
    await catalogue_of(request).check_tenant(tenant)
    title = tenant_title(tenant)
    body = {"title": f"{title} - OGC API Features",
            "description": f"The entities of {title} as OGC API Features: one collection per entity type, "
                           "GeoJSON in CRS84, CQL2-text filters.",
            "links": [*_alternates(base),
                      _link(base + "/api", "service-desc", openapi.OPENAPI_MEDIA, "the API definition (OpenAPI 3.0)"),
                      _link(base + "/api?f=html", "service-doc", "text/html", "the API documentation"),
                      _link(base + "/conformance", "conformance", JSON, "conformance classes"),
                      _link(base + "/conformance", REL_CONFORMANCE, JSON, "conformance classes"),
                      _link(base + "/collections", "data", JSON, "the collections"),
                      _link(base + "/collections", REL_DATA, JSON, "the collections"),
                      _link(_root(request), "up", JSON, "all cities")]}
    return _html(html.landing(body, _root(request))) if wants_html(request) else _json(body)


async def conformance(request: Request) -> Response:
    _check_params(request.query_params, _COMMON)
    tenant, base = _city(request)
    await catalogue_of(request).check_tenant(tenant)
    body = {"conformsTo": CONFORMANCE, "links": _alternates(base + "/conformance")}
    if wants_html(request):
        return _html(html.conformance(body, _root(request), base, tenant_title(tenant)))
    return _json(body)


async def api_definition(request: Request) -> Response:
    _check_params(request.query_params, _COMMON)
    tenant, base = _city(request)
    cat = catalogue_of(request)
    cols = await cat.collections(tenant)
    s = request.app.state.settings
    described = {}
    for cid, col in cols.items():
        ext = await cat.extent(col)
        if ext.count:
            described[cid] = _queryables(col, ext)
    for q in described.values():
        q.pop(GEOMETRY, None)
    doc = openapi.document(base, f"{tenant_title(tenant)} - OGC API Features", described,
                           default_limit=s.ogc_default_limit, max_limit=s.ogc_max_limit)
    if wants_html(request):
        return _html(html.api(doc, _root(request), base, tenant_title(tenant)))
    return _json(doc, openapi.OPENAPI_MEDIA)


async def _visible(request: Request, tenant: str, cid: str) -> tuple[Collection, Extent]:
    """A collection and its extent as the caller sees it; one it can see nothing of does not exist."""
    cat = catalogue_of(request)
    col = await cat.collection(tenant, cid)
    ext = await cat.extent(col)
    if ext.count == 0:
        raise ResourceNotFound(f"no collection {cid!r} in {tenant_title(tenant)}")
    return col, ext


def _collection_body(col: Collection, ext: Extent, base: str) -> dict[str, Any]:
    href = f"{base}/collections/{quote(col.id, safe='')}"
    extent: dict[str, Any] = {}
    if ext.bbox is not None:
        extent["spatial"] = {"bbox": [list(ext.bbox)], "crs": CRS84}
    if ext.start is not None:
        extent["temporal"] = {"interval": [[ext.start, ext.end]], "trs": GREGORIAN}
    body: dict[str, Any] = {
        "id": col.id, "title": col.title,
        "description": f"{ext.count} {col.title} entit{'y' if ext.count == 1 else 'ies'} of "
                       f"{tenant_title(col.tenant)} (NGSI-LD type {col.type_iri})",
        "itemType": "feature", "crs": [CRS84], "storageCrs": CRS84,
        "links": [*_alternates(href),
                  _link(href + "/items", "items", GEOJSON, f"features of {col.title}"),
                  _link(href + "/items?f=html", "items", "text/html", f"features of {col.title} as HTML"),
                  _link(href + "/queryables", REL_QUERYABLES, SCHEMA_JSON, f"queryables of {col.title}"),
                  _link(href + "/queryables", "queryables", SCHEMA_JSON, f"queryables of {col.title}")]}
    if extent:
        body["extent"] = extent
    return body


async def collections(request: Request) -> Response:
    _check_params(request.query_params, _COMMON)
    tenant, base = _city(request)
    cat = catalogue_of(request)
    bodies = []
    for col in (await cat.collections(tenant)).values():
        ext = await cat.extent(col)
        if ext.count:
            bodies.append(_collection_body(col, ext, base))
    body = {"links": _alternates(base + "/collections"), "collections": bodies}
    if wants_html(request):
        return _html(html.collections(body, _root(request), base, tenant_title(tenant)))
    return _json(body)


async def collection(request: Request) -> Response:
    _check_params(request.query_params, _COMMON)
    tenant, base = _city(request)
    col, ext = await _visible(request, tenant, request.path_params["cid"])
    body = _collection_body(col, ext, base)
    if wants_html(request):
        return _html(html.collection(body, _root(request), base, tenant_title(tenant)))
    return _json(body)


_SCHEMA_TYPES = {"integer": "integer", "number": "number", "string": "string", "boolean": "boolean",
                 "array": "array", "object": "object"}


def _queryables(col: Collection, ext: Extent) -> dict[str, Any]:
    """name -> JSON Schema of every queryable: the geometry, then each attribute, typed as seen in the data."""
    props: dict[str, Any] = {GEOMETRY: {"title": "the feature geometry (the entity's location)",
                                        "format": "geometry-any", "x-ngsi-ld-iri": LOCATION}}
    for iri, name in sorted(col.names.items(), key=lambda kv: kv[1]):
        if iri not in ext.value_types:            # not in anything this caller may see
            continue
        kinds = col.kinds.get(iri, set())
        seen = sorted(t for t in ext.value_types.get(iri, set()) if t in _SCHEMA_TYPES)
        if "integer" in seen and "number" in seen:
            seen.remove("integer")
        schema: dict[str, Any] = {"title": name, "x-ngsi-ld-iri": iri, "x-ngsi-ld-types": sorted(kinds)}
        if "GeoProperty" in kinds:
            schema["format"] = "geometry-any"
        elif len(seen) == 1:
            schema["type"] = seen[0]
        elif seen:
            schema["type"] = seen
        props[name] = schema
    return props


async def queryables(request: Request) -> Response:
    _check_params(request.query_params, _COMMON)
    tenant, base = _city(request)
    col, ext = await _visible(request, tenant, request.path_params["cid"])
    href = f"{base}/collections/{quote(col.id, safe='')}"
    props = _queryables(col, ext)
    body = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": href + "/queryables",
            "type": "object", "title": f"Queryables of {col.title}", "properties": props,
            "additionalProperties": False}
    if wants_html(request):
        return _html(html.queryables(body, _root(request), base, tenant_title(tenant), col.title, href))
    return _json(body, _schema_media(request))


def _schema_media(request: Request) -> str:
    """application/schema+json, unless the client asked for JSON without naming it (GDAL 3.6 does,
    and refuses any other media type)."""
    accept = (request.headers.get("accept") or "").lower()
    return JSON if JSON in accept and SCHEMA_JSON not in accept else SCHEMA_JSON


def _param_filters(params: Mapping[str, str], col: Collection) -> list[QExpr]:
    """``?name=value`` for a queryable ``name``: equality (numbers and booleans as such when they parse)."""
    out: list[QExpr] = []
    for key, raw in params.items():
        iri = col.iris.get(key)
        if iri is None or key in _ITEMS:
            continue
        value: Any = raw
        if raw in ("true", "false"):
            value = raw == "true"
        else:
            try:
                value = int(raw)
            except ValueError:
                try:
                    value = float(raw)
                except ValueError:
                    value = raw
        out.append(Comparison(AttrPath(iri), "==", value))
    return out


def _page_links(request: Request, href: str, offset: int, limit: int, returned: int,
                matched: int | None) -> list[dict[str, str]]:
    params = [(k, v) for k, v in request.query_params.multi_items() if k not in ("offset", "f")]

    def url(off: int, f: str | None = None) -> str:
        q = [*params, ("offset", str(off))] + ([("f", f)] if f else [])
        return f"{href}?{urlencode(q)}"
    links = [_link(url(offset), "self", GEOJSON, "this page"),
             _link(url(offset, "html"), "alternate", "text/html", "this page as HTML")]
    more = offset + returned < matched if matched is not None else returned == limit
    if more and returned > 0:
        links.append(_link(url(offset + limit), "next", GEOJSON, "next page"))
    if offset > 0:
        links.append(_link(url(max(0, offset - limit)), "prev", GEOJSON, "previous page"))
    return links


async def items(request: Request) -> Response:
    p = request.query_params
    tenant, base = _city(request)
    col, _ = await _visible(request, tenant, request.path_params["cid"])
    _check_params(p, _ITEMS | set(col.iris))
    s = request.app.state.settings
    limit = parse_int(p, "limit", s.ogc_default_limit, 1, s.ogc_max_limit)
    offset = parse_int(p, "offset", 0, 0, 2**62)
    geo = parse_bbox(p.get("bbox"), p.get("bbox-crs"))
    parts: list[QExpr] = []
    attrs: set[str] | None = None
    window = parse_datetime_param(p.get("datetime"))
    if window is not None:
        parts.append(window)
    if p.get("filter") is not None:
        flt = compile_filter(p["filter"], col, lang=p.get("filter-lang"), crs=p.get("filter-crs"))
        if flt.q is not None:
            parts.append(flt.q)
        if flt.geo is not None:
            if geo is None:
                geo = flt.geo
            else:
                parts.append(GeoTerm(flt.geo, AttrPath(LOCATION)))
        attrs = flt.attrs
    elif p.get("filter-lang") or p.get("filter-crs"):
        raise InvalidParameter("filter-lang and filter-crs need a filter")
    parts.extend(_param_filters(p, col))
    props = parse_properties(p.get("properties"), col)
    q = None if not parts else parts[0] if len(parts) == 1 else And(tuple(parts))
    query = EntityQuery(tenant=tenant, types=[frozenset({col.type_iri})], attrs=attrs, q=q, geo=geo,
                        limit=limit, offset=offset, count=True)
    result = await request.app.state.entities.query(query)
    href = f"{base}/collections/{quote(col.id, safe='')}"
    feats = [to_feature(e, col, props, href) for e in result.entities]
    body: dict[str, Any] = {
        "type": "FeatureCollection", "features": feats,
        "links": [*_page_links(request, href + "/items", offset, limit, len(feats), result.count),
                  _link(href, "collection", JSON, col.title)],
        "timeStamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "numberReturned": len(feats)}
    if result.count is not None:
        body["numberMatched"] = result.count
    if wants_html(request):
        return _html(html.items(dict(body, _offset=offset), _root(request), base, tenant_title(tenant),
                                col.title, href))
    return _json(body, GEOJSON)


async def item(request: Request) -> Response:
    _check_params(request.query_params, _COMMON)
    tenant, base = _city(request)
    col, _ = await _visible(request, tenant, request.path_params["cid"])
    fid = request.path_params["fid"]
    ent = await request.app.state.entities.retrieve(tenant, fid)
    if col.type_iri not in ent.get("type", ()):
        raise ResourceNotFound(f"feature {fid} is not in collection {col.id}")
    href = f"{base}/collections/{quote(col.id, safe='')}"
    feat = to_feature(ent, col, None, href)
    if wants_html(request):
        return _html(html.item(feat, _root(request), base, tenant_title(tenant), col.title, href))
    return _json(feat, GEOJSON)


routes = [
    Route(PREFIX, cities, methods=["GET"]),
    Route(PREFIX + "/{city}", landing, methods=["GET"]),
    Route(PREFIX + "/{city}/conformance", conformance, methods=["GET"]),
    Route(PREFIX + "/{city}/api", api_definition, methods=["GET"]),
    Route(PREFIX + "/{city}/collections", collections, methods=["GET"]),
    Route(PREFIX + "/{city}/collections/{cid}", collection, methods=["GET"]),
    Route(PREFIX + "/{city}/collections/{cid}/queryables", queryables, methods=["GET"]),
    Route(PREFIX + "/{city}/collections/{cid}/items", items, methods=["GET"]),
    Route(PREFIX + "/{city}/collections/{cid}/items/{fid:path}", item, methods=["GET"]),
]
