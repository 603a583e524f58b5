"""``urbanmim db upgrade`` / ``db migrate-from``: a small SQLite store moved to PostgreSQL without loss.

Built through the API (so the SQLite file holds what a real server writes: index rows,
temporal instances and buckets, a subscription, a hosted context), migrated twice (the
second run must change nothing), then read back through the API on PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from urbanmim.app import create_app
from urbanmim.cli import main
from urbanmim.settings import Settings

pytestmark = pytest.mark.postgres
E = "urn:ngsi-ld:Vehicle:m1"


async def _client_do(db: str, fn: Any) -> Any:
    app = create_app(Settings(db=db, sqlite_synchronous="NORMAL"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver/ngsi-ld/v1") as c:
            return await fn(c)


async def _fill(c: httpx.AsyncClient) -> None:
    for t in ("", "lindmark"):
        h = {"NGSILD-Tenant": t} if t else {}
        r = await c.post("/entities", headers=h, json={
            "id": E, "type": "Vehicle",
            "speed": {"type": "Property", "value": 10, "observedAt": "2024-01-01T10:00:00Z"},
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [4.9, 52.37]}}})
        assert r.status_code == 201, r.text
        for v, ts in ((20, "2024-01-01T10:30:00Z"), (30, "2024-01-01T11:10:00Z")):
            r = await c.patch(f"/entities/{E}/attrs", headers=h,
                              json={"speed": {"type": "Property", "value": v, "observedAt": ts}})
            assert r.status_code == 204
    r = await c.post("/subscriptions", json={"type": "Subscription", "id": "urn:ngsi-ld:Subscription:m",
                                             "entities": [{"type": "Vehicle"}],
                                             "notification": {"endpoint": {"uri": "http://127.0.0.1:9/x"}}})
    assert r.status_code == 201, r.text
    r = await c.post("/jsonldContexts", json={"@context": {"speed": "https://example.org/speed"}})
    assert r.status_code == 201, r.text


async def _snapshot(c: httpx.AsyncClient) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for t in ("", "lindmark"):
        h = {"NGSILD-Tenant": t} if t else {}
        out[f"entity:{t}"] = (await c.get(f"/entities/{E}", headers=h)).json()
        out[f"geo:{t}"] = (await c.get("/entities", headers=h, params={
            "type": "Vehicle", "georel": "near;maxDistance==1000", "geometry": "Point",
            "coordinates": "[4.9,52.37]"})).json()
        out[f"temporal:{t}"] = (await c.get(f"/temporal/entities/{E}", headers=h)).json()
        out[f"agg:{t}"] = (await c.get(f"/temporal/entities/{E}", headers=h, params={
            "options": "aggregatedValues", "aggrMethods": "sum,max", "aggrPeriodDuration": "PT1H"})).json()
    out["subs"] = (await c.get("/subscriptions/urn:ngsi-ld:Subscription:m")).json()
    ctxs = (await c.get("/jsonldContexts", params={"kind": "Hosted"})).json()
    out["contexts"] = sorted(ctxs) if isinstance(ctxs, list) else ctxs
    return out


async def test_migrate_from_sqlite_twice_loses_nothing(tmp_path: Path, pg_db: str) -> None:
    src = tmp_path / "small.db"
    await _client_do(str(src), _fill)
    before = await _client_do(str(src), _snapshot)
    assert before["entity:"]["speed"]["value"] == 30
    assert len(before["temporal:"]["speed"]) == 3

    assert main(["db", "migrate-from", f"sqlite:///{src}", "--db", pg_db, "--no-progress"]) == 0
    first = await _client_do(pg_db, _snapshot)
    assert first == before
    assert main(["db", "migrate-from", f"sqlite:///{src}", "--db", pg_db, "--no-progress"]) == 0
    assert await _client_do(pg_db, _snapshot) == before


def test_db_upgrade_is_idempotent(pg_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade", "--db", pg_db]) == 0
    assert "applied 0001_initial.sql" in capsys.readouterr().err
    assert main(["db", "upgrade", "--db", pg_db]) == 0
    assert "up to date" in capsys.readouterr().err
    assert main(["db", "status", "--db", pg_db]) == 0
    from urbanmim.store.migrations import migrations
    newest = migrations()[-1][0]        # other features add migrations (numbered with gaps)
    assert capsys.readouterr().out.strip() == f"applied {newest}, newest {newest}"
