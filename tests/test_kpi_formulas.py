"""Every KPI formula against a value computed by hand on a small fixture city ("testville").

The city sits on the equator, where the geometry is easy to do on paper (WGS84):
one degree of longitude along the equator is a·π/180 = 6378137·π/180 = 111,319.49 m, so
0.01° = 1,113.195 m; 0.001° of latitude there is M(0)·π/180·0.001 = 6335439·π/180·0.001
= 110.574 m. The districts hold 10,000 residents, so "per 100,000" is ×10.

    D1 [0,0.01]x[0,0.01]  population 6,000      D2 [0.01,0.02]x[0,0.01]  population 4,000
    buildings (residential, 0.0002° squares): B1 (0.005,0.005) 1 floor, B2 (0.001,0.009) 1 floor (in D1)
                                              B3 (0.015,0.005) 3 floors, B4 (0.0125,0.005) 1 floor (in D2)
    stops: S1 (0.005,0.005), S2 (0.019,0.005), S3 (0.03,0.03)

History is written for the year 2025 (observedAt), and every value is computed for period "2025".
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from urbanmim.kpi import engine, values
from urbanmim.kpi.formulas import FORMULAS

pytestmark = pytest.mark.asyncio
TENANT = "testville"
H = {"NGSILD-Tenant": TENANT}


def _sq(x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


def _pt(x: float, y: float) -> dict[str, Any]:
    return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [x, y]}}


def _geo(g: dict[str, Any]) -> dict[str, Any]:
    return {"type": "GeoProperty", "value": g}


def P(v: Any, at: str | None = None) -> dict[str, Any]:   # noqa: N802
    out: dict[str, Any] = {"type": "Property", "value": v}
    if at:
        out["observedAt"] = at
    return out


def R(target: str) -> dict[str, Any]:   # noqa: N802
    return {"type": "Relationship", "object": target}


def _building(i: int, x: float, y: float, floors: int) -> dict[str, Any]:
    h = 0.0001
    return {"id": f"urn:ngsi-ld:Building:B{i}", "type": "Building", "category": P(["residential"]),
            "floorsAboveGround": P(floors), "location": _geo(_sq(x - h, y - h, x + h, y + h))}


def _line(*pts: tuple[float, float]) -> dict[str, Any]:
    return _geo({"type": "LineString", "coordinates": [list(p) for p in pts]})


def city() -> list[dict[str, Any]]:
    ents: list[dict[str, Any]] = [
        {"id": "urn:ngsi-ld:District:D1", "type": "District", "name": P("One"), "population": P(6000),
         "location": _geo(_sq(0, 0, 0.01, 0.01))},
        {"id": "urn:ngsi-ld:District:D2", "type": "District", "name": P("Two"), "population": P(4000),
         "location": _geo(_sq(0.01, 0, 0.02, 0.01))},
        _building(1, 0.005, 0.005, 1), _building(2, 0.001, 0.009, 1),
        _building(3, 0.015, 0.005, 3), _building(4, 0.0125, 0.005, 1),
        {"id": "urn:ngsi-ld:GtfsStop:S1", "type": "GtfsStop", "location": _pt(0.005, 0.005),
         "nextArrival": P("2025-06-01T08:05:00Z", "2025-06-01T08:00:00Z")},       # a live feed writes here
        {"id": "urn:ngsi-ld:GtfsStop:S2", "type": "GtfsStop", "location": _pt(0.019, 0.005)},
        {"id": "urn:ngsi-ld:GtfsStop:S3", "type": "GtfsStop", "location": _pt(0.03, 0.03)},
        # routes: R1 both ways over 0.01° of equator, R2 0.02° one way and 0.01° back
        {"id": "urn:ngsi-ld:GtfsShape:R1-0", "type": "GtfsShape", "location": _line((0, 0), (0.01, 0))},
        {"id": "urn:ngsi-ld:GtfsShape:R1-1", "type": "GtfsShape", "location": _line((0.01, 0), (0, 0))},
        {"id": "urn:ngsi-ld:GtfsShape:R2-0", "type": "GtfsShape", "location": _line((0.01, 0), (0.03, 0))},
        {"id": "urn:ngsi-ld:GtfsShape:R2-1", "type": "GtfsShape", "location": _line((0.02, 0), (0.01, 0))},
        *({"id": f"urn:ngsi-ld:GtfsTrip:T{n}", "type": "GtfsTrip", "hasRoute": R(f"urn:ngsi-ld:GtfsRoute:{r}"),
           "hasShape": R(f"urn:ngsi-ld:GtfsShape:{s}")}
          for n, r, s in ((1, "R1", "R1-0"), (2, "R1", "R1-1"), (3, "R2", "R2-0"), (4, "R2", "R2-1"))),
        # green: a park and a garden overlapping half of it; a park point of interest next to B4
        {"id": "urn:ngsi-ld:Park:P1", "type": "Park", "location": _geo(_sq(0, 0, 0.001, 0.001))},
        {"id": "urn:ngsi-ld:Garden:G1", "type": "Garden", "location": _geo(_sq(0.0005, 0, 0.0015, 0.001))},
        {"id": "urn:ngsi-ld:PointOfInterest:PK", "type": "PointOfInterest", "category": P(["park"]),
         "location": _pt(0.0125, 0.005)},
        {"id": "urn:ngsi-ld:PointOfInterest:TH", "type": "PointOfInterest", "category": P(["theatre"]),
         "location": _pt(0.006, 0.006)},
        {"id": "urn:ngsi-ld:Museum:M1", "type": "Museum", "location": _pt(0.004, 0.004)},
        {"id": "urn:ngsi-ld:Museum:M2", "type": "Museum", "location": _pt(0.014, 0.004)},
        # mobility services
        {"id": "urn:ngsi-ld:EVChargingStation:E1", "type": "EVChargingStation", "socketNumber": P(4)},
        {"id": "urn:ngsi-ld:EVChargingStation:E2", "type": "EVChargingStation", "capacity": P(2)},
        {"id": "urn:ngsi-ld:EVChargingStation:E3", "type": "EVChargingStation", "name": P("no size known")},
        {"id": "urn:ngsi-ld:BikeHireDockingStation:K1", "type": "BikeHireDockingStation", "totalSlotNumber": P(20)},
        {"id": "urn:ngsi-ld:BikeHireDockingStation:K2", "type": "BikeHireDockingStation", "totalSlotNumber": P(10)},
        # street lights: L1, L4 report in 2025; L2 last reported in 2024; L3 never reports
        {"id": "urn:ngsi-ld:Streetlight:L1", "type": "Streetlight", "powerState": P("on", "2025-03-01T20:00:00Z")},
        {"id": "urn:ngsi-ld:Streetlight:L2", "type": "Streetlight", "powerState": P("on", "2024-06-01T20:00:00Z")},
        {"id": "urn:ngsi-ld:Streetlight:L3", "type": "Streetlight", "powerState": P("on")},
        {"id": "urn:ngsi-ld:Streetlight:L4", "type": "Streetlight", "powerState": P("off", "2025-12-31T23:00:00Z")},
        # waste: W1 has a fill-level sensor; W2's fill level is typed in; W3 reports only its status
        {"id": "urn:ngsi-ld:WasteContainer:W1", "type": "WasteContainer",
         "fillingLevel": P(0.4, "2025-05-01T10:00:00Z")},
        {"id": "urn:ngsi-ld:WasteContainer:W2", "type": "WasteContainer", "fillingLevel": P(0.5)},
        {"id": "urn:ngsi-ld:WasteContainer:W3", "type": "WasteContainer", "status": P("ok", "2025-05-01T10:00:00Z")},
        # air quality stations and noise sensors, first reading (more history below)
        {"id": "urn:ngsi-ld:AirQualityObserved:A1", "type": "AirQualityObserved", "location": _pt(0.005, 0.005),
         "no2": P(10, "2025-01-10T00:00:00Z"), "pm10": P(15, "2025-01-10T00:00:00Z")},
        {"id": "urn:ngsi-ld:AirQualityObserved:A2", "type": "AirQualityObserved", "location": _pt(0.015, 0.005),
         "no2": P(40, "2025-01-10T00:00:00Z")},
        {"id": "urn:ngsi-ld:NoiseLevelObserved:N1", "type": "NoiseLevelObserved", "location": _pt(0.003, 0.005),
         "LAeq": P(58, "2025-04-01T12:00:00Z")},
        {"id": "urn:ngsi-ld:NoiseLevelObserved:N2", "type": "NoiseLevelObserved", "location": _pt(0.025, 0.005),
         "LAeq": P(50, "2025-04-01T12:00:00Z")},
    ]
    return ents


# later readings: (entity, attribute, value, observedAt)
HISTORY = [
    ("urn:ngsi-ld:AirQualityObserved:A1", "no2", 20, "2025-02-10T00:00:00Z"),
    ("urn:ngsi-ld:AirQualityObserved:A1", "no2", 30, "2025-03-10T00:00:00Z"),
    ("urn:ngsi-ld:AirQualityObserved:A2", "no2", 60, "2025-01-11T00:00:00Z"),
    ("urn:ngsi-ld:AirQualityObserved:A2", "no2", 99, "2026-02-01T00:00:00Z"),    # outside the period
    ("urn:ngsi-ld:NoiseLevelObserved:N1", "LAeq", 62, "2025-04-01T13:00:00Z"),
]


async def load_city(client: httpx.AsyncClient, tenant: str = TENANT) -> None:
    h = {"NGSILD-Tenant": tenant}
    r = await client.post("/entityOperations/create", json=city(), headers=h)
    assert r.status_code == 201, r.text
    for eid, attr, v, at in HISTORY:
        r = await client.patch(f"/entities/{eid}/attrs", json={attr: P(v, at)}, headers=h)
        assert r.status_code == 204, r.text


async def computed(app: Any, client: httpx.AsyncClient) -> dict[str, Any]:
    await load_city(client)
    report = await engine.compute(app, TENANT, period="2025")
    assert not report.errors, report.errors
    return {"report": report, "by": {v.key: v for v in report.computed}}


async def test_every_formula_against_hand_computed_values(app: Any, client: httpx.AsyncClient) -> None:
    got = await computed(app, client)
    by = got["by"]

    # Air pollution, per pollutant: mean over stations of each station's period mean.
    # NO2: A1 (10+20+30)/3 = 20, A2 (40+60)/2 = 50 (the 2026 reading is outside 2025) -> (20+50)/2 = 35
    no2 = by["EN-EN-AQ-1C.no2"]
    assert no2.value == pytest.approx(35.0) and no2.unit == "µg/m³"
    # coverage: A1 has 3 of 12 months, A2 1 of 12 -> mean 1/6 < 75 % -> an estimate
    assert no2.quality == "estimate"
    assert no2.details["stationMeans"] == {"urn:ngsi-ld:AirQualityObserved:A1": 20.0,
                                           "urn:ngsi-ld:AirQualityObserved:A2": 50.0}
    assert no2.target == 20.0                       # the EU 2030 annual limit value
    # PM10: only A1, one reading of 15
    assert by["EN-EN-AQ-1C.pm10"].value == pytest.approx(15.0)
    assert "EN-EN-AQ-1C.o3" not in by               # no station measures it: no value, not a zero

    # Public transport network: R1 by its longest shape 0.01° = 1,113.195 m, R2 by 0.02° = 2,226.390 m
    # -> 3.339585 km for 10,000 residents -> 33.396 km per 100,000
    net = by["EC-I-T-1C"]
    assert net.value == pytest.approx(33.396, abs=0.002)
    assert net.quality == "calculated" and net.details["routes"] == 2

    # Convenience (500 m): D1: B1 is at S1 (0 m), B2 is 0.004°/0.004° from S1 (~627 m) -> 1 of 2 equal
    # buildings -> 6,000 x 1/2 = 3,000; D2: B3 is 0.004° (445 m) from S2, B4 is 0.0065° (724 m) from S2 and
    # 0.0075° from S1 -> floor area 3 of 4 -> 4,000 x 3/4 = 3,000. (3,000 + 3,000) / 10,000 = 60 %
    assert by["EC-I-T-2A"].value == pytest.approx(60.0, abs=0.01)
    assert by["EC-I-T-2A"].quality == "estimate"

    # Dynamic information: S1 got a real-time value in 2025, S2 and S3 never -> 1/3 = 33.33 %
    assert by["EC-ICT-T-1C"].value == pytest.approx(33.33)

    # Shared bicycles: docking capacity 20 + 10 = 30 for 10,000 residents -> 300 per 100,000
    assert by["EC-I-T-6A"].value == pytest.approx(300.0)

    # EV charging points: 4 sockets + capacity 2 + 1 (nothing known) = 7 -> 70 per 100,000
    assert by["UM-EN-T-1P"].value == pytest.approx(70.0)

    # Smart street lighting: L1 and L4 reported in 2025; L2 only in 2024, L3 never -> 2/4 = 50 %
    assert by["UM-EC-SL-1P"].value == pytest.approx(50.0)

    # Fill-level sensors: only W1's fillingLevel was observed in 2025 -> 1/3 = 33.33 %
    assert by["UM-EC-WA-1P"].value == pytest.approx(33.33)

    # Noise: D1 contains N1, period mean (58+62)/2 = 60 > 55 -> 6,000 exposed; D2 contains no sensor, its nearest
    # is N2 (0.005° east of it; N1 is 0.007° west) at 50 dB -> not exposed. 6,000 / 10,000 = 60 %
    noise = by["EN-EN-EQ-2A"]
    assert noise.value == pytest.approx(60.0)
    assert noise.details["districtLevels"] == {"One": 60.0, "Two": 50.0}

    # Green areas: P1 0.001° x 0.001° = 111.319 m x 110.574 m = 12,309 m²; G1 overlaps half of it, so the union is
    # 1.5 x that = 18,464 m² = 1.8464 ha for 10,000 residents -> 18.46 ha per 100,000
    assert by["EN-EN-PSN-1C"].value == pytest.approx(18.46, rel=2e-3)
    assert by["EN-EN-PSN-1C"].quality == "calculated"

    # Green accessibility: P1 and G1 are > 590 m from every building; the park point PK sits on B4 and is
    # 0.0025° (278 m) from B3, 0.0075° (835 m) from B1 -> all of D2 is served: 4,000 of 10,000 = 40 %
    assert by["EN-EN-PSN-2A"].value == pytest.approx(40.0, abs=0.01)

    # Cultural infrastructure: 2 museums + 1 theatre (the park is not cultural) = 3 -> 30 per 100,000
    assert by["SC-EH-C-2A"].value == pytest.approx(30.0)

    # every formula produced a value on this city
    assert {v.code for v in got["report"].computed} == set(FORMULAS)


async def test_provenance_on_every_value(app: Any, client: httpx.AsyncClient) -> None:
    got = await computed(app, client)
    for v in got["report"].computed:
        assert v.period == "2025" and v.method == "automatic" and not v.verified
        assert v.formula_id == FORMULAS[v.code].id and v.formula_version == FORMULAS[v.code].version
        assert v.formula and v.inputs and all(i.count > 0 and i.query for i in v.inputs)
        assert v.denominators["population"] == 10_000
        assert v.denominators["areaKm2"] == pytest.approx(2 * 1.113195 * 1.10574, rel=2e-3)
    net = got["by"]["EC-I-T-1C"]
    shapes = next(i for i in net.inputs if i.entity_type == "GtfsShape")
    assert shapes.ids == [f"urn:ngsi-ld:GtfsShape:{s}" for s in ("R1-0", "R1-1", "R2-0", "R2-1")]
    # stored as SDM KeyPerformanceIndicator entities, read back identically
    stored = {v.key: v for v in await values.load(app, TENANT)}
    assert set(stored) == set(got["by"])
    assert stored["EC-I-T-1C"].inputs == net.inputs and stored["EC-I-T-1C"].value == net.value


async def test_no_data_writes_nothing(app: Any, client: httpx.AsyncClient) -> None:
    r = await client.post("/entities", json={"id": "urn:ngsi-ld:District:X", "type": "District",
                                             "population": P(100)}, headers={"NGSILD-Tenant": "empty"})
    assert r.status_code == 201
    report = await engine.compute(app, "empty", period="2025")
    assert report.computed == [] and not report.errors
    assert {c for c, _ in report.skipped} == set(FORMULAS)
    assert await values.load(app, "empty") == []


async def test_bucket_mean_equals_the_temporal_service_aggregate(app: Any, client: httpx.AsyncClient) -> None:
    """CityData.mean sums hour buckets itself (fast path); the temporal service's aggregatedValues agrees."""
    from urbanmim.kpi.citydata import CityData
    from urbanmim.kpi.periods import parse_period

    await load_city(client)
    for period in ("2025", "2025-01", "2026"):
        cd = CityData(app, TENANT, parse_period(period))
        for eid, attr in (("urn:ngsi-ld:AirQualityObserved:A1", "no2"), ("urn:ngsi-ld:AirQualityObserved:A2", "no2"),
                          ("urn:ngsi-ld:NoiseLevelObserved:N1", "LAeq")):
            iri = "https://uri.etsi.org/ngsi-ld/default-context/" + attr
            fast, slow = await cd.mean(eid, iri), await cd.mean_via_service(eid, iri)
            assert (fast.count, fast.months) == (slow.count, slow.months), (period, eid)
            assert fast.value == pytest.approx(slow.value) if slow.value is not None else fast.value is None


async def test_state_based_values_for_a_closed_period_say_so(app: Any, client: httpx.AsyncClient) -> None:
    got = await computed(app, client)
    for v in got["report"].computed:
        stale = any("as they are now" in n for n in v.notes)
        assert stale == (not FORMULAS[v.code].history), v.code
