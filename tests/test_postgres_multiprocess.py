"""Three ``urbanmim serve`` processes on one PostgreSQL database behave as one broker.

Why this matters: behind a reverse proxy consecutive requests of one client land on
different processes. A write acknowledged by one must be visible to a read on any other,
concurrent read-modify-writes of one entity from different processes must not lose
updates (row locks, not an in-process writer), and subscriptions/contexts stored by one
process are announced to the others (LISTEN/NOTIFY).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.conftest import Server
from urbanmim.store.postgres import PostgresStore

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
E = "urn:ngsi-ld:Vehicle:mp1"


@pytest.fixture
def servers(pg_db: str) -> Any:
    started = [Server(pg_db).start() for _ in range(3)]   # type: ignore[arg-type]
    yield started
    for s in started:
        s.stop()


def test_three_processes_one_broker(servers: list[Server]) -> None:
    a, b, c = servers
    with httpx.Client(timeout=10) as http:
        r = http.post(f"{a.url}/entities", json={"id": E, "type": "Vehicle", "speed": {"type": "Property", "value": 1}})
        assert r.status_code == 201, r.text
        # written on A, read on B and C at once (no cache, committed state)
        for s in (b, c):
            got = http.get(f"{s.url}/entities/{E}")
            assert got.status_code == 200 and got.json()["speed"]["value"] == 1
        # updated on C, seen on A
        assert http.patch(f"{c.url}/entities/{E}/attrs", json={"speed": {"type": "Property", "value": 7}}
                          ).status_code == 204
        assert http.get(f"{a.url}/entities/{E}").json()["speed"]["value"] == 7
        # queries and type discovery over what the three wrote
        for i, s in enumerate(servers):
            assert http.post(f"{s.url}/entities", json={"id": f"urn:ngsi-ld:Vehicle:mp-{i}", "type": "Vehicle"}
                             ).status_code == 201
        r = http.get(f"{b.url}/entities", params={"type": "Vehicle", "count": "true"})
        assert r.headers["NGSILD-Results-Count"] == "4"
        # a subscription created on B is read and deleted through the others
        sub = {"type": "Subscription", "entities": [{"type": "Vehicle"}],
               "notification": {"endpoint": {"uri": "http://127.0.0.1:9/never"}}}
        r = http.post(f"{b.url}/subscriptions", json=sub)
        assert r.status_code == 201, r.text
        sid = r.headers["Location"].rsplit("/", 1)[1]
        assert http.get(f"{c.url}/subscriptions/{sid}").status_code == 200
        assert http.delete(f"{a.url}/subscriptions/{sid}").status_code == 204
        assert http.get(f"{b.url}/subscriptions/{sid}").status_code == 404
        # temporal history written through A and C is one history
        r = http.get(f"{b.url}/temporal/entities/{E}", params={"options": "temporalValues"})
        assert r.status_code == 200
        assert sorted(v[0] for v in r.json()["speed"]["values"]) == [1, 7]


async def test_concurrent_appends_from_three_processes_lose_nothing(servers: list[Server]) -> None:
    """30 appends of distinct attributes to ONE entity, spread over 3 processes, all at once."""
    async with httpx.AsyncClient(timeout=20) as http:
        r = await http.post(f"{servers[0].url}/entities", json={"id": E, "type": "Vehicle"})
        assert r.status_code == 201

        async def append(i: int) -> int:
            s = servers[i % 3]
            resp = await http.post(f"{s.url}/entities/{E}/attrs", json={f"a{i}": {"type": "Property", "value": i}})
            return resp.status_code
        codes = await asyncio.gather(*(append(i) for i in range(30)))
        assert set(codes) == {204}, codes
        ent = (await http.get(f"{servers[2].url}/entities/{E}")).json()
        assert {f"a{i}" for i in range(30)} <= set(ent)


async def test_subscription_and_context_changes_are_announced(pg_db: str) -> None:
    """What an application cache needs to reload: another process's changes, never its own."""
    one, two = PostgresStore(pg_db, pool_min=1), PostgresStore(pg_db, pool_min=1)
    await one.open()
    await two.open()
    try:
        seen_one: list[tuple[str, str, str]] = []
        seen_two: list[tuple[str, str, str]] = []
        one.remote_listeners.append(lambda *a: seen_one.append(a))
        two.remote_listeners.append(lambda *a: seen_two.append(a))
        await one.save_subscription("city", "urn:ngsi-ld:Subscription:s1", {"id": "urn:ngsi-ld:Subscription:s1"})
        await one.save_context("c1", "http://x/c1", {"@context": {}}, "2024-01-01T00:00:00Z")
        for _ in range(100):
            if len(seen_two) >= 2:
                break
            await asyncio.sleep(0.02)
        assert seen_two == [("subscription", "city", "urn:ngsi-ld:Subscription:s1"), ("context", "", "c1")]
        assert seen_one == []
        assert await two.get_subscription("city", "urn:ngsi-ld:Subscription:s1") is not None
        # exactly one process drains the outbox
        assert [await one._is_drainer(), await two._is_drainer()].count(True) == 1
    finally:
        await one.close()
        await two.close()


