"""``/models/v1`` — set validation policies, register JSON Schemas, dry-run, read the reports.

A separate prefix because none of this is an NGSI-LD resource; the tenant is still the
``NGSILD-Tenant`` header and errors are still ProblemDetails. Policies and schemas are
written through the EntityService as reserved entities (see ``registry.py``), so these
routes are a convenience over the broker's own storage, not a second one.
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from urbanmim.errors import BadRequestData, Conflict, InvalidRequest, ResourceNotFound
from urbanmim.models.registry import (
    SCHEMA_ID,
    ModelRegistry,
    Policy,
    RegisteredSchema,
    check_schema_document,
    policy_id,
    schema_entity_id,
)
from urbanmim.models.validator import compile_model, key_values
from urbanmim.ngsild import http
from urbanmim.ngsild.payload import parse_entity
from urbanmim.service.entities import EntityService, outcome_error
from urbanmim.store.base import Mutation

PREFIX = "/models/v1"


def _reg(request: Request) -> ModelRegistry:
    reg: ModelRegistry = request.app.state.models
    return reg


def _json(body: Any, status: int = 200, tenant: str = "") -> Response:
    return Response(http.dumps(body), status_code=status, media_type=http.JSON,
                    headers={http.TENANT_HEADER: tenant} if tenant else None)


async def _upsert(request: Request, tenant: str, ent: dict[str, Any]) -> None:
    svc: EntityService = request.app.state.entities
    (out,) = await svc.batch(tenant, [Mutation(ent["id"], EntityService.replace_fn(ent, must_exist=False))])
    if out.error is not None:
        raise outcome_error(out)


def _level(reg: ModelRegistry, tenant: str, p: Policy) -> dict[str, Any]:
    out = p.to_json()
    try:
        out["level"] = reg.compile(tenant, p.source, p.type_name).level
    except BadRequestData as e:
        out["level"] = None
        out["problem"] = e.detail
    return out


# ---- policies ------------------------------------------------------------------------------------
async def list_policies(request: Request) -> Response:
    tenant = http.tenant_of(request)
    reg = _reg(request)
    items = [_level(reg, tenant, p) for p in sorted(reg.tenant(tenant).policies.values(), key=lambda p: p.type_iri)]
    return _json(items, tenant=tenant)


async def get_policy(request: Request) -> Response:
    tenant = http.tenant_of(request)
    ctx = await http.request_context(request)
    type_iri = ctx.expand(request.path_params["type"])
    p = _reg(request).tenant(tenant).policies.get(type_iri)
    if p is None:
        raise ResourceNotFound(f"no validation policy for type {type_iri}")
    return _json(_level(_reg(request), tenant, p), tenant=tenant)


async def put_policy(request: Request) -> Response:
    """Body ``{"mode": "off|warn|strict", "source": "sdm:<Model>" | "schema:<id>"}``; the type in the
    URL is expanded with the request's @context, which is kept for compacting attribute names."""
    tenant = http.tenant_of(request)
    body, ctype = await http.read_json(request, int(request.app.state.settings.max_body_bytes))
    if not isinstance(body, dict):
        raise InvalidRequest("a policy must be a JSON object")
    ctx_value = http.context_source(request, body, ctype)
    ctx = await http.request_context(request, body, ctype)
    mode, source = body.get("mode"), body.get("source")
    if mode not in ("off", "warn", "strict"):
        raise BadRequestData("mode must be off, warn or strict")
    if not isinstance(source, str) or not source.startswith(("sdm:", "schema:")):
        raise BadRequestData("source must be sdm:<Model>, sdm:<Subject>/<Model> or schema:<registered id>")
    reg = _reg(request)
    type_iri = ctx.expand(request.path_params["type"])
    if source.startswith("sdm:"):
        model = await anyio.to_thread.run_sync(reg.catalog.lookup, source)
        source, type_name = model.source, model.name
    else:
        type_name = body.get("typeName") or ctx.compact(type_iri)
        if not isinstance(type_name, str):
            raise BadRequestData("typeName must be a string")
    await anyio.to_thread.run_sync(reg.compile, tenant, source, type_name)   # 400 now, not at the first write
    created = type_iri not in reg.tenant(tenant).policies
    policy = Policy(type_iri, type_name, mode, source, ctx_value)
    await _upsert(request, tenant, policy.to_entity())
    return _json(_level(reg, tenant, policy), 201 if created else 200, tenant)


async def delete_policy(request: Request) -> Response:
    tenant = http.tenant_of(request)
    ctx = await http.request_context(request)
    type_iri = ctx.expand(request.path_params["type"])
    if type_iri not in _reg(request).tenant(tenant).policies:
        raise ResourceNotFound(f"no validation policy for type {type_iri}")
    await request.app.state.entities.delete(tenant, policy_id(type_iri))
    return http.empty(204, tenant=tenant or None)


# ---- schemas -------------------------------------------------------------------------------------
def _schema_id(request: Request) -> str:
    sid = request.path_params["sid"]
    if not SCHEMA_ID.match(sid):
        raise BadRequestData("a schema id is 1-128 characters of [A-Za-z0-9._-], starting with a letter or digit")
    return str(sid)


async def list_schemas(request: Request) -> Response:
    tenant = http.tenant_of(request)
    items = [{"id": s.schema_id, "uris": s.uris, "title": s.document.get("title")}
             for s in sorted(_reg(request).tenant(tenant).schemas.values(), key=lambda s: s.schema_id)]
    return _json(items, tenant=tenant)


