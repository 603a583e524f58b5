"""HTTP edge of the NGSI-LD API: body and header parsing, content negotiation, responses.

Routes stay thin by calling these helpers: :func:`read_json` (size limit, media type,
JSON), :func:`request_context` (Link header or body @context → TermMap),
:func:`negotiate` (Accept → json / ld+json / geo+json) and :func:`respond` (orjson body
plus the Link header or @context the spec asks for). :func:`problem_response` is the
only place an error becomes an HTTP answer. :data:`QUERY_PARAMS` says which URI
parameters each operation defines; ``app.py`` wraps the routes once at start-up with
:func:`known_params` so any other parameter is a 400 InvalidRequest before the handler runs.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from urbanmim.errors import (
    BadRequestData,
    InvalidRequest,
    NgsiError,
    NonexistentTenant,
    NotAcceptable,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from urbanmim.ngsild.contexts import CORE, TermMap

log = logging.getLogger(__name__)

JSON = "application/json"
JSONLD = "application/ld+json"
GEOJSON = "application/geo+json"
MERGE_PATCH = "application/merge-patch+json"
LINK_REL = "http://www.w3.org/ns/json-ld#context"
TENANT_HEADER = "NGSILD-Tenant"
DEFAULT_TENANT = ""
_LINK_RE = re.compile(r"<([^>]*)>")

Endpoint = Callable[[Request], Awaitable[Response]]


def _params(*names: str) -> frozenset[str]:
    return frozenset(names)


# URI parameters per operation (ETSI GS CIM 009 V1.9.1 clause 6, "URI parameters" of each
# resource; ``local`` is accepted everywhere the distributed-operation flag applies).
# Keyed by (HTTP method, route path as declared in routes/). A route without an entry is
# not checked, so a new route is never broken by this table — only left unguarded.
_QUERY = _params("id", "type", "idPattern", "attrs", "pick", "omit", "q", "csf", "georel", "geometry",
                 "coordinates", "geoproperty", "geometryProperty", "lang", "scopeQ", "options", "format",
                 "limit", "offset", "count", "local", "datasetId", "join", "joinLevel", "containedBy",
                 "entityMap", "expandValues", "orderBy")
_RETRIEVE = _params("type", "attrs", "pick", "omit", "geometryProperty", "lang", "options", "format", "local",
                    "datasetId", "join", "joinLevel", "containedBy", "entityMap", "expandValues")
_WRITE = _params("type", "local", "options", "observedAt", "lang", "format")
_E = "/entities/{entity_id:path}"
_T = "/temporal/entities/{entity_id:path}"
_TEMPORAL = _params("timerel", "timeAt", "endTimeAt", "timeproperty", "lastN", "aggrMethods", "aggrPeriodDuration")
QUERY_PARAMS: dict[tuple[str, str], frozenset[str]] = {
    ("POST", "/entities"): _params("local"),
    ("POST", "/entityOperations/query"): _params("options", "local", "limit", "offset", "count", "orderBy",
                                                 "format"),
    ("GET", "/entities"): _QUERY,
    ("DELETE", "/entities"): _QUERY | {"keep", "drop"},  # purge (5.6.21): an entity query + keep/drop
    ("GET", _E): _RETRIEVE,
    ("DELETE", _E): _params("type", "local"),
    ("PUT", _E): _WRITE,
    ("PATCH", _E): _WRITE,
    ("POST", _E + "/attrs"): _WRITE,
    ("PATCH", _E + "/attrs"): _WRITE,
    ("PATCH", _E + "/attrs/{attr}"): _WRITE,
    ("PUT", _E + "/attrs/{attr}"): _WRITE,
    ("DELETE", _E + "/attrs/{attr}"): _params("type", "local", "datasetId", "deleteAll", "lang"),
    ("GET", "/types"): _params("details", "local"),
    ("GET", "/types/{type:path}"): _params("local"),
    ("GET", "/attributes"): _params("details", "type", "local"),
    ("GET", "/attributes/{attr:path}"): _params("local"),
    **{("POST", f"/entityOperations/{op}"): _params("options", "local")
       for op in ("create", "upsert", "update", "merge", "delete")},
    ("POST", "/jsonldContexts"): _params(),
    ("GET", "/jsonldContexts"): _params("details", "kind"),
    ("GET", "/jsonldContexts/{cid:path}"): _params("details"),
    ("DELETE", "/jsonldContexts/{cid:path}"): _params("reload"),
    ("GET", "/info/sourceIdentity"): _params(),
    # temporal API (clause 6.18-6.24); the temporal parameters of 6.3.x on top of the entity ones
    ("POST", "/temporal/entities"): _params("local"),
    ("GET", "/temporal/entities"): _QUERY | _TEMPORAL,
    ("POST", "/temporal/entityOperations/query"): _params("options", "local", "limit", "offset", "count",
                                                          "format"),
    ("GET", _T): _RETRIEVE | _TEMPORAL,
    ("DELETE", _T): _params("local"),
    ("POST", _T + "/attrs"): _params("local"),
    ("DELETE", _T + "/attrs/{attr}"): _params("local", "datasetId", "deleteAll"),
    ("PATCH", _T + "/attrs/{attr}/{instance}"): _params("local"),
    ("DELETE", _T + "/attrs/{attr}/{instance}"): _params("local"),
    ("POST", "/subscriptions"): _params(),
    ("GET", "/subscriptions"): _params("limit", "offset", "count", "local", "options"),
    ("GET", "/subscriptions/{sub_id:path}"): _params("options"),
    ("PATCH", "/subscriptions/{sub_id:path}"): _params(),
    ("DELETE", "/subscriptions/{sub_id:path}"): _params(),
}


def allowed_params(methods: Iterable[str], path: str) -> frozenset[str] | None:
    """The URI parameters a route defines, or None when the table does not know the route."""
    for m in methods:
        if m != "HEAD":
            return QUERY_PARAMS.get((m, path))
    return None


def known_params(endpoint: Endpoint, allowed: frozenset[str]) -> Endpoint:
    """Wrap ``endpoint`` so an undefined URI parameter is 400 InvalidRequest (clause 6.3.20)."""

    @functools.wraps(endpoint)
    async def checked(request: Request) -> Response:
        qp = request.query_params
        if qp:
            unknown = [k for k in qp.keys() if k not in allowed]
            if unknown:
                raise InvalidRequest(f"unknown query parameter(s) for this operation: {', '.join(sorted(unknown))}")
        return await endpoint(request)

    return checked


def problem_response(err: NgsiError, tenant: str | None = None) -> Response:
    """Render any platform error as NGSI-LD ProblemDetails (application/json)."""
    headers = {TENANT_HEADER: tenant} if tenant else None
    extra = getattr(err, "headers", None)      # e.g. WWW-Authenticate on 401, Retry-After on 429
    if extra:
        headers = {**(headers or {}), **extra}
    return Response(orjson.dumps(err.to_problem()), status_code=err.status, media_type=JSON, headers=headers)


def tenant_of(request: Request) -> str:
    t = request.headers.get(TENANT_HEADER)
    if t is None or t == "":
        return DEFAULT_TENANT
    if len(t) > 200 or not re.fullmatch(r"[A-Za-z0-9_\-.:/]+", t):
        raise BadRequestData(f"invalid tenant name {t!r}")
    return t


async def require_tenant(request: Request, store: Any) -> str:
    """The tenant of a read request, which must already exist (404 NonexistentTenant otherwise)."""
    tenant = tenant_of(request)
    if tenant != DEFAULT_TENANT and not await store.tenant_exists(tenant):
        raise NonexistentTenant(f"tenant {tenant} does not exist")
    return tenant


def _media(value: str | None) -> str:
    return (value or "").split(";")[0].strip().lower()


async def read_body(request: Request, max_bytes: int) -> bytes:
    clen = request.headers.get("content-length")
    if clen is not None:
        try:
            if int(clen) > max_bytes:
                raise PayloadTooLarge(f"request body larger than {max_bytes} bytes")
        except ValueError:
            raise InvalidRequest("invalid Content-Length") from None
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"request body larger than {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, max_bytes: int, *, merge_patch: bool = False) -> tuple[Any, str]:
    """The JSON body and its media type, checked against what NGSI-LD accepts."""
    ctype = _media(request.headers.get("content-type"))
    allowed = (JSON, JSONLD, MERGE_PATCH) if merge_patch else (JSON, JSONLD)
    if ctype not in allowed:
        raise UnsupportedMediaType(f"Content-Type {ctype or '(none)'} is not supported; use {' or '.join(allowed)}")
    raw = await read_body(request, max_bytes)
    if not raw:
        raise InvalidRequest("the request body is empty")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise InvalidRequest(f"the request body is not valid JSON: {e}") from None
    return body, ctype


def link_context_url(request: Request) -> str | None:
    link = request.headers.get("link")
    if not link:
        return None
    for part in link.split(","):
        if "json-ld#context" in part or LINK_REL in part:
            m = _LINK_RE.search(part)
            if m:
                return m.group(1).strip()
    m = _LINK_RE.search(link)
    return m.group(1).strip() if m else None


def context_source(request: Request, body: Any = None, ctype: str | None = None) -> Any:
    """The @context value a request brings: from the body (ld+json) or the Link header (json)."""
    link = link_context_url(request)
    if ctype == JSONLD:
        if link is not None:
            raise BadRequestData("a Link header must not be used with application/ld+json")
        if isinstance(body, list):
            ctxs = [b.get("@context") for b in body if isinstance(b, dict)]
            if not ctxs or any(c is None for c in ctxs):
                raise BadRequestData("every element of an application/ld+json payload needs an @context")
            return ctxs[0]
        if not isinstance(body, dict) or "@context" not in body:
            raise BadRequestData("application/ld+json payloads must contain an @context")
        return body["@context"]
    if ctype in (JSON, MERGE_PATCH):
        if isinstance(body, dict) and "@context" in body:
            raise BadRequestData("application/json payloads must not contain an @context (use a Link header)")
        if isinstance(body, list) and any(isinstance(b, dict) and "@context" in b for b in body):
            raise BadRequestData("application/json payloads must not contain an @context (use a Link header)")
    return link


async def request_context(request: Request, body: Any = None, ctype: str | None = None) -> TermMap:
    value = context_source(request, body, ctype)
    if value is None:
        return CORE
    registry = request.app.state.contexts
    return await registry.resolve(value)


def negotiate(request: Request, *, geo: bool = False) -> str:
    """Pick the response media type from Accept (json by default; 406 when nothing fits)."""
    accept = request.headers.get("accept")
    if not accept:
        return JSON
    best, best_q = None, -1.0
    for part in accept.split(","):
        bits = [b.strip() for b in part.split(";")]
        mt = bits[0].lower()
        q = 1.0
        for b in bits[1:]:
            if b.startswith("q="):
                try:
                    q = float(b[2:])
                except ValueError:
                    q = 0.0
        cand = None
        if mt in (JSON, JSONLD):
            cand = mt
        elif mt == GEOJSON and geo:
            cand = GEOJSON
        elif mt in ("*/*", "application/*"):
            cand = JSON
        if cand is not None and q > best_q and q > 0:
            best, best_q = cand, q
    if best is None:
        raise NotAcceptable(f"none of the media types in Accept ({accept}) can be produced")
    return best


def dumps(body: Any) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)


def respond(body: Any, ctx: TermMap, media: str, *, status: int = 200, headers: dict[str, str] | None = None,
            tenant: str | None = None) -> Response:
    """A JSON response carrying the @context the NGSI-LD way for its media type."""
    h = dict(headers or {})
    if tenant:
        h[TENANT_HEADER] = tenant
    if media == JSONLD:
        ctx_value = ctx.context_value
        if isinstance(body, list):
            body = [dict(b, **{"@context": ctx_value}) if isinstance(b, dict) else b for b in body]
        elif isinstance(body, dict):
            body = dict(body, **{"@context": ctx_value})
    elif media == GEOJSON:
        if isinstance(body, dict) and body.get("type") == "FeatureCollection":
            pass
        h["Link"] = f'<{ctx.link_url}>; rel="{LINK_REL}"; type="application/ld+json"'
    else:
        h["Link"] = f'<{ctx.link_url}>; rel="{LINK_REL}"; type="application/ld+json"'
    return Response(dumps(body), status_code=status, media_type=media, headers=h)


def empty(status: int = 204, headers: dict[str, str] | None = None, tenant: str | None = None) -> Response:
    h = dict(headers or {})
    if tenant:
        h[TENANT_HEADER] = tenant
    return Response(status_code=status, headers=h)
