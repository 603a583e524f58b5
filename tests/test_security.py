"""MIM6: authentication (dev issuer, API keys), 401/403/429, roles and attribute rules on every read
path, device keys, tenants, audit, the open-on-loopback rule."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import assert_problem
from tests.security_helpers import DEFAULT, client, secure_app, spot, token
from urbanmim.security.component import InsecureExposure, check_exposure
from urbanmim.settings import Settings

CITY = "portamar"
OWNER = DEFAULT + "owner"


@pytest.fixture
async def app(tmp_path: Path, db_target: str) -> AsyncIterator[Any]:
    """A secure app over each storage backend (``db_target``: SQLite, PostgreSQL)."""
    async for a in secure_app(tmp_path, db=db_target):
        yield a


async def _seed(app: Any, n: int = 3) -> None:
    async with client(app, token(app, tenant=CITY, role="editor"), tenant=CITY) as c:
        for i in range(n):
            r = await c.post("/entities", json=spot(f"urn:ngsi-ld:ParkingSpot:{i}"))
            assert r.status_code == 201, r.text


async def _hide_owner(app: Any) -> None:
    async with client(app, token(app, tenant=CITY, role="admin"), tenant=CITY, base="/security/v1") as c:
        r = await c.put("/rules/reader-no-owner", json={"role": "reader", "entityType": "ParkingSpot",
                                                       "hide": ["owner"]})
        assert r.status_code == 201, r.text


# ---- authentication -------------------------------------------------------------------------------
async def test_anonymous_write_is_401_with_challenge(app: Any) -> None:
    async with client(app, tenant=CITY) as c:
        r = await c.post("/entities", json=spot())
        body = assert_problem(r, 401, "Unauthorized")
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert body["title"]
        r = await c.get("/entities", params={"type": "ParkingSpot"})
        assert_problem(r, 401, "Unauthorized")


async def test_bad_tokens_are_401_invalid_token(app: Any) -> None:
    good = token(app, tenant=CITY, role="reader")
    tampered = good[:-6] + ("AAAAAA" if not good.endswith("AAAAAA") else "BBBBBB")
    expired = token(app, tenant=CITY, role="reader", ttl=-3600)
    for bad in (tampered, expired, "not-a-jwt", "a.b.c"):
        async with client(app, bad, tenant=CITY) as c:
            r = await c.get("/entities", params={"type": "ParkingSpot"})
            assert_problem(r, 401, "Unauthorized")
            assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]


async def test_reader_cannot_write_editor_can(app: Any) -> None:
    async with client(app, token(app, tenant=CITY, role="reader"), tenant=CITY) as c:
        r = await c.post("/entities", json=spot())
        body = assert_problem(r, 403, "Forbidden")
        assert "may not write" in body["detail"]
    async with client(app, token(app, tenant=CITY, role="editor"), tenant=CITY) as c:
        assert (await c.post("/entities", json=spot())).status_code == 201
        assert (await c.get("/entities/urn:ngsi-ld:ParkingSpot:1")).status_code == 200


async def test_batch_writes_are_decided_per_entity(app: Any) -> None:
    async with client(app, token(app, tenant=CITY, role="reader"), tenant=CITY) as c:
        r = await c.post("/entityOperations/create", json=[spot("urn:ngsi-ld:ParkingSpot:a")])
        assert r.status_code == 207, r.text
        assert r.json()["errors"][0]["error"]["status"] == 403


async def test_token_cli_prints_a_working_token(app: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from urbanmim.cli import main
    db = app.state.settings.db
    args = ["token", "--tenant", CITY, "--role", "editor", "--org", "org:city", "--db", db]
    assert await asyncio.to_thread(main, args) == 0     # the command runs its own event loop
    tok = capsys.readouterr().out.strip()
    async with client(app, tok, tenant=CITY) as c:
        assert (await c.post("/entities", json=spot())).status_code == 201
    async with client(app, tok, base="/security/v1") as c:
        who = (await c.get("/whoami")).json()
        assert who["roles"] == {CITY: ["editor"]} and who["organisation"] == "org:city"


# ---- rules on every read path ------------------------------------------------------------------------
async def test_attribute_rule_hides_owner_in_retrieve_and_query(app: Any) -> None:
    await _seed(app)
    await _hide_owner(app)
    async with client(app, token(app, tenant=CITY, role="reader"), tenant=CITY) as c:
        r = await c.get("/entities/urn:ngsi-ld:ParkingSpot:0")
        assert r.status_code == 200 and "owner" not in r.json() and r.json()["status"]["value"] == "free"
        r = await c.get("/entities", params={"type": "ParkingSpot", "count": "true"})
        assert [e.get("owner") for e in r.json()] == [None] * 3 and r.headers["NGSILD-Results-Count"] == "3"
        # the hidden value cannot be probed with q or attrs
        r = await c.get("/entities", params={"type": "ParkingSpot", "q": 'owner=="Alice"'})
        assert r.json() == []
        r = await c.get("/entities", params={"type": "ParkingSpot", "attrs": "owner"})
        assert r.json() == []
        r = await c.post("/entityOperations/query", json={"type": "Query", "entities": [{"type": "ParkingSpot"}]})
        assert r.status_code == 200 and all("owner" not in e for e in r.json())
        # and cannot be written
        r = await c.patch("/entities/urn:ngsi-ld:ParkingSpot:0/attrs", json={"status": {"type": "Property",
                                                                                       "value": "x"}})
        assert_problem(r, 403, "Forbidden")
    async with client(app, token(app, tenant=CITY, role="editor"), tenant=CITY) as c:
        r = await c.get("/entities/urn:ngsi-ld:ParkingSpot:0")
        assert r.json()["owner"]["value"] == "Alice"


async def test_attribute_rule_in_temporal_reads(app: Any) -> None:
    await _seed(app, 1)
    await _hide_owner(app)
    async with client(app, token(app, tenant=CITY, role="reader"), tenant=CITY) as c:
        r = await c.get("/temporal/entities/urn:ngsi-ld:ParkingSpot:0")
        assert r.status_code == 200, r.text
        assert "owner" not in r.json() and "status" in r.json()
        r = await c.get("/temporal/entities", params={"type": "ParkingSpot", "timerel": "after",
                                                      "timeAt": "2000-01-01T00:00:00Z"})
        assert r.status_code == 200 and r.json() and all("owner" not in e for e in r.json())
        r = await c.get("/temporal/entities", params={"type": "ParkingSpot", "q": 'owner=="Alice"'})
        assert r.json() == []


async def test_deny_rule_and_honest_paging(app: Any) -> None:
    async with client(app, token(app, tenant=CITY, role="editor"), tenant=CITY) as c:
        for i in range(7):
            body = spot(f"urn:ngsi-ld:ParkingSpot:{i}") if i % 2 else {
                "id": f"urn:ngsi-ld:Person:{i}", "type": "Person", "status": {"type": "Property", "value": "x"}}
            assert (await c.post("/entities", json=body)).status_code == 201
    async with client(app, token(app, tenant=CITY, role="admin"), tenant=CITY, base="/security/v1") as c:
        r = await c.put("/rules/no-persons", json={"role": "reader", "entityType": "Person", "effect": "deny"})
        assert r.status_code == 201
    async with client(app, token(app, tenant=CITY, role="reader"), tenant=CITY) as c:
        r = await c.get("/entities", params={"attrs": "status", "limit": 2, "count": "true"})
        assert [e["id"] for e in r.json()] == ["urn:ngsi-ld:ParkingSpot:1", "urn:ngsi-ld:ParkingSpot:3"]
        assert r.headers["NGSILD-Results-Count"] == "3"
        r = await c.get("/entities", params={"attrs": "status", "limit": 2, "offset": 2})
        assert [e["id"] for e in r.json()] == ["urn:ngsi-ld:ParkingSpot:5"]
        assert (await c.get("/entities/urn:ngsi-ld:Person:0")).status_code == 404


async def test_cross_tenant_access_returns_nothing(app: Any) -> None:
    await _seed(app, 2)
    other = token(app, tenant="lindmark", role="admin")
    async with client(app, other, tenant=CITY) as c:
        r = await c.get("/entities", params={"type": "ParkingSpot"})
        assert r.status_code == 200 and r.json() == []
        assert (await c.get("/entities/urn:ngsi-ld:ParkingSpot:0")).status_code == 404
        r = await c.get("/temporal/entities", params={"type": "ParkingSpot", "timerel": "after",
                                                      "timeAt": "2000-01-01T00:00:00Z"})
        assert r.json() == []
        assert_problem(await c.post("/entities", json=spot("urn:ngsi-ld:ParkingSpot:9")), 403, "Forbidden")


async def test_discovery_needs_a_role_in_the_tenant(app: Any) -> None:
    await _seed(app, 1)
    async with client(app, token(app, tenant="lindmark", role="admin"), tenant=CITY) as c:
        assert_problem(await c.get("/types"), 403, "Forbidden")
        assert_problem(await c.get("/attributes"), 403, "Forbidden")
    async with client(app, token(app, tenant=CITY, role="reader"), tenant=CITY) as c:
        assert (await c.get("/types")).status_code == 200


async def test_public_tenant_reads_anonymously(tmp_path: Path) -> None:
    async for app in secure_app(tmp_path, public_tenants=CITY):
        await _seed(app, 1)
        await _hide_owner(app)
        async with client(app, tenant=CITY) as c:
            r = await c.get("/entities/urn:ngsi-ld:ParkingSpot:0")
            assert r.status_code == 200 and "owner" not in r.json()
            assert_problem(await c.post("/entities", json=spot("urn:ngsi-ld:ParkingSpot:9")), 401, "Unauthorized")
        async with client(app, tenant="lindmark") as c:
            assert_problem(await c.get("/entities", params={"type": "X"}), 401, "Unauthorized")


async def test_public_city_in_the_url_reads_anonymously(tmp_path: Path) -> None:
    """GDAL/QGIS (OGC paths) and the twin's EventSource cannot send NGSILD-Tenant: the city in the URL is
    the tenant the middleware checks, and a public city's URL never opens another city."""
    async for app in secure_app(tmp_path, public_tenants=CITY):
        await _seed(app, 1)
        await _hide_owner(app)
        async with client(app, base="") as c:
            r = await c.get(f"/ogc/{CITY}/collections/ParkingSpot/items", params={"f": "json"})
            assert r.status_code == 200, r.text
            props = r.json()["features"][0]["properties"]
            assert "status" in props and "owner" not in props
            assert_problem(await c.get("/ogc/lindmark/collections"), 401, "Unauthorized")
            # a public city's header does not open another city's path
            r = await c.get("/ogc/lindmark/collections", headers={"NGSILD-Tenant": CITY})
            assert_problem(r, 401, "Unauthorized")
            assert (await c.get("/twin/")).status_code == 200
            r = await c.get("/twin/api/layers", params={"tenant": CITY})
            assert r.status_code == 200, r.text
            assert_problem(await c.get("/twin/api/layers", params={"tenant": "lindmark"}), 401, "Unauthorized")
            assert (await c.get("/sharing/v1/catalogue", headers={"NGSILD-Tenant": "lindmark"})).status_code != 401
            assert (await c.get("/consent/v1/purposes")).status_code == 200


