"""``/analysis/v1`` over HTTP, on the hand-computed city of test_analysis_models (both backends)."""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest

from tests.test_analysis_models import T0, H, city, daily, point, sensors
from urbanmim.analysis.data import Record
from urbanmim.store.base import EntityQuery

A = "http://testserver/analysis/v1"
TENANT = {"NGSILD-Tenant": "testcity"}
TYPES = ("District", "GtfsStop", "Building", "AirQualityObserved", "TrafficFlowObserved")


def payload(r: Record) -> dict[str, Any]:
    body: dict[str, Any] = {"id": r.id if r.id.startswith("urn:") else f"urn:ngsi-ld:{r.type}:{r.id}", "type": r.type}
    if r.geometry:
        body["location"] = {"type": "GeoProperty", "value": r.geometry}
    for k, v in r.props.items():
        body[k] = {"type": "Property", "value": v, **({"unitCode": r.units[k]} if k in r.units else {})}
    return body


async def load(client: httpx.AsyncClient, records: list[Record]) -> None:
    r = await client.post("/entityOperations/create", json=[payload(x) for x in records], headers=TENANT)
    assert r.status_code == 201, r.text


async def load_city(client: httpx.AsyncClient) -> None:
    inputs = city()
    await load(client, [r for rs in inputs.records.values() for r in rs])


async def snapshot(app: Any) -> list[dict[str, Any]]:
    res = await app.state.store.query(EntityQuery(tenant="testcity", limit=100_000))
    return sorted((e for e in res.entities if not e["type"][0].startswith("urbanmim:")), key=lambda e: e["id"])


def props(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["properties"]["id"]: f["properties"] for f in run["geojson"]["features"]}


async def test_models_are_listed_and_registered(client: httpx.AsyncClient) -> None:
    r = await client.get(f"{A}/models")
    assert r.status_code == 200
    models = {m["id"]: m for m in r.json()}
    assert set(models) == {"transport-convenience", "interpolation", "forecast"}
    radius = models["transport-convenience"]["parameters"][0]
    assert radius == {"name": "radius", "type": "number", "description": radius["description"], "default": 500.0,
                      "min": 50, "max": 2000, "unit": "m"}
    season = next(p for p in models["forecast"]["parameters"] if p["name"] == "season")
    assert season["enum"] == ["daily", "daytype", "weekly"]
    assert (await client.get(f"{A}/models/interpolation")).json()["version"] == "1"
    assert (await client.get(f"{A}/models/nope")).status_code == 404
    regs = (await client.get("http://testserver/algorithms/v1/algorithms", params={"kind": "analysis"})).json()
    assert {a["id"] for a in regs} >= {"analysis.transport-convenience", "analysis.interpolation",
                                       "analysis.forecast"}


async def test_transport_run_and_result_entities(client: httpx.AsyncClient) -> None:
    await load_city(client)
    r = await client.post(f"{A}/runs", json={"model": "transport-convenience", "parameters": {"radius": 500},
                                             "scenario": None}, headers=TENANT)
    assert r.status_code == 200, r.text
    run = r.json()
    assert (run["model"], run["version"], run["tenant"], run["scenario"], run["unit"]) == \
        ("transport-convenience", "1", "testcity", None, "1")
    got = props(run)
    # hand-computed in test_analysis_models: 0.75, pi/16, 0, 2/11
    assert got["urn:ngsi-ld:District:1"]["value"] == pytest.approx(0.75, abs=1e-6)
    assert got["urn:ngsi-ld:District:2"]["value"] == pytest.approx(math.pi / 16, rel=2e-4)
    assert got["urn:ngsi-ld:District:3"]["value"] == 0
    assert got["urn:ngsi-ld:District:4"]["value"] == pytest.approx(2 / 11, abs=1e-6)
    assert got["urn:ngsi-ld:District:1"]["label"] == "NW"
    assert run["summary"]["value"] == pytest.approx((750 + 2000 * math.pi / 16 + 8000 / 11) / 7500, rel=1e-4)
    assert run["geojson"]["features"][0]["geometry"]["type"] == "Polygon"
    # the baseline run is also stored as NGSI-LD entities (one per district + the city)
    assert len(run["resultEntities"]) == 5
    r = await client.get("/entities", params={"type": "urbanmim:AnalysisResult", "options": "keyValues",
                                              "limit": 100}, headers=TENANT)
    res = {e["id"]: e for e in r.json()}
    d4 = res["urn:ngsi-ld:AnalysisResult:transport-convenience:urn:ngsi-ld:District:4"]
    assert d4["share"] == pytest.approx(2 / 11, abs=1e-6) and d4["refDistrict"] == "urn:ngsi-ld:District:4"
    assert res["urn:ngsi-ld:AnalysisResult:transport-convenience:city"]["residents"] == 7500


