"""Time every analysis model on every tenant of a database (the figures in docs/analysis.md).

    .venv/bin/urbanmim demo --db demo.db --history 7 --no-serve     # once: three cities, a week of history
    .venv/bin/python -m urbanmim.analysis.timing --db demo.db

Each model runs as ``POST /analysis/v1/runs`` would (read through the service layer, then the
model), baseline and under an in-memory scenario (a stop added in the least-served district,
a low-emission zone of 2 km radius around the city centre), without writing result entities.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import shapely
from shapely.geometry import mapping, shape

from urbanmim.analysis import service, sources
from urbanmim.analysis.model import resolve
from urbanmim.analysis.scenario import Scenario, apply, check_edits

RUNS: list[tuple[str, dict[str, Any]]] = [
    ("transport-convenience", {}),
    ("interpolation", {}),
    ("interpolation", {"type": "NoiseLevelObserved", "attribute": "LAeq"}),
    ("forecast", {}),
    ("forecast", {"type": "AirQualityObserved", "attribute": "no2"}),
]


async def _time(app: Any, tenant: str, model_id: str, given: dict[str, Any],
                scenario: Scenario | None) -> tuple[float, float, dict[str, Any]]:
    model = service.registry_of(app).get(model_id)
    params = resolve(model, given)
    t0 = time.perf_counter()
    inputs = await sources.read(app, tenant, model.needs(params))
    if scenario is not None:
        inputs, _ = apply(inputs, scenario)
    t1 = time.perf_counter()
    result = await asyncio.to_thread(model.run, inputs, params)
    t2 = time.perf_counter()
    return (t1 - t0) * 1000, (t2 - t1) * 1000, result.summary


async def _scenario(app: Any, tenant: str) -> Scenario:
    base = await service.run(app, tenant, "transport-convenience", {}, write=False)
    feats = [f for f in base["geojson"]["features"] if f["properties"]["value"] is not None]
    worst = min(feats, key=lambda f: f["properties"]["value"])
    spot = shape(worst["geometry"]).representative_point()
    districts = shapely.union_all([shape(f["geometry"]) for f in feats])
    centre = districts.centroid
    return Scenario(id="timing", name="timing", description="", edits=check_edits([
        {"type": "addStop", "geometry": {"type": "Point", "coordinates": [spot.x, spot.y]}},
        {"type": "lowEmissionZone", "geometry": dict(mapping(centre.buffer(0.02))), "reductionPercent": 30}]))


async def main(db: str, tenants: list[str] | None) -> None:
    from urbanmim.app import create_app
    from urbanmim.settings import Settings
    app = create_app(Settings(db=db))
    async with app.router.lifespan_context(app):
        for tenant in tenants or await app.state.store.tenants():
            scen = await _scenario(app, tenant)
            for model_id, given in RUNS:
                for label, sc in (("baseline", None), ("scenario", scen)):
                    read_ms, run_ms, summary = await _time(app, tenant, model_id, given, sc)
                    what = given.get("attribute", "")
                    keys = ("value", "cells", "looRmse", "mae", "naiveMae", "skill")
                    brief = {k: summary[k] for k in keys if k in summary}
                    print(f"{tenant:10} {model_id:22} {what:5} {label:8} read {read_ms:7.1f} ms  "
                          f"model {run_ms:7.1f} ms  {brief}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True)
    ap.add_argument("--tenant", action="append")
    args = ap.parse_args()
    asyncio.run(main(args.db, args.tenant))
