"""Environment KPIs: air pollution, noise exposure, green area and its accessibility.

Annual means come from the temporal service's aggregates (hour buckets), never from raw
instances fetched one by one, so a year of hourly history per station costs a handful of
bucket reads. Where the U4SSC definition asks for something the platform cannot observe
directly (Lden, residents' homes) the formula says what it uses instead, and its data
quality is "estimate".
"""

from __future__ import annotations

import numpy as np
import shapely

from urbanmim.algorithms.register import Risk
from urbanmim.analysis.data import Frame, Inputs, Record
from urbanmim.analysis.transport import TransportConvenience
from urbanmim.kpi.citydata import CityData
from urbanmim.kpi.formulas.base import NoData, Outcome, formula, pct, per_100k
from urbanmim.kpi.formulas.common import (
    categories,
    geodesic_area_m2,
    polygonal,
    population,
    r,
    records_input,
    representative_point,
)
from urbanmim.kpi.values import Input, input_of
from urbanmim.ngsild.entity import LOCATION

# pollutant -> default target (µg/m³, annual mean): the EU 2030 limit values (Directive (EU) 2024/2881)
POLLUTANTS: dict[str, float | None] = {"no2": 20.0, "pm10": 20.0, "pm25": 10.0, "o3": None, "so2": None}
MEASURED_COVERAGE = 0.75     # share of the period's months with data for a "measured" value


def _attr_iri(ent: dict, short: str) -> str | None:
    for iri in ent.get("attrs", {}):
        if iri.rsplit("/", 1)[-1] == short:
            return iri
    return None


@formula("EN: EN: AQ: 1C", "1",
         "per pollutant: mean over stations of (each station's mean of its observed values over the period)",
         ("AirQualityObserved: no2, pm10, pm25, o3, so2 (temporal history)",), history=True)
async def air_pollution(cd: CityData) -> list[Outcome]:
    stations = await cd.entities("AirQualityObserved")
    if not stations:
        raise NoData("no AirQualityObserved stations")
    months_total = cd.months_elapsed()
    out = []
    for pol, target in POLLUTANTS.items():
        means: dict[str, float] = {}
        coverage: list[float] = []
        for st in stations:
            iri = _attr_iri(st, pol)
            if iri is None:
                continue
            m = await cd.mean(st["id"], iri)
            if m.value is None:
                continue
            means[st["id"]] = m.value
            coverage.append(min(1.0, m.months / months_total))
        if not means:
            continue
        value = sum(means.values()) / len(means)
        cov = sum(coverage) / len(coverage)
        notes = [f"{len(means)} stations with {pol} data in the period; mean monthly coverage {cov:.0%}"]
        if cov < MEASURED_COVERAGE:
            notes.append(f"coverage below {MEASURED_COVERAGE:.0%} of the period: an estimate")
        out.append(Outcome(
            value=r(value, 2), quality="measured" if cov >= MEASURED_COVERAGE else "estimate", component=pol,
            unit="µg/m³", target=target, notes=notes,
            inputs=[input_of("AirQualityObserved", [pol], list(means), "GET /ngsi-ld/v1/temporal/entities?"
                             f"type=AirQualityObserved&attrs={pol}&options=aggregatedValues&aggrMethods=avg,totalCount"
                             "&aggrPeriodDuration=P1M")],
            details={"stationMeans": {k: r(v, 2) for k, v in means.items()}} if len(means) <= 50 else {}))
    if not out:
        raise NoData("no pollutant history in the period")
    return out


@formula("EN: EN: EQ: 2A", "1",
         "residents of districts whose noise level (mean LAeq of the sensors inside, else the nearest sensor) "
         "is above 55 dB(A) / all residents x 100",
         ("NoiseLevelObserved: LAeq (temporal history), location", "District: population, location"),
         (Risk("LAeq averaged arithmetically over hours stands in for Lden, which weights evening and night; a "
               "district gets one level.", "Data quality is 'estimate'; a strategic noise map replaces it as a "
               "manual value with evidence."),), history=True)
