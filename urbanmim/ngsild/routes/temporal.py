"""/temporal/entities and /temporal/entityOperations/query — thin handlers (clauses 5.6.11–5.6.18, 5.7.3–5.7.4).

Writes go through the entity writer like every other write: the current state takes the
newest instance per attribute/datasetId, and the recorder (``temporal/recorder.py``) is
told to record exactly the instances the client sent, in the same transaction. Reads,
paging and representations are in ``temporal/service.py``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from urbanmim.errors import BadRequestData, InvalidRequest, ResourceNotFound
from urbanmim.ngsild import http, params
from urbanmim.ngsild.contexts import TermMap
from urbanmim.ngsild.entity import Entity, Instance
from urbanmim.ngsild.payload import (
    _scope,
    check_attr_name,
    check_entity_id,
    expand_types,
    is_uri,
    parse_attr_fragment,
    parse_instance,
)
from urbanmim.ngsild.render import View
from urbanmim.security import enforce
from urbanmim.security.principal import current_principal
from urbanmim.service.entities import now_iso
from urbanmim.store.base import EntityQuery, Mutation, TemporalEntity
from urbanmim.temporal import service as tsvc
from urbanmim.temporal.recorder import NULL, record_for
from urbanmim.temporal.timeutil import opt_ms

_REPR_OPTIONS = frozenset({"temporalValues", "aggregatedValues", "sysAttrs", "simplified", "keyValues",
                           "normalized"})
_TEMPORAL_KEYS = ("timerel", "timeAt", "endTimeAt", "timeproperty", "lastN", "aggrMethods", "aggrPeriodDuration",
                  "format", "options")


def _limit(request: Request) -> int:
    return int(request.app.state.settings.max_body_bytes)


def _instance_limit(request: Request) -> int:
    return int(getattr(request.app.state.settings, "temporal_instance_limit", tsvc.DEFAULT_INSTANCE_LIMIT))


# ---- writes -------------------------------------------------------------------------------------
def _parse_temporal_attrs(body: Mapping[str, Any], ctx: TermMap) -> dict[str, list[Instance]]:
    attrs: dict[str, list[Instance]] = {}
    for name, raw in body.items():
        if name in ("id", "type", "scope", "@context", "createdAt", "modifiedAt", "deletedAt", "@id", "@type"):
            continue
        check_attr_name(name)
        if raw == NULL or raw is None:
            raise BadRequestData(f"{name!r}: an NGSI-LD Null is not a temporal attribute instance")
        items = raw if isinstance(raw, list) and all(isinstance(x, dict) for x in raw) and raw else [raw]
        attrs[ctx.expand(name)] = [parse_instance(name, x, ctx) for x in items]
    return attrs


def _write_fn(request: Request, eid: str, types: list[str] | None, scope: list[str] | None,
              attrs: dict[str, list[Instance]], *, must_exist: bool) -> Any:
    """The mutation of a temporal write: state takes the newest instances, history takes them all."""
    recorder = request.app.state.temporal_recorder

    def fn(cur: Entity | None) -> tuple[Any, Any]:
        if must_exist and cur is None:
            raise ResourceNotFound(f"temporal entity {eid} not found")
        now = now_iso()
        new: Entity = copy.deepcopy(cur) if cur is not None else {"id": eid, "type": [], "createdAt": now,
                                                                   "attrs": {}}
        new["type"] = list(dict.fromkeys([*new.get("type", []), *(types or [])]))
        if scope is not None:
            new["scope"] = list(dict.fromkeys([*new.get("scope", []), *scope]))
        new["modifiedAt"] = now
        etype = new["type"][0] if new["type"] else ""
        records = []
        for attr, insts in attrs.items():
            state = new["attrs"].setdefault(attr, [])
            for inst in insts:
                inst = dict(inst, createdAt=now, modifiedAt=now)
                records.append(record_for(eid, etype, attr, inst, fallback=now))
                if inst.get("value") == NULL or inst.get("object") == NULL:
                    continue
                idx = next((i for i, s in enumerate(state) if s.get("datasetId") == inst.get("datasetId")), -1)
                if idx < 0:
                    state.append(inst)
                elif (opt_ms(inst.get("observedAt")) or 0) >= (opt_ms(state[idx].get("observedAt")) or 0):
                    state[idx] = inst
            if not state:
                del new["attrs"][attr]
        recorder.expect(eid, records)
        return new, cur is None
    return fn


def _eid(request: Request) -> str:
    """The entity id of the URL; a path that only looks like one (``.../attrs//x``) is a 400, not a 404."""
    eid = request.path_params["entity_id"]
    if "/attrs/" in eid or eid.endswith("/attrs"):
        raise BadRequestData(f"malformed temporal entity path {request.url.path!r}")
    return check_entity_id(eid)


def _instance(request: Request) -> str:
    iid = request.path_params["instance"]
    if not is_uri(iid):
        raise BadRequestData(f"instanceId {iid!r} is not a URI")
    return str(iid)


async def _exists(request: Request, tenant: str, eid: str) -> TemporalEntity | None:
    found = await request.app.state.store.temporal_entities(tenant, [eid])
    return found[0] if found else None


async def _one(request: Request, tenant: str, m: Mutation) -> Any:
    (out,) = await request.app.state.store.mutate(tenant, request.app.state.entities.guard(tenant, [m]))
    if out.error is not None:
        raise out.error
    return out.result


async def create_or_update(request: Request) -> Response:
    """POST /temporal/entities (5.6.11): 201 when the temporal entity is new, else 204 (instances added)."""
    tenant = http.tenant_of(request)
    body, ctype = await http.read_json(request, _limit(request))
    if not isinstance(body, dict):
        raise BadRequestData("the payload must be one temporal entity (a JSON object)")
    ctx = await http.request_context(request, body, ctype)
    if "id" not in body:
        raise BadRequestData("entity id is missing")
    eid = check_entity_id(body["id"])
    if "type" not in body:
        raise BadRequestData("entity type is missing")
    types = expand_types(body["type"], ctx)
    scope = _scope(body["scope"]) if "scope" in body else None
    attrs = _parse_temporal_attrs(body, ctx)
    existed = await _exists(request, tenant, eid)
    created = await _one(request, tenant, Mutation(eid, _write_fn(request, eid, types, scope, attrs,
                                                                  must_exist=False)))
    if existed is None:
        return http.empty(201, {"Location": f"/ngsi-ld/v1/temporal/entities/{eid}"}, tenant=tenant or None)
    del created
    return http.empty(204, tenant=tenant or None)


async def append_attrs(request: Request) -> Response:
    """POST /temporal/entities/{id}/attrs (5.6.12)."""
    tenant = http.tenant_of(request)
    eid = _eid(request)
    body, ctype = await http.read_json(request, _limit(request))
    if not isinstance(body, dict):
        raise BadRequestData("the payload must be a JSON object of attributes")
    ctx = await http.request_context(request, body, ctype)
    attrs = _parse_temporal_attrs(body, ctx)
    if not attrs:
        raise BadRequestData("no attributes to append")
    if await _exists(request, tenant, eid) is None:
        raise ResourceNotFound(f"temporal entity {eid} not found")
    await _one(request, tenant, Mutation(eid, _write_fn(request, eid, None, None, attrs, must_exist=False)))
    return http.empty(204, tenant=tenant or None)


async def delete_entity(request: Request) -> Response:
    """DELETE /temporal/entities/{id} (5.6.16): the history and the current state go together."""
    tenant = http.tenant_of(request)
    eid = _eid(request)
    if await _exists(request, tenant, eid) is None:
        raise ResourceNotFound(f"temporal entity {eid} not found")
    await request.app.state.entities.check_temporal_write(tenant, eid, None)
    await request.app.state.store.mutate(tenant, [Mutation(eid, lambda cur: (None, None) if cur else (cur, None))])
    await request.app.state.store.temporal_delete(tenant, eid)
    return http.empty(204, tenant=tenant or None)


async def delete_attr(request: Request) -> Response:
    """DELETE /temporal/entities/{id}/attrs/{attrId} (5.6.13)."""
    tenant = http.tenant_of(request)
    eid = _eid(request)
    ctx = await http.request_context(request)
    ds, delete_all = params.delete_attr_options(request.query_params)
    name = request.path_params["attr"]
    check_attr_name(name)
    await request.app.state.entities.check_temporal_write(tenant, eid, ctx.expand(name))
    if not await request.app.state.store.temporal_delete(tenant, eid, ctx.expand(name), dataset_id=ds,
                                                         delete_all=delete_all):
        raise ResourceNotFound(f"temporal entity {eid} has no attribute {name}")
    return http.empty(204, tenant=tenant or None)


async def patch_instance(request: Request) -> Response:
    """PATCH /temporal/entities/{id}/attrs/{attrId}/{instanceId} (5.6.14)."""
    tenant = http.tenant_of(request)
    eid = _eid(request)
    name = request.path_params["attr"]
    check_attr_name(name)
    body, ctype = await http.read_json(request, _limit(request))
    ctx = await http.request_context(request, body, ctype)
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k not in ("@context", "instanceId")}
    patch, _ = parse_attr_fragment(name, body, ctx)
    await request.app.state.entities.check_temporal_write(tenant, eid, ctx.expand(name))
    if not await request.app.state.store.temporal_instance_update(
            tenant, eid, ctx.expand(name), _instance(request), patch, now_iso()):
        raise ResourceNotFound(f"no instance {request.path_params['instance']} of {name} in {eid}")
    return http.empty(204, tenant=tenant or None)


