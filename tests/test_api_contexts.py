"""The @context API (clause 5.13: /jsonldContexts) and @context resolution: hosted contexts used
through the Link header, remote contexts fetched once and cached, unreachable ones (504)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.helpers import API, CORE_CONTEXT, JSONLD, assert_problem, create, get, link, media, prop

USER_CTX = {"Car": "https://example.org/vocab/Car", "wheels": "https://example.org/vocab/wheels"}
CAR = {"id": "urn:ngsi-ld:Car:1", "type": "Car", "wheels": prop(4)}
UNREACHABLE = "http://127.0.0.1:1/ctx.jsonld"


async def _host(client, ctx=None) -> tuple[str, str]:
    """Host a context; returns (its local id, its absolute URL)."""
    r = await client.post("/jsonldContexts", json={"@context": ctx or USER_CTX})
    assert r.status_code == 201, r.text
    loc = r.headers["location"]
    assert loc.startswith(f"{API}/jsonldContexts/")
    return loc.rsplit("/", 1)[1], "http://testserver" + loc


# ---- /jsonldContexts --------------------------------------------------------------------------------

async def test_add_list_serve_delete_hosted_context(client):
    cid, url = await _host(client)
    r = await client.get(f"/jsonldContexts/{cid}")
    assert r.status_code == 200
    assert media(r) in ("application/json", JSONLD)
    assert r.json() == {"@context": USER_CTX}

    r = await client.get("/jsonldContexts")
    assert r.status_code == 200
    assert url in r.json()

    r = await client.get("/jsonldContexts", params={"details": "true"})
    entry = next(e for e in r.json() if e["localId"] == cid)
    assert entry["URL"] == url and entry["kind"] == "Hosted" and entry["createdAt"]

    assert (await client.get("/jsonldContexts", params={"kind": "Hosted"})).json() == [url]
    assert url not in (await client.get("/jsonldContexts", params={"kind": "Cached"})).json()

    r = await client.delete(f"/jsonldContexts/{cid}")
    assert r.status_code == 204
    assert_problem(await client.get(f"/jsonldContexts/{cid}"), 404, "ResourceNotFound")
    assert url not in (await client.get("/jsonldContexts")).json()
    assert_problem(await client.delete(f"/jsonldContexts/{cid}"), 404, "ResourceNotFound")


async def test_context_api_errors(client):
    # suite 050_02: no @context member -> InvalidRequest; 5132_01: @context not a context -> BadRequestData
    assert_problem(await client.post("/jsonldContexts", json={"Car": "x"}), 400, "InvalidRequest")
    assert_problem(await client.post("/jsonldContexts", json=[USER_CTX]), 400, ("InvalidRequest", "BadRequestData"))
    for bad in (5, True, [USER_CTX, 5]):
        assert_problem(await client.post("/jsonldContexts", json={"@context": bad}), 400, "BadRequestData")
    # suite 051_04: reload of an unknown id, or a bad reload value -> BadRequestData; plain delete -> 404
    assert_problem(await client.delete("/jsonldContexts/wrong_id", params={"reload": "true"}), 400,
                   "BadRequestData")
    assert_problem(await client.delete("/jsonldContexts/wrong_id", params={"reload": "xxx"}), 400, "BadRequestData")
    assert_problem(await client.delete("/jsonldContexts/wrong_id", params={"reload": "false"}), 404,
                   "ResourceNotFound")
    assert_problem(await client.get("/jsonldContexts", params={"kind": "Weird"}), 400, "BadRequestData")
    assert_problem(await client.get("/jsonldContexts/does-not-exist"), 404, "ResourceNotFound")
    assert_problem(await client.delete("/jsonldContexts/does-not-exist"), 404, "ResourceNotFound")
    # the core context can be read but never deleted
    r = await client.get("/jsonldContexts/ngsi-ld-core-context")
    assert r.status_code == 200 and r.json()["@context"]["Property"] == "ngsi-ld:Property"
    assert_problem(await client.delete("/jsonldContexts/ngsi-ld-core-context"), 400, "BadRequestData")


async def test_hosted_context_details(client):
    cid, url = await _host(client)
    details = (await client.get(f"/jsonldContexts/{cid}", params={"details": "true"})).json()
    assert details["localId"] == cid and details["kind"] == "Hosted" and details["URL"] == url


# ---- a hosted context used through the Link header -------------------------------------------------------

async def test_hosted_context_via_link_create_and_query(client):
    _, url = await _host(client)
    await create(client, CAR, headers=link(url))
    # with the context the short names come back, and the Link header echoes it
    r = await get(client, CAR["id"], headers=link(url))
    assert r.json() == CAR
    assert f"<{url}>" in r.headers["link"]
    # without it, the full IRIs
    r = await get(client, CAR["id"])
    assert r.json() == {"id": CAR["id"], "type": USER_CTX["Car"], USER_CTX["wheels"]: prop(4)}
    # queries expand type, attrs and q with the same context
    r = await client.get("/entities", params={"type": "Car", "q": "wheels==4", "attrs": "wheels"},
                         headers=link(url))
    assert r.json() == [CAR]
    r = await client.get("/entities", params={"type": "Car"})
    assert r.json() == []           # "Car" without the context is the default-context Car
    r = await client.get("/entities", params={"type": "Car"}, headers={"Accept": JSONLD, **link(url)})
    assert r.json()[0]["@context"] in (url, [url])


async def test_inline_ld_json_context_with_hosted_url(client):
    _, url = await _host(client)
    r = await client.post("/entities", json=dict(CAR, **{"@context": [url, CORE_CONTEXT]}),
                          headers={"Content-Type": JSONLD})
    assert r.status_code == 201, r.text
    assert (await get(client, CAR["id"], headers=link(url))).json() == CAR


async def test_core_terms_cannot_be_redefined(client):
    ent = {"id": "urn:ngsi-ld:Car:1", "type": "Car", "location": {"type": "GeoProperty", "value":
                                                                   {"type": "Point", "coordinates": [1, 2]}},
           "@context": [{"location": "https://example.org/myLocation"}, CORE_CONTEXT]}
    # the core context comes last and overrides the user's term (JSON-LD 1.1 processing)
    r = await client.post("/entities", json=ent, headers={"Content-Type": JSONLD})
    assert r.status_code == 201, r.text
    r = await client.get("/attributes/location")
    assert r.json()["id"] == "https://uri.etsi.org/ngsi-ld/location"


# ---- remote contexts ---------------------------------------------------------------------------------

# V1.9.1 clause 6.3.4 (Table 6.3.4-1) maps LdContextNotAvailable to HTTP 504 (suite 043_01, 051_05)

async def test_unreachable_remote_context_504(client):
    assert_problem(await client.post("/entities", json=CAR, headers=link(UNREACHABLE)), 504,
                   "LdContextNotAvailable")
    assert_problem(await client.get("/entities", params={"type": "Car"}, headers=link(UNREACHABLE)), 504,
                   "LdContextNotAvailable")
    r = await client.post("/entities", json=dict(CAR, **{"@context": [UNREACHABLE, CORE_CONTEXT]}),
                          headers={"Content-Type": JSONLD})
    assert_problem(r, 504, "LdContextNotAvailable")
    assert_problem(await get(client, CAR["id"]), 404, "ResourceNotFound")


class _ContextServer:
    def __init__(self) -> None:
        self.hits: dict[str, int] = {}
        self.down = False
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                owner.hits[self.path] = owner.hits.get(self.path, 0) + 1
                if owner.down:
                    body = b"{}"
                    self.send_response(500)
                elif self.path == "/ctx.jsonld":
                    body = json.dumps({"@context": USER_CTX}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/ld+json")
                elif self.path == "/not-json.jsonld":
                    body = b"<html>nope</html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                else:
                    body = b"{}"
                    self.send_response(404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)


@pytest.fixture
def ctx_server() -> Iterator[_ContextServer]:
    s = _ContextServer()
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


async def test_remote_context_fetched_once_and_cached(client, ctx_server):
    url = ctx_server.url + "/ctx.jsonld"
    await create(client, CAR, headers=link(url))
    for _ in range(3):
        r = await client.get("/entities", params={"type": "Car"}, headers=link(url))
        assert r.json() == [CAR]
    assert (await get(client, CAR["id"], headers=link(url))).json() == CAR
    assert ctx_server.hits == {"/ctx.jsonld": 1}
    # it is listed as a Cached context
    assert url in (await client.get("/jsonldContexts", params={"kind": "Cached"})).json()
    details = (await client.get("/jsonldContexts", params={"details": "true", "kind": "Cached"})).json()
    entry = next(e for e in details if e["URL"] == url)
    assert entry["kind"] == "Cached" and entry["localId"]
    # reload fetches it again
    r = await client.delete(f"/jsonldContexts/{entry['localId']}", params={"reload": "true"})
    assert r.status_code == 204
    assert ctx_server.hits["/ctx.jsonld"] == 2


async def test_remote_context_http_error_504(client, ctx_server):
    assert_problem(await client.post("/entities", json=CAR, headers=link(ctx_server.url + "/missing.jsonld")), 504,
                   "LdContextNotAvailable")


async def test_failed_reload_keeps_cached_context(client, ctx_server):
    # clause 5.13.5.4 / suite 5135_01: a failed reload is 504 and the Cached entry survives
    url = ctx_server.url + "/ctx.jsonld"
    await create(client, CAR, headers=link(url))
    entry = next(e for e in (await client.get("/jsonldContexts", params={"details": "true"})).json()
                 if e["URL"] == url)
    ctx_server.down = True
    r = await client.delete(f"/jsonldContexts/{entry['localId']}", params={"reload": "true"})
    assert_problem(r, 504, "LdContextNotAvailable")
    r = await client.get(f"/jsonldContexts/{entry['localId']}", params={"details": "true"})
    assert r.status_code == 200 and r.json()["kind"] == "Cached"
    assert (await get(client, CAR["id"], headers=link(url))).json() == CAR
    assert (await client.delete(f"/jsonldContexts/{entry['localId']}")).status_code == 204
    assert_problem(await client.get(f"/jsonldContexts/{entry['localId']}", params={"details": "true"}), 404,
                   "ResourceNotFound")


async def test_reload_of_hosted_context_400(client):
    cid, _ = await _host(client)
    assert_problem(await client.delete(f"/jsonldContexts/{cid}", params={"reload": "true"}), 400, "BadRequestData")
