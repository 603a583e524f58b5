"""Entities through the HTTP API: create / retrieve / replace / merge / delete, every attribute
kind, representations (normalized, concise, keyValues, GeoJSON), content negotiation and @context
handling (ETSI GS CIM 009 V1.9.1 clauses 4.5, 5.6.1-5.6.6, 5.6.17-5.6.18, 5.7.1, 6.3)."""

from __future__ import annotations

import re

from tests.helpers import (
    API,
    CORE_CONTEXT,
    DEFAULT,
    GEOJSON,
    JSON,
    JSONLD,
    LD_CONTEXT_REL,
    assert_problem,
    create,
    get,
    link,
    media,
    point,
    prop,
    rel,
    vehicle,
)

EID = "urn:ngsi-ld:Vehicle:1"
ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")

FULL = {
    "id": EID,
    "type": "Vehicle",
    "speed": {"type": "Property", "value": 80, "unitCode": "KMH", "observedAt": "2024-01-01T10:00:00.000Z",
              "accuracy": {"type": "Property", "value": 0.5}},
    "isParked": {"type": "Relationship", "object": "urn:ngsi-ld:Parking:P1",
                 "observedAt": "2024-01-01T10:00:00.000Z"},
    "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [2.15, 41.39]}},
    "name": {"type": "LanguageProperty", "languageMap": {"en": "Red car", "fr": "Voiture rouge"}},
    "brand": {"type": "VocabProperty", "vocab": "Mercedes"},
    "config": {"type": "JsonProperty", "json": {"seats": 5, "tags": ["a", "b"], "type": "x"}},
    "readings": {"type": "ListProperty", "valueList": [1, 2, 3]},
    "neighbours": {"type": "ListRelationship",
                   "objectList": [{"object": "urn:ngsi-ld:Vehicle:2"}, {"object": "urn:ngsi-ld:Vehicle:3"}]},
}


# ---- create / retrieve -------------------------------------------------------------------------

async def test_create_returns_201_with_location_and_empty_body(client):
    r = await client.post("/entities", json=vehicle(1, speed=prop(10)))
    assert r.status_code == 201
    assert r.headers["location"] == f"{API}/entities/{EID}"
    assert r.content == b""


async def test_roundtrip_every_attribute_kind_normalized(client):
    await create(client, FULL)
    r = await get(client, EID)
    assert r.status_code == 200
    assert media(r) == JSON
    assert r.json() == FULL


async def test_retrieve_json_carries_core_context_link_header(client):
    await create(client, vehicle(1, speed=prop(1)))
    r = await get(client, EID)
    lk = r.headers["link"]
    assert f"<{CORE_CONTEXT}>" in lk
    assert LD_CONTEXT_REL in lk
    assert "@context" not in r.json()


async def test_retrieve_unknown_entity_404(client):
    assert_problem(await get(client, "urn:ngsi-ld:Vehicle:nope"), 404, "ResourceNotFound")


async def test_create_twice_409(client):
    await create(client, vehicle(1))
    r = await client.post("/entities", json=vehicle(1, speed=prop(2)))
    assert_problem(r, 409, "AlreadyExists")


async def test_entity_with_several_types(client):
    await create(client, {"id": EID, "type": ["Vehicle", "Car"], "speed": prop(1)})
    body = (await get(client, EID)).json()
    assert sorted(body["type"]) == ["Car", "Vehicle"]


async def test_scope_roundtrip(client):
    await create(client, vehicle(1, scope=["/Madrid/Centro", "/Madrid/Norte"]))
    assert (await get(client, EID)).json()["scope"] == ["/Madrid/Centro", "/Madrid/Norte"]


async def test_retrieve_with_attrs_projection(client):
    await create(client, FULL)
    body = (await get(client, EID, attrs="speed,brand")).json()
    assert body == {"id": EID, "type": "Vehicle", "speed": FULL["speed"], "brand": FULL["brand"]}


