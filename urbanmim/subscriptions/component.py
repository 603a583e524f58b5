"""The subscriptions component: CRUD routes now; matching, outbox and notifier join here."""

from __future__ import annotations

from urbanmim.components import Component
from urbanmim.ngsild.routes import subscriptions as routes


def component() -> Component:
    return Component(name="subscriptions", routes=list(routes.routes))
