"""Temporal API: recording through the core API, the /temporal routes, paging, aggregation, 400s."""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest

from urbanmim.temporal.aggregate import Acc, PeriodIndex
from urbanmim.temporal.timeutil import Duration, iso, to_ms

E = "urn:ngsi-ld:Vehicle:t1"


def vehicle(eid: str = E, **attrs: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"id": eid, "type": "Vehicle"}
    body.update(attrs or {"speed": [{"type": "Property", "value": v, "observedAt": f"2020-08-01T{h}Z"}
                                    for v, h in ((120, "12:03:00"), (80, "12:05:00"), (100, "12:07:00"))],
                          "fuelLevel": [{"type": "Property", "value": v, "observedAt": f"2020-08-01T{h}Z"}
                                        for v, h in ((67, "12:03:00"), (53, "13:05:00"), (40, "14:07:00"))]})
    return body


async def create(client: httpx.AsyncClient, body: dict[str, Any] | None = None) -> None:
    r = await client.post("/temporal/entities", json=body or vehicle())
    assert r.status_code == 201, r.text


async def test_core_writes_are_recorded(client: httpx.AsyncClient) -> None:
    r = await client.post("/entities", json={"id": E, "type": "Vehicle",
                                             "speed": {"type": "Property", "value": 1,
                                                       "observedAt": "2024-01-01T00:00:00Z"}})
    assert r.status_code == 201
    await client.patch(f"/entities/{E}/attrs", json={"speed": {"type": "Property", "value": 2,
                                                               "observedAt": "2024-01-01T01:00:00Z"}})
    await client.patch(f"/entities/{E}/attrs", json={"other": {"type": "Property", "value": "x"}})
    r = await client.get(f"/temporal/entities/{E}", params={"options": "temporalValues"})
    assert r.status_code == 200
    body = r.json()
    assert body["speed"]["values"] == [[1, "2024-01-01T00:00:00Z"], [2, "2024-01-01T01:00:00Z"]]
    # no observedAt: the modification time is the instant
    assert len(body["other"]["values"]) == 1 and body["other"]["values"][0][1].endswith("Z")
    # deleting an attribute leaves a deletedAt instance
    assert (await client.delete(f"/entities/{E}/attrs/other")).status_code == 204
    r = await client.get(f"/temporal/entities/{E}", params={"timeproperty": "deletedAt"})
    assert [i["value"] for i in r.json()["other"]] == ["urn:ngsi-ld:null"]
    assert "deletedAt" in r.json()["other"][0]


async def test_create_append_retrieve_delete(client: httpx.AsyncClient) -> None:
    await create(client)
    r = await client.post("/temporal/entities", json=vehicle(speed=[{"type": "Property", "value": 121,
                                                                     "observedAt": "2020-08-01T12:03:00Z"}]))
    assert r.status_code == 204    # upsert; the same observation replaces the stored one
    r = await client.get(f"/temporal/entities/{E}")
    assert [i["value"] for i in r.json()["speed"]] == [121, 80, 100]
    assert all(i["instanceId"].startswith("urn:") for i in r.json()["speed"])
    r = await client.post(f"/temporal/entities/{E}/attrs", json={"speed": [
        {"type": "Property", "value": 5, "observedAt": "2020-08-01T12:09:00Z"}]})
    assert r.status_code == 204
    r = await client.get(f"/temporal/entities/{E}", params={"attrs": "speed", "timerel": "after",
                                                             "timeAt": "2020-08-01T12:05:00Z"})
    assert [i["value"] for i in r.json()["speed"]] == [80, 100, 5] and "fuelLevel" not in r.json()
    r = await client.get(f"/temporal/entities/{E}", params={"timerel": "before", "timeAt": "2020-08-01T12:05:00Z"})
    assert [i["value"] for i in r.json()["speed"]] == [121]          # before is exclusive
    r = await client.get(f"/temporal/entities/{E}", params={"timerel": "between", "timeAt": "2020-08-01T12:05:00Z",
                                                             "endTimeAt": "2020-08-01T12:09:00Z"})
    assert [i["value"] for i in r.json()["speed"]] == [80, 100]
    r = await client.get(f"/temporal/entities/{E}", params={"lastN": "1", "attrs": "speed"})
    assert [i["value"] for i in r.json()["speed"]] == [5]
    # the current state holds the newest instance
    assert (await client.get(f"/entities/{E}")).json()["speed"]["value"] == 5
    # instance update and delete
    iid = (await client.get(f"/temporal/entities/{E}")).json()["speed"][0]["instanceId"]
    r = await client.patch(f"/temporal/entities/{E}/attrs/speed/{iid}", json={"type": "Property", "value": 7,
                                                                                "observedAt": "2020-08-01T12:03:00Z"})
    assert r.status_code == 204
    assert (await client.get(f"/temporal/entities/{E}")).json()["speed"][0]["value"] == 7
    assert (await client.delete(f"/temporal/entities/{E}/attrs/speed/{iid}")).status_code == 204
    assert (await client.delete(f"/temporal/entities/{E}/attrs/speed/{iid}")).status_code == 404
    assert (await client.delete(f"/temporal/entities/{E}/attrs/fuelLevel")).status_code == 204
    assert "fuelLevel" not in (await client.get(f"/temporal/entities/{E}")).json()
    assert (await client.delete(f"/temporal/entities/{E}")).status_code == 204
    assert (await client.get(f"/temporal/entities/{E}")).status_code == 404
    assert (await client.delete(f"/temporal/entities/{E}")).status_code == 404


