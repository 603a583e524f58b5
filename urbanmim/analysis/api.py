"""``/analysis/v1`` — thin HTTP over ``analysis/service.py`` (shapes in docs/analysis.md)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from urbanmim.analysis import service
from urbanmim.analysis.model import describe
from urbanmim.analysis.persist import Scenarios, parse_scenario
from urbanmim.errors import BadRequestData
from urbanmim.ngsild import http

PREFIX = "/analysis/v1"


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(http.dumps(body), status_code=status, media_type=http.JSON, headers=headers)


async def _body(request: Request) -> dict[str, Any]:
    body, _ = await http.read_json(request, int(request.app.state.settings.max_body_bytes))
    if not isinstance(body, dict):
        raise BadRequestData("the request body must be a JSON object")
    return body


def _scenarios(request: Request) -> Scenarios:
    return Scenarios(request.app.state.entities)


async def _tenant(request: Request) -> str:
    return await http.require_tenant(request, request.app.state.store)


async def list_models(request: Request) -> Response:
    return _json(service.registry_of(request.app).describe())


async def get_model(request: Request) -> Response:
    return _json(describe(service.registry_of(request.app).get(request.path_params["model_id"])))


async def post_run(request: Request) -> Response:
    tenant = await _tenant(request)
    body = await _body(request)
    if "model" not in body:
        raise BadRequestData("model is required", extra={"parameter": "model"})
    extra = set(body) - {"model", "parameters", "scenario"}
    if extra:
        raise BadRequestData(f"unknown member(s): {', '.join(sorted(extra))}", extra={"parameter": sorted(extra)[0]})
    return _json(await service.run(request.app, tenant, body["model"], body.get("parameters"), body.get("scenario")))


async def list_scenarios(request: Request) -> Response:
    tenant = await _tenant(request)
    return _json([s.to_json() for s in await _scenarios(request).list(tenant)])


async def post_scenario(request: Request) -> Response:
    tenant = await _tenant(request)
    s = await _scenarios(request).create(tenant, parse_scenario(await _body(request)))
    return _json(s.to_json(), 201, {"Location": f"{PREFIX}/scenarios/{s.id}"})


async def get_scenario(request: Request) -> Response:
    tenant = await _tenant(request)
    return _json((await _scenarios(request).get(tenant, request.path_params["sid"])).to_json())


async def put_scenario(request: Request) -> Response:
    tenant = await _tenant(request)
    sid = request.path_params["sid"]
    await _scenarios(request).get(tenant, sid)
    s = await _scenarios(request).replace(tenant, parse_scenario(await _body(request), sid))
    return _json(s.to_json())


async def delete_scenario(request: Request) -> Response:
    tenant = await _tenant(request)
    await _scenarios(request).delete(tenant, request.path_params["sid"])
    return Response(status_code=204)


async def compare(request: Request) -> Response:
    tenant = await _tenant(request)
    body = await _body(request)
    if "model" not in body:
        raise BadRequestData("model is required", extra={"parameter": "model"})
    extra = set(body) - {"model", "parameters"}
    if extra:
        raise BadRequestData(f"unknown member(s): {', '.join(sorted(extra))}", extra={"parameter": sorted(extra)[0]})
    return _json(await service.compare(request.app, tenant, request.path_params["sid"], body["model"],
                                       body.get("parameters")))


routes = [
    Route("/models", list_models, methods=["GET"]),
    Route("/models/{model_id:str}", get_model, methods=["GET"]),
    Route("/runs", post_run, methods=["POST"]),
    Route("/scenarios", list_scenarios, methods=["GET"]),
    Route("/scenarios", post_scenario, methods=["POST"]),
    Route("/scenarios/{sid:str}", get_scenario, methods=["GET"]),
    Route("/scenarios/{sid:str}", put_scenario, methods=["PUT"]),
    Route("/scenarios/{sid:str}", delete_scenario, methods=["DELETE"]),
    Route("/scenarios/{sid:str}/compare", compare, methods=["POST"]),
]
