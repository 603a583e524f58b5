"""/jsonldContexts — hosted and cached @context documents (clause 5.13).

The core @context is built in (never fetched), but the API still shows it the way the
spec describes a broker's view of it: a ``Cached`` context that can be served (with or
without details) and reloaded, but never deleted.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from urbanmim.errors import BadRequestData, InvalidRequest, ResourceNotFound
from urbanmim.ngsild import http, params
from urbanmim.ngsild.contexts import CORE_CONTEXT_URL, HOSTED_PATH, StoredContext, is_core_url
from urbanmim.ngsild.core_context import CORE_CONTEXT

KINDS = {"Hosted", "Cached", "ImplicitlyCreated"}
CORE_LOCAL_ID = "ngsi-ld-core-context"
_CORE_ENTRY = StoredContext(id=CORE_LOCAL_ID, url=CORE_CONTEXT_URL, kind="Cached", document=CORE_CONTEXT,
                            created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
_CORE_BODY = http.dumps({"@context": CORE_CONTEXT})


def _is_core(cid: str) -> bool:
    """``cid`` names the core @context (its localId or any of its versioned URLs)."""
    return cid == CORE_LOCAL_ID or cid == CORE_CONTEXT_URL or is_core_url(cid) \
        or (cid.startswith(CORE_LOCAL_ID) and cid.endswith(".jsonld"))


def _details(c: StoredContext, base: str) -> dict[str, Any]:
    d: dict[str, Any] = {"URL": c.url if c.kind != "Hosted" else base + HOSTED_PATH + c.id, "localId": c.id,
                         "kind": c.kind, "createdAt": c.created_at}
    if c.kind == "Cached":
        if c.last_used_at is not None:  # optional member: absent rather than null when never used
            d["lastUsage"] = c.last_used_at
        d["numberOfHits"] = c.uses
    return d


def _find(request: Request, cid: str) -> StoredContext | None:
    reg = request.app.state.contexts
    for c in reg.documents.values():
        if c.id == cid or c.url == cid:
            return c
    return None


async def add_context(request: Request) -> Response:
    """Host a new @context (clause 5.13.2).

    A payload that is not an object with an ``@context`` member is a malformed request
    (InvalidRequest); an ``@context`` that JSON-LD processing rejects is BadRequestData.
    """
    body, _ = await http.read_json(request, int(request.app.state.settings.max_body_bytes))
    if not isinstance(body, dict) or "@context" not in body:
        raise InvalidRequest("the payload must be a JSON object with an @context member")
    value = body["@context"]
    if not isinstance(value, (dict, list, str)):
        raise BadRequestData("@context must be an object, a URL or a list of them")
    reg = request.app.state.contexts
    cid = uuid.uuid4().hex
    base = str(request.base_url).rstrip("/")
    url = base + HOSTED_PATH + cid
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    reg.resolve_sync(value)  # reject a context that does not process
    reg.documents[url] = StoredContext(id=cid, url=url, kind="Hosted", document=value, created_at=created)
    await request.app.state.store.save_context(cid, url, value, created)
    return http.empty(201, {"Location": HOSTED_PATH + cid})


async def list_contexts(request: Request) -> Response:
    p = request.query_params
    details = params.parse_bool(p, "details")
    kind = p.get("kind")
    if kind is not None and kind not in KINDS:
        raise BadRequestData(f"kind must be one of {', '.join(sorted(KINDS))}")
    base = str(request.base_url).rstrip("/")
    items = [c for c in request.app.state.contexts.documents.values() if kind is None or c.kind == kind]
    if details:
        body: Any = [_details(c, base) for c in items]
    else:
        body = [c.url if c.kind != "Hosted" else base + HOSTED_PATH + c.id for c in items]
    return Response(http.dumps(body), media_type=http.JSON)


async def serve_context(request: Request) -> Response:
    """Serve a @context (clause 5.13.4): the document as application/json, or its details.

    Serving the document counts as a use of a Cached context; asking for its details does not.
    """
    cid = request.path_params["cid"]
    details = params.parse_bool(request.query_params, "details")
    base = str(request.base_url).rstrip("/")
    if _is_core(cid):
        if details:
            return Response(http.dumps(_details(_CORE_ENTRY, base)), media_type=http.JSON)
        return Response(_CORE_BODY, media_type=http.JSON)
    c = _find(request, cid)
    if c is None:
        raise ResourceNotFound(f"no @context {cid}")
    if details:
        return Response(http.dumps(_details(c, base)), media_type=http.JSON)
    if c.kind == "Cached":
        c.uses += 1
    return Response(http.dumps({"@context": c.document}), media_type=http.JSON)


async def delete_context(request: Request) -> Response:
    """Delete a hosted/cached @context, or with ``reload=true`` fetch a cached one again (clause 5.13.5).

    ``reload`` only applies to Cached contexts: an id that names no Cached context is
    BadRequestData (not 404). The core @context cannot be deleted; reloading it is a
    no-op success because it is built in.
    """
    cid = request.path_params["cid"]
    reload = params.parse_bool(request.query_params, "reload")
    reg = request.app.state.contexts
    if _is_core(cid):
        if reload:
            return http.empty(204)
        raise BadRequestData("the core @context cannot be deleted")
    c = _find(request, cid)
    if reload:
        if c is None or c.kind != "Cached":
            kind = "unknown" if c is None else c.kind
            raise BadRequestData(f"reload is only possible for Cached @contexts ({cid} is {kind})")
        reg.documents.pop(c.url, None)
        try:
            reg.load_document(c.url)
        except Exception:
            reg.documents[c.url] = c
            raise
        fresh = reg.documents.get(c.url)
        if fresh is not None:  # same identity, fresh document
            fresh.id, fresh.created_at, fresh.uses, fresh.last_used_at = c.id, c.created_at, c.uses, c.last_used_at
        reg.forget(c.url)
        return http.empty(204)
    if c is None:
        raise ResourceNotFound(f"no @context {cid}")
    reg.documents.pop(c.url, None)
    reg.forget(c.url)
    if c.kind == "Hosted":
        await request.app.state.store.delete_context(c.id)
    return http.empty(204)


routes = [
    Route("/jsonldContexts", add_context, methods=["POST"]),
    Route("/jsonldContexts", list_contexts, methods=["GET"]),
    Route("/jsonldContexts/{cid:path}", serve_context, methods=["GET"]),
    Route("/jsonldContexts/{cid:path}", delete_context, methods=["DELETE"]),
]
