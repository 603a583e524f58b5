"""Benchmark urbanmim against the ceiling of a bare ASGI app, in one run.

    .venv/bin/python -m bench.run            # quick: 100k entities, < 3 minutes
    .venv/bin/python -m bench.run --full     # + a fresh server loaded to 1M entities
    .venv/bin/python -m bench.run --secure   # retrieval and query with security off and on (MIM6 cost)

Starts every server itself (in a temporary directory, pinned to one core), loads
data, runs wrk (pinned to the other core), prints a plain-text table and writes
``bench/results/latest.json``. See ``bench/README.md`` for what each figure means.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import dataset, loadgen, servers
from bench.loadgen import Measurement

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
BIN = Path(sys.executable).parent
UPSERT = "/ngsi-ld/v1/entityOperations/upsert"
GOALS = {"create": 3_500, "retrieve": 7_000, "query": 3_500, "upsert": 50_000}  # per second
MIN_REQUESTS = 200  # fewer responses in a wrk window: too few samples, add a 1-connection row
# The uvicorn options of `urbanmim serve` (urbanmim/cli.py: uvicorn.run(...)), applied
# verbatim to the ceiling app so that the two differ only by the application.
UVICORN_OPTS = "--loop uvloop --http httptools --workers 1 --no-access-log --log-level info"
UVICORN_OPTS += " --timeout-graceful-shutdown 10"


@dataclass
class Figure:
    """One row of the report."""

    key: str
    label: str
    unit: str
    m: Measurement
    ceiling: str | None = None  # key of the matching ceiling figure
    goal: float | None = None
    pct_of_ceiling: float | None = None


@dataclass
class Ctx:
    """Settings shared by all steps."""

    args: argparse.Namespace
    server_cpu: int | None
    client_cpu: int | None
    tmp: Path
    figures: dict[str, Figure]
    memory: dict[str, dict[str, int]]
    commands: dict[str, str]
    warmups: int = 0
    problems: list[str] = field(default_factory=list)

    def shown(self, cmd: list[str]) -> str:
        """Command line without this machine's absolute paths."""
        text = " ".join(cmd).replace(str(self.tmp), "<tmp>")
        return text.replace(str(REPO) + "/", "").replace(str(REPO), ".")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    p.add_argument("--full", action="store_true", help="also load a fresh server to --full-size entities (peak RSS)")
    p.add_argument("--size", type=int, default=100_000, help="dataset size of the quick run (default 100000)")
    p.add_argument("--full-size", type=int, default=1_000_000, help="dataset size of the --full step")
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk figure (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="unmeasured wrk seconds before each figure")
    p.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    p.add_argument("--batch-size", type=int, default=1000, help="entities per upsert request")
    p.add_argument("--batch-concurrency", type=int, default=4, help="upsert requests in flight")
    p.add_argument("--link", action="store_true", help="creates send a Link header to the core context")
    p.add_argument("--ceiling-only", action="store_true", help="measure only the bare ASGI app")
    p.add_argument(
        "--secure",
        action="store_true",
        help="instead of the broker's core figures: retrieval and type+q query with security off, then on"
        " (valid bearer token, role reader, reads audited) on the same database, next to the ceiling",
    )
    p.add_argument(
        "--broker-cmd",
        default=str(BIN / "urbanmim") + " serve",
        help="command prefix; '--host H --port P --db FILE' is appended",
    )
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help="before each figure, wait up to S s until other processes use < 0.15 core (shared machines)",
    )
    p.add_argument(
        "--nice",
        type=int,
        default=0,
        metavar="N",
        help="run harness, servers and wrk at this niceness (negative needs root): shields figures from"
        " background load on a shared machine, at its expense",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    return p.parse_args(argv)


# --------------------------------------------------------------------------- steps


@contextlib.contextmanager
def serving(ctx: Ctx, name: str, cmd: list[str], port: int) -> Iterator[servers.Server]:
    """Start a server, wait for its port, and always stop it; if it died, show its log."""
    ctx.commands[name] = ctx.shown(cmd)
    srv = servers.start(name, cmd, port, ctx.server_cpu, ctx.tmp / f"{name}.log", REPO)
    try:
        servers.wait_ready(srv)  # on failure, its message carries the server's log
        try:
            yield srv
        except Exception:
            if srv.proc.poll() is not None:
                print(f"\n{name} died (exit code {srv.proc.returncode}); log tail:\n{srv.log_tail()}", file=sys.stderr)
            raise
    finally:
        servers.stop(srv)


def drain(srv: servers.Server, wait_quiet: float = 0.0) -> None:
    """Let the server finish work left over from the previous step (see servers.wait_idle),
    then optionally wait for other processes on the machine to calm down."""
    waited = servers.wait_idle(srv.pid)
    if waited > 2:
        print(f"  (waited {waited:.1f} s for the server to go idle)", flush=True)
    t0 = time.monotonic()
    other = 0.0
    while time.monotonic() - t0 < wait_quiet:
        b0, s0, c0 = loadgen.machine_busy_seconds(), servers.cpu_seconds(srv.pid), time.process_time()
        time.sleep(1.0)
        other = loadgen.machine_busy_seconds() - b0 - (servers.cpu_seconds(srv.pid) - s0) - (time.process_time() - c0)
        if other < 0.15:
            break
    if time.monotonic() - t0 > 1.5:
        print(f"  (waited {time.monotonic() - t0:.0f} s for a quiet machine; other load {other:.2f} core)", flush=True)


def wrk(
    ctx: Ctx, srv: servers.Server, script: str, args: list[str], connections: int | None = None, warmup: bool = True
) -> Measurement:
    """Warm up, drain, then measure one wrk figure."""
    url = f"http://127.0.0.1:{srv.port}"

    def cpu() -> float:
        return servers.cpu_seconds(srv.pid)

    a = ctx.args
    conns = connections or a.connections
    args = [f"seed={a.seed}", *args]
    if a.warmup > 0 and warmup:
        # Few connections: enough to warm caches, without queueing a backlog of slow
        # requests that the server would keep executing into the measured window.
        # Own run tag, so warm-up creates do not collide with the measured ones.
        ctx.warmups += 1
        warm = [*args, f"run=w{ctx.warmups}"]
        loadgen.run_wrk(url, script, warm, a.warmup, min(conns, 4), ctx.client_cpu, cpu)
    drain(srv, a.wait_quiet)
    return loadgen.run_wrk(url, script, args, a.duration, conns, ctx.client_cpu, cpu)


def wrk_figure(
    ctx: Ctx, srv: servers.Server, script: str, args: list[str], key: str, label: str, **kw: Any
) -> Measurement:
    """Measure and add a wrk figure; if it completed few requests, add a 1-connection row.

    With 32 connections, a request that takes seconds yields few or no completions in
    the window; the latency of one request at a time is then the useful number.
    """
    m = wrk(ctx, srv, script, args)
    add(ctx, Figure(key, label, "req/s", m, **kw), srv)
    if m.requests < MIN_REQUESTS:
        print(f"  only {m.requests} responses: measuring with 1 connection too", flush=True)
        drain(srv)
        one = wrk(ctx, srv, script, args, connections=1, warmup=False)
        add(ctx, Figure(key + "_c1", "  same, 1 connection (unloaded latency)", "req/s", one), srv)
    return m


def upsert(ctx: Ctx, srv: servers.Server, start: int, count: int, seed: int) -> Measurement:
    """Batch-upsert entities ``start .. start+count-1`` (values depend on ``seed``)."""
    return loadgen.run_batches(
        f"http://127.0.0.1:{srv.port}{UPSERT}",
        dataset.segments(start, count, ctx.args.batch_size, seed),
        ctx.args.batch_concurrency,
        lambda: servers.cpu_seconds(srv.pid),
    )


def upsert_figure(ctx: Ctx, srv: servers.Server, count: int, seed: int, key: str, label: str) -> Measurement:
    """Batch-upsert entities 0..count-1 and add the figure (ceiling: batch echo)."""
    drain(srv, ctx.args.wait_quiet)
    m = upsert(ctx, srv, 0, count, seed)
    add(ctx, Figure(key, label, "entities/s", m, "ceiling_batch", GOALS["upsert"]), srv)
    return m


def add(ctx: Ctx, fig: Figure, srv: servers.Server) -> None:
    """Record a figure (with the server's RSS right after it) and print a progress line."""
    ctx.figures[fig.key] = fig
    m = fig.m
    m.server_rss_mib = round(servers.memory_kib(srv.pid)["VmRSS"] / 1024, 1)
    bad = f"  non-2xx/failed: {m.failed} {m.statuses}" if m.failed else ""
    print(
        f"  {fig.label:<44} {m.rate:>10,.0f} {fig.unit:<11} p50 {m.p50_ms:7.2f} ms  p99 {m.p99_ms:7.2f} ms{bad}",
        flush=True,
    )


def run_ceiling(ctx: Ctx) -> None:
    """Bare ASGI app under the broker's uvicorn options, same wrk scripts."""
    a = ctx.args
    port = servers.free_port()
    cmd = [sys.executable, "-m", "uvicorn", "bench.ceiling:app", "--host", "127.0.0.1", "--port", str(port)]
    with serving(ctx, "ceiling", cmd + UVICORN_OPTS.split(), port) as srv:
        print("ceiling (bare ASGI app):", flush=True)
        wrk_figure(ctx, srv, "get_entity.lua", [f"n={a.size}"], "ceiling_get", "GET small JSON (ceiling for reads)")
        if a.secure:
            return  # --secure measures reads only
        create_args = [f"link={int(a.link)}", "run=0"]
        wrk_figure(ctx, srv, "create_entity.lua", create_args, "ceiling_post", "POST echo 1 entity (for creates)")
        drain(srv, a.wait_quiet)
        n = min(a.size, 100 * a.batch_size)
        batch = upsert(ctx, srv, 0, n, a.seed)
        add(ctx, Figure("ceiling_batch", f"POST echo {a.batch_size}-entity batch", "entities/s", batch), srv)


def broker_cmd(ctx: Ctx, port: int, db: Path) -> list[str]:
    return [*ctx.args.broker_cmd.split(), "--host", "127.0.0.1", "--port", str(port), "--db", str(db)]


def snapshot(ctx: Ctx, name: str, srv: servers.Server, entities: int) -> None:
    mem = servers.memory_kib(srv.pid)
    ctx.memory[name] = {
        "entities": entities,
        "VmRSS_KiB": mem["VmRSS"],
        "VmHWM_KiB": mem["VmHWM"],
        "disk_bytes": servers.disk_bytes(ctx.tmp / name.split("@")[0]),
    }
    print(
        f"  memory {name:<22} VmRSS {mem['VmRSS'] / 1024:8.1f} MiB   VmHWM {mem['VmHWM'] / 1024:8.1f} MiB", flush=True
    )


def sanity_check(srv: servers.Server, n: int, headers: dict[str, str] | None = None) -> list[str]:
    """One retrieval and one query by hand, so that a fast but wrong answer (404, an
    empty page because q was not applied, ...) is noticed instead of measured."""
    base = f"http://127.0.0.1:{srv.port}/ngsi-ld/v1/entities"
    problems = []
    one_id = dataset.entity_id(n // 2)

    def is_entity(body: Any) -> bool:
        return isinstance(body, dict) and body.get("id") == one_id

    def is_page(body: Any) -> bool:
        return (
            isinstance(body, list)
            and len(body) == 20
            and all(e["NO2"]["value"] > 150 and e["airQualityLevel"]["value"] == "moderate" for e in body)
        )

    q = urllib.parse.quote('NO2>150;airQualityLevel=="moderate"', safe="")
    checks = [(f"{base}/{one_id}", is_entity), (f"{base}?type={dataset.ENTITY_TYPE}&q={q}&limit=20", is_page)]
    for url, ok in checks:
        req = urllib.request.Request(url, headers={"Accept": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:
                body = json.loads(resp.read())
            if not ok(body):
                problems.append(f"unexpected answer to GET {url}: {json.dumps(body)[:300]}")
        except (urllib.error.URLError, ValueError, KeyError, TypeError) as e:
            problems.append(f"GET {url} failed: {e}")
    for p in problems:
        print(f"  SANITY: {p}", flush=True)
    return problems


def run_broker(ctx: Ctx) -> None:
    """Quick figures at --size entities, on a fresh database."""
    a = ctx.args
    n = a.size
    port = servers.free_port()
    (ctx.tmp / "quick").mkdir()
    with serving(ctx, "broker", broker_cmd(ctx, port, ctx.tmp / "quick" / "urbanmim.db"), port) as srv:
        print(f"broker ({n:,} entities):", flush=True)
        snapshot(ctx, "quick@idle", srv, 0)
        upsert_figure(ctx, srv, n, a.seed, "upsert_new", f"batch upsert, new ids ({a.batch_size}/req)")
        snapshot(ctx, "quick@loaded", srv, n)
        ctx.problems += sanity_check(srv, n)
        read = {"ceiling": "ceiling_get"}
        wrk_figure(ctx, srv, "get_entity.lua", [f"n={n}"], "retrieve", "GET /entities/{id}, random ids",
                   goal=GOALS["retrieve"], **read)  # fmt: skip
        wrk_figure(ctx, srv, "query.lua", [], "query", "GET /entities?type&q (~6% match), limit=20",
                   goal=GOALS["query"], **read)  # fmt: skip
        upsert_figure(ctx, srv, n // 5, a.seed + 1, "upsert_existing", f"batch upsert, existing ids ({n // 5:,})")
        create = wrk_figure(ctx, srv, "create_entity.lua", [f"link={int(a.link)}", "run=1"], "create",
                            "POST /entities, unique ids", ceiling="ceiling_post", goal=GOALS["create"])  # fmt: skip
        drain(srv)
        snapshot(ctx, "quick@end", srv, n + create.ok)


# MIM6 cost over HTTP (--secure). The secure server gets a rate limit it never reaches (the check
# still runs per request) and one access rule, for another entity type (ParkingSpot): the role
# decider computes its view for AirQualityObserved, and answers stay byte-identical to security off,
# so the difference is the cost of security alone (not of smaller responses).
SECURE_TOML = "secure = true\nrate_limit = 1e9\nrate_burst = 1e9\n"
SECURE_RULE = b'{"role": "reader", "entityType": "ParkingSpot", "hide": ["owner"]}'


def dev_token(ctx: Ctx, db: Path, role: str) -> str:
    """A bearer token of the development issuer kept in ``db`` (``urbanmim token``), for the default tenant."""
    prefix = ctx.args.broker_cmd.split()
    prefix = prefix[:-1] if prefix[-1] == "serve" else prefix[:1]
    cmd = [*prefix, "token", "--tenant", "", "--role", role, "--subject", f"bench-{role}", "--ttl", "7200",
           "--db", str(db)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120, cwd=REPO)
    return out.stdout.strip().splitlines()[-1]


def put_rule(srv: servers.Server, admin: str) -> None:
    req = urllib.request.Request(
        f"http://127.0.0.1:{srv.port}/security/v1/rules/bench-unrelated", data=SECURE_RULE, method="PUT",
        headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        if resp.status not in (200, 201, 204):
            raise RuntimeError(f"PUT access rule: HTTP {resp.status}")


def run_secure(ctx: Ctx) -> None:
    """Retrieval and query at --size entities with security off, then on, on one database."""
    a = ctx.args
    n = a.size
    (ctx.tmp / "secure").mkdir()
    db = ctx.tmp / "secure" / "urbanmim.db"
    conf = ctx.tmp / "secure.toml"
    conf.write_text(SECURE_TOML)
    read = {"ceiling": "ceiling_get", "goal": None}
    port = servers.free_port()
    with serving(ctx, "broker_load", broker_cmd(ctx, port, db), port) as srv:
        print(f"loading {n:,} entities (security off; not a figure)", flush=True)
        loaded = upsert(ctx, srv, 0, n, a.seed)
        if loaded.items < n:
            ctx.problems.append(f"loading {n} entities: {loaded.failed} batches failed {loaded.statuses}")
    # both modes on a freshly started server over the same loaded database: same caches, same state
    port = servers.free_port()
    with serving(ctx, "broker", broker_cmd(ctx, port, db), port) as srv:
        print("broker, security off:", flush=True)
        ctx.problems += sanity_check(srv, n)
        wrk_figure(ctx, srv, "get_entity.lua", [f"n={n}"], "retrieve", "GET /entities/{id}, security off", **read)
        wrk_figure(ctx, srv, "query.lua", [], "query", "GET /entities?type&q, security off", **read)
    reader, admin = dev_token(ctx, db, "reader"), dev_token(ctx, db, "admin")
    port = servers.free_port()
    with serving(ctx, "broker_secure", [*broker_cmd(ctx, port, db), "--config", str(conf)], port) as srv:
        print("broker, security on (bearer token of role reader, reads audited):", flush=True)
        put_rule(srv, admin)
        ctx.problems += sanity_check(srv, n, {"Authorization": f"Bearer {reader}"})
        tok = f"token={reader}"
        wrk_figure(ctx, srv, "get_entity.lua", [f"n={n}", tok], "retrieve_secure",
                   "GET /entities/{id}, security on", **read)  # fmt: skip
        wrk_figure(ctx, srv, "query.lua", [tok], "query_secure", "GET /entities?type&q, security on", **read)


def secure_summary(result: dict[str, Any]) -> list[str]:
    """What security adds, per figure: time per request at saturation (1/rate), p50 latency, and the
    server's CPU time per request (srv CPU / rate: the steadiest of the three on a shared machine,
    where the server does not always get its whole core)."""
    figs = result["figures"]
    lines = []
    for key, label in (("retrieve", "retrieval"), ("query", "query")):
        off, on = figs.get(key), figs.get(key + "_secure")
        if not off or not on or not on["rate"] or not off["p50_ms"] or not on["server_cpu"]:
            continue
        cpu_off, cpu_on = off["server_cpu"] / off["rate"] * 1e6, on["server_cpu"] / on["rate"] * 1e6
        lines.append(
            f"  {label:<10} 1/rate {(off['rate'] / on['rate'] - 1) * 100:+6.1f} %"
            f"   p50 {(on['p50_ms'] / off['p50_ms'] - 1) * 100:+6.1f} %"
            f"   server CPU per request {(cpu_on / cpu_off - 1) * 100:+6.1f} % ({cpu_off:,.0f} -> {cpu_on:,.0f} us)"
        )
    return ["", "security on vs off (added):", *lines] if lines else []


def run_full(ctx: Ctx) -> None:
    """A fresh server loaded to --full-size entities: peak RSS, then reads at that size."""
    a = ctx.args
    n = a.full_size
    port = servers.free_port()
    (ctx.tmp / "full").mkdir()
    with serving(ctx, "broker_full", broker_cmd(ctx, port, ctx.tmp / "full" / "urbanmim.db"), port) as srv:
        print(f"broker, full step ({n:,} entities):", flush=True)
        snapshot(ctx, "full@idle", srv, 0)
        upsert_figure(ctx, srv, n, a.seed, "upsert_new_full", f"batch upsert, new ids, 0 -> {n:,}")
        drain(srv)
        snapshot(ctx, "full@loaded", srv, n)
        ctx.problems += sanity_check(srv, n)
        read = {"ceiling": "ceiling_get"}
        wrk_figure(ctx, srv, "get_entity.lua", [f"n={n}"], "retrieve_full", f"GET /entities/{{id}} at {n:,}",
                   goal=GOALS["retrieve"], **read)  # fmt: skip
        wrk_figure(ctx, srv, "query.lua", [], "query_full", f"GET /entities?type&q at {n:,}",
                   goal=GOALS["query"], **read)  # fmt: skip
        drain(srv)
        snapshot(ctx, "full@end", srv, n)


# --------------------------------------------------------------------------- report


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], check=False, cwd=REPO, capture_output=True, text=True, timeout=10)
    except OSError:
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def machine_info(ctx: Ctx) -> dict[str, Any]:
    cpu_model = "-"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    commit = _git("rev-parse", "HEAD") or "none (no commits yet)"
    a = ctx.args
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git_commit": commit,
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "mem_total_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(),
        "loadavg_at_end": Path("/proc/loadavg").read_text().split()[0],
        "python": platform.python_version(),
        "versions": {d: _version(d) for d in ("uvicorn", "uvloop", "httptools", "starlette", "urbanmim", "httpx")},
        "wrk": loadgen.wrk_version(),
        "pinning": (
            f"server on CPU {ctx.server_cpu}, wrk and batch client on CPU {ctx.client_cpu} (taskset)"
            if ctx.server_cpu is not None
            else "none (fewer than 2 CPUs)"
        )
        + (f"; niceness {a.nice}" if a.nice else ""),
        "load": f"wrk -t1 -c{a.connections}, {a.duration:g} s per figure after {a.warmup:g} s warm-up, "
        f"127.0.0.1; batches: asyncio client, {a.batch_concurrency} in flight, {a.batch_size} entities each",
        "dataset": {
            "quick_entities": a.size,
            "full_entities": a.full_size if a.full else None,
            "entity_type": dataset.ENTITY_TYPE,
            "entity_bytes": len(dataset.batch_body(0, 1)) - 2,
            "batch_size": a.batch_size,
            "query": 'type=AirQualityObserved&q=NO2>X;airQualityLevel=="L"&limit=20, X in [140,160]: ~6.3% match',
            "create_context": "Link to core context" if a.link else "none (default context)",
        },
        "commands": ctx.commands,
    }


def finish(ctx: Ctx, meta: dict[str, Any]) -> dict[str, Any]:
    for fig in ctx.figures.values():
        ceiling = ctx.figures.get(fig.ceiling) if fig.ceiling else None
        if ceiling and ceiling.m.rate:
            fig.pct_of_ceiling = 100 * fig.m.rate / ceiling.m.rate
    return {
        "meta": meta,
        "figures": {
            k: {
                **asdict(f.m),
                "label": f.label,
                "unit": f.unit,
                "rate": round(f.m.rate, 1),
                "ceiling": f.ceiling,
                "pct_of_ceiling": f.pct_of_ceiling and round(f.pct_of_ceiling, 1),
                "goal": f.goal,
                "meets_goal": None if f.goal is None else f.m.rate >= f.goal,
            }
            for k, f in ctx.figures.items()
        },
        "memory": ctx.memory,
        "sanity_problems": ctx.problems,
    }


def _row(*cells: str) -> str:
    """One table row: text columns (label, unit) left-aligned, numbers right-aligned."""
    layout = ("<46", ">9", "<10", ">8", ">7", ">7", ">6", ">7", ">7", ">7", ">7", ">6", ">7")
    return " ".join(f"{c:{spec}}" for c, spec in zip(cells, layout, strict=False)).rstrip()


def render(result: dict[str, Any]) -> str:
    """The plain-text report: context lines, the figures table, memory, failures."""
    meta, v, ds = result["meta"], result["meta"]["versions"], result["meta"]["dataset"]
    commit = meta["git_commit"]
    commit = commit[:12] if len(commit) == 40 else commit
    dirty = " (dirty)" if meta["git_dirty"] else ""
    full = f", full step {ds['full_entities']:,}" if ds["full_entities"] else ""
    lines = [
        "",
        f"urbanmim benchmark  {meta['date']}  commit {commit}{dirty}",
        f"machine: {meta['nproc']} x {meta['cpu_model']}, {meta['mem_total_gib']} GiB,"
        f" Linux {meta['kernel']}",
        f"software: Python {meta['python']}, uvicorn {v['uvicorn']} (uvloop {v['uvloop']},"
        f" httptools {v['httptools']}), starlette {v['starlette']},"
        f" urbanmim {v['urbanmim']}, {meta['wrk']}",
        f"pinning: {meta['pinning']}",
        f"load: {meta['load']}",
        f"dataset: {ds['quick_entities']:,} entities (~{ds['entity_bytes']} B each){full};"
        f" creates: {ds['create_context']}",
        f"query: {ds['query']}",
        "",
        _row("figure", "rate", "unit", "requests", "p50 ms", "p99 ms", "% ceil", "goal",
             "non-2xx", "srv CPU", "cli CPU", "other", "RSS MiB"),
    ]  # fmt: skip
    problems = []
    for f in result["figures"].values():
        pct = f"{f['pct_of_ceiling']:.0f}%" if f["pct_of_ceiling"] is not None else "-"
        goal = "-"
        if f["goal"] is not None:
            goal = f"{f['goal'] / 1000:g}k " + ("ok" if f["meets_goal"] else "NO")
        failed = f["requests"] - f["ok"] + sum(f["socket_errors"].values())
        lines.append(
            _row(f["label"], f"{f['rate']:,.0f}", f["unit"], f"{f['requests']:,}", f"{f['p50_ms']:.2f}",
                 f"{f['p99_ms']:.2f}", pct, goal, str(failed), f"{f['server_cpu']:.0%}",
                 f"{f['client_cpu']:.0%}", f"{f['other_cpu']:.0%}", f"{f['server_rss_mib']:.0f}")
        )  # fmt: skip
        if failed:
            problems.append(
                f"  {f['label']}: statuses {f['statuses']}, socket errors "
                f"{f['socket_errors']}\n    first non-2xx: {f['sample'][:300]}"
            )
        if len(f["segment_rates"]) > 1:
            per = " ".join(f"{r / 1000:.1f}k" for r in f["segment_rates"])
            lines.append(f"    per 100k-entity segment, entities/s: {per}")
    if result["memory"]:
        lines += ["", "memory of the server process tree (from /proc/PID/status):"]
        lines.append(f"  {'snapshot':<20}{'entities':>10}{'VmRSS MiB':>11}{'VmHWM MiB':>11}{'disk MiB':>10}")
        for name, m in result["memory"].items():
            lines.append(
                f"  {name:<20}{m['entities']:>10,}{m['VmRSS_KiB'] / 1024:>11.1f}"
                f"{m['VmHWM_KiB'] / 1024:>11.1f}{m['disk_bytes'] / 2**20:>10.1f}"
            )
    lines += secure_summary(result)
    if problems:
        lines += ["", "non-2xx responses / socket errors:", *problems]
    if result["sanity_problems"]:
        lines += ["", "problems (wrong answers or an aborted run; figures may be incomplete or meaningless):"]
        lines += [f"  {p}" for p in result["sanity_problems"]]
    lines += [
        "",
        "rate: successful (2xx except 207) responses or entities per second.",
        "% ceil: rate / matching bare-ASGI ceiling (GET for reads, POST echo for writes).",
        "srv/cli CPU: share of one core used by the server / the load generator;"
        " other: cores used by other processes meanwhile; RSS: server VmRSS after the figure.",
    ]
    noisy = sum(f["other_cpu"] > 0.15 for f in result["figures"].values())
    if noisy:
        lines.append(
            f"WARNING: other processes used > 0.15 core during {noisy} of {len(result['figures'])} figures"
            " (column 'other'): figures are low and noisy; re-run on a quiet machine."
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    loadgen.check_wrk()
    if shutil.which("taskset") is None:
        raise SystemExit("taskset is missing (Debian package util-linux).")
    broker_exe = args.broker_cmd.split()[0]
    if not args.ceiling_only and shutil.which(broker_exe) is None:
        raise SystemExit(f"broker command not found: {broker_exe} (pip install -e . ; or use --ceiling-only)")
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, client_cpu = (cpus[-1], cpus[0]) if len(cpus) >= 2 else (None, None)
    if client_cpu is not None:  # this process (the batch client) shares the load generator's core
        os.sched_setaffinity(0, {client_cpu})
    if args.nice:  # inherited by every server and wrk started from here
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)
    servers.install_cleanup()
    with tempfile.TemporaryDirectory(prefix="urbanmim-bench-") as tmp:
        ctx = Ctx(args, server_cpu, client_cpu, Path(tmp), {}, {}, {})
        try:
            run_ceiling(ctx)
            if args.secure and not args.ceiling_only:
                run_secure(ctx)
            elif not args.ceiling_only:
                run_broker(ctx)
                if args.full:
                    run_full(ctx)
        except KeyboardInterrupt:
            print("\ninterrupted; servers stopped.", file=sys.stderr)
            return 130
        except SystemExit:
            print("\nterminated; servers stopped.", file=sys.stderr)
            raise
        except (RuntimeError, OSError) as e:  # a server failed: still report what was measured
            ctx.problems.append(f"run aborted: {str(e).splitlines()[0]}")
            print(f"\nERROR: {e}", file=sys.stderr)
        finally:
            servers.stop_all()
        result = finish(ctx, machine_info(ctx))
    print(render(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    out = args.out.resolve()
    print(f"\nwritten: {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")
    failed = sum(f.m.failed + sum(f.m.socket_errors.values()) for f in ctx.figures.values())
    return 1 if failed or ctx.problems else 0


if __name__ == "__main__":
    sys.exit(main())
