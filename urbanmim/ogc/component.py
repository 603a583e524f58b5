"""The MIM7 component: OGC API - Features under ``/ogc`` (beside ``/ngsi-ld/v1``).

``install`` (before the store opens) puts a :class:`Catalogue` on ``app.state.ogc``, registers
its change listener with the store (it only forgets cached collection lists and extents; it
writes nothing) and, on PostgreSQL, the same for other processes' writes (entity change
announcements) and mounts the routes of :mod:`urbanmim.ogc.api` at the top of the router;
``start`` builds the CQL2 parser in the background.
"""

from __future__ import annotations

import asyncio
from typing import Any

from urbanmim.components import Component
from urbanmim.ogc import api
from urbanmim.ogc.catalogue import Catalogue
from urbanmim.store.announcements import listeners_of


def _install(app: Any) -> None:
    catalogue = Catalogue(app)
    app.state.ogc = catalogue
    app.state.store.listeners.append(catalogue.on_change)
    others = listeners_of(app.state.store)        # other processes' writes (PostgreSQL)
    if others is not None:
        others.append(catalogue.on_announcement)
    routes = app.router.routes
    if not any(getattr(r, "path", None) == api.PREFIX for r in routes):
        for r in reversed(api.routes):
            routes.insert(0, r)


async def _start(app: Any) -> None:
    """Build the CQL2 parser in a worker thread now (LALR tables: about a second) rather than on
    the first request with a filter; the broker does not wait for it."""
    from urbanmim.ogc.cql2 import _parser
    app.state.ogc.warmup = asyncio.get_running_loop().run_in_executor(None, _parser)


def component() -> Component:
    return Component(name="ogc", install=_install, start=_start)
