"""KPIs on the three demo cities (scaled down): every computable KPI side by side with its data quality,
through the API and on the comparison page (server-rendered; tests/browser/test_kpi_pages.py does it in
Chromium over the full-size cities)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.import_helpers import settings
from urbanmim.app import create_app
from urbanmim.ingest.demo.cities import LINDMARK, PORTAMAR, VALDORIA, small
from urbanmim.ingest.demo.loader import load
from urbanmim.kpi import engine
from urbanmim.kpi.formulas import FORMULAS

CITIES = ("lindmark", "portamar", "valdoria")
NOT_IN_DEMO = {"EN: EN: PSN: 1C"}       # the demo's parks are points: no green-area polygons
MAYBE = {"EN: EN: PSN: 2A"}             # a scaled-down city may have no park at all


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import asyncio
    db = tmp_path_factory.mktemp("kpidemo") / "demo.db"

    async def build() -> None:
        app = create_app(settings(db))
        async with app.router.lifespan_context(app):
            await load(app, [small(PORTAMAR), small(LINDMARK), small(VALDORIA)], show_progress=False,
                       history_days=2)
            for c in CITIES:
                rep = await engine.compute(app, c)
                assert not rep.errors, rep.errors
                assert NOT_IN_DEMO <= {code for code, _ in rep.skipped} <= NOT_IN_DEMO | MAYBE
    asyncio.run(build())
    return db


@pytest.fixture
async def web(demo_db: Path) -> Any:
    app = create_app(settings(demo_db))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


async def test_compare_has_every_computable_kpi_for_every_city(web: httpx.AsyncClient) -> None:
    r = await web.get("/kpi/v1/compare")
    assert r.status_code == 200
    rows = r.json()
    assert set(FORMULAS) - NOT_IN_DEMO - MAYBE <= {x["code"] for x in rows} <= set(FORMULAS) - NOT_IN_DEMO
    for x in rows:
        if x["code"] in MAYBE:
            continue
        assert sorted(e["tenant"] for e in x["entries"]) == list(CITIES), x["code"]
        assert all(e["dataQuality"] in ("measured", "calculated", "estimate") for e in x["entries"])
        assert [e["rank"] for e in x["entries"]] == sorted(e["rank"] for e in x["entries"])
    aq = [x for x in rows if x["code"] == "EN: EN: AQ: 1C"]
    assert {x["component"] for x in aq} >= {"no2", "pm10", "pm25", "o3"}


async def test_comparison_page_side_by_side_with_quality(web: httpx.AsyncClient) -> None:
    r = await web.get("/kpi/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    for code in set(FORMULAS) - NOT_IN_DEMO - MAYBE:
        assert f'data-kpi="{code}"' in html, code
    cells = re.findall(r'<td class="num" data-tenant="(\w+)" data-quality="([\w-]+)"', html)
    assert {c for c, _ in cells} == set(CITIES)
    assert len(cells) >= 3 * (html.count('<tr data-kpi=') - 1)
    for q in {q for _, q in cells}:
        assert f'class="kpi-q kpi-q-{q}"' in html
    svgs = re.findall(r'<svg [^>]*role="img"[^>]*aria-labelledby="([\w-]+) ([\w-]+)"', html)
    assert len(svgs) >= html.count('<tr data-kpi=') and all(t.endswith("-t") and d.endswith("-d") for t, d in svgs)
    r = await web.get("/kpi/", params={"lang": "fr", "normalise": "per-capita"})
    assert r.status_code == 200 and '<html lang="fr">' in r.text and "Indicateurs clés de performance" in r.text
    r = await web.get("/kpi/indicator", params={"kpi": "EC: I: T: 1C"})
    assert r.status_code == 200 and "Public transport network" in r.text and "kpi.ec-i-t-1c" in r.text
    r = await web.get("/kpi/indicator", params={"kpi": "nope"})
    assert r.status_code == 400 and r.json()["status"] == 400
    r = await web.get("/kpi/solutions")
    assert r.status_code == 200


async def test_compute_now_button(tmp_path: Path) -> None:
    from tests.test_kpi_formulas import load_city
    app = create_app(settings(tmp_path / "btn.db"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            c.base_url = httpx.URL("http://testserver/ngsi-ld/v1")
            await load_city(c)
            c.base_url = httpx.URL("http://testserver")
            r = await c.get("/kpi")
            assert 'action="/kpi/compute"' in r.text and "data-kpi=" not in r.text
            r = await c.post("/kpi/compute")
            assert r.status_code == 303 and r.headers["location"] == "/kpi"
            r = await c.get("/kpi")
            assert 'data-kpi="EC: I: T: 1C"' in r.text
