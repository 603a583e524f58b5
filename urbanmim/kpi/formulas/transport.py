"""Transport KPIs: network length, convenience (500 m), dynamic information, shared bikes, EV charging.

Public transport data arrives as GTFS (``urbanmim import gtfs``): routes, stops, shapes and
trips as Smart Data Models ``Gtfs*`` entities. A route runs both ways over (mostly) the same
street, so the network length counts each route once, by its longest shape, as U4SSC
counts line kilometres rather than vehicle kilometres.
"""

from __future__ import annotations

from urbanmim.algorithms.register import Risk
from urbanmim.kpi.citydata import CityData
from urbanmim.kpi.formulas.base import NoData, Outcome, formula, pct, per_100k
from urbanmim.kpi.formulas.common import geodesic_length_m, population, r, records_input
from urbanmim.kpi.formulas.environment import _convenience


@formula("EC: I: T: 1C", "1",
         "sum over routes of the geodesic length of the route's longest GtfsShape (km) / residents x 100,000",
         ("GtfsShape: location (LineString)", "GtfsTrip: hasRoute, hasShape", "District: population"))
async def network_length(cd: CityData) -> list[Outcome]:
    pop, pop_in = await population(cd)
    shapes = {s.id: s for s in await cd.records("GtfsShape")
              if s.geometry and s.geometry.get("type") in ("LineString", "MultiLineString")}
    if not shapes:
        raise NoData("no GtfsShape geometry (import the GTFS feed with its shapes.txt)")
    length = {sid: geodesic_length_m(s.geometry or {}) for sid, s in shapes.items()}
    trips = await cd.records("GtfsTrip")
    by_route: dict[str, set[str]] = {}
    for t in trips:
        route, shape = t.props.get("hasRoute"), t.props.get("hasShape")
        if isinstance(route, str) and isinstance(shape, str) and shape in shapes:
            by_route.setdefault(route, set()).add(shape)
    linked = set().union(*by_route.values()) if by_route else set()
    km = sum(max(length[s] for s in ss) for ss in by_route.values()) / 1000.0
    alone = [s for s in shapes if s not in linked]
    km += sum(length[s] for s in alone) / 1000.0
    notes = [f"{len(by_route)} routes by their longest shape, {km:.2f} km"]
    if alone:
        notes.append(f"{len(alone)} shapes not used by any trip counted on their own")
    return [Outcome(value=r(per_100k(km, pop), 3), quality="calculated",
                    inputs=[records_input("GtfsShape", ["location"], list(shapes.values())),
                            records_input("GtfsTrip", ["hasRoute", "hasShape"], trips), pop_in],
                    notes=notes, details={"networkKm": r(km, 3), "routes": len(by_route)},
                    denominators={"population": pop})]


@formula("EC: I: T: 2A", "1",
         "residents within 500 m (straight line) of a GtfsStop / all residents x 100, residents placed by the "
         "analysis model transport-convenience",
         ("GtfsStop: location", "District: population, location", "Building: location, category, floorsAboveGround"),
         (Risk("Straight-line distance overstates access where barriers lengthen the walk.",
               "Data quality 'estimate'; the per-district method is in the analysis model's output."),))
async def convenience(cd: CityData) -> list[Outcome]:
    pop, pop_in = await population(cd)
    stops = [s for s in await cd.records("GtfsStop") if s.geometry and s.geometry.get("type") == "Point"]
    if not stops:
        raise NoData("no GtfsStop with a location")
    share, summary, bld = await _convenience(cd, stops)
    return [Outcome(value=r(share * 100, 2), quality="estimate",
                    inputs=[records_input("GtfsStop", ["location"], stops), pop_in, bld],
                    notes=["analysis model transport-convenience v1, radius 500 m; district methods "
                           f"{summary.get('methods')}"],
                    details={"servedResidents": summary.get("servedResidents")}, denominators={"population": pop})]


@formula("EC: ICT: T: 1C", "1",
         "GtfsStops with an observed (observedAt) attribute written during the period / all GtfsStops x 100",
         ("GtfsStop: any attribute with observedAt (temporal history)",), history=True)
async def dynamic_information(cd: CityData) -> list[Outcome]:
    stops = await cd.records("GtfsStop")
    if not stops:
        raise NoData("no GtfsStop entities")
    live = [e["id"] for e in await cd.entities("GtfsStop") if await cd.observed_in_period(e)]
    return [Outcome(value=r(pct(len(live), len(stops)), 2), quality="measured",
                    inputs=[records_input("GtfsStop", ["observedAt of any attribute"], stops)],
                    notes=[f"{len(live)} of {len(stops)} stops received real-time data in the period"],
                    details={"liveStops": sorted(live)[:50]})]


@formula("EC: I: T: 6A", "1", "sum of totalSlotNumber of BikeHireDockingStations / residents x 100,000",
         ("BikeHireDockingStation: totalSlotNumber", "District: population"))
async def shared_bicycles(cd: CityData) -> list[Outcome]:
    pop, pop_in = await population(cd)
    stations = await cd.records("BikeHireDockingStation")
    slots = [s.number("totalSlotNumber") for s in stations]
    counted = [s for s, n in zip(stations, slots, strict=True) if n is not None]
    if not counted:
        raise NoData("no BikeHireDockingStation with totalSlotNumber")
    bikes = sum(n for n in slots if n is not None)
    return [Outcome(value=r(per_100k(bikes, pop), 2), quality="estimate",
                    inputs=[records_input("BikeHireDockingStation", ["totalSlotNumber"], counted), pop_in],
                    notes=[f"fleet estimated as the docking capacity: {bikes:g} bicycles at {len(counted)} stations"],
                    denominators={"population": pop})]


@formula("UM: EN: T: 1P", "1",
         "sum of socketNumber (else capacity, else 1) of EVChargingStations / residents x 100,000",
         ("EVChargingStation: socketNumber, capacity", "District: population"))
async def ev_charging_points(cd: CityData) -> list[Outcome]:
    pop, pop_in = await population(cd)
    stations = await cd.records("EVChargingStation")
    if not stations:
        raise NoData("no EVChargingStation entities")
    points = 0.0
    for s in stations:
        points += s.number("socketNumber") or s.number("capacity") or 1.0
    return [Outcome(value=r(per_100k(points, pop), 2), quality="calculated",
                    inputs=[records_input("EVChargingStation", ["socketNumber", "capacity"], stations), pop_in],
                    notes=[f"{points:g} charging points at {len(stations)} stations"],
                    details={"chargingPoints": points}, denominators={"population": pop})]
