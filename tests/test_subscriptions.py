"""Subscription CRUD (clause 5.8.1–5.8.5): storage, validation, rendering, tenants."""

from __future__ import annotations

from typing import Any

import pytest

CTX = {"@context": {"Building": "https://example.org/Building", "name": "https://example.org/name"}}


def sub(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"id": "urn:ngsi-ld:Subscription:1", "type": "Subscription",
                            "entities": [{"type": "Building"}],
                            "notification": {"format": "keyValues",
                                             "endpoint": {"uri": "http://localhost:1111/notify",
                                                          "accept": "application/json"}}}
    body.update(extra)
    return {k: v for k, v in body.items() if v is not None}


async def test_create_retrieve_delete(client: Any) -> None:
    r = await client.post("/subscriptions", json=sub(timeInterval=5))
    assert r.status_code == 201, r.text
    assert r.headers["location"] == "/ngsi-ld/v1/subscriptions/urn:ngsi-ld:Subscription:1"
    r = await client.get("/subscriptions/urn:ngsi-ld:Subscription:1")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "active"
    assert body["entities"] == [{"type": "Building"}]
    assert body["notificationTrigger"] == ["attributeCreated", "attributeUpdated"]
    assert body["notification"] == {"format": "keyValues",
                                    "endpoint": {"uri": "http://localhost:1111/notify", "accept": "application/json"}}
    assert "isActive" not in body and "createdAt" not in body and "_ctx" not in body
    r = await client.get("/subscriptions/urn:ngsi-ld:Subscription:1", params={"options": "sysAttrs"})
    assert "createdAt" in r.json() and "modifiedAt" in r.json()
    assert (await client.post("/subscriptions", json=sub())).status_code == 409
    assert (await client.delete("/subscriptions/urn:ngsi-ld:Subscription:1")).status_code == 204
    assert (await client.delete("/subscriptions/urn:ngsi-ld:Subscription:1")).status_code == 404
    r = await client.get("/subscriptions/urn:ngsi-ld:Subscription:1")
    assert r.status_code == 404 and r.json()["type"].endswith("ResourceNotFound")


async def test_generated_id_and_paused(client: Any) -> None:
    body = sub(isActive=False)
    del body["id"]
    r = await client.post("/subscriptions", json=body)
    assert r.status_code == 201
    loc = r.headers["location"]
    assert loc.startswith("/ngsi-ld/v1/subscriptions/urn:ngsi-ld:Subscription:")
    r = await client.get(loc.removeprefix("/ngsi-ld/v1"))
    assert r.json()["status"] == "paused" and r.json()["isActive"] is False


@pytest.mark.parametrize("body", [
    sub(id="not a uri"),
    sub(type="Entity"),
    sub(entities=None),
    sub(notification={"format": "keyValues"}),
    sub(notification={"endpoint": {"uri": "no uri"}}),
    sub(notification={"format": "xml", "endpoint": {"uri": "http://a/b"}}),
    sub(notification={"endpoint": {"uri": "http://a/b", "accept": "text/plain"}}),
    sub(notification={"format": "keyValues", "showChanges": True, "endpoint": {"uri": "http://a/b"}}),
    sub(notification={"attributes": [], "endpoint": {"uri": "http://a/b"}}),
    sub(notification={"attributes": ["a"], "pick": ["b"], "endpoint": {"uri": "http://a/b"}}),
    sub(notification={"pick": ["a"], "omit": ["a"], "endpoint": {"uri": "http://a/b"}}),
    sub(notification={"endpoint": {"uri": "http://a/b", "receiverInfo": [{"key": "k", "value": 42}]}}),
    sub(q="((("),
    sub(scopeQ="not a scope"),
    sub(csf="(("),
    sub(geoQ={"georel": "near;maxDistance==10", "geometry": "Point"}),
    sub(timeInterval=5, watchedAttributes=["name"]),
    sub(timeInterval=5, throttling=1),
    sub(throttling=-1),
    sub(timeInterval=0),
    sub(expiresAt="2020-01-01T00:00:00Z"),
    sub(expiresAt="yesterday"),
    sub(isActive="yes"),
    sub(notificationTrigger=["entityChanged"]),
    sub(entities=[{"id": "urn:a"}]),
])
async def test_create_invalid(client: Any, body: dict[str, Any]) -> None:
    r = await client.post("/subscriptions", json=body)
    assert r.status_code == 400, (body, r.text)
    assert r.json()["type"].endswith("BadRequestData")


async def test_create_valid_extras(client: Any) -> None:
    body = sub(notificationTrigger=["entityCreated", "attributeDeleted"], q="name==\"x\"", scopeQ="/a",
               geoQ={"georel": "near;maxDistance==10", "geometry": "Point", "coordinates": [1, 2]},
               expiresAt="2999-01-01T00:00:00Z", throttling=0, status="expired", __context="x")
    body["notification"]["endpoint"]["receiverInfo"] = [{"key": "A", "value": "b"}]
    body["notification"]["timesSent"] = 42
    assert (await client.post("/subscriptions", json=body)).status_code == 201
    got = (await client.get("/subscriptions/urn:ngsi-ld:Subscription:1")).json()
    assert got["status"] == "active" and "timesSent" not in got["notification"] and "__context" not in got
    assert got["geoQ"]["coordinates"] == [1, 2]


