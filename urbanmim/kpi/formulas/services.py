"""City-services KPIs: smart street lighting, sensor-equipped waste containers, cultural infrastructure.

"Smart" is judged by what the platform sees, not by an asset register's label: a street
light is smart when it reported its state during the period, a container has a fill-level
sensor when a fill level was *observed* (``observedAt``) during the period. That makes the
figure checkable from the data and keeps a dead sensor from counting.
"""

from __future__ import annotations

from urbanmim.kpi.citydata import CityData
from urbanmim.kpi.formulas.base import NoData, Outcome, formula, pct, per_100k
from urbanmim.kpi.formulas.common import categories, population, r, records_input


@formula("UM: EC: SL: 1P", "1",
         "Streetlights with any observed (observedAt) attribute written during the period / all Streetlights x 100",
         ("Streetlight: any attribute with observedAt (temporal history)",), history=True)
async def smart_street_lighting(cd: CityData) -> list[Outcome]:
    lights = await cd.entities("Streetlight")
    if not lights:
        raise NoData("no Streetlight entities")
    smart = [e["id"] for e in lights if await cd.observed_in_period(e)]
    recs = await cd.records("Streetlight")
    return [Outcome(value=r(pct(len(smart), len(lights)), 2), quality="measured",
                    inputs=[records_input("Streetlight", ["observedAt of any attribute"], recs)],
                    notes=[f"{len(smart)} of {len(lights)} street lights reported during the period"])]


@formula("UM: EC: WA: 1P", "1",
         "WasteContainers with fillingLevel observed (observedAt) during the period / all WasteContainers x 100",
         ("WasteContainer: fillingLevel with observedAt (temporal history)",), history=True)
async def waste_sensors(cd: CityData) -> list[Outcome]:
    containers = await cd.entities("WasteContainer")
    if not containers:
        raise NoData("no WasteContainer entities")
    sensed = [e["id"] for e in containers if "fillingLevel" in await cd.observed_in_period(e)]
    recs = await cd.records("WasteContainer")
    return [Outcome(value=r(pct(len(sensed), len(containers)), 2), quality="measured",
                    inputs=[records_input("WasteContainer", ["fillingLevel"], recs)],
                    notes=[f"{len(sensed)} of {len(containers)} containers reported a fill level during the period"])]


CULTURAL = frozenset({"museum", "theatre", "library", "cinema", "gallery", "artsCentre", "concertHall",
                      "culturalCentre", "operaHouse", "artGallery"})


@formula("SC: EH: C: 2A", "1",
         "(Museums + PointsOfInterest of a cultural category) / residents x 100,000",
         ("Museum", "PointOfInterest: category", "District: population"))
async def cultural_infrastructure(cd: CityData) -> list[Outcome]:
    pop, pop_in = await population(cd)
    museums = await cd.records("Museum")
    pois = [p for p in await cd.records("PointOfInterest") if categories(p) & CULTURAL]
    if not museums and not pois:
        raise NoData("no Museum or cultural PointOfInterest entities")
    n = len(museums) + len(pois)
    inputs = [records_input("Museum", ["id"], museums)] if museums else []
    if pois:
        inputs.append(records_input("PointOfInterest", ["category"], pois, "category==" + ",".join(sorted(CULTURAL))))
    return [Outcome(value=r(per_100k(n, pop), 2), quality="calculated", inputs=[*inputs, pop_in],
                    notes=[f"{len(museums)} museums and {len(pois)} other cultural venues"],
                    denominators={"population": pop})]
