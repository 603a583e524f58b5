"""Several ``urbanmim serve`` processes on one PostgreSQL database: every in-memory view follows the
writes of every process, and once-per-deployment work runs once.

Why this matters: behind a round-robin proxy a browser's event stream is open on one process while
the writes arrive through the others; an admin revokes a consent, withdraws an offer or changes an
access rule through one process while the next read lands on another — it must already be decided
by the new state there. And a timer that computes KPIs must not compute them N times.

Real processes, real PostgreSQL: the entity change announcements (``store/announcements.py``) go
through LISTEN/NOTIFY between separate ``urbanmim serve`` processes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import psycopg
import pytest

from tests.conftest import Server
from urbanmim.service.reserved import ReservedCache
from urbanmim.store.announcements import (
    CHUNK,
    MAX_CHUNKS,
    SETTLE_TIMEOUT,
    Announcement,
    Follower,
    Note,
    decode,
    encode,
)
from urbanmim.store.base import Mutation
from urbanmim.store.postgres import PostgresStore

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SDM = "https://smartdatamodels.org/"
CTX = [{"AirQualityObserved": SDM + "dataModel.Environment/AirQualityObserved",
        "no2": SDM + "dataModel.Environment/no2"},
       "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld"]
AIR = "urn:ngsi-ld:AirQualityObserved:x1"
LD = {"Content-Type": "application/ld+json", "NGSILD-Tenant": "town"}


def start(db: str, n: int, **env: str) -> list[Server]:
    extra = {f"URBANMIM_{k.upper()}": v for k, v in env.items()}
    return [Server(db, extra_env=extra).start() for _ in range(n)]   # type: ignore[arg-type]


@pytest.fixture
def procs() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for s in started:
        s.stop()


def root(s: Server) -> str:
    return s.url.removesuffix("/ngsi-ld/v1")


# ---- the announcement itself ---------------------------------------------------------------------

async def test_a_write_is_announced_to_every_process_with_what_changed(pg_db: str) -> None:
    one, two = PostgresStore(pg_db, pool_min=1), PostgresStore(pg_db, pool_min=1)
    await one.open()
    await two.open()
    heard_one: list[Announcement] = []
    heard_two: list[Announcement] = []
    one.entity_listeners.append(heard_one.append)
    two.entity_listeners.append(heard_two.append)

    def ent(i: int, **attrs: Any) -> dict[str, Any]:
        return {"id": f"urn:x:{i}", "type": ["T"], "attrs": {k: [v] for k, v in attrs.items()}}

    async def write(*muts: tuple[str, Any]) -> Announcement:
        before = len(heard_two)
        await one.mutate("city", [Mutation(eid, lambda cur, f=f: (f(cur), None)) for eid, f in muts])
        for _ in range(200):
            if len(heard_two) > before and len(heard_one) == len(heard_two):
                break
            await asyncio.sleep(0.01)
        assert len(heard_two) == before + 1           # one announcement for the batch
        return heard_two[-1]

    point = {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [1, 2]}}
    try:
        ann = await write(*((f"urn:x:{i}", lambda cur, i=i: ent(i, p={"type": "Property", "value": i}, loc=point))
                            for i in range(3)))
        assert ann.tenant == "city" and not ann.own and heard_one[-1].own
        assert [(n.id, n.types, n.flags) for n in ann.notes] == [(f"urn:x:{i}", ("T",), "csg") for i in range(3)]
        ann = await write(("urn:x:0", lambda cur: ent(0, p={"type": "Property", "value": 9}, loc=point)))
        assert [n.flags for n in ann.notes] == [""]                       # a value: nothing structural
        ann = await write(("urn:x:1", lambda cur: ent(1, p={"type": "Property", "value": 1}, q={"type": "Property",
                                                                                             "value": 1}, loc=point)))
        assert [n.flags for n in ann.notes] == ["s"]                      # a new attribute
        ann = await write(("urn:x:2", lambda cur: None))
        assert [(n.flags, n.types) for n in ann.notes] == [("d", ("T",))]
    finally:
        await one.close()
        await two.close()


class _Cache(ReservedCache):
    """The smallest reserved-entity cache: what it holds of type ``R``."""

    reserved_types = frozenset({"R"})

    def __init__(self) -> None:
        self.seen: dict[str, Any] = {}

    def apply(self, tenant: str, eid: str, ent: Any) -> None:
        if ent is None:
            self.seen.pop(eid, None)
        else:
            self.seen[eid] = ent["attrs"]["v"][0]["value"]


async def test_a_reserved_write_is_answered_once_every_process_followed_it(
        pg_db: str, caplog: pytest.LogCaptureFixture) -> None:
    """Settling: when ``mutate`` returns on one store, the other's cache already holds the change (every
    process acknowledged: no time-out was logged); a process that never follows delays such writes by
    SETTLE_TIMEOUT; data writes wait for nothing."""

    def timeouts() -> int:
        return sum("answering anyway" in r.getMessage() for r in caplog.records)
    one, two, three = (PostgresStore(pg_db, pool_min=1) for _ in range(3))
    for s in (one, two, three):
        await s.open()
    mine, theirs = _Cache(), _Cache()
    try:
        await mine.load_and_follow(one, lambda t: asyncio.sleep(0), "one")
        await theirs.load_and_follow(two, lambda t: asyncio.sleep(0), "two")

        def reserved(v: int) -> Mutation:
            return Mutation("urn:r:1", lambda cur: ({"id": "urn:r:1", "type": ["R"],
                                                     "attrs": {"v": [{"type": "Property", "value": v}]}}, None))
        for v in range(5):
            await one.mutate("city", [reserved(v)])
            assert theirs.seen == {"urn:r:1": v}          # no waiting here: the write waited
        await one.mutate("city", [Mutation("urn:r:1", lambda cur: (None, None))])
        assert theirs.seen == {}
        # a batch announced in several payloads: answered once every payload was followed
        ids = [f"urn:ngsi-ld:Reserved:{'x' * 80}:{i}" for i in range(300)]
        await one.mutate("city", [Mutation(eid, lambda cur, eid=eid: (
            {"id": eid, "type": ["R"], "attrs": {"v": [{"type": "Property", "value": 1}]}}, None)) for eid in ids])
        assert len(encode("city", [Note(eid, ("R",), "cs") for eid in ids], "x")) > 1
        assert set(theirs.seen) == set(ids)
        assert timeouts() == 0
        # a third process that hangs while following: the writer answers after SETTLE_TIMEOUT anyway
        stuck = asyncio.Event()
        three.entity_listeners.append(Follower(lambda batch: stuck.wait(), "stuck", settles=True))
        t0 = time.monotonic()
        await one.mutate("city", [reserved(7)])
        assert SETTLE_TIMEOUT * 0.9 < time.monotonic() - t0
        assert theirs.seen["urn:r:1"] == 7 and timeouts() == 1
        # a data write waits for nobody (the stuck process would have made it time out too)
        await one.mutate("city", [Mutation("urn:d:1", lambda cur: ({"id": "urn:d:1", "type": ["D"], "attrs": {}},
                                                                   None))])
        assert timeouts() == 1
        stuck.set()
    finally:
        for s in (one, two, three):
            await s.close()


def test_large_batches_are_split_under_the_payload_limit_or_announced_as_many() -> None:
    notes = [Note(f"urn:ngsi-ld:AirQualityObserved:santander-{i:06d}", (SDM + "dataModel.Environment/AQO",),
                  "csg") for i in range(600)]
    payloads = encode("city", notes, "me")
    assert 1 < len(payloads) <= MAX_CHUNKS
    assert all(len(p.encode()) <= CHUNK for p in payloads)
    back = [decode(orjson.loads(p), own=False) for p in payloads]
    assert [n for a in back for n in a.notes] == notes                     # type: ignore[union-attr]
    huge = encode("city", notes * 20, "me")
    assert len(huge) == 1
    many = decode(orjson.loads(huge[0]), own=False)
    assert many is not None and many.many and many.types == {SDM + "dataModel.Environment/AQO"}


# ---- (a) the twin's live stream ------------------------------------------------------------------

async def test_a_tab_on_one_process_hears_a_patch_made_through_another(pg_db: str, procs: list[Server]) -> None:
    procs += start(pg_db, 2)
    a, b = procs
    air = {"id": AIR, "type": "AirQualityObserved", "no2": {"type": "Property", "value": 10.0},
           "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [2.0, 41.0]}},
           "@context": CTX}
    async with httpx.AsyncClient(timeout=10) as http:
        assert (await http.post(f"{b.url}/entities", json=air, headers=LD)).status_code == 201
        layer = await http.get(f"{root(a)}/twin/api/layers/air", headers={"NGSILD-Tenant": "town"})
        assert layer.json()["features"][0]["properties"]["no2"] == 10.0       # now cached on A
        latencies: list[float] = []
        async with http.stream("GET", f"{root(a)}/twin/api/events", headers={"NGSILD-Tenant": "town"}) as sse:
            lines = (line.rstrip("\r\n") async for line in sse.aiter_lines())
            assert await anext(lines) == "retry: 2000"
            assert await anext(lines) == "event: hello"
            for value in range(20, 40):
                t0 = time.monotonic()
                r = await http.patch(f"{b.url}/entities/{AIR}/attrs", headers=LD,
                                     json={"no2": {"type": "Property", "value": float(value)}, "@context": CTX})
                assert r.status_code == 204, r.text
                event = await asyncio.wait_for(_next_change(lines), 2.0)
                latencies.append(time.monotonic() - t0)
                (change,) = event
                assert change["id"] == AIR and change["op"] == "upsert"
                assert change["feature"]["properties"]["no2"] == float(value)
            # a deletion through B is a deletion on A's stream too
            assert (await http.delete(f"{b.url}/entities/{AIR}", headers=LD)).status_code == 204
            (change,) = await asyncio.wait_for(_next_change(lines), 2.0)
            assert change == {"op": "delete", "id": AIR, "layer": "air"}
        # A's cached layer was dropped by B's writes
        layer = await http.get(f"{root(a)}/twin/api/layers/air", headers={"NGSILD-Tenant": "town"})
        assert layer.json()["features"] == []
        # and so is A's cached OGC collection list (kept up to ogc_cache_seconds = 30 s otherwise)
        before = await http.get(f"{root(a)}/ogc/town/collections", params={"f": "json"})
        assert before.status_code == 200, before.text
        assert "Bus" not in {c["id"] for c in before.json()["collections"]}
        bus = {"id": "urn:ngsi-ld:Bus:1", "type": "Bus", "location": {"type": "GeoProperty", "value": {
            "type": "Point", "coordinates": [2.0, 41.0]}}}
        assert (await http.post(f"{b.url}/entities", json=bus, headers={"NGSILD-Tenant": "town"})).status_code == 201
        t0 = time.monotonic()          # data writes are not settled: A hears of it within milliseconds
        while time.monotonic() - t0 < 2:
            after = await http.get(f"{root(a)}/ogc/town/collections", params={"f": "json"})
            if "Bus" in {c["id"] for c in after.json()["collections"]}:
                break
            await asyncio.sleep(0.01)
        assert "Bus" in {c["id"] for c in after.json()["collections"]}
    latencies.sort()
    print(f"\nB write -> A SSE event (PATCH round trip included), 20 samples: p50 {latencies[10] * 1000:.1f} ms, "
          f"max {latencies[-1] * 1000:.1f} ms")


async def _next_change(lines: Any) -> list[dict[str, Any]]:
    async for line in lines:
        if line.startswith("data: ") and line != "data: {}":
            return list(orjson.loads(line[6:]))
    raise AssertionError("stream ended")


# ---- (b) reserved entities: security rules, consent, sharing ---------------------------------------

async def tokens(db: str) -> Any:
    from urbanmim.security.tokens import dev_key, issue
    store = PostgresStore(db, pool_min=1, migrate=False)
    await store.open()
    try:
        key = await dev_key(store)
    finally:
        await store.close()

    def make(subject: str, roles: dict[str, list[str]], org: str | None = None, purpose: str | None = None,
             tenant: str = "") -> dict[str, str]:
        h = {"Authorization": "Bearer " + issue(key, subject=subject, roles=roles, audience="urbanmim",
                                                organisation=org)}
        if tenant:
            h["NGSILD-Tenant"] = tenant
        if purpose:
            h["Urbanmim-Purpose"] = purpose
        return h
    return make


def prop(v: Any) -> dict[str, Any]:
    return {"type": "Property", "value": v}


async def test_security_consent_and_sharing_changes_hold_on_the_next_request_elsewhere(
        pg_db: str, procs: list[Server]) -> None:
    """Each change is made through B; the request right after B's answer goes to A. A decision is
    taken on A's in-memory view, so A must have re-read the changed entity by then."""
    procs += start(pg_db, 2, secure="true", rate_limit="0", audit_reads="false")
    a, b = procs
    make = await tokens(pg_db)

    async def next_request_on_a(http: httpx.AsyncClient, check: Any, *args: Any) -> None:
        assert await check(http, *args), "B's change did not hold on A's next request"

    async with httpx.AsyncClient(timeout=10) as http:
        # -- MIM6: an access rule changed through B hides an attribute on A
        city = "portamar"
        admin = make("city-admin", {city: ["admin"]}, tenant=city)
        reader = make("someone", {city: ["reader"]}, tenant=city)
        spot = {"id": "urn:ngsi-ld:ParkingSpot:1", "type": "ParkingSpot", "owner": prop("Alice"),
                "status": prop("free")}
        assert (await http.post(f"{b.url}/entities", json=spot, headers=admin)).status_code == 201

        async def owner_visible(http: httpx.AsyncClient, want: bool) -> bool:
            r = await http.get(f"{a.url}/entities/urn:ngsi-ld:ParkingSpot:1", headers=reader)
            assert r.status_code == 200, r.text
            return ("owner" in r.json()) == want

        assert await owner_visible(http, True)
        r = await http.put(f"{root(b)}/security/v1/rules/reader-no-owner", headers=admin,
                           json={"role": "reader", "entityType": "ParkingSpot", "hide": ["owner"]})
        assert r.status_code in (200, 201), r.text
        await next_request_on_a(http, owner_visible, False)
        assert (await http.delete(f"{root(b)}/security/v1/rules/reader-no-owner", headers=admin)).status_code == 204
        await next_request_on_a(http, owner_visible, True)

        # -- MIM4: a consent revoked through B holds on A
        alice = "urn:ngsi-ld:Person:alice"
        r = await http.put(f"{root(b)}/consent/v1/personal-data/Vehicle", headers=admin,
                           json={"attributes": ["driverName"], "subject": "refDataSubject"})
        assert r.status_code == 201, r.text
        car = {"id": "urn:ngsi-ld:Vehicle:car1", "type": "Vehicle", "driverName": prop("Alice A."), "speed": prop(5),
               "refDataSubject": {"type": "Relationship", "object": alice}}
        assert (await http.post(f"{b.url}/entities", headers=admin, json=car)).status_code == 201
        parking = make("app-parking", {city: ["reader"]}, org="org:parking", purpose="dpv:ServiceProvision",
                       tenant=city)
        by_alice = make(alice, {city: ["reader"]}, tenant=city)

        async def driver_visible(http: httpx.AsyncClient, want: bool) -> bool:
            r = await http.get(f"{a.url}/entities/urn:ngsi-ld:Vehicle:car1", headers=parking)
            assert r.status_code == 200, r.text
            return ("driverName" in r.json()) == want

        assert await driver_visible(http, False)
        r = await http.post(f"{root(b)}/consent/v1/consents", headers=by_alice,
                            json={"recipient": "org:parking", "purpose": "dpv:ServiceProvision"})
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
        await next_request_on_a(http, driver_visible, True)
        assert (await http.delete(f"{root(b)}/consent/v1/consents/{cid}", headers=by_alice)).status_code == 204
        await next_request_on_a(http, driver_visible, False)

        # -- MIM3: an offer withdrawn through B ends the agreement's access on A
        culture = "culture"
        cadmin = make("admin@culture", {culture: ["admin"]}, tenant=culture)
        radmin = make("admin@research", {"research": ["admin"]}, tenant="research")
        for h, org in ((cadmin, "meteo"), (radmin, "lab")):
            r = await http.post(f"{root(b)}/sharing/v1/organisations", headers=h, json={"id": org, "name": org})
            assert r.status_code == 201, r.text
        meteo = make("someone@meteo", {culture: ["editor"]}, org="meteo", tenant=culture)
        lab = make("someone@lab", {"research": ["admin"]}, org="lab", tenant=culture)
        station = {"id": "urn:ngsi-ld:WeatherObserved:1", "type": "WeatherObserved", "temperature": prop(20)}
        assert (await http.post(f"{b.url}/entities", headers=meteo, json=station)).status_code == 201
        r = await http.post(f"{root(b)}/sharing/v1/offers", headers=meteo, json={"title": "Weather", "policy": {
            "@type": "Offer", "target": {"entityType": "WeatherObserved"}, "permission": [{"action": "read"}]}})
        assert r.status_code == 201, r.text
        offer = r.json()["id"]
        assert (await http.post(f"{root(b)}/sharing/v1/offers/{offer}/accept", headers=lab)).status_code == 201

        async def lab_sees(http: httpx.AsyncClient, want: int) -> bool:
            r = await http.get(f"{a.url}/entities", params={"type": "WeatherObserved"}, headers=lab)
            assert r.status_code == 200, r.text
            return len(r.json()) == want

        await next_request_on_a(http, lab_sees, 1)
        assert (await http.post(f"{root(b)}/sharing/v1/offers/{offer}/withdraw", headers=meteo)).status_code == 200
        await next_request_on_a(http, lab_sees, 0)


