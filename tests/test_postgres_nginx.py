"""Two ``urbanmim serve`` processes on one PostgreSQL schema behind a real nginx, configured by the
shipped ``deploy/nginx/urbanmim.conf`` (only its ports changed: ``bench.pg_nginx.render``).

Why: a proxy config that was never run is a guess. Each promise of docs/postgres.md ("N processes
behind nginx") is checked through the proxy: requests spread over both processes still make one
broker, notifications go out once per write whichever process took it, absolute URLs name the
proxy, the twin's event stream is not buffered, an oversized body gets a ProblemDetails, and a
killed process costs no failed read. nginx runs unprivileged in the foreground in its own
directory. Without nginx these tests skip (run scripts/install-nginx); in CI (``CI=true``) they fail.
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.pg_nginx import TEMPLATE, Nginx, nginx_binary, render
from tests.conftest import Server, free_port, fresh_pg_schema

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
DOCS = Path(__file__).resolve().parent.parent / "docs" / "postgres.md"
V1 = "/ngsi-ld/v1"
ACCESS_LOG = "log_format up '$request_method $uri $status $upstream_addr';\n"


def _require_nginx() -> None:
    if nginx_binary() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("nginx missing in CI: scripts/install-nginx should have installed it")
        pytest.skip("nginx not installed: run scripts/install-nginx")


@pytest.fixture(scope="module")
def schema_db() -> Iterator[str]:
    """One fresh schema for the module's two processes (conftest's ``pg_db``, module-scoped)."""
    yield from fresh_pg_schema()


class LoggedNginx(Nginx):
    """The harness's nginx plus an access log naming the upstream of each request (which process took it)."""

    def upstreams(self, method: str, prefix: str) -> list[str]:
        """Upstream ``host:port`` of each logged request (nginx writes a line when the response is done)."""
        try:
            lines = (self.dir / "access.log").read_text().splitlines()
        except OSError:
            return []
        return [parts[3] for parts in (line.split(" ") for line in lines)
                if len(parts) >= 4 and parts[0] == method and parts[1].startswith(prefix)]


@dataclass
class Stack:
    a: Server
    b: Server
    proxy: LoggedNginx
    db: str

    @property
    def url(self) -> str:
        return self.proxy.url

    def upstream_of(self, s: Server) -> str:
        return f"127.0.0.1:{s.port}"


def _logged(site: str) -> str:
    """The rendered site with an access log (the harness keeps access logs off)."""
    return ACCESS_LOG + site.replace("server {\n", "server {\n    access_log access.log up;\n", 1)


@pytest.fixture(scope="module")
def stack(schema_db: str) -> Iterator[Stack]:
    _require_nginx()
    a, b = Server(schema_db), Server(schema_db)     # type: ignore[arg-type]
    port = free_port()
    proxy = LoggedNginx(_logged(render(port, [a.port, b.port])), port)
    try:
        a.start()
        b.start()
        proxy.start()
        yield Stack(a, b, proxy, schema_db)
    finally:
        proxy.stop()
        for s in (a, b):
            s.stop()


def _wait(cond: Any, seconds: float = 15.0) -> bool:
    end = time.monotonic() + seconds
    while not cond() and time.monotonic() < end:
        time.sleep(0.05)
    return bool(cond())


def _vehicle(eid: str, speed: int = 1) -> dict[str, Any]:
    return {"id": eid, "type": "Vehicle", "speed": {"type": "Property", "value": speed}}


def test_the_docs_show_the_shipped_config() -> None:
    """docs/postgres.md shows deploy/nginx/urbanmim.conf verbatim: the tested file is the documented one."""
    blocks = re.findall(r"```nginx\n(.*?)```", DOCS.read_text(), re.S)
    assert TEMPLATE.read_text() in blocks


