"""/entityOperations — batch create, upsert, update, delete, merge (clause 5.6.7–5.6.10, 5.6.20).

Every batch is one call to the store: all its mutations run in one writer transaction
(each isolated by a savepoint), so a batch of 1,000 entities costs one commit, and a
payload error in one entity is reported for that entity alone (207).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from urbanmim.errors import BadRequestData, NgsiError
from urbanmim.ngsild import http, params
from urbanmim.ngsild.contexts import TermMap
from urbanmim.ngsild.payload import check_entity_id, parse_entity, parse_fragment
from urbanmim.service.entities import EntityService
from urbanmim.store.base import Mutation, Outcome


async def _entities_body(request: Request) -> tuple[list[Any], str, list[TermMap | NgsiError]]:
    """The batch array, the tenant and, per entity, its @context (or the error that entity alone gets).

    6.3.5: with ``application/json`` the context comes from the Link header and an entity
    carrying an ``@context`` is rejected; with ``application/ld+json`` each entity brings its
    own ``@context`` and a Link header is an error of the whole request. An entity-level
    problem is reported for that entity (207), the others still run.
    """
    tenant = http.tenant_of(request)
    body, ctype = await http.read_json(request, int(request.app.state.settings.max_batch_bytes))
    if not isinstance(body, list):
        raise BadRequestData("a batch operation needs a JSON array")
    if not body:
        raise BadRequestData("the batch is empty")
    if not all(isinstance(item, dict) for item in body):
        raise BadRequestData("every element of a batch must be an entity (a JSON object)")
    ctxs: list[TermMap | NgsiError] = []
    if ctype == http.JSONLD:
        if http.link_context_url(request) is not None:
            raise BadRequestData("a Link header must not be used with application/ld+json")
        reg = request.app.state.contexts
        for item in body:
            if "@context" not in item:
                ctxs.append(BadRequestData("an entity of an application/ld+json batch needs an @context"))
                continue
            try:
                ctxs.append(await reg.resolve(item["@context"]))
            except NgsiError as e:
                ctxs.append(e)
    else:
        ctx = await http.request_context(request)
        for item in body:
            if "@context" in item:
                ctxs.append(BadRequestData("an application/json entity must not contain an @context "
                                           "(use a Link header)"))
            else:
                ctxs.append(ctx)
    return body, tenant, ctxs


def _error_entry(entity_id: Any, err: Exception) -> dict[str, Any]:
    e = err if isinstance(err, NgsiError) else BadRequestData(str(err))
    return {"entityId": entity_id, "error": e.to_problem()}


def _prepare(items: list[Any], ctxs: list[TermMap | NgsiError], make: Any) -> tuple[list[Mutation],
                                                                                     list[dict[str, Any]]]:
    """Parse every item; context and parse errors become per-entity errors, the rest mutations."""
    muts: list[Mutation] = []
    errors: list[dict[str, Any]] = []
    for item, ctx in zip(items, ctxs, strict=True):
        eid = item.get("id") if isinstance(item, dict) else None
        try:
            if isinstance(ctx, NgsiError):
                raise ctx
            muts.append(make(item, ctx))
        except NgsiError as e:
            errors.append(_error_entry(eid, e))
    return muts, errors


def _split(outcomes: list[Outcome]) -> tuple[list[Outcome], list[dict[str, Any]]]:
    ok = [o for o in outcomes if o.error is None]
    errs = [_error_entry(o.entity_id, o.error) for o in outcomes if o.error is not None]
    return ok, errs


def _multi(success: list[str], errors: list[dict[str, Any]], tenant: str) -> Response:
    return Response(http.dumps({"success": success, "errors": errors}), status_code=207,
                    media_type=http.JSON, headers={http.TENANT_HEADER: tenant} if tenant else None)


async def batch_create(request: Request) -> Response:
    items, tenant, ctxs = await _entities_body(request)
    muts, errors = _prepare(items, ctxs, lambda it, c: (lambda e: Mutation(e["id"], EntityService.create_fn(e)))(
        parse_entity(it, c)))
    ok, errs = _split(await request.app.state.entities.batch(tenant, muts))
    errors += errs
    ids = [o.entity_id for o in ok]
    if errors:
        return _multi(ids, errors, tenant)
    return Response(http.dumps(ids), status_code=201, media_type=http.JSON,
                    headers={http.TENANT_HEADER: tenant} if tenant else None)


async def batch_upsert(request: Request) -> Response:
    opts = params.options_of(request.query_params)
    if opts - {"replace", "update"} or opts >= {"replace", "update"}:
        raise BadRequestData("options must be replace or update")
    update = "update" in opts
    items, tenant, ctxs = await _entities_body(request)

    def make(item: Any, ctx: TermMap) -> Mutation:
        ent = parse_entity(item, ctx)
        if update:
            frag = {"attrs": ent["attrs"], "type": ent["type"]}
            if "scope" in ent:
                frag["scope"] = ent["scope"]
            append = EntityService.append_fn(ent["id"], frag, no_overwrite=False)
            create = EntityService.create_fn(ent)

            def fn(cur: Any) -> tuple[Any, Any]:
                if cur is None:
                    new, _ = create(None)
                    return new, "created"
                new, _ = append(cur)
                return new, "updated"
            return Mutation(ent["id"], fn)
        replace = EntityService.replace_fn(ent, must_exist=False)

        def rfn(cur: Any) -> tuple[Any, Any]:
            new, _ = replace(cur)
            return new, "created" if cur is None else "replaced"
        return Mutation(ent["id"], rfn)

    muts, errors = _prepare(items, ctxs, make)
    ok, errs = _split(await request.app.state.entities.batch(tenant, muts))
    errors += errs
    created = list(dict.fromkeys(o.entity_id for o in ok if o.result == "created"))
    if errors:
        return _multi(list(dict.fromkeys(o.entity_id for o in ok)), errors, tenant)
    if created:
        return Response(http.dumps(created), status_code=201, media_type=http.JSON,
                        headers={http.TENANT_HEADER: tenant} if tenant else None)
    return http.empty(204, tenant=tenant or None)


async def batch_update(request: Request) -> Response:
    opts = params.options_of(request.query_params)
    if opts - {"noOverwrite"}:
        raise BadRequestData("the only option of a batch update is noOverwrite")
    items, tenant, ctxs = await _entities_body(request)

    def make(item: Any, ctx: TermMap) -> Mutation:
        if not isinstance(item, dict):
            raise BadRequestData("each batch element must be an entity object")
        eid = check_entity_id(item.get("id"))
        frag = parse_fragment({k: v for k, v in item.items() if k != "id"}, ctx)
        return Mutation(eid, EntityService.append_fn(eid, frag, no_overwrite="noOverwrite" in opts))

    muts, errors = _prepare(items, ctxs, make)
    outcomes = await request.app.state.entities.batch(tenant, muts)
    ok, errs = _split(outcomes)
    errors += errs
    for o in ok:
        if o.result is not None and o.result.not_updated:
            errors.append({"entityId": o.entity_id, "error": BadRequestData(
                "some attributes were not updated: " + ", ".join(a for a, _ in o.result.not_updated)).to_problem()})
    if errors:
        bad = {e["entityId"] for e in errors}
        return _multi([o.entity_id for o in ok if o.entity_id not in bad], errors, tenant)
    return http.empty(204, tenant=tenant or None)


async def batch_merge(request: Request) -> Response:
    items, tenant, ctxs = await _entities_body(request)

    def make(item: Any, ctx: TermMap) -> Mutation:
        if not isinstance(item, dict):
            raise BadRequestData("each batch element must be an entity object")
        eid = check_entity_id(item.get("id"))
        frag = parse_fragment({k: v for k, v in item.items() if k != "id"}, ctx, allow_null=True)
        return Mutation(eid, EntityService.merge_fn(eid, frag))

    muts, errors = _prepare(items, ctxs, make)
    ok, errs = _split(await request.app.state.entities.batch(tenant, muts))
    errors += errs
    if errors:
        return _multi([o.entity_id for o in ok], errors, tenant)
    return http.empty(204, tenant=tenant or None)


async def batch_delete(request: Request) -> Response:
    tenant = http.tenant_of(request)
    body, _ = await http.read_json(request, int(request.app.state.settings.max_batch_bytes))
    if not isinstance(body, list) or not body:
        raise BadRequestData("a batch delete needs a non-empty JSON array of entity ids")
    muts: list[Mutation] = []
    errors: list[dict[str, Any]] = []
    svc = request.app.state.entities
    for eid in body:
        try:
            check_entity_id(eid)
        except NgsiError as e:
            errors.append(_error_entry(eid, e))
            continue

        def fn(cur: Any, eid: str = eid) -> tuple[Any, Any]:
            from urbanmim.errors import ResourceNotFound
            if cur is None:
                raise ResourceNotFound(f"entity {eid} not found")
            return None, None
        muts.append(Mutation(eid, fn))
    ok, errs = _split(await svc.batch(tenant, muts))
    errors += errs
    if errors:
        return _multi([o.entity_id for o in ok], errors, tenant)
    return http.empty(204, tenant=tenant or None)


routes = [
    Route("/entityOperations/create", batch_create, methods=["POST"]),
    Route("/entityOperations/upsert", batch_upsert, methods=["POST"]),
    Route("/entityOperations/update", batch_update, methods=["POST"]),
    Route("/entityOperations/merge", batch_merge, methods=["POST"]),
    Route("/entityOperations/delete", batch_delete, methods=["POST"]),
]
