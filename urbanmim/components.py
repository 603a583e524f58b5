"""Extension points, declared in one place: a platform component plugs in here.

A component brings its routes (mounted under /ngsi-ld/v1), may register store change
listeners before the store opens (``install``: they run inside the write transaction),
and may run background work between ``start`` and ``stop`` (e.g. the notifier). The app
knows components only through this protocol, so temporal history, notifications and
later features add themselves without editing the core.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.routing import BaseRoute


async def _noop(app: Any) -> None:
    return None


@dataclass
class Component:
    name: str
    routes: list[BaseRoute] = field(default_factory=list)
    install: Callable[[Any], None] = lambda app: None        # before the store opens
    start: Callable[[Any], Awaitable[None]] = _noop          # after it opened
    stop: Callable[[Any], Awaitable[None]] = _noop           # before it closes


def default_components() -> list[Component]:
    from urbanmim.algorithms.component import component as algorithms
    from urbanmim.analysis.component import component as analysis
    from urbanmim.consent.component import component as consent
    from urbanmim.ingest.agent.component import component as iot_agent
    from urbanmim.kpi.component import component as kpi
    from urbanmim.models.component import component as models
    from urbanmim.ogc.component import component as ogc
    from urbanmim.security.component import component as security
    from urbanmim.sharing.component import component as sharing
    from urbanmim.subscriptions.component import component as subscriptions
    from urbanmim.temporal.component import component as temporal
    from urbanmim.twin.component import component as twin
    from urbanmim.web.component import component as web
    # security first: app.state.access exists before sharing/consent append their deciders
    return [security(), algorithms(), web(), temporal(), subscriptions(), iot_agent(), models(), ogc(), twin(),
            analysis(), consent(), sharing(), kpi()]
