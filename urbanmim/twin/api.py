"""HTTP of the twin: the page at ``/twin/`` and its small JSON/GeoJSON/SSE API under ``/twin/api``.

Thin on purpose: each handler parses its parameters and calls ``data.py`` or the live hub. The
city is the ``tenant`` query parameter (an EventSource cannot send an ``NGSILD-Tenant`` header),
or that header when present; it must exist (404 NonexistentTenant, as in the NGSI-LD API).
"""

from __future__ import annotations

import re
import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from urbanmim.errors import BadRequestData, InvalidRequest, NonexistentTenant, ResourceNotFound
from urbanmim.ngsild.http import TENANT_HEADER
from urbanmim.twin import data
from urbanmim.twin.layers import BY_ID, LAYERS
from urbanmim.web import web_of

GEOJSON = "application/geo+json"
JSON = "application/json"
_TENANT_RE = re.compile(r"[A-Za-z0-9_\-.:/]{1,200}")


def _json(body: Any, media_type: str = JSON) -> Response:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return Response(raw, media_type=media_type, headers={"Cache-Control": "no-store"})


async def _tenant(request: Request) -> str:
    tenant = request.query_params.get("tenant") or request.headers.get(TENANT_HEADER) or ""
    if tenant and not _TENANT_RE.fullmatch(tenant):
        raise BadRequestData(f"invalid tenant name {tenant!r}")
    if tenant and not await request.app.state.store.tenant_exists(tenant):
        raise NonexistentTenant(f"tenant {tenant} does not exist")
    return tenant


def _layer(request: Request) -> Any:
    layer = BY_ID.get(request.path_params["layer"])
    if layer is None:
        raise ResourceNotFound(f"no twin layer {request.path_params['layer']!r}; "
                               f"layers: {', '.join(BY_ID)}")
    return layer


def _float(request: Request, name: str, default: float, lo: float, hi: float) -> float:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidRequest(f"{name} must be a number") from None
    if not lo <= value <= hi:
        raise InvalidRequest(f"{name} must be between {lo:g} and {hi:g}")
    return value


def _instant(request: Request, name: str = "at") -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return data.to_ms(raw)
    except ValueError:
        raise InvalidRequest(f"{name} must be an ISO 8601 date-time or epoch milliseconds") from None


# ---- the page ----------------------------------------------------------------------------------

async def page(request: Request) -> Response:
    tenants = await _tenant_list(request)
    asked = request.query_params.get("tenant")
    current = asked if asked in tenants else (tenants[0] if tenants else "")
    bounds = None
    if current:       # the map opens on where most buildings stand (else the districts' extent)
        cache = request.app.state.twin_cache
        bounds = (data.core_bbox(await cache.get(request.app, current, BY_ID["buildings"]))
                  or data.bbox(await cache.get(request.app, current, BY_ID["districts"])))
    return web_of(request.app).render(request, "twin/index.html", {
        "tenants": tenants, "tenant": current, "layers": LAYERS,
        "config": {"tenant": current, "tenants": tenants, "layers": data.layers_json(), "api": "/twin/api",
                   "analysis": "/analysis/v1", "bounds": bounds},
    }, section="twin", js_prefixes=("twin.", "layer.", "unit.", "group."))


# ---- the API -----------------------------------------------------------------------------------

async def _tenant_list(request: Request) -> list[str]:
    return sorted(t for t in await request.app.state.store.tenants() if t)


async def tenants(request: Request) -> Response:
    return _json([{"id": t} for t in await _tenant_list(request)])


async def layers(request: Request) -> Response:
    return _json(data.layers_json())


async def layer_geojson(request: Request) -> Response:
    """The layer's features now, or — with ``at`` — a live layer's values as observed at that instant."""
    tenant = await _tenant(request)
    layer = _layer(request)
    at = _instant(request)
    if at is None:
        body = await request.app.state.twin_cache.get(request.app, tenant, layer)
        return _json(body, GEOJSON)
    if not layer.live:
        raise InvalidRequest(f"layer {layer.id} has no history (only sensor layers can be replayed)")
    values = await data.values_at(request.app, tenant, layer, at)
    return _json({"layer": layer.id, "attr": layer.attr, "at": data.iso(at), "values": values})


async def entity(request: Request) -> Response:
    tenant = await _tenant(request)
    entity_id = request.query_params.get("id")
    if not entity_id:
        raise InvalidRequest("id is required")
    ent = await request.app.state.entities.retrieve(tenant, entity_id)
    return _json(data.properties(ent, full=True))


async def history(request: Request) -> Response:
    tenant = await _tenant(request)
    entity_id, attr = request.query_params.get("id"), request.query_params.get("attr")
    if not entity_id or not attr:
        raise InvalidRequest("id and attr are required")
    hours = _float(request, "hours", 24.0, 0.05, 24 * 31)
    body = await data.history(request.app, tenant, entity_id, attr, hours, _instant(request, "end"))
    return _json(body)


async def events(request: Request) -> Response:
    """Server-Sent Events: the tenant's entity changes, coalesced per entity (see ``live.py``)."""
    tenant = await _tenant(request)
    hub = request.app.state.twin_live
    client = hub.subscribe(tenant)
    return StreamingResponse(hub.stream(client), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def status(request: Request) -> Response:
    hub = request.app.state.twin_live
    return _json({"clients": {t: len(c) for t, c in hub.clients.items()}, "published": hub.published,
                  "time": time.time()})


routes = [
    Route("/twin", page, methods=["GET"], name="twin"),
    Route("/twin/api/tenants", tenants, methods=["GET"]),
    Route("/twin/api/layers", layers, methods=["GET"]),
    Route("/twin/api/layers/{layer:str}", layer_geojson, methods=["GET"]),
    Route("/twin/api/entity", entity, methods=["GET"]),
    Route("/twin/api/history", history, methods=["GET"]),
    Route("/twin/api/events", events, methods=["GET"]),
    Route("/twin/api/status", status, methods=["GET"]),
]
