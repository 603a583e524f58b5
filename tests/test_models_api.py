"""MIM2 validation through the API: strict, warn, off, tenants, custom schemas, dry run, persistence."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import assert_problem, link, prop, rel
from tests.test_models_support import (
    SDM,
    models_app,
    models_client,
    needs_sdm,
    no_network,
    preload_contexts,
    sdm_context_urls,
)

FIXTURES = (models_app, models_client, no_network)   # imported for pytest, used by name
pytestmark = needs_sdm
ENV_CTX = sdm_context_urls("Environment")[0]
NGSI = "/ngsi-ld/v1"


def aqo(n: int = 1, **attrs: Any) -> dict[str, Any]:
    """A conforming AirQualityObserved (normalized), attributes overridable (None drops one)."""
    ent: dict[str, Any] = {"id": f"urn:ngsi-ld:AirQualityObserved:{n}", "type": "AirQualityObserved",
                           "dateObserved": prop("2024-05-01T10:00:00Z"),
                           "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [2.1, 41.4]}},
                           "no2": prop(22.5, unitCode="GQ"), "refDevice": rel("urn:ngsi-ld:Device:1")}
    for k, v in attrs.items():
        if v is None:
            ent.pop(k, None)
        else:
            ent[k] = v
    return ent


async def set_policy(c: httpx.AsyncClient, mode: str, source: str = "sdm:AirQualityObserved",
                     typ: str = "AirQualityObserved", tenant: str | None = None, ctx: str = ENV_CTX) -> httpx.Response:
    headers = dict(link(ctx))
    if tenant:
        headers["NGSILD-Tenant"] = tenant
    r = await c.put(f"/models/v1/policies/{typ}", json={"mode": mode, "source": source}, headers=headers)
    assert r.status_code in (200, 201), r.text
    return r


async def create(c: httpx.AsyncClient, ent: dict[str, Any], tenant: str | None = None) -> httpx.Response:
    headers = dict(link(ENV_CTX))
    if tenant:
        headers["NGSILD-Tenant"] = tenant
    return await c.post(f"{NGSI}/entities", json=ent, headers=headers)


async def test_strict_rejects_missing_required_attribute(models_client: httpx.AsyncClient) -> None:
    r = await set_policy(models_client, "strict")
    assert r.json()["source"] == "sdm:Environment/AirQualityObserved" and r.json()["level"] == "full"
    r = await create(models_client, aqo(dateObserved=None))
    body = assert_problem(r, 400, "BadRequestData")
    assert "dateObserved" in body["detail"] and "required" in body["detail"]
    assert body["validation"][0]["issues"][0] == {"attribute": "dateObserved", "rule": "required",
                                                 "message": "attribute 'dateObserved' is required"}
    assert (await models_client.get(f"{NGSI}/entities/urn:ngsi-ld:AirQualityObserved:1")).status_code == 404
    assert (await create(models_client, aqo())).status_code == 201


async def test_strict_rejects_value_type_and_ngsi_type(models_client: httpx.AsyncClient) -> None:
    await set_policy(models_client, "strict")
    r = await create(models_client, aqo(no2=prop("high")))
    body = assert_problem(r, 400, "BadRequestData")
    assert "no2" in body["detail"] and "[type]" in body["detail"]
    r = await create(models_client, aqo(refDevice=prop("urn:ngsi-ld:Device:1")))
    body = assert_problem(r, 400, "BadRequestData")
    assert "refDevice" in body["detail"] and "ngsiType" in body["detail"] and "Relationship" in body["detail"]
    r = await create(models_client, aqo(typeofLocation=prop("underground"), airQualityLevel=prop("x")))
    detail = assert_problem(r, 400)["detail"]
    assert "typeofLocation [enum]" in detail and "airQualityLevel [minLength]" in detail
    # a reference: the Environment-schema.json $ref resolved offline


async def test_strict_checks_the_merged_entity_on_every_write(models_client: httpx.AsyncClient) -> None:
    await set_policy(models_client, "strict")
    assert (await create(models_client, aqo())).status_code == 201
    eid = f"{NGSI}/entities/urn:ngsi-ld:AirQualityObserved:1"
    merge = {**link(ENV_CTX), "Content-Type": "application/merge-patch+json"}
    r = await models_client.patch(eid, json={"no2": prop(-3)}, headers=merge)
    assert "no2" in assert_problem(r, 400)["detail"] and "minimum" in r.json()["detail"]
    r = await models_client.delete(f"{eid}/attrs/dateObserved", headers=link(ENV_CTX))
    assert "dateObserved" in assert_problem(r, 400)["detail"]
    r = await models_client.post(f"{eid}/attrs", json={"reliability": prop(0.9)}, headers=link(ENV_CTX))
    assert r.status_code == 204, r.text
    got = (await models_client.get(eid, headers=link(ENV_CTX), params={"options": "keyValues"})).json()
    assert got["no2"] == 22.5 and "dateObserved" in got and got["reliability"] == 0.9


async def test_batch_reports_the_nonconforming_entity_alone(models_client: httpx.AsyncClient) -> None:
    await set_policy(models_client, "strict")
    r = await models_client.post(f"{NGSI}/entityOperations/create", json=[aqo(1), aqo(2, location=None)],
                                 headers=link(ENV_CTX))
    assert r.status_code == 207, r.text
    assert r.json()["success"] == ["urn:ngsi-ld:AirQualityObserved:1"]
    err = r.json()["errors"][0]
    assert err["entityId"] == "urn:ngsi-ld:AirQualityObserved:2" and "location" in err["error"]["detail"]


async def test_warn_accepts_and_reports(models_client: httpx.AsyncClient) -> None:
    await set_policy(models_client, "warn")
    r = await create(models_client, aqo(dateObserved=None, refDevice=prop("urn:ngsi-ld:Device:1")))
    assert r.status_code == 201, r.text
    header = r.headers["Urbanmim-Validation"]
    assert header.startswith("warn; 2 issue(s)") and "dateObserved (required)" in header
    assert "refDevice (ngsiType)" in header
    assert (await create(models_client, aqo(2))).status_code == 201
    assert "Urbanmim-Validation" not in (await create(models_client, aqo(3))).headers
    log = (await models_client.get("/models/v1/reports")).json()
    assert len(log) == 1 and log[0]["entityId"] == "urn:ngsi-ld:AirQualityObserved:1" and log[0]["mode"] == "warn"
    assert {i["attribute"] for i in log[0]["issues"]} == {"dateObserved", "refDevice"}


async def test_off_is_off_and_delete_removes_the_policy(models_client: httpx.AsyncClient) -> None:
    await set_policy(models_client, "off")
    r = await create(models_client, aqo(1, dateObserved=None))
    assert r.status_code == 201 and "Urbanmim-Validation" not in r.headers
    assert (await models_client.get("/models/v1/reports")).json() == []
    await set_policy(models_client, "strict")
    assert (await create(models_client, aqo(2, dateObserved=None))).status_code == 400
    r = await models_client.delete("/models/v1/policies/AirQualityObserved", headers=link(ENV_CTX))
    assert r.status_code == 204
    assert (await create(models_client, aqo(3, dateObserved=None))).status_code == 201
    assert (await models_client.get("/models/v1/policies")).json() == []


async def test_policies_are_per_tenant(models_client: httpx.AsyncClient) -> None:
    await set_policy(models_client, "strict", tenant="barcelona")
    assert (await create(models_client, aqo(dateObserved=None), tenant="barcelona")).status_code == 400
    assert (await create(models_client, aqo(dateObserved=None), tenant="valencia")).status_code == 201
    assert (await create(models_client, aqo(dateObserved=None))).status_code == 201
    listed = (await models_client.get("/models/v1/policies", headers={"NGSILD-Tenant": "barcelona"})).json()
    assert [p["typeName"] for p in listed] == ["AirQualityObserved"]
    assert (await models_client.get("/models/v1/policies", headers={"NGSILD-Tenant": "valencia"})).json() == []


COMMON = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "https://city.example/schemas/common.json",
          "$defs": {"condition": {"type": "string", "enum": ["good", "worn", "broken"]},
                    "seats": {"type": "integer", "minimum": 1, "maximum": 12}}}
BENCH = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "https://city.example/schemas/bench.json",
         "type": "object", "required": ["id", "type", "condition", "location"],
         "properties": {"type": {"const": "Bench"},
                        "condition": {"$ref": "common.json#/$defs/condition"},
                        "seats": {"$ref": "urn:urbanmim:schema:common#/$defs/seats"},
                        "material": {"$ref": "#/$defs/material"},
                        "location": {"$ref": "https://smart-data-models.github.io/data-models/common-schema.json"
                                             "#/definitions/Location-Commons/properties/location"},
                        "refPark": {"type": "string", "description": "Relationship. The park"}},
         "$defs": {"material": {"enum": ["wood", "steel", "stone"]}}}


def bench(n: int = 1, **attrs: Any) -> dict[str, Any]:
    ent: dict[str, Any] = {"id": f"urn:ngsi-ld:Bench:{n}", "type": "Bench", "condition": prop("good"),
                           "seats": prop(3), "material": prop("wood"), "refPark": rel("urn:ngsi-ld:Park:1"),
                           "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [2.1, 41.4]}}}
    ent.update(attrs)
    return ent


async def test_custom_schema_with_local_refs(models_client: httpx.AsyncClient) -> None:
    c = models_client
    r = await c.put("/models/v1/schemas/bench", json=BENCH)
    assert "common.json" in assert_problem(r, 400)["detail"]          # common is not registered yet
    assert (await c.put("/models/v1/schemas/common", json=COMMON)).status_code == 201
    assert (await c.put("/models/v1/schemas/bench", json=BENCH)).status_code == 201
    assert (await c.put("/models/v1/schemas/bench", json=BENCH)).status_code == 200
    assert [s["id"] for s in (await c.get("/models/v1/schemas")).json()] == ["bench", "common"]
    r = await c.put("/models/v1/policies/Bench", json={"mode": "strict", "source": "schema:bench"})
    assert r.status_code == 201 and r.json()["level"] == "custom" and r.json()["typeName"] == "Bench"
    assert (await c.post(f"{NGSI}/entities", json=bench(1))).status_code == 201
    for attr, bad in (("condition", prop("melted")), ("seats", prop(40)), ("material", prop("glass")),
                      ("refPark", prop("urn:ngsi-ld:Park:1"))):
        body = assert_problem(await c.post(f"{NGSI}/entities", json=bench(2, **{attr: bad})), 400)
        assert f"{attr} [" in body["detail"], body
    assert_problem(await c.delete("/models/v1/schemas/bench"), 409, "Conflict")     # a policy uses it
    # deleting a schema another one $refs is allowed; strict then fails closed, naming the cause
    assert (await c.delete("/models/v1/schemas/common")).status_code == 204
    body = assert_problem(await c.post(f"{NGSI}/entities", json=bench(3)), 400)
    assert "[source]" in body["detail"] and "common.json" in body["detail"]


async def test_bad_schemas_and_policies_are_refused(models_client: httpx.AsyncClient) -> None:
    c = models_client
    assert_problem(await c.put("/models/v1/schemas/x", json={"type": 12}), 400)
    assert_problem(await c.put("/models/v1/schemas/x", json={"$schema": "http://json-schema.org/draft-07/schema#"}),
                   400)
    assert_problem(await c.put("/models/v1/schemas/x", json={"$ref": "https://example.org/remote.json"}), 400)
    assert_problem(await c.put("/models/v1/policies/Bench", json={"mode": "strict", "source": "schema:nope"}), 400)
    assert_problem(await c.put("/models/v1/policies/Bench", json={"mode": "loud", "source": "sdm:Streetlight"}), 400)
    assert "ambiguous" in assert_problem(
        await c.put("/models/v1/policies/Vehicle", json={"mode": "warn", "source": "sdm:Vehicle"}), 400)["detail"]
    # a policy written through the NGSI-LD API is checked the same way
    r = await c.post(f"{NGSI}/entities", json={"id": "urn:ngsi-ld:ValidationPolicy:x",
                                               "type": "urbanmim:ValidationPolicy", "urbanmim:mode": prop("loud")})
    assert_problem(r, 400, "BadRequestData")


async def test_dry_run_validate(models_client: httpx.AsyncClient) -> None:
    c = models_client
    r = await c.post("/models/v1/validate", json=aqo(dateObserved=None), headers=link(ENV_CTX))
    assert r.json() == {"valid": True, "checked": 0, "results": []}       # no policy: nothing to check
    r = await c.post("/models/v1/validate", params={"source": "sdm:Environment/AirQualityObserved"},
                     json=aqo(dateObserved=None), headers=link(ENV_CTX))
    res = r.json()
    assert r.status_code == 200 and res["valid"] is False
    assert res["results"][0]["issues"][0]["attribute"] == "dateObserved"
    assert res["results"][0]["keyValues"]["no2"] == 22.5
    assert res["results"][0]["keyValues"]["refDevice"] == "urn:ngsi-ld:Device:1"
    await set_policy(c, "warn")
    r = await c.post("/models/v1/validate", json=aqo(), headers=link(ENV_CTX))
    assert r.json()["valid"] is True and r.json()["checked"] == 1
    assert (await c.get(f"{NGSI}/entities/urn:ngsi-ld:AirQualityObserved:1")).status_code == 404


async def test_default_context_writer_is_validated_by_short_names(models_client: httpx.AsyncClient) -> None:
    """The policy was set with the SDM @context; a writer without it still hits the model's attributes."""
    await set_policy(models_client, "strict", ctx=ENV_CTX,
                     typ="https://smartdatamodels.org/dataModel.Environment/AirQualityObserved")
    ent = aqo(no2=prop("high"))
    ent["type"] = "https://smartdatamodels.org/dataModel.Environment/AirQualityObserved"
    r = await models_client.post(f"{NGSI}/entities", json=ent)
    assert "no2" in assert_problem(r, 400)["detail"]


