"""The twin's data API in-process: layers as GeoJSON, the cache, a layer at an instant, history, live hub."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from urbanmim.twin.layers import BY_ID, LAYERS

SDM = "https://smartdatamodels.org/"
CTX = [{"AirQualityObserved": SDM + "dataModel.Environment/AirQualityObserved",
        "no2": SDM + "dataModel.Environment/no2",
        "Building": SDM + "dataModel.Building/Building", "name": SDM + "name"},
       "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld"]
LD = {"Content-Type": "application/ld+json", "NGSILD-Tenant": "town"}
SQUARE = {"type": "Polygon", "coordinates": [[[2.0, 41.0], [2.001, 41.0], [2.001, 41.001], [2.0, 41.001], [2.0, 41.0]]]}

SQLITE = pytest.mark.parametrize("db_target", ["sqlite"], indirect=True)


@pytest.fixture
async def tw(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


async def _seed(c: httpx.AsyncClient) -> None:
    ents = [
        {"id": "urn:ngsi-ld:Building:1", "type": "Building", "height": {"type": "Property", "value": 12.5},
         "name": {"type": "Property", "value": "Town hall"}, "location": {"type": "GeoProperty", "value": SQUARE},
         "@context": CTX},
        {"id": "urn:ngsi-ld:AirQualityObserved:1", "type": "AirQualityObserved",
         "no2": {"type": "Property", "value": 10.0, "observedAt": "2026-01-01T10:00:00Z", "unitCode": "GQ"},
         "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [2.0005, 41.0005]}},
         "@context": CTX},
    ]
    for e in ents:
        r = await c.post("/ngsi-ld/v1/entities", json=e, headers=LD)
        assert r.status_code == 201, r.text
    r = await c.patch("/ngsi-ld/v1/entities/urn:ngsi-ld:AirQualityObserved:1/attrs", headers=LD, json={
        "no2": {"type": "Property", "value": 30.0, "observedAt": "2026-01-01T12:00:00Z", "unitCode": "GQ"},
        "@context": CTX})
    assert r.status_code == 204, r.text


@SQLITE
async def test_layer_catalogue_has_units_for_every_valued_layer(tw: httpx.AsyncClient) -> None:
    body = (await tw.get("/twin/api/layers")).json()
    assert [b["id"] for b in body] == [layer.id for layer in LAYERS]
    for b in body:
        if b["stops"]:
            assert b["unit"] and len(b["colors"]) == len(b["stops"]) + 1, b["id"]
    assert BY_ID["buildings"].type_iris() == [SDM + "dataModel.Building/Building"]


@SQLITE
async def test_layers_as_geojson_with_short_names(tw: httpx.AsyncClient) -> None:
    await _seed(tw)
    r = await tw.get("/twin/api/layers/buildings", params={"tenant": "town"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/geo+json")
    (f,) = r.json()["features"]
    assert f["id"] == "urn:ngsi-ld:Building:1" and f["geometry"] == SQUARE
    assert f["properties"]["height"] == 12.5 and f["properties"]["name"] == "Town hall"
    (air,) = (await tw.get("/twin/api/layers/air", params={"tenant": "town"})).json()["features"]
    assert air["properties"]["no2"] == 30.0 and air["properties"]["observedAt"].startswith("2026-01-01T12:00:00")
    assert (await tw.get("/twin/api/layers/noise", params={"tenant": "town"})).json()["features"] == []
    r = await tw.get("/twin/api/tenants")
    assert {"id": "town"} in r.json()


@SQLITE
async def test_cache_follows_writes(app: Any, tw: httpx.AsyncClient) -> None:
    await _seed(tw)
    first = (await tw.get("/twin/api/layers/air", params={"tenant": "town"})).json()
    assert ("town", "air") in app.state.twin_cache.entries
    r = await tw.patch("/ngsi-ld/v1/entities/urn:ngsi-ld:AirQualityObserved:1/attrs", headers=LD, json={
        "no2": {"type": "Property", "value": 55.5, "observedAt": "2026-01-01T13:00:00Z"}, "@context": CTX})
    assert r.status_code == 204
    await asyncio.sleep(0)       # the invalidation is scheduled on the loop by the writer's listener
    for _ in range(50):
        if ("town", "air") not in app.state.twin_cache.entries:
            break
        await asyncio.sleep(0.01)
    second = (await tw.get("/twin/api/layers/air", params={"tenant": "town"})).json()
    assert first["features"][0]["properties"]["no2"] == 30.0
    assert second["features"][0]["properties"]["no2"] == 55.5


@SQLITE
async def test_layer_at_an_instant_and_history(tw: httpx.AsyncClient) -> None:
    await _seed(tw)
    q = {"tenant": "town"}
    at11 = (await tw.get("/twin/api/layers/air", params={**q, "at": "2026-01-01T11:00:00Z"})).json()
    assert at11["values"]["urn:ngsi-ld:AirQualityObserved:1"]["value"] == 10.0
    at12 = (await tw.get("/twin/api/layers/air", params={**q, "at": "2026-01-01T12:00:00Z"})).json()
    assert at12["values"]["urn:ngsi-ld:AirQualityObserved:1"]["value"] == 30.0
    before = (await tw.get("/twin/api/layers/air", params={**q, "at": "2025-12-01T00:00:00Z"})).json()
    assert before["values"]["urn:ngsi-ld:AirQualityObserved:1"]["value"] is None
    h = (await tw.get("/twin/api/history", params={**q, "id": "urn:ngsi-ld:AirQualityObserved:1", "attr": "no2",
                                                   "hours": 4, "end": "2026-01-01T13:00:00Z"})).json()
    assert [p["v"] for p in h["points"]] == [10.0, 30.0] and h["unitCode"] == "GQ"
    e = (await tw.get("/twin/api/entity", params={**q, "id": "urn:ngsi-ld:AirQualityObserved:1"})).json()
    assert e["no2"] == 30.0 and e["unitCode"]["no2"] == "GQ"


@SQLITE
async def test_errors_are_problem_details(tw: httpx.AsyncClient) -> None:
    await _seed(tw)
    cases = [("/twin/api/layers/nope", {"tenant": "town"}, 404, "ResourceNotFound"),
             ("/twin/api/layers/air", {"tenant": "nowhere"}, 404, "NonexistentTenant"),
             ("/twin/api/layers/air", {"tenant": "town", "at": "yesterday"}, 400, "InvalidRequest"),
             ("/twin/api/layers/buildings", {"tenant": "town", "at": "2026-01-01T11:00:00Z"}, 400, "InvalidRequest"),
             ("/twin/api/history", {"tenant": "town", "id": "urn:x"}, 400, "InvalidRequest"),
             ("/twin/api/history", {"tenant": "town", "id": "urn:ngsi-ld:X:1", "attr": "a"}, 404, "ResourceNotFound"),
             ("/twin/api/history", {"tenant": "town", "id": "urn:ngsi-ld:AirQualityObserved:1", "attr": "no2",
                                    "hours": "-1"}, 400, "InvalidRequest")]
    for path, params, status, problem in cases:
        r = await tw.get(path, params=params)
        assert r.status_code == status, (path, params, r.text)
        assert r.json()["type"].endswith(problem), r.text


@SQLITE
async def test_live_hub_coalesces_per_entity_and_bounds_slow_clients(app: Any, tw: httpx.AsyncClient) -> None:
    hub = app.state.twin_live
    await _seed(tw)
    client = hub.subscribe("town")
    other = hub.subscribe("elsewhere")
    try:
        for v in (1.0, 2.0, 3.0):
            r = await tw.patch("/ngsi-ld/v1/entities/urn:ngsi-ld:AirQualityObserved:1/attrs", headers=LD,
                               json={"no2": {"type": "Property", "value": v}, "@context": CTX})
            assert r.status_code == 204
        for _ in range(100):
            if client.pending:
                break
            await asyncio.sleep(0.01)
        events, overflow = client.take()
        assert not overflow and len(events) == 1                      # three changes, one (the latest) event
        assert events[0]["feature"]["properties"]["no2"] == 3.0 and events[0]["layer"] == "air"
        assert not other.pending                                      # another tenant hears nothing
        client.limit = 1
        client.push("a", {"op": "delete"})
        client.push("b", {"op": "delete"})                            # past the bound: one resync instead
        events, overflow = client.take()
        assert overflow and events == []
    finally:
        hub.unsubscribe(client)
        hub.unsubscribe(other)
    assert "town" not in hub.clients


@SQLITE
async def test_event_stream_sends_hello_then_changes(app: Any, tw: httpx.AsyncClient) -> None:
    """The SSE body itself (the generator the response streams)."""
    hub = app.state.twin_live
    await _seed(tw)
    client = hub.subscribe("town")
    stream = hub.stream(client)
    assert (await anext(stream)).startswith(b"retry: 2000\nevent: hello")
    r = await tw.patch("/ngsi-ld/v1/entities/urn:ngsi-ld:AirQualityObserved:1/attrs", headers=LD,
                       json={"no2": {"type": "Property", "value": 42.0}, "@context": CTX})
    assert r.status_code == 204
    chunk = await asyncio.wait_for(anext(stream), 2)
    assert chunk.startswith(b"event: change\ndata: [") and b'"no2":42.0' in chunk
    hub.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(stream), 2)
    assert "town" not in hub.clients


@pytest.mark.slow
def test_server_stops_promptly_with_an_open_event_stream(server: Any) -> None:
    """An endless SSE response must not hold a SIGTERM'd server for uvicorn's graceful timeout."""
    import time

    base = server.url.removesuffix("/ngsi-ld/v1")
    with httpx.stream("GET", f"{base}/twin/api/events", timeout=10) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        first = next(r.iter_raw())
        assert b"event: hello" in first
        t0 = time.monotonic()
        server.proc.terminate()
        server.proc.wait(timeout=15)
        took = time.monotonic() - t0
    assert server.proc.returncode in (0, -15)     # uvicorn re-raises the signal after its clean shutdown
    assert took < 5, took


@SQLITE
async def test_event_streams_are_filtered_for_the_principal_that_opened_them(app: Any, tw: httpx.AsyncClient) -> None:
    """With the access decision on, each tab gets a change as its own principal may see it."""
    from urbanmim.security.access import Decision
    from urbanmim.security.principal import Principal

    no2 = SDM + "dataModel.Environment/no2"

    class NoNo2ForBob:
        name = "test"

        def read(self, p: Principal, tenant: str, entity: dict[str, Any]) -> Decision:
            if p.subject == "carol":
                return Decision("deny", reason="carol sees nothing")
            hidden = frozenset({no2}) if p.subject == "bob" else frozenset()
            return Decision("permit", hidden=hidden)

        def write(self, p: Principal, tenant: str, before: Any, after: Any) -> Decision:
            return Decision("permit")

    await _seed(tw)
    hub = app.state.twin_live
    access = app.state.entities.access
    alice, bob, carol = (hub.subscribe("town", Principal(n, {"town": frozenset({"reader"})})) for n in
                         ("alice", "bob", "carol"))
    access.enabled, saved = True, list(access.deciders)
    access.deciders[:] = [NoNo2ForBob()]
    try:
        r = await tw.patch("/ngsi-ld/v1/entities/urn:ngsi-ld:AirQualityObserved:1/attrs", headers=LD,
                           json={"no2": {"type": "Property", "value": 64.0}, "@context": CTX})
        assert r.status_code == 204, r.text
        for _ in range(100):
            if alice.pending and bob.pending and carol.pending:
                break
            await asyncio.sleep(0.01)
        (a,), _ = alice.take()
        (b,), _ = bob.take()
        (c,), _ = carol.take()
        assert a["feature"]["properties"]["no2"] == 64.0
        assert "no2" not in b["feature"]["properties"] and b["op"] == "upsert"     # the hidden attribute is gone
        assert c == {"op": "delete", "id": "urn:ngsi-ld:AirQualityObserved:1", "layer": "air"}
    finally:
        access.enabled = False
        access.deciders[:] = saved
        for client in (alice, bob, carol):
            hub.unsubscribe(client)


@SQLITE
async def test_layer_cache_is_not_shared_with_filtered_callers(app: Any, tw: httpx.AsyncClient) -> None:
    from urbanmim.security.principal import Principal, use_principal
    from urbanmim.twin.layers import BY_ID

    await _seed(tw)
    cache, access = app.state.twin_cache, app.state.entities.access
    access.enabled = True
    try:
        with use_principal(Principal("dave", {"town": frozenset({"reader"})})):
            await cache.get(app, "town", BY_ID["air"])
        assert ("town", "air") not in cache.entries          # dave's view is his own
        await cache.get(app, "town", BY_ID["air"])           # the platform itself (SYSTEM) may share
        assert ("town", "air") in cache.entries
    finally:
        access.enabled = False