# ---- device keys ---------------------------------------------------------------------------------------
async def test_device_key_writes_only_its_entities(app: Any) -> None:
    await _seed(app, 2)
    async with client(app, token(app, tenant=CITY, role="admin"), tenant=CITY, base="/security/v1") as c:
        r = await c.post("/apikeys", json={"entities": ["urn:ngsi-ld:ParkingSpot:0"], "label": "sensor 0"})
        assert r.status_code == 201, r.text
        key, kid = r.json()["key"], r.json()["id"]
        listed = (await c.get("/apikeys")).json()
        assert listed[0]["id"] == kid and "key" not in listed[0] and "keyHash" not in str(listed)
    async with client(app, api_key=key, tenant=CITY) as d:
        upd = {"status": {"type": "Property", "value": "occupied"}}
        assert (await d.patch("/entities/urn:ngsi-ld:ParkingSpot:0/attrs", json=upd)).status_code == 204
        assert_problem(await d.patch("/entities/urn:ngsi-ld:ParkingSpot:1/attrs", json=upd), 403, "Forbidden")
        assert_problem(await d.delete("/entities/urn:ngsi-ld:ParkingSpot:0"), 403, "Forbidden")
        assert (await d.get("/entities/urn:ngsi-ld:ParkingSpot:0")).status_code == 404   # devices do not read
    async with client(app, api_key=key, tenant="lindmark") as d:
        assert_problem(await d.post("/entities", json=spot("urn:ngsi-ld:ParkingSpot:0")), 403, "Forbidden")
    async with client(app, token(app, tenant=CITY, role="admin"), tenant=CITY, base="/security/v1") as c:
        assert (await c.delete(f"/apikeys/{kid}")).status_code == 204
    async with client(app, api_key=key, tenant=CITY) as d:
        assert_problem(await d.patch("/entities/urn:ngsi-ld:ParkingSpot:0/attrs", json=upd), 401, "Unauthorized")