async def test_policies_persist_as_entities(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            no_network: None) -> None:
    from urbanmim.app import create_app
    from urbanmim.settings import Settings
    monkeypatch.setenv("URBANMIM_SDM_SCHEMAS", str(SDM))
    db = str(tmp_path / "persist.db")
    for round_ in (1, 2):
        app = create_app(Settings(db=db, sqlite_synchronous="NORMAL"))
        preload_contexts(app.state.contexts)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                if round_ == 1:
                    await set_policy(c, "strict", tenant="lyon")
                    continue
                assert (await create(c, aqo(dateObserved=None), tenant="lyon")).status_code == 400
                r = await c.get(f"{NGSI}/entities", params={"type": "urbanmim:ValidationPolicy"},
                                headers={"NGSILD-Tenant": "lyon"})
                stored = r.json()
                assert len(stored) == 1 and stored[0]["urbanmim:mode"]["value"] == "strict"
                assert stored[0]["urbanmim:source"]["value"] == "sdm:Environment/AirQualityObserved"


async def test_metadata_level_without_schema_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   no_network: None) -> None:
    """No schema directory: the model is checked from pysmartdatamodels' packaged metadata alone."""
    from urbanmim.app import create_app
    from urbanmim.settings import Settings
    monkeypatch.delenv("URBANMIM_SDM_SCHEMAS", raising=False)
    app = create_app(Settings(db=str(tmp_path / "meta.db"), sqlite_synchronous="NORMAL"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            info = (await c.get("/models/v1/sdm/Parking/ParkingSpot")).json()
            assert info["level"] == "metadata"
            assert {"status", "category", "refParkingSite", "location"} <= set(info["required"])
            assert info["attributes"]["refParkingSite"] == "Relationship"
            r = await c.put("/models/v1/policies/ParkingSpot", json={"mode": "strict",
                                                                    "source": "sdm:Parking/ParkingSpot"})
            assert r.json()["level"] == "metadata"
            spot = {"id": "urn:ngsi-ld:ParkingSpot:1", "type": "ParkingSpot", "status": prop("free"),
                    "category": prop(["onStreet"]), "refParkingSite": prop("urn:ngsi-ld:OnStreetParking:1"),
                    "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [2.1, 41.4]}}}
            body = assert_problem(await c.post(f"{NGSI}/entities", json=spot), 400)
            assert "refParkingSite" in body["detail"] and "ngsiType" in body["detail"]
            spot["refParkingSite"] = rel("urn:ngsi-ld:OnStreetParking:1")
            spot["status"] = prop("vanished")
            assert "status" in assert_problem(await c.post(f"{NGSI}/entities", json=spot), 400)["detail"]
            spot["status"] = prop("free")
            assert (await c.post(f"{NGSI}/entities", json=spot)).status_code == 201


def test_header_is_ascii_and_bounded() -> None:
    from urbanmim.models.component import header_value
    entries = [{"entityId": "urn:x", "issues": [{"attribute": "nâme", "rule": "type"}] * 30}]
    v = header_value(entries)
    assert v.isascii() and v.endswith("...") and "30 issue(s)" in v
    json.dumps(v)
