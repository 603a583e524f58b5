"""Benchmark (not a test): temporal aggregation over 1M instances, and temporal append throughput.

Run::

    .venv/bin/python bench/temporal_agg.py [--instances 1000000] [--db PATH]   # default: temp dir

1. **Load**: 1M numeric instances of one attribute (one every ~2.6 s over 30 days) go in
   through the store directly (``SQLiteStore.bulk_load_instances``: one transaction,
   ``executemany`` of the instance rows and of the same hour-bucket UPSERT the writer
   uses) — the HTTP path would measure JSON parsing, not storage.
2. **Aggregate**: ``GET /temporal/entities/{id}?options=aggregatedValues&aggrMethods=avg
   &aggrPeriodDuration=P1D&timerel=between&timeAt=<month start>&endTimeAt=<month end>``
   through the HTTP API in-process (httpx ASGI transport, full routing/rendering); the
   hour buckets answer it (~720 rows). Timed cold once, then the median of 20 runs; the
   raw-instance path (distinctCount) is timed once for comparison.
3. **Append throughput**: POST /temporal/entities/{id}/attrs with 100 instances per
   request, sequential, in-process — instances per second through the whole stack.

Figures are printed; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from urbanmim.app import create_app
from urbanmim.settings import Settings
from urbanmim.store.sqlite import SQLiteStore
from urbanmim.temporal.timeutil import iso, to_ms

EID = "urn:ngsi-ld:Sensor:bench"
ATTR = "https://uri.etsi.org/ngsi-ld/default-context/temperature"
START = "2024-01-01T00:00:00Z"
END = "2024-01-31T00:00:00Z"


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=1_000_000)
    ap.add_argument("--db", default=os.path.join(tempfile.gettempdir(), "temporal-bench.db"))
    args = ap.parse_args()
    for suffix in ("", "-wal", "-shm"):
        Path(args.db + suffix).unlink(missing_ok=True)
    store = SQLiteStore(args.db, synchronous="NORMAL")
    app = create_app(Settings(db=args.db, sqlite_synchronous="NORMAL"), store=store)
    async with app.router.lifespan_context(app):
        t0, t1 = to_ms(START), to_ms(END)
        step = (t1 - t0) / args.instances
        rows = [(t0 + int(i * step), 15.0 + (i % 1000) / 100.0) for i in range(args.instances)]
        tic = time.perf_counter()
        for i in range(0, len(rows), 200_000):
            store.bulk_load_instances(
                "", EID, "https://uri.etsi.org/ngsi-ld/default-context/Sensor", ATTR, rows[i : i + 200_000]
            )
        load_s = time.perf_counter() - tic
        print(f"load: {args.instances} instances in {load_s:.1f} s ({args.instances / load_s:,.0f}/s, store bulk path)")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench/ngsi-ld/v1") as c:
            url = (
                f"/temporal/entities/{EID}?options=aggregatedValues&aggrMethods=avg&aggrPeriodDuration=P1D"
                f"&timerel=between&timeAt={START}&endTimeAt={END}&attrs=temperature"
            )
            tic = time.perf_counter()
            r = await c.get(url)
            cold = (time.perf_counter() - tic) * 1000
            assert r.status_code == 200, r.text
            days = r.json()["temperature"]["avg"]
            times = []
            for _ in range(20):
                tic = time.perf_counter()
                r = await c.get(url)
                times.append((time.perf_counter() - tic) * 1000)
            print(
                f"aggregate avg per day over 30 days ({len(days)} periods) via HTTP: cold {cold:.1f} ms, "
                f"median {statistics.median(times):.1f} ms, max {max(times):.1f} ms (hour buckets)"
            )
            tic = time.perf_counter()
            r = await c.get(url.replace("aggrMethods=avg", "aggrMethods=distinctCount"))
            print(f"same query with distinctCount (raw instances): {(time.perf_counter() - tic) * 1000:.0f} ms")
            eid2 = "urn:ngsi-ld:Sensor:append"
            await c.post(
                "/temporal/entities",
                json={
                    "id": eid2,
                    "type": "Sensor",
                    "temperature": [{"type": "Property", "value": 1, "observedAt": START}],
                },
            )
            n_req, per = 50, 100
            tic = time.perf_counter()
            for k in range(n_req):
                base = to_ms(START) + k * per * 1000
                await c.post(
                    f"/temporal/entities/{eid2}/attrs",
                    json={
                        "temperature": [
                            {"type": "Property", "value": j, "observedAt": iso(base + j * 1000)} for j in range(per)
                        ]
                    },
                )
            dt = time.perf_counter() - tic
            print(
                f"append via HTTP: {n_req * per} instances in {dt:.2f} s ({n_req * per / dt:,.0f} instances/s, "
                f"{per} per request, sequential)"
            )
    print(f"db size: {os.path.getsize(args.db) / 1e6:.0f} MB")


if __name__ == "__main__":
    asyncio.run(main())
