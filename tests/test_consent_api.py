"""MIM4 over HTTP, on both backends: marking, consents, export and erasure (state + history), errors.

These run with security off (the ``client`` fixture): the consent API is then open like the
rest of the broker. Enforcement with tokens is in ``test_consent_enforcement.py``.
"""

from __future__ import annotations

import io
import zipfile
from typing import Any

import httpx
import orjson
import pytest

from tests.helpers import DEFAULT, assert_problem, prop, rel
from urbanmim.consent.model import pseudonym
from urbanmim.store.base import EntityQuery, TemporalSpan

C = "http://testserver/consent/v1"   # beside /ngsi-ld/v1 (the client's base URL)
ALICE = "urn:ngsi-ld:Person:alice"
BOB = "urn:ngsi-ld:Person:bob"
CAR = "urn:ngsi-ld:Vehicle:car1"
T = {"NGSILD-Tenant": "portamar"}


async def mark(client: httpx.AsyncClient, typ: str = "Vehicle", attrs: list[str] | None = None,
               subject: str = "refDataSubject") -> httpx.Response:
    return await client.put(f"{C}/personal-data/{typ}", headers=T,
                            json={"attributes": attrs or ["driverName", "phone"], "subject": subject})


def car(owner: str = ALICE, **extra: Any) -> dict[str, Any]:
    return {"id": CAR, "type": "Vehicle", "refDataSubject": rel(owner), "driverName": prop("Alice A."),
            "phone": prop("+31 600000001"), "speed": prop(50), **extra}


async def test_marking_put_get_list_delete(client: httpx.AsyncClient) -> None:
    r = await mark(client)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["type"] == "Vehicle" and body["attributes"] == ["driverName", "phone"]
    assert body["subject"] == "refDataSubject" and body["subjectIri"] == DEFAULT + "refDataSubject"
    assert (await mark(client, attrs=["driverName"])).status_code == 200      # replaced
    got = (await client.get(f"{C}/personal-data/Vehicle", headers=T)).json()
    assert got["attributes"] == ["driverName"]
    assert [x["type"] for x in (await client.get(f"{C}/personal-data", headers=T)).json()] == ["Vehicle"]
    assert (await client.get(f"{C}/personal-data")).json() == []              # another tenant
    r = await client.put(f"{C}/personal-data/Person", headers=T, json={"attributes": ["email"], "subject": "@self"})
    assert r.status_code == 201 and r.json()["subject"] == "@self"
    assert (await client.delete(f"{C}/personal-data/Vehicle", headers=T)).status_code == 204
    assert_problem(await client.delete(f"{C}/personal-data/Vehicle", headers=T), 404, "ResourceNotFound")
    assert_problem(await client.get(f"{C}/personal-data/Vehicle", headers=T), 404, "ResourceNotFound")
    # the rule is a reserved entity in the tenant, readable through NGSI-LD (security off)
    r = await client.get("/entities", params={"type": "urbanmim:PersonalDataRule"}, headers=T)
    assert [e["urbanmim:targetType"]["value"] for e in r.json()] == [DEFAULT + "Person"]


async def test_marking_errors(client: httpx.AsyncClient) -> None:
    assert_problem(await client.put(f"{C}/personal-data/Vehicle", headers=T, json={"attributes": []}), 400)
    assert_problem(await client.put(f"{C}/personal-data/Vehicle", headers=T, json={"attributes": "name"}), 400)
    assert_problem(await client.put(f"{C}/personal-data/Vehicle", headers=T,
                                    json={"attributes": ["a b"]}), 400, "BadRequestData")
    assert_problem(await client.put(f"{C}/personal-data/Vehicle", headers=T,
                                    json={"attributes": ["name"], "subject": 3}), 400)
    assert_problem(await client.put(f"{C}/personal-data/Vehicle", content=b"[1]",
                                    headers={**T, "Content-Type": "application/json"}), 400)
    # a malformed rule entity written through NGSI-LD is refused by the validator
    r = await client.post("/entities", headers=T, json={"id": "urn:ngsi-ld:PersonalDataRule:x",
                                                        "type": "urbanmim:PersonalDataRule",
                                                        "urbanmim:targetType": prop("x")})
    assert_problem(r, 400, "BadRequestData")


