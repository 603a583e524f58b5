"""The OpenAPI 3.0 definition of one city's OGC API (conformance class ``oas30``).

Generated per tenant because the collection ids are part of it (an ``enum`` clients such as
GDAL and QGIS read), and because the ``limit`` bounds clients use to choose a page size come
from the settings. ``tests/test_ogc_api.py`` validates it with ``openapi-spec-validator``.
"""

from __future__ import annotations

from typing import Any

from urbanmim.ogc.features import CRS84, CRS84H

OPENAPI_MEDIA = "application/vnd.oai.openapi+json;version=3.0"


def _param(name: str, description: str, schema: dict[str, Any], *, style: str | None = None,
           explode: bool | None = None, where: str = "query", required: bool = False,
           allow_empty: bool = False) -> dict[str, Any]:
    p: dict[str, Any] = {"name": name, "in": where, "description": description, "required": required or where == "path",
                         "schema": schema}
    if allow_empty:          # ``?filter-lang=`` is read as absent (the server's default), as it always was
        p["allowEmptyValue"] = True
    if style is not None:
        p["style"] = style
    if explode is not None:
        p["explode"] = explode
    return p


def _json(description: str, mtype: str = "application/json", schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description,
            "content": {mtype: {"schema": schema or {"type": "object"}}, "text/html": {"schema": {"type": "string"}}}}


def _scalar(schema: dict[str, Any]) -> dict[str, Any]:
    t = schema.get("type")
    return {"type": t} if t in ("string", "number", "integer", "boolean") else {"type": "string"}