async def test_retrieve_with_type_filter_mismatch_404(client):
    await create(client, vehicle(1, speed=prop(1)))
    assert (await get(client, EID, type="Vehicle")).status_code == 200
    assert_problem(await get(client, EID, type="Building"), 404, "ResourceNotFound")


async def test_retrieve_pick_and_omit(client):
    await create(client, FULL)
    assert (await get(client, EID, pick="id,speed")).json() == {"id": EID, "speed": FULL["speed"]}
    body = (await get(client, EID, omit="type,speed,name,brand,config,readings,neighbours,location")).json()
    assert body == {"id": EID, "isParked": FULL["isParked"]}


# ---- system attributes ---------------------------------------------------------------------------

async def test_sys_attrs(client):
    await create(client, vehicle(1, speed=prop(1, accuracy=prop(0.1))))
    plain = (await get(client, EID)).json()
    assert "createdAt" not in plain and "createdAt" not in plain["speed"]
    body = (await get(client, EID, options="sysAttrs")).json()
    for holder in (body, body["speed"], body["speed"]["accuracy"]):
        assert ISO_MS.match(holder["createdAt"]), holder
        assert ISO_MS.match(holder["modifiedAt"]), holder
        assert holder["modifiedAt"] >= holder["createdAt"]


async def test_sys_attrs_modified_at_moves_on_update_created_at_stays(client):
    await create(client, vehicle(1, speed=prop(1)))
    before = (await get(client, EID, options="sysAttrs")).json()
    r = await client.patch(f"/entities/{EID}/attrs", json={"speed": prop(2)})
    assert r.status_code == 204
    after = (await get(client, EID, options="sysAttrs")).json()
    assert after["createdAt"] == before["createdAt"]
    assert after["speed"]["createdAt"] == before["speed"]["createdAt"]
    assert after["modifiedAt"] >= before["modifiedAt"]
    assert after["speed"]["value"] == 2


async def test_sys_attrs_sent_by_client_are_ignored(client):
    await create(client, vehicle(1, createdAt="1999-01-01T00:00:00Z", speed=prop(1)))
    body = (await get(client, EID, options="sysAttrs")).json()
    assert not body["createdAt"].startswith("1999")


# ---- multi-attribute instances (datasetId) ---------------------------------------------------------

async def test_multi_instance_dataset_ids(client):
    speeds = [prop(80), prop(81, datasetId="urn:ngsi-ld:Dataset:gps"), prop(82, datasetId="urn:ngsi-ld:Dataset:obd")]
    await create(client, vehicle(1, speed=speeds))
    body = (await get(client, EID)).json()
    assert sorted(body["speed"], key=lambda i: i.get("datasetId", "")) == speeds
    # keyValues keeps the default instance (clause 4.5.4)
    assert (await get(client, EID, options="keyValues")).json()["speed"] == 80


async def test_duplicate_dataset_id_rejected(client):
    speeds = [prop(1, datasetId="urn:ngsi-ld:Dataset:a"), prop(2, datasetId="urn:ngsi-ld:Dataset:a")]
    assert_problem(await client.post("/entities", json=vehicle(1, speed=speeds)), 400, "BadRequestData")


# ---- representations -------------------------------------------------------------------------------

KEY_VALUES = {
    "id": EID, "type": "Vehicle", "speed": 80, "isParked": "urn:ngsi-ld:Parking:P1",
    "location": {"type": "Point", "coordinates": [2.15, 41.39]},
    "name": {"languageMap": {"en": "Red car", "fr": "Voiture rouge"}},
    "brand": {"vocab": "Mercedes"},
    "config": {"json": {"seats": 5, "tags": ["a", "b"], "type": "x"}},
}