def test_writes_spread_over_both_processes_are_one_broker(stack: Stack) -> None:
    tag = uuid.uuid4().hex[:6]
    ids = [f"urn:ngsi-ld:Vehicle:rr-{tag}-{i}" for i in range(20)]
    with httpx.Client(base_url=stack.url + V1, timeout=10) as h:
        for eid in ids:
            r = h.post("/entities", json=_vehicle(eid))
            assert r.status_code == 201, r.text
        assert _wait(lambda: len(stack.proxy.upstreams("POST", f"{V1}/entities")) >= len(ids), 5)
        took = stack.proxy.upstreams("POST", f"{V1}/entities")
        assert {stack.upstream_of(stack.a), stack.upstream_of(stack.b)} <= set(took), took   # both wrote
        for eid in ids:                                     # every one readable through the proxy...
            assert h.get(f"/entities/{eid}").status_code == 200
        for s in (stack.a, stack.b):                        # ...and from each process directly
            r = httpx.get(f"{s.url}/entities", params={"type": "Vehicle", "q": "speed==1", "count": "true",
                                                       "limit": "1000"}, timeout=10)
            assert set(ids) <= {e["id"] for e in r.json()}
        # the tenant header passes through the proxy: another tenant sees none of it
        r = h.post("/entities", json=_vehicle(f"urn:ngsi-ld:Vehicle:t-{tag}"), headers={"NGSILD-Tenant": f"c{tag}"})
        assert r.status_code == 201 and r.headers.get("NGSILD-Tenant") == f"c{tag}"
        assert h.get(f"/entities/urn:ngsi-ld:Vehicle:t-{tag}").status_code == 404
        assert h.get(f"/entities/urn:ngsi-ld:Vehicle:t-{tag}", headers={"NGSILD-Tenant": f"c{tag}"}
                     ).status_code == 200


def test_one_notification_per_write_whichever_process_took_it(stack: Stack) -> None:
    from tests.test_notifications import Receiver

    tag = uuid.uuid4().hex[:6]
    rec = Receiver().start()
    try:
        with httpx.Client(base_url=stack.url + V1, timeout=10) as h:
            r = h.post("/subscriptions", json={"type": "Subscription", "entities": [{"type": f"Bus{tag}"}],
                                               "notification": {"endpoint": {"uri": rec.url}}})
            assert r.status_code == 201, r.text
            ids = [f"urn:ngsi-ld:Bus:{tag}-{i}" for i in range(16)]
            for eid in ids:
                body = {"id": eid, "type": f"Bus{tag}", "speed": {"type": "Property", "value": 1}}
                assert h.post("/entities", json=body).status_code == 201
            took = stack.proxy.upstreams("POST", f"{V1}/entities")[-len(ids):]
            assert len(set(took)) == 2, took                      # both processes took some of the writes

            def notified() -> list[str]:
                return [e["id"] for n in list(rec.got) for e in n["data"]]
            assert _wait(lambda: set(ids) <= set(notified())), sorted(set(ids) - set(notified()))
            time.sleep(1.0)                                       # a duplicate would arrive now
            assert sorted(notified()) == sorted(ids)
    finally:
        rec.stop()


def test_absolute_urls_name_the_proxy(stack: Stack) -> None:
    """Host (with its port) reaches the broker: links point at nginx, never at an upstream port."""
    with httpx.Client(base_url=stack.url, timeout=10) as h:
        links = h.get("/ogc", params={"f": "json"}).json()["links"]
        assert next(x["href"] for x in links if x["rel"] == "self") == f"{stack.url}/ogc?f=json"
        # what the proxy's X-Forwarded-Proto does behind TLS (a proxy on the loopback is trusted by default:
        # setting forwarded_allow_ips)
        links = httpx.get(f"http://127.0.0.1:{stack.a.port}/ogc", params={"f": "json"}, timeout=10,
                          headers={"Host": "broker.city.example", "X-Forwarded-Proto": "https"}).json()["links"]
        assert next(x["href"] for x in links if x["rel"] == "self") == "https://broker.city.example/ogc?f=json"
        r = h.post(f"{V1}/jsonldContexts", json={"@context": {"Tram": "https://example.org/Tram"}})
        assert r.status_code == 201
        hosted = stack.url + r.headers["Location"]
        # every process lists it (the other one after the LISTEN/NOTIFY announcement), by nginx's URL
        assert _wait(lambda: all(hosted in h.get(f"{V1}/jsonldContexts").json() for _ in range(4)), 10)
        # the Link header passes through too: the hosted context, named by its proxy URL, compacts the type
        link = f'<{hosted}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
        eid = f"urn:ngsi-ld:Tram:{uuid.uuid4().hex[:6]}"
        assert h.post(f"{V1}/entities", json={"id": eid, "type": "Tram"}, headers={"Link": link}).status_code == 201
        assert h.get(f"{V1}/entities/{eid}").json()["type"] == "https://example.org/Tram"
        assert h.get(f"{V1}/entities/{eid}", headers={"Link": link}).json()["type"] == "Tram"