# ---- (c) the KPI scheduler runs in one process ----------------------------------------------------

KPI_WRITES = """SELECT e.id, count(*) FROM tinstances i JOIN tentities e ON e.teid = i.teid
                WHERE e.id LIKE 'urn:ngsi-ld:KeyPerformanceIndicator:%%' AND i.attr LIKE '%%updatedAt'
                  AND i.deleted_at IS NULL GROUP BY e.id"""


def _sql(db: str, query: str, args: Any = None) -> list[tuple[Any, ...]]:
    from urbanmim.store.migrations import parse_url
    conninfo, schema = parse_url(db)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"SET search_path TO {schema}, public")
        return conn.execute(query, args).fetchall()


def _leader_pids(db: str) -> list[int]:
    from urbanmim.store.migrations import parse_url
    _, schema = parse_url(db)
    rows = _sql(db, "SELECT application_name FROM pg_stat_activity WHERE application_name LIKE %s",
                (f"urbanmim leader kpi-scheduler {schema} %",))
    return [int(r[0].rsplit(" ", 1)[1]) for r in rows]


def _wait(cond: Any, seconds: float = 30.0) -> bool:
    end = time.monotonic() + seconds
    while not cond() and time.monotonic() < end:
        time.sleep(0.1)
    return bool(cond())