def document(base: str, title: str, collections: dict[str, dict[str, dict[str, Any]]], *, default_limit: int,
             max_limit: int, version: str = "1.0.0") -> dict[str, Any]:
    """The definition of the API rooted at ``base`` (``http://host/ogc/{city}``); ``collections``: each
    collection id with its queryables (name -> JSON Schema), which its own ``/items`` path lists as
    query parameters (Part 3 "queryables as query parameters"; GDAL and QGIS look for them there)."""
    collection_ids = sorted(collections)
    ref = "#/components/parameters/"
    problem = {"description": "An error, as RFC 7807 problem details",
               "content": {"application/json": {"schema": {"$ref": "#/components/schemas/problem"}}}}
    errors = {"400": problem, "404": problem, "500": problem}
    f = {"$ref": ref + "f"}
    cid = {"$ref": ref + "collectionId"}
    params = {
        "f": _param("f", "The representation: json (default) or html; the Accept header works too.",
                    {"type": "string", "enum": ["json", "html"]}),
        "collectionId": _param("collectionId", "A collection: one entity type of this city.",
                               {"type": "string", **({"enum": collection_ids} if collection_ids else {})},
                               where="path"),
        "featureId": _param("featureId", "The NGSI-LD entity id of a feature.", {"type": "string"}, where="path"),
        "bbox": _param("bbox", "Only features whose geometry intersects this box: minLon,minLat,maxLon,maxLat "
                       "(or 6 numbers with heights), in CRS84.",
                       {"type": "array", "minItems": 4, "maxItems": 6, "items": {"type": "number"}},
                       style="form", explode=False),
        "bbox-crs": _param("bbox-crs", "The CRS of bbox; only CRS84 is supported.",
                           {"type": "string", "format": "uri", "enum": [CRS84, CRS84H]}, style="form", explode=False),
        "datetime": _param("datetime", "An instant, a date or an interval (start/end, '..' for an open end), "
                           "matched against each feature's latest observedAt (modifiedAt when it has none).",
                           {"type": "string"}, style="form", explode=False),
        "limit": _param("limit", f"Features per page (1 to {max_limit}, default {default_limit}).",
                        {"type": "integer", "minimum": 1, "maximum": max_limit, "default": default_limit},
                        style="form", explode=False),
        "offset": _param("offset", "How many matching features to skip (the next/prev links set it).",
                         {"type": "integer", "minimum": 0, "default": 0}, style="form", explode=False),
        "properties": _param("properties", "Comma-separated property names to return (default: all).",
                             {"type": "array", "items": {"type": "string"}}, style="form", explode=False),
        "filter": _param("filter", "A CQL2-text expression over the collection's queryables (an empty one "
                         "is a 400).", {"type": "string", "minLength": 1}, style="form", explode=False),
        "filter-lang": _param("filter-lang", "The filter language: cql2-text (cql-text is accepted as another "
                              "name for it, as GDAL 3.6 sends it); only with a filter.",
                              {"type": "string", "enum": ["cql2-text", "cql-text"], "default": "cql2-text"},
                              style="form", explode=False, allow_empty=True),
        "filter-crs": _param("filter-crs", "The CRS of geometries in the filter; only CRS84; only with a filter.",
                             {"type": "string", "format": "uri", "enum": [CRS84]}, style="form", explode=False,
                             allow_empty=True),
    }
    items_params = [cid, *({"$ref": ref + n} for n in ("bbox", "bbox-crs", "datetime", "limit", "offset",
                                                        "properties", "filter", "filter-lang", "filter-crs")), f]
    paths: dict[str, Any] = {}
    for cid_, queryables in sorted(collections.items()):
        own = [_param(name, f"Only features whose {name} equals this value.", _scalar(schema), style="form",
                      explode=False) for name, schema in sorted(queryables.items())]
        paths[f"/collections/{cid_}/items"] = {"get": {
            "summary": f"Features of {cid_}", "operationId": f"getFeatures-{cid_}", "tags": ["Data"],
            "parameters": [*items_params[1:-1], *own, f],
            "responses": {"200": _json("A page of features", "application/geo+json",
                                       {"$ref": "#/components/schemas/featureCollection"}), **errors}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": title, "version": version,
                 "description": "OGC API - Features (Part 1 Core, GeoJSON, HTML, OpenAPI 3.0; Part 3 CQL2-text "
                                "filtering) over the NGSI-LD entities of this city: one collection per entity type.",
                 "license": {"name": "EUPL-1.2", "url": "https://interoperable-europe.ec.europa.eu/collection/eupl"}},
        "servers": [{"url": base}],
        "paths": {
            "/": {"get": {"summary": "Landing page", "operationId": "getLandingPage", "tags": ["Capabilities"],
                          "parameters": [f], "responses": {"200": _json("The landing page"), **errors}}},
            "/conformance": {"get": {"summary": "Conformance classes", "operationId": "getConformance",
                                     "tags": ["Capabilities"], "parameters": [f],
                                     "responses": {"200": _json("The conformance classes"), **errors}}},
            "/api": {"get": {"summary": "This API definition", "operationId": "getApi", "tags": ["Capabilities"],
                             "parameters": [f], "responses": {"200": _json("The OpenAPI document", OPENAPI_MEDIA),
                                                              **errors}}},
            "/collections": {"get": {"summary": "The collections", "operationId": "getCollections",
                                     "tags": ["Capabilities"], "parameters": [f],
                                     "responses": {"200": _json("The collections of this city"), **errors}}},
            "/collections/{collectionId}": {"get": {
                "summary": "One collection", "operationId": "describeCollection", "tags": ["Capabilities"],
                "parameters": [cid, f], "responses": {"200": _json("The collection"), **errors}}},
            "/collections/{collectionId}/queryables": {"get": {
                "summary": "The properties a filter can use", "operationId": "getQueryables", "tags": ["Filter"],
                "parameters": [cid, f],
                "responses": {"200": _json("A JSON Schema of the queryables", "application/schema+json"), **errors}}},
            "/collections/{collectionId}/items": {"get": {
                "summary": "Features of a collection", "operationId": "getFeatures", "tags": ["Data"],
                "parameters": items_params,
                "responses": {"200": _json("A page of features", "application/geo+json",
                                           {"$ref": "#/components/schemas/featureCollection"}), **errors}}},
            "/collections/{collectionId}/items/{featureId}": {"get": {
                "summary": "One feature", "operationId": "getFeature", "tags": ["Data"],
                "parameters": [cid, {"$ref": ref + "featureId"}, f],
                "responses": {"200": _json("The feature", "application/geo+json",
                                           {"$ref": "#/components/schemas/feature"}), **errors}}},
            **paths,
        },
        "components": {
            "parameters": params,
            "schemas": {
                "problem": {"type": "object", "required": ["type", "title", "status"],
                            "properties": {"type": {"type": "string"}, "title": {"type": "string"},
                                           "status": {"type": "integer"}, "detail": {"type": "string"}}},
                "link": {"type": "object", "required": ["href"],
                         "properties": {"href": {"type": "string"}, "rel": {"type": "string"},
                                        "type": {"type": "string"}, "title": {"type": "string"}}},
                "feature": {"type": "object", "required": ["type", "geometry", "properties"],
                            "properties": {"type": {"type": "string", "enum": ["Feature"]},
                                           "id": {"type": "string"},
                                           "geometry": {"type": "object", "nullable": True},
                                           "properties": {"type": "object", "nullable": True},
                                           "links": {"type": "array", "items": {"$ref": "#/components/schemas/link"}}}},
                "featureCollection": {
                    "type": "object", "required": ["type", "features"],
                    "properties": {"type": {"type": "string", "enum": ["FeatureCollection"]},
                                   "features": {"type": "array", "items": {"$ref": "#/components/schemas/feature"}},
                                   "links": {"type": "array", "items": {"$ref": "#/components/schemas/link"}},
                                   "timeStamp": {"type": "string", "format": "date-time"},
                                   "numberMatched": {"type": "integer", "minimum": 0},
                                   "numberReturned": {"type": "integer", "minimum": 0}}},
            },
        },
        "tags": [{"name": "Capabilities"}, {"name": "Data"}, {"name": "Filter"}],
    }