def test_twin_event_stream_is_not_buffered(stack: Stack) -> None:
    """An event reaches the client through nginx within 2 s. A tab hears the writes of the process
    it is connected to (urbanmim/twin/live.py), so the change is written to both processes directly."""
    from tests.test_twin_api import CTX

    tag = uuid.uuid4().hex[:6]
    ld = {"Content-Type": "application/ld+json", "NGSILD-Tenant": "town"}
    ids = {s.port: f"urn:ngsi-ld:AirQualityObserved:{tag}-{s.port}" for s in (stack.a, stack.b)}
    for s in (stack.a, stack.b):        # the city exists before the stream opens (else 404)
        ent = {"id": ids[s.port], "type": "AirQualityObserved", "no2": {"type": "Property", "value": 1.0},
               "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [2.0, 41.0]}},
               "@context": CTX}
        assert httpx.post(f"{s.url}/entities", json=ent, headers=ld, timeout=10).status_code == 201
    got: list[tuple[float, bytes]] = []
    opened = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", f"{stack.url}/twin/api/events", params={"tenant": "town"}, timeout=10) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            for chunk in r.iter_raw():
                got.append((time.monotonic(), chunk))
                opened.set()
                if b"event: change" in chunk:
                    return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    assert opened.wait(5) and b"event: hello" in got[0][1]
    time.sleep(0.3)                 # the stream is registered in its process (it sent hello first)
    sent = time.monotonic()
    for s in (stack.a, stack.b):
        r = httpx.patch(f"{s.url}/entities/{ids[s.port]}/attrs", headers=ld, timeout=10,
                        json={"no2": {"type": "Property", "value": 42.0}, "@context": CTX})
        assert r.status_code == 204, r.text
    t.join(5)
    change = [(at, c) for at, c in got if b"event: change" in c]
    assert change, got
    assert change[0][0] - sent < 2.0, change[0][0] - sent
    assert f":{tag}-".encode() in change[0][1]


