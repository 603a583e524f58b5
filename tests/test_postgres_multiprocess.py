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
