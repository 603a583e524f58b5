"""``/iot/v1``: device provisioning, HTTP measurements and the agent's counters.

Why outside ``/ngsi-ld/v1``: these are not NGSI-LD operations (the NGSI-LD API is the
place to read what devices produced); the prefix follows the FIWARE IoT agents', so
existing device firmware and provisioning scripts need few changes. Errors are the
platform's ProblemDetails, rendered by the app's one error handler.

    POST   /iot/v1/devices                 provision one device (object) or several (array)
    GET    /iot/v1/devices[?limit&offset]  list the tenant's devices (never their keys)
    GET    /iot/v1/devices/{deviceId}
    DELETE /iot/v1/devices/{deviceId}      the key stops working; the entity and its history stay
    POST   /iot/v1/measurements?k=APIKEY&i=DEVICEID   a measurement object or an array of them
    GET    /iot/v1/stats                   messages, measurements, rejections per reason, MQTT state

The tenant is the ``NGSILD-Tenant`` header, as everywhere else.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from urbanmim.errors import BadRequestData, InternalError, NgsiError, ResourceNotFound
from urbanmim.ngsild import http

from .pipeline import BAD_KEY, UNKNOWN_DEVICE, Ingestor, Rejected


class Unauthorized(NgsiError):
    status, problem, title = 401, "Unauthorized", "Wrong or missing API key"


def _agent(request: Request) -> Any:
    return request.app.state.iot_agent


def _int(request: Request, name: str, default: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) > hi:
        raise BadRequestData(f"{name} must be an integer between 0 and {hi}")
    return int(raw)


async def provision(request: Request) -> Response:
    tenant = http.tenant_of(request)
    body, _ = await http.read_json(request, int(request.app.state.settings.max_body_bytes))
    if isinstance(body, dict) and isinstance(body.get("devices"), list) and len(body) == 1:
        body = body["devices"]        # the IoT-agent envelope {"devices": [...]}
    many = isinstance(body, list)
    items = body if many else [body]
    if not items:
        raise BadRequestData("no device to provision")
    if len(items) > 1000:
        raise BadRequestData("at most 1000 devices per request")
    results = await _agent(request).registry.provision(tenant, items)
    if not many:
        (res,) = results
        if "error" in res:
            raise res["error"]
        return _json(res, 201, tenant, {"Location": f"/iot/v1/devices/{quote(res['deviceId'])}"})
    status = 201 if all("error" not in r for r in results) else 207
    out = [dict(r, error=r["error"].to_problem()) if "error" in r else r for r in results]
    return _json({"devices": out}, status, tenant)


def _json(body: Any, status: int = 200, tenant: str = "", headers: dict[str, str] | None = None) -> Response:
    h = dict(headers or {})
    if tenant:
        h[http.TENANT_HEADER] = tenant
    return Response(http.dumps(body), status_code=status, media_type=http.JSON, headers=h)


async def list_devices(request: Request) -> Response:
    tenant = http.tenant_of(request)
    limit = _int(request, "limit", 100, 1000)
    offset = _int(request, "offset", 0, 10**9)
    devices, count = await _agent(request).registry.list(tenant, limit, offset)
    return _json({"count": count, "devices": devices}, 200, tenant)


async def get_device(request: Request) -> Response:
    tenant = http.tenant_of(request)
    dev = await _agent(request).registry.get(tenant, request.path_params["device_id"])
    return _json(dev, 200, tenant)


async def delete_device(request: Request) -> Response:
    tenant = http.tenant_of(request)
    try:
        await _agent(request).registry.delete(tenant, request.path_params["device_id"])
    except ResourceNotFound:
        raise ResourceNotFound(f"device {request.path_params['device_id']} not found") from None
    return http.empty(204, tenant=tenant or None)


async def measurements(request: Request) -> Response:
    """Write a measurement (or an array of them) of one device; 204 once committed."""
    tenant = http.tenant_of(request)
    agent = _agent(request)
    ingestor: Ingestor = agent.ingestor
    ingestor.stats.messages["http"] += 1
    key, device_id = request.query_params.get("k"), request.query_params.get("i")
    try:
        if not device_id:
            raise Rejected(UNKNOWN_DEVICE, "the device id is missing (?i=DEVICEID)")
        if not key:
            raise Rejected(BAD_KEY, "the API key is missing (?k=APIKEY)")
        raw = await http.read_body(request, int(request.app.state.settings.max_body_bytes))
        muts = await ingestor.prepare(tenant, device_id, key, raw)
    except Rejected as r:
        ingestor.stats.reject(r.reason, r.detail, "http")
        if r.reason == UNKNOWN_DEVICE:
            raise ResourceNotFound(r.detail) from None
        if r.reason == BAD_KEY:
            raise Unauthorized(r.detail) from None
        raise BadRequestData(r.detail) from None
    written, err = await ingestor.write(tenant, muts)
    if written < 0 or err is not None:
        raise InternalError(f"the measurement could not be written: {err}")
    return http.empty(204, tenant=tenant or None)


async def stats(request: Request) -> Response:
    return _json(_agent(request).ingestor.stats.to_json())


routes = [
    Route("/devices", provision, methods=["POST"]),
    Route("/devices", list_devices, methods=["GET"]),
    Route("/devices/{device_id}", get_device, methods=["GET"]),
    Route("/devices/{device_id}", delete_device, methods=["DELETE"]),
    Route("/measurements", measurements, methods=["POST"]),
    Route("/stats", stats, methods=["GET"]),
]
