"""The PostgreSQL bulk loader (``postgres_bulk.py``) writes what the write path writes.

Why this matters: benchmarks and first imports load millions of entities with COPY instead
of HTTP; if its rows differed from the writer's (index rows, bounding boxes), queries on a
bulk-loaded city would silently answer differently.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from urbanmim.app import create_app
from urbanmim.settings import Settings
from urbanmim.store.postgres_bulk import BulkConflict

pytestmark = pytest.mark.postgres


@pytest.fixture
async def app(pg_db: str) -> AsyncIterator[Any]:
    application = create_app(Settings(db=pg_db))
    async with application.router.lifespan_context(application):
        yield application


def _entity(n: int, rnd: random.Random) -> dict[str, Any]:
    ent: dict[str, Any] = {
        "id": f"urn:ngsi-ld:Station:{n}", "type": "Station" if n % 3 else ["Station", "Sensor"],
        "no2": {"type": "Property", "value": round(rnd.random() * 200, 1)},
        "level": {"type": "Property", "value": rnd.choice(["good", "bad"])},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [
            round(-3.9 + rnd.random() * 0.2, 5), round(43.4 + rnd.random() * 0.1, 5)]}},
    }
    if n % 4 == 0:
        ent["area"] = {"type": "GeoProperty", "value": {"type": "Polygon", "coordinates": [[
            [-3.9, 43.4], [-3.85, 43.4], [-3.85, 43.45], [-3.9, 43.4]]]}}
        ent["owner"] = {"type": "Relationship", "object": "urn:ngsi-ld:Org:1"}
    return ent


QUERIES = [
    {"type": "Station"}, {"type": "Sensor"}, {"type": "Station", "q": "no2>100;level==\"bad\""},
    {"type": "Station", "attrs": "owner"}, {"type": "Station", "georel": "near;maxDistance==3000",
                                            "geometry": "Point", "coordinates": "[-3.8,43.45]"},
    {"type": "Station", "georel": "intersects", "geometry": "Polygon", "geoproperty": "area",
     "coordinates": "[[[-3.88,43.41],[-3.86,43.41],[-3.86,43.43],[-3.88,43.43],[-3.88,43.41]]]"},
]


async def test_bulk_loaded_entities_answer_like_written_ones(app: Any) -> None:
    rnd = random.Random(4)
    ents = [_entity(n, rnd) for n in range(60)]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t/ngsi-ld/v1") as c:
        r = await c.post("/entityOperations/create", json=ents, headers={"NGSILD-Tenant": "written"})
        assert r.status_code == 201, r.text
        store = app.state.store
        docs = [await store.get("written", e["id"]) for e in ents]
        seen: list[int] = []
        assert await store.bulk_load("bulk", docs, chunk=25, progress=seen.append) == 60
        assert seen == [25, 50, 60]
        for params in QUERIES:
            answers = []
            for tenant in ("written", "bulk"):
                r = await c.get("/entities", params={**params, "limit": 1000, "count": "true"},
                                headers={"NGSILD-Tenant": tenant})
                assert r.status_code == 200, r.text
                answers.append(sorted(e["id"] for e in r.json()))
            assert answers[0] == answers[1], params
            assert answers[0], params          # every query selects something
        for tenant in ("written", "bulk"):
            r = await c.get("/types", params={"details": "true"}, headers={"NGSILD-Tenant": tenant})
            answers.append(r.json())
        assert answers[-1] == answers[-2]
        with pytest.raises(BulkConflict):
            await store.bulk_load("bulk", docs[:1])
        assert await store.bulk_load("bulk", []) == 0


async def test_bulk_loaded_history_aggregates_like_written_history(app: Any) -> None:
    from urbanmim.temporal.timeutil import iso, to_ms
    t0 = to_ms("2024-01-01T00:00:00Z")
    rows = [(t0 + i * 600_000, float(i % 17)) for i in range(300)]       # every 10 min, ~2 days
    attr = "https://uri.etsi.org/ngsi-ld/default-context/temperature"
    await app.state.store.bulk_load_instances("bulk", "urn:ngsi-ld:Sensor:1", "https://uri.etsi.org/ngsi-ld/"
                                              "default-context/Sensor", attr, rows)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t/ngsi-ld/v1") as c:
        r = await c.post("/temporal/entities", headers={"NGSILD-Tenant": "written"}, json={
            "id": "urn:ngsi-ld:Sensor:1", "type": "Sensor",
            "temperature": [{"type": "Property", "value": v, "observedAt": iso(ts)} for ts, v in rows]})
        assert r.status_code == 201, r.text
        out = []
        for tenant in ("written", "bulk"):
            r = await c.get("/temporal/entities/urn:ngsi-ld:Sensor:1", headers={"NGSILD-Tenant": tenant}, params={
                "options": "aggregatedValues", "aggrMethods": "avg,max,totalCount", "aggrPeriodDuration": "PT6H",
                "timerel": "between", "timeAt": "2024-01-01T00:00:00Z", "endTimeAt": "2024-01-03T00:00:00Z"})
            assert r.status_code == 200, r.text
            out.append(r.json()["temperature"])
        assert out[0] == out[1]
        assert len(out[0]["avg"]) == 8


async def test_deferred_indexes_come_back_and_need_an_empty_database(app: Any) -> None:
    from urbanmim.errors import Conflict
    store = app.state.store
    sql = ("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
           "AND tablename IN ('entities', 'etypes', 'eattrs', 'egeo') ORDER BY 1")
    before = await store._fetch(sql)
    rnd = random.Random(5)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t/ngsi-ld/v1") as c:
        ents = [_entity(n, rnd) for n in range(30)]
        assert (await c.post("/entityOperations/create", json=ents, headers={"NGSILD-Tenant": "w"})).status_code == 201
        docs = [await store.get("w", e["id"]) for e in ents]
        with pytest.raises(Conflict):
            await store.bulk_load("bulk", docs, defer_indexes=True)
        async with store.pool.connection() as conn:
            await conn.execute("TRUNCATE entities, etypes, eattrs, egeo")
        assert await store.bulk_load("bulk", docs, chunk=7, defer_indexes=True) == 30
        assert await store._fetch(sql) == before
        r = await c.get("/entities", params=QUERIES[4] | {"limit": 100}, headers={"NGSILD-Tenant": "bulk"})
        assert r.status_code == 200 and r.json()


async def test_geo_queries_answer_the_same_whichever_index_drives(app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A small area is driven by the GiST index, a wide one by the type's rid order with a box
    check per row (``_wide_area``): both plans must give the same pages."""
    import urbanmim.store.postgres as pg
    rnd = random.Random(6)
    ents = [_entity(n, rnd) for n in range(80)]
    geo = [q for q in QUERIES if "georel" in q]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t/ngsi-ld/v1") as c:
        assert (await c.post("/entityOperations/create", json=ents)).status_code == 201
        answers: dict[int, list[Any]] = {}
        decided: list[bool] = []
        real = pg.PostgresStore._wide_area

        async def spy(self: Any, q: Any, tid: int) -> bool:
            decided.append(await real(self, q, tid))
            return decided[-1]
        monkeypatch.setattr(pg.PostgresStore, "_wide_area", spy)
        for threshold in (10_000, 0):
            monkeypatch.setattr(pg, "_WIDE_AREA", threshold)       # 0: every geo-query of one type walks
            monkeypatch.setattr(pg, "_WIDE_MIN", -1 if threshold == 0 else 1000)
            answers[threshold] = []
            for params in geo:
                for page in ({"limit": 1000}, {"limit": 5, "offset": 3}):
                    r = await c.get("/entities", params={**params, **page, "count": "true"})
                    assert r.status_code == 200, r.text
                    answers[threshold].append(([e["id"] for e in r.json()], r.headers["NGSILD-Results-Count"]))
        assert answers[0] == answers[10_000]
        assert all(ids for ids, _ in answers[0])
        assert True in decided and False in decided           # both plans ran


