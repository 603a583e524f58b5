"""/subscriptions (clause 5.8.1–5.8.5): create, query, retrieve, update, delete.

Validation and storage here; every write also refreshes the notifier's in-memory copy
(``app.state.subscriptions``: the matcher must never read subscriptions per change), and
reads show the live delivery counters (timesSent, lastSuccess...) the notifier keeps.
"""

from __future__ import annotations

import time
import uuid
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from urbanmim.errors import AlreadyExists, BadRequestData, ResourceNotFound
from urbanmim.ngsild import http, params
from urbanmim.ngsild.contexts import HOSTED_PATH, StoredContext, TermMap
from urbanmim.ngsild.payload import is_uri
from urbanmim.subscriptions import model

PATH = "/ngsi-ld/v1/subscriptions/"
MAX_LIMIT = 1000
DEFAULT_LIMIT = 20


def _limit(request: Request) -> int:
    return int(request.app.state.settings.max_body_bytes)


def _sub_id(request: Request) -> str:
    sid = request.path_params.get("sub_id", "")
    if not sid or not is_uri(sid):
        raise BadRequestData(f"subscription id {sid!r} is not a URI")
    return str(sid)


async def _read(request: Request, *, merge_patch: bool = False) -> tuple[dict[str, Any], TermMap, Any]:
    """Body, its TermMap and the @context value it brought (None: core only)."""
    body, ctype = await http.read_json(request, _limit(request), merge_patch=merge_patch)
    if not isinstance(body, dict):
        raise BadRequestData("a Subscription payload must be a JSON object")
    ctx_value = http.context_source(request, body, ctype)
    ctx = await http.request_context(request, body, ctype)
    return body, ctx, ctx_value


async def _check_json_ld_context(request: Request, members: dict[str, Any]) -> None:
    """An explicit ``jsonldContext`` must be a usable context (400 invalid, 504 unavailable)."""
    url = members.get("jsonldContext")
    if url is not None:
        await request.app.state.contexts.resolve(url)