async def delete_instance(request: Request) -> Response:
    """DELETE /temporal/entities/{id}/attrs/{attrId}/{instanceId} (5.6.15)."""
    tenant = http.tenant_of(request)
    eid = _eid(request)
    name = request.path_params["attr"]
    check_attr_name(name)
    ctx = await http.request_context(request)
    await request.app.state.entities.check_temporal_write(tenant, eid, ctx.expand(name))
    if not await request.app.state.store.temporal_instance_update(
            tenant, eid, ctx.expand(name), _instance(request), None, now_iso()):
        raise ResourceNotFound(f"no instance {request.path_params['instance']} of {name} in {eid}")
    return http.empty(204, tenant=tenant or None)


# ---- reads ---------------------------------------------------------------------------------------
def _view(p: Mapping[str, Any], ctx: TermMap) -> View:
    opts = params.options_of(p)
    unknown = opts - _REPR_OPTIONS
    if unknown:
        raise InvalidRequest(f"unknown option(s): {', '.join(sorted(unknown))}")
    rest = {k: v for k, v in p.items() if k not in ("format", "options")}
    if "sysAttrs" in opts:
        rest["options"] = "sysAttrs"
    view = params.make_view(rest, ctx)
    if view.join is not None:
        raise BadRequestData("join is not supported on the temporal evolution of entities")
    return view