async def test_query_and_post_query(client: httpx.AsyncClient) -> None:
    await create(client)
    await create(client, vehicle("urn:ngsi-ld:Vehicle:t2", speed=[{"type": "Property", "value": 1,
                                                                   "observedAt": "2021-01-01T00:00:00Z"}]))
    r = await client.get("/temporal/entities", params={"type": "Vehicle", "timerel": "after",
                                                       "timeAt": "2020-12-01T00:00:00Z", "count": "true"})
    assert [e["id"] for e in r.json()] == ["urn:ngsi-ld:Vehicle:t2"]
    r = await client.get("/temporal/entities", params={"type": "Vehicle", "q": "speed>50"})
    assert [e["id"] for e in r.json()] == [E]
    r = await client.post("/temporal/entityOperations/query", json={
        "type": "Query", "entities": [{"type": "Vehicle"}],
        "temporalQ": {"timerel": "before", "timeAt": "2020-12-01T00:00:00Z"}})
    assert r.status_code == 200 and [e["id"] for e in r.json()] == [E]
    assert (await client.get("/temporal/entities", params={"timerel": "after",
                                                           "timeAt": "2020-01-01T00:00:00Z"})).status_code == 400


async def test_paging_206(client: httpx.AsyncClient) -> None:
    insts = [{"type": "Property", "value": i, "observedAt": iso(to_ms("2020-01-01T00:00:00Z") + i * 60_000)}
             for i in range(25)]
    await create(client, {"id": E, "type": "Vehicle", "speed": insts})
    r = await client.get(f"/temporal/entities/{E}")
    assert r.status_code == 206
    assert r.headers["content-range"] == "date-time 2020-01-01T00:00:00Z-2020-01-01T00:09:00Z/*"
    assert len(r.json()["speed"]) == 10
    r = await client.get(f"/temporal/entities/{E}", params={"lastN": "20"})
    assert r.status_code == 206 and r.headers["content-range"].endswith("/20")
    assert [i["value"] for i in r.json()["speed"]] == list(range(15, 25))
    r = await client.get(f"/temporal/entities/{E}", params={"lastN": "3"})
    assert r.status_code == 200 and [i["value"] for i in r.json()["speed"]] == [22, 23, 24]


