"""The HTTP edge: undefined URI parameters (clause 6.3.20), the /jsonldContexts details the
conformance suite checks (clause 5.13) and how a remote @context failure is classified (5.5.6)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.helpers import JSON, JSONLD, assert_problem, link, media, prop, vehicle

USER_CTX = {"A1": "urn:ngsi-ld:attributes:A1", "A2": "urn:ngsi-ld:attributes:A2"}
CORE_V16 = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.6.jsonld"


class _Docs:
    """A tiny @context server: /ok (a context), /not-json, /no-context (JSON without @context), else 404."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                status, body = 200, b""
                if self.path == "/ok":
                    body = json.dumps({"@context": USER_CTX}).encode()
                elif self.path == "/not-json":
                    body = b"this is { not json"
                elif self.path == "/no-context":
                    body = b'{"note": "no context member here"}'
                else:
                    status, body = 404, b"{}"
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def docs() -> Iterator[_Docs]:
    d = _Docs()
    t = threading.Thread(target=d.httpd.serve_forever, daemon=True)
    t.start()
    yield d
    d.httpd.shutdown()
    d.httpd.server_close()


# ---- undefined URI parameters -> 400 InvalidRequest (suite 059_01) ---------------------------------------

async def test_unknown_query_parameter_is_invalid_request(client):
    bad = {"invalidParams": "invalidValue"}
    assert_problem(await client.get("/entities", params=dict(bad, type="Vehicle")), 400, "InvalidRequest")
    assert_problem(await client.get("/types", params=bad), 400, "InvalidRequest")
    assert_problem(await client.get("/jsonldContexts", params=bad), 400, "InvalidRequest")
    assert_problem(await client.delete("/entities/urn:ngsi-ld:Vehicle:1", params=bad), 400, "InvalidRequest")
    # checked before the body: even a body that is not an entity gives InvalidRequest
    r = await client.post("/entities", params=bad, content=b'"a JSON string"', headers={"Content-Type": JSONLD})
    assert_problem(r, 400, "InvalidRequest")


async def test_defined_query_parameters_still_work(client):
    r = await client.post("/entities", json=vehicle(1, speed=prop(3)), params={"local": "true"})
    assert r.status_code == 201, r.text
    r = await client.get("/entities", params={"type": "Vehicle", "options": "keyValues", "limit": "5", "count": "true"})
    assert r.status_code == 200 and r.json() == [{"id": "urn:ngsi-ld:Vehicle:1", "type": "Vehicle", "speed": 3}]
    r = await client.get("/entities/urn:ngsi-ld:Vehicle:1", params={"attrs": "speed", "format": "simplified"})
    assert r.status_code == 200, r.text
    assert (await client.get("/types", params={"details": "true"})).status_code == 200


# ---- /jsonldContexts ---------------------------------------------------------------------------------

async def test_add_context_without_context_member_is_invalid_request(client):
    # suite 050_02_01: the payload itself is wrong (no @context member)
    assert_problem(await client.post("/jsonldContexts", json=USER_CTX), 400, "InvalidRequest")
    # suite 050_02_02: not JSON at all
    r = await client.post("/jsonldContexts", content=b'{"A1": "x" "A2": "y"}', headers={"Content-Type": JSON})
    assert_problem(r, 400, "InvalidRequest")


async def test_served_context_is_application_json(client):
    r = await client.post("/jsonldContexts", json={"@context": USER_CTX})
    cid = r.headers["location"].rsplit("/", 1)[1]
    for params in ({}, {"details": "false"}):
        r = await client.get(f"/jsonldContexts/{cid}", params=params)
        assert r.status_code == 200 and media(r) == JSON  # suite 053_01
        assert r.json() == {"@context": USER_CTX}


async def test_core_context_is_served_never_deleted(client):
    for ref in ("ngsi-ld-core-context", CORE_V16):
        r = await client.get(f"/jsonldContexts/{ref}", params={"details": "true"})
        assert r.status_code == 200 and r.json()["kind"] == "Cached" and r.json()["createdAt"]
        r = await client.get(f"/jsonldContexts/{ref}")
        assert r.status_code == 200 and media(r) == JSON and "Property" in r.json()["@context"]
        for params in ({}, {"reload": "false"}):  # suite 051_08
            assert_problem(await client.delete(f"/jsonldContexts/{ref}", params=params), 400, "BadRequestData")
        # suite 051_09: reloading the (built-in) core context succeeds and it stays available
        assert (await client.delete(f"/jsonldContexts/{ref}", params={"reload": "true"})).status_code == 204
        assert (await client.get(f"/jsonldContexts/{ref}", params={"details": "true"})).status_code == 200


async def test_reload_needs_a_cached_context(client):
    # suite 051_04: reload=true on an id that names no Cached context is BadRequestData, not 404
    assert_problem(await client.delete("/jsonldContexts/wrong_id_context", params={"reload": "true"}), 400,
                   "BadRequestData")
    assert_problem(await client.delete("/jsonldContexts/wrong_id_context"), 404, "ResourceNotFound")


async def test_cached_context_hits_counted_per_use(client, docs):
    url = docs.url + "/ok"
    assert (await client.post("/entities", json=vehicle(1, A1=prop(1)), headers=link(url))).status_code == 201

    async def details() -> dict:
        r = await client.get(f"/jsonldContexts/{url}", params={"details": "true"})
        assert r.status_code == 200, r.text
        return r.json()

    first = await details()
    assert first["kind"] == "Cached" and first["numberOfHits"] == 1
    # the term map is cached after the first use, but every use is still a hit
    for _ in range(2):
        assert (await client.get("/entities", params={"type": "Vehicle"}, headers=link(url))).status_code == 200
    assert (await details())["numberOfHits"] == 3


# ---- remote @context failures (clause 5.5.6) ---------------------------------------------------------

async def test_unretrievable_context_is_ld_context_not_available(client, docs):
    r = await client.post("/entities", json=vehicle(1), headers=link(docs.url + "/missing"))
    assert_problem(r, 504, "LdContextNotAvailable")


@pytest.mark.parametrize("path", ["/not-json", "/no-context"])
async def test_retrieved_but_invalid_context_is_bad_request_data(client, docs, path):
    body = dict(vehicle(1), **{"@context": docs.url + path})
    r = await client.post("/entities", json=body, headers={"Content-Type": JSONLD})
    assert_problem(r, 400, "BadRequestData")
    assert (await client.get("/entities/urn:ngsi-ld:Vehicle:1")).status_code == 404


async def test_purge_rejects_unknown_parameter(client):
    # suite 059_01_08: DELETE /entities (purge) is an operation too
    assert_problem(await client.delete("/entities", params={"invalidParams": "invalidValue"}), 400,
                   "InvalidRequest")
