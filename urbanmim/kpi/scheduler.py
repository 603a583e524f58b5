"""Scheduled KPI computation, by each KPI's ``calculationFrequency``.

The rule is small so it can be predicted: every ``kpi_schedule`` seconds, for each tenant
and each computable KPI, the scheduler computes

* the **current** period's value when there is none yet (a running year gets a first
  figure), and
* the **previous** period's value again when it was last computed before that period
  closed (its ``dateNextCalculation`` has passed): the final figure over complete data.

Nothing else is recomputed on a timer (on demand: ``POST /kpi/v1/compute`` or
``urbanmim kpi compute``). Manual and verified values are never overwritten (see engine).
The first check runs one interval after start, so short-lived processes (tests, CLI
commands) do not compute anything.

Several processes on one PostgreSQL database: one of them runs the passes, the holder of the
``kpi-scheduler`` lead (``store/leader.py``); when it dies another takes over at its next check.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from urbanmim.kpi import engine, values
from urbanmim.kpi.catalogue import find_builtin
from urbanmim.kpi.formulas import FORMULAS
from urbanmim.kpi.periods import period_of, today
from urbanmim.store.leader import Leadership
from urbanmim.temporal.timeutil import opt_ms

log = logging.getLogger("urbanmim.kpi")


def due(existing: dict[str, values.KpiValue], tenant: str, now_ms: int) -> dict[str, list[str]]:
    """period label -> KPI codes to compute now (see the module docstring)."""
    out: dict[str, list[str]] = {}
    for code in FORMULAS:
        d = find_builtin(code)
        cur = period_of(today(), d.frequency if d else "yearly")
        prev = cur.previous()
        have_cur = [v for v in existing.values() if v.code == code and v.period == cur.label]
        if not have_cur:
            out.setdefault(cur.label, []).append(code)
        have_prev = [v for v in existing.values() if v.code == code and v.period == prev.label]
        if have_prev and any((opt_ms(v.computed_at) or 0) < prev.end_ms <= now_ms for v in have_prev
                             if v.method == "automatic" and not v.verified):
            out.setdefault(prev.label, []).append(code)
    return out


async def run_once(app: Any) -> int:
    """One pass over every tenant; returns how many values were written."""
    written = 0
    now_ms = int(time.time() * 1000)
    for tenant in await app.state.store.tenants():
        existing = {v.entity_id: v for v in await values.load(app, tenant)}
        for period, codes in due(existing, tenant, now_ms).items():
            report = await engine.compute(app, tenant, period=period, codes=codes)
            written += len(report.computed)
    return written


async def loop(app: Any, interval: float) -> None:
    lead = Leadership(app.state.store, "kpi-scheduler")
    try:
        while True:
            await asyncio.sleep(interval)
            try:
                if not await lead.lead():      # another process computes (several on one PostgreSQL)
                    continue
                n = await run_once(app)
                if n:
                    log.info("KPI scheduler wrote %d values", n)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("KPI scheduler pass failed; retrying in %s s", interval)
    finally:
        await lead.release()