async def test_errors(client: httpx.AsyncClient) -> None:
    await load_city(client)
    r = await client.post(f"{A}/runs", json={"model": "nope"}, headers=TENANT)
    assert r.status_code == 404 and r.json()["type"].endswith("ResourceNotFound")
    r = await client.post(f"{A}/runs", json={"model": "transport-convenience", "parameters": {"radius": 5}},
                          headers=TENANT)
    assert r.status_code == 400 and r.json()["parameter"] == "radius" and "radius" in r.json()["detail"]
    r = await client.post(f"{A}/runs", json={"model": "transport-convenience", "parameters": {"radius": "far"}},
                          headers=TENANT)
    assert r.status_code == 400 and r.json()["parameter"] == "radius"
    r = await client.post(f"{A}/runs", json={"model": "transport-convenience", "scenario": "missing"},
                          headers=TENANT)
    assert r.status_code == 404
    r = await client.post(f"{A}/runs", json={"model": "transport-convenience"}, headers={"NGSILD-Tenant": "atlantis"})
    assert r.status_code == 404 and r.json()["type"].endswith("NonexistentTenant")
    r = await client.post(f"{A}/runs", json={"parameters": {}}, headers=TENANT)
    assert r.status_code == 400 and r.json()["parameter"] == "model"
    r = await client.post(f"{A}/scenarios", json={"name": "x", "edits": [{"type": "addStop"}]}, headers=TENANT)
    assert r.status_code == 400 and r.json()["edit"] == 0 and r.json()["member"] == "geometry"
    r = await client.post(f"{A}/scenarios", json={"edits": []}, headers=TENANT)
    assert r.status_code == 400 and r.json()["parameter"] == "name"
    r = await client.post(f"{A}/scenarios/missing/compare", json={"model": "transport-convenience"}, headers=TENANT)
    assert r.status_code == 404
    assert (await client.delete(f"{A}/scenarios/missing", headers=TENANT)).status_code == 404


async def test_scenario_crud_compare_and_live_data_untouched(app: Any, client: httpx.AsyncClient) -> None:
    await load_city(client)
    before_live = await snapshot(app)
    body = {"id": "sw-stop", "name": "A stop for SW", "description": "centre of D3",
            "edits": [{"type": "addStop", "name": "SW centre", "geometry": point(-500, -500)}]}
    r = await client.post(f"{A}/scenarios", json=body, headers=TENANT)
    assert r.status_code == 201, r.text
    assert r.headers["location"] == "/analysis/v1/scenarios/sw-stop"
    assert r.json()["edits"][0]["type"] == "addStop" and r.json()["createdAt"]
    assert (await client.post(f"{A}/scenarios", json=body, headers=TENANT)).status_code == 409
    listed = (await client.get(f"{A}/scenarios", headers=TENANT)).json()
    assert [s["id"] for s in listed] == ["sw-stop"]
    # another tenant does not see it
    await client.post("/entities", json={"id": "urn:ngsi-ld:X:1", "type": "X"}, headers={"NGSILD-Tenant": "other"})
    assert (await client.get(f"{A}/scenarios", headers={"NGSILD-Tenant": "other"})).json() == []

    r = await client.post(f"{A}/scenarios/sw-stop/compare", json={"model": "transport-convenience"}, headers=TENANT)
    assert r.status_code == 200, r.text
    cmp = r.json()
    assert cmp["before"]["scenario"] is None and cmp["after"]["scenario"] == "sw-stop"
    assert cmp["after"]["effects"] == [{"edit": 0, "type": "addStop",
                                       "affected": ["urn:ngsi-ld:GtfsStop:scenario:sw-stop:0"]}]
    diff = {f["properties"]["id"]: f["properties"] for f in cmp["difference"]["features"]}
    # only D3 changes: 0 -> pi/4 (its centre's 500 m disc fits in the 1 km square)
    assert diff["urn:ngsi-ld:District:3"]["before"] == 0
    assert diff["urn:ngsi-ld:District:3"]["after"] == pytest.approx(math.pi / 4, rel=2e-4)
    assert diff["urn:ngsi-ld:District:3"]["delta"] == pytest.approx(math.pi / 4, rel=2e-4)
    assert [k for k, v in diff.items() if v["delta"] != 0] == ["urn:ngsi-ld:District:3"]
    # a run with the scenario gives the same "after", and writes no result entity
    run = (await client.post(f"{A}/runs", json={"model": "transport-convenience", "scenario": "sw-stop"},
                             headers=TENANT)).json()
    assert props(run)["urn:ngsi-ld:District:3"]["value"] == diff["urn:ngsi-ld:District:3"]["after"]
    assert run["resultEntities"] == []
    r = await client.get("/entities", params={"type": "urbanmim:AnalysisResult"}, headers=TENANT)
    assert r.json() == []
    # live entities: byte-for-byte what they were (no stop added, nothing modified)
    assert await snapshot(app) == before_live

    # replace, then delete
    body["edits"] = [{"type": "removeStop", "target": "urn:ngsi-ld:GtfsStop:1"}]
    r = await client.put(f"{A}/scenarios/sw-stop", json=body, headers=TENANT)
    assert r.status_code == 200 and r.json()["edits"] == body["edits"]
    cmp = (await client.post(f"{A}/scenarios/sw-stop/compare", json={"model": "transport-convenience"},
                             headers=TENANT)).json()
    diff = {f["properties"]["id"]: f["properties"] for f in cmp["difference"]["features"]}
    assert diff["urn:ngsi-ld:District:1"]["after"] == 0 and diff["urn:ngsi-ld:District:1"]["delta"] == -0.75
    assert (await client.delete(f"{A}/scenarios/sw-stop", headers=TENANT)).status_code == 204
    assert (await client.get(f"{A}/scenarios/sw-stop", headers=TENANT)).status_code == 404
    assert await snapshot(app) == before_live


