"""``/algorithms/v1`` — the MIM5 register as JSON (the page under the web app reads the same data).

Read-only: entries come from the code that runs the algorithms (see ``register.py``).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from urbanmim.algorithms.register import KINDS, register_of
from urbanmim.errors import InvalidRequest, ResourceNotFound
from urbanmim.ngsild import http

PREFIX = "/algorithms/v1"


async def list_algorithms(request: Request) -> Response:
    kind = request.query_params.get("kind")
    if kind is not None and kind not in KINDS:
        raise InvalidRequest(f"kind must be one of {', '.join(KINDS)}")
    body = [a.to_json() for a in register_of(request.app).all(kind)]
    return Response(http.dumps(body), media_type=http.JSON)


async def get_algorithm(request: Request) -> Response:
    reg = register_of(request.app)
    alg_id = request.path_params["alg_id"]
    version = request.query_params.get("version")
    alg = reg.get(alg_id, version)
    if alg is None:
        raise ResourceNotFound(f"no algorithm {alg_id}" + (f" version {version}" if version else ""))
    body = alg.to_json()
    body["versions"] = [a.version for a in reg.versions(alg_id)]
    return Response(http.dumps(body), media_type=http.JSON)


routes = [
    Route("/algorithms", list_algorithms, methods=["GET"]),
    Route("/algorithms/{alg_id:str}", get_algorithm, methods=["GET"]),
]
