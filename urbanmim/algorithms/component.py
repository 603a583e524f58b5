"""The MIM5 component: the register on ``app.state.algorithms``, its ``/algorithms/v1`` API and
its page ``/algorithms/`` (on the web shell, in every shipped language).

It is listed first in ``default_components`` so the register exists before the other
components' ``install`` hooks add their entries (``register_of`` also creates it lazily).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from urbanmim.algorithms import api
from urbanmim.algorithms.register import KINDS, register_of
from urbanmim.components import Component
from urbanmim.errors import InvalidRequest

HERE = Path(__file__).resolve().parent


async def page(request: Request) -> Response:
    from urbanmim.web import web_of
    kind = request.query_params.get("kind") or None
    if kind is not None and kind not in KINDS:
        raise InvalidRequest(f"kind must be one of {', '.join(KINDS)}")
    reg = register_of(request.app)
    present = sorted({a.kind for a in reg.all()}, key=KINDS.index)
    return web_of(request.app).render(request, "algorithms/index.html",
                                      {"algorithms": reg.all(kind), "kinds": present, "kind": kind},
                                      section="algorithms")


def _install(app: Any) -> None:
    register_of(app)
    if not any(isinstance(r, Mount) and r.path == api.PREFIX for r in app.router.routes):
        app.router.routes.insert(0, Mount(api.PREFIX, routes=api.routes))
        app.router.routes.insert(0, Route("/algorithms", page, methods=["GET"]))
    from urbanmim.web import web_of
    web = web_of(app)
    web.add_templates(HERE / "templates")
    web.add_catalogues(HERE / "locales")


def component() -> Component:
    return Component(name="algorithms", install=_install)