async def test_aggregation_hand_computed(client: httpx.AsyncClient) -> None:
    await create(client)
    r = await client.get(f"/temporal/entities/{E}", params={
        "options": "aggregatedValues", "aggrMethods": "totalCount,distinctCount,sum,avg,min,max,stddev,sumsq",
        "aggrPeriodDuration": "PT1H", "attrs": "speed"})
    assert r.status_code == 200
    sp = r.json()["speed"]
    window = ["2020-08-01T12:03:00Z", "2020-08-01T13:03:00Z"]
    assert sp["totalCount"] == [[3, *window]] and sp["distinctCount"] == [[3, *window]]
    assert sp["sum"] == [[300.0, *window]] and sp["avg"] == [[100.0, *window]]
    assert sp["min"] == [[80.0, *window]] and sp["max"] == [[120.0, *window]]
    assert sp["sumsq"] == [[120**2 + 80**2 + 100**2, *window]]
    assert math.isclose(sp["stddev"][0][0], math.sqrt((400 + 400 + 0) / 3))
    # hour-aligned origin: answered from the hour buckets, same numbers
    r = await client.get(f"/temporal/entities/{E}", params={
        "options": "aggregatedValues", "aggrMethods": "avg,max,totalCount", "aggrPeriodDuration": "PT1H",
        "timerel": "between", "timeAt": "2020-08-01T12:00:00Z", "endTimeAt": "2020-08-01T14:30:00Z"})
    fl = r.json()["fuelLevel"]
    assert fl["avg"] == [[67.0, "2020-08-01T12:00:00Z", "2020-08-01T13:00:00Z"],
                         [53.0, "2020-08-01T13:00:00Z", "2020-08-01T14:00:00Z"],
                         [40.0, "2020-08-01T14:00:00Z", "2020-08-01T15:00:00Z"]]
    r = await client.get(f"/temporal/entities/{E}", params={
        "options": "aggregatedValues", "aggrMethods": "avg", "aggrPeriodDuration": "P1D",
        "timerel": "after", "timeAt": "2020-08-01T00:00:00Z"})
    assert r.json()["fuelLevel"]["avg"] == [[pytest.approx(160 / 3), "2020-08-01T00:00:00Z", "2020-08-02T00:00:00Z"]]


@pytest.mark.parametrize("query", [
    {"timerel": "sometime", "timeAt": "2020-01-01T00:00:00Z"},
    {"timerel": "between", "timeAt": "2020-01-01T00:00:00Z"},
    {"timerel": "after", "timeAt": "yesterday"},
    {"timerel": "after"},
    {"timeproperty": "seenAt"},
    {"lastN": "0"}, {"lastN": "1.5"},
    {"options": "aggregatedValues", "aggrMethods": "median", "aggrPeriodDuration": "PT1H"},
    {"options": "aggregatedValues", "aggrMethods": "avg", "aggrPeriodDuration": "one hour"},
    {"options": "aggregatedValues"},
    {"options": "bogus"},
])
async def test_bad_input(client: httpx.AsyncClient, query: dict[str, str]) -> None:
    await create(client)
    r = await client.get(f"/temporal/entities/{E}", params=query)
    assert r.status_code == 400, (query, r.text)


async def test_bad_writes(client: httpx.AsyncClient) -> None:
    assert (await client.post("/temporal/entities", json={"type": "Vehicle"})).status_code == 400
    assert (await client.post("/temporal/entities", json={"id": E, "type": "Vehicle",
                                                         "expiresAt": "urn:ngsi-ld:null"})).status_code == 400
    assert (await client.get("/temporal/entities/not-a-uri")).status_code == 400
    await create(client)
    r = await client.patch(f"/temporal/entities/{E}/attrs/speed/invalidId", json={"value": 1})
    assert r.status_code == 400
    assert (await client.post("/temporal/entities/urn:x:missing/attrs",
                              json={"speed": {"type": "Property", "value": 1}})).status_code == 404


def test_durations_and_periods() -> None:
    assert Duration("P1D").fixed_ms == 86_400_000 and Duration("PT1H").whole_hours
    assert Duration("P1M").add(to_ms("2024-01-31T00:00:00Z")) == to_ms("2024-02-29T00:00:00Z")
    idx = PeriodIndex(to_ms("2024-01-01T00:00:00Z"), Duration("P1M"))
    assert idx.of(to_ms("2024-03-05T00:00:00Z")) == to_ms("2024-03-01T00:00:00Z")
    acc = Acc()
    for v in (1.0, 2.0, 2.0):
        acc.add_value(v, v, distinct=True)
    assert acc.result("distinctCount") == 2 and acc.result("avg") == pytest.approx(5 / 3)