def test_too_large_bodies_get_problem_details(stack: Stack) -> None:
    """Up to its own limits the broker answers 413 itself (nginx's limit sits above them); beyond
    nginx's limit, and when no process answers, nginx's own errors have the same JSON shape."""
    big = {"id": "urn:ngsi-ld:Vehicle:big", "type": "Vehicle",
           "blob": {"type": "Property", "value": "x" * (1_048_576 + 10)}}
    with httpx.Client(base_url=stack.url + V1, timeout=30) as h:
        r = h.post("/entities", json=big)
        assert r.status_code == 413 and r.headers["content-type"].startswith("application/")
        p = r.json()
        assert p["type"] == "https://uri.etsi.org/ngsi-ld/errors/RequestEntityTooLarge"
        assert "1048576" in p["detail"]                      # the broker's message, not nginx's
        huge = b"[" + b" " * (66 * 1_048_576) + b"]"         # above client_max_body_size 65m
        r = h.post("/entityOperations/upsert", content=huge, headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and r.headers["content-type"] == "application/json"
        assert r.json()["type"] == "https://uri.etsi.org/ngsi-ld/errors/RequestEntityTooLarge"
    port = free_port()
    dead = Nginx(render(port, [free_port()]), port).start()     # an upstream nobody listens on
    try:
        r = httpx.get(f"{dead.url}{V1}/entities", params={"type": "Vehicle"}, timeout=10)
        assert r.status_code == 503 and r.headers["content-type"] == "application/json"
        assert r.json()["status"] == 503
    finally:
        dead.stop()


def test_killing_one_process_fails_no_read(stack: Stack) -> None:
    """SIGKILL one process under a read and write load. A read in flight on it whose response had
    not begun is re-sent to the other (proxy_next_upstream); one whose response had begun cannot
    be (nginx has passed the status line on) and reaches the client as a cut connection. A write
    in flight on it is not re-sent (nginx never re-sends a POST it has sent) and gets nginx's 503
    as JSON: whether it was applied is unknown to the client. Every request started after the
    kill succeeds (a refused connection is safe to retry, and nginx does)."""
    tag = uuid.uuid4().hex[:6]
    eid = f"urn:ngsi-ld:Vehicle:k-{tag}"
    reads: list[tuple[float, float, int | str]] = []            # (started, ended, status or error)
    writes: list[tuple[float, float, int | str, str]] = []
    stop = threading.Event()
    with httpx.Client(base_url=stack.url + V1, timeout=10) as h0:
        assert h0.post("/entities", json=_vehicle(eid)).status_code == 201

    def reader() -> None:
        with httpx.Client(base_url=stack.url + V1, timeout=10) as h:
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    reads.append((t0, time.monotonic(), h.get(f"/entities/{eid}").status_code))
                except httpx.TransportError as e:
                    reads.append((t0, time.monotonic(), type(e).__name__))

    def writer(w: int) -> None:
        with httpx.Client(base_url=stack.url + V1, timeout=10) as h:
            i = 0
            while not stop.is_set():
                i, t0 = i + 1, time.monotonic()
                try:
                    r = h.post("/entityOperations/upsert", json=[_vehicle(f"{eid}-w{w}", i)])
                    writes.append((t0, time.monotonic(), r.status_code, r.headers.get("content-type", "")))
                except httpx.TransportError as e:
                    writes.append((t0, time.monotonic(), type(e).__name__, ""))

    threads = [threading.Thread(target=reader, daemon=True) for _ in range(3)]
    threads += [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(2)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        killed = time.monotonic()
        stack.b.kill()          # returns once the process is gone
        dead = time.monotonic()
        time.sleep(1.5)
        with httpx.Client(base_url=stack.url + V1, timeout=10) as h:   # writes after the kill
            after = [h.post("/entities", json=_vehicle(f"{eid}-{i}")).status_code for i in range(10)]
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert after == [201] * 10
    settled = [x for x in reads if x[0] > dead or x[1] < killed]      # not in flight at the kill
    in_flight = [x for x in reads if x not in settled]
    assert len([x for x in reads if x[0] > dead]) > 10
    assert [x for x in settled if x[2] != 200] == []
    assert all(x[2] == 200 or isinstance(x[2], str) for x in in_flight), in_flight   # never an error status
    assert [x for x in writes if (x[0] > dead or x[1] < killed) and x[2] not in (201, 204)] == []
    assert all(x[2] in (201, 204) or isinstance(x[2], str) or (x[2] == 503 and x[3] == "application/json")
               for x in writes), writes
    print(f"{len(reads)} reads: {sum(x[2] != 200 for x in in_flight)} of {len(in_flight)} in flight cut off; "
          f"{len(writes)} upserts: {sum(x[2] != 201 and x[2] != 204 for x in writes)} in flight failed")
    stack.b.start()             # back (same port) for any test that runs after this one


def test_authorization_reaches_the_broker(pg_db: str) -> None:
    """A secure broker behind the shipped config: the bearer token passes through nginx, and so
    does the broker's 401 challenge."""
    import subprocess
    import sys

    _require_nginx()
    s = Server(pg_db, extra_env={"URBANMIM_SECURE": "true"}).start()     # type: ignore[arg-type]
    port = free_port()
    proxy = Nginx(render(port, [s.port]), port)
    try:
        proxy.start()
        tok = subprocess.run([sys.executable, "-m", "urbanmim.cli", "token", "--tenant", "city", "--role", "editor",
                              "--db", pg_db], capture_output=True, text=True, check=True, timeout=60).stdout.strip()
        r = httpx.get(f"{proxy.url}/security/v1/whoami", headers={"Authorization": f"Bearer {tok}"}, timeout=10)
        assert r.status_code == 200 and r.json()["roles"] == {"city": ["editor"]}, r.text
        r = httpx.post(f"{proxy.url}{V1}/entities", json=_vehicle("urn:ngsi-ld:Vehicle:anon"),
                       headers={"NGSILD-Tenant": "city"}, timeout=10)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
        r = httpx.post(f"{proxy.url}{V1}/entities", json=_vehicle("urn:ngsi-ld:Vehicle:anon"),
                       headers={"NGSILD-Tenant": "city", "Authorization": f"Bearer {tok}"}, timeout=10)
        assert r.status_code == 201, r.text
    finally:
        proxy.stop()
        s.stop()
