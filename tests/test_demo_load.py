"""Loading the demo cities: tenants, idempotent re-runs, history back-fill, the live simulator, the CLI."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.import_helpers import open_client, settings
from urbanmim.app import create_app
from urbanmim.cli import main
from urbanmim.ingest.demo.cities import LINDMARK, PORTAMAR, VALDORIA, small
from urbanmim.ingest.demo.loader import demo_lifespan, load

SMALL = [small(PORTAMAR), small(LINDMARK), small(VALDORIA)]
LINK = ('<http://testserver/ngsi-ld/v1/jsonldContexts/sdm-environment>; rel="http://www.w3.org/ns/json-ld#context"; '
        'type="application/ld+json"')


async def load_small(db: Path, **kw: object):
    app = create_app(settings(db))
    async with app.router.lifespan_context(app):
        return await load(app, SMALL, show_progress=False, **kw)   # type: ignore[arg-type]


async def test_three_tenants_and_rerun_duplicates_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "demo.db"
    first = await load_small(db)
    assert [r.summary.created for r in first] == [sum(r.counts.values()) for r in first]
    assert all(not r.summary.rejected and not r.summary.failed for r in first)
    async with open_client(db) as c:
        h = {"NGSILD-Tenant": "valdoria", "Link": LINK}
        r = await c.get("/entities", params={"type": "AirQualityObserved", "options": "keyValues"}, headers=h)
        before = r.json()
        assert r.status_code == 200 and before and "no2" in before[0]       # short SDM names with the hosted context
    second = await load_small(db)
    assert [r.summary.created for r in second] == [0, 0, 0]
    assert [r.summary.unchanged for r in second] == [r.summary.created for r in first]
    async with open_client(db) as c:
        r = await c.get("/entities", params={"type": "AirQualityObserved", "options": "keyValues"},
                        headers={"NGSILD-Tenant": "valdoria", "Link": LINK})
        assert r.json() == before
        r = await c.get("/entities", params={"type": "https://smartdatamodels.org/dataModel.Building/Building",
                                              "count": "true", "limit": "1"}, headers={"NGSILD-Tenant": "portamar"})
        assert int(r.headers["NGSILD-Results-Count"]) == small(PORTAMAR).buildings
    assert await asyncio.to_thread(main, ["tenants", "--db", str(db)]) == 0
    assert capsys.readouterr().out.split() == ["lindmark", "portamar", "valdoria"]


async def test_history_backfill_only_for_new_devices(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    reports = await load_small(db, history_days=1)
    assert all(r.history_rows > 0 for r in reports)
    aq = next(d for d in reports[2].devices if d.type == "AirQualityObserved")
    async with open_client(db) as c:
        r = await c.get(f"/temporal/entities/{aq.id}", params={"attrs": "no2", "options": "temporalValues"},
                        headers={"NGSILD-Tenant": "valdoria", "Link": LINK})
        assert r.status_code in (200, 206), r.text           # 206: the history is paged
        values = r.json()["no2"]["values"]
        assert len(values) >= 10 and all(0 < v[0] < 250 for v in values)
        r = await c.get(f"/temporal/entities/{aq.id}", params={"attrs": "no2", "options": "aggregatedValues",
                                                                "aggrMethods": "totalCount",
                                                                "aggrPeriodDuration": "P7D"},
                        headers={"NGSILD-Tenant": "valdoria", "Link": LINK})
        assert r.status_code in (200, 206), r.text
        assert sum(v[0] for v in r.json()["no2"]["totalCount"]) >= 24      # a day of hourly values
    again = await load_small(db, history_days=1)
    assert all(r.history_rows == 0 for r in again)


async def test_served_demo_keeps_devices_publishing(tmp_path: Path) -> None:
    app = create_app(settings(tmp_path / "live.db"))
    inner = app.router.lifespan_context
    async with demo_lifespan(app, inner, [small(VALDORIA)], history_days=0, interval=0.05, show_progress=False):
        transport_headers = {"NGSILD-Tenant": "valdoria", "Link": LINK}
        import httpx
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver/ngsi-ld/v1") as c:
            async def snapshot() -> dict[str, str]:
                r = await c.get("/entities", params={"type": "AirQualityObserved"}, headers=transport_headers)
                return {e["id"]: e["no2"]["observedAt"] for e in r.json()}
            first = await snapshot()
            for _ in range(100):
                await asyncio.sleep(0.05)
                if (now := await snapshot()) != first:
                    break
            assert now.keys() == first.keys() and now != first        # observedAt moved: the twin is alive


def test_cli_no_serve(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "cli.db"
    assert main(["demo", "--db", str(db), "--city", "valdoria", "--no-serve", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "demo valdoria (Valdoria)" in out and "created 945" in out
    assert main(["demo", "--db", str(db), "--city", "valdoria", "--no-serve", "--no-progress"]) == 0
    assert "created 0, already there 945" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="unknown city"):
        main(["demo", "--db", str(db), "--city", "atlantis", "--no-serve"])


def _broker_up() -> bool:
    import socket
    try:
        with socket.create_connection(("127.0.0.1", 1883), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not _broker_up(), reason="no MQTT broker on 127.0.0.1:1883")
async def test_simulator_publishes_over_mqtt_through_the_device_agent(tmp_path: Path) -> None:
    import dataclasses
    import uuid

    import httpx
    tag = uuid.uuid4().hex[:8]
    s = dataclasses.replace(settings(tmp_path / "mqtt.db"), mqtt_url="mqtt://127.0.0.1:1883",
                            mqtt_prefix=f"demo-{tag}", mqtt_client_id=f"demo-test-{tag}", mqtt_session_expiry=0)
    app = create_app(s)
    city = small(VALDORIA)
    async with demo_lifespan(app, app.router.lifespan_context, [city], history_days=0, interval=0.1,
                             show_progress=False):
        assert app.state.demo_simulator.via == "mqtt"
        h = {"NGSILD-Tenant": "valdoria", "Link": LINK}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
                                     base_url="http://testserver/ngsi-ld/v1") as c:
            async def snapshot() -> dict[str, str]:
                r = await c.get("/entities", params={"type": "AirQualityObserved"}, headers=h)
                return {e["id"]: e["no2"]["observedAt"] for e in r.json()}
            first = await snapshot()
            now = first
            for _ in range(300):                      # generous: a loaded CI machine is slow
                await asyncio.sleep(0.1)
                if (now := await snapshot()) != first:
                    break
            assert now.keys() == first.keys() and now != first
            r = await c.get("/entities", params={"type": "Device", "count": "true", "limit": "1"},
                            headers={"NGSILD-Tenant": "valdoria"})
            assert int(r.headers["NGSILD-Results-Count"]) == len(app.state.demo_simulator.cities[0][1])


async def test_history_without_a_bulk_path_uses_batched_updates(tmp_path: Path) -> None:
    from urbanmim.ingest.demo.loader import backfill
    db = tmp_path / "demo.db"
    app = create_app(settings(db))
    city = small(VALDORIA)
    async with app.router.lifespan_context(app):
        reports = await load(app, [city], show_progress=False, at=1768467600.0)
        await backfill(app, reports, 1768467600.0, 0.5, show_progress=False, use_bulk=False)
    assert reports[0].history_rows > 0
    aq = next(d for d in reports[0].devices if d.type == "AirQualityObserved")
    async with open_client(db) as c:
        r = await c.get(f"/temporal/entities/{aq.id}", params={"attrs": "no2", "options": "aggregatedValues",
                                                                "aggrMethods": "totalCount",
                                                                "aggrPeriodDuration": "P7D"},
                        headers={"NGSILD-Tenant": "valdoria", "Link": LINK})
        assert sum(v[0] for v in r.json()["no2"]["totalCount"]) >= 12       # half a day, hourly
        r = await c.get(f"/entities/{aq.id}", headers={"NGSILD-Tenant": "valdoria", "Link": LINK})
        assert r.json()["no2"]["observedAt"] == "2026-01-15T09:00:00.000Z"    # ends current