async def _answer(request: Request, tenant: str, ents: list[TemporalEntity], view: View, tp: tsvc.TemporalParams,
                  ctx: TermMap, media: str, *, single: bool, headers: dict[str, str]) -> Response:
    store = request.app.state.store
    aggregated = None
    if tp.mode == "aggregatedValues":
        per = {e.entity_id: {a: [] for a in sorted(e.attrs) if view.attrs is None or a in view.attrs} for e in ents}
        collected = tsvc.Collected(per)  # type: ignore[arg-type]
        aggregated = await tsvc.aggregate_page(store, tenant, ents, view, tp)   # a few statements for the page
    else:
        collected = await tsvc.collect(store, tenant, ents, view.attrs, tp, _instance_limit(request))
    bodies = []
    for e in ents:
        if not single and tp.mode != "aggregatedValues" and not collected.per_entity.get(e.entity_id):
            continue   # no instance in the span: not part of a temporal query result
        body = await tsvc.render_temporal(store, tenant, e, collected.per_entity.get(e.entity_id, {}), view, tp,
                                          aggregated)
        if body:
            bodies.append(body)
    if single and not bodies:
        raise ResourceNotFound("nothing of the entity is left after pick/omit")
    status = 200
    if collected.truncated:
        status = 206
        headers["Content-Range"] = tsvc.content_range(collected)
    return http.respond(bodies[0] if single else bodies, ctx, media, status=status, headers=headers,
                        tenant=tenant or None)


