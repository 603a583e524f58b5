"""The ASGI layer of MIM6: who is asking (authentication), may they ask at all, and how often.

Why a middleware for identity but not for decisions: identity and rate limits are properties
of the *request* (headers, client), decided once before any route runs; what the caller may
see or write depends on each *entity* and is decided in the service layer (``enforce.py``).

Per request, with security on:

1. credentials → :class:`Principal` (``Authorization: Bearer <JWT>``, ``Authorization:
   ApiKey <key>`` or ``X-Api-Key``); refused credentials → 401 with ``WWW-Authenticate``;
   no credentials → ``ANONYMOUS``;
2. anonymous callers may only read public paths (home page, JWKS, @contexts, the algorithm
   register) and the tenants listed in ``public_tenants``; anything else → 401;
3. the device agent's ``/iot/v1/measurements`` authenticates devices by their own keys and
   writes as the platform (as its MQTT ingestion does); provisioning ``/iot/v1/devices``
   needs an admin or editor of the tenant;
4. the client's token bucket (``rate_limit``/``rate_burst``) → 429 with ``Retry-After``;
5. the principal (with the ``Urbanmim-Purpose`` header as its purpose) is set for the
   request: :func:`urbanmim.security.principal.use_principal`.
"""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from urbanmim.errors import BadRequestData, Forbidden, NgsiError, Unauthorized
from urbanmim.ngsild.http import problem_response
from urbanmim.security.principal import _CURRENT, ANONYMOUS, SYSTEM, Principal

PUBLIC_GET = ("/auth/", "/.well-known/", "/algorithms", "/ngsi-ld/v1/jsonldContexts", "/static/", "/web/",
              "/favicon", "/twin/static/", "/sharing/v1/catalogue", "/consent/v1/purposes")
# pages whose HTML holds no city data (the twin's data comes from /twin/api, checked per tenant)
PUBLIC_PAGES = frozenset({"/", "/twin", "/twin/"})
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
QUERY_POSTS = ("/entityOperations/query",)      # POST forms of a query are reads
PURPOSE = b"urbanmim-purpose"
DISCOVERY = ("/ngsi-ld/v1/types", "/ngsi-ld/v1/attributes")


def is_read(method: str, path: str) -> bool:
    return method in READ_METHODS or (method == "POST" and path.endswith(QUERY_POSTS))


def request_tenant(scope: Scope, headers: dict[bytes, bytes]) -> str:
    """The city a request is about, as the route will see it: the ``NGSILD-Tenant`` header, except
    where the city is in the URL because clients cannot send the header — OGC API paths
    (``/ogc/{city}/...``: GDAL and QGIS) and the twin's ``?tenant=`` (an EventSource cannot)."""
    path: str = scope["path"]
    if path.startswith("/ogc/"):
        from urbanmim.ogc.catalogue import segment_tenant
        segment = path[5:].split("/", 1)[0]
        if segment:
            return segment_tenant(segment)
    elif path.startswith("/twin/api/"):
        for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1")):
            if k == "tenant" and v:
                return v
    return headers.get(b"ngsild-tenant", b"").decode("latin-1")


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, security: Any):
        self.app = app
        self.security = security

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        tenant_raw = request_tenant(scope, headers)
        try:
            p = await self.principal(scope, headers, tenant_raw)
        except NgsiError as e:
            header = headers.get(b"ngsild-tenant", b"").decode("latin-1")   # echoed as sent, if sent
            resp = problem_response(e, header or None)
            await resp(scope, receive, send)
            return
        token = _CURRENT.set(p)          # use_principal(p), without a generator per request
        try:
            await self.app(scope, receive, send)
        finally:
            _CURRENT.reset(token)

    async def principal(self, scope: Scope, headers: dict[bytes, bytes], tenant: str) -> Principal:
        sec = self.security
        path: str = scope["path"]
        method: str = scope["method"]
        auth = headers.get(b"authorization")
        key = headers.get(b"x-api-key")
        if path.startswith("/iot/v1/measurements"):
            return SYSTEM           # the device agent checks the device's own key (see the module doc)
        p = await sec.authenticator.authenticate(auth.decode("latin-1") if auth else None,
                                                 key.decode("latin-1") if key else None)
        if p is None:
            p = ANONYMOUS
            if path in PUBLIC_PAGES or (method in READ_METHODS and path.startswith(PUBLIC_GET)):
                pass
            elif not (is_read(method, path) and tenant in sec.public_tenants):
                raise Unauthorized("this request needs credentials: Authorization: Bearer <token>")
            client = scope.get("client")
            p = dataclasses.replace(p, client=f"ip:{client[0]}" if client else "ip:?")
        elif path.startswith("/iot/v1") and not p.has_role(tenant, "admin", "editor"):
            raise Forbidden(f"{p.subject} may not provision devices in tenant {tenant or '(default)'}")
        elif path.startswith(DISCOVERY) and not p.has_role(tenant, "admin", "editor", "reader"):
            # type and attribute names (and counts) are about every entity: a role in the tenant is needed
            raise Forbidden(f"{p.subject} has no role in tenant {tenant or '(default)'} to list types or attributes")
        purpose = headers.get(PURPOSE)
        if purpose:
            text = purpose.decode("latin-1").strip()
            if len(text) > 200 or not text.isprintable():
                raise BadRequestData("Urbanmim-Purpose must be a short printable purpose IRI (dpv:...)")
            p = dataclasses.replace(p, purpose=text)
        sec.limiter.check(p.client)
        return p
