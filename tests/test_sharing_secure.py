"""MIM3 with security on: who may publish, accept and withdraw; cross-tenant consumers; agreements that cannot
be forged through NGSI-LD; count and spatial constraints end to end; explanations. Real dev-issuer tokens."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.security_helpers import client, secure_app, token

CITY = "culture"
LAB_TENANT = "research"


@pytest.fixture
async def app(tmp_path: Path, db_target: str) -> AsyncIterator[Any]:
    """A secure broker, over SQLite and over PostgreSQL (``db_target``)."""
    async for a in secure_app(tmp_path, db=db_target, sharing_flush_interval=0.1):
        yield a


def as_(app: Any, org: str | None, roles: dict[str, list[str]] | None = None, *, base: str = "/ngsi-ld/v1",
        tenant: str = CITY, purpose: str | None = None, subject: str | None = None) -> httpx.AsyncClient:
    roles = {CITY: ["editor"]} if roles is None else roles
    return client(app, token(app, roles, subject=subject or f"someone@{org}", org=org, purpose=purpose),
                  tenant=tenant, base=base)


def admin(app: Any, tenant: str = CITY, base: str = "/sharing/v1") -> httpx.AsyncClient:
    return client(app, token(app, {tenant: ["admin"]}, subject=f"admin@{tenant}"), tenant=tenant, base=base)


def station(n: int, lon: float = 5.0, **extra: Any) -> dict[str, Any]:
    body = {"id": f"urn:ngsi-ld:WeatherObserved:{n}", "type": "WeatherObserved",
            "temperature": {"type": "Property", "value": 20 + n},
            "humidity": {"type": "Property", "value": 50},
            "stationOwner": {"type": "Property", "value": "Mr Smith"},
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, 5.0]}}}
    body.update({k: {"type": "Property", "value": v} for k, v in extra.items()})
    return body


async def setup(app: Any, policy: dict[str, Any] | None = None, n: int = 2) -> str:
    async with admin(app) as c:
        for org in ("meteo", "uni"):
            assert (await c.post("/organisations", json={"id": org, "name": org.title()})).status_code == 201
    async with admin(app, LAB_TENANT) as c:
        assert (await c.post("/organisations", json={"id": "lab", "name": "Lab"})).status_code == 201
    async with as_(app, "meteo") as c:
        for i in range(n):
            assert (await c.post("/entities", json=station(i))).status_code == 201
    async with as_(app, "meteo", base="/sharing/v1") as c:
        r = await c.post("/offers", json={"title": "Weather", "policy": policy or {
            "@type": "Offer", "target": {"entityType": "WeatherObserved", "attributes": ["temperature"]},
            "permission": [{"action": "read"}]}})
        assert r.status_code == 201, r.text
        return str(r.json()["id"])


async def test_who_may_publish_and_accept(app: Any) -> None:
    offer_id = await setup(app)
    body = {"title": "x", "policy": {"@type": "Offer", "target": {"entityType": "WeatherObserved"},
                                     "permission": [{"action": "read"}]}}
    async with client(app, tenant=CITY, base="/sharing/v1") as c:            # anonymous
        assert (await c.post("/offers", json=body)).status_code == 401
        assert (await c.post(f"/offers/{offer_id}/accept")).status_code == 401
    async with as_(app, "meteo", {CITY: ["reader"]}, base="/sharing/v1") as c:   # a reader publishes nothing
        assert (await c.post("/offers", json=body)).status_code == 403
    async with as_(app, "uni", base="/sharing/v1") as c:                     # nor for another organisation
        r = await c.post("/offers", json={**body, "provider": "meteo"})
        assert r.status_code == 403
        assert (await c.post(f"/offers/{offer_id}/withdraw")).status_code == 403
    async with as_(app, None, base="/sharing/v1") as c:                      # without an organisation
        assert (await c.post(f"/offers/{offer_id}/accept")).status_code == 403
    async with as_(app, "ghost", base="/sharing/v1") as c:                   # unregistered organisation
        assert (await c.post(f"/offers/{offer_id}/accept")).status_code == 404
    async with as_(app, "uni", base="/sharing/v1") as c:                     # organisations: admins only
        assert (await c.post("/organisations", json={"id": "x", "name": "X"})).status_code == 403


async def test_agreements_cannot_be_forged_through_ngsi_ld(app: Any) -> None:
    offer_id = await setup(app)
    async with as_(app, "uni", base="/sharing/v1") as c:
        agr = (await c.post(f"/offers/{offer_id}/accept")).json()
    async with as_(app, "uni") as c:
        ent = (await c.get(f"/entities/{agr['id']}")).json()     # a party sees its agreement
        assert ent["urbanmim:consumer"]["value"] == "uni"
        forged = {"id": "urn:ngsi-ld:SharingAgreement:forged", "type": "urbanmim:SharingAgreement",
                  **{k: v for k, v in ent.items() if k.startswith("urbanmim:")}}
        forged["urbanmim:policy"]["json"]["permission"][0]["target"].pop("attributes")
        forged["urbanmim:policy"]["json"]["uid"] = forged["id"]
        r = await c.post("/entities", json=forged)
        assert r.status_code == 403, r.text
        r = await c.patch(f"/entities/{agr['id']}/attrs", json={"urbanmim:status": {"type": "Property",
                                                                                    "value": "active"}})
        assert r.status_code == 403
    async with as_(app, "meteo", {CITY: ["admin"]}) as c:        # not even a tenant admin, through NGSI-LD
        assert (await c.delete(f"/entities/{agr['id']}")).status_code == 403
    async with as_(app, "lab", {}, tenant=CITY) as c:            # a third party does not see it
        assert (await c.get(f"/entities/{agr['id']}")).status_code == 404


async def test_cross_tenant_consumer_sees_exactly_what_its_agreement_allows(app: Any) -> None:
    offer_id = await setup(app)
    lab = {LAB_TENANT: ["admin"]}                                 # no role at all in the culture tenant
    async with as_(app, "lab", lab) as c:
        r = await c.get("/entities", params={"type": "WeatherObserved"})
        assert r.status_code == 200 and r.json() == []           # no agreement: nothing
        assert (await c.get("/entities/urn:ngsi-ld:WeatherObserved:0")).status_code == 404
    async with as_(app, "lab", lab, base="/sharing/v1") as c:
        r = await c.post(f"/offers/{offer_id}/accept")
        assert r.status_code == 201, r.text
        agreement = r.json()["id"]
    async with as_(app, "lab", lab) as c:
        r = await c.get("/entities", params={"type": "WeatherObserved"})
        got = {e["id"]: set(e) - {"id", "type"} for e in r.json()}
        assert got == {f"urn:ngsi-ld:WeatherObserved:{i}": {"temperature", "location"} for i in range(2)}
        r = await c.get("/temporal/entities/urn:ngsi-ld:WeatherObserved:1")
        assert r.status_code == 200 and set(r.json()) - {"id", "type"} == {"temperature", "location"}
        assert (await c.post("/entities", json=station(9))).status_code == 403    # agreements grant no writes
        r = await c.patch("/entities/urn:ngsi-ld:WeatherObserved:0/attrs",
                          json={"temperature": {"type": "Property", "value": 0}})
        assert r.status_code in (403, 404)
    # the consumer withdraws its agreement: nothing again, at the next request
    async with as_(app, "lab", lab, base="/sharing/v1") as c:
        assert (await c.post(f"/agreements/{agreement}/withdraw")).status_code == 200
    async with as_(app, "lab", lab) as c:
        assert (await c.get("/entities", params={"type": "WeatherObserved"})).json() == []


async def test_withdrawing_one_agreement_leaves_the_others(app: Any) -> None:
    offer_id = await setup(app)
    agreements = {}
    for org in ("uni", "lab"):
        async with as_(app, org, base="/sharing/v1") as c:
            agreements[org] = (await c.post(f"/offers/{offer_id}/accept")).json()["id"]
    async with as_(app, "meteo", base="/sharing/v1") as c:      # the provider ends uni's agreement only
        r = await c.post(f"/agreements/{agreements['uni']}/withdraw")
        assert r.status_code == 200 and r.json()["inForce"] is False
    async with as_(app, "uni") as c:
        assert (await c.get("/entities", params={"type": "WeatherObserved"})).json() == []
    async with as_(app, "lab") as c:
        assert len((await c.get("/entities", params={"type": "WeatherObserved"})).json()) == 2
    async with as_(app, "meteo") as c:                           # the provider sees its own data whole
        e = (await c.get("/entities/urn:ngsi-ld:WeatherObserved:0")).json()
        assert {"temperature", "humidity", "stationOwner"} <= set(e)
    async with as_(app, "uni", base="/sharing/v1") as c:          # a party lists only its agreements
        r = await c.get("/agreements")
        assert [a["consumer"] for a in r.json()] == ["uni"]


async def test_count_constraint_end_to_end(app: Any) -> None:
    offer_id = await setup(app, {"@type": "Offer", "target": {"entityType": "WeatherObserved"},
                                 "permission": [{"action": "read", "duty": [{"action": "inform"}], "constraint": [
                                     {"leftOperand": "count", "operator": "lteq", "rightOperand": 3}]}]}, n=1)
    async with as_(app, "uni", base="/sharing/v1") as c:
        agreement = (await c.post(f"/offers/{offer_id}/accept")).json()["id"]
    async with as_(app, "uni") as c:
        codes = [(await c.get("/entities/urn:ngsi-ld:WeatherObserved:0")).status_code for _ in range(5)]
    assert codes == [200, 200, 200, 404, 404]
    await asyncio.sleep(0.4)                                     # the counts are stored in the agreement
    async with as_(app, "meteo", base="/sharing/v1") as c:       # the provider is informed of the use
        r = await c.get(f"/agreements/{agreement}")
        assert r.json()["reads"] == 3 and r.json()["lastReadAt"]
    ent = await app.state.store.get(CITY, agreement)
    assert ent["attrs"]["urbanmim:readCount"][0]["value"] == 3


async def test_spatial_constraint_end_to_end(app: Any) -> None:
    area = {"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]]}
    offer_id = await setup(app, {"@type": "Offer", "target": {"entityType": "WeatherObserved"},
                                 "permission": [{"action": "read", "constraint": [
                                     {"leftOperand": "spatial", "operator": "isPartOf", "rightOperand": area}]}]},
                           n=0)
    async with as_(app, "meteo") as c:
        for i, lon in ((0, 5.0), (1, 20.0)):
            assert (await c.post("/entities", json=station(i, lon))).status_code == 201
    async with as_(app, "uni", base="/sharing/v1") as c:
        assert (await c.post(f"/offers/{offer_id}/accept")).status_code == 201
    async with as_(app, "uni") as c:
        r = await c.get("/entities", params={"type": "WeatherObserved"})
        assert [e["id"] for e in r.json()] == ["urn:ngsi-ld:WeatherObserved:0"]


async def test_purpose_and_explain(app: Any) -> None:
    offer_id = await setup(app, {"@type": "Offer", "target": {"entityType": "WeatherObserved"},
                                 "permission": [{"action": "read", "constraint": [
                                     {"leftOperand": "purpose", "operator": "isA",
                                      "rightOperand": "dpv:ResearchAndDevelopment"}]}],
                                 "prohibition": [{"action": "read", "target": {"entityType": "WeatherObserved",
                                                                              "attributes": ["stationOwner"]}}]})
    async with as_(app, "uni", base="/sharing/v1") as c:
        agreement = (await c.post(f"/offers/{offer_id}/accept")).json()["id"]
    async with as_(app, "uni") as c:
        assert (await c.get("/entities", params={"type": "WeatherObserved"})).json() == []   # no purpose stated
        r = await c.get("/entities", params={"type": "WeatherObserved"},
                        headers={"Urbanmim-Purpose": "dpv:AcademicResearch"})
        assert len(r.json()) == 2 and all("stationOwner" not in e and "humidity" in e for e in r.json())
    registry = app.state.sharing
    reads = registry.reads(registry.tenant(CITY).agreements[agreement])
    assert reads == 2
    async with as_(app, "uni", base="/sharing/v1", purpose="dpv:AcademicResearch") as c:
        r = await c.post("/explain", json={"entity": "urn:ngsi-ld:WeatherObserved:0", "attribute": "stationOwner"})
        out = r.json()
        assert r.status_code == 200 and out["visible"] is True and out["agreements"] == [agreement]
        assert out["attribute"] == {"name": "stationOwner", "present": True, "visible": False}
        assert out["sharing"]["prohibitedBy"][0]["attributes"] == ["stationOwner"]
        assert "stationOwner" not in out["visibleAttributes"] and "humidity" in out["visibleAttributes"]
        # explaining someone else's access is for admins
        r = await c.post("/explain", json={"entity": "urn:ngsi-ld:WeatherObserved:0",
                                           "principal": {"subject": "x", "organisation": "lab"}})
        assert r.status_code == 403
    async with admin(app) as c:
        r = await c.post("/explain", json={"entity": "urn:ngsi-ld:WeatherObserved:0", "purpose": "dpv:Marketing",
                                           "principal": {"subject": "x", "organisation": "uni"}})
        out = r.json()
        assert out["visible"] is False
        assert "purpose isA dpv:ResearchAndDevelopment is false (dpv:Marketing)" in out["sharing"]["reason"]
    # explanations do not count as reads (ours, and MIM6's access.explain)
    from urbanmim.security.principal import Principal
    ent = await app.state.store.get(CITY, "urn:ngsi-ld:WeatherObserved:0")
    uni = Principal("u", {}, organisation="uni", purpose="dpv:AcademicResearch")
    assert any(d.effect == "permit" for d in app.state.access.explain(uni, CITY, ent))
    assert registry.reads(registry.tenant(CITY).agreements[agreement]) == reads