async def get_schema(request: Request) -> Response:
    tenant = http.tenant_of(request)
    s = _reg(request).tenant(tenant).schemas.get(_schema_id(request))
    if s is None:
        raise ResourceNotFound(f"no registered schema {request.path_params['sid']}")
    return _json(s.document, tenant=tenant)


async def put_schema(request: Request) -> Response:
    """Register (or replace) a Draft 2020-12 schema; every ``$ref`` must resolve offline now."""
    tenant = http.tenant_of(request)
    sid = _schema_id(request)
    body, _ = await http.read_json(request, int(request.app.state.settings.max_body_bytes))
    check_schema_document(body)
    reg = _reg(request)
    new = RegisteredSchema(sid, body)
    registry = reg.tenant_registry(tenant, extra=new)
    try:
        await anyio.to_thread.run_sync(lambda: compile_model("schema:" + sid, "", "custom", body, registry))
    except Exception as e:   # Unresolvable and friends: name the reference
        raise BadRequestData(f"schema {sid}: $ref {e} cannot be resolved offline (register the referenced "
                             "schema first, by its $id or as urn:urbanmim:schema:<id>)") from None
    created = sid not in reg.tenant(tenant).schemas
    await _upsert(request, tenant, new.to_entity())
    return _json({"id": sid, "uris": new.uris}, 201 if created else 200, tenant)


async def delete_schema(request: Request) -> Response:
    tenant = http.tenant_of(request)
    sid = _schema_id(request)
    tm = _reg(request).tenant(tenant)
    if sid not in tm.schemas:
        raise ResourceNotFound(f"no registered schema {sid}")
    users = [p.type_iri for p in tm.policies.values() if p.source == "schema:" + sid]
    if users:
        raise Conflict(f"schema {sid} is used by the validation policies of {', '.join(users)}")
    await request.app.state.entities.delete(tenant, schema_entity_id(sid))
    return http.empty(204, tenant=tenant or None)


# ---- dry run, reports, official models ------------------------------------------------------------
async def validate(request: Request) -> Response:
    """Validate an entity payload without storing it: against ``?source=`` (any mode) or else
    against the tenant's policies for its types (those not ``off``)."""
    tenant = http.tenant_of(request)
    body, ctype = await http.read_json(request, int(request.app.state.settings.max_body_bytes))
    if not isinstance(body, dict):
        raise InvalidRequest("the payload must be one entity (a JSON object)")
    ctx = await http.request_context(request, body, ctype)
    ent = parse_entity(body, ctx)
    reg = _reg(request)
    source = request.query_params.get("source")
    targets: list[tuple[Policy, Any]] = []
    if source:
        name = ctx.compact(ent["type"][0])
        if source.startswith("sdm:"):
            model = await anyio.to_thread.run_sync(reg.catalog.lookup, source)
            source, name = model.source, model.name
        targets.append((Policy(ent["type"][0], name, "strict", source), ctx))
    else:
        pols = reg.tenant(tenant).policies
        targets += [(pols[t], reg.policy_context(pols[t])) for t in ent["type"] if t in pols and
                    pols[t].mode != "off"]
    results = []
    for policy, tm in targets:
        cm = await anyio.to_thread.run_sync(reg.compile, tenant, policy.source, policy.type_name)
        issues = cm.validate(ent, tm)
        results.append({"type": policy.type_iri, "source": policy.source, "mode": policy.mode, "level": cm.level,
                        "valid": not issues, "issues": [i.to_json() for i in issues],
                        "keyValues": key_values(ent, cm.type_name, tm, cm.attributes)[0]})
    return _json({"valid": all(r["valid"] for r in results), "checked": len(results), "results": results},
                 tenant=tenant)


async def reports(request: Request) -> Response:
    """The tenant's latest validation reports (warn and strict), newest first; in memory only."""
    tenant = http.tenant_of(request)
    p = request.query_params
    try:
        limit = max(0, min(int(p.get("limit", "100")), 1000))
    except ValueError:
        raise InvalidRequest("limit must be an integer") from None
    items = list(_reg(request).tenant(tenant).reports)
    if "entityId" in p:
        items = [e for e in items if e["entityId"] == p["entityId"]]
    if "mode" in p:
        items = [e for e in items if e["mode"] == p["mode"]]
    return _json(items[:limit], tenant=tenant)


async def sdm_model(request: Request) -> Response:
    """What the platform knows offline about an official model (``/sdm/AirQualityObserved``)."""
    reg = _reg(request)
    ref = "sdm:" + request.path_params["ref"]
    model = await anyio.to_thread.run_sync(reg.catalog.lookup, ref)
    cm = await anyio.to_thread.run_sync(reg.compile, "", model.source, model.name)
    return _json({"source": model.source, "subject": model.subject, "name": model.name, "$id": model.schema_id,
                  "version": model.version, "level": cm.level, "required": sorted(cm.required),
                  "attributes": {a: cm.ngsi.get(a) for a in sorted(cm.attributes)}})


routes = [
    Route("/policies", list_policies, methods=["GET"]),
    Route("/policies/{type:path}", get_policy, methods=["GET"]),
    Route("/policies/{type:path}", put_policy, methods=["PUT"]),
    Route("/policies/{type:path}", delete_policy, methods=["DELETE"]),
    Route("/schemas", list_schemas, methods=["GET"]),
    Route("/schemas/{sid}", get_schema, methods=["GET"]),
    Route("/schemas/{sid}", put_schema, methods=["PUT"]),
    Route("/schemas/{sid}", delete_schema, methods=["DELETE"]),
    Route("/validate", validate, methods=["POST"]),
    Route("/reports", reports, methods=["GET"]),
    Route("/sdm/{ref:path}", sdm_model, methods=["GET"]),
]
