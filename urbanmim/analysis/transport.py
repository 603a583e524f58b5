"""Public-transport convenience (U4SSC KPI EC: I: T: 2A): share of residents near a stop, per district.

The KPI is "percentage of the city population that has convenient access (within 0.5 km)
to public transport". Cities rarely publish where each resident lives, so residents are
placed from what the platform holds, per district:

* **buildings** — when the district contains residential buildings (category apartments,
  residential, house, ...; a building belongs to the district its footprint's centroid
  falls in), its ``population`` is shared among them in proportion to floor area
  (footprint area × ``floorsAboveGround``, 1 floor when unknown): people live in floor
  space, and a tower holds more households than a villa of the same footprint. A building is
  served when its centroid is within the radius of a stop (straight-line distance, as the
  U4SSC definition measures it).
* **area** — otherwise residents are spread uniformly over the district's area, and the
  served share is the share of that area within the radius of any stop (the district
  polygon intersected with the union of the stops' discs). Uniform is the least-informed
  assumption, so the output says, per district, which method was used.

Distances are measured in metres on the city's local projection (``data.Frame``); discs are
polygons of 256 vertices (area 0.01 % below the true circle's). Buildings are matched to
districts and stops with Shapely STRtrees, so a city of thousands of buildings takes
milliseconds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import shapely

from urbanmim.algorithms.register import Algorithm, Risk
from urbanmim.analysis.data import Frame, Inputs, Needs, Record, feature
from urbanmim.analysis.model import Parameter, Result

RESIDENTIAL = frozenset({"apartments", "residential", "house", "detached", "semidetached_house", "terrace",
                         "bungalow", "dormitory", "farm", "houseboat", "static_caravan", "cabin"})
STOP_TYPES = ("GtfsStop",)
QUAD_SEGS = 64


def _polygonal(g: Any) -> bool:
    return isinstance(g, dict) and g.get("type") in ("Polygon", "MultiPolygon")


def _categories(rec: Record) -> set[str]:
    v = rec.props.get("category")
    if isinstance(v, str):
        return {v}
    return {c for c in v if isinstance(c, str)} if isinstance(v, list) else set()


class TransportConvenience:
    id = "transport-convenience"
    name = "Public-transport convenience"
    version = "1"
    unit: str | None = "1"
    description = ("Share of residents within a walking radius of a public-transport stop, per district "
                   "(U4SSC EC: I: T: 2A).")
    parameters = (Parameter("radius", "number", "walking distance to the nearest stop", default=500.0, min=50,
                            max=2000, unit="m"),)
    inputs = ("District: location (Polygon), population", "Building: location, floorsAboveGround, category",
              "GtfsStop: location")
    outputs = ("per district: value (share 0..1), residents, servedResidents, method (buildings | area)",
               "summary: city share, residents, servedResidents")
    algorithm = Algorithm(
        id="analysis.transport-convenience", name=name, version=version, kind="analysis",
        purpose="Show, per district, how many residents live within walking distance of public transport, the "
                "U4SSC indicator EC: I: T: 2A, so planners see which districts are under-served and what a new "
                "or moved stop would change.",
        method="Residents of a district are its population spread over its residential buildings by floor area "
               "(footprint x floors) or, without residential buildings, uniformly over its area. A resident is "
               "served when within the radius (500 m by default, straight line, local metric projection) of a "
               "GtfsStop. Value = served residents / residents.",
        inputs=("District location and population", "Building location, category, floorsAboveGround",
                "GtfsStop location", "parameter radius (m)"),
        outputs=("share of served residents per district and for the city (GeoJSON choropleth)",
                 "urbanmim:AnalysisResult entities per district"),
        owner="the city's urban planning department", contact="see the platform's /algorithms page",
        human_oversight="A planner reads the choropleth together with the method used per district; results are "
                        "indicative and are not used for automated decisions.",
        risks=(Risk("Straight-line distance overstates access where barriers (rivers, rail, motorways) lengthen "
                    "the walk.", "State the method next to the figure; compare with a network-distance study "
                    "before investing."),
               Risk("Without residential buildings the uniform spread misplaces residents in large districts.",
                    "Each district reports its method; load building data to switch it to buildings.")),
        component="analysis", references=("ITU-T Y.4903 / U4SSC KPI EC: I: T: 2A",),
    )

    def needs(self, params: dict[str, Any]) -> Needs:
        return Needs(types=("District", "Building", *STOP_TYPES))

    def run(self, inputs: Inputs, params: dict[str, Any]) -> Result:
        radius = float(params["radius"])
        districts = [d for d in inputs.of("District") if _polygonal(d.geometry)]
        frame = Frame.around([d.geometry for d in districts if d.geometry])
        # make_valid: the platform accepts self-intersecting polygons (RFC 7946 allows them), GEOS overlays do not
        dpolys = list(shapely.make_valid(frame.project_many([d.geometry for d in districts if d.geometry])))
        stops = [s for t in STOP_TYPES for s in inputs.of(t)
                 if s.geometry and s.geometry.get("type") == "Point"]
        spts = np.array([s.geometry["coordinates"][:2] for s in stops if s.geometry], dtype=float).reshape(-1, 2)
        sxy = frame.points(spts) if len(spts) else np.empty((0, 2))
        stop_geoms = shapely.points(sxy) if len(sxy) else np.empty(0, dtype=object)

        # residential buildings: centroid (metres), floor area, district
        bld = [b for b in inputs.of("Building") if _polygonal(b.geometry) and _categories(b) & RESIDENTIAL]
        barr = frame.project_many([b.geometry for b in bld if b.geometry])
        floors = np.array([max(1.0, b.number("floorsAboveGround") or 1.0) for b in bld], dtype=float)
        weights = shapely.area(barr) * floors if len(bld) else np.empty(0)
        centroids = shapely.centroid(barr) if len(bld) else np.empty(0, dtype=object)
        owner = np.full(len(bld), -1)
        if len(bld) and dpolys:
            bi, di = shapely.STRtree(dpolys).query(centroids, predicate="within")
            owner[bi] = di          # a centroid on a shared edge goes to one of the two
        served_b = np.zeros(len(bld), dtype=bool)
        if len(bld) and len(sxy):
            bi, _ = shapely.STRtree(stop_geoms).query(centroids, predicate="dwithin", distance=radius)
            served_b[bi] = True
        zone = (shapely.union_all(shapely.buffer(stop_geoms, radius, quad_segs=QUAD_SEGS))
                if len(sxy) else shapely.Polygon())

        feats: list[dict[str, Any]] = []
        tot_res = tot_served = 0.0
        methods = {"buildings": 0, "area": 0}
        for k, (d, poly) in enumerate(zip(districts, dpolys, strict=True)):
            pop = d.number("population")
            mine = owner == k
            if mine.any() and weights[mine].sum() > 0:
                method = "buildings"
                share = float(weights[mine & served_b].sum() / weights[mine].sum())
            else:
                method = "area"
                area = shapely.area(poly)
                share = float(shapely.area(shapely.intersection(poly, zone)) / area) if area > 0 else 0.0
            methods[method] += 1
            residents = max(0.0, pop) if pop is not None else 0.0
            served = residents * share
            tot_res += residents
            tot_served += served
            feats.append(feature(d.id, d.geometry, {
                "label": d.label(), "value": _r(share) if residents > 0 else None, "residents": _r(residents),
                "servedResidents": _r(served), "method": method}))
        summary = {"value": _r(tot_served / tot_res) if tot_res > 0 else None, "residents": _r(tot_res),
                   "servedResidents": _r(tot_served), "districts": len(districts), "stops": len(stops),
                   "residentialBuildings": int((owner >= 0).sum()), "methods": methods, "radius": radius}
        return Result(unit=self.unit, summary=summary, features=feats)


def _r(x: float) -> float:
    return round(float(x), 6)
