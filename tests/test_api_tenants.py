"""Multi-tenancy through the NGSILD-Tenant header (clause 4.14, 6.3.14)."""

from __future__ import annotations

from tests.helpers import assert_problem, create, get, prop, vehicle

EID = "urn:ngsi-ld:Vehicle:1"
A, B = {"NGSILD-Tenant": "tenantA"}, {"NGSILD-Tenant": "tenantB"}


async def test_create_in_tenant_echoes_header(client):
    r = await client.post("/entities", json=vehicle(1, speed=prop(1)), headers=A)
    assert r.status_code == 201
    assert r.headers["NGSILD-Tenant"] == "tenantA"
    r = await get(client, EID, headers=A)
    assert r.status_code == 200
    assert r.headers["NGSILD-Tenant"] == "tenantA"
    assert r.json() == vehicle(1, speed=prop(1))


async def test_tenant_isolation(client):
    await create(client, vehicle(1, speed=prop(1)), headers=A)
    await create(client, vehicle(9), headers=B)          # tenant B exists but holds another entity
    assert_problem(await get(client, EID), 404, "ResourceNotFound")
    assert_problem(await get(client, EID, headers=B), 404, "ResourceNotFound")
    assert (await client.get("/entities", params={"type": "Vehicle"})).json() == []
    assert [e["id"] for e in (await client.get("/entities", params={"type": "Vehicle"}, headers=B)).json()] == [
        "urn:ngsi-ld:Vehicle:9"]
    assert [e["id"] for e in (await client.get("/entities", params={"type": "Vehicle"}, headers=A)).json()] == [EID]
    # the same id can exist in several tenants independently
    await create(client, vehicle(1, speed=prop(2)))
    assert (await get(client, EID)).json()["speed"] == prop(2)
    assert (await get(client, EID, headers=A)).json()["speed"] == prop(1)
    # writes in one tenant do not touch the other
    assert (await client.delete(f"/entities/{EID}", headers=A)).status_code == 204
    assert (await get(client, EID)).status_code == 200


async def test_discovery_is_per_tenant(client):
    await create(client, vehicle(1, speed=prop(1)), headers=A)
    await create(client, {"id": "urn:ngsi-ld:Building:1", "type": "Building"})
    assert (await client.get("/types", headers=A)).json()["typeList"] == ["Vehicle"]
    assert (await client.get("/types")).json()["typeList"] == ["Building"]
    assert (await client.get("/attributes", headers=A)).json()["attributeList"] == ["speed"]


async def test_batch_in_tenant(client):
    r = await client.post("/entityOperations/create", json=[vehicle(1), vehicle(2)], headers=A)
    assert r.status_code == 201
    assert r.headers["NGSILD-Tenant"] == "tenantA"
    assert_problem(await get(client, EID), 404, "ResourceNotFound")
    assert (await get(client, EID, headers=A)).status_code == 200


async def test_nonexistent_tenant_reads_404(client):
    t = {"NGSILD-Tenant": "nobody"}
    assert_problem(await get(client, EID, headers=t), 404, "NonexistentTenant")
    assert_problem(await client.get("/entities", params={"type": "Vehicle"}, headers=t), 404, "NonexistentTenant")
    assert_problem(await client.get("/types", headers=t), 404, "NonexistentTenant")
    assert_problem(await client.get("/attributes", headers=t), 404, "NonexistentTenant")


async def test_nonexistent_tenant_writes_404(client):
    # modifying operations on an entity in a tenant that does not exist (clause 4.14: a tenant is
    # created implicitly only by creating entities)
    t = {"NGSILD-Tenant": "nobody"}
    assert_problem(await client.delete(f"/entities/{EID}", headers=t), 404)
    assert_problem(await client.patch(f"/entities/{EID}/attrs", json={"speed": prop(1)}, headers=t), 404)


async def test_invalid_tenant_name_400(client):
    r = await client.post("/entities", json=vehicle(1), headers={"NGSILD-Tenant": "bad tenant!"})
    assert_problem(r, 400, "BadRequestData")
    assert (await client.get("/entities", params={"type": "Vehicle"})).json() == []
