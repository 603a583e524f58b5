"""DELETE /entities — Purge Entities (clause 5.6.21, binding 6.4.3.3).

Deletes every entity matching a query, or (with ``keep`` / ``drop``) only trims their
attributes. Because one request can wipe a whole tenant, the spec asks for a *qualifying*
restriction before anything is touched (5.6.21.4): an entity type, an attribute list or a
q naming at least one non-system attribute, a geo-query, or ``local=true``. ``id`` and
``idPattern`` narrow the set but do not qualify on their own (``idPattern=.*`` must not
become an unfiltered delete). Every check runs before the first write.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from urbanmim.errors import BadRequestData, InvalidRequest
from urbanmim.ngsild import http, params
from urbanmim.ngsild.entity import NGSILD

# system-generated members: a filter on them alone does not qualify a purge (5.6.21.4 b, c)
SYSTEM_ATTRS = frozenset(NGSILD + n for n in ("createdAt", "modifiedAt", "deletedAt", "observedAt", "id", "type",
                                              "scope"))


def _names(value: str | None, what: str) -> list[str] | None:
    names = params.split_list(value)
    if names is not None:
        for n in names:
            if "{" in n or "}" in n:
                raise BadRequestData(f"{what} cannot use linked-entity projection ({n!r}) in a purge")
    return names


async def purge_entities(request: Request) -> Response:
    tenant = await http.require_tenant(request, request.app.state.store)
    p = request.query_params
    ctx = await http.request_context(request)
    keep_names, drop_names = _names(p.get("keep"), "keep"), _names(p.get("drop"), "drop")
    if keep_names is not None and drop_names is not None:
        raise BadRequestData("keep and drop cannot be used together")
    _names(p.get("attrs"), "attrs")
    local = params.parse_bool(p, "local")
    try:
        query = params.entity_query(p, ctx, tenant, require_filter=False)
    except InvalidRequest as e:  # 5.6.21.4: an invalid id, q or geo-query is BadRequestData here
        raise BadRequestData(e.detail) from None
    if query.q is not None and query.q.link_depth() > 0:
        raise BadRequestData("q cannot follow relationships (linked-entity query) in a purge")
    qualifies = (
        local
        or query.types is not None
        or query.geo is not None
        or bool(query.attrs and query.attrs - SYSTEM_ATTRS)
        or bool(query.q is not None and query.q.attributes() - SYSTEM_ATTRS)
    )
    if not qualifies:
        raise BadRequestData("a purge needs type, attrs or q over a non-system attribute, a geo-query, "
                             "or local=true")
    keep = {ctx.expand(n) for n in keep_names} if keep_names is not None else None
    drop = {ctx.expand(n) for n in drop_names} if drop_names is not None else None
    await request.app.state.entities.purge(query, keep=keep, drop=drop)
    return http.empty(204, tenant=tenant or None)
