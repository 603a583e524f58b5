"""The twin component: the page, its API, its static files, its catalogues and its live hub.

``install`` (before the store opens) registers the change listener that feeds the live hub and
invalidates the layer cache; ``start`` binds the hub to the running event loop and, on
PostgreSQL, makes it follow other processes' writes (entity change announcements); ``stop``
ends every open event stream.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from urbanmim.components import Component
from urbanmim.twin import api
from urbanmim.twin.data import LayerCache
from urbanmim.twin.live import LiveHub
from urbanmim.web import web_of

HERE = Path(__file__).resolve().parent
STATIC = "/web/twin"     # under /web/: public like the shell's assets (pages and scripts hold no data)


def _install(app: Any) -> None:
    web = web_of(app)
    web.add_templates(HERE / "templates")
    web.add_catalogues(HERE / "locales")
    cache = LayerCache()
    hub = LiveHub(cache, queue_limit=int(getattr(app.state.settings, "twin_sse_queue", 1000)),
                  entities=app.state.entities)
    app.state.twin_cache = cache
    app.state.twin_live = hub
    app.state.store.listeners.append(hub.on_change)
    routes = app.router.routes
    if not any(isinstance(r, Mount) and r.path == STATIC for r in routes):
        routes[0:0] = [Mount(STATIC, app=StaticFiles(directory=HERE / "static"), name="twin-static"), *api.routes]


async def _start(app: Any) -> None:
    app.state.twin_live.start()
    app.state.twin_live.follow(app.state.store)     # other processes' writes (PostgreSQL)


async def _stop(app: Any) -> None:
    app.state.twin_live.stop()
    await app.state.twin_live.unfollow(app.state.store)


def component() -> Component:
    return Component(name="twin", install=_install, start=_start, stop=_stop)
