"""``urbanmim kpi ...``: compute, list, export and import KPI values from the command line.

The platform app is opened (not served), as ``urbanmim import`` does, so values are
written through the same service layer and store listeners (history, notifications) as
over the API.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any


def add_kpi_parser(sub: Any) -> None:
    p = sub.add_parser("kpi", help="KPIs (U4SSC): compute, list the catalogue, export and import values")
    ks = p.add_subparsers(dest="kpi_cmd", required=True)
    pc = ks.add_parser("compute", help="compute every computable KPI of a tenant and store the values")
    pc.add_argument("--tenant", required=True, help="the city (tenant)")
    pc.add_argument("--period", help="2026, 2026-Q2, 2026-03... (default: the current period of each KPI)")
    pc.add_argument("--kpi", action="append", metavar="CODE", help="only this KPI (repeatable)")
    pc.add_argument("--db", help="storage target")
    pc.add_argument("--config", help="TOML settings file")
    pc.add_argument("--no-progress", action="store_true", help="no progress bar")
    pl = ks.add_parser("list", help="print the catalogue (code, type, unit, computable, name)")
    pl.add_argument("--computable", action="store_true", help="only KPIs the platform computes")
    pe = ks.add_parser("export", help="write the KPI values of every (or one) tenant as CSV or JSON to stdout")
    pe.add_argument("--tenant", action="append", help="only this tenant (repeatable)")
    pe.add_argument("--format", choices=("csv", "json"), default="csv")
    pe.add_argument("--db", help="storage target")
    pe.add_argument("--config", help="TOML settings file")
    pi = ks.add_parser("import", help="import KPI values from a CSV or JSON export")
    pi.add_argument("file", help="the .csv or .json file")
    pi.add_argument("--tenant", help="write every value into this tenant (default: the file's tenant column)")
    pi.add_argument("--db", help="storage target")
    pi.add_argument("--config", help="TOML settings file")


async def _with_app(settings: Any, fn: Any) -> Any:
    import dataclasses

    from urbanmim.app import create_app
    from urbanmim.ingest.importers.runner import offline
    # a one-shot command: no MQTT session of its own, no scheduler
    app = create_app(dataclasses.replace(offline(settings), kpi_schedule=0.0))
    async with app.router.lifespan_context(app):
        return await fn(app)


def run_kpi_command(args: argparse.Namespace, settings: Any) -> int:
    from urbanmim.kpi import catalogue, engine, exchange, values
    from urbanmim.kpi.formulas import FORMULAS

    if args.kpi_cmd == "list":
        for d in catalogue.builtin():
            if args.computable and d.code not in FORMULAS:
                continue
            print(f"{d.code}\t{d.type}\t{d.unit}\t{'computable' if d.code in FORMULAS else 'manual'}\t{d.name}")
        return 0
    if args.kpi_cmd == "compute":
        from urbanmim.ingest.importers.runner import progress_bar

        async def run(app: Any) -> Any:
            n = len(engine.formulas_for(args.kpi))
            advance, close = progress_bar(n, f"KPIs for {args.tenant}", enabled=not args.no_progress)
            try:
                return await engine.compute(app, args.tenant, period=args.period, codes=args.kpi, progress=advance)
            finally:
                close()
        report = asyncio.run(_with_app(settings, run))
        for v in report.computed:
            label = v.code + (f" [{v.component}]" if v.component else "")
            print(f"{label}\t{v.period}\t{v.value}\t{v.unit}\t{v.quality}")
        for code, reason in report.skipped:
            print(f"{code}\tskipped: {reason}", file=sys.stderr)
        for vid, reason in report.kept:
            print(f"{vid}\tkept ({reason})", file=sys.stderr)
        for code, err in report.errors:
            print(f"{code}\terror: {err}", file=sys.stderr)
        print(f"urbanmim: {len(report.computed)} values for {args.tenant} ({', '.join(report.periods)}) in "
              f"{report.seconds:.2f} s", file=sys.stderr)
        return 1 if report.errors else 0
    if args.kpi_cmd == "export":
        async def run_export(app: Any) -> list[Any]:
            names = args.tenant or await app.state.store.tenants()
            return [v for t in names for v in await values.load(app, t)]
        vals = asyncio.run(_with_app(settings, run_export))
        if args.format == "csv":
            sys.stdout.write(exchange.to_csv(vals))
        else:
            sys.stdout.write(exchange.to_json(vals).decode() + "\n")
        return 0
    if args.kpi_cmd == "import":
        path = Path(args.file)
        raw = path.read_bytes()
        vals = exchange.from_csv(raw.decode("utf-8-sig")) if path.suffix.lower() == ".csv" else exchange.from_json(raw)

        async def run_import(app: Any) -> dict[str, int]:
            return await exchange.import_values(app, vals, tenant=args.tenant)
        counts = asyncio.run(_with_app(settings, run_import))
        for t, n in counts.items():
            print(f"urbanmim: {n} values imported into {t or '(default)'}", file=sys.stderr)
        return 0
    return 2