async def retrieve(request: Request) -> Response:
    """GET /temporal/entities/{id} (5.7.3)."""
    tenant = await http.require_tenant(request, request.app.state.store)
    eid = _eid(request)
    media = http.negotiate(request)
    ctx = await http.request_context(request)
    p = request.query_params
    view = _view(p, ctx)
    tp = tsvc.parse_temporal(p)
    tp.span.dataset_ids = view.dataset_ids
    ent = await _exists(request, tenant, eid)
    if ent is not None:      # as the caller may see it (MIM6): not visible is not found
        ent = next(iter(await request.app.state.entities.temporal_visible(tenant, [ent])), None)
    if ent is None:
        raise ResourceNotFound(f"temporal entity {eid} not found")
    if p.get("type"):
        groups = params.parse_type_expression(p["type"], ctx)
        if not any(g <= set(ent.types) for g in groups):
            raise ResourceNotFound(f"temporal entity {eid} is not of type {p['type']}")
    if view.attrs is not None and p.get("attrs") and not (ent.attrs & view.attrs):
        raise ResourceNotFound(f"temporal entity {eid} has none of the requested attributes")
    return await _answer(request, tenant, [ent], view, tp, ctx, media, single=True, headers={})


async def _matching(request: Request, tenant: str, query: EntityQuery) -> list[TemporalEntity]:
    store = request.app.state.store
    out = []
    found = await store.temporal_entities(tenant, query.ids)
    for ent in await request.app.state.entities.temporal_visible(tenant, found):   # MIM6: what the caller sees
        pseudo: Entity = {"id": ent.entity_id, "type": ent.types, "attrs": {a: [{}] for a in ent.attrs}}
        if ent.scope:
            pseudo["scope"] = ent.scope
        if query.q is not None or query.geo is not None:
            latest = await store.temporal_latest(tenant, ent.entity_id)
            pseudo["attrs"] = {a: v for a, v in latest.items() if a in ent.attrs}   # q cannot probe hidden ones
        if query.matches(pseudo):
            out.append(ent)
    return out


def _store_filters_all(request: Request, query: EntityQuery) -> bool:
    """Whether :meth:`Store.temporal_entity_page` decides the whole query (ids, types, attrs), so
    the page comes from the store instead of from filtering every temporal entity of the tenant.
    Not so with q, geo, scope or idPattern (decided in Python), nor when access control may hide
    entities or attributes from the caller (MIM6: a page is counted after that)."""
    if query.q is not None or query.geo is not None or query.scope_q is not None or query.id_pattern is not None:
        return False
    return not enforce.enforcing(request.app.state.entities.access, current_principal())


async def _ordered(request: Request, tenant: str, ents: list[TemporalEntity], order_by: str,
                   ctx: TermMap) -> list[TemporalEntity]:
    """orderBy (4.22) on the newest instance of each attribute — the entity as it stands now."""
    from urbanmim.ngsild.ordering import parse_order_by, sort_entities
    keys = parse_order_by(order_by, ctx)
    store = request.app.state.store
    pseudo = []
    for e in ents:
        latest = await store.temporal_latest(tenant, e.entity_id)    # only what the caller may see (MIM6)
        pseudo.append({"id": e.entity_id, "type": e.types, "attrs": {a: v for a, v in latest.items() if a in e.attrs}})
    by_id = {e.entity_id: e for e in ents}
    return [by_id[x["id"]] for x in sort_entities(pseudo, keys)]


async def query_with(request: Request, p: Mapping[str, Any], tenant: str, ctx: TermMap, media: str,
                     selectors: list[dict[str, Any]] | None = None) -> Response:
    """One temporal query; several EntitySelectors (POST form) are OR-ed, merged by id."""
    view = _view(p, ctx)
    tp = tsvc.parse_temporal(p)
    tp.span.dataset_ids = view.dataset_ids
    rest = {k: v for k, v in p.items() if k not in _TEMPORAL_KEYS and k not in ("pick", "omit", "datasetId")}
    merged: dict[str, TemporalEntity] = {}
    query = params.entity_query(rest, ctx, tenant, max_limit=request.app.state.settings.max_limit,
                                require_filter=selectors is None)
    if selectors is None and not p.get("orderBy") and _store_filters_all(request, query):
        page, total = await request.app.state.store.temporal_entity_page(tenant, query)
        headers = {"NGSILD-Results-Count": str(total)} if query.count else {}
        return await _answer(request, tenant, page, view, tp, ctx, media, single=False, headers=headers)
    for sel in selectors or [{}]:
        q = params.entity_query({**rest, **sel}, ctx, tenant, max_limit=request.app.state.settings.max_limit) \
            if sel else query
        for e in await _matching(request, tenant, q):
            merged.setdefault(e.entity_id, e)
    ents = list(merged.values())
    if p.get("orderBy"):
        ents = await _ordered(request, tenant, ents, p["orderBy"], ctx)
    page = ents[query.offset:query.offset + query.limit]
    headers = {"NGSILD-Results-Count": str(len(ents))} if query.count else {}
    return await _answer(request, tenant, page, view, tp, ctx, media, single=False, headers=headers)


