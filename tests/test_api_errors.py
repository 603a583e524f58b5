"""Every error path of the API answers an NGSI-LD ProblemDetails (clause 5.5.2, RFC 7807):
application/json, ``type`` under https://uri.etsi.org/ngsi-ld/errors/, ``title``, ``status`` equal
to the HTTP status, ``detail`` — and never a 500."""

from __future__ import annotations

import pytest

from tests.helpers import API, JSONLD, assert_problem, check_all, create, link, prop, vehicle

EID = "urn:ngsi-ld:Vehicle:1"
MiB = 1_048_576


@pytest.fixture
async def seeded(client):
    await create(client, vehicle(1, speed=prop(1)))
    return client


# ---- 400 InvalidRequest: the body is not JSON ----------------------------------------------------------

BODY_ENDPOINTS = [
    ("POST", "/entities"),
    ("PUT", f"/entities/{EID}"),
    ("PATCH", f"/entities/{EID}"),
    ("POST", f"/entities/{EID}/attrs"),
    ("PATCH", f"/entities/{EID}/attrs"),
    ("PATCH", f"/entities/{EID}/attrs/speed"),
    ("PUT", f"/entities/{EID}/attrs/speed"),
    ("POST", "/entityOperations/create"),
    ("POST", "/entityOperations/upsert"),
    ("POST", "/entityOperations/update"),
    ("POST", "/entityOperations/merge"),
    ("POST", "/entityOperations/delete"),
    ("POST", "/jsonldContexts"),
]


@pytest.mark.parametrize(("method", "path"), BODY_ENDPOINTS)
async def test_invalid_json_400(seeded, method, path):
    results = []
    for body in (b'{"id": ', b"\xff\xfe garbage", b"{'single': 'quotes'}", b""):
        results.append((body, await seeded.request(method, path, content=body,
                                                   headers={"Content-Type": "application/json"})))
    check_all(results, lambda body, r: assert_problem(r, 400, "InvalidRequest"))


# ---- 415 Unsupported Media Type ------------------------------------------------------------------------

async def test_wrong_content_type_415(seeded):
    endpoints = [("POST", "/entities"), ("PUT", f"/entities/{EID}"), ("POST", f"/entities/{EID}/attrs"),
                 ("PUT", f"/entities/{EID}/attrs/speed"), ("POST", "/entityOperations/create"),
                 ("POST", "/entityOperations/delete"), ("POST", "/jsonldContexts")]
    results = []
    for method, path in endpoints:
        for ctype in ("text/plain", "application/xml", "application/merge-patch+json", None):
            headers = {"Content-Type": ctype} if ctype else {}
            r = await seeded.request(method, path, content=b'{"id": "urn:x:1", "type": "T"}', headers=headers)
            results.append(((method, path, ctype), r))
    check_all(results, lambda case, r: assert_problem(r, 415))


