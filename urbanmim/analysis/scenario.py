"""What-if scenarios: typed edits, validated once, applied to a *copy* of what a model reads.

Why edits on the model inputs and not on the city: a scenario must never touch live
entities (other users, subscriptions and the KPI engine read them), and must be cheap to
rerun with any model. So a scenario is data (a list of edits, stored as an entity of the
reserved type ``urbanmim:AnalysisScenario``), and :func:`apply` turns a model's
:class:`Inputs` into a new one — copied on write: new lists, a new record for each record
an edit changes — plus a report of which
entities each edit changed (an edit that changed nothing is reported too, so a planner sees
that a low-emission zone without a sensor inside cannot show anything).

The environmental edits act on sensors through multipliers (:func:`multipliers`): the same
factor scales an entity's current value and its history, so a forecast under a scenario is
consistent with the maps. ``trafficShare`` is the share of measured NO2 attributed to road
traffic; 0.5 by default, the order of magnitude source-apportionment studies give for
European urban background (roadside stations are higher) — a planner should set it from the
city's own apportionment when there is one.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

import shapely

from urbanmim.analysis.data import Frame, Inputs, Record
from urbanmim.errors import BadRequestData
from urbanmim.ngsild.geo import validate_geometry

SCENARIO_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
STOP_TYPE = "GtfsStop"
TRAFFIC = ("TrafficFlowObserved", "intensity")
NO2 = ("AirQualityObserved", "no2")


class EditError(BadRequestData):
    def __init__(self, index: int, detail: str, member: str | None = None):
        super().__init__(f"edit {index}" + (f" member {member}" if member else "") + f": {detail}",
                         title="Invalid scenario edit", extra={"edit": index, **({"member": member} if member else {})})


# type -> (required geometry types or None, {member: (default, min, max)})
EDIT_TYPES: dict[str, tuple[tuple[str, ...] | None, dict[str, tuple[float, float, float]]]] = {
    "addStop": (("Point",), {}),
    "removeStop": (None, {}),
    "moveStop": (("Point",), {}),
    "closeStreet": (("LineString", "MultiLineString"), {"bufferMetres": (30.0, 1.0, 500.0),
                                                         "trafficShare": (0.5, 0.0, 1.0)}),
    "lowEmissionZone": (("Polygon", "MultiPolygon"), {"reductionPercent": (20.0, 0.0, 100.0),
                                                       "trafficShare": (0.5, 0.0, 1.0),
                                                       "trafficReductionPercent": (0.0, 0.0, 100.0)}),
}
TARGETED = ("removeStop", "moveStop")


def check_edits(edits: Any) -> list[dict[str, Any]]:
    """Edits as stored: known types, valid GeoJSON, numbers in bounds, defaults filled in."""
    if not isinstance(edits, list):
        raise BadRequestData("edits must be a JSON array", extra={"parameter": "edits"})
    out = []
    for i, e in enumerate(edits):
        if not isinstance(e, dict):
            raise EditError(i, "must be a JSON object")
        kind = e.get("type")
        if not isinstance(kind, str) or kind not in EDIT_TYPES:     # a list or object is no type name
            raise EditError(i, f"unknown type {kind!r} (known: {', '.join(EDIT_TYPES)})", "type")
        geoms, numbers = EDIT_TYPES[kind]
        allowed = {"type", "name", "description", "geometry", "target", *numbers}
        extra = set(e) - allowed
        if extra:
            raise EditError(i, f"unknown member(s) {', '.join(sorted(extra))} for {kind}")
        clean: dict[str, Any] = {"type": kind}
        for k in ("name", "description"):
            if k in e:
                if not isinstance(e[k], str):
                    raise EditError(i, "must be a string", k)
                clean[k] = e[k]
        if kind in TARGETED:
            if not isinstance(e.get("target"), str) or not e["target"]:
                raise EditError(i, "the id of the stop to change is required", "target")
            clean["target"] = e["target"]
        if geoms is not None:
            g = e.get("geometry")
            if not isinstance(g, dict) or g.get("type") not in geoms:
                raise EditError(i, f"a GeoJSON {' or '.join(geoms)} is required", "geometry")
            try:
                validate_geometry(g)
            except BadRequestData as err:
                raise EditError(i, err.detail, "geometry") from None
            clean["geometry"] = {"type": g["type"], "coordinates": g["coordinates"]}
        for k, (default, lo, hi) in numbers.items():
            v = e.get(k, default)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
                raise EditError(i, f"must be a number in [{lo:g}, {hi:g}], got {v!r}", k)
            clean[k] = float(v)
        out.append(clean)
    return out


@dataclass
class Scenario:
    id: str
    name: str
    description: str
    edits: list[dict[str, Any]]
    created_at: str | None = None
    modified_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "name": self.name, "description": self.description,
                               "edits": self.edits}
        if self.created_at:
            out["createdAt"] = self.created_at
        if self.modified_at:
            out["modifiedAt"] = self.modified_at
        return out


def stop_id(scenario_id: str, index: int) -> str:
    return f"urn:ngsi-ld:GtfsStop:scenario:{scenario_id}:{index}"


def multipliers(rec: Record, edits: list[dict[str, Any]], frame: Frame) -> dict[str, tuple[float, list[int]]]:
    """attribute -> (factor, indexes of the edits that changed it) for one sensor record."""
    if not rec.geometry:
        return {}
    targets = {TRAFFIC[0]: TRAFFIC[1], NO2[0]: NO2[1]}
    attr = targets.get(rec.type)
    if attr is None:
        return {}
    pt = frame.project(rec.geometry)
    traffic = rec.type == TRAFFIC[0]
    factor, by = 1.0, []
    for i, e in enumerate(edits):
        if e["type"] == "closeStreet" and shapely.dwithin(frame.project(e["geometry"]), pt, e["bufferMetres"]):
            factor *= 0.0 if traffic else 1 - e["trafficShare"]
        elif e["type"] == "lowEmissionZone" and shapely.intersects(frame.project(e["geometry"]), pt):
            factor *= (1 - e["trafficReductionPercent"] / 100 if traffic
                       else 1 - e["trafficShare"] * e["reductionPercent"] / 100)
        else:
            continue
        by.append(i)
    return {attr: (factor, by)} if by else {}


def apply(inputs: Inputs, scenario: Scenario) -> tuple[Inputs, list[dict[str, Any]]]:
    """A copy of ``inputs`` with the scenario's edits made, and per edit the ids it affected."""
    # copy on write: new lists, and a new Record for each record an edit changes (the rest is shared,
    # read-only: a city's 1,500 buildings are not copied for a stop that moves)
    out = Inputs(records={t: list(rs) for t, rs in inputs.records.items()},
                 series=dataclasses.replace(inputs.series) if inputs.series is not None else None)
    affected: list[list[str]] = [[] for _ in scenario.edits]
    stops = out.records.get(STOP_TYPE)
    if stops is not None:
        for i, e in enumerate(scenario.edits):
            if e["type"] == "addStop":
                sid = stop_id(scenario.id, i)
                props = {"name": e["name"]} if "name" in e else {}
                stops.append(Record(id=sid, type=STOP_TYPE, geometry=dict(e["geometry"]), props=props))
                affected[i].append(sid)
            elif e["type"] == "removeStop":
                before = len(stops)
                stops[:] = [s for s in stops if s.id != e["target"]]
                if len(stops) < before:
                    affected[i].append(e["target"])
            elif e["type"] == "moveStop":
                for k, s in enumerate(stops):
                    if s.id == e["target"]:
                        stops[k] = dataclasses.replace(s, geometry=dict(e["geometry"]))
                        affected[i].append(s.id)
    if any(e["type"] in ("closeStreet", "lowEmissionZone") for e in scenario.edits):
        sensors = [r for t in (TRAFFIC[0], NO2[0]) for r in out.records.get(t, [])]
        frame = Frame.around([r.geometry for r in sensors if r.geometry])
        for t in (TRAFFIC[0], NO2[0]):
            recs = out.records.get(t, [])
            for k, rec in enumerate(recs):
                for attr, (factor, by) in multipliers(rec, scenario.edits, frame).items():
                    v = rec.number(attr)
                    if v is not None:
                        recs[k] = dataclasses.replace(rec, props={**rec.props, attr: v * factor})
                    for i in by:
                        affected[i].append(rec.id)
                    ser = out.series
                    if ser is not None and ser.entity_id == rec.id and ser.attribute == attr:
                        ser.points = [(ts, x * factor) for ts, x in ser.points]
    effects = [{"edit": i, "type": e["type"], "affected": sorted(set(a))} for i, (e, a) in
               enumerate(zip(scenario.edits, affected, strict=True))]
    return out, effects