async def test_consent_give_list_revoke(client: httpx.AsyncClient) -> None:
    r = await client.post(f"{C}/consents", headers=T, json={"subject": ALICE, "recipient": "org:parking",
                                                            "purpose": "https://w3id.org/dpv#ServiceProvision"})
    assert r.status_code == 201, r.text
    c1 = r.json()
    assert c1["purpose"] == "dpv:ServiceProvision" and c1["status"] == "active"
    assert r.headers["location"] == f"/consent/v1/consents/{c1['id']}"
    r = await client.post(f"{C}/consents", headers=T, json={"subject": ALICE, "recipient": "any",
                                                            "purpose": "dpv:AcademicResearch",
                                                            "expiresAt": "2999-01-01T00:00:00Z"})
    c2 = r.json()
    assert c2["expiresAt"] == "2999-01-01T00:00:00Z"
    await client.post(f"{C}/consents", headers=T, json={"subject": BOB, "recipient": "org:parking",
                                                        "purpose": "dpv:Marketing"})
    ids = [c["id"] for c in (await client.get(f"{C}/consents", params={"subject": ALICE}, headers=T)).json()]
    assert ids == [c1["id"], c2["id"]]
    got = (await client.get(f"{C}/consents", params={"recipient": "org:parking"}, headers=T)).json()
    assert {c["subject"] for c in got} == {ALICE, BOB}      # "any" counts for every recipient
    assert len(got) == 3
    # purpose filter: the consents that cover it (DPV hierarchy)
    got = (await client.get(f"{C}/consents", params={"purpose": "dpv:ServiceOptimisation"}, headers=T)).json()
    assert [c["id"] for c in got] == [c1["id"]]
    assert (await client.get(f"{C}/consents/{c1['id']}", headers=T)).json()["subject"] == ALICE
    assert (await client.delete(f"{C}/consents/{c1['id']}", headers=T)).status_code == 204
    again = (await client.get(f"{C}/consents/{c1['id']}", headers=T)).json()
    assert again["status"] == "revoked" and "revokedAt" in again
    act = (await client.get(f"{C}/consents", params={"subject": ALICE, "status": "active"}, headers=T)).json()
    assert [c["id"] for c in act] == [c2["id"]]
    assert (await client.delete(f"{C}/consents/{c1['id']}", headers=T)).status_code == 204   # idempotent


async def test_consent_errors(client: httpx.AsyncClient) -> None:
    ok = {"subject": ALICE, "recipient": "org:x", "purpose": "dpv:Marketing"}
    for bad in ({**ok, "purpose": "dpv:Sunbathing"}, {**ok, "purpose": "dpv:Purpose"}, {**ok, "purpose": 3},
                {**ok, "expiresAt": "2001-01-01T00:00:00Z"}, {**ok, "expiresAt": "tomorrow"},
                {**ok, "recipient": ""}, {k: v for k, v in ok.items() if k != "purpose"},
                {**ok, "extra": 1}, {**ok, "subject": ""}):
        assert_problem(await client.post(f"{C}/consents", headers=T, json=bad), 400, "BadRequestData")
    assert_problem(await client.post(f"{C}/consents", content=b"{",
                                     headers={**T, "Content-Type": "application/json"}), 400)
    assert_problem(await client.get(f"{C}/consents", params={"status": "maybe"}, headers=T), 400)
    assert_problem(await client.get(f"{C}/consents", params={"purpose": "nope"}, headers=T), 400)
    assert_problem(await client.get(f"{C}/consents", params={"colour": "red"}, headers=T), 400)
    assert_problem(await client.get(f"{C}/consents/urn:ngsi-ld:Consent:nope", headers=T), 404, "ResourceNotFound")
    assert_problem(await client.delete(f"{C}/consents/urn:ngsi-ld:Consent:nope", headers=T), 404)
    assert_problem(await client.get(f"{C}/subjects/{ALICE}/export", params={"format": "xml"}, headers=T), 400)
    # a consent entity forged through NGSI-LD must still be well-formed
    r = await client.post("/entities", headers=T, json={"id": "urn:ngsi-ld:Consent:forged", "type": "urbanmim:Consent",
                                                        "urbanmim:purpose": prop("dpv:Nothing")})
    assert_problem(r, 400, "BadRequestData")


