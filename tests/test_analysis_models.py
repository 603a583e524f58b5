"""The analysis models on hand-computed fixtures (pure functions, no server).

Fixtures are laid out in metres on the local projection centred on (10°E, 45°N) and turned
into lon/lat with the same projection, so every expected figure below is plain arithmetic
in metres (the projection's distortion over 2 km is below 1e-8).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import shapely

from urbanmim.analysis.data import Frame, Inputs, Record, Series
from urbanmim.analysis.forecast import Forecast, hourly, naive
from urbanmim.analysis.interpolation import Interpolation
from urbanmim.analysis.model import ParameterError, resolve
from urbanmim.analysis.scenario import Scenario, apply, check_edits
from urbanmim.analysis.transport import TransportConvenience

LON0, LAT0 = 10.0, 45.0
FRAME = Frame(LON0, LAT0)


def pt(x: float, y: float) -> list[float]:
    g = FRAME.unproject(shapely.Point(x, y))
    return [g.x, g.y]


def point(x: float, y: float) -> dict[str, Any]:
    return {"type": "Point", "coordinates": pt(x, y)}


def square(x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
    """A square straight in metres: its edges get a vertex every 10 m (a lon/lat-straight edge bows by cm)."""
    ring = shapely.segmentize(shapely.Polygon([(x0, y0), (x1, y0), (x1, y1), (x0, y1)]), 10.0)
    return {"type": "Polygon", "coordinates": [[pt(x, y) for x, y in ring.exterior.coords]]}


def building(bid: str, cx: float, cy: float, side: float, floors: int, category: str = "residential") -> Record:
    h = side / 2
    return Record(id=bid, type="Building", geometry=square(cx - h, cy - h, cx + h, cy + h),
                  props={"floorsAboveGround": floors, "category": [category]})


def city() -> Inputs:
    """Four 1 km districts around (0, 0), three stops, four residential buildings (one commercial).

    D1 NW [-1000,0]x[0,1000] pop 1000, buildings; D2 NE [0,1000]x[0,1000] pop 2000, none;
    D3 SW [-1000,0]x[-1000,0] pop 500, none; D4 SE [0,1000]x[-1000,0] pop 4000, buildings.
    Stops: S1 (-550, 550), S2 (1000, 1000) = D2's outer corner, S3 (550, -550).
    """
    d = [Record(id="urn:ngsi-ld:District:1", type="District", geometry=square(-1000, 0, 0, 1000),
                props={"name": "NW", "population": 1000}),
         Record(id="urn:ngsi-ld:District:2", type="District", geometry=square(0, 0, 1000, 1000),
                props={"name": "NE", "population": 2000}),
         Record(id="urn:ngsi-ld:District:3", type="District", geometry=square(-1000, -1000, 0, 0),
                props={"name": "SW", "population": 500}),
         Record(id="urn:ngsi-ld:District:4", type="District", geometry=square(0, -1000, 1000, 0),
                props={"name": "SE", "population": 4000})]
    stops = [Record(id=f"urn:ngsi-ld:GtfsStop:{i}", type="GtfsStop", geometry=point(x, y))
             for i, (x, y) in enumerate([(-550, 550), (1000, 1000), (550, -550)], start=1)]
    blds = [building("B1", -500, 700, 20, 3),       # D1, 158 m from S1: served
            building("B2", -900, 100, 20, 1),       # D1, 570 m from S1: not served
            building("C1", -540, 540, 40, 10, "commercial"),   # not residential: ignored
            building("B3", 500, -300, 10, 2),       # D4, 255 m from S3: served
            building("B4", 950, -950, 30, 1)]       # D4, 566 m from S3: not served
    return Inputs(records={"District": d, "GtfsStop": stops, "Building": blds})


def by_id(result: Any) -> dict[str, dict[str, Any]]:
    return {f["properties"]["id"]: f["properties"] for f in result.features}


# --------------------------------------------------------------------------- transport convenience

def test_transport_convenience_hand_computed() -> None:
    model = TransportConvenience()
    res = model.run(city(), resolve(model, {}))
    got = by_id(res)
    # D1 (buildings): weights = footprint x floors: B1 20*20*3 = 1200, B2 20*20*1 = 400.
    #   B1 is 158 m from S1 (sqrt(50² + 150²)), B2 570 m (sqrt(350² + 450²)): share = 1200 / 1600 = 0.75
    assert got["urn:ngsi-ld:District:1"]["method"] == "buildings"
    assert got["urn:ngsi-ld:District:1"]["value"] == pytest.approx(0.75, abs=1e-6)
    assert got["urn:ngsi-ld:District:1"]["servedResidents"] == pytest.approx(750, abs=1e-6)
    # D2 (area): only S2 at its outer corner reaches it (S1 and S3 are 550 m away):
    #   a quarter disc, pi * 500² / 4 = 196,349.5 m² of 1,000,000 m² = 0.1963495 (disc polygon: -0.01 %)
    assert got["urn:ngsi-ld:District:2"]["method"] == "area"
    assert got["urn:ngsi-ld:District:2"]["value"] == pytest.approx(math.pi / 16, rel=2e-4)
    # D3 (area): the nearest stops are 550 m from its edges -> 0
    assert got["urn:ngsi-ld:District:3"]["value"] == 0
    # D4 (buildings): B3 10*10*2 = 200 (255 m from S3, served), B4 30*30*1 = 900 (sqrt(2)*400 = 566 m, not)
    #   share = 200 / 1100 = 0.181818..., served = 4000 * 2/11 = 727.27
    assert got["urn:ngsi-ld:District:4"]["value"] == pytest.approx(2 / 11, abs=1e-6)
    assert got["urn:ngsi-ld:District:4"]["residents"] == 4000
    # city: (750 + 2000 * pi/16 + 0 + 8000/11) / 7500 = 0.24933
    expected = (750 + 2000 * math.pi / 16 + 8000 / 11) / 7500
    assert res.summary["value"] == pytest.approx(expected, rel=1e-4)
    assert res.summary["residents"] == 7500
    assert res.summary["methods"] == {"buildings": 2, "area": 2}
    assert res.summary["stops"] == 3


def test_transport_radius_parameter() -> None:
    model = TransportConvenience()
    # radius 600: B2 (570 m) is now served too -> D1 = 1; B4 (566 m) too -> D4 = 1;
    # D3: S1 is 550 m above its top edge -> a circular segment of height 50 m, radius 600:
    #   area = r² acos((r-h)/r) - (r-h) sqrt(2rh - h²) = 360000 acos(550/600) - 550 sqrt(57500)
    res = by_id(model.run(city(), resolve(model, {"radius": 600})))
    assert res["urn:ngsi-ld:District:1"]["value"] == pytest.approx(1.0)
    assert res["urn:ngsi-ld:District:4"]["value"] == pytest.approx(1.0)
    segment = 360000 * math.acos(550 / 600) - 550 * math.sqrt(57500)
    # S3 cuts the same segment into D3's right edge (x = 0 is 550 m from S3)
    assert res["urn:ngsi-ld:District:3"]["value"] == pytest.approx(2 * segment / 1e6, rel=2e-3)


def test_transport_no_buildings_falls_back_to_area() -> None:
    inputs = city()
    inputs.records["Building"] = []
    model = TransportConvenience()
    got = by_id(model.run(inputs, resolve(model, {})))
    # D1 is now uniform. S1 (-550, 550) is 550 m from D1's inner edges (x = 0, y = 0) and 450 m from its
    # outer ones (x = -1000, y = 1000): its disc loses two circular segments of height 50 m, which do not
    # meet (the corner is sqrt(2) * 450 = 636 m away). Segment = r² acos(450/500) - 450 sqrt(500² - 450²).
    seg = 250000 * math.acos(450 / 500) - 450 * math.sqrt(500 ** 2 - 450 ** 2)
    assert got["urn:ngsi-ld:District:1"]["method"] == "area"
    assert got["urn:ngsi-ld:District:1"]["value"] == pytest.approx((math.pi * 250000 - 2 * seg) / 1e6, rel=2e-4)


def test_scenario_add_stop_changes_exactly_one_district() -> None:
    model = TransportConvenience()
    params = resolve(model, {})
    base = city()
    scen = Scenario(id="s1", name="stop in SW", description="",
                    edits=check_edits([{"type": "addStop", "geometry": point(-500, -500), "name": "SW centre"}]))
    changed, effects = apply(base, scen)
    before, after = by_id(model.run(base, params)), by_id(model.run(changed, params))
    # the new stop is at D3's centre: its 500 m disc fits exactly in the 1 km square -> pi/4 of D3
    assert after["urn:ngsi-ld:District:3"]["value"] == pytest.approx(math.pi / 4, rel=2e-4)
    # nothing else is within 500 m: B2 (-900, 100) is sqrt(400² + 600²) = 721 m away, B3 1000 m
    for d in ("1", "2", "4"):
        assert after[f"urn:ngsi-ld:District:{d}"] == before[f"urn:ngsi-ld:District:{d}"]
    assert effects == [{"edit": 0, "type": "addStop", "affected": ["urn:ngsi-ld:GtfsStop:scenario:s1:0"]}]
    # the input was not modified (the scenario works on a copy)
    assert len(base.of("GtfsStop")) == 3


def test_scenario_remove_and_move_stop() -> None:
    model = TransportConvenience()
    params = resolve(model, {})
    scen = Scenario(id="s2", name="", description="", edits=check_edits([
        {"type": "removeStop", "target": "urn:ngsi-ld:GtfsStop:1"},
        {"type": "moveStop", "target": "urn:ngsi-ld:GtfsStop:3", "geometry": point(950, -950)}]))
    changed, effects = apply(city(), scen)
    got = by_id(model.run(changed, params))
    assert got["urn:ngsi-ld:District:1"]["value"] == 0          # S1 gone: no building of D1 served
    # S3 moved onto B4: B4 (900) served, B3 (500, -300) is sqrt(450² + 650²) = 790 m away: 900/1100
    assert got["urn:ngsi-ld:District:4"]["value"] == pytest.approx(9 / 11)
    assert [e["affected"] for e in effects] == [["urn:ngsi-ld:GtfsStop:1"], ["urn:ngsi-ld:GtfsStop:3"]]


# --------------------------------------------------------------------------- interpolation

def sensors() -> Inputs:
    """District [-1000, 1000]² (cells of 500 m: centres at ±250, ±750); three NO2 sensors at cell centres."""
    d = Record(id="urn:ngsi-ld:District:x", type="District", geometry=square(-1000, -1000, 1000, 1000),
               props={"population": 1})
    s = [Record(id=f"urn:ngsi-ld:AirQualityObserved:{n}", type="AirQualityObserved", geometry=point(x, y),
                props={"no2": v}, units={"no2": "GQ"})
         for n, (x, y, v) in {"A": (-750, -750, 10.0), "B": (250, -750, 20.0), "C": (-750, 250, 40.0)}.items()]
    return Inputs(records={"District": [d], "AirQualityObserved": s})


def cell(res: Any, row: int, col: int) -> dict[str, Any]:
    return by_id(res)[f"r{row}c{col}"]


def test_idw_hand_computed() -> None:
    model = Interpolation()
    res = model.run(sensors(), resolve(model, {"cellSize": 500}))
    assert res.summary["cells"] == 16 and res.unit == "GQ"
    # at sensor A (cell r0c0, centre (-750, -750)): exactly its value, uncertainty 0
    assert cell(res, 0, 0)["value"] == pytest.approx(10.0)
    assert cell(res, 0, 0)["uncertainty"] == pytest.approx(0.0, abs=1e-4)
    # cell r0c1, centre (-250, -750): dA = 500, dB = 500, dC = sqrt(500² + 1000²) = 1118.03
    #   w = 1/d²: 4e-6, 4e-6, 0.8e-6 -> (10*4 + 20*4 + 40*0.8) / 8.8 = 152 / 8.8 = 17.2727
    assert cell(res, 0, 1)["value"] == pytest.approx(152 / 8.8, rel=1e-5)
    # leave-one-out: A from B, C (1000 m each) = 30 -> eA = -20; B from A (1000), C (1414.2):
    #   (10*1 + 40*0.5) / 1.5 = 20 -> eB = 0; C from A (1000), B (1414.2): (10 + 20*0.5) / 1.5 = 13.33 -> eC = 26.67
    e = np.array([-20.0, 0.0, 40 - 40 / 3])
    assert res.summary["looRmse"] == pytest.approx(math.sqrt(np.mean(e ** 2)), rel=1e-5)   # 19.245
    assert res.summary["meanSpacingM"] == pytest.approx(1000, abs=0.1)
    # uncertainty at r0c1: L = (4*400 + 4*0 + 0.8*711.11) / 8.8 = 246.46; d = 500, s = 1000 -> sqrt(L/2) = 11.10
    local = (4 * 400 + 0.8 * e[2] ** 2) / 8.8
    assert cell(res, 0, 1)["uncertainty"] == pytest.approx(math.sqrt(local * 0.5), rel=1e-5)
    assert cell(res, 0, 1)["nearestSensorM"] == pytest.approx(500, abs=0.1)
    # bounded by the sensor values everywhere
    vals = [f["properties"]["value"] for f in res.features]
    assert min(vals) >= 10 - 1e-9 and max(vals) <= 40 + 1e-9


def test_idw_grid_is_clipped_to_districts() -> None:
    inputs = sensors()
    # an L-shaped city: drop the NE quarter -> 12 of 16 cells, and the cells are the district's area
    inputs.records["District"][0].geometry = {"type": "Polygon", "coordinates": [[
        pt(-1000, -1000), pt(1000, -1000), pt(1000, 0), pt(0, 0), pt(0, 1000), pt(-1000, 1000), pt(-1000, -1000)]]}
    model = Interpolation()
    res = model.run(inputs, resolve(model, {"cellSize": 500}))
    assert res.summary["cells"] == 12
    assert "r3c3" not in by_id(res)


def test_interpolation_parameter_errors() -> None:
    model = Interpolation()
    with pytest.raises(ParameterError) as e:
        resolve(model, {"cellSize": 10})
    assert e.value.extra["parameter"] == "cellSize" and e.value.status == 400
    with pytest.raises(ParameterError) as e:
        resolve(model, {"power": "two"})
    assert e.value.extra["parameter"] == "power"
    with pytest.raises(ParameterError) as e:
        resolve(model, {"colour": 1})
    assert e.value.extra["parameter"] == "colour"
    with pytest.raises(ParameterError) as e:
        model.run(sensors(), resolve(model, {"attribute": "pm25"}))
    assert e.value.extra["parameter"] == "attribute"
    with pytest.raises(ParameterError) as e:
        model.run(sensors(), resolve(model, {"type": "NoiseLevelObserved"}))
    assert e.value.extra["parameter"] == "type"


def test_low_emission_zone_lowers_no2_inside_only() -> None:
    model = Interpolation()
    params = resolve(model, {"cellSize": 500})
    zone = square(-1000, -1000, -500, -500)          # around sensor A only
    scen = Scenario(id="lez", name="LEZ", description="", edits=check_edits([
        {"type": "lowEmissionZone", "geometry": zone, "reductionPercent": 40, "trafficShare": 0.5}]))
    base = sensors()
    changed, effects = apply(base, scen)
    # A: 10 * (1 - 0.5 * 0.40) = 8
    assert changed.of("AirQualityObserved")[0].props["no2"] == pytest.approx(8.0)
    assert base.of("AirQualityObserved")[0].props["no2"] == 10.0
    assert effects[0]["affected"] == ["urn:ngsi-ld:AirQualityObserved:A"]
    after = model.run(changed, params)
    assert cell(after, 0, 0)["value"] == pytest.approx(8.0)
    assert cell(after, 0, 1)["value"] == pytest.approx((8 * 4 + 20 * 4 + 40 * 0.8) / 8.8)


def test_close_street_zeroes_traffic_near_the_line() -> None:
    t = [Record(id="T1", type="TrafficFlowObserved", geometry=point(0, 20), props={"intensity": 600.0}),
         Record(id="T2", type="TrafficFlowObserved", geometry=point(0, 100), props={"intensity": 300.0})]
    line = {"type": "LineString", "coordinates": [pt(-500, 0), pt(500, 0)]}
    scen = Scenario(id="c", name="", description="", edits=check_edits([
        {"type": "closeStreet", "geometry": line, "bufferMetres": 30}]))
    changed, effects = apply(Inputs(records={"TrafficFlowObserved": t}), scen)
    assert [r.props["intensity"] for r in changed.of("TrafficFlowObserved")] == [0.0, 300.0]
    assert effects[0]["affected"] == ["T1"]


def test_edit_validation_names_the_member() -> None:
    from urbanmim.errors import BadRequestData
    with pytest.raises(BadRequestData) as e:
        check_edits([{"type": "addStop", "geometry": {"type": "Polygon", "coordinates": []}}])
    assert e.value.extra == {"edit": 0, "member": "geometry"}
    with pytest.raises(BadRequestData) as e:
        check_edits([{"type": "addStop", "geometry": point(0, 0)}, {"type": "teleport"}])
    assert e.value.extra["edit"] == 1
    with pytest.raises(BadRequestData) as e:
        check_edits([{"type": "lowEmissionZone", "geometry": square(0, 0, 1, 1), "reductionPercent": 150}])
    assert e.value.extra["member"] == "reductionPercent"


# --------------------------------------------------------------------------- forecast

H = 3_600_000
T0 = 1_767_571_200_000          # 2026-01-05T00:00:00Z, a Monday


def daily(hour: int) -> float:
    return 100 + 50 * math.sin(2 * math.pi * hour / 24)


def series(values: list[float], start: int = T0) -> Inputs:
    pts = [(start + i * H + 60_000, v) for i, v in enumerate(values)]   # one reading per hour, at :01
    rec = Record(id="S", type="TrafficFlowObserved", geometry={"type": "Point", "coordinates": [LON0, LAT0]},
                 props={"name": "sensor"})
    return Inputs(records={"TrafficFlowObserved": [rec]}, series=Series("S", "intensity", pts, "E50"))


def test_forecast_exact_on_a_seasonal_series() -> None:
    model = Forecast()
    vals = [daily(h) for h in range(14 * 24)]
    res = model.run(series(vals), resolve(model, {"season": "daily"}))
    assert res.summary["mae"] == pytest.approx(0, abs=1e-6)
    assert res.summary["naiveMae"] == pytest.approx(0, abs=1e-6)
    s = res.extra["series"]
    assert len(s["forecast"]) == 24 and len(s["values"]) == 14 * 24
    # the next 24 hours continue the cycle (the series ends at hour 23 of a day)
    assert s["forecast"] == pytest.approx([daily(h) for h in range(24)], abs=1e-6)
    assert s["forecastTimestamps"][0] == "2026-01-19T00:00:00Z"
    assert res.unit == "E50" and res.features[0]["properties"]["value"] == pytest.approx(daily(0))


def test_forecast_weekday_weekend_profile_is_exact() -> None:
    # weekdays 100 + sine, weekends half: the daytype profile reproduces it; the daily one cannot
    def v(h: int) -> float:
        dow = (h // 24) % 7           # T0 is a Monday
        return daily(h) * (0.5 if dow >= 5 else 1.0)
    vals = [v(h) for h in range(20 * 24)]      # ends on a Saturday: the holdout is a weekend day
    model = Forecast()
    exact = model.run(series(vals), resolve(model, {"season": "daytype"}))
    assert exact.summary["mae"] == pytest.approx(0, abs=1e-6)
    flat = model.run(series(vals), resolve(model, {"season": "daily"}))
    assert flat.summary["mae"] > 10
    # naive "same hour yesterday" on a Saturday copies Friday: error = half the weekday cycle
    assert exact.summary["naiveMae"] == pytest.approx(np.mean([daily(h) * 0.5 for h in range(24)]), rel=1e-5)
    assert exact.summary["skill"] == pytest.approx(1.0)


def test_forecast_on_noise_is_no_worse_than_naive() -> None:
    rng = np.random.default_rng(7)
    model = Forecast()
    wins = 0
    for _ in range(10):
        vals = [daily(h) + rng.normal(0, 10) for h in range(14 * 24)]
        res = model.run(series(vals), resolve(model, {"season": "daily", "holdout": 48}))
        # averaging 12 days shrinks the noise of the profile; naive carries one day's noise:
        # expected MAE ~ 8.0 * sqrt(1 + 1/12) vs 8.0 * sqrt(2) for the naive
        assert res.summary["mae"] < res.summary["naiveMae"] * 1.15
        wins += res.summary["mae"] < res.summary["naiveMae"]
        assert 5 < res.summary["mae"] < 12
    assert wins >= 8


def test_forecast_holdout_is_not_used_for_fitting() -> None:
    # a step in the held-back day only: the fitted model cannot know it, so its error is the step
    vals = [daily(h) for h in range(13 * 24)] + [daily(h) + 30 for h in range(24)]
    model = Forecast()
    res = model.run(series(vals), resolve(model, {"season": "daily"}))
    assert res.summary["mae"] == pytest.approx(30, abs=1e-6)
    assert res.summary["naiveMae"] == pytest.approx(30, abs=1e-6)


def test_forecast_needs_enough_history() -> None:
    model = Forecast()
    with pytest.raises(ParameterError) as e:
        model.run(series([1.0] * 30), resolve(model, {}))
    assert e.value.extra["parameter"] == "historyDays"
    with pytest.raises(ParameterError) as e:
        model.run(Inputs(), resolve(model, {}))
    assert e.value.extra["parameter"] == "entityId"


def test_hourly_means_and_gaps() -> None:
    h0, y = hourly([(T0, 1.0), (T0 + 1000, 3.0), (T0 + 2 * H, 5.0)])
    assert h0 == T0 // H and np.isnan(y[1]) and y[0] == 2.0 and y[2] == 5.0
    hours = np.arange(h0, h0 + 50)
    vals = np.arange(50, dtype=float)
    # the naive forecast of hours after the cutoff is the same hour on the last day before it
    out = naive(hours, vals, int(hours[48]), hours[48:50])
    assert list(out) == [24.0, 25.0]


def test_scenario_scales_the_history_of_a_closed_street_sensor() -> None:
    model = Forecast()
    vals = [daily(h) for h in range(14 * 24)]
    inputs = series(vals)
    line = {"type": "LineString", "coordinates": [[LON0 - 0.01, LAT0], [LON0 + 0.01, LAT0]]}
    scen = Scenario(id="c", name="", description="", edits=check_edits([{"type": "closeStreet", "geometry": line}]))
    changed, _ = apply(inputs, scen)
    res = model.run(changed, resolve(model, {"season": "daily"}))
    assert res.extra["series"]["forecast"] == [0.0] * 24
    assert inputs.series is not None and inputs.series.points[0][1] == pytest.approx(daily(0))


# --------------------------------------------------------------------------- properties

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

coords = st.floats(-900, 900, allow_nan=False)
sensor_sets = st.lists(st.tuples(coords, coords, st.floats(0, 200, allow_nan=False)), min_size=2, max_size=8,
                       unique_by=lambda t: (round(t[0]), round(t[1])))


@settings(max_examples=25, deadline=None)
@given(sensor_sets, st.floats(0.5, 5))
def test_idw_is_bounded_and_exact_at_sensors(data: list[tuple[float, float, float]], power: float) -> None:
    from urbanmim.analysis.interpolation import idw, loo_residuals
    xy = np.array([(x, y) for x, y, _ in data])
    z = np.array([v for _, _, v in data])
    grid = np.array([(x, y) for x in range(-1000, 1001, 250) for y in range(-1000, 1001, 250)], dtype=float)
    vals, _, _ = idw(xy, z, grid, power)
    assert (vals >= z.min() - 1e-9).all() and (vals <= z.max() + 1e-9).all()
    at, _, nearest = idw(xy, z, xy, power)
    assert np.allclose(at, z) and np.allclose(nearest, 0)
    assert np.isfinite(loo_residuals(xy, z, power)).all()


@settings(max_examples=20, deadline=None)
@given(st.lists(st.tuples(coords, coords), min_size=0, max_size=6), st.floats(50, 2000))
def test_transport_shares_are_shares_and_inputs_untouched(stops: list[tuple[float, float]], radius: float) -> None:
    import copy
    inputs = city()
    inputs.records["GtfsStop"] = [Record(id=f"s{i}", type="GtfsStop", geometry=point(x, y))
                                  for i, (x, y) in enumerate(stops)]
    frozen = copy.deepcopy(inputs)
    scen = Scenario(id="p", name="", description="", edits=check_edits(
        [{"type": "addStop", "geometry": point(-500, -500)}] + ([{"type": "removeStop", "target": "s0"}]
                                                               if stops else [])))
    changed, _ = apply(inputs, scen)
    model = TransportConvenience()
    for data in (inputs, changed):
        res = model.run(data, resolve(model, {"radius": radius}))
        shares = [f["properties"]["value"] for f in res.features]
        assert all(0 <= s <= 1 + 1e-9 for s in shares)
        served = sum(f["properties"]["servedResidents"] for f in res.features)
        assert served == pytest.approx(res.summary["servedResidents"], abs=1e-3)
    assert inputs == frozen       # neither the scenario nor the model changed what they read


def test_self_intersecting_district_is_repaired_not_a_crash() -> None:
    # a bow-tie (accepted by the platform, as RFC 7946 allows): two 500 m triangles meeting at (0, 0)
    bow = {"type": "Polygon", "coordinates": [[pt(-500, -500), pt(500, 500), pt(500, -500), pt(-500, 500),
                                               pt(-500, -500)]]}
    inputs = Inputs(records={"District": [Record(id="D", type="District", geometry=bow, props={"population": 10})],
                             "GtfsStop": [Record(id="S", type="GtfsStop", geometry=point(0, 0))],
                             "AirQualityObserved": sensors().of("AirQualityObserved")})
    t = TransportConvenience()
    res = t.run(inputs, resolve(t, {"radius": 2000}))
    assert res.features[0]["properties"]["value"] == pytest.approx(1.0)
    i = Interpolation()
    assert i.run(inputs, resolve(i, {"cellSize": 250})).summary["cells"] > 0


def test_forecast_weekly_profile_and_mape_without_nonzero_actuals() -> None:
    # a pattern that repeats every week only (hour-of-week index): weekly is exact, daily is not
    vals = [float((h % 168) // 24 * 10 + h % 24) for h in range(3 * 168)]
    model = Forecast()
    exact = model.run(series(vals), resolve(model, {"season": "weekly"}))
    assert exact.summary["mae"] == pytest.approx(0, abs=1e-6)
    assert model.run(series(vals), resolve(model, {"season": "daily"})).summary["mae"] > 1
    zeros = model.run(series([0.0] * 72), resolve(model, {"season": "daily"}))
    assert zeros.summary["mae"] == 0 and zeros.summary["mape"] is None and zeros.summary["skill"] is None


def test_one_sensor_has_no_uncertainty() -> None:
    inputs = sensors()
    inputs.records["AirQualityObserved"] = inputs.records["AirQualityObserved"][:1]
    model = Interpolation()
    res = model.run(inputs, resolve(model, {"cellSize": 500}))
    assert {f["properties"]["value"] for f in res.features} == {10.0}     # IDW of one value is that value
    assert {f["properties"]["uncertainty"] for f in res.features} == {None}
    assert res.summary["looRmse"] is None