async def query(request: Request) -> Response:
    """GET /temporal/entities (5.7.4)."""
    tenant = await http.require_tenant(request, request.app.state.store)
    media = http.negotiate(request)
    ctx = await http.request_context(request)
    return await query_with(request, request.query_params, tenant, ctx, media)


def _post_params(body: Any, url: Mapping[str, str]) -> dict[str, Any]:
    from urbanmim.ngsild.routes.query_post import _post_params as entity_post_params
    out = entity_post_params(body, url)
    tq = body.get("temporalQ")
    if tq is not None:
        if not isinstance(tq, dict):
            raise BadRequestData("temporalQ must be a JSON object")
        for key in ("timerel", "timeAt", "endTimeAt", "timeproperty", "lastN"):
            if key in tq:
                v = tq[key]
                if key == "lastN" and (isinstance(v, bool) or not isinstance(v, int)):
                    raise BadRequestData(f"lastN must be a positive integer, got {v!r}")
                if key != "lastN" and not isinstance(v, str):
                    raise BadRequestData(f"{key} must be a string")
                out[key] = str(v)
        aggr = {k: tq[k] for k in ("aggrMethods", "aggrPeriodDuration") if k in tq}
    else:
        aggr = {}
    if isinstance(body.get("aggrParams"), dict):
        aggr.update(body["aggrParams"])
    elif "aggrParams" in body:
        raise BadRequestData("aggrParams must be a JSON object")
    if "aggrMethods" in aggr:
        m = aggr["aggrMethods"]
        if isinstance(m, list) and all(isinstance(x, str) for x in m):
            m = ",".join(m)
        if not isinstance(m, str):
            raise BadRequestData("aggrMethods must be a string or an array of strings")
        out["aggrMethods"] = m
        opts = {o for o in str(out.get("options", "")).split(",") if o}
        out["options"] = ",".join(sorted(opts | {"aggregatedValues"}))
    if "aggrPeriodDuration" in aggr:
        if not isinstance(aggr["aggrPeriodDuration"], str):
            raise BadRequestData("aggrPeriodDuration must be a string")
        out["aggrPeriodDuration"] = aggr["aggrPeriodDuration"]
    return out


async def post_query(request: Request) -> Response:
    """POST /temporal/entityOperations/query (6.24): a Query body with temporalQ, as the GET form."""
    tenant = await http.require_tenant(request, request.app.state.store)
    media = http.negotiate(request)
    raw, ctype = await http.read_json(request, _limit(request))
    ctx = await http.request_context(request, raw, ctype)
    p = _post_params(raw, request.query_params)
    selectors = p.pop("_selectors", None) or [{}]
    sels = []
    for sel in selectors:
        one: dict[str, Any] = {}
        for key in ("id", "idPattern", "type"):
            v = sel.get(key)
            if v is not None:
                if not isinstance(v, str):
                    raise BadRequestData(f"EntitySelector {key} must be a string")
                one[key] = v
        sels.append(one)
    if len(sels) == 1:
        return await query_with(request, {**p, **sels[0]}, tenant, ctx, media)
    return await query_with(request, p, tenant, ctx, media, selectors=sels)


_E = "/temporal/entities/{entity_id:path}"
routes = [
    Route("/temporal/entities", create_or_update, methods=["POST"]),
    Route("/temporal/entities", query, methods=["GET"]),
    Route("/temporal/entityOperations/query", post_query, methods=["POST"]),
    Route(_E + "/attrs/{attr}/{instance}", patch_instance, methods=["PATCH"]),
    Route(_E + "/attrs/{attr}/{instance}", delete_instance, methods=["DELETE"]),
    Route(_E + "/attrs/{attr}", delete_attr, methods=["DELETE"]),
    Route(_E + "/attrs", append_attrs, methods=["POST"]),
    Route(_E, retrieve, methods=["GET"]),
    Route(_E, delete_entity, methods=["DELETE"]),
]

