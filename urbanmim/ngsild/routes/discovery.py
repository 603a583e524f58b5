"""/types and /attributes — what a city's data holds (clause 5.7.5–5.7.8)."""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from urbanmim.errors import ResourceNotFound
from urbanmim.ngsild import http, params


async def _setup(request: Request) -> tuple[str, Any, str]:
    tenant = await http.require_tenant(request, request.app.state.store)
    media = http.negotiate(request)
    ctx = await http.request_context(request)
    return tenant, ctx, media


async def list_types(request: Request) -> Response:
    tenant, ctx, media = await _setup(request)
    infos = await request.app.state.store.type_info(tenant)
    if params.parse_bool(request.query_params, "details"):
        body: Any = [{"id": t.type, "type": "EntityType", "typeName": ctx.compact(t.type),
                      "attributeNames": sorted(ctx.compact(a) for a in t.attrs)} for t in infos]
    else:
        body = {"id": f"urn:ngsi-ld:EntityTypeList:{uuid.uuid4()}", "type": "EntityTypeList",
                "typeList": sorted(ctx.compact(t.type) for t in infos)}
    return http.respond(body, ctx, media, tenant=tenant or None)


async def type_details(request: Request) -> Response:
    tenant, ctx, media = await _setup(request)
    iri = ctx.expand(request.path_params["type"])
    info = next((t for t in await request.app.state.store.type_info(tenant) if t.type == iri), None)
    if info is None:
        raise ResourceNotFound(f"no entity of type {request.path_params['type']}")
    body = {"id": iri, "type": "EntityTypeInfo", "typeName": ctx.compact(iri), "entityCount": info.count,
            "attributeDetails": [{"id": a, "type": "Attribute", "attributeName": ctx.compact(a),
                                  "attributeTypes": sorted(kinds)} for a, kinds in sorted(info.attrs.items())]}
    return http.respond(body, ctx, media, tenant=tenant or None)


async def list_attributes(request: Request) -> Response:
    tenant, ctx, media = await _setup(request)
    infos = await request.app.state.store.attribute_info(tenant)
    if params.parse_bool(request.query_params, "details"):
        body: Any = [{"id": a.attr, "type": "Attribute", "attributeName": ctx.compact(a.attr),
                      "typeNames": sorted(ctx.compact(t) for t in a.type_names)} for a in infos]
    else:
        body = {"id": f"urn:ngsi-ld:AttributeList:{uuid.uuid4()}", "type": "AttributeList",
                "attributeList": sorted(ctx.compact(a.attr) for a in infos)}
    return http.respond(body, ctx, media, tenant=tenant or None)


async def attribute_details(request: Request) -> Response:
    tenant, ctx, media = await _setup(request)
    iri = ctx.expand(request.path_params["attr"])
    info = next((a for a in await request.app.state.store.attribute_info(tenant) if a.attr == iri), None)
    if info is None:
        raise ResourceNotFound(f"no attribute {request.path_params['attr']}")
    body = {"id": iri, "type": "Attribute", "attributeName": ctx.compact(iri), "attributeCount": info.count,
            "attributeTypes": sorted(info.attr_types), "typeNames": sorted(ctx.compact(t) for t in info.type_names)}
    return http.respond(body, ctx, media, tenant=tenant or None)


routes = [
    Route("/types", list_types, methods=["GET"]),
    Route("/types/{type:path}", type_details, methods=["GET"]),
    Route("/attributes", list_attributes, methods=["GET"]),
    Route("/attributes/{attr:path}", attribute_details, methods=["GET"]),
]
