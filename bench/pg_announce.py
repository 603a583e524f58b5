"""What the entity change announcements cost, and how fast they travel (docs/postgres.md).

    .venv/bin/python -m bench.pg_announce                  # ~2 minutes
    .venv/bin/python -m bench.pg_announce --rounds 3 --n 300

1. **Write-path overhead**, in-process on ``PostgresStore.mutate`` (no HTTP, so the difference is
   not lost in request noise): single-entity creates, single-entity updates, batches of 100
   updates and 8 concurrent single-entity writers, with the announcement on and off (the
   ``collect`` listener removed: the store then sends no ``pg_notify``; a no-op listener stays in
   both, as the app always has listeners). Rounds
   alternate on/off in one sitting; per-operation mean and p50 of each round are printed.
2. **Settling**: a reserved-entity write with three stores following, answered after their acks,
   against the same write not waiting.
3. **Propagation**: two ``urbanmim serve`` processes on one database; a twin event stream open on
   A, PATCHes of one sensor sent one at a time through B (and, for comparison, through A): the
   time from sending the PATCH to the event arriving on A's stream, and the PATCH's own round trip.

Uses its own database (``--dbname``, dropped at the end). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

import httpx
import orjson
import psycopg

from urbanmim.store.announcements import collect
from urbanmim.store.base import Mutation
from urbanmim.store.postgres import PostgresStore

SDM = "https://smartdatamodels.org/dataModel.Environment/"


def entity(i: int, v: float) -> dict[str, Any]:
    return {"id": f"urn:ngsi-ld:AirQualityObserved:b{i}", "type": [SDM + "AirQualityObserved"],
            "attrs": {SDM + "no2": [{"type": "Property", "value": v}],
                      "https://uri.etsi.org/ngsi-ld/location": [
                          {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [2.0, 41.0]}}]}}


async def timed(store: PostgresStore, muts: list[Mutation]) -> float:
    t0 = time.perf_counter()
    await store.mutate("bench", muts)
    return time.perf_counter() - t0


SPENT: list[float] = []


def _timing_announce() -> None:
    """Time the store's announce call itself (the statement it adds to each mutate call): the
    before/after difference of whole writes drowns in the noise of a loaded machine."""
    from urbanmim.store import postgres
    inner = postgres.announce

    async def announce(*args: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await inner(*args)
        finally:
            SPENT.append(time.perf_counter() - t0)
    postgres.announce = announce        # type: ignore[assignment]


async def overhead(url: str, rounds: int, n: int) -> None:
    store = PostgresStore(url, pool_min=2, pool_max=10)
    await store.open()
    store.listeners.append(lambda change: ())
    _timing_announce()
    base = 0
    try:
        for r in range(rounds):
            for on in (True, False) if r % 2 == 0 else (False, True):
                if on and collect not in store.listeners:
                    store.listeners.insert(0, collect)
                if not on and collect in store.listeners:
                    store.listeners.remove(collect)
                SPENT.clear()
                creates = [await timed(store, [Mutation(f"urn:ngsi-ld:AirQualityObserved:b{base + i}",
                                                        lambda cur, i=base + i: (entity(i, 1.0), None))])
                           for i in range(n)]
                updates = [await timed(store, [Mutation(f"urn:ngsi-ld:AirQualityObserved:b{base + i}",
                                                        lambda cur, i=base + i, k=k: (entity(i, 2.0 + k), None))])
                           for k in range(2) for i in range(n // 2)]
                singles = list(SPENT)
                SPENT.clear()
                batches = [await timed(store, [Mutation(f"urn:ngsi-ld:AirQualityObserved:b{base + i}",
                                                        lambda cur, i=base + i, k=k: (entity(i, 9.0 + k), None))
                                               for i in range(100)]) for k in range(max(n // 25, 4))]
                in_batches = list(SPENT)
                # 8 writers at once: transactions that NOTIFY serialise their commits in PostgreSQL
                t0 = time.perf_counter()
                await asyncio.gather(*(_writer(store, base + w * (n // 8), n // 8, 20.0) for w in range(8)))
                conc = n * 2 // 8 * 8 / (time.perf_counter() - t0)
                base += n
                print(f"round {r} announce={'on ' if on else 'off'}  "
                      f"create {_ms(creates)}  update {_ms(updates)}  batch-100 update {_ms(batches)}  "
                      f"8 concurrent writers {conc:5.0f} updates/s", flush=True)
                if on:
                    print(f"    inside announce(): single writes {_ms(singles)}, batch-100 {_ms(in_batches)}",
                          flush=True)
    finally:
        await store.close()


async def _writer(store: PostgresStore, first: int, count: int, v: float) -> None:
    for k in range(2):
        for i in range(first, first + count):
            await store.mutate("bench", [Mutation(f"urn:ngsi-ld:AirQualityObserved:b{i}",
                                                  lambda cur, i=i, k=k: (entity(i, v + k), None))])


def _ms(xs: list[float]) -> str:
    return f"mean {statistics.mean(xs) * 1000:6.2f} p50 {statistics.median(xs) * 1000:6.2f} ms"


async def settling(url: str, n: int) -> None:
    """A reserved-entity write answered once 3 stores (here in one process) re-read it, against the
    same write with settling off on the writer (``settle_types`` emptied)."""
    from urbanmim.service.reserved import ReservedCache

    class Cache(ReservedCache):
        reserved_types = frozenset({"urbanmim:Bench"})

        def apply(self, tenant: str, eid: str, ent: Any) -> None:
            pass

    stores = [PostgresStore(url, pool_min=1) for _ in range(3)]
    for st in stores:
        await st.open()
        await Cache().load_and_follow(st, lambda t: asyncio.sleep(0), "bench")
    one = stores[0]
    kept = set(one.settle_types)

    def write(k: int) -> list[Mutation]:
        return [Mutation("urn:bench:r", lambda cur: ({"id": "urn:bench:r", "type": ["urbanmim:Bench"],
                                                      "attrs": {"v": [{"type": "Property", "value": k}]}}, None))]
    try:
        for r in range(4):
            for on in (True, False) if r % 2 == 0 else (False, True):
                one.settle_types.clear()
                if on:
                    one.settle_types.update(kept)
                xs = [await timed(one, write(k)) for k in range(n)]
                print(f"reserved-entity write, 3 processes following, settling {'on ' if on else 'off'}: {_ms(xs)}",
                      flush=True)
    finally:
        for st in stores:
            await st.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "urbanmim.cli", "serve", "--port", str(port), "--db", url],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            httpx.get(base + "/", timeout=0.5)
            return proc, base
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


async def propagation(url: str, samples: int) -> None:
    ctx = [{"AirQualityObserved": SDM + "AirQualityObserved", "no2": SDM + "no2"},
           "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld"]
    ld = {"Content-Type": "application/ld+json", "NGSILD-Tenant": "town"}
    eid = "urn:ngsi-ld:AirQualityObserved:p1"
    (pa, a), (pb, b) = serve(url), serve(url)
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            r = await http.post(f"{a}/ngsi-ld/v1/entities", headers=ld, json={
                "id": eid, "type": "AirQualityObserved", "no2": {"type": "Property", "value": 0.0},
                "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [2.0, 41.0]}},
                "@context": ctx})
            assert r.status_code == 201, r.text
            async with http.stream("GET", f"{a}/twin/api/events", headers={"NGSILD-Tenant": "town"}) as sse:
                lines = sse.aiter_lines()
                for via, name in ((b, "through B (other process)"), (a, "through A (same process)")) * 2:
                    event, answer = [], []
                    for k in range(samples):
                        value = float(k + 1) + (0.5 if via == a else 0.25)
                        t0 = time.perf_counter()
                        send = asyncio.ensure_future(http.patch(
                            f"{via}/ngsi-ld/v1/entities/{eid}/attrs", headers=ld,
                            json={"no2": {"type": "Property", "value": value}, "@context": ctx}))
                        send.add_done_callback(lambda f, t0=t0, out=answer: out.append(time.perf_counter() - t0))
                        async for line in lines:
                            line = line.rstrip("\r\n")
                            if line.startswith("data: [") and orjson.loads(line[6:])[-1]["feature"]["properties"].get(
                                    "no2") == value:
                                event.append(time.perf_counter() - t0)
                                break
                        await send
                    print(f"PATCH {name}: event on A's stream p50 {_p(event, 50)} p95 {_p(event, 95)} ms; "
                          f"PATCH answered p50 {_p(answer, 50)} p95 {_p(answer, 95)} ms  ({samples} samples)",
                          flush=True)
    finally:
        for p in (pa, pb):
            p.terminate()
            p.wait(timeout=15)


def _p(xs: list[float], q: int) -> str:
    xs = sorted(xs)
    return f"{xs[min(len(xs) - 1, int(len(xs) * q / 100))] * 1000:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pg-server", default="postgresql://postgres@127.0.0.1:5432")
    ap.add_argument("--dbname", default="urbanmim_bench_announce")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--samples", type=int, default=100)
    args = ap.parse_args()
    url = f"{args.pg_server}/{args.dbname}"
    with psycopg.connect(f"{args.pg_server}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {args.dbname}")
        conn.execute(f"CREATE DATABASE {args.dbname}")
    try:
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}", flush=True)
        asyncio.run(overhead(url, args.rounds, args.n))
        asyncio.run(settling(url, args.n // 2))
        asyncio.run(propagation(url, args.samples))
    finally:
        with psycopg.connect(f"{args.pg_server}/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {args.dbname} WITH (FORCE)")


if __name__ == "__main__":
    main()
