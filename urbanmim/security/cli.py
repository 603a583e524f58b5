"""``urbanmim token``: a bearer token from the built-in development issuer, for the demo and tests.

The issuer's key is read from (or created in) the store named by ``--db``, so a token printed
here is accepted by every ``urbanmim serve --secure`` on that database (and by nothing else).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from urbanmim.security.principal import ROLES


def add_token_parser(sub: Any) -> None:
    p = sub.add_parser("token", help="print a bearer token from the development issuer (demo, tests)")
    p.add_argument("--tenant", required=True, help="tenant (city) the roles hold in; * for every tenant")
    p.add_argument("--role", required=True, action="append", choices=ROLES, help="role in the tenant (repeatable)")
    p.add_argument("--org", help="MIM3 organisation the caller acts for (claim org)")
    p.add_argument("--purpose", help="DPV purpose (claim purpose), e.g. dpv:ServiceProvision")
    p.add_argument("--subject", help="token subject (default: dev-<role>@<tenant>)")
    p.add_argument("--ttl", type=float, default=3600.0, help="seconds the token is valid (default 3600)")
    p.add_argument("--db", help="storage target (where the issuer's key is kept)")
    p.add_argument("--config", help="TOML settings file")


def run_token_command(args: argparse.Namespace, settings: Any) -> int:
    from urbanmim.app import open_store
    from urbanmim.security.tokens import dev_key, issue

    async def run() -> str:
        store = open_store(settings)
        await store.open()
        try:
            key = await dev_key(store)
        finally:
            await store.close()
        subject = args.subject or f"dev-{'-'.join(args.role)}@{args.tenant or 'default'}"
        return issue(key, subject=subject, roles={args.tenant: list(args.role)}, audience=settings.auth_audience,
                     ttl=args.ttl, organisation=args.org, purpose=args.purpose)
    print(asyncio.run(run()))
    return 0
