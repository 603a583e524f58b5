"""Batch operations through the HTTP API (clauses 5.6.7 create, 5.6.8 upsert, 5.6.9 update,
5.6.10 delete, 5.6.20 merge): 201/204/207 answers and BatchOperationResult bodies (5.2.16)."""

from __future__ import annotations

from tests.helpers import CORE_CONTEXT, ERRORS, JSONLD, assert_problem, create, get, media, prop, vehicle

OPS = "/entityOperations"
V1, V2, V3 = (f"urn:ngsi-ld:Vehicle:{i}" for i in (1, 2, 3))


def _check_batch_result(r, success: list[str], failed: list[str]) -> dict:
    assert r.status_code == 207, r.text
    assert media(r) == "application/json"
    body = r.json()
    assert sorted(body["success"]) == sorted(success)
    assert sorted(e["entityId"] for e in body["errors"]) == sorted(failed)
    for e in body["errors"]:
        err = e["error"]
        assert err["type"].startswith(ERRORS) and err["title"] and "status" in err
    return body


# ---- create ----------------------------------------------------------------------------------------

async def test_batch_create_201_ids(client):
    r = await client.post(f"{OPS}/create", json=[vehicle(1, speed=prop(1)), vehicle(2, speed=prop(2))])
    assert r.status_code == 201
    assert sorted(r.json()) == [V1, V2]
    assert (await get(client, V2)).json()["speed"] == prop(2)


async def test_batch_create_existing_entity_207(client):
    await create(client, vehicle(3))
    r = await client.post(f"{OPS}/create", json=[vehicle(1), vehicle(2), vehicle(3, speed=prop(3))])
    body = _check_batch_result(r, [V1, V2], [V3])
    assert body["errors"][0]["error"]["type"] == ERRORS + "AlreadyExists"
    assert "speed" not in (await get(client, V3)).json()


async def test_batch_create_one_invalid_entity_207(client):
    bad = {"id": V3, "speed": prop(1)}                 # no type
    r = await client.post(f"{OPS}/create", json=[vehicle(1), bad, vehicle(2)])
    body = _check_batch_result(r, [V1, V2], [V3])
    assert body["errors"][0]["error"]["type"] == ERRORS + "BadRequestData"
    assert_problem(await get(client, V3), 404, "ResourceNotFound")


async def test_batch_create_duplicate_ids_in_one_batch(client):
    r = await client.post(f"{OPS}/create", json=[vehicle(1, speed=prop(1)), vehicle(1, speed=prop(2))])
    # the first one is created, the second is a duplicate of an existing entity
    body = _check_batch_result(r, [V1], [V1])
    assert body["errors"][0]["error"]["type"] == ERRORS + "AlreadyExists"
    assert (await get(client, V1)).json()["speed"] == prop(1)


async def test_batch_create_ld_json_each_with_context(client):
    items = [dict(vehicle(1), **{"@context": CORE_CONTEXT}), dict(vehicle(2), **{"@context": CORE_CONTEXT})]
    r = await client.post(f"{OPS}/create", json=items, headers={"Content-Type": JSONLD})
    assert r.status_code == 201
    # an element without its @context is a bad entity of its own (clause 6.3.5, 5.6.7.4)
    items[1].pop("@context")
    r = await client.post(f"{OPS}/create", json=[dict(vehicle(3), **{"@context": CORE_CONTEXT}), items[1]],
                          headers={"Content-Type": JSONLD})
    body = _check_batch_result(r, [V3], [V2])
    assert body["errors"][0]["error"]["type"] == ERRORS + "BadRequestData"


async def test_batch_create_unreachable_context_per_entity_207(client):
    # suite 043_01_04: each entity whose @context cannot be retrieved fails alone
    bad_ctx = ["http://127.0.0.1:1/ctx.jsonld", CORE_CONTEXT]
    items = [dict(vehicle(1), **{"@context": bad_ctx}), dict(vehicle(2), **{"@context": bad_ctx})]
    r = await client.post(f"{OPS}/create", json=items, headers={"Content-Type": JSONLD})
    body = _check_batch_result(r, [], [V1, V2])
    assert {e["error"]["type"] for e in body["errors"]} == {ERRORS + "LdContextNotAvailable"}