def test_context_hosted_through_one_process_is_served_by_another(servers: list[Server]) -> None:
    """Hosted @contexts follow other processes (LISTEN/NOTIFY → reload): created through A,
    served by C; deleted through B, gone from C."""
    import time

    def wait_for(cond: Any, seconds: float = 10) -> bool:
        end = time.monotonic() + seconds
        while not cond() and time.monotonic() < end:
            time.sleep(0.05)
        return bool(cond())

    a, b, c = servers
    with httpx.Client(timeout=10) as h:
        ctx = h.post(f"{a.url}/jsonldContexts", json={"@context": {"Bus": "https://example.org/Bus"}})
        assert ctx.status_code == 201
        path = ctx.headers["Location"][len("/ngsi-ld/v1"):]
        assert wait_for(lambda: h.get(f"{c.url}{path}").status_code == 200)
        assert h.get(f"{c.url}{path}").json()["@context"] == {"Bus": "https://example.org/Bus"}
        assert wait_for(lambda: h.get(f"{b.url}{path}").status_code == 200)
        assert h.delete(f"{b.url}{path}").status_code == 204
        assert wait_for(lambda: h.get(f"{c.url}{path}").status_code == 404)


def _wait(cond: Any, seconds: float = 15.0) -> bool:
    import time
    end = time.monotonic() + seconds
    while not cond() and time.monotonic() < end:
        time.sleep(0.05)
    return bool(cond())


def test_subscription_on_one_process_notifies_writes_on_the_others(servers: list[Server]) -> None:
    """Subscribed through A, written through B and C right after A's 201: whichever process
    drains the outbox delivers every notification, each exactly once (no two processes send
    the same row), and the delivery counters are visible through every process."""
    from tests.test_notifications import Receiver

    a, b, c = servers
    rec = Receiver().start()
    try:
        with httpx.Client(timeout=10) as h:
            sub = {"type": "Subscription", "entities": [{"type": "Vehicle"}],
                   "notification": {"endpoint": {"uri": rec.url}}}
            r = h.post(f"{a.url}/subscriptions", json=sub)
            assert r.status_code == 201, r.text
            sid = r.headers["Location"].rsplit("/", 1)[1]

            speed = {"speed": {"type": "Property", "value": 1}}    # the default triggers need an attribute

            def notified_ids() -> list[str]:
                return [e["id"] for n in list(rec.got) for e in n["data"]]

            # no waiting: B and C match with the subscription from their first write after A's 201
            # (a stale cache is reloaded before matching: PostgresStore._check_subscriptions)
            ids = [f"urn:ngsi-ld:Vehicle:x{i}" for i in range(30)]
            for i, eid in enumerate(ids):
                s = (b, c)[i % 2]
                assert h.post(f"{s.url}/entities", json={"id": eid, "type": "Vehicle", **speed}).status_code == 201
            assert _wait(lambda: set(ids) <= set(notified_ids())), sorted(set(ids) - set(notified_ids()))
            import time
            time.sleep(1.0)     # a duplicate would arrive now
            assert sorted(notified_ids()) == sorted(ids)
            nids = [n["id"] for n in rec.got]
            assert len(nids) == len(set(nids)), "a notification was delivered twice"
            assert all(n["subscriptionId"] == sid for n in rec.got)
            # the delivery counters (kept by the delivering process) are visible through every process
            for s in servers:
                assert _wait(lambda s=s: h.get(f"{s.url}/subscriptions/{sid}").json()   # type: ignore[misc]
                             .get("notification", {}).get("timesSent") == len(rec.got)), s.port
    finally:
        rec.stop()