async def test_interpolation_run_and_low_emission_zone(client: httpx.AsyncClient) -> None:
    inputs = sensors()
    await load(client, [r for rs in inputs.records.values() for r in rs])
    r = await client.post(f"{A}/runs", json={"model": "interpolation", "parameters": {"cellSize": 500}},
                          headers=TENANT)
    assert r.status_code == 200, r.text
    run = r.json()
    assert run["unit"] == "GQ" and run["summary"]["sensors"] == 3 and run["summary"]["cells"] == 16
    cell = props(run)["r0c1"]
    assert cell["value"] == pytest.approx(152 / 8.8, rel=1e-5)          # hand value, see the model tests
    assert cell["uncertainty"] > 0 and props(run)["r0c0"]["value"] == pytest.approx(10)
    zone = {"type": "Polygon", "coordinates": [[point(-1000, -1000)["coordinates"], point(-500, -1000)["coordinates"],
                                               point(-500, -500)["coordinates"], point(-1000, -500)["coordinates"],
                                               point(-1000, -1000)["coordinates"]]]}
    await client.post(f"{A}/scenarios", json={"id": "lez", "name": "LEZ", "edits": [
        {"type": "lowEmissionZone", "geometry": zone, "reductionPercent": 40}]}, headers=TENANT)
    cmp = (await client.post(f"{A}/scenarios/lez/compare", json={"model": "interpolation",
                                                                "parameters": {"cellSize": 500}},
                             headers=TENANT)).json()
    diff = {f["properties"]["id"]: f["properties"] for f in cmp["difference"]["features"]}
    assert diff["r0c0"]["delta"] == pytest.approx(-2.0)        # 10 -> 10 * (1 - 0.5 * 0.4) = 8
    assert all(v["delta"] <= 1e-9 for v in diff.values())
    live = (await client.get("/entities/urn:ngsi-ld:AirQualityObserved:A", params={"options": "keyValues"},
                             headers=TENANT)).json()
    assert live["no2"] == 10.0


async def test_forecast_run_reads_temporal_history(client: httpx.AsyncClient) -> None:
    from urbanmim.temporal.timeutil import iso
    await client.post("/entities", json={"id": "urn:ngsi-ld:X:0", "type": "X"}, headers=TENANT)
    values = [{"type": "Property", "value": daily(h), "observedAt": iso(T0 + h * H + 60_000)}
              for h in range(10 * 24)]
    r = await client.post("/temporal/entities", json={
        "id": "urn:ngsi-ld:TrafficFlowObserved:1", "type": "TrafficFlowObserved",
        "location": {"type": "GeoProperty", "value": point(0, 0)}, "intensity": values}, headers=TENANT)
    assert r.status_code in (201, 204), r.text
    r = await client.post(f"{A}/runs", json={"model": "forecast", "parameters": {"season": "daily"}},
                          headers=TENANT)
    assert r.status_code == 200, r.text
    run = r.json()
    assert run["summary"]["entityId"] == "urn:ngsi-ld:TrafficFlowObserved:1"
    assert run["summary"]["historyHours"] == 240
    assert run["summary"]["mae"] == pytest.approx(0, abs=1e-6)
    assert run["series"]["forecast"] == pytest.approx([daily(h) for h in range(24)], abs=1e-6)
    assert len(run["series"]["holdout"]["actual"]) == 24
    assert run["geojson"]["features"][0]["geometry"]["type"] == "Point"
    assert run["resultEntities"] == ["urn:ngsi-ld:AnalysisResult:forecast:urn:ngsi-ld:TrafficFlowObserved:1:intensity"]
    # unknown entity: 400 naming entityId
    r = await client.post(f"{A}/runs", json={"model": "forecast", "parameters": {"entityId": "urn:ngsi-ld:X:9"}},
                          headers=TENANT)
    assert r.status_code == 400 and r.json()["parameter"] == "entityId"
