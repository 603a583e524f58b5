"""What security costs: retrieval and query latency with security off vs on, in the same run.

    .venv/bin/python -m bench.security_overhead            # 10k entities, 12 rounds x 300 requests
    .venv/bin/python -m bench.security_overhead --size 20000 --rounds 20 --requests 500

Three apps are opened on one SQLite database holding ``--size`` AirQualityObserved entities
(``bench/dataset.py``, the core benchmark's entities and query):

* ``off``      — the default: security off;
* ``on``       — ``secure = true``: a valid bearer token from the development issuer (role
  reader), an attribute rule active for the type (reader may not see ``temperature``) plus an
  unrelated rule, reads audited (buffered, flushed every second), rate limit checked (set
  high enough never to refuse);
* ``on-noaudit`` — the same without read auditing (``audit_reads = false``), to show its share.

Each request is one call of the ASGI application (no HTTP server, no client library): what is
timed is exactly the work the platform does per request, so the relative overhead shown is an
upper bound of what a client sees over HTTP (where the server's HTTP parsing and the network add
to the denominator, not to the difference). After each call the event loop runs its other tasks once
(inside the timed span, for every mode), as a server's loop does between requests: background work
such as the audit log's batched appends is paid where it happens. Modes are interleaved round by round (off, on,
on-noaudit, then the next round in rotated order), so drift on a shared machine hits every mode
alike; the report gives per-mode median, p99 and mean latency, throughput on one core, and the
added latency in percent of ``off``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bench.dataset import LEVELS, batches, entity_id
from urbanmim.app import create_app
from urbanmim.security.component import _load as load_policies
from urbanmim.security.tokens import issue
from urbanmim.settings import Settings
from urbanmim.store.base import AuditQuery


async def call(app: Any, path: str, query: str = "", headers: list[tuple[bytes, bytes]] | None = None,
               method: str = "GET", body: bytes = b"") -> tuple[int, int]:
    """One request through the ASGI app; (status, response body bytes)."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query.encode(),
             "root_path": "", "headers": [(b"host", b"bench"), (b"accept", b"application/json"),
                                          *(headers or [])],
             "client": ("127.0.0.1", 40000), "server": ("bench", 80)}
    sent = False
    status, size = 0, 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(msg: dict[str, Any]) -> None:
        nonlocal status, size
        if msg["type"] == "http.response.start":
            status = msg["status"]
        elif msg["type"] == "http.response.body":
            size += len(msg.get("body", b""))
    await app(scope, receive, send)
    return status, size


def retrieval(rnd: random.Random, size: int) -> tuple[str, str]:
    return f"/ngsi-ld/v1/entities/{entity_id(rnd.randrange(size))}", ""


def query(rnd: random.Random, size: int) -> tuple[str, str]:
    q = f'NO2>{rnd.randint(140, 160)};airQualityLevel=="{rnd.choice(LEVELS)}"'
    return "/ngsi-ld/v1/entities", f"type=AirQualityObserved&q={quote(q, safe='')}&limit=20"


