"""The analysis component: the model registry on ``app.state.analysis`` and the ``/analysis/v1`` API.

``install`` adds the built-in models (each registers its MIM5 entry, kind ``analysis``) and
mounts the API beside ``/ngsi-ld/v1`` (it is not an NGSI-LD resource). Another component
adds a model the same way: ``registry_of(app).add(MyModel())`` from its own ``install``.
"""

from __future__ import annotations

from typing import Any

from starlette.routing import Mount

from urbanmim.analysis import api
from urbanmim.analysis.forecast import Forecast
from urbanmim.analysis.interpolation import Interpolation
from urbanmim.analysis.service import registry_of
from urbanmim.analysis.transport import TransportConvenience
from urbanmim.components import Component


def _install(app: Any) -> None:
    reg = registry_of(app)
    for model in (TransportConvenience(), Interpolation(), Forecast()):
        reg.add(model)
    if not any(isinstance(r, Mount) and r.path == api.PREFIX for r in app.router.routes):
        app.router.routes.insert(0, Mount(api.PREFIX, routes=api.routes))


def component() -> Component:
    return Component(name="analysis", install=_install)
