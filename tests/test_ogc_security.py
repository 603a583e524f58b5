"""OGC API Features obeys MIM6 access control: it reads through the service layer, so attribute rules,
deny rules and tenant roles hold for features, counts, filters, queryables, extents and collection lists."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import assert_problem
from tests.security_helpers import client, secure_app, spot, token

CITY = "portamar"
OGC = "/ogc/" + CITY


@pytest.fixture
async def app(tmp_path: Path, db_target: str) -> AsyncIterator[Any]:
    async for a in secure_app(tmp_path, db=db_target):
        yield a


@pytest.fixture
async def seeded(app: Any) -> Any:
    async with client(app, token(app, tenant=CITY, role="editor"), tenant=CITY) as c:
        for i in range(3):
            assert (await c.post("/entities", json=spot(f"urn:ngsi-ld:ParkingSpot:{i}"))).status_code == 201
        person = {"id": "urn:ngsi-ld:Person:1", "type": "Person", "status": {"type": "Property", "value": "x"},
                  "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [9.0, 45.0]}}}
        assert (await c.post("/entities", json=person)).status_code == 201
    async with client(app, token(app, tenant=CITY, role="admin"), tenant=CITY, base="/security/v1") as c:
        r = await c.put("/rules/reader-no-owner", json={"role": "reader", "entityType": "ParkingSpot",
                                                       "hide": ["owner"]})
        assert r.status_code == 201, r.text
        r = await c.put("/rules/no-persons", json={"role": "reader", "entityType": "Person", "effect": "deny"})
        assert r.status_code == 201, r.text
    return app


def ogc(app: Any, bearer: str | None) -> Any:
    return client(app, bearer, base=OGC)


async def test_anonymous_is_401(seeded: Any) -> None:
    async with ogc(seeded, None) as c:
        assert_problem(await c.get("/collections/ParkingSpot/items"), 401, "Unauthorized")


async def test_hidden_attribute_is_not_a_property_nor_a_queryable_nor_filterable(seeded: Any) -> None:
    async with ogc(seeded, token(seeded, tenant=CITY, role="reader")) as c:
        body = (await c.get("/collections/ParkingSpot/items")).json()
        assert body["numberMatched"] == 3
        assert all("owner" not in f["properties"] and f["properties"]["status"] == "free" for f in body["features"])
        one = (await c.get("/collections/ParkingSpot/items/urn:ngsi-ld:ParkingSpot:1")).json()
        assert "owner" not in one["properties"]
        assert "owner" not in (await c.get("/collections/ParkingSpot/queryables")).json()["properties"]
        body = (await c.get("/collections/ParkingSpot/items", params={"filter": "owner = 'Alice'"})).json()
        assert body["features"] == [] and body["numberMatched"] == 0
    async with ogc(seeded, token(seeded, tenant=CITY, role="editor")) as c:
        body = (await c.get("/collections/ParkingSpot/items", params={"filter": "owner = 'Alice'"})).json()
        assert body["numberMatched"] == 3
        assert "owner" in (await c.get("/collections/ParkingSpot/queryables")).json()["properties"]


async def test_denied_type_is_not_a_collection_and_extents_are_per_caller(seeded: Any) -> None:
    async with ogc(seeded, token(seeded, tenant=CITY, role="editor")) as c:
        cols = {x["id"]: x for x in (await c.get("/collections")).json()["collections"]}
        assert set(cols) == {"ParkingSpot", "Person"}
    async with ogc(seeded, token(seeded, tenant=CITY, role="reader")) as c:
        cols = {x["id"]: x for x in (await c.get("/collections")).json()["collections"]}
        assert set(cols) == {"ParkingSpot"}          # the editor's cached list does not leak
        assert cols["ParkingSpot"]["extent"]["spatial"]["bbox"] == [[2.1, 41.4, 2.1, 41.4]]
        assert_problem(await c.get("/collections/Person"), 404)
        assert_problem(await c.get("/collections/Person/items"), 404)
        assert_problem(await c.get("/collections/Person/items/urn:ngsi-ld:Person:1"), 404)
        assert (await c.get("/api")).json()["components"]["parameters"]["collectionId"]["schema"]["enum"] \
            == ["ParkingSpot"]


async def test_other_tenant_sees_nothing(seeded: Any) -> None:
    async with ogc(seeded, token(seeded, tenant="lindmark", role="admin")) as c:
        assert (await c.get("/collections")).json()["collections"] == []
        assert_problem(await c.get("/collections/ParkingSpot/items"), 404)


async def test_a_public_city_header_does_not_open_another_city(tmp_path: Path) -> None:
    """The tenant is the path's: an anonymous caller naming a public city in NGSILD-Tenant is judged by the
    middleware for the city in the URL (not public: 401), and nothing of it is shown."""
    async for app in secure_app(tmp_path, public_tenants="lindmark"):
        async with client(app, token(app, tenant=CITY, role="editor"), tenant=CITY) as c:
            assert (await c.post("/entities", json=spot())).status_code == 201
        async with client(app, None, tenant="lindmark", base=OGC) as c:
            assert_problem(await c.get("/collections"), 401, "Unauthorized")
            assert_problem(await c.get("/collections/ParkingSpot/items"), 401, "Unauthorized")