async def test_numbers_too_large_to_aggregate_are_kept_but_not_aggregated(client) -> None:  # type: ignore[no-untyped-def]
    """Hourly buckets keep a sum of squares: values beyond ±1e150 (or beyond float range) stay in the history
    but are left out of numeric aggregation, on both backends, instead of failing the write."""
    body = {"id": "urn:ngsi-ld:Huge:1", "type": "Huge",
            "v": {"type": "Property", "value": 1e200, "observedAt": "2026-01-01T00:00:00Z"},
            "w": {"type": "Property", "value": 5, "observedAt": "2026-01-01T00:00:00Z"}}
    r = await client.post("/entities", json=body)
    assert r.status_code == 201, r.text
    r = await client.get("/temporal/entities/urn:ngsi-ld:Huge:1")
    assert r.status_code == 200
    v = r.json()["v"]
    assert (v[0] if isinstance(v, list) else v)["value"] == 1e200
    r = await client.get("/temporal/entities/urn:ngsi-ld:Huge:1", params={
        "aggrMethods": "sum,max", "aggrPeriodDuration": "PT1H", "options": "aggregatedValues"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["w"]["sum"][0][0] == 5


async def test_aggregated_page_matches_per_entity_requests(app, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    """A page of 20 entities aggregated at once (one store call for all of them) gives what
    each entity's own request gives: hour buckets plus a raw tail after the last full hour,
    datasetIds, non-numeric values (bucket fallback), a deleted instance, an empty attribute."""
    from urbanmim.ngsild import params as nparams
    from urbanmim.ngsild.contexts import CORE
    from urbanmim.temporal import service as tsvc

    ids = [f"urn:ngsi-ld:Meter:{i:02d}" for i in range(22)]
    for n, eid in enumerate(ids):
        power = [{"type": "Property", "value": (n * 7 + h * 3) % 50 + 0.5,
                  "observedAt": f"2024-03-{1 + h // 24:02d}T{h % 24:02d}:{(n * 11 + h) % 60:02d}:00Z"}
                 for h in range(0, 60, 1 + n % 3)]
        if n % 4 == 0:
            power.append({"type": "Property", "value": n, "datasetId": "urn:ds:b",
                          "observedAt": "2024-03-02T10:15:00Z"})
        body: dict[str, Any] = {"id": eid, "type": "Meter", "power": power}
        if n % 5 == 1:
            body["state"] = [{"type": "Property", "value": "on" if h % 2 else "off",
                              "observedAt": f"2024-03-01T{h:02d}:30:00Z"} for h in range(6)]
        if n == 3:
            body["late"] = [{"type": "Property", "value": 1, "observedAt": "2024-05-01T00:00:00Z"}]
        await create(client, body)
    await client.delete(f"/entities/{ids[2]}/attrs/power")   # a deletedAt instance in the history
    queries = [{"timerel": "between", "timeAt": "2024-03-01T00:00:00Z", "endTimeAt": "2024-03-03T05:20:00Z",
                "aggrMethods": "avg,min,max,totalCount,sum", "aggrPeriodDuration": "P1D"},
               {"timerel": "between", "timeAt": "2024-03-01T00:00:00Z", "endTimeAt": "2024-03-03T00:00:00Z",
                "aggrMethods": "avg,stddev,sumsq", "aggrPeriodDuration": "PT6H", "datasetId": "urn:ds:b"},
               {"timerel": "between", "timeAt": "2024-03-01T00:10:00Z", "endTimeAt": "2024-03-02T12:00:00Z",
                "aggrMethods": "avg,distinctCount", "aggrPeriodDuration": "PT1H"},
               {"timerel": "after", "timeAt": "2024-03-01T00:00:00Z", "aggrMethods": "max"}]
    store = app.state.store
    for q in queries:
        p = {"type": "Meter", "options": "aggregatedValues", "limit": "20", **q}
        r = await client.get("/temporal/entities", params=p)
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page) == 20
        for body in page:
            one = await client.get(f"/temporal/entities/{body['id']}",
                                   params={k: v for k, v in p.items() if k not in ("type", "limit")})
            assert one.status_code == 200 and one.json() == body, (q, body["id"])
        # the service's batched path against the per-attribute one, on the store directly
        tp = tsvc.parse_temporal(p)
        view = nparams.make_view({k: v for k, v in p.items() if k == "datasetId"}, CORE)
        tp.span.dataset_ids = view.dataset_ids
        ents = await store.temporal_entities("", ids)
        batched = await tsvc.aggregate_page(store, "", ents, view, tp)
        assert set(batched) == set(tsvc.aggregated_keys(ents, view))
        for (eid, attr), got in batched.items():
            assert got == await tsvc.render_aggregated(store, "", eid, attr, view, tp), (q, eid, attr)
