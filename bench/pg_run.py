"""The bench/run.py figures on PostgreSQL, plus throughput with 1 vs 2 broker processes.

    .venv/bin/python -m bench.pg_run                       # 100k entities, ~5 minutes
    .venv/bin/python -m bench.pg_run --size 20000 --duration 5
    .venv/bin/python -m bench.pg_run --writes --size 20000     # write figures only (~1 minute)

Same harness as ``bench/run.py`` (its functions, wrk scripts, dataset, pinning and report):

1. the bare-ASGI ceiling, in the same run;
2. one ``urbanmim serve --db postgresql://.../<dbname>`` (fresh database) pinned to the
   server core like the SQLite broker: batch upsert (new, then existing ids), retrievals,
   type+q queries, creates — the rows of the SQLite table, on PostgreSQL;
3. **1 vs 2 processes** on that database: the same retrieval, query and create scenarios
   with wrk's two threads sent round-robin to the processes (``lua/pg_two_hosts.lua``,
   no proxy in between), once with both threads on one process, once spread over two.
   Brokers are not pinned in this step (two processes on one pinned core would measure
   nothing); PostgreSQL is never pinned and shares the machine with everything else.

``--writes`` runs only the write figures of step 2 (batch upsert new/existing ids, creates)
on a fresh broker, without the ceiling or step 3: for comparing write-path changes quickly.

The database is dropped at the end (``--keep`` keeps it). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import psycopg

from bench import loadgen, run, servers
from bench.run import GOALS, Ctx, Figure

PG_OPTS = {"--pg-server": "postgresql://postgres@127.0.0.1:5432", "--dbname": "urbanmim_bench_run"}


def pg_size(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return int(row[0]) if row else 0


def snapshot(ctx: Ctx, name: str, srv: servers.Server, entities: int, url: str) -> None:
    mem = servers.memory_kib(srv.pid)
    ctx.memory[name] = {"entities": entities, "VmRSS_KiB": mem["VmRSS"], "VmHWM_KiB": mem["VmHWM"],
                        "disk_bytes": pg_size(url)}
    print(f"  memory {name:<22} VmRSS {mem['VmRSS'] / 1024:8.1f} MiB   database {pg_size(url) / 2**20:8.1f} MiB",
          flush=True)


def run_pg_broker(ctx: Ctx, url: str) -> None:
    """The quick figures of bench/run.py (run_broker), with the broker on PostgreSQL."""
    a = ctx.args
    n = a.size
    port = servers.free_port()
    cmd = [*a.broker_cmd.split(), "--host", "127.0.0.1", "--port", str(port), "--db", url]
    with run.serving(ctx, "broker_pg", cmd, port) as srv:
        print(f"broker on PostgreSQL ({n:,} entities):", flush=True)
        snapshot(ctx, "pg@idle", srv, 0, url)
        run.upsert_figure(ctx, srv, n, a.seed, "upsert_new", f"batch upsert, new ids ({a.batch_size}/req)")
        snapshot(ctx, "pg@loaded", srv, n, url)
        ctx.problems += run.sanity_check(srv, n)
        read = {"ceiling": "ceiling_get"}
        run.wrk_figure(ctx, srv, "get_entity.lua", [f"n={n}"], "retrieve", "GET /entities/{id}, random ids",
                       goal=GOALS["retrieve"], **read)  # fmt: skip
        run.wrk_figure(ctx, srv, "query.lua", [], "query", "GET /entities?type&q (~6% match), limit=20",
                       goal=GOALS["query"], **read)  # fmt: skip
        run.upsert_figure(ctx, srv, n // 5, a.seed + 1, "upsert_existing", f"batch upsert, existing ids ({n // 5:,})")
        create = run.wrk_figure(ctx, srv, "create_entity.lua", [f"link={int(a.link)}", "run=1"], "create",
                                "POST /entities, unique ids", ceiling="ceiling_post", goal=GOALS["create"])  # fmt: skip
        run.drain(srv)
        snapshot(ctx, "pg@end", srv, n + create.ok, url)


def run_pg_writes(ctx: Ctx, url: str) -> None:
    """Only the write figures of :func:`run_pg_broker` (``--writes``)."""
    a = ctx.args
    n = a.size
    port = servers.free_port()
    cmd = [*a.broker_cmd.split(), "--host", "127.0.0.1", "--port", str(port), "--db", url]
    with run.serving(ctx, "broker_pg", cmd, port) as srv:
        print(f"broker on PostgreSQL, writes only ({n:,} entities):", flush=True)
        run.upsert_figure(ctx, srv, n, a.seed, "upsert_new", f"batch upsert, new ids ({a.batch_size}/req)")
        run.upsert_figure(ctx, srv, n, a.seed + 1, "upsert_existing", f"batch upsert, existing ids ({n:,})")
        run.wrk_figure(ctx, srv, "create_entity.lua", [f"link={int(a.link)}", "run=1"], "create",
                       "POST /entities, unique ids", goal=GOALS["create"])  # fmt: skip
        run.drain(srv)


def run_processes(ctx: Ctx, url: str) -> None:
    """Same scenarios, wrk -t2, round-robin over 1 then 2 unpinned processes on the loaded database."""
    a = ctx.args
    ports = [servers.free_port(), servers.free_port()]
    procs = []
    try:
        for i, port in enumerate(ports):
            cmd = [*a.broker_cmd.split(), "--host", "127.0.0.1", "--port", str(port), "--db", url]
            ctx.commands[f"broker_pg_{i + 1}"] = ctx.shown(cmd)
            srv = servers.start(f"broker_pg_{i + 1}", cmd, port, None, ctx.tmp / f"pg{i}.log", run.REPO)
            servers.wait_ready(srv)
            procs.append(srv)
        print("1 vs 2 processes (wrk -t2, round-robin, brokers unpinned):", flush=True)
        scenarios = [("get_entity.lua", [f"n={a.size}"], "retrieve", "GET /entities/{id}"),
                     ("query.lua", [], "query", "GET /entities?type&q, limit=20"),
                     ("create_entity.lua", [f"link={int(a.link)}"], "create", "POST /entities")]
        for k, count in enumerate((1, 2)):
            used = procs[:count]
            os.environ["BENCH_HOSTS"] = ",".join(f"127.0.0.1:{p.port}" for p in used)
            for script, args, key, label in scenarios:
                os.environ["BENCH_SCENARIO"] = script
                extra = [f"run=p{k}"] if key == "create" else []
                for p in used:
                    run.drain(p, a.wait_quiet)

                def cpu(used: list[servers.Server] = used) -> float:
                    return sum(servers.cpu_seconds(p.pid) for p in used)
                url0 = f"http://127.0.0.1:{used[0].port}"
                seed = [f"seed={a.seed}"]
                if a.warmup > 0:
                    loadgen.run_wrk(url0, "pg_two_hosts.lua", [*seed, *args, f"run=pw{k}{key}"] if key == "create"
                                    else [*seed, *args], a.warmup, 4, ctx.client_cpu, cpu, threads=2)
                m = loadgen.run_wrk(url0, "pg_two_hosts.lua", [*seed, *args, *extra], a.duration, a.connections,
                                    ctx.client_cpu, cpu, threads=2)
                fig = Figure(f"{key}_{count}p", f"{label}, {count} process{'es' if count > 1 else ''}", "req/s", m)
                run.add(ctx, fig, used[0])
    finally:
        for p in procs:
            servers.stop(p)
        os.environ.pop("BENCH_HOSTS", None)
        os.environ.pop("BENCH_SCENARIO", None)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    own = argparse.ArgumentParser(add_help=False)
    for opt, default in PG_OPTS.items():
        own.add_argument(opt, default=default)
    own.add_argument("--keep", action="store_true")
    own.add_argument("--writes", action="store_true", help="only the write figures, on one broker")
    pg, rest = own.parse_known_args(argv)
    args = run.parse_args([*rest, "--out", str(run.RESULTS / "pg_latest.json")] if "--out" not in rest else rest)
    loadgen.check_wrk()
    if shutil.which("taskset") is None:
        raise SystemExit("taskset is missing (Debian package util-linux).")
    url = f"{pg.pg_server}/{pg.dbname}"
    with psycopg.connect(f"{pg.pg_server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{pg.dbname}" WITH (FORCE)')
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, client_cpu = (cpus[-1], cpus[0]) if len(cpus) >= 2 else (None, None)
    if client_cpu is not None:
        os.sched_setaffinity(0, {client_cpu})
    servers.install_cleanup()
    with tempfile.TemporaryDirectory(prefix="urbanmim-pgbench-") as tmp:
        ctx = Ctx(args, server_cpu, client_cpu, Path(tmp), {}, {}, {})
        try:
            if pg.writes:
                run_pg_writes(ctx, url)
            else:
                run.run_ceiling(ctx)
                run_pg_broker(ctx, url)
                run_processes(ctx, url)
        except KeyboardInterrupt:
            return 130
        except (RuntimeError, OSError) as e:
            ctx.problems.append(f"run aborted: {str(e).splitlines()[0]}")
            print(f"\nERROR: {e}", file=sys.stderr)
        finally:
            servers.stop_all()
            if not pg.keep:
                with psycopg.connect(f"{pg.pg_server}/postgres", autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{pg.dbname}" WITH (FORCE)')
        meta: dict[str, Any] = run.machine_info(ctx)
        meta["dataset"]["store"] = f"PostgreSQL ({pg.pg_server.rsplit('@', 1)[-1]}/{pg.dbname}), disk = database size"
        result = run.finish(ctx, meta)
    print(run.render(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    failed = sum(f.m.failed + sum(f.m.socket_errors.values()) for f in ctx.figures.values())
    return 1 if failed or ctx.problems else 0


if __name__ == "__main__":
    sys.exit(main())