async def test_batch_create_null_item_fails_whole_batch(client):
    r = await client.post(f"{OPS}/create", json=[vehicle(1), None])
    assert_problem(r, 400, "BadRequestData")
    assert_problem(await get(client, V1), 404, "ResourceNotFound")


async def test_batch_create_bad_requests(client):
    assert_problem(await client.post(f"{OPS}/create", content=b"[{", headers={"Content-Type": "application/json"}),
                   400, "InvalidRequest")
    assert_problem(await client.post(f"{OPS}/create", json=[]), 400, "BadRequestData")
    assert_problem(await client.post(f"{OPS}/create", json=vehicle(1)), 400, "BadRequestData")


# ---- upsert ----------------------------------------------------------------------------------------

async def test_batch_upsert_all_new_201(client):
    r = await client.post(f"{OPS}/upsert", json=[vehicle(1), vehicle(2)])
    assert r.status_code == 201
    assert sorted(r.json()) == [V1, V2]


async def test_batch_upsert_mixed_201_with_created_ids_only(client):
    await create(client, vehicle(1, speed=prop(1), colour=prop("red")))
    r = await client.post(f"{OPS}/upsert", json=[vehicle(1, speed=prop(10)), vehicle(2, speed=prop(20))])
    assert r.status_code == 201
    assert r.json() == [V2]
    # default is replace: colour is gone
    assert (await get(client, V1)).json() == vehicle(1, speed=prop(10))


async def test_batch_upsert_all_existing_204(client):
    await create(client, vehicle(1, speed=prop(1)))
    await create(client, vehicle(2, speed=prop(2)))
    r = await client.post(f"{OPS}/upsert", params={"options": "replace"},
                          json=[vehicle(1, fuel=prop("x")), vehicle(2, fuel=prop("y"))])
    assert r.status_code == 204 and r.content == b""
    assert (await get(client, V1)).json() == vehicle(1, fuel=prop("x"))


async def test_batch_upsert_update_option_keeps_other_attrs(client):
    await create(client, vehicle(1, speed=prop(1), colour=prop("red")))
    r = await client.post(f"{OPS}/upsert", params={"options": "update"},
                          json=[vehicle(1, speed=prop(10)), vehicle(2, speed=prop(20))])
    assert r.status_code == 201
    assert r.json() == [V2]
    assert (await get(client, V1)).json() == vehicle(1, speed=prop(10), colour=prop("red"))
    r = await client.post(f"{OPS}/upsert", params={"options": "update"}, json=[vehicle(1, fuel=prop("x"))])
    assert r.status_code == 204


async def test_batch_upsert_one_invalid_207(client):
    r = await client.post(f"{OPS}/upsert", json=[vehicle(1), vehicle(2), {"id": V3}])
    body = _check_batch_result(r, [V1, V2], [V3])
    assert body["errors"][0]["error"]["type"] == ERRORS + "BadRequestData"


async def test_batch_upsert_duplicate_ids_201(client):
    first = vehicle(1, speed=prop(1), old=prop(True))
    r = await client.post(f"{OPS}/upsert", json=[first, vehicle(2), vehicle(1, speed=prop(3))])
    assert r.status_code == 201
    assert sorted(r.json()) == [V1, V2]
    # clause 4.6.6: applied in order, the later instance wins (replace: "old" does not linger)
    assert (await get(client, V1)).json() == vehicle(1, speed=prop(3))


async def test_batch_upsert_bad_options_400(client):
    assert_problem(await client.post(f"{OPS}/upsert", params={"options": "replace,update"}, json=[vehicle(1)]),
                   400, "BadRequestData")
    assert_problem(await client.post(f"{OPS}/upsert", params={"options": "bogus"}, json=[vehicle(1)]),
                   400, "BadRequestData")


# ---- update ----------------------------------------------------------------------------------------

