"""The ``urbanmim`` command: serve, demo, tenants (more sub-commands arrive with their issues)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from urbanmim.settings import Settings


def _serve(settings: Settings) -> None:
    import uvicorn

    from urbanmim.app import create_app
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    # uvicorn handles SIGTERM/SIGINT: stops accepting, drains, runs the lifespan shutdown
    # (which joins the writer thread after its last commit).
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level, access_log=False,
                loop="uvloop", http="httptools", timeout_graceful_shutdown=10)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 1026)")
    p.add_argument("--db", help="storage: SQLite file path (default urbanmim.db)")
    p.add_argument("--config", help="TOML settings file")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="urbanmim", description="An open urban data platform (NGSI-LD, MIMs Plus).")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_serve = sub.add_parser("serve", help="serve the NGSI-LD API")
    _common(p_serve)
    p_demo = sub.add_parser("demo", help="load a demo city and serve it")
    _common(p_demo)
    p_ten = sub.add_parser("tenants", help="list the tenants (cities) of a store, one per line")
    p_ten.add_argument("--db", help="storage target")
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {k: getattr(args, k, None) for k in ("host", "port", "db")}
    settings = Settings.load(getattr(args, "config", None), **overrides)
    if args.cmd == "serve":
        _serve(settings)
    elif args.cmd == "demo":
        from urbanmim.ingest.sample import seed
        asyncio.run(seed(settings))
        print(f"urbanmim: demo city loaded into {settings.db}; serving on http://{settings.host}:{settings.port}"
              "/ngsi-ld/v1/", file=sys.stderr)
        _serve(settings)
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