async def test_reserved_entities_are_for_admins(app: Any) -> None:
    await _hide_owner(app)
    async with client(app, token(app, tenant=CITY, role="editor"), tenant=CITY) as c:
        r = await c.get("/entities", params={"type": "urbanmim:AccessRule"})
        assert r.json() == []
        r = await c.post("/entities", json={"id": "urn:urbanmim:accessrule:x", "type": "urbanmim:AccessRule"})
        assert r.status_code in (400, 403)
    async with client(app, token(app, tenant=CITY, role="editor"), tenant=CITY, base="/security/v1") as c:
        assert_problem(await c.get("/rules"), 403, "Forbidden")


# ---- rate limits -----------------------------------------------------------------------------------------
async def test_rate_limit_is_429_with_retry_after(tmp_path: Path) -> None:
    async for app in secure_app(tmp_path, rate_limit=1.0, rate_burst=3.0):
        tok = token(app, tenant="", role="reader")
        async with client(app, tok) as c:
            codes = [(await c.get("/entities", params={"type": "X"})).status_code for _ in range(5)]
            assert codes[:3] == [200] * 3 and codes[3] == 429
            r = await c.get("/entities", params={"type": "X"})
            assert_problem(r, 429, "TooManyRequests")
            assert int(r.headers["Retry-After"]) >= 1
        async with client(app, token(app, tenant="", role="reader", subject="someone-else")) as c:
            assert (await c.get("/entities", params={"type": "X"})).status_code == 200   # per client


