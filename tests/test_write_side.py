"""Regression tests for the write side (clauses 5.6.x of ETSI GS CIM 009 V1.9.1): what the
conformance suite's Provision area exposed — id validation before look-up, NGSI-LD Null in
every form, Update Attributes upserting, partial attribute fragments, scope handling, batch
@context rules per entity, and Purge Entities (5.6.21)."""

from __future__ import annotations

from typing import Any

from tests.helpers import CORE_CONTEXT, DEFAULT, JSON, JSONLD, assert_problem, link, prop, rel, vehicle

EID = "urn:ngsi-ld:Vehicle:1"
NULL = "urn:ngsi-ld:null"
OPS = "/entityOperations"


async def _create(client: Any, ent: dict[str, Any]) -> None:
    r = await client.post("/entities", json=ent)
    assert r.status_code == 201, r.text


async def _get(client: Any, eid: str = EID) -> dict[str, Any]:
    r = await client.get(f"/entities/{eid}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _street(**langs: str) -> dict[str, Any]:
    return {"type": "LanguageProperty", "languageMap": langs}


# ---- entity ids: 400 before any look-up ---------------------------------------------------------------

async def test_invalid_or_missing_entity_id_is_400_not_404(client):
    frag = {"speed": prop(3)}
    for method, path, body in [
        ("DELETE", "/entities/notauri", None),
        ("PATCH", "/entities/notauri/attrs", frag),
        ("POST", "/entities/notauri/attrs", frag),
        ("PATCH", "/entities//attrs/", frag),
        ("DELETE", "/entities/notauri/attrs/speed", None),
        ("PUT", "/entities/notauri/attrs/speed", prop(1)),
        ("PATCH", "/entities/notauri/attrs/speed", {"value": 1}),
        ("PUT", "/entities/", vehicle(1)),
        ("PATCH", "/entities/", frag),
    ]:
        r = await client.request(method, path, json=body)
        assert_problem(r, 400, "BadRequestData")


async def test_delete_on_attrs_collection_is_405(client):
    await _create(client, vehicle(1, speed=prop(1)))
    assert_problem(await client.delete(f"/entities/{EID}/attrs/"), 405)
    assert (await _get(client))["speed"]["value"] == 1


async def test_create_rejects_array_and_keyword_type(client):
    r = await client.post("/entities", json=[], headers={"Content-Type": JSONLD})
    assert_problem(r, 400, "InvalidRequest")
    # the core context maps "type" to @type: not an IRI, so not an entity type
    r = await client.post("/entities", json={"id": EID, "type": "type", "@context": CORE_CONTEXT},
                          headers={"Content-Type": JSONLD})
    assert_problem(r, 400, "BadRequestData")
    assert_problem(await client.get(f"/entities/{EID}"), 404)


async def test_attribute_type_must_be_a_string_never_500(client):
    await _create(client, vehicle(1, speed=prop(1)))
    for body in ({"type": ["Property"], "value": 1}, {"type": 5}):
        assert_problem(await client.patch(f"/entities/{EID}/attrs/speed", json=body), 400)
        assert_problem(await client.put(f"/entities/{EID}/attrs/speed", json=body), 400)


# ---- Update Attributes (5.6.2) ----------------------------------------------------------------------------

async def test_update_replaces_existing_and_appends_missing(client):
    await _create(client, vehicle(1, speed=[prop(1), prop(2, datasetId="urn:ds:gps")]))
    r = await client.patch(f"/entities/{EID}/attrs", json={"speed": prop(9, datasetId="urn:ds:gps"),
                                                           "fuel": prop("diesel")})
    assert r.status_code == 204, r.text
    ent = await _get(client)
    assert sorted(i["value"] for i in ent["speed"]) == [1, 9]
    assert ent["fuel"]["value"] == "diesel"


async def test_update_with_ngsild_null_deletes_each_attribute_type(client):
    await _create(client, vehicle(1, name=prop("x"), owner=rel("urn:ngsi-ld:Person:1"),
                                  location={"type": "GeoProperty", "value": {"type": "Point", "coordinates": [1, 2]}},
                                  street=_street(fr="rue", nl="straat")))
    r = await client.patch(f"/entities/{EID}/attrs", json={
        "name": prop(NULL), "owner": rel(NULL), "location": {"type": "GeoProperty", "value": NULL},
        "street": _street(**{"@none": NULL})})
    assert r.status_code == 204, r.text
    ent = await _get(client)
    assert not {"name", "owner", "location", "street"} & set(ent)


async def test_update_null_targets_one_dataset_instance(client):
    await _create(client, vehicle(1, street=[_street(fr="a"), dict(_street(fr="b"), datasetId="urn:ds:1")]))
    r = await client.patch(f"/entities/{EID}/attrs",
                           json={"street": dict(_street(**{"@none": NULL}), datasetId="urn:ds:1")})
    assert r.status_code == 204, r.text
    assert (await _get(client))["street"] == _street(fr="a")


async def test_update_types_and_scope(client):
    await _create(client, vehicle(1, scope="/A"))
    r = await client.patch(f"/entities/{EID}/attrs", json={"type": ["Car", "Vehicle"], "scope": "/B/C"})
    assert r.status_code == 204, r.text
    ent = await _get(client)
    assert ent["type"] == ["Vehicle", "Car"] and ent["scope"] == "/B/C"
    # no scope yet: update ignores it (207, scope not updated)
    await _create(client, vehicle(2))
    r = await client.patch("/entities/urn:ngsi-ld:Vehicle:2/attrs", json={"scope": "/B"})
    assert r.status_code == 207
    assert [n["attributeName"] for n in r.json()["notUpdated"]] == ["scope"]
    assert "scope" not in await _get(client, "urn:ngsi-ld:Vehicle:2")


async def test_update_result_names_are_expanded(client):
    await _create(client, vehicle(1, speed=prop(1)))
    r = await client.post(f"/entities/{EID}/attrs", params={"options": "noOverwrite"},
                          json={"speed": prop(2), "fuel": prop("x")})
    assert r.status_code == 207
    assert r.json()["updated"] == [DEFAULT + "fuel"]
    assert r.json()["notUpdated"][0]["attributeName"] == DEFAULT + "speed"


# ---- Append (5.6.3): scope ------------------------------------------------------------------------------

async def test_append_scope_replaces_or_extends(client):
    await _create(client, vehicle(1, scope="/A"))
    assert (await client.post(f"/entities/{EID}/attrs", json={"scope": "/B"})).status_code == 204
    assert (await _get(client))["scope"] == "/B"
    r = await client.post(f"/entities/{EID}/attrs", params={"options": "noOverwrite"}, json={"scope": "/C"})
    assert r.status_code == 204
    assert (await _get(client))["scope"] == ["/B", "/C"]


# ---- Partial Attribute Update (5.6.4) -----------------------------------------------------------------------

async def test_partial_update_with_only_a_sub_attribute(client):
    await _create(client, vehicle(1, parked=rel("urn:ngsi-ld:P:1", providedBy=rel("urn:ngsi-ld:Person:Bob"))))
    r = await client.patch(f"/entities/{EID}/attrs/parked", json={"providedBy": rel("urn:ngsi-ld:Person:Jo")})
    assert r.status_code == 204, r.text
    parked = (await _get(client))["parked"]
    assert parked["object"] == "urn:ngsi-ld:P:1"
    assert parked["providedBy"]["object"] == "urn:ngsi-ld:Person:Jo"


async def test_partial_update_explicit_type_mismatch_is_400(client):
    await _create(client, vehicle(1, speed=prop(1)))
    r = await client.patch(f"/entities/{EID}/attrs/speed", json=rel("urn:ngsi-ld:E:1"))
    assert_problem(r, 400, "BadRequestData")
    # a concise value keeps the stored type
    assert (await client.patch(f"/entities/{EID}/attrs/speed", json={"value": 5})).status_code == 204
    assert (await _get(client))["speed"]["value"] == 5


async def test_partial_update_null_language_map_deletes(client):
    await _create(client, vehicle(1, street=_street(fr="rue")))
    r = await client.patch(f"/entities/{EID}/attrs/street", json=_street(**{"@none": NULL}))
    assert r.status_code == 204, r.text
    assert "street" not in await _get(client)


# ---- Replace / Delete attribute --------------------------------------------------------------------------

async def test_replace_attr_rejects_scope_and_keyword_names(client):
    await _create(client, vehicle(1, scope="/A", speed=prop(1)))
    assert_problem(await client.put(f"/entities/{EID}/attrs/scope", json={"scope": "/B"}), 400, "BadRequestData")
    assert_problem(await client.put(f"/entities/{EID}/attrs/@invalid", json=prop(1)), 400, "BadRequestData")


async def test_delete_scope_attribute(client):
    await _create(client, vehicle(1, scope="/A", speed=prop(1)))
    assert (await client.delete(f"/entities/{EID}/attrs/scope")).status_code == 204
    assert "scope" not in await _get(client)
    assert_problem(await client.delete(f"/entities/{EID}/attrs/scope"), 404)


# ---- Merge (5.6.17) ---------------------------------------------------------------------------------------

async def test_merge_null_language_map_deletes(client):
    await _create(client, vehicle(1, street=_street(fr="rue"), name=prop("n")))
    r = await client.patch(f"/entities/{EID}", json={"street": _street(**{"@none": NULL})})
    assert r.status_code == 204, r.text
    ent = await _get(client)
    assert "street" not in ent and ent["name"]["value"] == "n"


# ---- batch @context rules (6.3.5) -------------------------------------------------------------------------

async def test_batch_context_errors_are_per_entity_or_whole_request(client):
    with_ctx = dict(vehicle(1), **{"@context": CORE_CONTEXT})
    r = await client.post(f"{OPS}/create", json=[with_ctx, vehicle(2)], headers={"Content-Type": JSON})
    assert r.status_code == 207
    assert r.json()["success"] == ["urn:ngsi-ld:Vehicle:2"]
    assert r.json()["errors"][0]["error"]["type"].endswith("BadRequestData")
    r = await client.post(f"{OPS}/create", json=[vehicle(3)], headers={"Content-Type": JSONLD})
    assert r.status_code == 207 and r.json()["errors"][0]["entityId"] == "urn:ngsi-ld:Vehicle:3"
    r = await client.post(f"{OPS}/create", json=[dict(vehicle(4), **{"@context": CORE_CONTEXT})],
                          headers={"Content-Type": JSONLD, **link(CORE_CONTEXT)})
    assert_problem(r, 400, "BadRequestData")


# ---- Purge Entities (5.6.21) --------------------------------------------------------------------------------

async def _three(client: Any) -> None:
    await _create(client, vehicle(1, name=prop("a"), speed=prop(1)))
    await _create(client, vehicle(2, name=prop("b"), speed=prop(2)))
    await _create(client, {"id": "urn:ngsi-ld:Building:1", "type": "Building", "name": prop("a")})


async def test_purge_needs_a_qualifying_filter(client):
    await _three(client)
    for params in ({}, {"id": EID}, {"idPattern": ".*"}, {"attrs": "createdAt"},
                   {"q": 'modifiedAt>"2020-01-01T00:00:00Z"'}, {"type": "Vehicle", "keep": "name", "drop": "speed"},
                   {"type": "Vehicle", "q": 'owner{name}=="x"'}, {"type": "Vehicle", "attrs": "owner{name}"}):
        assert_problem(await client.delete("/entities", params=params), 400, "BadRequestData")
    assert len((await client.get("/entities", params={"type": "Vehicle,Building"})).json()) == 3


async def test_purge_by_type_and_by_q(client):
    await _three(client)
    assert (await client.delete("/entities", params={"type": "Vehicle", "q": 'name=="a"'})).status_code == 204
    ids = {e["id"] for e in (await client.get("/entities", params={"type": "Vehicle,Building"})).json()}
    assert ids == {"urn:ngsi-ld:Vehicle:2", "urn:ngsi-ld:Building:1"}
    assert (await client.delete("/entities", params={"local": "true"})).status_code == 204
    assert (await client.get("/entities", params={"type": "Vehicle,Building"})).json() == []


async def test_purge_keep_and_drop_trim_attributes(client):
    await _three(client)
    assert (await client.delete("/entities", params={"type": "Vehicle", "drop": "speed"})).status_code == 204
    ent = await _get(client)
    assert "speed" not in ent and ent["name"]["value"] == "a"
    r = await client.delete("/entities", params={"type": "Building", "keep": "speed"})
    assert r.status_code == 204
    b = await _get(client, "urn:ngsi-ld:Building:1")
    assert "name" not in b and b["type"] == "Building"