async def test_key_values_via_options_and_format(client):
    await create(client, FULL)
    for params in ({"options": "keyValues"}, {"format": "keyValues"}, {"format": "simplified"},
                   {"options": "simplified"}):
        body = (await get(client, EID, **params)).json()
        for k, v in KEY_VALUES.items():
            assert body[k] == v, (params, k, body[k])


async def test_concise_output(client):
    await create(client, FULL)
    for params in ({"options": "concise"}, {"format": "concise"}):
        body = (await get(client, EID, **params)).json()
        assert body["speed"] == {"value": 80, "unitCode": "KMH", "observedAt": "2024-01-01T10:00:00.000Z",
                                 "accuracy": 0.5}
        assert body["isParked"] == {"object": "urn:ngsi-ld:Parking:P1", "observedAt": "2024-01-01T10:00:00.000Z"}
        assert body["location"] == {"type": "Point", "coordinates": [2.15, 41.39]}
        assert body["name"] == {"languageMap": {"en": "Red car", "fr": "Voiture rouge"}}
        assert body["brand"] == {"vocab": "Mercedes"}
        assert body["readings"] == {"valueList": [1, 2, 3]}


async def test_concise_input_is_understood(client):
    concise = {
        "id": EID, "type": "Vehicle",
        "speed": 80,
        "label": "fast",
        "unitSpeed": {"value": 80, "unitCode": "KMH"},
        "isParked": {"object": "urn:ngsi-ld:Parking:P1"},
        "location": {"type": "Point", "coordinates": [2.15, 41.39]},
        "name": {"languageMap": {"en": "Red car"}},
        "brand": {"vocab": "Mercedes"},
        "config": {"json": {"a": 1}},
        "readings": {"valueList": [1, 2]},
    }
    await create(client, concise)
    body = (await get(client, EID)).json()
    assert body["speed"] == prop(80)
    assert body["label"] == prop("fast")
    assert body["unitSpeed"] == prop(80, unitCode="KMH")
    assert body["isParked"] == rel("urn:ngsi-ld:Parking:P1")
    assert body["location"] == point(2.15, 41.39)
    assert body["name"] == {"type": "LanguageProperty", "languageMap": {"en": "Red car"}}
    assert body["brand"] == {"type": "VocabProperty", "vocab": "Mercedes"}
    assert body["config"] == {"type": "JsonProperty", "json": {"a": 1}}
    assert body["readings"] == {"type": "ListProperty", "valueList": [1, 2]}


async def test_invalid_representation_options_400(client):
    await create(client, vehicle(1, speed=prop(1)))
    # suite 018_16: an unknown format or option is InvalidRequest
    assert_problem(await get(client, EID, format="fancy"), 400, "InvalidRequest")
    assert_problem(await get(client, EID, options="bogus"), 400, "InvalidRequest")
    assert_problem(await get(client, EID, options="keyValues,invalid"), 400, "InvalidRequest")
    assert_problem(await get(client, EID, options="keyValues,concise"), 400, ("InvalidRequest", "BadRequestData"))


async def test_pick_omit_attrs_conflicts_400(client):
    # clause 4.21 / suite 018_18
    await create(client, vehicle(1, speed=prop(1), colour=prop("red")))
    assert_problem(await get(client, EID, pick="speed", omit="speed"), 400, "BadRequestData")
    assert_problem(await get(client, EID, pick="speed", attrs="colour"), 400, "BadRequestData")
    assert_problem(await get(client, EID, omit="speed", attrs="colour"), 400, "BadRequestData")
    assert_problem(await get(client, EID, pick="id,,speed"), 400, "BadRequestData")
    assert (await get(client, EID, pick="id,speed", omit="colour")).json() == {"id": EID, "speed": prop(1)}


async def test_language_property_lang_pick(client):
    await create(client, FULL)
    body = (await get(client, EID, lang="fr")).json()
    assert body["name"] == {"type": "Property", "value": "Voiture rouge", "lang": "fr"}
    kv = (await get(client, EID, lang="fr", options="keyValues")).json()
    assert kv["name"] == "Voiture rouge"