async def load(db: str, size: int) -> None:
    app = create_app(Settings(db=db, sqlite_synchronous="NORMAL"))
    async with app.router.lifespan_context(app):
        for _, body in batches(0, size, 1000):
            status, _ = await call(app, "/ngsi-ld/v1/entityOperations/upsert", "", [
                (b"content-type", b"application/json")], "POST", body)
            assert status in (201, 204), status


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="secbench-"))
    db = str(tmp / "bench.db")
    t0 = time.monotonic()
    await load(db, args.size)
    print(f"loaded {args.size} entities in {time.monotonic() - t0:.1f}s")
    common = {"db": db, "sqlite_synchronous": "NORMAL", "kpi_schedule": 0.0}
    apps = {
        "off": create_app(Settings(**common)),
        "on": create_app(Settings(**common, secure=True, rate_limit=1e9, rate_burst=1e9)),
        "on-noaudit": create_app(Settings(**common, secure=True, rate_limit=1e9, rate_burst=1e9,
                                          audit_reads=False)),
    }
    cms = {k: a.router.lifespan_context(a) for k, a in apps.items()}
    for cm in cms.values():
        await cm.__aenter__()
    try:
        sec = apps["on"].state.security
        tok = issue(sec.dev_key, subject="bench-reader", roles={"": ["reader"]}, audience="urbanmim", ttl=7200)
        admin = issue(sec.dev_key, subject="bench-admin", roles={"": ["admin"]}, audience="urbanmim", ttl=7200)
        auth = [(b"authorization", f"Bearer {tok}".encode())]
        for name, body in (("no-temperature", b'{"role":"reader","entityType":"AirQualityObserved",'
                                              b'"hide":["temperature"]}'),
                           ("no-owner", b'{"role":"reader","entityType":"ParkingSpot","hide":["owner"]}')):
            status, _ = await call(apps["on"], f"/security/v1/rules/{name}", "", [
                (b"authorization", f"Bearer {admin}".encode()), (b"content-type", b"application/json")],
                "PUT", body)
            assert status in (200, 201), status
        # the rules were written through "on"; "on-noaudit" (another store object) reads them as at start
        fresh = await load_policies(apps["on-noaudit"].state.store)
        apps["on-noaudit"].state.security.policies.tenants = fresh.tenants
        pol = apps["on-noaudit"].state.security.policies
        pol.version = getattr(pol, "version", 0) + 1        # rules changed: memoised role decisions go
        headers = {"off": [], "on": auth, "on-noaudit": auth}
        # sanity: the same answers, minus the hidden attribute
        st_off, n_off = await call(apps["off"], *retrieval(random.Random(1), args.size))
        st_on, n_on = await call(apps["on"], *retrieval(random.Random(1), args.size), auth)
        assert st_off == st_on == 200 and n_on < n_off, (st_off, st_on, n_off, n_on)
        lat: dict[str, dict[str, list[float]]] = {k: {"retrieval": [], "query": []} for k in apps}
        wall: dict[str, dict[str, float]] = {k: {"retrieval": 0.0, "query": 0.0} for k in apps}
        order = list(apps)
        for rnd_i in range(args.warmup + args.rounds):
            order = order[1:] + order[:1]
            for kind, make in (("retrieval", retrieval), ("query", query)):
                for mode in order:
                    rnd = random.Random(rnd_i * 7919 + (kind == "query"))
                    app, h = apps[mode], headers[mode]
                    reqs = [make(rnd, args.size) for _ in range(args.requests)]
                    w0 = time.perf_counter()
                    for path, qs in reqs:
                        t = time.perf_counter()
                        status, _ = await call(app, path, qs, h)
                        await asyncio.sleep(0)    # let background tasks run, as a server's loop does between
                        dt = time.perf_counter() - t   # requests (the audit flush is then paid where it occurs)
                        if status != 200:
                            raise RuntimeError(f"{mode} {kind}: HTTP {status}")
                        if rnd_i >= args.warmup:
                            lat[mode][kind].append(dt * 1e3)
                    if rnd_i >= args.warmup:
                        wall[mode][kind] += time.perf_counter() - w0
        report: dict[str, Any] = {"size": args.size, "rounds": args.rounds, "requests": args.requests, "modes": {}}
        for mode in apps:
            report["modes"][mode] = {}
            for kind in ("retrieval", "query"):
                xs = sorted(lat[mode][kind])
                report["modes"][mode][kind] = {
                    "median_ms": statistics.median(xs), "p99_ms": xs[int(len(xs) * 0.99) - 1],
                    "mean_ms": statistics.fmean(xs), "per_s": len(xs) / wall[mode][kind]}
        audit = apps["on"].state.security.audit
        await audit.flush()
        report["audit_entries_written"] = len(await apps["on"].state.store.audit_query(AuditQuery(limit=10**7)))
        return report
    finally:
        for cm in cms.values():
            await cm.__aexit__(None, None, None)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=10_000, help="entities loaded (default 10000)")
    ap.add_argument("--rounds", type=int, default=12, help="measured rounds per mode and kind (default 12)")
    ap.add_argument("--warmup", type=int, default=2, help="unmeasured rounds first (default 2)")
    ap.add_argument("--requests", type=int, default=300, help="requests per round (default 300)")
    args = ap.parse_args()
    r = asyncio.run(measure(args))
    print(f"\n{r['size']} entities, {r['rounds']} rounds x {r['requests']} requests per mode and kind "
          "(one ASGI call each, one core)\n")
    print(f"{'kind':10} {'mode':11} {'median ms':>10} {'p99 ms':>8} {'mean ms':>8} {'req/s':>8} {'added':>8}")
    for kind in ("retrieval", "query"):
        base = r["modes"]["off"][kind]["median_ms"]
        for mode, m in r["modes"].items():
            k = m[kind]
            added = "" if mode == "off" else f"{(k['median_ms'] / base - 1) * 100:+.1f}%"
            print(f"{kind:10} {mode:11} {k['median_ms']:10.3f} {k['p99_ms']:8.3f} {k['mean_ms']:8.3f} "
                  f"{k['per_s']:8.0f} {added:>8}")
    print(f"\naudit entries written by 'on': {r['audit_entries_written']}")


if __name__ == "__main__":
    main()
