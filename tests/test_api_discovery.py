"""Type and attribute discovery (clauses 5.7.5-5.7.10): /types, /types/{type}, /attributes,
/attributes/{attrId}, with and without details=true (data types of clause 5.2.24-5.2.29)."""

from __future__ import annotations

import pytest

from tests.helpers import CORE_CONTEXT, DEFAULT, JSONLD, assert_problem, create, link, media, prop, rel

D = DEFAULT


@pytest.fixture
async def data(client):
    await create(client, {"id": "urn:ngsi-ld:Vehicle:1", "type": "Vehicle", "speed": prop(1),
                          "isParked": rel("urn:ngsi-ld:Parking:1")})
    await create(client, {"id": "urn:ngsi-ld:Vehicle:2", "type": "Vehicle", "speed": prop(2), "brand": prop("x")})
    await create(client, {"id": "urn:ngsi-ld:Parking:1", "type": "Parking", "name": prop("Central"),
                          "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [1, 2]}}})
    return client


async def test_types_list(data):
    r = await data.get("/types")
    assert r.status_code == 200
    body = r.json()
    assert body["type"] == "EntityTypeList"
    assert body["id"].startswith("urn:")
    assert sorted(body["typeList"]) == ["Parking", "Vehicle"]
    assert f"<{CORE_CONTEXT}>" in r.headers["link"]


async def test_types_list_empty(client):
    r = await client.get("/types")
    assert r.status_code == 200
    assert r.json()["typeList"] == []


async def test_types_details(data):
    r = await data.get("/types", params={"details": "true"})
    assert r.status_code == 200
    body = sorted(r.json(), key=lambda t: t["typeName"])
    assert body == [
        {"id": D + "Parking", "type": "EntityType", "typeName": "Parking", "attributeNames": ["location", "name"]},
        {"id": D + "Vehicle", "type": "EntityType", "typeName": "Vehicle",
         "attributeNames": ["brand", "isParked", "speed"]},
    ]


async def test_type_info(data):
    r = await data.get("/types/Vehicle")
    assert r.status_code == 200
    body = r.json()
    assert body["id"] == D + "Vehicle"
    assert body["type"] == "EntityTypeInfo"
    assert body["typeName"] == "Vehicle"
    assert body["entityCount"] == 2
    details = sorted(body["attributeDetails"], key=lambda a: a["attributeName"])
    assert details == [
        {"id": D + "brand", "type": "Attribute", "attributeName": "brand", "attributeTypes": ["Property"]},
        {"id": D + "isParked", "type": "Attribute", "attributeName": "isParked", "attributeTypes": ["Relationship"]},
        {"id": D + "speed", "type": "Attribute", "attributeName": "speed", "attributeTypes": ["Property"]},
    ]


async def test_type_info_by_full_iri_and_unknown(data):
    assert (await data.get("/types/" + D + "Vehicle")).json()["entityCount"] == 2
    assert_problem(await data.get("/types/Spaceship"), 404, "ResourceNotFound")


async def test_attributes_list(data):
    r = await data.get("/attributes")
    assert r.status_code == 200
    body = r.json()
    assert body["type"] == "AttributeList"
    assert body["id"].startswith("urn:")
    assert sorted(body["attributeList"]) == ["brand", "isParked", "location", "name", "speed"]


async def test_attributes_details(data):
    body = (await data.get("/attributes", params={"details": "true"})).json()
    by_name = {a["attributeName"]: a for a in body}
    assert set(by_name) == {"brand", "isParked", "location", "name", "speed"}
    assert by_name["speed"]["id"] == D + "speed"
    assert by_name["speed"]["type"] == "Attribute"
    assert by_name["speed"]["typeNames"] == ["Vehicle"]
    assert by_name["location"]["typeNames"] == ["Parking"]


async def test_attribute_info(data):
    r = await data.get("/attributes/speed")
    assert r.status_code == 200
    assert r.json() == {"id": D + "speed", "type": "Attribute", "attributeName": "speed", "attributeCount": 2,
                        "attributeTypes": ["Property"], "typeNames": ["Vehicle"]}
    geo = (await data.get("/attributes/location")).json()
    assert geo["attributeTypes"] == ["GeoProperty"] and geo["attributeCount"] == 1
    assert_problem(await data.get("/attributes/unknownAttr"), 404, "ResourceNotFound")


async def test_discovery_with_user_context(data):
    await data.post("/entities", json={"id": "urn:ngsi-ld:Car:1", "type": "https://example.org/Car",
                                       "https://example.org/wheels": prop(4)})
    r = await data.get("/types")
    assert "https://example.org/Car" in r.json()["typeList"]
    # a hosted context that names the IRIs: the compacted names come back
    r = await data.post("/jsonldContexts", json={"@context": {"Car": "https://example.org/Car",
                                                              "wheels": "https://example.org/wheels"}})
    assert r.status_code == 201
    hosted = "http://testserver" + r.headers["location"]
    r = await data.get("/types", headers=link(hosted))
    assert "Car" in r.json()["typeList"]
    r = await data.get("/attributes/wheels", headers=link(hosted))
    assert r.status_code == 200 and r.json()["attributeName"] == "wheels"
    assert r.json()["id"] == "https://example.org/wheels"


async def test_discovery_ld_json_and_bad_params(data):
    r = await data.get("/types", headers={"Accept": JSONLD})
    assert media(r) == JSONLD and r.json()["@context"] in (CORE_CONTEXT, [CORE_CONTEXT])
    assert_problem(await data.get("/types", params={"details": "maybe"}), 400, "BadRequestData")
    assert_problem(await data.get("/attributes", headers={"Accept": "text/csv"}), 406)