async def test_context_expansion_and_implicit_context(client: Any, app: Any) -> None:
    body = dict(sub(watchedAttributes=["name"]), **CTX)
    r = await client.post("/subscriptions", json=body, headers={"Content-Type": "application/ld+json"})
    assert r.status_code == 201, r.text
    got = (await client.get("/subscriptions/urn:ngsi-ld:Subscription:1")).json()
    assert got["entities"] == [{"type": "https://example.org/Building"}]
    assert got["watchedAttributes"] == ["https://example.org/name"]
    url = got["jsonldContext"]
    stored = app.state.contexts.documents[url]
    assert stored.kind == "ImplicitlyCreated" and stored.document == CTX["@context"]
    r = await client.get("/subscriptions/urn:ngsi-ld:Subscription:1", headers={"Accept": "application/ld+json"},
                         params={})
    assert r.headers["content-type"].startswith("application/ld+json") and "@context" in r.json()
    r = await client.get("/jsonldContexts", params={"kind": "ImplicitlyCreated"})
    assert url in r.json()


async def test_patch(client: Any) -> None:
    assert (await client.post("/subscriptions", json=sub())).status_code == 201
    sid = "/subscriptions/urn:ngsi-ld:Subscription:1"
    new_n = {"format": "normalized", "endpoint": {"uri": "http://other/notify", "accept": "application/json"}}
    r = await client.patch(sid, json={"type": "Subscription", "notification": new_n})
    assert r.status_code == 204, r.text
    assert (await client.get(sid)).json()["notification"]["endpoint"]["uri"] == "http://other/notify"
    mp = {"Content-Type": "application/merge-patch+json"}
    r = await client.patch(sid, content=b'{"isActive": false}', headers=mp)
    assert r.status_code == 204
    assert (await client.get(sid)).json()["status"] == "paused"
    assert (await client.patch(sid, json={"isActive": True})).status_code == 204
    assert (await client.get(sid)).json()["status"] == "active"
    for bad in ({"notification": {"format": "keyValues"}},
                {"notification": {"format": "keyValues", "endpoint": None}},
                {"notification": None}, {"expiresAt": "2020-08-01T22:07:00Z"},
                {"entities": None}, {"timeInterval": 3, "watchedAttributes": ["a"]}):
        r = await client.patch(sid, json=bad)
        assert r.status_code == 400, (bad, r.text)
    assert (await client.patch("/subscriptions/urn:ngsi-ld:Subscription:404", json={"isActive": True})).status_code \
        == 404
    assert (await client.patch("/subscriptions/notauri", json={"isActive": True})).status_code == 400


async def test_list_paging_and_count(client: Any) -> None:
    for i in range(3):
        assert (await client.post("/subscriptions", json=sub(id=f"urn:ngsi-ld:Subscription:{i}"))).status_code == 201
    r = await client.get("/subscriptions")
    assert [s["id"] for s in r.json()] == [f"urn:ngsi-ld:Subscription:{i}" for i in range(3)]
    r = await client.get("/subscriptions", params={"limit": 1, "offset": 1, "count": "true"})
    assert [s["id"] for s in r.json()] == ["urn:ngsi-ld:Subscription:1"]
    assert r.headers["NGSILD-Results-Count"] == "3"
    assert (await client.get("/subscriptions", params={"foo": "bar"})).status_code == 400
    assert (await client.get("/subscriptions", params={"limit": "-1"})).status_code == 400


async def test_tenants(client: Any) -> None:
    h = {"NGSILD-Tenant": "t1"}
    assert (await client.post("/subscriptions", json=sub(), headers=h)).status_code == 201
    assert (await client.get("/subscriptions/urn:ngsi-ld:Subscription:1")).status_code == 404
    assert (await client.get("/subscriptions")).json() == []
    assert (await client.get("/subscriptions/urn:ngsi-ld:Subscription:1", headers=h)).status_code == 200
    r = await client.get("/subscriptions", headers={"NGSILD-Tenant": "nope"})
    assert r.status_code == 404 and r.json()["type"].endswith("NonexistentTenant")
    assert (await client.delete("/subscriptions/urn:ngsi-ld:Subscription:1")).status_code == 404
    assert (await client.delete("/subscriptions/urn:ngsi-ld:Subscription:1", headers=h)).status_code == 204


async def test_media_types(client: Any) -> None:
    r = await client.post("/subscriptions", content=b"{}", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    r = await client.post("/subscriptions", content=b"{bad", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["type"].endswith("InvalidRequest")
    assert (await client.post("/subscriptions", json=sub())).status_code == 201
    r = await client.get("/subscriptions/urn:ngsi-ld:Subscription:1", headers={"Accept": "text/html"})
    assert r.status_code == 406
    r = await client.get("/subscriptions/urn:ngsi-ld:Subscription:1",
                         headers={"Accept": "application/geo+json, application/json"})
    assert r.headers["content-type"].startswith("application/json")
