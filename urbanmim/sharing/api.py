"""``/sharing/v1`` — organisations, offers, agreements, explanations and the DCAT-AP catalogue.

A prefix of its own because none of this is an NGSI-LD resource; the tenant is still the
``NGSILD-Tenant`` header (the tenant whose data is offered) and errors are ProblemDetails.
Entity types and attribute names in offers are expanded with the request's @context (Link
header, or ``@context`` in an ``application/ld+json`` body), as in NGSI-LD. Every decision is
taken by :class:`urbanmim.sharing.service.SharingService`; these handlers only translate.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from urbanmim.errors import BadRequestData, InvalidRequest
from urbanmim.ngsild import http
from urbanmim.ngsild.contexts import CORE
from urbanmim.security.principal import SYSTEM, Principal, current_principal
from urbanmim.sharing.catalogue import catalogue
from urbanmim.sharing.registry import Offer
from urbanmim.sharing.service import SharingService

PREFIX = "/sharing/v1"
JSONLD = "application/ld+json"


def _svc(request: Request) -> SharingService:
    svc: SharingService = request.app.state.sharing_service
    return svc


def _caller(request: Request) -> Principal:
    """The request's principal; with security off the caller is the platform (it names the
    organisations it acts for in the body)."""
    access = _svc(request).access()
    if access is None or not access.enabled:
        return SYSTEM
    return current_principal()


def _json(body: Any, status: int = 200, tenant: str = "", headers: dict[str, str] | None = None,
          media: str = http.JSON) -> Response:
    h = dict(headers or {})
    if tenant:
        h[http.TENANT_HEADER] = tenant
    return Response(http.dumps(body), status_code=status, media_type=media, headers=h)


async def _body(request: Request) -> tuple[dict[str, Any], str]:
    body, ctype = await http.read_json(request, int(request.app.state.settings.max_body_bytes))
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return body, ctype


async def _optional_body(request: Request) -> dict[str, Any]:
    """Accept and withdraw need no body (the caller's organisation acts); with security off it names it."""
    if request.headers.get("content-length") in (None, "0") and not request.headers.get("transfer-encoding"):
        return {}
    return (await _body(request))[0]


# ---- organisations --------------------------------------------------------------------------------------
async def list_orgs(request: Request) -> Response:
    orgs = sorted(_svc(request).registry.orgs.values(), key=lambda o: o.id)
    return _json([o.to_json() for o in orgs])


async def post_org(request: Request) -> Response:
    tenant = http.tenant_of(request)
    body, _ = await _body(request)
    org = await _svc(request).register_org(_caller(request), tenant, body)
    return _json(org.to_json(), 201, tenant, {"Location": f"{PREFIX}/organisations/{org.id}"})


async def get_org(request: Request) -> Response:
    return _json(_svc(request).org(request.path_params["org"]).to_json())


# ---- offers ---------------------------------------------------------------------------------------------
async def list_offers(request: Request) -> Response:
    tenant = http.tenant_of(request)
    items = sorted(_svc(request).registry.offers_of(tenant), key=lambda o: o.created_at or "")
    status = request.query_params.get("status")
    return _json([o.to_json() for o in items if status is None or o.status == status], tenant=tenant)


async def post_offer(request: Request) -> Response:
    tenant = http.tenant_of(request)
    body, ctype = await _body(request)
    ctx_value = http.context_source(request, body, ctype)
    ctx = await http.request_context(request, body, ctype)
    body.pop("@context", None)
    offer = await _svc(request).publish(_caller(request), tenant, body, ctx.expand, ctx_value)
    return _json(offer.to_json(), 201, tenant, {"Location": f"{PREFIX}/offers/{offer.id}"})


async def get_offer(request: Request) -> Response:
    tenant = http.tenant_of(request)
    return _json(_svc(request).offer(tenant, request.path_params["id"]).to_json(), tenant=tenant)


async def withdraw_offer(request: Request) -> Response:
    tenant = http.tenant_of(request)
    offer = await _svc(request).withdraw_offer(_caller(request), tenant, request.path_params["id"])
    return _json(offer.to_json(), tenant=tenant)


async def accept_offer(request: Request) -> Response:
    tenant = http.tenant_of(request)
    body = await _optional_body(request)
    svc = _svc(request)
    a, created = await svc.accept(_caller(request), tenant, request.path_params["id"], body)
    return _json(svc.agreement_json(a), 201 if created else 200, tenant,
                 {"Location": f"{PREFIX}/agreements/{a.id}"})


# ---- agreements -----------------------------------------------------------------------------------------
async def list_agreements(request: Request) -> Response:
    tenant = http.tenant_of(request)
    svc = _svc(request)
    return _json([svc.agreement_json(a) for a in svc.agreements(_caller(request), tenant)], tenant=tenant)


async def get_agreement(request: Request) -> Response:
    tenant = http.tenant_of(request)
    svc = _svc(request)
    return _json(svc.agreement_json(svc.agreement(_caller(request), tenant, request.path_params["id"])),
                 tenant=tenant)


async def withdraw_agreement(request: Request) -> Response:
    tenant = http.tenant_of(request)
    svc = _svc(request)
    a = await svc.withdraw_agreement(_caller(request), tenant, request.path_params["id"])
    return _json(svc.agreement_json(a), tenant=tenant)


# ---- explain --------------------------------------------------------------------------------------------
async def explain(request: Request) -> Response:
    tenant = http.tenant_of(request)
    body, ctype = await _body(request)
    ctx = await http.request_context(request, body, ctype)
    out = await _svc(request).explain(_caller(request), tenant, body, ctx.expand, ctx.compact)
    return _json(out, tenant=tenant)


# ---- catalogue ------------------------------------------------------------------------------------------
async def get_catalogue(request: Request) -> Response:
    svc = _svc(request)
    every = request.query_params.get("allTenants", "false").lower()
    if every not in ("true", "false"):
        raise BadRequestData("allTenants must be true or false")
    contexts = request.app.state.contexts

    def compact(offer: Offer, iri: str) -> str:
        tm = contexts.cached(offer.context) if offer.context is not None else None
        return (tm or CORE).compact(iri)

    base = str(request.base_url).rstrip("/")
    if every == "true":
        offers = [o for t in list(svc.registry.tenants) for o in svc.registry.offers_of(t)]
        doc = catalogue(offers, svc.registry.orgs, base, compact, None)
        return _json(doc, media=JSONLD)
    tenant = http.tenant_of(request)
    doc = catalogue(svc.registry.offers_of(tenant), svc.registry.orgs, base, compact, tenant)
    return _json(doc, tenant=tenant, media=JSONLD)


routes = [
    Route("/organisations", list_orgs, methods=["GET"]),
    Route("/organisations", post_org, methods=["POST"]),
    Route("/organisations/{org}", get_org, methods=["GET"]),
    Route("/offers", list_offers, methods=["GET"]),
    Route("/offers", post_offer, methods=["POST"]),
    Route("/offers/{id:path}/accept", accept_offer, methods=["POST"]),
    Route("/offers/{id:path}/withdraw", withdraw_offer, methods=["POST"]),
    Route("/offers/{id:path}", get_offer, methods=["GET"]),
    Route("/agreements", list_agreements, methods=["GET"]),
    Route("/agreements/{id:path}/withdraw", withdraw_agreement, methods=["POST"]),
    Route("/agreements/{id:path}", get_agreement, methods=["GET"]),
    Route("/explain", explain, methods=["POST"]),
    Route("/catalogue", get_catalogue, methods=["GET"]),
]