async def test_vocab_property_expanded_with_user_context(client):
    ctx = {"@context": [{"Mercedes": "https://example.org/brands/Mercedes"}, CORE_CONTEXT]}
    ent = dict(vehicle(1, brand={"type": "VocabProperty", "vocab": "Mercedes"}), **ctx)
    r = await client.post("/entities", json=ent, headers={"Content-Type": JSONLD})
    assert r.status_code == 201, r.text
    # without the user context the vocab value comes back as the full IRI
    body = (await get(client, EID)).json()
    assert body["brand"]["vocab"] == "https://example.org/brands/Mercedes"


# ---- GeoJSON ---------------------------------------------------------------------------------------

async def test_geojson_feature(client):
    obs = {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [1.0, 2.0]}}
    await create(client, dict(FULL, observationSpace=obs))
    r = await get(client, EID, headers={"Accept": GEOJSON})
    assert r.status_code == 200
    assert media(r) == GEOJSON
    f = r.json()
    assert f["type"] == "Feature" and f["id"] == EID
    assert f["geometry"] == {"type": "Point", "coordinates": [2.15, 41.39]}
    assert f["properties"]["type"] == "Vehicle"
    assert "id" not in f["properties"]
    assert f["properties"]["speed"] == FULL["speed"]
    assert f["properties"]["location"] == FULL["location"]
    # clause 4.5.16.2: the Feature carries the @context
    assert "@context" in f
    # geometryProperty picks another GeoProperty; an absent one gives a null geometry
    r = await get(client, EID, geometryProperty="observationSpace", headers={"Accept": GEOJSON})
    assert r.json()["geometry"] == {"type": "Point", "coordinates": [1.0, 2.0]}
    r = await get(client, EID, geometryProperty="operationSpace", headers={"Accept": GEOJSON})
    assert r.json()["geometry"] is None
    r = await get(client, EID, geometryProperty="speed", headers={"Accept": GEOJSON})
    assert r.json()["geometry"] is None


async def test_geometry_property_needs_geojson_accept_400(client):
    # clause 5.7.1.4 / suite 5711_01_02
    await create(client, FULL)
    r = await get(client, EID, geometryProperty="location", headers={"Accept": JSONLD})
    assert_problem(r, 400, "BadRequestData")
    r = await get(client, EID, geometryProperty="location", headers={"Accept": GEOJSON})
    assert r.status_code == 200


async def test_geojson_key_values(client):
    await create(client, FULL)
    f = (await get(client, EID, options="keyValues", headers={"Accept": GEOJSON})).json()
    assert f["properties"]["speed"] == 80
    assert f["properties"]["location"] == {"type": "Point", "coordinates": [2.15, 41.39]}


async def test_geojson_default_instance_is_geometry(client):
    loc = [{"type": "GeoProperty", "value": {"type": "Point", "coordinates": [9.0, 9.0]},
            "datasetId": "urn:ngsi-ld:Dataset:gps"}, point(1.0, 2.0)]
    await create(client, vehicle(1, location=loc))
    f = (await get(client, EID, headers={"Accept": GEOJSON})).json()
    assert f["geometry"] == {"type": "Point", "coordinates": [1.0, 2.0]}


# ---- content negotiation & @context ----------------------------------------------------------------

async def test_accept_ld_json_puts_context_in_body(client):
    await create(client, vehicle(1, speed=prop(1)))
    r = await get(client, EID, headers={"Accept": JSONLD})
    assert media(r) == JSONLD
    assert r.json()["@context"] in (CORE_CONTEXT, [CORE_CONTEXT])
    assert "link" not in r.headers


async def test_accept_variants(client):
    await create(client, vehicle(1, speed=prop(1)))
    assert media(await get(client, EID, headers={"Accept": "*/*"})) == JSON
    assert media(await get(client, EID, headers={"Accept": "application/*"})) == JSON
    r = await get(client, EID, headers={"Accept": "text/html;q=0.9, application/ld+json;q=0.5"})
    assert media(r) == JSONLD