def _drainer_pid(db: str) -> int | None:
    """The pid of the ``urbanmim serve`` process that holds the outbox lock (its session is named)."""
    import psycopg

    from urbanmim.store.migrations import parse_url
    conninfo, schema = parse_url(db)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        rows = conn.execute("SELECT application_name FROM pg_stat_activity WHERE application_name LIKE %s",
                            (f"urbanmim drainer {schema} %",)).fetchall()
    return int(rows[0][0].rsplit(" ", 1)[1]) if rows else None


async def test_killing_the_delivering_process_under_load_loses_nothing(pg_db: str) -> None:
    """SIGKILL the process that delivers notifications while all three take writes: every
    acknowledged write is stored and notified (at least once); a notification sent again
    carries the id it had (single-row notifications; a backlog re-batched by the new
    drainer gets a new id by design, see ``notification_id``)."""
    import time

    from tests.test_notifications import Receiver

    servers = [Server(pg_db).start() for _ in range(3)]   # type: ignore[arg-type]
    rec = Receiver().start()
    try:
        async with httpx.AsyncClient(timeout=10) as h:
            r = await h.post(f"{servers[0].url}/subscriptions", json={
                "type": "Subscription", "entities": [{"type": "Vehicle"}], "watchedAttributes": ["speed"],
                "notification": {"endpoint": {"uri": rec.url}}})
            assert r.status_code == 201, r.text

            def notified() -> list[tuple[str, int, str]]:    # (entity, speed, notification id)
                return [(e["id"], e["speed"]["value"], n["id"]) for n in list(rec.got) for e in n["data"]]

            for s in servers:        # every process has the subscription before the load starts
                probe = f"urn:ngsi-ld:Vehicle:probe-{s.port}"
                for value in range(1, 100):
                    assert (await h.post(f"{s.url}/entities/{probe}/attrs" if value > 1 else f"{s.url}/entities",
                                         json={"id": probe, "type": "Vehicle", "speed": {"type": "Property",
                                                                                         "value": value}}
                                         if value == 1 else {"speed": {"type": "Property", "value": value}})
                            ).status_code in (201, 204)
                    await asyncio.sleep(0.2)
                    if any(e == probe for e, _, _ in notified()):
                        break
            victim_pid = _drainer_pid(pg_db)
            victim = next(s for s in servers if s.proc is not None and s.proc.pid == victim_pid)
            acked: list[tuple[str, int]] = []
            stop_at = time.monotonic() + 6

            async def writer(w: int) -> None:
                i = 0
                while time.monotonic() < stop_at:
                    s = servers[(w + i) % 3]
                    eid, i = f"urn:ngsi-ld:Vehicle:w{w}-{i % 5}", i + 1
                    try:
                        resp = await h.post(f"{s.url}/entityOperations/upsert", json=[
                            {"id": eid, "type": "Vehicle", "speed": {"type": "Property", "value": i}}])
                    except httpx.HTTPError:
                        continue                    # the killed process: not acknowledged
                    if resp.status_code in (201, 204):
                        acked.append((eid, i))

            async def killer() -> None:
                await asyncio.sleep(2)
                victim.kill()
            await asyncio.gather(*(writer(w) for w in range(6)), killer())
            assert victim.proc is not None and victim.proc.returncode is not None
            survivor = next(s for s in servers if s is not victim)
            assert len(acked) > 100, len(acked)
            # every acknowledged write is in the store: the last value of each entity is there
            last: dict[str, int] = {}
            for eid, v in acked:
                last[eid] = max(v, last.get(eid, 0))
            for eid, v in last.items():
                got = (await h.get(f"{survivor.url}/entities/{eid}")).json()
                assert got["speed"]["value"] >= v, (eid, got)
            # ...and every one of them was notified (the new drainer takes over within a poll)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not set(acked) <= {(e, v) for e, v, _ in notified()}:
                await asyncio.sleep(0.1)
            missing = set(acked) - {(e, v) for e, v, _ in notified()}
            assert not missing, sorted(missing)[:10]
            # a row sent twice as a single-row notification keeps its id
            singles: dict[tuple[str, int], set[str]] = {}
            for n in list(rec.got):
                if len(n["data"]) == 1:
                    e = n["data"][0]
                    singles.setdefault((e["id"], e["speed"]["value"]), set()).add(n["id"])
            assert all(len(ids) == 1 for ids in singles.values()), [k for k, v in singles.items() if len(v) > 1]
            print(f"acked {len(acked)} writes, {len(rec.got)} notifications, "
                  f"{len(notified()) - len(set((e, v) for e, v, _ in notified()))} rows delivered twice")
    finally:
        rec.stop()
        for s in servers:
            s.kill()