# ---- audit -------------------------------------------------------------------------------------------------
async def test_audit_records_reads_writes_and_refusals(app: Any) -> None:
    await _seed(app, 1)
    await _hide_owner(app)
    reader = token(app, tenant=CITY, role="reader", subject="ana", org="org:a", purpose="dpv:ServiceProvision")
    async with client(app, reader, tenant=CITY, headers={"Urbanmim-Purpose": "dpv:ResearchAndDevelopment"}) as c:
        assert (await c.get("/entities/urn:ngsi-ld:ParkingSpot:0")).status_code == 200
        assert (await c.delete("/entities/urn:ngsi-ld:ParkingSpot:0")).status_code == 403
    admin = token(app, tenant=CITY, role="admin")
    async with client(app, admin, tenant=CITY, base="/security/v1") as c:
        r = await c.get("/audit", params={"subject": "ana"})
        rows = r.json()
        assert [(x["action"], x["decision"]) for x in rows] == [("retrieve", "permit"), ("delete", "deny")]
        assert rows[0]["attrs"] and OWNER not in rows[0]["attrs"]
        assert rows[0]["purpose"] == "dpv:ResearchAndDevelopment" and rows[0]["organisation"] == "org:a"
        writes = (await c.get("/audit", params={"entity": "urn:ngsi-ld:ParkingSpot:0"})).json()
        assert writes[0]["action"] == "create" and writes[0]["subject"] == "editor@portamar"
        assert OWNER in writes[0]["attrs"]
        csv_text = (await c.get("/audit", params={"format": "csv", "subject": "ana"})).text
        assert csv_text.splitlines()[0].startswith("seq,ts,tenant,subject") and len(csv_text.splitlines()) == 3
        lines = (await c.get("/audit", params={"format": "jsonl"})).text.splitlines()
        assert len(lines) >= 4
        assert (await c.delete("/audit")).status_code == 405
    async with client(app, reader, tenant=CITY, base="/security/v1") as c:
        assert_problem(await c.get("/audit"), 403, "Forbidden")