async def test_purposes_catalogue(client: httpx.AsyncClient) -> None:
    got = {p["id"]: p for p in (await client.get(f"{C}/purposes")).json()}
    assert got["dpv:ServicePersonalisation"]["broader"] == ["dpv:ServiceProvision", "dpv:Personalisation"]
    assert got["dpv:AcademicResearch"]["iri"] == "https://w3id.org/dpv#AcademicResearch"
    assert {"dpv:PublicBenefit", "dpv:Marketing", "dpv:ResearchAndDevelopment"} <= set(got)


async def _history(client: httpx.AsyncClient, eid: str) -> dict[str, Any]:
    r = await client.get(f"/temporal/entities/{eid}", headers=T)
    return r.json() if r.status_code == 200 else {}


async def test_export_is_complete(client: httpx.AsyncClient) -> None:
    await mark(client)
    await client.put(f"{C}/personal-data/Person", headers=T, json={"attributes": ["email"], "subject": "@self"})
    assert (await client.post("/entities", headers=T, json=car())).status_code == 201
    await client.patch(f"/entities/{CAR}/attrs", headers=T, json={"phone": prop("+31 600000002")})
    await client.post("/entities", headers=T, json={"id": ALICE, "type": "Person", "email": prop("a@example.org")})
    await client.post("/entities", headers=T, json={"id": BOB, "type": "Person", "email": prop("b@example.org")})
    await client.post("/entities", headers=T, json={"id": "urn:ngsi-ld:Vehicle:car2", "type": "Vehicle",
                                                    "refDataSubject": rel(BOB), "phone": prop("+31 6 bob")})
    await client.post(f"{C}/consents", headers=T, json={"subject": ALICE, "recipient": "any",
                                                        "purpose": "dpv:PublicBenefit"})
    doc = (await client.get(f"{C}/subjects/{ALICE}/export", headers=T)).json()
    assert doc["subject"] == ALICE and doc["tenant"] == "portamar"
    ents = {e["id"]: e for e in doc["entities"]}
    assert set(ents) == {CAR, ALICE}
    assert ents[CAR]["current"]["phone"]["value"] == "+31 600000002"
    assert ents[CAR]["current"]["refDataSubject"]["object"] == ALICE
    assert "speed" not in ents[CAR]["current"]                         # not personal: not exported
    phones = [i["value"] for i in ents[CAR]["history"]["phone"]]
    assert phones == ["+31 600000001", "+31 600000002"]
    assert ents[ALICE]["theEntityIsTheSubject"] and ents[ALICE]["current"]["email"]["value"] == "a@example.org"
    assert [c["purpose"] for c in doc["consents"]] == ["dpv:PublicBenefit"]
    assert "b@example.org" not in orjson.dumps(doc).decode() and "bob" not in orjson.dumps(doc).decode()
    # JSON Lines and ZIP carry the same records
    r = await client.get(f"{C}/subjects/{ALICE}/export", params={"format": "jsonl"}, headers=T)
    lines = [orjson.loads(x) for x in r.content.splitlines()]
    kinds = [x["record"] for x in lines]
    assert kinds[0] == "subject" and kinds.count("entity") == 2 and kinds.count("consent") == 1
    assert kinds.count("instance") == sum(len(v) for e in doc["entities"] for v in e["history"].values())
    r = await client.get(f"{C}/subjects/{ALICE}/export", params={"format": "zip"}, headers=T)
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        assert sorted(z.namelist()) == ["export.json", "export.jsonl"]
        assert orjson.loads(z.read("export.json"))["entities"] == doc["entities"]


async def test_export_of_a_subject_with_nothing(client: httpx.AsyncClient) -> None:
    doc = (await client.get(f"{C}/subjects/urn:ngsi-ld:Person:nobody/export", headers=T)).json()
    assert doc["entities"] == [] and doc["consents"] == [] and doc["erasures"] == []