async def test_a_write_is_matched_with_subscriptions_committed_by_another_process(pg_db: str) -> None:
    """Without the LISTEN announcement (dropped here), the subscription version read before
    matching makes B reload its cache: a write B acknowledges after A acknowledged a
    subscription is matched — the announcement only saves the reload."""
    from tests.test_notifications import Receiver
    from urbanmim.app import create_app
    from urbanmim.settings import Settings

    rec = Receiver().start()
    one, two = create_app(Settings(db=pg_db)), create_app(Settings(db=pg_db))
    try:
        async with one.router.lifespan_context(one), two.router.lifespan_context(two):
            two.state.store.remote_listeners.clear()           # B hears nothing from A
            ta, tb = (httpx.ASGITransport(app=x) for x in (one, two))
            async with httpx.AsyncClient(transport=ta, base_url="http://a/ngsi-ld/v1") as a, \
                    httpx.AsyncClient(transport=tb, base_url="http://b/ngsi-ld/v1") as b:
                assert (await b.post("/entities", json={"id": "urn:ngsi-ld:Vehicle:0", "type": "Vehicle"})
                        ).status_code == 201           # B's cache is filled and current (no subscription)
                r = await a.post("/subscriptions", json={
                    "type": "Subscription", "entities": [{"type": "Vehicle"}],
                    "notification": {"endpoint": {"uri": rec.url}}})
                assert r.status_code == 201
                assert (await b.post("/entities", json={"id": "urn:ngsi-ld:Vehicle:1", "type": "Vehicle",
                                                        "speed": {"type": "Property", "value": 3}})
                        ).status_code == 201
                got = await rec.wait(1)
                assert got[0]["data"][0]["id"] == "urn:ngsi-ld:Vehicle:1"
                assert two.state.subscriptions.matcher.get("", r.headers["Location"].rsplit("/", 1)[1])
                # deleted through A: B stops matching at its next write
                assert (await a.delete(r.headers["Location"].split("/ngsi-ld/v1", 1)[1])).status_code == 204
                assert (await b.post("/entities/urn:ngsi-ld:Vehicle:1/attrs",
                                     json={"speed": {"type": "Property", "value": 4}})).status_code == 204
                assert two.state.subscriptions.matcher.all() == []
    finally:
        rec.stop()
