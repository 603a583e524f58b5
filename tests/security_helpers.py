"""Fixtures and helpers shared by the MIM6 tests (and reusable by MIM3/MIM4 tests): a secure app,
clients per principal, tokens from the built-in development issuer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from urbanmim.app import create_app
from urbanmim.security.tokens import issue
from urbanmim.settings import Settings

DEFAULT = "https://uri.etsi.org/ngsi-ld/default-context/"


def secure_settings(db: str, **kw: Any) -> Settings:
    base: dict[str, Any] = {"db": db, "sqlite_synchronous": "NORMAL", "secure": True, "rate_limit": 0.0,
                            "audit_flush_s": 0.05}
    base.update(kw)
    return Settings(**base)


async def secure_app(tmp_path: Path | str, **kw: Any) -> AsyncIterator[Any]:
    db = kw.pop("db", None) or str(Path(tmp_path) / "secure.db")
    app = create_app(secure_settings(db, **kw))
    async with app.router.lifespan_context(app):
        yield app


def token(app: Any, roles: Mapping[str, list[str]] | None = None, *, tenant: str = "", role: str = "reader",
          subject: str | None = None, org: str | None = None, purpose: str | None = None, ttl: float = 600,
          **extra: Any) -> str:
    roles = roles if roles is not None else {tenant: [role]}
    return issue(app.state.security.dev_key, subject=subject or f"{role}@{tenant or 'default'}", roles=roles,
                 audience=app.state.settings.auth_audience, ttl=ttl, organisation=org, purpose=purpose, extra=extra)


def client(app: Any, bearer: str | None = None, *, tenant: str | None = None, api_key: str | None = None,
           base: str = "/ngsi-ld/v1", headers: Mapping[str, str] | None = None) -> httpx.AsyncClient:
    h: dict[str, str] = dict(headers or {})
    if bearer:
        h["Authorization"] = f"Bearer {bearer}"
    if api_key:
        h["Authorization"] = f"ApiKey {api_key}"
    if tenant:
        h["NGSILD-Tenant"] = tenant
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver" + base, headers=h)


def spot(eid: str = "urn:ngsi-ld:ParkingSpot:1", **attrs: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"id": eid, "type": "ParkingSpot",
                            "status": {"type": "Property", "value": "free"},
                            "owner": {"type": "Property", "value": "Alice"},
                            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [2.1, 41.4]}}}
    for k, v in attrs.items():
        body[k] = {"type": "Property", "value": v}
    return body
