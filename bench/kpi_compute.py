"""Benchmark (not a test): compute every KPI of one demo city over a year of history.

Run::

    .venv/bin/python bench/kpi_compute.py [--city portamar] [--days 365] [--no-hourly] [--db PATH]

1. **Load** the city (``urbanmim.ingest.demo``) with ``--days`` of history the way
   ``urbanmim demo --history`` back-fills it (every charted attribute of every device, one
   value every ~2 days beyond a week), then — unless ``--no-hourly`` — replace the series the
   KPI formulas average (air quality and noise) with **hourly** values over the same year
   through the store's bulk path, so the temporal data is a real hourly year
   (portamar: 24 stations x 4 pollutants + 20 noise sensors = 116 series x 8,760 hours).
2. **Compute** all KPIs for the current year (``engine.compute``, exactly what
   ``POST /kpi/v1/compute`` and ``urbanmim kpi compute`` run): cold once, then the median of 5
   runs. Each run reads through the service layer and the temporal service and writes the
   values (one batch) — the whole path, nothing cached between runs.

Figures are printed (wall clock and the process's CPU time, which a busy machine distorts
less); nothing is asserted (the < 10 s requirement is checked by reading them).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from urbanmim.app import create_app
from urbanmim.ingest.demo import sdm
from urbanmim.ingest.demo.cities import CITIES
from urbanmim.ingest.demo.loader import load
from urbanmim.ingest.demo.simulator import numeric_series
from urbanmim.kpi import engine
from urbanmim.settings import Settings

HOURLY = {"AirQualityObserved": ("no2", "pm10", "pm25", "o3"), "NoiseLevelObserved": ("LAeq",)}


async def run(city: str, days: float, hourly: bool, db: Path) -> None:
    profile = CITIES[city]
    reuse = db.exists()
    app = create_app(Settings(db=str(db), sqlite_synchronous="NORMAL", kpi_schedule=0.0))
    async with app.router.lifespan_context(app):
        if reuse and city in await app.state.store.tenants():
            print(f"reusing {db} (delete it to load again)")
            await _time(app, city, days)
            return
        t0 = time.perf_counter()
        now = time.time()
        (report,) = await load(app, [profile], at=now, history_days=days, show_progress=False)
        print(f"load {city}: {sum(report.counts.values())} entities, {report.history_rows:,} history values "
              f"in {time.perf_counter() - t0:.1f} s")
        if hourly:
            t0 = time.perf_counter()
            bulk = app.state.store.bulk_load_instances
            start = now - days * 86400
            rows = 0
            for d in report.devices:
                attrs = HOURLY.get(d.type)
                if not attrs:
                    continue
                tm = sdm.for_type(d.type)
                series = numeric_series(profile, d, start, now, 3600.0)
                for a in attrs:
                    if series.get(a):
                        # the store's temporal rows for this attribute are replaced by the hourly series
                        await app.state.store.temporal_delete(city, d.id, tm.expand(a))
                        await asyncio.to_thread(bulk, city, d.id, tm.expand(d.type), tm.expand(a), series[a])
                        rows += len(series[a])
            print(f"hourly history for the KPI series: {rows:,} values in {time.perf_counter() - t0:.1f} s")
        await _time(app, city, days)


async def _time(app: Any, city: str, days: float) -> None:
    times, cpu = [], []
    for i in range(6):
        t0, c0 = time.perf_counter(), time.process_time()
        rep = await engine.compute(app, city)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        if i == 0:
            print(f"cold: {times[0]:.2f} s wall, {cpu[0]:.2f} s CPU — {len(rep.computed)} values "
                  f"({', '.join(rep.periods)}), {len(rep.skipped)} skipped (no data), {len(rep.errors)} errors, "
                  f"{rep.reads} data reads")
    print(f"compute all KPIs of {city} over {days:g} days of history: median {statistics.median(times[1:]):.2f} s "
          f"wall (min {min(times[1:]):.2f}, max {max(times[1:]):.2f}), median {statistics.median(cpu[1:]):.2f} s CPU "
          f"(5 runs; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--city", default="portamar", choices=sorted(CITIES))
    ap.add_argument("--days", type=float, default=365)
    ap.add_argument("--no-hourly", action="store_true")
    ap.add_argument("--db", help="keep the database here; an existing one with the city is reused (no load)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(args.db) if args.db else Path(tmp) / "kpi-bench.db"
        asyncio.run(run(args.city, args.days, not args.no_hourly, db))


if __name__ == "__main__":
    main()