async def test_batch_update_204(client):
    await create(client, vehicle(1, speed=prop(1), colour=prop("red")))
    await create(client, vehicle(2, speed=prop(2)))
    r = await client.post(f"{OPS}/update", json=[vehicle(1, speed=prop(10)), vehicle(2, fuel=prop("x"))])
    assert r.status_code == 204
    assert (await get(client, V1)).json() == vehicle(1, speed=prop(10), colour=prop("red"))
    assert (await get(client, V2)).json() == vehicle(2, speed=prop(2), fuel=prop("x"))


async def test_batch_update_missing_entity_207(client):
    await create(client, vehicle(1, speed=prop(1)))
    r = await client.post(f"{OPS}/update", json=[vehicle(1, speed=prop(10)), vehicle(2, speed=prop(20))])
    body = _check_batch_result(r, [V1], [V2])
    assert body["errors"][0]["error"]["type"] == ERRORS + "ResourceNotFound"


async def test_batch_update_no_overwrite(client):
    await create(client, vehicle(1, speed=prop(1)))
    r = await client.post(f"{OPS}/update", params={"options": "noOverwrite"},
                          json=[vehicle(1, speed=prop(10), fuel=prop("x"))])
    # speed was not overwritten; that is reported for the entity (5.6.9.4; suite 005_02_03)
    assert r.status_code == 207
    assert (await get(client, V1)).json() == vehicle(1, speed=prop(1), fuel=prop("x"))


# ---- merge -----------------------------------------------------------------------------------------

async def test_batch_merge(client):
    await create(client, vehicle(1, speed=prop(1, unitCode="KMH"), colour=prop("red")))
    await create(client, vehicle(2, speed=prop(2)))
    r = await client.post(f"{OPS}/merge", json=[{"id": V1, "type": "Vehicle", "speed": {"value": 5},
                                                 "colour": "urn:ngsi-ld:null"},
                                                {"id": V2, "type": "Vehicle", "fuel": "diesel"}])
    assert r.status_code == 204
    assert (await get(client, V1)).json() == vehicle(1, speed=prop(5, unitCode="KMH"))
    assert (await get(client, V2)).json() == vehicle(2, speed=prop(2), fuel=prop("diesel"))


async def test_batch_merge_missing_entity_207(client):
    await create(client, vehicle(1, speed=prop(1)))
    r = await client.post(f"{OPS}/merge", json=[vehicle(1, speed=prop(5)), vehicle(2, speed=prop(6))])
    body = _check_batch_result(r, [V1], [V2])
    assert body["errors"][0]["error"]["type"] == ERRORS + "ResourceNotFound"


# ---- delete ----------------------------------------------------------------------------------------

async def test_batch_delete(client):
    await create(client, vehicle(1))
    await create(client, vehicle(2))
    r = await client.post(f"{OPS}/delete", json=[V1, V2])
    assert r.status_code == 204 and r.content == b""
    assert_problem(await get(client, V1), 404, "ResourceNotFound")


async def test_batch_delete_partial_207(client):
    await create(client, vehicle(1))
    r = await client.post(f"{OPS}/delete", json=[V1, V2, "not a uri"])
    body = _check_batch_result(r, [V1], [V2, "not a uri"])
    types = {e["entityId"]: e["error"]["type"] for e in body["errors"]}
    assert types == {V2: ERRORS + "ResourceNotFound", "not a uri": ERRORS + "BadRequestData"}


async def test_batch_delete_duplicate_ids_207(client):
    await create(client, vehicle(1))
    r = await client.post(f"{OPS}/delete", json=[V1, V1])
    body = _check_batch_result(r, [V1], [V1])
    assert body["errors"][0]["error"]["type"] == ERRORS + "ResourceNotFound"


async def test_batch_delete_bad_requests(client):
    assert_problem(await client.post(f"{OPS}/delete", json=[]), 400, "BadRequestData")
    assert_problem(await client.post(f"{OPS}/delete", json={"id": V1}), 400, "BadRequestData")
    assert_problem(await client.post(f"{OPS}/delete", content=b"nope", headers={"Content-Type": "application/json"}),
                   400, "InvalidRequest")