async def test_accept_unsupported_406(client):
    await create(client, vehicle(1, speed=prop(1)))
    assert_problem(await get(client, EID, headers={"Accept": "application/xml"}), 406)
    assert_problem(await get(client, EID, headers={"Accept": "text/html"}), 406)


async def test_user_context_inline_in_ld_json_body(client):
    ctx = {"speed": "https://example.org/vocab#speed", "Vehicle": "https://example.org/vocab#Vehicle"}
    # an inline body context (ld+json) defines the terms; a read without it shows the full IRIs
    ent = dict(vehicle(1, speed=prop(5)), **{"@context": [ctx, CORE_CONTEXT]})
    r = await client.post("/entities", json=ent, headers={"Content-Type": JSONLD})
    assert r.status_code == 201, r.text
    body = (await get(client, EID)).json()
    assert body["type"] == "https://example.org/vocab#Vehicle"
    assert body["https://example.org/vocab#speed"] == prop(5)
    # without any context, terms expand with the core context's default vocabulary
    await create(client, vehicle(2, speed=prop(6)))
    r = await client.get("/entities", params={"type": DEFAULT + "Vehicle"})
    assert [e["id"] for e in r.json()] == ["urn:ngsi-ld:Vehicle:2"]


async def test_ld_json_without_context_400(client):
    r = await client.post("/entities", json=vehicle(1), headers={"Content-Type": JSONLD})
    assert_problem(r, 400, "BadRequestData")


async def test_json_with_context_400(client):
    ent = dict(vehicle(1), **{"@context": CORE_CONTEXT})
    r = await client.post("/entities", json=ent, headers={"Content-Type": JSON})
    assert_problem(r, 400, "BadRequestData")


async def test_ld_json_with_link_header_400(client):
    ent = dict(vehicle(1), **{"@context": CORE_CONTEXT})
    headers = {"Content-Type": JSONLD, **link("https://example.org/ctx.jsonld")}
    assert_problem(await client.post("/entities", json=ent, headers=headers), 400, "BadRequestData")


async def test_invalid_inline_context_400(client):
    ent = dict(vehicle(1), **{"@context": [{"speed": {"@id": 5}}]})
    assert_problem(await client.post("/entities", json=ent, headers={"Content-Type": JSONLD}), 400,
                   "BadRequestData")


# ---- bad payloads ----------------------------------------------------------------------------------

async def test_bad_entity_payloads_400(client):
    bad = [
        {"type": "Vehicle"},                                          # no id
        {"id": "not a uri", "type": "Vehicle"},                       # id not a URI
        {"id": EID},                                                  # no type
        vehicle(1, speed={"type": "Property"}),                       # Property without value
        vehicle(1, speed={"type": "Property", "value": None}),        # null value
        vehicle(1, isParked={"type": "Relationship", "object": "no uri"}),
        vehicle(1, location={"type": "GeoProperty", "value": {"type": "Point", "coordinates": [1]}}),
        vehicle(1, location=prop(5)),                                 # location must be a GeoProperty
        vehicle(1, speed={"type": "Strange", "value": 1}),            # unknown attribute type
        vehicle(1, name={"type": "LanguageProperty", "languageMap": "x"}),
        vehicle(1, readings={"type": "ListProperty", "valueList": 3}),
        vehicle(1, speed=prop(1, observedAt="yesterday")),
        vehicle(1, speed=prop(1, datasetId="not a uri")),
        vehicle(1, **{"bad name": prop(1)}),                          # forbidden characters
        vehicle(1, scope="no-leading-slash"),
    ]
    for payload in bad:
        r = await client.post("/entities", json=payload)
        assert_problem(r, 400, "BadRequestData")
    # valid JSON of the wrong kind (not an object)
    for payload in ([vehicle(1)], "urn:ngsi-ld:Vehicle:1", 5):
        assert_problem(await client.post("/entities", json=payload), 400, ("InvalidRequest", "BadRequestData"))
    # nothing was created along the way
    assert_problem(await get(client, EID), 404, "ResourceNotFound")