async def noise_exposure(cd: CityData) -> list[Outcome]:
    pop, pop_in = await population(cd)
    sensors = await cd.entities("NoiseLevelObserved")
    levels: dict[str, float] = {}
    where: dict[str, dict] = {}
    for s in sensors:
        iri = _attr_iri(s, "LAeq")
        loc = s["attrs"].get(LOCATION)
        if iri is None or not loc:
            continue
        m = await cd.mean(s["id"], iri)
        if m.value is not None:
            levels[s["id"]] = m.value
            where[s["id"]] = loc[0]["value"]
    if not levels:
        raise NoData("no NoiseLevelObserved history of LAeq in the period")
    districts = [d for d in (await cd.population())[1] if polygonal(d.geometry)]
    if not districts:
        raise NoData("no District polygons to place residents")
    frame = Frame.around([d.geometry for d in districts if d.geometry])
    ids = list(levels)
    pts = [frame.project(representative_point(where[i])) for i in ids]
    exposed = 0.0
    per_district = {}
    for d in districts:
        poly = frame.project(d.geometry or {})
        inside = [levels[i] for i, p in zip(ids, pts, strict=True) if poly.covers(p)]
        if inside:
            level = sum(inside) / len(inside)
        else:
            dist = [shapely.distance(poly, p) for p in pts]
            level = levels[ids[int(np.argmin(dist))]]
        per_district[d.label() or d.id] = r(level, 1)
        if level > 55.0:
            exposed += d.number("population") or 0.0
    return [Outcome(value=r(pct(exposed, pop), 2), quality="estimate",
                    inputs=[input_of("NoiseLevelObserved", ["LAeq", "location"], ids,
                                     "GET /ngsi-ld/v1/temporal/entities?type=NoiseLevelObserved&attrs=LAeq"
                                     "&options=aggregatedValues&aggrMethods=avg,totalCount&aggrPeriodDuration=P1M"),
                            pop_in],
                    notes=["Lden approximated by the period mean of hourly LAeq; threshold 55 dB(A)"],
                    details={"districtLevels": per_district}, denominators={"population": pop})]


GREEN_TYPES = ("Park", "Garden", "GreenspaceRecord")
GREEN_CATEGORIES = frozenset({"park", "garden", "greenArea", "greenspace", "playground", "forest"})


async def _green(cd: CityData) -> tuple[list[Record], list[Input]]:
    found: list[Record] = []
    inputs: list[Input] = []
    for t in GREEN_TYPES:
        recs = [x for x in await cd.records(t) if x.geometry]
        if recs:
            found += recs
            inputs.append(records_input(t, ["location"], recs))
    pois = [x for x in await cd.records("PointOfInterest") if x.geometry and categories(x) & GREEN_CATEGORIES]
    if pois:
        found += pois
        inputs.append(records_input("PointOfInterest", ["category", "location"], pois,
                                    "category==" + ",".join(sorted(GREEN_CATEGORIES))))
    return found, inputs


@formula("EN: EN: PSN: 1C", "1", "sum of the geodesic areas of green-area polygons (ha) / residents x 100,000",
         ("Park, Garden, GreenspaceRecord, PointOfInterest (category park/garden...): location polygons",
          "District: population"))
async def green_areas(cd: CityData) -> list[Outcome]:
    pop, pop_in = await population(cd)
    green, inputs = await _green(cd)
    polys = [g for g in green if polygonal(g.geometry)]
    if not polys:
        raise NoData("no green areas with a polygon (points give no area)")
    union = shapely.union_all([shapely.geometry.shape(g.geometry) for g in polys])   # overlaps counted once
    hectares = geodesic_area_m2(shapely.geometry.mapping(union)) / 10_000.0
    notes = [f"{len(polys)} green-area polygons, {hectares:.2f} ha"]
    if len(polys) < len(green):
        notes.append(f"{len(green) - len(polys)} green areas without a polygon were left out")
    return [Outcome(value=r(per_100k(hectares, pop), 3), quality="calculated", inputs=[*inputs, pop_in],
                    notes=notes, details={"hectares": r(hectares, 3)}, denominators={"population": pop})]


@formula("EN: EN: PSN: 2A", "1",
         "residents within 500 m of a green area (population spread over residential buildings, as for public "
         "transport convenience) / all residents x 100",
         ("Park, Garden, PointOfInterest (category park/garden...): location", "District: population, location",
          "Building: location, category, floorsAboveGround"))
async def green_accessibility(cd: CityData) -> list[Outcome]:
    pop, pop_in = await population(cd)
    green, inputs = await _green(cd)
    if not green:
        raise NoData("no green areas")
    # the transport-convenience model measures to points: each green area is its representative point
    targets = [Record(g.id, "GtfsStop", representative_point(g.geometry or {})) for g in green]
    share, summary, bld = await _convenience(cd, targets)
    return [Outcome(value=r(share * 100, 2), quality="estimate", inputs=[*inputs, pop_in, bld],
                    notes=[f"analysis model transport-convenience with green areas as destinations; district "
                           f"methods {summary.get('methods')}", "a green area counts by its representative point"],
                    denominators={"population": pop})]


async def _convenience(cd: CityData, targets: list[Record]) -> tuple[float, dict, Input]:
    """Run the analysis model ``transport-convenience`` (radius 500 m) over these destinations."""
    districts = await cd.records("District")
    buildings = await cd.records("Building")
    res = TransportConvenience().run(Inputs(records={"District": districts, "Building": buildings,
                                                     "GtfsStop": targets}), {"radius": 500.0})
    value = res.summary.get("value")
    if value is None:
        raise NoData("no district residents to place")
    return float(value), res.summary, records_input("Building", ["location", "category", "floorsAboveGround"],
                                                    buildings)
