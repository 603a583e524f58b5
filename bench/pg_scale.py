"""PostgreSQL at city scale: bulk-load N entities (default 10M) + a month of history, then latencies.

    .venv/bin/python -m bench.pg_scale                        # 10M entities
    .venv/bin/python -m bench.pg_scale --entities 1000000,3000000,10000000   # measured at each size
    .venv/bin/python -m bench.pg_scale --keep                 # do not drop the database afterwards

Why not through HTTP: 10M entities at the broker's batch rate would take hours and measure
JSON-LD expansion; ``PostgresStore.bulk_load`` (``urbanmim/store/postgres_bulk.py``) writes
the rows the write path writes, with binary COPY. What is measured afterwards goes through
a real ``urbanmim serve`` process and HTTP, one request at a time (latency, not throughput):

* type + q:   ``GET /entities?type=AirQualityObserved&q=NO2>X;airQualityLevel=="L"&limit=20``
  (X in 140..160, ~6% of the type matches — the same query as ``bench/run.py``);
* geo:        ``georel=near;maxDistance==M`` around a random point of the dataset's box
  (M = 100 m and 500 m), and ``within`` a random ~300 m square, ``limit=20``;
* retrieval:  ``GET /entities/{id}``, random ids;
* temporal:   avg per day of ``NO2`` over a month (30 days, from the hour buckets) for one
  entity, and for a page of 20 / 100 entities of a type (``GET /temporal/entities?type=...``);
  the history is ``--history-entities`` entities x ``--per-day`` instances a day.

It prints p50/p95/p99/max per query, the EXPLAIN (ANALYZE, BUFFERS) of the SQL behind the
type+q and geo queries, and the database size; ``--partition-experiment`` also compares
the temporal table as it is (B-tree + BRIN) with a copy partitioned by month.
Nothing is asserted. The database (``--dbname``) is dropped at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench import dataset

REPO = Path(__file__).resolve().parents[1]
D = "https://uri.etsi.org/ngsi-ld/default-context/"
LOCATION = "https://uri.etsi.org/ngsi-ld/location"
TYPE = D + dataset.ENTITY_TYPE
MONTH_START, MONTH_END = "2024-05-01T00:00:00Z", "2024-05-31T00:00:00Z"
BOX = (-3.90, 43.42, -3.75, 43.49)          # dataset.entity_json's bounding box (Santander)
BOX_KM2 = 94.0                              # its area (12.1 x 7.8 km)


def scaled_box(area_km2: float | None) -> tuple[float, float, float, float]:
    """BOX, or a box of ``area_km2`` with the same centre and proportions: the same density as
    10M entities in BOX with 10M x area / 94 entities (e.g. 1M in 9.4 km²)."""
    if not area_km2:
        return BOX
    f = (area_km2 / BOX_KM2) ** 0.5
    cx, cy, w, h = (BOX[0] + BOX[2]) / 2, (BOX[1] + BOX[3]) / 2, (BOX[2] - BOX[0]) * f, (BOX[3] - BOX[1]) * f
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


_NOW = "2024-06-01T00:00:00.000Z"
_META = f'"createdAt":"{_NOW}","modifiedAt":"{_NOW}"'
# the store's internal shape (expanded IRIs) of bench/dataset.py's entity, filled with % and parsed
# by orjson: ~4x cheaper than building the nested dicts in Python (the loader's client is one core)
_INTERNAL = (
    '{"id":"' + dataset.ID_PREFIX + '%s","type":["' + TYPE + '"],"attrs":{'
    '"' + D + 'NO2":[{"type":"Property","value":%.1f,"unitCode":"GQ","observedAt":"%s",' + _META + '}],'
    '"' + D + 'PM10":[{"type":"Property","value":%.1f,"unitCode":"GQ","observedAt":"%s",' + _META + '}],'
    '"' + D + 'PM25":[{"type":"Property","value":%.1f,"unitCode":"GQ","observedAt":"%s",' + _META + '}],'
    '"' + D + 'temperature":[{"type":"Property","value":%.1f,"unitCode":"CEL","observedAt":"%s",' + _META + '}],'
    '"' + D + 'airQualityLevel":[{"type":"Property","value":"%s",' + _META + '}],'
    '"' + LOCATION + '":[{"type":"GeoProperty","value":{"type":"Point","coordinates":[%.5f,%.5f]},' + _META + '}],'
    '"' + D + 'refDevice":[{"type":"Relationship","object":"urn:ngsi-ld:Device:aq-%d",' + _META + '}]},'
    + _META + '}'
)


def entities(n: int, seed: int = 1, start: int = 0, box: tuple[float, float, float, float] = BOX
             ) -> Iterator[dict[str, Any]]:
    """Entities ``start .. n-1`` of ``bench/dataset.py`` (same values, same ids) in the store's
    internal shape (``start`` a multiple of 100,000), their points spread over ``box``."""
    import orjson
    x0, y0, dx, dy = box[0], box[1], box[2] - box[0], box[3] - box[1]
    for lo in range(start, n, 100_000):
        rnd = random.Random(seed * 1_000_003 + lo)
        u = rnd.random
        for i in range(lo, min(n, lo + 100_000)):
            m = int(u() * 43200)
            ts = f"2024-05-{1 + m // 1440:02d}T{m // 60 % 24:02d}:{m % 60:02d}:00Z"
            yield orjson.loads(_INTERNAL % (i, u() * 200, ts, u() * 120, ts, u() * 80, ts, u() * 40 - 5, ts,
                                            dataset.LEVELS[int(u() * 4)], x0 + u() * dx, y0 + u() * dy,
                                            i % dataset.DEVICES))


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def stats(name: str, ms: list[float], extra: str = "") -> dict[str, Any]:
    row = {"query": name, "n": len(ms), "p50": statistics.median(ms), "p95": pct(ms, 95), "p99": pct(ms, 99),
           "max": max(ms)}
    print(f"  {name:<58} n={len(ms):<4} p50 {row['p50']:7.1f}  p95 {row['p95']:7.1f}  p99 {row['p99']:7.1f}  "
          f"max {row['max']:7.1f} ms {extra}", flush=True)
    return row


async def load(url: str, start: int, n: int, hist: int, per_day: int, defer: bool,
               box: tuple[float, float, float, float] = BOX) -> dict[str, Any]:
    from urbanmim.store.postgres import PostgresStore
    from urbanmim.temporal.timeutil import to_ms
    store = PostgresStore(url, pool_min=1, pool_max=2)
    await store.open()
    out: dict[str, Any] = {}
    try:
        t0 = last_t = time.perf_counter()
        last_n = 0

        def progress(done: int) -> None:
            nonlocal last_t, last_n
            if done - last_n >= 500_000 or done == n - start:
                now = time.perf_counter()
                print(f"  {start + done:>11,} entities  {now - t0:7.0f} s  "
                      f"({(done - last_n) / (now - last_t):,.0f}/s now)", flush=True)
                last_t, last_n = now, done
                out["rows_s"] = now - t0
        await store.bulk_load("", entities(n, start=start, box=box), chunk=50_000, progress=progress,
                              defer_indexes=defer)
        out["load_s"] = time.perf_counter() - t0
        k = n - start
        print(f"loaded {k:,} entities ({start:,} -> {n:,}) in {out['load_s']:.0f} s ({k / out['load_s']:,.0f}/s): "
              f"rows {out['rows_s']:.0f} s, then index build {out['load_s'] - out['rows_s']:.0f} s"
              f"{'' if defer else ' (indexes kept: maintained row by row)'}", flush=True)
        if start:
            return out
        t1 = time.perf_counter()
        t_start, end = to_ms(MONTH_START), to_ms(MONTH_END)
        step = 86_400_000 // per_day
        series = []
        for k in range(hist):
            rnd = random.Random(k)
            series.append([(ts + rnd.randrange(step), round(rnd.random() * 200, 1))
                           for ts in range(t_start, end, step)])
        # one day of every entity at a time: rows land roughly in time order, as the live writer
        # puts them (what the BRIN index on ts relies on)
        for day in range(0, len(series[0]) if series else 0, per_day):
            for k, rows in enumerate(series):
                await store.bulk_load_instances("", dataset.entity_id(k), TYPE, D + "NO2", rows[day:day + per_day])
        out["history_s"] = time.perf_counter() - t1
        out["instances"] = hist * len(range(t_start, end, step))
        print(f"history: {out['instances']:,} instances of {hist:,} entities in {out['history_s']:.0f} s", flush=True)
    finally:
        await store.close()
    return out


def analyze(conninfo: str) -> float:
    t = time.perf_counter()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
    return time.perf_counter() - t


def explain(conninfo: str, url: str) -> dict[str, str]:
    """The SQL the store runs for the measured queries (built by its own planner, with its own
    choice of driving index), explained. The store reads exact-filtered queries through a
    cursor and stops after a page; LIMIT 400 stands for that here (~20 matches of a ~6% q)."""
    from urbanmim.store import postgres as pg
    from urbanmim.store.base import EntityQuery

    async def decide(queries: dict[str, EntityQuery]) -> dict[str, bool]:
        store = pg.PostgresStore(url, migrate=False, pool_min=1, pool_max=1)
        await store.open()
        try:
            return {name: await store._wide_area(q, 1) for name, q in queries.items()}
        finally:
            await store.close()
    cases = {"type+q (candidates in rid order; q decided in Python)": EntityQuery(tenant="",
                                                                                 types=[frozenset({TYPE})])}
    for m in (100, 500):
        cases[f"geo near {m} m"] = EntityQuery(tenant="", types=[frozenset({TYPE})],
                                               geo=_geo_query(f"near;maxDistance=={m}", "Point", "[-3.82,43.46]"))
    sq = [[-3.83, 43.45], [-3.826, 43.45], [-3.826, 43.453], [-3.83, 43.453], [-3.83, 43.45]]
    cases["geo within ~330 m square"] = EntityQuery(tenant="", types=[frozenset({TYPE})],
                                                    geo=_geo_query("within", "Polygon", json.dumps([sq])))
    wide = asyncio.run(decide(cases))
    plans: dict[str, str] = {}
    store = pg.PostgresStore(url, migrate=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for name, q in cases.items():
            label = name + (" (wide area: type walk)" if wide[name] else " (GiST first)" if q.geo else "")
            plan = store._plan(q, 1, wide_area=wide[name])
            assert plan is not None
            body, args, order = plan
            sql = f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT e.doc FROM {body} ORDER BY {order} LIMIT 400"
            text = "\n".join(r[0] for r in conn.execute(sql, args).fetchall())
            plans[label] = text
            print(f"\nEXPLAIN {label}:\n{text}", flush=True)
    return plans


def _geo_query(georel: str, geometry: str, coords: str) -> Any:
    from urbanmim.ngsild.contexts import CORE
    from urbanmim.ngsild.params import entity_query
    q = entity_query({"type": dataset.ENTITY_TYPE, "georel": georel, "geometry": geometry, "coordinates": coords},
                     CORE, "")
    return q.geo


def measure(base: str, n: int, samples: int, hist: int) -> list[dict[str, Any]]:
    rnd = random.Random(7)
    rows = []
    with httpx.Client(base_url=base, timeout=60, headers={"Accept": "application/json"}) as h:
        def timed(name: str, make: Any, check: Any = None, n: int = samples) -> None:
            for _ in range(5):                     # warm the connection and the caches a little
                h.get(make())
            ms = []
            for _ in range(n):
                url = make()
                t = time.perf_counter()
                r = h.get(url)
                ms.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200, (url, r.status_code, r.text[:300])
                if check is not None:
                    check(r.json())
            rows.append(stats(name, ms))

        def q_url() -> str:
            q = f'NO2>{rnd.uniform(140, 160):.1f};airQualityLevel=="{rnd.choice(dataset.LEVELS)}"'
            return f"/entities?type={dataset.ENTITY_TYPE}&q={urllib.parse.quote(q)}&limit=20"

        def full_page(body: Any) -> None:
            assert len(body) == 20, len(body)

        def point() -> str:
            return f"[{rnd.uniform(BOX[0], BOX[2]):.5f},{rnd.uniform(BOX[1], BOX[3]):.5f}]"

        def near(m: int) -> Any:
            return lambda: (f"/entities?type={dataset.ENTITY_TYPE}&georel=near;maxDistance=={m}&geometry=Point"
                            f"&coordinates={urllib.parse.quote(point())}&limit=20")

        def within() -> str:
            x, y = rnd.uniform(BOX[0], BOX[2] - 0.004), rnd.uniform(BOX[1], BOX[3] - 0.003)
            sq = [[x, y], [x + 0.004, y], [x + 0.004, y + 0.003], [x, y + 0.003], [x, y]]
            return (f"/entities?type={dataset.ENTITY_TYPE}&georel=within&geometry=Polygon"
                    f"&coordinates={urllib.parse.quote(json.dumps([sq]))}&limit=20")

        timed("GET /entities/{id} (random id)", lambda: f"/entities/{dataset.entity_id(rnd.randrange(n))}")
        timed("type + q (~6% match), limit=20", q_url, full_page)
        timed("geo near;maxDistance==100, limit=20", near(100))
        timed("geo near;maxDistance==500, limit=20", near(500), full_page)
        timed("geo within ~330x330 m square, limit=20", within)
        aggr = (f"aggrMethods=avg&aggrPeriodDuration=P1D&timerel=between&timeAt={MONTH_START}"
                f"&endTimeAt={MONTH_END}&attrs=NO2")

        def days(body: Any) -> None:
            ents = body if isinstance(body, list) else [body]
            assert ents and all(len(e["NO2"]["avg"]) == 30 for e in ents), str(body)[:300]
        timed("temporal: avg/day of NO2 over 30 days, 1 entity",
              lambda: f"/temporal/entities/{dataset.entity_id(rnd.randrange(hist))}?options=aggregatedValues&{aggr}",
              days)
        for page in (20, 100):
            timed(f"temporal: same, {page} entities of the type (one page)",
                  lambda page=page: f"/temporal/entities?type={dataset.ENTITY_TYPE}&options=aggregatedValues"  # type: ignore[misc]
                                    f"&{aggr}&limit={page}", days, max(10, samples // 5))
    return rows


def partition_experiment(conninfo: str) -> dict[str, Any]:
    """The temporal table as shipped (B-tree (teid, attr, ts) + BRIN (ts)) vs a copy partitioned by
    day ranges of ts (6 ranges of 5 days) with the same B-tree per partition: the API's query
    (one entity, one attribute, a month) and a time-wide scan (every entity, one day)."""
    from urbanmim.temporal.timeutil import to_ms
    start = to_ms(MONTH_START)
    day = 86_400_000
    out: dict[str, Any] = {}
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS tinst_part")
        conn.execute("CREATE TABLE tinst_part (LIKE tinstances) PARTITION BY RANGE (ts)")
        for i in range(6):
            conn.execute(f"CREATE TABLE tinst_part_{i} PARTITION OF tinst_part FOR VALUES FROM "
                         f"({start + i * 5 * day}) TO ({start + (i + 1) * 5 * day})")
        conn.execute("CREATE TABLE tinst_part_rest PARTITION OF tinst_part DEFAULT")
        t = time.perf_counter()
        conn.execute("INSERT INTO tinst_part SELECT * FROM tinstances")
        conn.execute("CREATE INDEX ON tinst_part(teid, attr, ts)")
        conn.execute("ANALYZE tinst_part")
        out["copy_s"] = time.perf_counter() - t
        teid = conn.execute("SELECT min(teid) FROM tentities").fetchone()[0]
        queries = {
            "one entity, NO2, 30 days (API read)":
                ("SELECT count(*), avg(num) FROM {t} WHERE teid=%s AND attr=%s AND ts>=%s AND ts<%s",
                 (teid, D + "NO2", start, start + 30 * day)),
            "all entities, 1 day (time-wide scan)":
                ("SELECT count(*), avg(num) FROM {t} WHERE ts>=%s AND ts<%s", (start + 10 * day, start + 11 * day)),
        }
        for name, (sql, args) in queries.items():
            for table in ("tinstances", "tinst_part"):
                ms = []
                for _ in range(15):
                    tt = time.perf_counter()
                    conn.execute(sql.format(t=table), args).fetchall()
                    ms.append((time.perf_counter() - tt) * 1000)
                plan = conn.execute("EXPLAIN (COSTS OFF) " + sql.format(t=table), args).fetchall()
                out[f"{name} / {table}"] = {"median_ms": statistics.median(ms),
                                            "plan": " | ".join(r[0].strip() for r in plan[:4])}
                print(f"  {name:<40} {table:<11} median {statistics.median(ms):8.2f} ms   "
                      f"{out[f'{name} / {table}']['plan'][:110]}", flush=True)
        out["sizes"] = {t: conn.execute("SELECT pg_size_pretty(pg_total_relation_size(%s))", (t,)).fetchone()[0]
                        for t in ("tinstances",)}
        conn.execute("DROP TABLE tinst_part")
    return out


def measure_step(a: argparse.Namespace, conninfo: str, n: int) -> dict[str, Any]:
    """EXPLAIN, sizes and latencies of the database as loaded to ``n`` entities."""
    result: dict[str, Any] = {}
    with psycopg.connect(conninfo, autocommit=True) as conn:
        result["db_size"] = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()[0]
        result["tables"] = dict(conn.execute(
            "SELECT relname, pg_size_pretty(pg_total_relation_size(oid)) FROM pg_class WHERE relkind='r' "
            "AND relnamespace='public'::regnamespace AND relname NOT LIKE 'spatial%' "
            "ORDER BY pg_total_relation_size(oid) DESC LIMIT 8").fetchall())
    print(f"database size: {result['db_size']}  {result['tables']}", flush=True)
    result["explain"] = explain(conninfo, conninfo)
    from tests.conftest import free_port
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "urbanmim.cli", "serve", "--port", str(port), "--db", conninfo],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, URBANMIM_PG_POOL_MIN="2"))
    try:
        base = f"http://127.0.0.1:{port}/ngsi-ld/v1"
        for _ in range(300):
            try:
                httpx.get(base.rsplit("/ngsi-ld", 1)[0] + "/", timeout=0.5)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        print(f"\nlatency at {n:,} entities through `urbanmim serve` + HTTP, one request at a time, "
              f"{a.samples} samples each (pages of many entities: {max(10, a.samples // 5)}):", flush=True)
        result["latency"] = measure(base, n, a.samples, a.history_entities)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.pg_scale", description=__doc__.split("\n")[0])
    ap.add_argument("--entities", default="10000000",
                    help="size, or comma-separated sizes measured in turn on one growing database "
                         "(e.g. 1000000,3000000,10000000); multiples of 100,000")
    ap.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432", help="PostgreSQL server URL")
    ap.add_argument("--dbname", default="urbanmim_bench_scale")
    ap.add_argument("--history-entities", type=int, default=1000)
    ap.add_argument("--per-day", type=int, default=96, help="instances per entity and day (96: every 15 min)")
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--keep", action="store_true", help="keep the database (default: dropped at the end)")
    ap.add_argument("--partition-experiment", action="store_true")
    ap.add_argument("--keep-indexes", action="store_true",
                    help="first step too with the indexes in place (default: defer_indexes on the empty database)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "pg_scale.json")
    ap.add_argument("--area-km2", type=float, default=None,
                    help="spread the entities over a box of this area (same centre and proportions as the "
                         "default 94 km²): the density of 10M entities in 94 km² is 1M in 9.4 km²")
    ap.add_argument("--measure-only", action="store_true",
                    help="no load: measure the database --dbname as it is (kept; e.g. after a store change, "
                         "with the same --entities and --area-km2 as the run that loaded it)")
    a = ap.parse_args()
    global BOX
    BOX = scaled_box(a.area_km2)
    steps = [int(x) for x in str(a.entities).split(",")]
    conninfo = f"{a.server}/{a.dbname}"
    result: dict[str, Any] = {"steps": {}, "history_entities": a.history_entities, "per_day": a.per_day}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    if a.measure_only:
        from urbanmim.store.migrations import upgrade
        t = time.perf_counter()
        print(f"migrations applied: {upgrade(conninfo) or 'none'} ({time.perf_counter() - t:.0f} s)", flush=True)
        n = steps[-1]
        only: dict[str, Any] = {"vacuum_analyze_s": analyze(conninfo)}
        only.update(measure_step(a, conninfo, n))
        result["steps"][n] = only
        a.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
        return 0
    with psycopg.connect(f"{a.server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{a.dbname}" WITH (FORCE)')
    try:
        prev = 0
        for n in steps:
            print(f"\n=== {n:,} entities: loading {prev:,} -> {n:,} into {a.dbname} (bulk COPY path)", flush=True)
            step: dict[str, Any] = asyncio.run(load(conninfo, prev, n, a.history_entities, a.per_day,
                                                    prev == 0 and not a.keep_indexes, BOX))
            step["vacuum_analyze_s"] = analyze(conninfo)
            print(f"VACUUM ANALYZE: {step['vacuum_analyze_s']:.0f} s", flush=True)
            step.update(measure_step(a, conninfo, n))
            result["steps"][n] = step
            a.out.write_text(json.dumps(result, indent=2, default=str) + "\n")     # each step as it completes
            prev = n
        if a.partition_experiment:
            print("\ntemporal layout: one table (B-tree + BRIN) vs partitioned by time:", flush=True)
            result["partitioning"] = partition_experiment(conninfo)
            a.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    finally:
        if not a.keep:
            with psycopg.connect(f"{a.server}/postgres", autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{a.dbname}" WITH (FORCE)')
            print(f"dropped {a.dbname}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
