"""Helpers shared by the importer and demo tests: open a fresh app on a db file and ask it things."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from urbanmim.app import create_app
from urbanmim.settings import Settings


def settings(db: Path) -> Settings:
    return Settings(db=str(db), sqlite_synchronous="NORMAL")


@asynccontextmanager
async def open_client(db: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client on a *fresh* app (its caches see what other processes/apps wrote to the file)."""
    app = create_app(settings(db))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver/ngsi-ld/v1") as c:
            yield c


async def entities(db: Path, tenant: str, etype: str, **params: str) -> list[dict]:
    async with open_client(db) as c:
        r = await c.get("/entities", params={"type": etype, "limit": "1000", **params},
                        headers={"NGSILD-Tenant": tenant})
        assert r.status_code == 200, r.text
        return list(r.json())


async def tenants(db: Path) -> list[str]:
    from urbanmim.app import open_store
    store = open_store(settings(db))
    await store.open()
    try:
        return await store.tenants()
    finally:
        await store.close()