async def test_merge_patch_content_type_only_where_allowed(seeded):
    for path in (f"/entities/{EID}", f"/entities/{EID}/attrs", f"/entities/{EID}/attrs/speed"):
        r = await seeded.patch(path, content=b'{"speed": 3}' if not path.endswith("speed") else b'{"value": 3}',
                               headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 204, (path, r.text)
    r = await seeded.patch(f"/entities/{EID}", content=b'{"speed": 3}', headers={"Content-Type": "text/plain"})
    assert_problem(r, 415)


# ---- 413 Payload Too Large -----------------------------------------------------------------------------

async def test_body_over_limit_413(client):
    big = vehicle(1, blob=prop("x" * (MiB + 10)))
    assert_problem(await client.post("/entities", json=big), 413)
    assert_problem(await client.post(f"/entities/{EID}/attrs", json={"blob": prop("x" * (MiB + 10))}), 413)


async def test_chunked_body_over_limit_413(client):
    async def chunks():
        yield b'{"id": "urn:ngsi-ld:Vehicle:1", "type": "Vehicle", "blob": "'
        for _ in range(20):
            yield b"x" * 65536
        yield b'"}'
    r = await client.post("/entities", content=chunks(), headers={"Content-Type": "application/json"})
    assert_problem(r, 413)


async def test_body_just_under_limit_is_accepted(client):
    ent = vehicle(1, blob=prop("x" * (MiB - 200)))
    r = await client.post("/entities", json=ent)
    assert r.status_code == 201


async def test_invalid_content_length_400(client):
    r = await client.post("/entities", content=b"{}",
                          headers={"Content-Type": "application/json", "Content-Length": "abc"})
    assert_problem(r, 400, "InvalidRequest")


# ---- 404 / 405 -----------------------------------------------------------------------------------------

async def test_unknown_route_404(client):
    results = [(path, await client.get(path)) for path in ("/nothing", "/entity", "/subscriptionsx", "/v2/entities")]
    check_all(results, lambda path, r: assert_problem(r, 404, "ResourceNotFound"))


async def test_unknown_route_outside_api_404(client):
    r = await client.get("http://testserver/not-ngsi-ld")
    assert_problem(r, 404, "ResourceNotFound")


METHOD_CASES = [
    ("POST", "/types"),
    ("DELETE", "/attributes"),
    ("GET", "/entityOperations/create"),
    ("PUT", "/entityOperations/delete"),
    ("POST", f"/entities/{EID}"),
    ("PUT", "/jsonldContexts"),
]


async def test_wrong_method_405(seeded):
    def check(case, r):
        assert_problem(r, 405)
        assert "allow" in r.headers

    check_all([(case, await seeded.request(*case)) for case in METHOD_CASES], check)


# ---- errors of each endpoint, all with the same shape --------------------------------------------------

async def test_catalogue_of_errors(seeded, client):
    c = seeded
    cases = [
        (await c.post("/entities", json=vehicle(1)), 409, "AlreadyExists"),
        (await c.get("/entities/urn:ngsi-ld:Vehicle:404"), 404, "ResourceNotFound"),
        (await c.get(f"/entities/{EID}", headers={"Accept": "image/png"}), 406, None),
        (await c.get("/entities", params={"type": "Vehicle", "limit": 5000}), 403, "TooManyResults"),
        (await c.get("/entities", params={"type": "Vehicle", "limit": 0}), 400, "BadRequestData"),
        (await c.get("/entities", params={"type": "Vehicle", "q": "speed>"}), 400, "BadRequestData"),
        (await c.get("/entities", params={"type": "Vehicle", "scopeQ": "//"}), 400, "BadRequestData"),
        (await c.get("/entities", params={"type": "Vehicle", "georel": "near"}), 400, "BadRequestData"),
        (await c.get("/entities", params={"type": ""}), 400, "BadRequestData"),
        (await c.get("/entities", params={"type": "Vehicle", "attrs": "a,,b"}), 400, "BadRequestData"),
        (await c.get("/entities", headers={"NGSILD-Tenant": "ghost"}, params={"type": "T"}), 404,
         "NonexistentTenant"),
        (await c.post("/entities", json=vehicle(2), headers=link("http://127.0.0.1:1/ctx.jsonld")), 504,
         "LdContextNotAvailable"),
        (await c.post("/entities", json=vehicle(2), headers={"Content-Type": JSONLD}), 400, "BadRequestData"),
        (await c.post("/entities", json=dict(vehicle(2), **{"@context": {}})), 400, "BadRequestData"),
        (await c.patch(f"/entities/{EID}/attrs/nothing", json={"value": 1}), 404, "ResourceNotFound"),
        (await c.delete(f"/entities/{EID}/attrs/nothing"), 404, "ResourceNotFound"),
        (await c.post("/entityOperations/upsert", params={"options": "sideways"}, json=[vehicle(3)]), 400,
         "BadRequestData"),
        (await c.post("/entityOperations/update", params={"options": "replace"}, json=[vehicle(1)]), 400,
         "BadRequestData"),
        (await c.get("/types/Nothing"), 404, "ResourceNotFound"),
        (await c.get("/attributes/nothing"), 404, "ResourceNotFound"),
        (await c.get("/jsonldContexts/nothing"), 404, "ResourceNotFound"),
        # no entity id in the URL of a single-entity write: "Entity Id is not present" (5.6.2.4 etc.)
        (await c.put("/entities", json=vehicle(1)), 400, "BadRequestData"),
        (await c.patch("/entities", json={"speed": 1}), 400, "BadRequestData"),
    ]
    for r, status, problem in cases:
        assert_problem(r, status, problem)


async def test_tenant_header_echoed_on_errors(seeded):
    r = await seeded.post("/entities", json=vehicle(1), headers={"NGSILD-Tenant": "t1"})
    assert r.status_code == 201
    r = await seeded.post("/entities", json=vehicle(1), headers={"NGSILD-Tenant": "t1"})
    assert_problem(r, 409, "AlreadyExists")
    assert r.headers.get("NGSILD-Tenant") == "t1"


# ---- never a 500 ---------------------------------------------------------------------------------------

WEIRD_BODIES = [
    b"null", b"true", b"42", b'"string"', b"[]", b"{}", b"[null]", b"[[]]", b'{"id": null, "type": null}',
    b'{"id": 5, "type": 5}', b'{"id": "urn:x:1", "type": []}', b'{"id": "urn:x:1", "type": [5]}',
    b'{"id": "urn:x:1", "type": "T", "a": null}', b'{"id": "urn:x:1", "type": "T", "a": []}',
    b'{"id": "urn:x:1", "type": "T", "a": {"type": "Property", "value": NaN}}',
    b'{"id": "urn:x:1", "type": "T", "a": {"type": ["Property"], "value": 1}}',
    b'{"id": "urn:x:1", "type": "T", "a": {"type": "GeoProperty", "value": {"type": "Polygon", "coordinates": 1}}}',
    b'{"id": "urn:x:1", "type": "T", "a": {"type": "GeoProperty", "value": "POINT(1 2)"}}',
    b'{"id": "urn:x:1", "type": "T", "a": {"type": "Property", "value": 1, "observedAt": 5}}',
    b'{"id": "urn:x:1", "type": "T", "a": {"type": "Property", "value": 1, "sub": {"type": "Property"}}}',
    b'{"id": "urn:x:1", "type": "T", "a": {"type": "ListRelationship", "objectList": [5]}}',
    b'{"id": "urn:x:1", "type": "T", "a": {"type": "VocabProperty", "vocab": 5}}',
    b'{"id": "urn:x:1", "type": "T", "a": {"type": "LanguageProperty", "languageMap": {"en": 5}}}',
    b'{"id": "urn:x:1", "type": "T", "scope": 5}',
    b'{"id": "urn:x:1", "type": "T", "@context": 5}',
    b'{"id": "urn:x:1", "type": "T", "a": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"id": "urn:x:1", "type": "T", "a": 1e999}',
]


@pytest.mark.parametrize(("method", "path", "ctype"), [
    ("POST", "/entities", "application/json"),
    ("POST", "/entities", JSONLD),
    ("PATCH", f"/entities/{EID}", "application/json"),
    ("PUT", f"/entities/{EID}", "application/json"),
    ("POST", f"/entities/{EID}/attrs", "application/json"),
    ("PATCH", f"/entities/{EID}/attrs", "application/json"),
    ("PATCH", f"/entities/{EID}/attrs/speed", "application/json"),
    ("PUT", f"/entities/{EID}/attrs/speed", "application/json"),
    ("POST", "/entityOperations/create", "application/json"),
    ("POST", "/entityOperations/upsert", "application/json"),
    ("POST", "/entityOperations/merge", "application/json"),
    ("POST", "/jsonldContexts", "application/json"),
])
async def test_weird_bodies_never_500(seeded, method, path, ctype):
    results = [(body[:120], await seeded.request(method, path, content=body, headers={"Content-Type": ctype}))
               for body in WEIRD_BODIES]
    check_all(results, _not_500)


def _not_500(case, r):
    assert r.status_code < 500, (r.status_code, r.text[:300])
    if r.status_code >= 400:
        assert_problem(r, r.status_code)


WEIRD_QUERIES = [
    {"type": "Vehicle", "q": "a" * 5000 + ">1"}, {"type": "Vehicle", "q": "(" * 200 + "speed>1" + ")" * 200},
    {"type": "Vehicle", "q": "brand~=(a+)+$"}, {"type": "Vehicle", "q": 'speed=="\\'},
    {"type": "Vehicle", "q": "speed==2024-13-45T99:99:99Z"}, {"type": "Vehicle", "q": "speed>1e999"},
    {"type": "(" * 500 + "Vehicle" + ")" * 500}, {"idPattern": "(a*)*b" * 10},
    {"type": "Vehicle", "georel": "near;maxDistance==1e999", "geometry": "Point", "coordinates": "[1,2]"},
    {"type": "Vehicle", "georel": "within", "geometry": "Polygon", "coordinates": "[[[1,2],[1,2]]]"},
    {"type": "Vehicle", "georel": "within", "geometry": "Polygon", "coordinates": "[" * 3000 + "]" * 3000},
    {"type": "Vehicle", "limit": "9" * 50}, {"type": "Vehicle", "offset": "9" * 50},
    {"type": "Vehicle", "options": ",,,"}, {"type": "Vehicle", "lang": ";;;"},
    {"type": "Vehicle", "geometryProperty": "x y"}, {"type": "Vehicle", "scopeQ": "/" * 1000},
    {"type": "Vehicle", "attrs": "\x00"}, {"id": "urn:" + "x" * 10000},
]


async def test_weird_queries_never_500(seeded):
    results = [({k: v[:60] for k, v in p.items()}, await seeded.get("/entities", params=p)) for p in WEIRD_QUERIES]
    check_all(results, _not_500)


WEIRD_HEADERS = [
    {"Accept": ";;;"}, {"Accept": "application/json;q=abc"}, {"Accept": "application/json;q=0"},
    {"Link": "<>"}, {"Link": "garbage"}, {"Link": '<not a url>; rel="http://www.w3.org/ns/json-ld#context"'},
    {"NGSILD-Tenant": "x" * 500}, {"NGSILD-Tenant": "../../etc"},
]


async def test_weird_headers_never_500(seeded):
    def check(headers, r):
        assert r.status_code < 500 or r.status_code == 504, (r.status_code, r.text)
        if r.status_code >= 400:
            assert_problem(r, r.status_code)

    check_all([(h, await seeded.get(f"/entities/{EID}", headers=h)) for h in WEIRD_HEADERS], check)


async def test_error_paths_are_under_the_api_prefix(client):
    r = await client.get("http://testserver" + API + "/entities/urn:ngsi-ld:X:1")
    assert_problem(r, 404, "ResourceNotFound")