async def test_small_area_candidates_come_from_the_index_alone(app: Any) -> None:
    """GiST first (a small area): the candidates' rids are read from ``egeo_b`` (box + included
    tid, attr, rid) by an index-only scan — no random egeo heap visit per candidate, which is
    what made a 100 m circle at 10M entities in 94 km² cost 200 ms p95 (docs/postgres.md)."""
    from urbanmim.ngsild.contexts import CORE
    from urbanmim.ngsild.params import entity_query
    store = app.state.store
    rnd = random.Random(7)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t/ngsi-ld/v1") as c:
        assert (await c.post("/entityOperations/create", json=[_entity(n, rnd) for n in range(40)])).status_code == 201
    async with store.pool.connection() as conn:
        await conn.execute("VACUUM (ANALYZE) egeo")         # the visibility map index-only scans rely on
    q = entity_query({"type": "Station", "georel": "near;maxDistance==300", "geometry": "Point",
                      "coordinates": "[-3.8,43.45]"}, CORE, "")
    tid = await store._tid("")
    assert not await store._wide_area(q, tid)
    plan = store._plan(q, tid)
    assert plan is not None
    body, args, order = plan
    async with store.pool.connection() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")     # 40 rows: a seq scan would be as good
        cur = await conn.execute(f"EXPLAIN (COSTS OFF) SELECT e.doc FROM {body} ORDER BY {order} LIMIT 20", args)
        text = "\n".join(r[0] for r in await cur.fetchall())
    assert "Index Only Scan using egeo_b" in text, text
