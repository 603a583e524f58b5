"""Attribute operations through the HTTP API: append (5.6.3), update (5.6.2), partial update
(5.6.4), replace (5.6.19) and delete (5.6.5) of attributes, with datasetId and deleteAll."""

from __future__ import annotations

from tests.helpers import CORE_CONTEXT, JSONLD, assert_problem, create, get, media, prop, rel, vehicle

DEFAULT = "https://uri.etsi.org/ngsi-ld/default-context/"

EID = "urn:ngsi-ld:Vehicle:1"
ATTRS = f"/entities/{EID}/attrs"


async def _entity(client, **attrs):
    await create(client, vehicle(1, **(attrs or {"speed": prop(1, unitCode="KMH"), "colour": prop("red")})))


# ---- append: POST /entities/{id}/attrs ---------------------------------------------------------------

async def test_append_new_and_overwrite(client):
    await _entity(client)
    r = await client.post(ATTRS, json={"fuel": prop("diesel"), "speed": prop(5)})
    assert r.status_code == 204 and r.content == b""
    body = (await get(client, EID)).json()
    assert body["fuel"] == prop("diesel")
    assert body["speed"] == prop(5)        # overwritten whole: unitCode is gone
    assert body["colour"] == prop("red")


async def test_append_no_overwrite_207(client):
    await _entity(client)
    r = await client.post(ATTRS, params={"options": "noOverwrite"},
                          json={"speed": prop(99), "fuel": prop("diesel")})
    assert r.status_code == 207
    assert media(r) == "application/json"
    body = r.json()
    # 207 bodies name attributes by their expanded IRI (suite 010_04)
    assert body["updated"] == [DEFAULT + "fuel"]
    assert [n["attributeName"] for n in body["notUpdated"]] == [DEFAULT + "speed"]
    assert isinstance(body["notUpdated"][0]["reason"], str) and body["notUpdated"][0]["reason"]
    ent = (await get(client, EID)).json()
    assert ent["speed"] == prop(1, unitCode="KMH")
    assert ent["fuel"] == prop("diesel")


async def test_append_no_overwrite_all_new_204(client):
    await _entity(client)
    r = await client.post(ATTRS, params={"options": "noOverwrite"}, json={"fuel": prop("diesel")})
    assert r.status_code == 204


async def test_append_new_dataset_id_instance(client):
    await _entity(client)
    r = await client.post(ATTRS, json={"speed": prop(7, datasetId="urn:ngsi-ld:Dataset:gps")})
    assert r.status_code == 204
    speeds = (await get(client, EID)).json()["speed"]
    assert sorted(speeds, key=lambda i: i.get("datasetId", "")) == [
        prop(1, unitCode="KMH"), prop(7, datasetId="urn:ngsi-ld:Dataset:gps")]


async def test_append_relationship_and_ld_json(client):
    await _entity(client)
    body = {"isParked": rel("urn:ngsi-ld:Parking:P1"), "@context": CORE_CONTEXT}
    r = await client.post(ATTRS, json=body, headers={"Content-Type": JSONLD})
    assert r.status_code == 204
    assert (await get(client, EID)).json()["isParked"] == rel("urn:ngsi-ld:Parking:P1")


async def test_append_errors(client):
    assert_problem(await client.post(ATTRS, json={"fuel": prop("x")}), 404, "ResourceNotFound")
    await _entity(client)
    assert_problem(await client.post(ATTRS, json={"fuel": {"type": "Property"}}), 400, "BadRequestData")
    assert_problem(await client.post(ATTRS, json={}), 400, "BadRequestData")
    assert_problem(await client.post(ATTRS, json=[prop(1)]), 400, "BadRequestData")
    assert_problem(await client.post(ATTRS, params={"options": "bogus"}, json={"fuel": prop("x")}), 400,
                   "BadRequestData")
    assert_problem(await client.post("/entities/not-a-uri/attrs", json={"fuel": prop("x")}), 400,
                   "BadRequestData")


# ---- update: PATCH /entities/{id}/attrs --------------------------------------------------------------

async def test_update_existing_attrs_204(client):
    await _entity(client)
    r = await client.patch(ATTRS, json={"speed": prop(50), "colour": prop("blue")})
    assert r.status_code == 204 and r.content == b""
    body = (await get(client, EID)).json()
    assert body["speed"] == prop(50)
    assert body["colour"] == prop("blue")


async def test_update_appends_missing_attribute(client):
    # V1.9.1 5.6.2.4 and suite 011_01_03: existing attributes are replaced, missing ones appended
    await _entity(client)
    r = await client.patch(ATTRS, json={"speed": prop(50), "fuel": prop("diesel")})
    assert r.status_code == 204
    ent = (await get(client, EID)).json()
    assert ent["fuel"] == prop("diesel") and ent["speed"] == prop(50)


async def test_update_errors(client):
    assert_problem(await client.patch(ATTRS, json={"speed": prop(1)}), 404, "ResourceNotFound")
    await _entity(client)
    assert_problem(await client.patch(ATTRS, json={"speed": {"type": "Property"}}), 400, "BadRequestData")
    assert_problem(await client.patch(ATTRS, json={}), 400, "BadRequestData")


# ---- partial update: PATCH /entities/{id}/attrs/{attrId} -----------------------------------------------

