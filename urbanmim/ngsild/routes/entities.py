"""/entities and /entities/{id}/attrs — thin handlers over ``EntityService``."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from urbanmim.errors import BadRequestData, InvalidRequest, MethodNotAllowed, ResourceNotFound
from urbanmim.ngsild import http, params
from urbanmim.ngsild.entity import Entity
from urbanmim.ngsild.payload import (
    check_attr_name,
    check_entity_id,
    parse_attr_fragment,
    parse_attribute,
    parse_entity,
    parse_fragment,
)
from urbanmim.ngsild.render import View, render_entity, render_feature
from urbanmim.ngsild.routes.purge import purge_entities
from urbanmim.service.entities import AttrReport


def _svc(request: Request) -> Any:
    return request.app.state.entities


def _limit(request: Request) -> int:
    return int(request.app.state.settings.max_body_bytes)


def render_one(ent: Entity, view: View, media: str) -> Any:
    if media == http.GEOJSON:
        f = render_feature(ent, view)
        return f
    return render_entity(ent, view)


async def create_entity(request: Request) -> Response:
    tenant = http.tenant_of(request)
    body, ctype = await http.read_json(request, _limit(request))
    if not isinstance(body, dict):
        raise InvalidRequest("the payload of Create Entity must be a JSON object (one entity)")
    ctx = await http.request_context(request, body, ctype)
    ent = parse_entity(body, ctx)
    await _svc(request).create(tenant, ent)
    return http.empty(201, {"Location": f"/ngsi-ld/v1/entities/{quote(ent['id'], safe=':')}"}, tenant=tenant or None)


async def query_entities(request: Request) -> Response:
    """GET /entities (5.7.2): the shared query path of ``routes.query_post``, plus paging links."""
    from urbanmim.ngsild.routes.query_post import answer_query, geo_body

    tenant = await http.require_tenant(request, request.app.state.store)
    p = request.query_params
    media = http.negotiate(request, geo=True)
    ctx = await http.request_context(request)
    body, result, query = await answer_query(request, p, ctx, tenant, media)
    headers = {}
    if result.count is not None:
        headers["NGSILD-Results-Count"] = str(result.count)
    links = paging_links(request, query.offset, query.limit, len(result.entities), result.count)
    resp = http.respond(geo_body(body, ctx, media), ctx, media, headers=headers, tenant=tenant or None)
    if links:
        existing = resp.headers.get("Link")
        resp.headers["Link"] = ", ".join(([existing] if existing else []) + links)
    return resp


def paging_links(request: Request, offset: int, limit: int, returned: int, count: int | None) -> list[str]:
    """``Link: <...>; rel="next"`` / ``rel="prev"`` (clause 4.12), parameters in a stable order."""
    if limit == 0:
        return []
    base = dict(request.query_params)
    links = []
    if offset > 0:
        prev = dict(base, offset=str(max(0, offset - limit)), limit=str(limit))
        links.append(f'<{request.url.path}?{urlencode(sorted(prev.items()), safe=",;:()|")}>; rel="prev";'
                     f'type="application/json"')
    more = (offset + returned < count) if count is not None else returned == limit
    if more and returned > 0:
        nxt = dict(base, offset=str(offset + limit), limit=str(limit))
        links.append(f'<{request.url.path}?{urlencode(sorted(nxt.items()), safe=",;:()|")}>; rel="next";'
                     f'type="application/json"')
    return links


async def retrieve_entity(request: Request) -> Response:
    """GET /entities/{id} (5.7.1): every parameter is checked before the look-up (400 before 404)."""
    from urbanmim.ngsild.linked import fetch_linked, render_flat
    from urbanmim.ngsild.routes.query_post import geo_body

    tenant = await http.require_tenant(request, request.app.state.store)
    eid = check_entity_id(request.path_params["entity_id"])
    media = http.negotiate(request, geo=True)
    ctx = await http.request_context(request)
    p = request.query_params
    view = params.make_view(p, ctx)
    if p.get("geometryProperty") and media != http.GEOJSON:
        raise BadRequestData("geometryProperty is only meaningful with Accept: application/geo+json")
    types = params.parse_type_expression(p["type"], ctx) if "type" in p else None
    ent = await _svc(request).retrieve(tenant, eid)
    if view.attrs is not None and view.pick is None and p.get("attrs"):
        if not any(a in ent["attrs"] for a in view.attrs):
            raise ResourceNotFound(f"entity {eid} has none of the requested attributes")
    if types is not None and not any(g <= set(ent["type"]) for g in types):
        raise ResourceNotFound(f"entity {eid} is not of type {p['type']}")
    extra = await fetch_linked(_svc(request).reader(), tenant, [ent], view) if view.join else []
    body = render_one(ent, view, media)
    if not body or (media == http.GEOJSON and not body["properties"] and "id" not in body):
        raise ResourceNotFound(f"nothing of entity {eid} is left after pick/omit")
    if view.join == "flat" and extra and media != http.GEOJSON:
        body = render_flat([body], extra)
    return http.respond(geo_body(body, ctx, media), ctx, media, tenant=tenant or None)


def _entity_id(request: Request) -> str:
    """The target entity id of a write: a missing or non-URI id is BadRequestData (5.6.x.4),
    decided before any look-up (so it is 400, never 404)."""
    eid = request.path_params.get("entity_id", "")
    if not eid:
        raise BadRequestData("the entity id is missing from the URL")
    return check_entity_id(eid)


async def missing_entity_id(request: Request) -> Response:
    """PUT/PATCH /entities (no id in the URL): the id of the target entity is missing."""
    raise BadRequestData(f"{request.method} needs an entity id: /entities/{{entityId}}")


async def attrs_other_method(request: Request) -> Response:
    """/entities/{id}/attrs only supports POST (append) and PATCH (update)."""
    raise MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}")


async def delete_entity(request: Request) -> Response:
    tenant = http.tenant_of(request)
    await _svc(request).delete(tenant, _entity_id(request))
    return http.empty(204, tenant=tenant or None)


async def replace_entity(request: Request) -> Response:
    tenant = http.tenant_of(request)
    eid = _entity_id(request)
    body, ctype = await http.read_json(request, _limit(request))
    ctx = await http.request_context(request, body, ctype)
    if isinstance(body, dict):
        if "id" in body and body["id"] != eid:
            raise BadRequestData("the id in the payload differs from the one in the URL")
        body = dict(body, id=eid)
    ent = parse_entity(body, ctx)
    await _svc(request).replace(tenant, ent)
    return http.empty(204, tenant=tenant or None)


async def merge_entity(request: Request) -> Response:
    tenant = http.tenant_of(request)
    eid = _entity_id(request)
    body, ctype = await http.read_json(request, _limit(request), merge_patch=True)
    ctx = await http.request_context(request, body, ctype)
    if isinstance(body, dict) and "id" in body and body["id"] != eid:
        raise BadRequestData("the id in the payload differs from the one in the URL")
    frag = parse_fragment(body, ctx, allow_null=True)
    if not frag["attrs"] and "type" not in frag and "scope" not in frag:
        raise BadRequestData("nothing to merge")
    await _svc(request).merge(tenant, eid, frag)
    return http.empty(204, tenant=tenant or None)


def _report_response(report: AttrReport, view_ctx: Any, tenant: str) -> Response:
    """204 when everything was written, else 207 with an UpdateResult (5.2.18).

    Attribute names are the expanded IRIs, as stored: an update-related operation expands terms
    (5.5.7), and the ETSI suite (010_04) and Stellio both answer this way."""
    if not report.not_updated:
        return http.empty(204, tenant=tenant or None)
    body = {"updated": list(report.updated),
            "notUpdated": [{"attributeName": a, "reason": r} for a, r in report.not_updated]}
    return http.respond(body, view_ctx, http.JSON, status=207, tenant=tenant or None)


async def append_attrs(request: Request) -> Response:
    tenant = http.tenant_of(request)
    eid = _entity_id(request)
    p = request.query_params
    opts = params.options_of(p)
    if opts - {"noOverwrite"}:
        raise BadRequestData(f"unknown option(s): {', '.join(sorted(opts - {'noOverwrite'}))}")
    body, ctype = await http.read_json(request, _limit(request))
    ctx = await http.request_context(request, body, ctype)
    frag = parse_fragment(body, ctx)
    if not frag["attrs"] and "type" not in frag and "scope" not in frag:
        raise BadRequestData("no attributes to append")
    report = await _svc(request).append_attrs(tenant, eid, frag, no_overwrite="noOverwrite" in opts)
    return _report_response(report, ctx, tenant)


async def update_attrs(request: Request) -> Response:
    tenant = http.tenant_of(request)
    eid = _entity_id(request)
    body, ctype = await http.read_json(request, _limit(request), merge_patch=True)
    ctx = await http.request_context(request, body, ctype)
    frag = parse_fragment(body, ctx, allow_null=True)
    if not frag["attrs"] and "type" not in frag and "scope" not in frag:
        raise BadRequestData("no attributes to update")
    report = await _svc(request).update_attrs(tenant, eid, frag)
    return _report_response(report, ctx, tenant)


async def _attr_payload(request: Request, merge_patch: bool = False) -> tuple[str, str, str, Any, Any]:
    """Tenant, checked entity id, attribute name and body (minus @context) of a single-attribute write.

    ``scope`` is not an attribute (4.18): it cannot be the target of these operations."""
    tenant = http.tenant_of(request)
    eid = _entity_id(request)
    name = request.path_params["attr"]
    check_attr_name(name)
    if name == "scope":
        raise BadRequestData("scope is not an attribute; use the entity operations to change it")
    body, ctype = await http.read_json(request, _limit(request), merge_patch=merge_patch)
    ctx = await http.request_context(request, body, ctype)
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k != "@context"}
    return tenant, eid, name, body, ctx


async def partial_update_attr(request: Request) -> Response:
    tenant, eid, name, body, ctx = await _attr_payload(request, merge_patch=True)
    patch, explicit = parse_attr_fragment(name, body, ctx)
    await _svc(request).partial_update_attr(tenant, eid, ctx.expand(name), patch, explicit_type=explicit)
    return http.empty(204, tenant=tenant or None)


async def replace_attr(request: Request) -> Response:
    tenant, eid, name, body, ctx = await _attr_payload(request)
    insts = parse_attribute(name, body, ctx)
    await _svc(request).replace_attr(tenant, eid, ctx.expand(name), insts)
    return http.empty(204, tenant=tenant or None)


async def delete_attr(request: Request) -> Response:
    tenant = http.tenant_of(request)
    eid = _entity_id(request)
    ctx = await http.request_context(request)
    dataset_id, delete_all = params.delete_attr_options(request.query_params)
    await _svc(request).delete_attr(tenant, eid, ctx.expand(request.path_params["attr"]), dataset_id=dataset_id,
                                    delete_all=delete_all)
    return http.empty(204, tenant=tenant or None)


routes = [
    Route("/entities", create_entity, methods=["POST"]),
    Route("/entities", query_entities, methods=["GET"]),
    Route("/entities", purge_entities, methods=["DELETE"]),
    Route("/entities", missing_entity_id, methods=["PUT", "PATCH"]),
    Route("/entities/{entity_id:path}/attrs/{attr}", partial_update_attr, methods=["PATCH"]),
    Route("/entities/{entity_id:path}/attrs/{attr}", replace_attr, methods=["PUT"]),
    Route("/entities/{entity_id:path}/attrs/{attr}", delete_attr, methods=["DELETE"]),
    Route("/entities/{entity_id:path}/attrs", append_attrs, methods=["POST"]),
    Route("/entities/{entity_id:path}/attrs", update_attrs, methods=["PATCH"]),
    Route("/entities/{entity_id:path}/attrs", attrs_other_method, methods=["GET", "PUT", "DELETE"]),
    Route("/entities/{entity_id:path}", retrieve_entity, methods=["GET"]),
    Route("/entities/{entity_id:path}", delete_entity, methods=["DELETE"]),
    Route("/entities/{entity_id:path}", replace_entity, methods=["PUT"]),
    Route("/entities/{entity_id:path}", merge_entity, methods=["PATCH"]),
]