def _implicit_context(request: Request, value: Any) -> str:
    """Register the request's inline/list @context as ImplicitlyCreated (clause 5.13) → its URL."""
    cid = uuid.uuid4().hex
    url = str(request.base_url).rstrip("/") + HOSTED_PATH + cid
    request.app.state.contexts.documents[url] = StoredContext(
        id=cid, url=url, kind="ImplicitlyCreated", document=value,
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return url


def _live(request: Request, tenant: str, doc: dict[str, Any]) -> dict[str, Any]:
    """The stored document with the notifier's delivery counters."""
    subs = getattr(request.app.state, "subscriptions", None)
    status = subs.status(tenant, doc["id"]) if subs is not None else {}
    if not status:
        return doc
    return {**doc, "notification": {**doc["notification"], **status}}


async def _refresh(request: Request, tenant: str, doc: dict[str, Any]) -> None:
    subs = getattr(request.app.state, "subscriptions", None)
    if subs is not None:
        await subs.put(tenant, doc)


async def create_subscription(request: Request) -> Response:
    tenant = http.tenant_of(request)
    store = request.app.state.store
    body, ctx, ctx_value = await _read(request)
    if "id" in body:
        sid = body["id"]
        if not isinstance(sid, str) or not is_uri(sid):
            raise BadRequestData(f"subscription id {sid!r} is not a URI")
    else:
        sid = f"urn:ngsi-ld:Subscription:{uuid.uuid4()}"
    doc = model.new_subscription(body, ctx, sub_id=sid, ctx_value=ctx_value)
    await _check_json_ld_context(request, doc)
    if await store.get_subscription(tenant, sid) is not None:
        raise AlreadyExists(f"subscription {sid} already exists")
    one_url = isinstance(ctx_value, list) and len(ctx_value) == 1 and isinstance(ctx_value[0], str)
    if "jsonldContext" not in doc and ctx_value is not None and not one_url:
        # A Link header carries exactly one context URL. A single URL is linked as it is; a list of
        # several contexts or an inline one is hosted as an ImplicitlyCreated context (clause 5.13)
        # so that notifications have one URL to link.
        doc["jsonldContext"] = ctx_value if isinstance(ctx_value, str) else _implicit_context(request, ctx_value)
        doc["_implicitContext"] = True     # notifications announce the subscriber's own context URL
    await store.save_subscription(tenant, sid, doc)
    await _refresh(request, tenant, doc)
    return http.empty(201, {"Location": PATH + quote(sid, safe=":")}, tenant=tenant or None)


async def query_subscriptions(request: Request) -> Response:
    tenant = await http.require_tenant(request, request.app.state.store)
    media = http.negotiate(request)
    ctx = await http.request_context(request)
    p = request.query_params
    limit = params.parse_int(p, "limit", DEFAULT_LIMIT)
    offset = params.parse_int(p, "offset", 0)
    count = params.parse_bool(p, "count")
    if limit > MAX_LIMIT:
        raise BadRequestData(f"limit must not exceed {MAX_LIMIT}")
    if limit == 0 and not count:
        raise BadRequestData("limit=0 is only allowed together with count=true")
    sys_attrs = "sysAttrs" in params.options_of(p)
    docs, total = await request.app.state.store.list_subscriptions(tenant, limit, offset)
    body = [model.render(_live(request, tenant, d), ctx, sys_attrs=sys_attrs) for d in docs]
    headers = {"NGSILD-Results-Count": str(total)} if count else {}
    resp = http.respond(body, ctx, media, headers=headers, tenant=tenant or None)
    links = []   # clause 4.12 pagination: limit then offset, typed with the response's media type
    if limit > 0 and offset > 0:
        links.append(f'<{PATH.rstrip("/")}?limit={limit}&offset={max(0, offset - limit)}>;rel="prev";type="{media}"')
    if limit > 0 and offset + len(docs) < total:
        links.append(f'<{PATH.rstrip("/")}?limit={limit}&offset={offset + limit}>;rel="next";type="{media}"')
    if links:
        existing = resp.headers.get("Link")
        resp.headers["Link"] = ", ".join(([existing] if existing else []) + links)
    return resp


async def retrieve_subscription(request: Request) -> Response:
    tenant = await http.require_tenant(request, request.app.state.store)
    sid = _sub_id(request)
    media = http.negotiate(request)
    ctx = await http.request_context(request)
    sys_attrs = "sysAttrs" in params.options_of(request.query_params)
    doc = await request.app.state.store.get_subscription(tenant, sid)
    if doc is None:
        raise ResourceNotFound(f"subscription {sid} does not exist")
    body = model.render(_live(request, tenant, doc), ctx, sys_attrs=sys_attrs)
    return http.respond(body, ctx, media, tenant=tenant or None)


async def update_subscription(request: Request) -> Response:
    tenant = http.tenant_of(request)
    sid = _sub_id(request)
    store = request.app.state.store
    body, ctx, ctx_value = await _read(request, merge_patch=True)
    current = await store.get_subscription(tenant, sid)
    if current is None:
        raise ResourceNotFound(f"subscription {sid} does not exist")
    doc = model.merge_fragment(current, body, ctx, ctx_value=ctx_value)
    if doc.get("jsonldContext") != current.get("jsonldContext"):
        await _check_json_ld_context(request, doc)
    await store.save_subscription(tenant, sid, doc)
    await _refresh(request, tenant, doc)
    return http.empty(204, tenant=tenant or None)


async def delete_subscription(request: Request) -> Response:
    tenant = http.tenant_of(request)
    sid = _sub_id(request)
    if not await request.app.state.store.delete_subscription(tenant, sid):
        raise ResourceNotFound(f"subscription {sid} does not exist")
    subs = getattr(request.app.state, "subscriptions", None)
    if subs is not None:
        await subs.remove(tenant, sid)
    return http.empty(204, tenant=tenant or None)


routes = [
    Route("/subscriptions", create_subscription, methods=["POST"]),
    Route("/subscriptions", query_subscriptions, methods=["GET"]),
    Route("/subscriptions/{sub_id:path}", retrieve_subscription, methods=["GET"]),
    Route("/subscriptions/{sub_id:path}", update_subscription, methods=["PATCH"]),
    Route("/subscriptions/{sub_id:path}", delete_subscription, methods=["DELETE"]),
]
