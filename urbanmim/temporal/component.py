"""The temporal component: its routes and its store listener (filled in by the temporal work)."""

from __future__ import annotations

from urbanmim.components import Component


def component() -> Component:
    return Component(name="temporal")