async def test_audit_table_is_append_only(app: Any) -> None:
    await _seed(app, 1)
    db = app.state.settings.db
    if db.startswith("postgresql://"):
        import psycopg

        from urbanmim.store.migrations import parse_url
        conninfo, schema = parse_url(db)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            for sql in ("DELETE FROM {}.audit", "UPDATE {}.audit SET subject='x'"):
                with pytest.raises(psycopg.Error, match="append-only"):
                    conn.execute(sql.format(schema).encode())
        return
    import sqlite3
    conn = sqlite3.connect(db)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM audit")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE audit SET subject='x'")
    conn.close()


# ---- exposure ----------------------------------------------------------------------------------------------
def test_open_broker_only_on_loopback() -> None:
    assert check_exposure(Settings(host="127.0.0.1")) is not None          # a warning
    assert check_exposure(Settings(host="127.0.0.1", secure=True)) is None
    with pytest.raises(InsecureExposure):
        check_exposure(Settings(host="0.0.0.0"))
    assert "SECURITY IS OFF" in (check_exposure(Settings(host="0.0.0.0", insecure_public=True)) or "")
    assert check_exposure(Settings(host="0.0.0.0", secure=True)) is None


async def test_open_broker_says_so_on_home(tmp_path: Path) -> None:
    from urbanmim.app import create_app
    app = create_app(Settings(db=str(tmp_path / "o.db")))
    async with app.router.lifespan_context(app):
        async with client(app, base="") as c:
            assert "SECURITY IS OFF" in (await c.get("/")).json()["warning"]


def test_settings_booleans_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("URBANMIM_SECURE", "false")
    assert Settings.load().secure is False
    monkeypatch.setenv("URBANMIM_SECURE", "1")
    assert Settings.load().secure is True


async def test_jwks_is_public(app: Any) -> None:
    async with client(app, base="") as c:
        keys = (await c.get("/auth/v1/jwks.json")).json()["keys"]
        assert keys and "d" not in keys[0]
        assert (await c.get("/.well-known/jwks.json")).json()["keys"] == keys


def test_serve_refuses_an_open_public_broker(tmp_path: Path) -> None:
    from urbanmim.cli import main
    with pytest.raises(SystemExit, match="refusing to serve 0.0.0.0 with security off"):
        main(["serve", "--host", "0.0.0.0", "--db", str(tmp_path / "x.db")])
    with pytest.raises(SystemExit, match="refusing to serve 0.0.0.0 with security off"):
        main(["demo", "--host", "0.0.0.0", "--db", str(tmp_path / "x.db")])


async def test_access_decision_is_in_the_algorithm_register(app: Any) -> None:
    async with client(app, base="/algorithms/v1") as c:
        r = await c.get("/algorithms/mim6.access-decision")
        assert r.status_code == 200, r.text
        assert r.json()["kind"] == "security"


async def test_attribute_rule_in_notifications_decided_at_delivery(app: Any) -> None:
    from tests.test_notifications import Receiver
    receiver = Receiver().start()
    try:
        await _seed(app, 1)
        async with client(app, token(app, tenant=CITY, role="reader", subject="watcher"), tenant=CITY) as c:
            r = await c.post("/subscriptions", json={"type": "Subscription", "entities": [{"type": "ParkingSpot"}],
                                                     "notification": {"endpoint": {"uri": receiver.url}}})
            assert r.status_code == 201, r.text
        editor = token(app, tenant=CITY, role="editor")
        upd = {"status": {"type": "Property", "value": "occupied"}}
        async with client(app, editor, tenant=CITY) as c:
            assert (await c.patch("/entities/urn:ngsi-ld:ParkingSpot:0/attrs", json=upd)).status_code == 204
        first = (await receiver.wait(1))[0]["data"][0]
        assert first["owner"]["value"] == "Alice"            # no rule yet: the reader sees the owner
        await _hide_owner(app)                                # the rule holds from the next notification on
        async with client(app, editor, tenant=CITY) as c:
            upd["status"]["value"] = "free"
            assert (await c.patch("/entities/urn:ngsi-ld:ParkingSpot:0/attrs", json=upd)).status_code == 204
        second = (await receiver.wait(2))[1]["data"][0]
        assert "owner" not in second and second["status"]["value"] == "free"
    finally:
        receiver.stop()