async def test_erasure_in_state_and_history(client: httpx.AsyncClient, app: Any) -> None:
    await mark(client)
    await client.put(f"{C}/personal-data/Person", headers=T, json={"attributes": ["email"], "subject": "@self"})
    await client.post("/entities", headers=T, json=car())
    await client.patch(f"/entities/{CAR}/attrs", headers=T, json={"phone": prop("+31 600000002")})
    await client.post("/entities", headers=T, json={"id": ALICE, "type": "Person", "email": prop("a@example.org")})
    await client.post("/entities", headers=T, json={"id": "urn:ngsi-ld:Vehicle:car2", "type": "Vehicle",
                                                    "refDataSubject": rel(BOB), "phone": prop("+31 6 bob")})
    c = (await client.post(f"{C}/consents", headers=T, json={"subject": ALICE, "recipient": "any",
                                                             "purpose": "dpv:PublicBenefit"})).json()
    r = await client.post(f"{C}/subjects/{ALICE}/erasure", headers=T)
    assert r.status_code == 200, r.text
    receipt = r.json()
    items = {i["id"]: i for i in receipt["entities"]}
    assert set(items) == {CAR, ALICE}
    assert items[ALICE]["entityDeleted"] and not items[CAR]["entityDeleted"]
    assert sorted(items[CAR]["attributes"]) == ["driverName", "phone", "refDataSubject"]
    assert items[CAR]["historyInstancesDeleted"] >= 5
    assert receipt["consentsRevoked"] == [c["id"]]
    secrets = ("Alice A.", "+31 600000001", "+31 600000002", "a@example.org")

    # current state through the API: the car keeps its non-personal data, the person is gone
    now = (await client.get(f"/entities/{CAR}", headers=T)).json()
    assert set(now) == {"id", "type", "speed"}
    assert_problem(await client.get(f"/entities/{ALICE}", headers=T), 404)
    q = await client.get("/entities", params={"type": "Vehicle,Person"}, headers=T)
    assert not any(s in q.text for s in secrets)
    assert "+31 6 bob" in q.text                                    # Bob's data is untouched
    # history through the temporal API
    h = await _history(client, CAR)
    assert set(h) - {"id", "type"} == {"speed"}
    assert await _history(client, ALICE) == {}
    text = (await client.get("/temporal/entities", headers=T, params={"type": "Vehicle"})).text
    assert not any(s in text for s in secrets)
    # ... and in the store itself, whatever the backend
    store = app.state.store
    for eid in (CAR, ALICE):
        for attr in ("driverName", "phone", "refDataSubject", "email"):
            rows = await store.temporal_instances("portamar", eid, DEFAULT + attr, TemporalSpan(),
                                                  newest_first=False, limit=1000)
            assert rows == [], (eid, attr, rows)
    everything = (await store.query(EntityQuery(tenant="portamar", limit=1000))).entities
    assert not any(s in orjson.dumps(everything).decode() for s in secrets)
    # the record of the erasure keeps no values and no clear ids
    rec = (await client.get(f"{C}/erasures/{receipt['id']}", headers=T)).json()
    assert rec["subjectHash"] == pseudonym("portamar", ALICE)
    text = orjson.dumps(rec).decode()
    assert ALICE not in text and CAR not in text and not any(s in text for s in secrets)
    assert [e["id"] for e in (await client.get(f"{C}/erasures", headers=T)).json()] == [receipt["id"]]
    # the consent stays on record, revoked; the export shows the erasure
    assert (await client.get(f"{C}/consents/{c['id']}", headers=T)).json()["status"] == "revoked"
    doc = (await client.get(f"{C}/subjects/{ALICE}/export", headers=T)).json()
    assert doc["entities"] == [] and [e["id"] for e in doc["erasures"]] == [receipt["id"]]
    assert_problem(await client.get(f"{C}/erasures/urn:ngsi-ld:ErasureRecord:nope", headers=T), 404)


