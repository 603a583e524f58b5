"""Device agent: provisioning CRUD, HTTP measurements, rejections counted per reason (in-process app)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from urbanmim.ingest.agent.mapping import Malformed, observed_at, parse_payload

IOT = "http://testserver/iot/v1"
T = {"NGSILD-Tenant": "city1"}


@pytest.fixture
async def iot(app: object) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url=IOT) as c:
        yield c


def weather_device(dev_id: str = "ws-1", key: str | None = "secret-key-1") -> dict[str, Any]:
    d: dict[str, Any] = {
        "deviceId": dev_id, "entityType": "WeatherObserved", "entityId": f"urn:ngsi-ld:WeatherObserved:{dev_id}",
        "attributes": [{"key": "t", "name": "temperature", "unitCode": "CEL"},
                       {"key": "h", "name": "relativeHumidity", "unitCode": "P1"},
                       {"key": "loc", "name": "location", "type": "GeoProperty"}],
        "staticAttributes": {"address": {"type": "Property", "value": {"addressLocality": "Madrid"}}},
    }
    if key is not None:
        d["apiKey"] = key
    return d


async def test_provisioning_crud(iot: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    r = await iot.post("/devices", json=weather_device(), headers=T)
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == "/iot/v1/devices/ws-1"
    assert "apiKey" not in r.json()            # only a generated key is returned
    r = await iot.post("/devices", json=weather_device(), headers=T)
    assert r.status_code == 409, r.text
    r = await iot.post("/devices", json=[weather_device("ws-2", key=None), weather_device("ws-3")], headers=T)
    assert r.status_code == 201, r.text
    generated = r.json()["devices"][0]["apiKey"]
    assert len(generated) >= 24
    r = await iot.get("/devices", headers=T)
    assert r.json()["count"] == 3
    assert {d["deviceId"] for d in r.json()["devices"]} == {"ws-1", "ws-2", "ws-3"}
    r = await iot.get("/devices/ws-1", headers=T)
    body = r.json()
    assert body["entityId"] == "urn:ngsi-ld:WeatherObserved:ws-1" and body["entityType"] == "WeatherObserved"
    assert body["attributes"][0] == {"key": "t", "name": "temperature", "type": "Property", "unitCode": "CEL"}
    assert "apiKey" not in r.text and "secret-key-1" not in r.text
    # per tenant
    assert (await iot.get("/devices/ws-1")).status_code == 404
    assert (await iot.get("/devices")).json()["count"] == 0
    # stored as a Smart Data Models Device entity, with only a hash of the key
    r = await client.get("/entities/urn:ngsi-ld:Device:ws-1", headers=T)
    assert r.status_code == 200, r.text
    dev = r.json()
    assert dev["type"] == "Device" and dev["controlledAsset"]["object"] == "urn:ngsi-ld:WeatherObserved:ws-1"
    assert dev["controlledProperty"]["value"] == ["location", "relativeHumidity", "temperature"]
    assert dev["apiKeyHash"]["value"].startswith("pbkdf2_sha256$") and "secret-key-1" not in r.text
    # the target entity exists at once, with its static attributes
    r = await client.get("/entities/urn:ngsi-ld:WeatherObserved:ws-1", headers=T)
    assert r.json()["address"]["value"] == {"addressLocality": "Madrid"}
    # delete: the device goes, its entity stays
    assert (await iot.delete("/devices/ws-1", headers=T)).status_code == 204
    assert (await iot.delete("/devices/ws-1", headers=T)).status_code == 404
    assert (await iot.get("/devices/ws-1", headers=T)).status_code == 404
    assert (await client.get("/entities/urn:ngsi-ld:WeatherObserved:ws-1", headers=T)).status_code == 200


@pytest.mark.parametrize("bad", [
    {"deviceId": "a/b", "apiKey": "12345678"},
    {"deviceId": "ok", "apiKey": "short"},
    {"deviceId": "ok", "apiKey": "12345678", "attributes": [{"key": "t", "name": "bad name"}]},
    {"deviceId": "ok", "apiKey": "12345678", "attributes": [{"key": "t", "type": "Nope"}]},
    {"deviceId": "ok", "apiKey": "12345678", "surprise": 1},
    {"deviceId": "ok", "apiKey": "12345678", "entityId": "not a uri"},
])
async def test_provisioning_rejects_bad_devices(iot: httpx.AsyncClient, bad: dict[str, Any]) -> None:
    r = await iot.post("/devices", json=bad)
    assert r.status_code == 400, r.text
    assert r.json()["type"].endswith("BadRequestData")


async def test_http_measurements_and_history(iot: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    assert (await iot.post("/devices", json=weather_device(), headers=T)).status_code == 201
    k = {"k": "secret-key-1", "i": "ws-1"}
    r = await iot.post("/measurements", params=k, headers=T,
                       json={"t": 21.5, "h": 40, "loc": [-3.7, 40.4], "ts": "2024-05-01T10:00:00Z"})
    assert r.status_code == 204, r.text
    bulk = [{"t": 22.0 + i, "ts": f"2024-05-01T10:0{i}:00+00:00"} for i in range(1, 4)]
    assert (await iot.post("/measurements", params=k, headers=T, json=bulk)).status_code == 204
    # an unmapped key becomes a Property of the same name; no ts: the receive time
    assert (await iot.post("/measurements", params=k, headers=T, json={"battery": 87})).status_code == 204
    r = await client.get("/entities/urn:ngsi-ld:WeatherObserved:ws-1", headers=T)
    ent = r.json()
    assert ent["temperature"] == {"type": "Property", "value": 25.0, "unitCode": "CEL",
                                  "observedAt": "2024-05-01T10:03:00.000Z"}
    assert ent["relativeHumidity"]["value"] == 40 and ent["location"]["value"]["coordinates"] == [-3.7, 40.4]
    assert ent["battery"]["value"] == 87 and ent["battery"]["observedAt"].endswith("Z")
    assert ent["address"]["value"]["addressLocality"] == "Madrid"
    r = await client.get("/temporal/entities/urn:ngsi-ld:WeatherObserved:ws-1", headers=T,
                         params={"attrs": "temperature", "timerel": "after", "timeAt": "2024-01-01T00:00:00Z"})
    assert r.status_code == 200, r.text
    temps = r.json()["temperature"]
    assert sorted((i["observedAt"], i["value"]) for i in temps) == [
        ("2024-05-01T10:00:00.000Z", 21.5), ("2024-05-01T10:01:00.000Z", 23.0),
        ("2024-05-01T10:02:00.000Z", 24.0), ("2024-05-01T10:03:00.000Z", 25.0)]
    stats = (await iot.get("/stats")).json()
    assert stats["measurements"] == 5 and stats["messages"]["http"] == 3 and stats["rejectedTotal"] == 0


async def test_http_rejections_are_counted(iot: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    assert (await iot.post("/devices", json=weather_device(), headers=T)).status_code == 201
    cases = [
        ({"k": "secret-key-1", "i": "nope"}, T, b'{"t": 1}', 404),           # unknown device
        ({"k": "secret-key-1", "i": "ws-1"}, {}, b'{"t": 1}', 404),          # right device, other tenant
        ({"k": "wrong-key-xx", "i": "ws-1"}, T, b'{"t": 1}', 401),           # wrong key
        ({"i": "ws-1"}, T, b'{"t": 1}', 401),                                 # no key
        ({"k": "secret-key-1", "i": "ws-1"}, T, b'{"t": ', 400),              # not JSON
        ({"k": "secret-key-1", "i": "ws-1"}, T, b'[]', 400),                  # empty list
        ({"k": "secret-key-1", "i": "ws-1"}, T, b'{"t": 1, "ts": "yesterday"}', 400),
        ({"k": "secret-key-1", "i": "ws-1"}, T, b'{"loc": "here"}', 400),     # not a geometry
        ({"k": "secret-key-1", "i": "ws-1"}, T, b'{"t": null}', 400),
        ({"k": "secret-key-1", "i": "ws-1"}, T, b'{"bad key": 1}', 400),
        ({"k": "secret-key-1", "i": "ws-1"}, T, b'42', 400),
    ]
    for params, headers, body, status in cases:
        r = await iot.post("/measurements", params=params, headers=headers, content=body)
        assert r.status_code == status, (params, body, r.text)
    stats = (await iot.get("/stats")).json()
    assert stats["rejected"]["unknown_device"] == 2
    assert stats["rejected"]["bad_api_key"] == 2
    assert stats["rejected"]["malformed_payload"] == 7
    assert stats["measurements"] == 0
    r = await client.get("/entities/urn:ngsi-ld:WeatherObserved:ws-1", headers=T)
    assert "temperature" not in r.json()


async def test_device_changed_through_ngsi_ld_is_seen(iot: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    """The device cache is invalidated by any write of the Device entity, not only /iot/v1's."""
    assert (await iot.post("/devices", json=weather_device(), headers=T)).status_code == 201
    k = {"k": "secret-key-1", "i": "ws-1"}
    assert (await iot.post("/measurements", params=k, headers=T, json={"t": 1})).status_code == 204
    assert (await client.delete("/entities/urn:ngsi-ld:Device:ws-1", headers=T)).status_code == 204
    assert (await iot.post("/measurements", params=k, headers=T, json={"t": 2})).status_code == 404


def test_mapping_helpers() -> None:
    assert observed_at("2024-05-01T12:00:00+02:00") == "2024-05-01T10:00:00.000Z"
    assert observed_at(1714557600) == "2024-05-01T10:00:00.000Z"
    assert observed_at(1714557600123) == "2024-05-01T10:00:00.123Z"
    assert parse_payload(b'[{"a": 1}, {"b": 2}]') == [{"a": 1}, {"b": 2}]
    for bad in (b"{}", b"[1]", b"null", b"[" + b",".join([b'{"a":1}'] * 1001) + b"]"):
        with pytest.raises(Malformed):
            parse_payload(bad)
    with pytest.raises(Malformed):
        observed_at(True)
