"""A run, end to end: resolve parameters, read through the service layer, apply a scenario, run, record.

Why here and not in the HTTP handlers: the twin, the CLI and tests run models the same way
the API does. The model's CPU work (Shapely, numpy) runs in a worker thread so a big grid
never stalls the event loop that serves the city's sensors.

Extension point: :class:`ModelRegistry` (``app.state.analysis``). A component adds a model
with :meth:`ModelRegistry.add`, which also registers its MIM5 entry; the API lists and runs
whatever is registered.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from urbanmim.algorithms.register import register_of
from urbanmim.analysis import persist, sources
from urbanmim.analysis.model import Model, Result, describe, resolve
from urbanmim.analysis.scenario import Scenario, apply, check_edits
from urbanmim.errors import BadRequestData, Conflict, ResourceNotFound
from urbanmim.service.entities import now_iso


class ModelRegistry:
    def __init__(self, app: Any):
        self.app = app
        self.models: dict[str, Model] = {}

    def add(self, model: Model) -> Model:
        self.models[model.id] = model
        register_of(self.app).register(model.algorithm)
        return model

    def get(self, model_id: Any) -> Model:
        model = self.models.get(model_id) if isinstance(model_id, str) else None
        if model is None:
            raise ResourceNotFound(f"no analysis model {model_id!r} (known: {', '.join(sorted(self.models))})")
        return model

    def describe(self) -> list[dict[str, Any]]:
        return [describe(m) for m in self.models.values()]


def registry_of(app: Any) -> ModelRegistry:
    reg = getattr(app.state, "analysis", None)
    if reg is None:
        reg = ModelRegistry(app)
        app.state.analysis = reg
    return reg


def _envelope(model: Model, tenant: str, scenario: Scenario | None, params: dict[str, Any], result: Result,
              started: float) -> dict[str, Any]:
    out: dict[str, Any] = {
        "model": model.id, "version": model.version, "tenant": tenant,
        "scenario": scenario.id if scenario else None, "computedAt": now_iso(), "parameters": params,
        "unit": result.unit, "summary": result.summary,
        "geojson": {"type": "FeatureCollection", "features": result.features}}
    out.update(result.extra)
    out["durationMs"] = round((time.perf_counter() - started) * 1000, 1)
    return out


async def run(app: Any, tenant: str, model_id: Any, given: Any, scenario_id: Any = None, *,
              write: bool = True) -> dict[str, Any]:
    """One run (``POST /analysis/v1/runs``); a baseline run also writes its result entities."""
    started = time.perf_counter()
    model = registry_of(app).get(model_id)
    params = resolve(model, given)
    scenario = await _scenario(app, tenant, scenario_id)
    inputs = await sources.read(app, tenant, model.needs(params))
    effects = None
    if scenario is not None:
        inputs, effects = apply(inputs, scenario)
    result = await asyncio.to_thread(model.run, inputs, params)
    out = _envelope(model, tenant, scenario, params, result, started)
    if effects is not None:
        out["effects"] = effects
    written: list[str] = []
    if write and scenario is None:
        ents = persist.result_entities(model.id, model.version, params, result, out["computedAt"])
        written = await persist.write_results(app.state.entities, tenant, ents)
    out["resultEntities"] = written
    return out


async def compare(app: Any, tenant: str, scenario_id: str, model_id: Any, given: Any) -> dict[str, Any]:
    """Before / after / difference of one model under one scenario; the data is read once."""
    started = time.perf_counter()
    model = registry_of(app).get(model_id)
    params = resolve(model, given)
    scenario = await _scenario(app, tenant, scenario_id)
    assert scenario is not None
    inputs = await sources.read(app, tenant, model.needs(params))
    changed, effects = apply(inputs, scenario)
    before = await asyncio.to_thread(model.run, inputs, params)
    t_after = time.perf_counter()
    after = await asyncio.to_thread(model.run, changed, params)
    b = _envelope(model, tenant, None, params, before, started)
    a = _envelope(model, tenant, scenario, params, after, t_after)
    a["effects"] = effects
    b["resultEntities"] = a["resultEntities"] = []
    return {"before": b, "after": a, "difference": difference(before.features, after.features)}


def difference(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> dict[str, Any]:
    """Features paired by ``properties.id``: before, after, delta (after − before when both are numbers)."""
    b = {f["properties"]["id"]: f for f in before}
    a = {f["properties"]["id"]: f for f in after}
    feats = []
    for fid in dict.fromkeys([*b, *a]):
        fb, fa = b.get(fid), a.get(fid)
        vb = fb["properties"].get("value") if fb else None
        va = fa["properties"].get("value") if fa else None
        delta = round(va - vb, 6) if isinstance(va, (int, float)) and isinstance(vb, (int, float)) else None
        src = fa or fb
        assert src is not None
        props: dict[str, Any] = {"id": fid, "before": vb, "after": va, "delta": delta}
        if src["properties"].get("label") is not None:
            props["label"] = src["properties"]["label"]
        feats.append({"type": "Feature", "id": fid, "geometry": src.get("geometry"), "properties": props})
    return {"type": "FeatureCollection", "features": feats}


async def _scenario(app: Any, tenant: str, scenario_id: Any) -> Scenario | None:
    if scenario_id is None:
        return None
    if not isinstance(scenario_id, str):
        raise ResourceNotFound(f"no scenario {scenario_id!r}")
    s = await persist.Scenarios(app.state.entities).get(tenant, scenario_id)
    try:      # the API checked the edits, but the entity is ordinary NGSI-LD data: it may have been rewritten since
        s.edits = check_edits(s.edits)
    except BadRequestData as e:
        raise Conflict(f"scenario {scenario_id} as stored cannot be applied ({e.detail}); "
                       f"replace it with PUT /analysis/v1/scenarios/{scenario_id}") from None
    return s
