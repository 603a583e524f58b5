"""The temporal component: its routes and its store listener (the recorder).

``install`` runs before the store opens: the recorder is registered as a change
listener, so every write through any API leaves attribute instances in the same
transaction. The routes reach the recorder through ``app.state.temporal_recorder``.
"""

from __future__ import annotations

from typing import Any

from urbanmim.components import Component
from urbanmim.temporal.recorder import Recorder


def _install(app: Any) -> None:
    recorder = Recorder()
    app.state.temporal_recorder = recorder
    app.state.store.listeners.append(recorder)


def component() -> Component:
    from urbanmim.ngsild.routes.temporal import routes
    return Component(name="temporal", routes=list(routes), install=_install)
