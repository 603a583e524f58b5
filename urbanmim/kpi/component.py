"""The KPI component: formulas in the MIM5 register, ``/kpi/v1``, the KPI @context, the scheduler, pages.

``install`` (before the store opens) registers every formula as an ``Algorithm`` of kind
``kpi`` (so ``/algorithms/v1`` lists exactly the formula versions values can name) and
mounts the API and the pages; ``start`` starts the scheduler task; ``stop`` cancels it. The
``KeyPerformanceIndicator`` @context is hosted when the first KPI value is written
(:func:`urbanmim.kpi.context.ensure_hosted`), so a broker without KPIs lists no extra context.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from starlette.routing import Mount

from urbanmim.algorithms.register import register_of
from urbanmim.components import Component
from urbanmim.kpi import api, scheduler
from urbanmim.kpi.formulas import FORMULAS


def _install(app: Any) -> None:
    reg = register_of(app)
    for f in FORMULAS.values():
        reg.register(f.algorithm())
    if not any(isinstance(r, Mount) and r.path == api.PREFIX for r in app.router.routes):
        app.router.routes.insert(0, Mount(api.PREFIX, routes=api.routes))
    from urbanmim.kpi import pages
    pages.install(app)


async def _start(app: Any) -> None:
    interval = float(getattr(app.state.settings, "kpi_schedule", 0) or 0)
    if interval > 0:
        app.state.kpi_scheduler = asyncio.create_task(scheduler.loop(app, interval), name="kpi-scheduler")


async def _stop(app: Any) -> None:
    task = getattr(app.state, "kpi_scheduler", None)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        app.state.kpi_scheduler = None


def component() -> Component:
    return Component(name="kpi", install=_install, start=_start, stop=_stop)
