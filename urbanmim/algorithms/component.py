"""The MIM5 component: the register on ``app.state.algorithms`` and its ``/algorithms/v1`` API.

It is listed first in ``default_components`` so the register exists before the other
components' ``install`` hooks add their entries (``register_of`` also creates it lazily).
"""

from __future__ import annotations

from typing import Any

from starlette.routing import Mount

from urbanmim.algorithms import api
from urbanmim.algorithms.register import register_of
from urbanmim.components import Component


def _install(app: Any) -> None:
    register_of(app)
    if not any(isinstance(r, Mount) and r.path == api.PREFIX for r in app.router.routes):
        app.router.routes.insert(0, Mount(api.PREFIX, routes=api.routes))


def component() -> Component:
    return Component(name="algorithms", install=_install)
