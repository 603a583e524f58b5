"""/jsonldContexts — hosted and cached @context documents (clause 5.13)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from urbanmim.errors import BadRequestData, OperationNotSupported, ResourceNotFound
from urbanmim.ngsild import http, params
from urbanmim.ngsild.contexts import CORE_CONTEXT_URL, HOSTED_PATH, StoredContext
from urbanmim.ngsild.core_context import CORE_CONTEXT

KINDS = {"Hosted", "Cached", "ImplicitlyCreated"}


def _details(c: StoredContext, base: str) -> dict[str, Any]:
    d = {"URL": c.url if c.kind != "Hosted" else base + HOSTED_PATH + c.id, "localId": c.id, "kind": c.kind,
         "createdAt": c.created_at}
    if c.kind == "Cached":
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
    body, _ = await http.read_json(request, int(request.app.state.settings.max_body_bytes))
    if not isinstance(body, dict) or "@context" not in body:
        raise BadRequestData("the payload must be a JSON object with an @context member")
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
    cid = request.path_params["cid"]
    p = request.query_params
    details = params.parse_bool(p, "details")
    if cid in ("ngsi-ld-core-context", CORE_CONTEXT_URL) or cid.startswith("ngsi-ld-core-context"):
        return Response(http.dumps({"@context": CORE_CONTEXT}), media_type=http.JSONLD)
    c = _find(request, cid)
    if c is None:
        raise ResourceNotFound(f"no @context {cid}")
    if details:
        return Response(http.dumps(_details(c, str(request.base_url).rstrip("/"))), media_type=http.JSON)
    if c.kind == "Cached":
        c.uses += 1
    return Response(http.dumps({"@context": c.document}), media_type=http.JSONLD)


async def delete_context(request: Request) -> Response:
    cid = request.path_params["cid"]
    reload = params.parse_bool(request.query_params, "reload")
    reg = request.app.state.contexts
    if cid.startswith("ngsi-ld-core-context") or cid == CORE_CONTEXT_URL:
        raise BadRequestData("the core @context cannot be deleted")
    c = _find(request, cid)
    if c is None:
        raise ResourceNotFound(f"no @context {cid}")
    if reload:
        if c.kind == "Hosted":
            raise BadRequestData("reload is only possible for cached @contexts")
        reg.documents.pop(c.url, None)
        reg.forget(c.url)
        try:
            reg.load_document(c.url)
        except Exception:
            reg.documents[c.url] = c
            raise
        return http.empty(204)
    reg.documents.pop(c.url, None)
    reg.forget(c.url)
    if c.kind == "Hosted":
        await request.app.state.store.delete_context(c.id)
    elif c.kind == "ImplicitlyCreated":
        raise OperationNotSupported("implicitly created @contexts cannot be deleted")
    return http.empty(204)


routes = [
    Route("/jsonldContexts", add_context, methods=["POST"]),
    Route("/jsonldContexts", list_contexts, methods=["GET"]),
    Route("/jsonldContexts/{cid:path}", serve_context, methods=["GET"]),
    Route("/jsonldContexts/{cid:path}", delete_context, methods=["DELETE"]),
]