# ---- replace (PUT) ---------------------------------------------------------------------------------

async def test_replace_entity(client):
    await create(client, vehicle(1, speed=prop(1), colour=prop("red")))
    before = (await get(client, EID, options="sysAttrs")).json()
    r = await client.put(f"/entities/{EID}", json=vehicle(1, brand=prop("Seat")))
    assert r.status_code == 204 and r.content == b""
    after = (await get(client, EID, options="sysAttrs")).json()
    assert set(after) == {"id", "type", "brand", "createdAt", "modifiedAt"}
    assert after["createdAt"] == before["createdAt"]


async def test_replace_entity_errors(client):
    assert_problem(await client.put(f"/entities/{EID}", json=vehicle(1, speed=prop(1))), 404, "ResourceNotFound")
    await create(client, vehicle(1, speed=prop(1)))
    r = await client.put(f"/entities/{EID}", json=vehicle(2, speed=prop(1)))
    assert_problem(r, 400, "BadRequestData")
    r = await client.put(f"/entities/{EID}", json=vehicle(1, speed={"type": "Property"}))
    assert_problem(r, 400, "BadRequestData")


# ---- merge (PATCH /entities/{id}) --------------------------------------------------------------------

async def test_merge_entity(client):
    await create(client, vehicle(1, speed=prop(1, unitCode="KMH", accuracy=prop(0.1)), colour=prop("red"),
                                 brand=prop("Seat")))
    patch = {"speed": {"type": "Property", "value": 2}, "colour": "urn:ngsi-ld:null",
             "fuel": prop("diesel")}
    r = await client.patch(f"/entities/{EID}", json=patch)
    assert r.status_code == 204
    body = (await get(client, EID)).json()
    # merged: value replaced, unitCode and sub-property kept (clause 5.6.17)
    assert body["speed"] == prop(2, unitCode="KMH", accuracy=prop(0.1))
    assert "colour" not in body
    assert body["fuel"] == prop("diesel")
    assert body["brand"] == prop("Seat")


async def test_merge_entity_with_merge_patch_content_type(client):
    await create(client, vehicle(1, speed=prop(1)))
    r = await client.patch(f"/entities/{EID}", content=b'{"speed": 7}',
                           headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 204
    assert (await get(client, EID)).json()["speed"] == prop(7)


async def test_merge_entity_errors(client):
    assert_problem(await client.patch(f"/entities/{EID}", json={"speed": prop(1)}), 404, "ResourceNotFound")
    await create(client, vehicle(1, speed=prop(1)))
    assert_problem(await client.patch(f"/entities/{EID}", json={"id": "urn:ngsi-ld:Vehicle:2", "speed": 1}), 400,
                   "BadRequestData")
    assert_problem(await client.patch(f"/entities/{EID}", json={"speed": {"type": "Relationship", "object": "x"}}),
                   400, "BadRequestData")


# ---- delete ----------------------------------------------------------------------------------------

async def test_delete_entity(client):
    await create(client, vehicle(1, speed=prop(1)))
    r = await client.delete(f"/entities/{EID}")
    assert r.status_code == 204 and r.content == b""
    assert_problem(await get(client, EID), 404, "ResourceNotFound")
    assert_problem(await client.delete(f"/entities/{EID}"), 404, "ResourceNotFound")
    # the id can be reused after deletion
    await create(client, vehicle(1))


async def test_delete_invalid_id_400(client):
    assert_problem(await client.delete("/entities/not-a-uri"), 400, "BadRequestData")
    assert_problem(await get(client, "not-a-uri"), 400, "BadRequestData")