def test_three_processes_compute_a_due_kpi_once_and_another_takes_over(pg_db: str, procs: list[Server]) -> None:
    from tests.test_kpi_formulas import HISTORY, TENANT, city
    procs += start(pg_db, 3, kpi_schedule="0.5")
    h = {"NGSILD-Tenant": TENANT}
    with httpx.Client(timeout=30) as http:
        # the city's data arrives once all three run: every scheduler finds the same KPIs due
        r = http.post(f"{procs[0].url}/entityOperations/create", json=city(), headers=h)
        assert r.status_code == 201, r.text
        for eid, attr, v, at in HISTORY:
            assert http.patch(f"{procs[1].url}/entities/{eid}/attrs", headers=h,
                              json={attr: {"type": "Property", "value": v, "observedAt": at}}).status_code == 204
        assert _wait(lambda: len(_sql(pg_db, KPI_WRITES)) > 0)
        time.sleep(3)                                      # six more passes of every process
        writes = dict(_sql(pg_db, KPI_WRITES))
        assert writes and set(writes.values()) == {1}, writes   # each value computed once
        (leader,) = _leader_pids(pg_db)
        victim = next(s for s in procs if s.proc is not None and s.proc.pid == leader)
        os.kill(leader, signal.SIGKILL)
        victim.proc.wait()                                 # type: ignore[union-attr]
        # a value goes missing: due again; a surviving process takes the lead and computes it, once
        gone = sorted(writes)[0]
        alive = [s for s in procs if s is not victim]
        assert http.delete(f"{alive[0].url}/entities/{gone}", headers=h).status_code == 204
        assert _wait(lambda: http.get(f"{alive[1].url}/entities/{gone}", headers=h).status_code == 200)
        assert _wait(lambda: len(_leader_pids(pg_db)) == 1)
        assert _leader_pids(pg_db)[0] in {s.proc.pid for s in alive if s.proc is not None}
        time.sleep(2)
        after = dict(_sql(pg_db, KPI_WRITES))
        assert after[gone] == 2 and all(after[k] == 1 for k in writes if k != gone), after
