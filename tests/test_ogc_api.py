"""OGC API Features (urbanmim/ogc): Part 1 core/GeoJSON/HTML/OpenAPI and Part 3 CQL2 filters, over both
backends, through the HTTP API (entities are written with the NGSI-LD API, read back with /ogc)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.helpers import JSON, assert_problem, link, media, prop, rel

OGC = "http://testserver/ogc"
A, B = "city-a", "city-b"
SQUARE = [[10.0, 50.0], [10.01, 50.0], [10.01, 50.01], [10.0, 50.01], [10.0, 50.0]]


def point(x: float, y: float) -> dict[str, Any]:
    return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [x, y]}}


def sensor(n: int, x: float, y: float, no2: float, **extra: Any) -> dict[str, Any]:
    return {"id": f"urn:ngsi-ld:Sensor:{n}", "type": "Sensor", "location": point(x, y),
            "no2": prop(no2, observedAt=f"2024-05-0{n}T10:00:00Z"), "name": prop(f"Sensor {n}"), **extra}


SENSORS_A = [
    sensor(1, 10.001, 50.001, 12.5, status=prop("ok"), refDevice=rel("urn:ngsi-ld:Device:1")),
    sensor(2, 10.002, 50.002, 31.0, status=prop("ok")),
    sensor(3, 10.5, 50.5, 44.0, status=prop("broken")),
    sensor(4, 11.0, 51.0, 7.0),
    {"id": "urn:ngsi-ld:Sensor:5", "type": "Sensor", "name": prop("Sensor without place"), "no2": prop(20)},
]
BUILDINGS_A = [
    {"id": "urn:ngsi-ld:Building:B1", "type": "Building", "height": prop(12.5), "name": prop("Town hall"),
     "label": {"type": "LanguageProperty", "languageMap": {"en": "Town hall", "nl": "Stadhuis"}},
     "location": {"type": "GeoProperty", "value": {"type": "Polygon", "coordinates": [SQUARE]}}},
]
SENSORS_B = [sensor(7, -3.7, 40.4, 50.0), sensor(8, -3.71, 40.41, 60.0)]


async def post(client: Any, tenant: str, ent: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    r = await client.post("/entities", json=ent, headers={"NGSILD-Tenant": tenant, **(headers or {})})
    assert r.status_code == 201, r.text


@pytest.fixture
async def city(client: Any) -> Any:
    for ent in SENSORS_A + BUILDINGS_A:
        await post(client, A, ent)
    for ent in SENSORS_B:
        await post(client, B, ent)
    return client


async def get(client: Any, path: str, **params: Any) -> Any:
    headers = params.pop("headers", None)
    return await client.get(OGC + path, params=params or None, headers=headers)


def ids(body: dict[str, Any]) -> list[str]:
    return sorted(f["id"] for f in body["features"])


def rels(body: dict[str, Any]) -> dict[str, str]:
    return {lk["rel"]: lk["href"] for lk in body["links"] if lk.get("type") != "text/html"}


# ---- Part 1: landing, conformance, collections ------------------------------------------------

async def test_cities_and_landing_page(city: Any) -> None:
    r = await get(city, "")
    assert r.status_code == 200 and media(r) == JSON
    tenants = {c["tenant"]: c["href"] for c in r.json()["cities"]}
    assert tenants[A] == f"{OGC}/{A}" and tenants[B] == f"{OGC}/{B}"
    r = await get(city, "/" + A)
    assert r.status_code == 200
    links = rels(r.json())
    for rel_ in ("self", "service-desc", "conformance", "data", "http://www.opengis.net/def/rel/ogc/1.0/data"):
        assert rel_ in links, rel_
    assert links["data"] == f"{OGC}/{A}/collections"
    r = await get(city, f"/{A}/conformance")
    conf = r.json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core" in conf
    assert "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter" in conf


async def test_collections_one_per_type_and_tenant_with_extents(city: Any) -> None:
    body = (await get(city, f"/{A}/collections")).json()
    cols = {c["id"]: c for c in body["collections"]}
    assert set(cols) == {"Sensor", "Building"}
    s = cols["Sensor"]
    assert s["crs"] == ["http://www.opengis.net/def/crs/OGC/1.3/CRS84"]
    assert s["extent"]["spatial"]["bbox"] == [[10.001, 50.001, 11.0, 51.0]]
    assert s["extent"]["spatial"]["crs"] == "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
    start, end = s["extent"]["temporal"]["interval"][0]
    assert start == "2024-05-01T10:00:00Z"      # observedAt of sensor 1; sensor 5 has none: its modifiedAt
    assert end > "2024-05-04"
    assert cols["Building"]["extent"]["spatial"]["bbox"] == [[10.0, 50.0, 10.01, 50.01]]
    b = (await get(city, f"/{B}/collections")).json()
    assert [c["id"] for c in b["collections"]] == ["Sensor"]
    assert b["collections"][0]["extent"]["spatial"]["bbox"] == [[-3.71, 40.4, -3.7, 40.41]]
    one = (await get(city, f"/{A}/collections/Sensor")).json()
    assert one["id"] == "Sensor" and "items" in rels(one)


async def test_extent_follows_writes_at_once(city: Any) -> None:
    ext = (await get(city, f"/{B}/collections/Sensor")).json()["extent"]["spatial"]["bbox"]
    assert ext == [[-3.71, 40.4, -3.7, 40.41]]
    r = await city.patch("/entities/urn:ngsi-ld:Sensor:7/attrs", json={"location": point(-3.0, 41.0)},
                         headers={"NGSILD-Tenant": B})
    assert r.status_code == 204, r.text
    ext = (await get(city, f"/{B}/collections/Sensor")).json()["extent"]["spatial"]["bbox"]
    assert ext == [[-3.71, 40.41, -3.0, 41.0]]
    r = await city.delete("/entities/urn:ngsi-ld:Sensor:8", headers={"NGSILD-Tenant": B})
    assert r.status_code == 204
    body = (await get(city, f"/{B}/collections/Sensor")).json()
    assert body["extent"]["spatial"]["bbox"] == [[-3.0, 41.0, -3.0, 41.0]] and body["description"].startswith("1 ")


async def test_new_type_appears_at_once(city: Any) -> None:
    await post(city, B, {"id": "urn:ngsi-ld:Bench:1", "type": "Bench", "location": point(-3.7, 40.4)})
    body = (await get(city, f"/{B}/collections")).json()
    assert sorted(c["id"] for c in body["collections"]) == ["Bench", "Sensor"]


# ---- Part 1: items ----------------------------------------------------------------------------

async def test_items_are_geojson_features(city: Any) -> None:
    r = await get(city, f"/{A}/collections/Sensor/items", limit=100)
    assert r.status_code == 200 and media(r) == "application/geo+json"
    body = r.json()
    assert body["type"] == "FeatureCollection"
    assert body["numberMatched"] == 5 and body["numberReturned"] == 5
    f1 = next(f for f in body["features"] if f["id"] == "urn:ngsi-ld:Sensor:1")
    assert f1["geometry"] == {"type": "Point", "coordinates": [10.001, 50.001]}
    assert f1["properties"] == {"no2": 12.5, "name": "Sensor 1", "status": "ok", "refDevice": "urn:ngsi-ld:Device:1"}
    f5 = next(f for f in body["features"] if f["id"] == "urn:ngsi-ld:Sensor:5")
    assert f5["geometry"] is None
    b = (await get(city, f"/{A}/collections/Building/items")).json()["features"][0]
    assert b["geometry"]["type"] == "Polygon"
    assert b["properties"]["label"] == {"en": "Town hall", "nl": "Stadhuis"}


async def test_tenants_do_not_mix(city: Any) -> None:
    body = (await get(city, f"/{B}/collections/Sensor/items")).json()
    assert ids(body) == ["urn:ngsi-ld:Sensor:7", "urn:ngsi-ld:Sensor:8"]
    r = await get(city, f"/{B}/collections/Sensor/items/urn:ngsi-ld:Sensor:1")
    assert_problem(r, 404)


async def test_paging_with_next_and_prev_links(city: Any) -> None:
    seen: list[str] = []
    url = f"{OGC}/{A}/collections/Sensor/items?limit=2"
    pages = 0
    while url:
        body = (await city.get(url)).json()
        assert body["numberMatched"] == 5
        seen += [f["id"] for f in body["features"]]
        links = rels(body)
        if pages > 0:
            assert "prev" in links
        url = links.get("next")
        pages += 1
    assert pages == 3 and len(seen) == 5 and len(set(seen)) == 5
    q = parse_qs(urlsplit(links["prev"]).query)
    assert q["offset"] == ["2"] and q["limit"] == ["2"]


async def test_bbox(city: Any) -> None:
    body = (await get(city, f"/{A}/collections/Sensor/items", bbox="10.0,50.0,10.1,50.1")).json()
    assert ids(body) == ["urn:ngsi-ld:Sensor:1", "urn:ngsi-ld:Sensor:2"]
    assert body["numberMatched"] == 2
    body = (await get(city, f"/{A}/collections/Building/items", bbox="10.005,50.005,10.5,50.5")).json()
    assert ids(body) == ["urn:ngsi-ld:Building:B1"]         # the polygon intersects the box
    crs84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
    body = (await get(city, f"/{A}/collections/Sensor/items", bbox="10.0,50.0,10.1,50.1",
                      **{"bbox-crs": crs84})).json()
    assert body["numberMatched"] == 2
    body = (await get(city, f"/{B}/collections/Sensor/items", bbox="179,40,-3.705,41")).json()  # antimeridian
    assert ids(body) == ["urn:ngsi-ld:Sensor:8"]


@pytest.mark.parametrize("bbox", ["1,2,3", "a,b,c,d", "10,51,11,50", "0,0,200,1", "1,2,3,4,5", "nan,0,1,1"])
async def test_bad_bbox_is_400(city: Any, bbox: str) -> None:
    assert_problem(await get(city, f"/{A}/collections/Sensor/items", bbox=bbox), 400)


async def test_bbox_crs_other_than_crs84_is_400(city: Any) -> None:
    r = await get(city, f"/{A}/collections/Sensor/items", bbox="10,50,11,51",
                  **{"bbox-crs": "http://www.opengis.net/def/crs/EPSG/0/4326"})
    assert "CRS84" in assert_problem(r, 400)["detail"]


async def test_datetime_against_observed_at(city: Any) -> None:
    path = f"/{A}/collections/Sensor/items"
    assert ids((await get(city, path, datetime="2024-05-02T10:00:00Z")).json()) == ["urn:ngsi-ld:Sensor:2"]
    assert ids((await get(city, path, datetime="2024-05-02")).json()) == ["urn:ngsi-ld:Sensor:2"]
    got = ids((await get(city, path, datetime="2024-05-02T00:00:00Z/2024-05-03T23:00:00Z")).json())
    assert got == ["urn:ngsi-ld:Sensor:2", "urn:ngsi-ld:Sensor:3"]
    got = ids((await get(city, path, datetime="../2024-05-02T10:00:00Z")).json())
    assert got == ["urn:ngsi-ld:Sensor:1", "urn:ngsi-ld:Sensor:2"]
    # sensor 5 has no observedAt: its modifiedAt (now) counts
    got = ids((await get(city, path, datetime="2024-05-04T00:00:00Z/..")).json())
    assert got == ["urn:ngsi-ld:Sensor:4", "urn:ngsi-ld:Sensor:5"]
    for bad in ("yesterday", "2024-05-02T10:00:00", "2024-05-03T00:00:00Z/2024-05-01T00:00:00Z", "../.."):
        assert_problem(await get(city, path, datetime=bad), 400)


async def test_properties_selection(city: Any) -> None:
    body = (await get(city, f"/{A}/collections/Sensor/items", properties="no2,name", limit=10)).json()
    assert all(set(f["properties"]) <= {"no2", "name"} for f in body["features"])
    assert any(f["properties"] == {"no2": 12.5, "name": "Sensor 1"} for f in body["features"])
    assert_problem(await get(city, f"/{A}/collections/Sensor/items", properties="no2,nope"), 400)


@pytest.mark.parametrize("limit", ["0", "-1", "10001", "ten"])
async def test_limit_bounds(city: Any, limit: str) -> None:
    assert_problem(await get(city, f"/{A}/collections/Sensor/items", limit=limit), 400)


async def test_limit_edges_and_default(city: Any) -> None:
    assert (await get(city, f"/{A}/collections/Sensor/items", limit="10000")).status_code == 200
    body = (await get(city, f"/{A}/collections/Sensor/items", limit="1")).json()
    assert body["numberReturned"] == 1 and "next" in rels(body)


async def test_single_feature(city: Any) -> None:
    r = await get(city, f"/{A}/collections/Sensor/items/urn:ngsi-ld:Sensor:2")
    assert r.status_code == 200 and media(r) == "application/geo+json"
    f = r.json()
    assert f["type"] == "Feature" and f["id"] == "urn:ngsi-ld:Sensor:2" and f["properties"]["no2"] == 31.0
    assert_problem(await get(city, f"/{A}/collections/Sensor/items/urn:ngsi-ld:Sensor:99"), 404)
    # an entity of another type is not a feature of this collection
    assert_problem(await get(city, f"/{A}/collections/Sensor/items/urn:ngsi-ld:Building:B1"), 404)


async def test_unknown_things_are_404(city: Any) -> None:
    assert_problem(await get(city, f"/{A}/collections/Nope"), 404)
    assert_problem(await get(city, f"/{A}/collections/Nope/items"), 404)
    assert_problem(await get(city, "/no-such-city/collections"), 404)
    assert_problem(await get(city, "/no-such-city"), 404)


async def test_unknown_query_parameter_is_400(city: Any) -> None:
    assert_problem(await get(city, f"/{A}/collections", foo="1"), 400)
    assert_problem(await get(city, f"/{A}/collections/Sensor/items", foo="1"), 400)
    assert_problem(await get(city, f"/{A}/collections", f="xml"), 400)


async def test_queryables_as_query_parameters(city: Any) -> None:
    body = (await get(city, f"/{A}/collections/Sensor/items", status="ok")).json()
    assert ids(body) == ["urn:ngsi-ld:Sensor:1", "urn:ngsi-ld:Sensor:2"]
    body = (await get(city, f"/{A}/collections/Sensor/items", no2="31")).json()
    assert ids(body) == ["urn:ngsi-ld:Sensor:2"]


# ---- Part 3: filters --------------------------------------------------------------------------

FILTERS = [
    ("no2 > 30", [2, 3]),
    ("no2 >= 31 AND no2 < 44", [2]),
    ("no2 = 12.5 OR status = 'broken'", [1, 3]),
    ("NOT no2 > 30", [1, 4, 5]),
    ("NOT (status = 'ok')", [3]),                     # SQL semantics: no status -> unknown -> not a match
    ("status <> 'ok'", [3]),
    ("name LIKE 'Sensor _'", [1, 2, 3, 4]),
    ("name LIKE '%place'", [5]),
    ("name NOT LIKE 'Sensor%'", []),
    ("no2 IN (7, 44)", [3, 4]),
    ("status NOT IN ('ok')", [3]),
    ("no2 BETWEEN 10 AND 31", [1, 2, 5]),
    ("no2 NOT BETWEEN 10 AND 31", [3, 4]),
    ("status IS NULL", [4, 5]),
    ("status IS NOT NULL", [1, 2, 3]),
    ("refDevice = 'urn:ngsi-ld:Device:1'", [1]),
    ("S_INTERSECTS(geometry, POLYGON((10 50, 10.1 50, 10.1 50.1, 10 50.1, 10 50)))", [1, 2]),
    ("S_WITHIN(geometry, POLYGON((10 50, 10.6 50, 10.6 50.6, 10 50.6, 10 50)))", [1, 2, 3]),
    ("S_INTERSECTS(geometry, POINT(11 51))", [4]),
    ("NOT S_INTERSECTS(geometry, POLYGON((10 50, 10.1 50, 10.1 50.1, 10 50.1, 10 50)))", [3, 4]),
    ("NOT S_WITHIN(geometry, POLYGON((10 50, 10.6 50, 10.6 50.6, 10 50.6, 10 50)))", [4]),
    ("S_INTERSECTS(geometry, BBOX(10, 50, 10.1, 50.1))", [1, 2]),
    ("BBOX(geometry, 10, 50, 10.1, 50.1)", [1, 2]),
    ("S_WITHIN(geometry, POLYGON((10 50, 10.6 50, 10.6 50.6, 10 50.6, 10 50))) AND no2 > 20", [2, 3]),
    ("no2 > 40 OR S_INTERSECTS(geometry, POINT(11 51))", [3, 4]),
    ("INCLUDE", [1, 2, 3, 4, 5]),
    ("EXCLUDE", []),
]


@pytest.mark.parametrize(("cql", "expected"), FILTERS)
async def test_cql2_filters(city: Any, cql: str, expected: list[int]) -> None:
    r = await get(city, f"/{A}/collections/Sensor/items", filter=cql, limit=100)
    assert r.status_code == 200, r.text
    body = r.json()
    assert ids(body) == sorted(f"urn:ngsi-ld:Sensor:{n}" for n in expected), cql
    assert body["numberMatched"] == len(expected)


async def test_filter_with_bbox_and_datetime(city: Any) -> None:
    r = await get(city, f"/{A}/collections/Sensor/items", filter="no2 > 20", bbox="10,50,10.6,50.6",
                  datetime="2024-05-03T00:00:00Z/..", **{"filter-lang": "cql2-text"})
    assert ids(r.json()) == ["urn:ngsi-ld:Sensor:3"]
    r = await get(city, f"/{A}/collections/Sensor/items", bbox="10,50,10.6,50.6",
                  filter="S_INTERSECTS(geometry, POINT(10.5 50.5))")
    assert ids(r.json()) == ["urn:ngsi-ld:Sensor:3"]


async def test_filter_paging_counts_matches(city: Any) -> None:
    body = (await get(city, f"/{A}/collections/Sensor/items", filter="no2 > 10", limit=2)).json()
    assert body["numberMatched"] == 4 and body["numberReturned"] == 2 and "next" in rels(body)


@pytest.mark.parametrize("cql", [
    "no2 >",                                     # syntax
    "nope = 1",                                  # unknown queryable
    "no2 = no2",                                 # property against property
    "no2 + 1 > 3",                               # arithmetic
    "T_AFTER(no2, TIMESTAMP('2024-01-01T00:00:00Z'))",
    "S_TOUCHES(geometry, POINT(1 2))",
    "S_INTERSECTS(no2, POINT(1 2))",             # not a geometry property
    "S_INTERSECTS(geometry, POINT(500 2))",      # not CRS84
    "CASEI(name) = 'x'",
    "",
])
async def test_bad_filter_is_400(city: Any, cql: str) -> None:
    body = assert_problem(await get(city, f"/{A}/collections/Sensor/items", filter=cql), 400)
    assert body["detail"]


async def test_filter_lang_and_crs(city: Any) -> None:
    path = f"/{A}/collections/Sensor/items"
    assert_problem(await get(city, path, filter="no2 > 1", **{"filter-lang": "cql2-json"}), 400)
    assert_problem(await get(city, path, filter="no2 > 1",
                             **{"filter-crs": "http://www.opengis.net/def/crs/EPSG/0/3857"}), 400)
    ok = await get(city, path, filter="no2 > 1", **{"filter-crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84"})
    assert ok.status_code == 200


async def test_queryables(city: Any) -> None:
    r = await get(city, f"/{A}/collections/Sensor/queryables")
    assert r.status_code == 200 and media(r) == "application/schema+json"
    body = r.json()
    props = body["properties"]
    assert props["geometry"]["format"] == "geometry-any"
    assert props["no2"]["type"] == "number"
    assert props["name"]["type"] == "string"
    assert props["refDevice"]["x-ngsi-ld-types"] == ["Relationship"]
    assert body["additionalProperties"] is False
    # a client that asks for JSON without naming schema+json (GDAL 3.6) gets application/json
    r = await get(city, f"/{A}/collections/Sensor/queryables",
                  headers={"Accept": "application/geo+json, application/json"})
    assert media(r) == JSON and r.json() == body


# ---- names from the type's own @context -------------------------------------------------------

async def test_names_come_from_the_hosted_context_of_the_type(client: Any) -> None:
    ctx = {"Streetlamp": "https://example.org/city/Streetlamp", "power": "https://example.org/city/power",
           "watts": "https://example.org/other/power"}
    r = await client.post("/jsonldContexts", json={"@context": ctx})
    assert r.status_code == 201, r.text
    url = "http://testserver" + r.headers["Location"]
    ent = {"id": "urn:ngsi-ld:Streetlamp:1", "type": "Streetlamp", "power": prop(40), "location": point(1, 2),
           "watts": prop(5), "dim": prop(True)}
    await post(client, A, ent, link(url))
    cols = (await get(client, f"/{A}/collections")).json()["collections"]
    assert [c["id"] for c in cols] == ["Streetlamp"]
    f = (await get(client, f"/{A}/collections/Streetlamp/items")).json()["features"][0]
    # power and watts share the last IRI segment: the term of the type's context wins for both
    assert f["properties"] == {"power": 40, "watts": 5, "dim": True}
    body = (await get(client, f"/{A}/collections/Streetlamp/items", filter="power = 40 AND watts < 10")).json()
    assert len(body["features"]) == 1


async def test_default_tenant_is_tilde(client: Any) -> None:
    r = await client.post("/entities", json={"id": "urn:ngsi-ld:Tree:1", "type": "Tree", "location": point(1, 2)})
    assert r.status_code == 201
    cities = (await get(client, "")).json()["cities"]
    assert {"tenant": "", "title": "default tenant", "href": f"{OGC}/~"} in cities
    body = (await get(client, "/~/collections/Tree/items")).json()
    assert ids(body) == ["urn:ngsi-ld:Tree:1"]


# ---- HTML and OpenAPI -------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["", "/" + A, f"/{A}/conformance", f"/{A}/collections", f"/{A}/collections/Sensor",
                                  f"/{A}/collections/Sensor/items", f"/{A}/collections/Sensor/queryables",
                                  f"/{A}/collections/Sensor/items/urn:ngsi-ld:Sensor:1", f"/{A}/api"])
async def test_html_pages_are_plain_and_accessible(city: Any, path: str) -> None:
    for r in (await get(city, path, f="html"), await get(city, path, headers={"Accept": "text/html,*/*;q=0.8"})):
        assert r.status_code == 200 and media(r) == "text/html", r.text
        text = r.text
        assert text.startswith("<!doctype html>") and '<html lang="en">' in text
        assert text.count("<h1>") == 1 and "<title>" in text
        if "<table>" in text:
            assert text.count("<table>") == text.count("<caption>")
        assert "<script" not in text


async def test_html_escapes_values(client: Any) -> None:
    await post(client, A, {"id": "urn:ngsi-ld:Sensor:x", "type": "Sensor", "name": prop("<script>alert(1)</script>")})
    r = await get(client, f"/{A}/collections/Sensor/items", f="html")
    assert "<script>" not in r.text and "&lt;script&gt;" in r.text


async def test_accept_json_and_default(city: Any) -> None:
    r = await get(city, f"/{A}/collections", headers={"Accept": "application/json"})
    assert media(r) == JSON
    r = await get(city, f"/{A}/collections/Sensor/items", headers={"Accept": "application/geo+json"})
    assert media(r) == "application/geo+json"


async def test_openapi_document_is_valid(city: Any) -> None:
    from openapi_spec_validator import validate

    r = await get(city, f"/{A}/api")
    assert r.status_code == 200 and media(r) == "application/vnd.oai.openapi+json"
    doc = r.json()
    validate(doc)
    assert doc["servers"] == [{"url": f"{OGC}/{A}"}]
    assert doc["components"]["parameters"]["collectionId"]["schema"]["enum"] == ["Building", "Sensor"]
    assert doc["components"]["parameters"]["limit"]["schema"]["maximum"] == 10000
