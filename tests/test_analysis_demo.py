"""The models on a (scaled-down) demo city with back-filled history: they run on real-shaped data,
read through the platform (SMART Data Models IRIs, temporal history), and give sane figures."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from urbanmim.app import create_app
from urbanmim.ingest.demo.cities import VALDORIA, small
from urbanmim.ingest.demo.loader import load
from urbanmim.settings import Settings

A = "http://testserver/analysis/v1"
H = {"NGSILD-Tenant": "valdoria"}


@pytest.fixture
async def demo(tmp_path: Path):   # type: ignore[no-untyped-def]
    app = create_app(Settings(db=str(tmp_path / "demo.db"), sqlite_synchronous="NORMAL"))
    async with app.router.lifespan_context(app):
        await load(app, [small(VALDORIA, 0.5)], show_progress=False, history_days=3)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver/ngsi-ld/v1") as c:
            yield c


async def test_models_on_a_demo_city(demo: httpx.AsyncClient) -> None:
    run = (await demo.post(f"{A}/runs", json={"model": "transport-convenience"}, headers=H)).json()
    s = run["summary"]
    assert s["districts"] == 3 and s["stops"] > 0 and s["residents"] == VALDORIA.population
    assert 0 < s["value"] <= 1
    assert all(0 <= f["properties"]["value"] <= 1 for f in run["geojson"]["features"])
    assert sum(f["properties"]["residents"] for f in run["geojson"]["features"]) == pytest.approx(s["residents"])

    run = (await demo.post(f"{A}/runs", json={"model": "interpolation", "parameters": {"cellSize": 400}},
                           headers=H)).json()
    s = run["summary"]
    assert s["sensors"] == 2 and s["cells"] > 20 and run["unit"] == "GQ"
    live = (await demo.get("/entities", params={"type": "https://smartdatamodels.org/dataModel.Environment/"
                                                        "AirQualityObserved", "options": "keyValues"},
                           headers=H)).json()
    no2 = [e["https://smartdatamodels.org/dataModel.Environment/no2"] for e in live]
    assert min(no2) - 1e-6 <= s["min"] <= s["max"] <= max(no2) + 1e-6        # IDW stays within the data
    assert all(f["properties"]["uncertainty"] >= 0 for f in run["geojson"]["features"])

    run = (await demo.post(f"{A}/runs", json={"model": "forecast", "parameters": {"historyDays": 3}},
                           headers=H)).json()
    s = run["summary"]
    assert s["historyHours"] >= 72 and s["mae"] is not None and s["naiveMae"] is not None
    assert len(run["series"]["forecast"]) == 24 and None not in run["series"]["forecast"]
