"""The web component: static files under ``/web/static`` and the catalogues as JSON for scripts.

Pages themselves belong to their components (the twin, KPIs, the algorithm register...);
they all render through :class:`urbanmim.web.shell.Web` so they share one layout and one
set of catalogues.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from urbanmim.components import Component
from urbanmim.errors import ResourceNotFound
from urbanmim.ngsild import http
from urbanmim.web.shell import HERE, STATIC_PREFIX, web_of


async def catalogue(request: Request) -> Response:
    """``/web/i18n/{lang}.json``: a whole catalogue (English filled in), for scripts that want all of it."""
    web = web_of(request.app)
    lang = request.path_params["lang"]
    if lang not in web.catalogues.languages:
        raise ResourceNotFound(f"no catalogue for language {lang!r}")
    body = web.catalogues.subset(lang, ("",))
    return Response(http.dumps(body), media_type="application/json",
                    headers={"Cache-Control": "no-cache", "Content-Language": lang})


def _install(app: Any) -> None:
    web_of(app)
    routes = app.router.routes
    if not any(isinstance(r, Mount) and r.path == STATIC_PREFIX for r in routes):
        routes.insert(0, Mount(STATIC_PREFIX, app=StaticFiles(directory=HERE / "static"), name="web-static"))
        routes.insert(0, Route("/web/i18n/{lang:str}.json", catalogue, methods=["GET"]))


def component() -> Component:
    return Component(name="web", install=_install)
