"""The ``urbanmim`` command: serve, demo, import, tenants (more sub-commands arrive with their issues)."""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

from urbanmim.settings import Settings


def _serve(settings: Settings) -> None:
    import uvicorn

    from urbanmim.app import create_app
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    exposure_or_exit(settings)
    app = create_app(settings)
    # uvicorn handles SIGTERM/SIGINT: stops accepting, drains, runs the lifespan shutdown
    # (which joins the writer thread after its last commit).
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level, access_log=False,
                loop="uvloop", http="httptools", timeout_graceful_shutdown=10,
                proxy_headers=True, forwarded_allow_ips=settings.forwarded_allow_ips)


def _security(p: argparse.ArgumentParser) -> None:
    p.add_argument("--secure", action="store_true", default=None,
                   help="security on: authentication, roles, rules, rate limits, audit (docs/security.md)")
    p.add_argument("--insecure-public", action="store_true", default=None,
                   help="allow security off on a non-loopback --host (an open broker)")


def exposure_or_exit(settings: Settings) -> None:
    """MIM6: a platform with security off serves on loopback only, unless --insecure-public."""
    from urbanmim.security.component import InsecureExposure, check_exposure
    try:
        check_exposure(settings)
    except InsecureExposure as e:
        raise SystemExit(f"urbanmim: {e}") from None


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 1026)")
    p.add_argument("--db", help="storage: SQLite file path (default urbanmim.db) or postgresql:// URL")
    p.add_argument("--config", help="TOML settings file")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="urbanmim", description="An open urban data platform (NGSI-LD, MIMs Plus).")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_serve = sub.add_parser("serve", help="serve the NGSI-LD API")
    _common(p_serve)
    _security(p_serve)
    p_demo = sub.add_parser("demo", help="load the three demo cities (idempotent) and serve them, alive")
    _common(p_demo)
    _security(p_demo)
    p_demo.add_argument("--history", type=float, default=0, metavar="DAYS",
                        help="back-fill DAYS of sensor history for newly created devices (default 0)")
    p_demo.add_argument("--interval", type=float, default=5.0, metavar="SECONDS",
                        help="seconds between simulator updates (0: no simulator; default 5)")
    p_demo.add_argument("--city", action="append", metavar="NAME",
                        help="load only this city (repeatable): portamar, lindmark, valdoria")
    p_demo.add_argument("--no-serve", action="store_true", help="load, print what was loaded, and exit")
    p_demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    p_imp = sub.add_parser("import", help="import a file (geojson, csv, gtfs) into a tenant: idempotent upserts")
    p_imp.add_argument("format", help="importer name: geojson, csv, gtfs (see docs/importers.md)")
    p_imp.add_argument("file", help="the file (GTFS: a .zip or a folder of .txt)")
    p_imp.add_argument("--tenant", required=True, help="target tenant (city)")
    p_imp.add_argument("--type", help="entity type (geojson, csv)")
    p_imp.add_argument("--db", help="storage target")
    p_imp.add_argument("--config", help="TOML settings file")
    p_imp.add_argument("--id-field", help="field holding the identifier (default: feature id / row number)")
    p_imp.add_argument("--id-prefix", help="entity id prefix (default urn:ngsi-ld:<Type>:)")
    p_imp.add_argument("--map", action="append", metavar="SRC=ATTR[:UNIT]",
                       help="map a field (or a+b, a numeric sum) to an attribute, optionally with a unit code")
    p_imp.add_argument("--context", help="@context URL for the attribute names (default: the core context)")
    p_imp.add_argument("--lon", help="CSV longitude column (default: auto-detected)")
    p_imp.add_argument("--lat", help="CSV latitude column (default: auto-detected)")
    p_imp.add_argument("--feed", help="GTFS feed name, put into the entity ids")
    p_imp.add_argument("--stop-times", action="store_true", help="GTFS: also import stop_times.txt")
    p_imp.add_argument("--strict", action="store_true", help="refuse the whole file if any record is invalid")
    p_imp.add_argument("--batch-size", type=int, default=500, help="entities per transaction (default 500)")
    p_imp.add_argument("--no-progress", action="store_true", help="no progress bar")
    p_ten = sub.add_parser("tenants", help="list the tenants (cities) of a store, one per line")
    p_ten.add_argument("--db", help="storage target")
    from urbanmim.security.cli import add_token_parser
    add_token_parser(sub)
    from urbanmim.store.migrate import add_db_parser
    add_db_parser(sub)
    from urbanmim.kpi.cli import add_kpi_parser
    add_kpi_parser(sub)
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {k: getattr(args, k, None) for k in ("host", "port", "db", "secure",
                                                                     "insecure_public")}
    settings = Settings.load(getattr(args, "config", None), **overrides)
    if args.cmd == "serve":
        _serve(settings)
    elif args.cmd == "demo":
        from urbanmim.ingest.demo.loader import run_demo
        return run_demo(args, settings)
    elif args.cmd == "import":
        from urbanmim.ingest.importers.runner import import_command
        return import_command(args, settings)
    elif args.cmd == "kpi":
        from urbanmim.kpi.cli import run_kpi_command
        return run_kpi_command(args, settings)
    elif args.cmd == "token":
        from urbanmim.security.cli import run_token_command
        return run_token_command(args, settings)
    elif args.cmd == "db":
        from urbanmim.store.migrate import run_db_command
        return run_db_command(args)
    elif args.cmd == "tenants":
        from urbanmim.app import open_store

        async def run() -> list[str]:
            store = open_store(settings)
            await store.open()
            try:
                return await store.tenants()
            finally:
                await store.close()
        for t in asyncio.run(run()):
            print(t or "(default)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