async def test_partial_update_merges_into_instance(client):
    await _entity(client, speed=prop(1, unitCode="KMH", accuracy=prop(0.1)))
    r = await client.patch(f"{ATTRS}/speed", json={"value": 30})
    assert r.status_code == 204 and r.content == b""
    assert (await get(client, EID)).json()["speed"] == prop(30, unitCode="KMH", accuracy=prop(0.1))
    r = await client.patch(f"{ATTRS}/speed", json={"type": "Property", "value": 31, "observedAt":
                                                   "2024-05-01T00:00:00.000Z"})
    assert r.status_code == 204
    assert (await get(client, EID)).json()["speed"] == prop(31, unitCode="KMH", accuracy=prop(0.1),
                                                            observedAt="2024-05-01T00:00:00.000Z")


async def test_partial_update_dataset_instance(client):
    await _entity(client, speed=[prop(1), prop(2, datasetId="urn:ngsi-ld:Dataset:gps")])
    r = await client.patch(f"{ATTRS}/speed", json={"value": 20, "datasetId": "urn:ngsi-ld:Dataset:gps"})
    assert r.status_code == 204
    speeds = (await get(client, EID)).json()["speed"]
    assert sorted(speeds, key=lambda i: i.get("datasetId", "")) == [
        prop(1), prop(20, datasetId="urn:ngsi-ld:Dataset:gps")]


async def test_partial_update_errors(client):
    assert_problem(await client.patch(f"{ATTRS}/speed", json={"value": 1}), 404, "ResourceNotFound")
    await _entity(client)
    assert_problem(await client.patch(f"{ATTRS}/fuel", json={"value": 1}), 404, "ResourceNotFound")
    r = await client.patch(f"{ATTRS}/speed", json={"value": 1, "datasetId": "urn:ngsi-ld:Dataset:none"})
    assert_problem(r, 404, "ResourceNotFound")
    assert_problem(await client.patch(f"{ATTRS}/speed", json={"type": "Relationship", "object": "no uri"}), 400,
                   "BadRequestData")


# ---- replace: PUT /entities/{id}/attrs/{attrId} -----------------------------------------------------------

async def test_replace_attribute(client):
    await _entity(client, speed=prop(1, unitCode="KMH", accuracy=prop(0.1)))
    r = await client.put(f"{ATTRS}/speed", json=prop(2))
    assert r.status_code == 204 and r.content == b""
    assert (await get(client, EID)).json()["speed"] == prop(2)


async def test_replace_attribute_changes_type(client):
    await _entity(client)
    r = await client.put(f"{ATTRS}/colour", json=rel("urn:ngsi-ld:Colour:red"))
    assert r.status_code == 204
    assert (await get(client, EID)).json()["colour"] == rel("urn:ngsi-ld:Colour:red")


async def test_replace_attribute_errors(client):
    assert_problem(await client.put(f"{ATTRS}/speed", json=prop(2)), 404, "ResourceNotFound")
    await _entity(client)
    assert_problem(await client.put(f"{ATTRS}/fuel", json=prop(2)), 404, "ResourceNotFound")
    assert_problem(await client.put(f"{ATTRS}/speed", json={"type": "Property"}), 400, "BadRequestData")


# ---- delete: DELETE /entities/{id}/attrs/{attrId} ---------------------------------------------------------

async def test_delete_attribute(client):
    await _entity(client)
    r = await client.delete(f"{ATTRS}/colour")
    assert r.status_code == 204 and r.content == b""
    body = (await get(client, EID)).json()
    assert "colour" not in body and body["speed"] == prop(1, unitCode="KMH")
    assert_problem(await client.delete(f"{ATTRS}/colour"), 404, "ResourceNotFound")


async def test_delete_attribute_dataset_id_and_delete_all(client):
    gps, obd = "urn:ngsi-ld:Dataset:gps", "urn:ngsi-ld:Dataset:obd"
    await _entity(client, speed=[prop(1), prop(2, datasetId=gps), prop(3, datasetId=obd)])
    r = await client.delete(f"{ATTRS}/speed", params={"datasetId": gps})
    assert r.status_code == 204
    speeds = (await get(client, EID)).json()["speed"]
    assert sorted(speeds, key=lambda i: i.get("datasetId", "")) == [prop(1), prop(3, datasetId=obd)]
    # without datasetId only the default instance goes
    assert (await client.delete(f"{ATTRS}/speed")).status_code == 204
    assert (await get(client, EID)).json()["speed"] == prop(3, datasetId=obd)
    assert_problem(await client.delete(f"{ATTRS}/speed", params={"datasetId": gps}), 404, "ResourceNotFound")
    # deleteAll removes every instance
    await client.post(ATTRS, json={"speed": prop(9)})
    assert (await client.delete(f"{ATTRS}/speed", params={"deleteAll": "true"})).status_code == 204
    assert "speed" not in (await get(client, EID)).json()


async def test_delete_attribute_errors(client):
    assert_problem(await client.delete(f"{ATTRS}/speed"), 404, "ResourceNotFound")
    await _entity(client)
    assert_problem(await client.delete(f"{ATTRS}/fuel"), 404, "ResourceNotFound")
    r = await client.delete(f"{ATTRS}/speed", params={"deleteAll": "true", "datasetId": "urn:ngsi-ld:Dataset:a"})
    assert_problem(r, 400, "BadRequestData")
    assert_problem(await client.delete(f"{ATTRS}/speed", params={"deleteAll": "maybe"}), 400, "BadRequestData")