async def test_erasure_keeps_the_next_owners_history(client: httpx.AsyncClient, app: Any) -> None:
    """A car sold by Alice to Bob: Alice's period is erased, Bob's stays."""
    await mark(client, attrs=["phone", "tripKm"])
    ts = "2024-01-01T10:00:00Z"
    await client.post("/entities", headers=T, json={
        "id": CAR, "type": "Vehicle", "refDataSubject": rel(ALICE, observedAt=ts),
        "phone": prop("alice-phone", observedAt=ts), "tripKm": prop(100, observedAt=ts)})
    later = "2024-02-01T10:00:00Z"
    await client.patch(f"/entities/{CAR}/attrs", headers=T, json={"refDataSubject": rel(BOB, observedAt=later),
                                                                  "phone": prop("bob-phone", observedAt=later),
                                                                  "tripKm": prop(7, observedAt=later)})
    aggr = {"aggrMethods": "sum", "aggrPeriodDuration": "P1Y", "options": "aggregatedValues", "attrs": "tripKm",
            "timerel": "between", "timeAt": "2024-01-01T00:00:00Z", "endTimeAt": "2025-01-01T00:00:00Z"}
    total = (await client.get(f"/temporal/entities/{CAR}", params=aggr, headers=T)).json()["tripKm"]["sum"]
    assert [v[0] for v in total] == [107]
    doc = (await client.get(f"{C}/subjects/{ALICE}/export", headers=T)).json()
    (item,) = doc["entities"]
    assert "current" not in item                                    # the car is Bob's now
    assert [i["value"] for i in item["history"]["phone"]] == ["alice-phone"]
    assert item["periods"] == [{"from": "2024-01-01T10:00:00Z", "until": "2024-02-01T10:00:00Z"}]
    receipt = (await client.post(f"{C}/subjects/{ALICE}/erasure", headers=T)).json()
    assert receipt["entities"][0]["historyInstancesDeleted"] == 3    # Alice's phone, trip and link instances
    total = (await client.get(f"/temporal/entities/{CAR}", params=aggr, headers=T)).json()["tripKm"]["sum"]
    assert [v[0] for v in total] == [7]                              # the hourly buckets were recomputed
    h = (await client.get(f"/temporal/entities/{CAR}", headers=T)).json()
    assert [i["value"] for i in h["phone"]] == ["bob-phone"]
    assert [i["object"] for i in h["refDataSubject"]] == [BOB]
    assert (await client.get(f"/entities/{CAR}", headers=T)).json()["phone"]["value"] == "bob-phone"


@pytest.mark.parametrize("path", [f"{C}/subjects/{ALICE}/erasure"])
async def test_erasure_of_unknown_subject_is_an_empty_receipt(client: httpx.AsyncClient, path: str) -> None:
    r = await client.post(path, headers=T)
    assert r.status_code == 200 and r.json()["entities"] == [] and r.json()["consentsRevoked"] == []


async def test_registered_in_the_algorithm_register(client: httpx.AsyncClient) -> None:
    r = await client.get("http://testserver/algorithms/v1/algorithms/mim4.consent-decision")
    assert r.status_code == 200
    body = r.json()
    assert body["kind"] == "security" and body["component"] == "consent" and body["risks"]


@pytest.mark.postgres
async def test_two_processes_on_one_postgres_database(pg_db: str) -> None:
    """A consent given or revoked through one process is in force in the other after the sync interval."""
    import asyncio

    from urbanmim.app import create_app
    from urbanmim.settings import Settings

    apps = [create_app(Settings(db=pg_db, consent_sync_interval=0.2)) for _ in range(2)]
    async with apps[0].router.lifespan_context(apps[0]), apps[1].router.lifespan_context(apps[1]):
        a, b = (httpx.AsyncClient(transport=httpx.ASGITransport(app=x),  # type: ignore[arg-type]
                                  base_url="http://testserver") for x in apps)
        async with a, b:
            r = await a.post("/consent/v1/consents", headers=T, json={"subject": ALICE, "recipient": "any",
                                                                     "purpose": "dpv:PublicBenefit"})
            cid = r.json()["id"]

            async def status_in_b() -> int:
                return (await b.get(f"/consent/v1/consents/{cid}", headers=T)).status_code

            for _ in range(50):
                if await status_in_b() == 200:
                    break
                await asyncio.sleep(0.1)
            assert await status_in_b() == 200
            assert (await a.delete(f"/consent/v1/consents/{cid}", headers=T)).status_code == 204
            for _ in range(50):
                if (await b.get(f"/consent/v1/consents/{cid}", headers=T)).json()["status"] == "revoked":
                    break
                await asyncio.sleep(0.1)
            assert (await b.get(f"/consent/v1/consents/{cid}", headers=T)).json()["status"] == "revoked"
