"""GET /entities (clause 5.7.2): type expressions (4.17), id/idPattern, attrs/pick/omit, the query
language q (4.9), scopeQ (4.19), geo-queries (4.10), pagination and counting (5.5.9, 4.12)."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.helpers import CORE_CONTEXT, GEOJSON, assert_problem, check_all, create, media, prop, query_ids, rel

V1, V2, V3 = (f"urn:ngsi-ld:Vehicle:{i}" for i in (1, 2, 3))
B1, P1 = "urn:ngsi-ld:Building:B1", "urn:ngsi-ld:Parking:P1"
SQUARE = [[10.0, 50.0], [11.0, 50.0], [11.0, 51.0], [10.0, 51.0], [10.0, 50.0]]

DATA = [
    {"id": V1, "type": "Vehicle", "scope": "/Madrid/Centro",
     "speed": prop(80, unitCode="KMH", observedAt="2024-01-01T10:00:00Z"), "brand": prop("Mercedes"),
     "colour": prop("red"), "isParked": rel(P1), "address": prop({"city": "Madrid", "street": "Gran Via"}),
     "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [2.15, 41.39]}},
     "electric": prop(False)},
    {"id": V2, "type": "Vehicle", "scope": "/Madrid/Norte",
     "speed": prop(40), "brand": prop("Seat"), "colour": prop("blue"), "isParked": rel("urn:ngsi-ld:Parking:P2"),
     "address": prop({"city": "Barcelona"}),
     "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [2.20, 41.40]}},
     "observationSpace": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [10.5, 50.5]}},
     "electric": prop(True)},
    {"id": V3, "type": ["Vehicle", "Car"], "scope": ["/Barcelona", "/Madrid/Centro/Sol"],
     "speed": prop(120), "brand": prop("Mercedes"),
     "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [3.0, 42.0]}}},
    {"id": B1, "type": "Building", "name": prop("Town hall"),
     "location": {"type": "GeoProperty", "value": {"type": "Polygon", "coordinates": [SQUARE]}}},
    {"id": P1, "type": "Parking", "name": prop("Central")},
]


@pytest.fixture
async def data(client):
    for ent in DATA:
        await create(client, ent)
    return client


async def ids(client, **params):
    return await query_ids(client, params)


# ---- type, id, idPattern -------------------------------------------------------------------------

async def test_type_expressions(data):
    assert await ids(data, type="Vehicle") == [V1, V2, V3]
    assert await ids(data, type="Vehicle,Building") == sorted([V1, V2, V3, B1])
    assert await ids(data, type="Vehicle|Building") == sorted([V1, V2, V3, B1])
    assert await ids(data, type="Vehicle;Car") == [V3]
    assert await ids(data, type="(Vehicle;Car)|Building") == sorted([V3, B1])
    assert await ids(data, type="Unknown") == []
    assert await ids(data, type="https://uri.etsi.org/ngsi-ld/default-context/Parking") == [P1]


async def test_type_expression_syntax_errors(data):
    for bad in ("(Vehicle", "Vehicle;", "Vehicle||Car", "Vehicle)"):
        assert_problem(await data.get("/entities", params={"type": bad}), 400, "BadRequestData")


async def test_id_and_id_pattern(data):
    assert await ids(data, id=f"{V1},{V3}", type="Vehicle") == [V1, V3]
    assert await ids(data, id=V2, type="Vehicle") == [V2]
    assert await ids(data, idPattern=r"^urn:ngsi-ld:Vehicle:[12]$", type="Vehicle") == [V1, V2]
    assert await ids(data, idPattern="Building", type="Building,Vehicle") == [B1]
    assert_problem(await data.get("/entities", params={"idPattern": "([", "type": "Vehicle"}), 400,
                   "BadRequestData")
    assert_problem(await data.get("/entities", params={"id": "not a uri", "type": "Vehicle"}), 400,
                   "BadRequestData")


# ---- attrs / pick / omit / representation --------------------------------------------------------

async def test_attrs_filters_and_projects(data):
    r = await data.get("/entities", params={"attrs": "colour"})
    assert r.status_code == 200
    body = sorted(r.json(), key=lambda e: e["id"])
    assert body == [{"id": V1, "type": "Vehicle", "colour": prop("red")},
                    {"id": V2, "type": "Vehicle", "colour": prop("blue")}]


async def test_pick_and_omit(data):
    r = await data.get("/entities", params={"type": "Vehicle", "pick": "id,speed", "options": "keyValues"})
    assert sorted(r.json(), key=lambda e: e["id"]) == [{"id": V1, "speed": 80}, {"id": V2, "speed": 40},
                                                       {"id": V3, "speed": 120}]
    r = await data.get("/entities", params={"type": "Parking", "omit": "name"})
    assert r.json() == [{"id": P1, "type": "Parking"}]
    for params in ({"pick": "name", "omit": "name"}, {"pick": "name", "attrs": "name"},
                   {"omit": "name", "attrs": "name"}):
        assert_problem(await data.get("/entities", params={"type": "Parking", **params}), 400, "BadRequestData")


async def test_query_key_values_and_link_header(data):
    r = await data.get("/entities", params={"type": "Parking", "options": "keyValues"})
    assert r.json() == [{"id": P1, "type": "Parking", "name": "Central"}]
    assert f"<{CORE_CONTEXT}>" in r.headers["link"]


async def test_query_geojson_feature_collection(data):
    r = await data.get("/entities", params={"type": "Vehicle", "id": V1}, headers={"Accept": GEOJSON})
    assert r.status_code == 200 and media(r) == GEOJSON
    fc = r.json()
    assert fc["type"] == "FeatureCollection"
    assert [f["id"] for f in fc["features"]] == [V1]
    assert fc["features"][0]["geometry"] == {"type": "Point", "coordinates": [2.15, 41.39]}
    assert "@context" not in fc["features"][0]


# ---- q ---------------------------------------------------------------------------------------------

Q_CASES = [
    ("speed>50", [V1, V3]),
    ("speed>=80", [V1, V3]),
    ("speed<80", [V2]),
    ("speed<=80", [V1, V2]),
    ("speed==40", [V2]),
    ("speed!=40", [V1, V3]),
    ("speed==30..90", [V1, V2]),
    ("speed==40,120", [V2, V3]),
    ('brand=="Mercedes"', [V1, V3]),
    ('brand=="Seat","Mercedes"', [V1, V2, V3]),
    ('colour!="red"', [V2]),
    ("brand~=^Merc", [V1, V3]),
    ("brand!~=^Merc", [V2]),
    ('address[city]=="Madrid"', [V1]),
    ('address[city]=="Barcelona"', [V2]),
    ("speed.observedAt>=2024-01-01T00:00:00Z", [V1]),
    ('speed.unitCode=="KMH"', [V1]),
    (f'isParked=="{P1}"', [V1]),
    ("isParked", [V1, V2]),
    ("electric==true", [V2]),
    ("electric==false", [V1]),
    ('speed>50;brand=="Mercedes"', [V1, V3]),
    ('speed>100|brand=="Seat"', [V2, V3]),
    ('(brand=="Seat"|speed>100);colour=="blue"', [V2]),
    ('brand=="Mercedes";(speed<100|colour=="blue")', [V1]),
    ("colour", [V1, V2]),
]


async def test_q(data):
    results = [((q, expected), await ids(data, type="Vehicle", q=q)) for q, expected in Q_CASES]
    check_all(results, lambda case, got: _eq(got, case[1]))


def _eq(got, expected):
    assert got == expected, f"got {got}"


async def test_q_alone_is_a_filter(data):
    assert await ids(data, q="speed>100") == [V3]


async def test_q_syntax_errors(data):
    bad = ["speed>>1", "speed==", "(speed>1", "speed>1)", "speed>1;", "sp eed>1", 'brand=="unterminated',
           "speed==1..", ";speed>1"]
    results = [(q, await data.get("/entities", params={"type": "Vehicle", "q": q})) for q in bad]
    check_all(results, lambda q, r: assert_problem(r, 400, "BadRequestData"))


# ---- scopeQ ----------------------------------------------------------------------------------------

SCOPE_CASES = [
    ("/Madrid/Centro", [V1]),
    ("/Madrid/#", [V1, V2, V3]),
    ("/Madrid/+", [V1, V2]),
    ("/Madrid", []),
    ("/Barcelona,/Madrid/Norte", [V2, V3]),
    ("/Barcelona;/Madrid/Centro/Sol", [V3]),
]


async def test_scope_q(data):
    results = [((sq, expected), await ids(data, type="Vehicle", scopeQ=sq)) for sq, expected in SCOPE_CASES]
    check_all(results, lambda case, got: _eq(got, case[1]))


async def test_scope_q_syntax_error(data):
    assert_problem(await data.get("/entities", params={"type": "Vehicle", "scopeQ": "Madrid"}), 400,
                   "BadRequestData")


# ---- geo-queries -----------------------------------------------------------------------------------

BARCELONA_BOX = "[[[2.1,41.3],[2.3,41.3],[2.3,41.5],[2.1,41.5],[2.1,41.3]]]"


GEO_CASES = [
    ({"georel": "near;maxDistance==2000", "geometry": "Point", "coordinates": "[2.15,41.39]"}, [V1]),
    ({"georel": "near;maxDistance==10000", "geometry": "Point", "coordinates": "[2.15,41.39]"}, [V1, V2]),
    ({"georel": "near;minDistance==2000", "geometry": "Point", "coordinates": "[2.15,41.39]"}, [B1, V2, V3]),
    ({"georel": "within", "geometry": "Polygon", "coordinates": BARCELONA_BOX}, [V1, V2]),
    ({"georel": "intersects", "geometry": "Polygon", "coordinates": BARCELONA_BOX}, [V1, V2]),
    ({"georel": "disjoint", "geometry": "Polygon", "coordinates": BARCELONA_BOX}, [B1, V3]),
    ({"georel": "equals", "geometry": "Point", "coordinates": "[2.15,41.39]"}, [V1]),
    ({"georel": "contains", "geometry": "Point", "coordinates": "[10.5,50.5]"}, [B1]),
    ({"georel": "intersects", "geometry": "Point", "coordinates": "[10.5,50.5]"}, [B1]),
    ({"georel": "overlaps", "geometry": "Polygon",
      "coordinates": "[[[10.5,50.5],[12,50.5],[12,52],[10.5,52],[10.5,50.5]]]"}, [B1]),
    ({"georel": "within", "geometry": "Polygon",
      "coordinates": "[[[10.4,50.4],[10.6,50.4],[10.6,50.6],[10.4,50.6],[10.4,50.4]]]",
      "geoproperty": "observationSpace"}, [V2]),
]


async def test_geo_queries(data):
    results = [((params, expected), await ids(data, **params)) for params, expected in GEO_CASES]
    check_all(results, lambda case, got: _eq(got, case[1]))


GEO_ERRORS = [
    {"georel": "near", "geometry": "Point", "coordinates": "[2.15,41.39]"},
    {"georel": "near;maxDistance==-5", "geometry": "Point", "coordinates": "[2.15,41.39]"},
    {"georel": "nearby", "geometry": "Point", "coordinates": "[2.15,41.39]"},
    {"georel": "within", "geometry": "Circle", "coordinates": "[2.15,41.39]"},
    {"georel": "within", "geometry": "Polygon", "coordinates": "[2.15,41.39]"},
    {"georel": "within", "geometry": "Polygon", "coordinates": "not json"},
    {"georel": "within", "geometry": "Polygon"},
    {"georel": "intersects", "geometry": "Point", "coordinates": "[200,41]"},
    {"geometry": "Point", "coordinates": "[2.15,41.39]"},
]


async def test_geo_query_errors(data):
    results = [(params, await data.get("/entities", params=params)) for params in GEO_ERRORS]
    check_all(results, lambda params, r: assert_problem(r, 400, "BadRequestData"))


# ---- paging and counting ---------------------------------------------------------------------------

def _links(resp) -> dict[str, dict[str, list[str]]]:
    out = {}
    for m in re.finditer(r'<([^>]*)>\s*;\s*rel="?([a-z]+)"?', resp.headers.get("link", "")):
        out[m.group(2)] = parse_qs(urlsplit(m.group(1)).query)
    return out


async def test_paging_links_and_count(client):
    for i in range(5):
        await create(client, {"id": f"urn:ngsi-ld:Thing:{i}", "type": "Thing", "n": prop(i)})
    r = await client.get("/entities", params={"type": "Thing", "limit": 2, "count": "true"})
    assert r.status_code == 200
    assert [e["id"] for e in r.json()] == ["urn:ngsi-ld:Thing:0", "urn:ngsi-ld:Thing:1"]
    assert r.headers["NGSILD-Results-Count"] == "5"
    links = _links(r)
    assert "prev" not in links
    assert links["next"]["offset"] == ["2"] and links["next"]["limit"] == ["2"]
    assert links["next"]["type"] == ["Thing"]

    r = await client.get("/entities", params={"type": "Thing", "limit": 2, "offset": 2})
    links = _links(r)
    assert [e["id"] for e in r.json()] == ["urn:ngsi-ld:Thing:2", "urn:ngsi-ld:Thing:3"]
    assert links["prev"]["offset"] == ["0"] and links["next"]["offset"] == ["4"]
    assert "NGSILD-Results-Count" not in r.headers

    r = await client.get("/entities", params={"type": "Thing", "limit": 2, "offset": 4, "count": "true"})
    assert [e["id"] for e in r.json()] == ["urn:ngsi-ld:Thing:4"]
    links = _links(r)
    assert "next" not in links and links["prev"]["offset"] == ["2"]


async def test_count_with_filters_and_limit_zero(data):
    r = await data.get("/entities", params={"type": "Vehicle", "q": "speed>50", "count": "true", "limit": 0})
    assert r.status_code == 200
    assert r.json() == []
    assert r.headers["NGSILD-Results-Count"] == "2"


async def test_default_limit_is_20(client):
    await client.post("/entityOperations/create",
                      json=[{"id": f"urn:ngsi-ld:Thing:{i:02d}", "type": "Thing"} for i in range(25)])
    r = await client.get("/entities", params={"type": "Thing", "count": "true"})
    assert len(r.json()) == 20
    assert r.headers["NGSILD-Results-Count"] == "25"


async def test_limit_errors(data):
    body = assert_problem(await data.get("/entities", params={"type": "Vehicle", "limit": 1001}), 403,
                          "TooManyResults")
    assert body["status"] == 403
    assert (await data.get("/entities", params={"type": "Vehicle", "limit": 1000})).status_code == 200
    assert_problem(await data.get("/entities", params={"type": "Vehicle", "limit": 0}), 400, "BadRequestData")
    assert_problem(await data.get("/entities", params={"type": "Vehicle", "limit": -1}), 400, "BadRequestData")
    assert_problem(await data.get("/entities", params={"type": "Vehicle", "limit": "ten"}), 400, "BadRequestData")
    assert_problem(await data.get("/entities", params={"type": "Vehicle", "offset": -3}), 400, "BadRequestData")
    assert_problem(await data.get("/entities", params={"type": "Vehicle", "count": "perhaps"}), 400,
                   "BadRequestData")


async def test_query_unknown_type_is_empty(data):
    r = await data.get("/entities", params={"type": "Nothing"})
    assert r.status_code == 200 and r.json() == []
