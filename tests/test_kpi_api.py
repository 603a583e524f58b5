"""``/kpi/v1``: compute, values as NGSI-LD entities, manual entry, verification, local KPIs, comparison,
trends, export/import round trip, solutions, the register, the scheduler and the CLI."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.test_kpi_formulas import TENANT, load_city
from urbanmim.app import create_app
from urbanmim.cli import main
from urbanmim.kpi import scheduler, values
from urbanmim.kpi.formulas import FORMULAS
from urbanmim.settings import Settings

H = {"NGSILD-Tenant": TENANT}
LINK = ('<http://testserver/ngsi-ld/v1/jsonldContexts/sdm-keyperformanceindicator>; '
        'rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"')


@pytest.fixture
async def kpi(app: Any) -> Any:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver/kpi/v1") as c:
        yield c


def problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert {"type", "title", "status", "detail"} <= set(body) and body["status"] == status
    return body


async def test_compute_then_query_values_as_ngsi_ld(client: httpx.AsyncClient, kpi: httpx.AsyncClient) -> None:
    await load_city(client)
    r = await kpi.post("/compute", json={"period": "2025"}, headers=H)
    assert r.status_code == 200, r.text
    rep = r.json()
    assert rep["periods"] == ["2025"] and not rep["errors"]
    assert {v["code"] for v in rep["computed"]} == set(FORMULAS)
    r = await kpi.get("/values", params={"kpi": "EC: I: T: 1C"}, headers=H)
    (net,) = r.json()
    assert net["value"] == pytest.approx(33.396, abs=0.002) and net["dataQuality"] == "calculated"
    assert net["from"] == "2025-01-01" and net["to"] == "2025-12-31"
    r = await kpi.get(f"/values/{net['id']}", headers=H)
    assert r.json()["formulaVersion"] == "1"
    # the same values through plain NGSI-LD, with the hosted SDM context: short names, queryable
    r = await client.get("/entities", headers={**H, "Link": LINK},
                         params={"type": "KeyPerformanceIndicator", "q": 'dataQuality=="calculated"',
                                 "options": "keyValues", "limit": "100"})
    assert r.status_code == 200, r.text
    ents = r.json()
    assert ents and all(e["dataQuality"] == "calculated" for e in ents)
    e = next(e for e in ents if e["kpiCode"] == "EC: I: T: 1C")
    assert e["calculationPeriod"] == {"from": "2025-01-01", "to": "2025-12-31"}
    assert e["calculationMethod"] == "automatic" and e["calculationFrequency"] == "yearly"
    assert e["provenance"]["inputs"][0]["entityType"] == "GtfsShape"
    # historised: recomputing keeps the earlier value in the temporal history
    await kpi.post("/compute", json={"period": "2025", "kpis": ["EC: I: T: 1C"]}, headers=H)
    r = await client.get(f"/temporal/entities/{net['id']}", headers={**H, "Link": LINK},
                         params={"attrs": "updatedAt", "options": "temporalValues"})
    assert r.status_code == 200 and len(r.json()["updatedAt"]["values"]) == 2


async def test_register_lists_every_formula_version(client: httpx.AsyncClient, kpi: httpx.AsyncClient) -> None:
    r = await client.get("http://testserver/algorithms/v1/algorithms", params={"kind": "kpi"})
    assert r.status_code == 200
    ids = {a["id"]: a["version"] for a in r.json()}
    assert ids == {f.id: f.version for f in FORMULAS.values()}
    r = await kpi.get("/formulas")
    assert all(f["registered"] for f in r.json())
    r = await kpi.get("/catalogue", params={"dimension": "Environment"})
    assert r.status_code == 200
    aq = next(d for d in r.json() if d["code"] == "EN: EN: AQ: 1C")
    assert aq["formula"]["id"] == "kpi.en-en-aq-1c"


async def test_manual_entry_verification_and_the_keep_rule(client: httpx.AsyncClient, kpi: httpx.AsyncClient) -> None:
    await load_city(client)
    r = await kpi.post("/values", json={"kpi": "EC: P: EM: 1C", "period": "2025", "value": 7.5}, headers=H)
    assert "evidence" in problem(r, 400)["detail"]
    r = await kpi.post("/values", json={"kpi": "EC: P: EM: 1C", "period": "2025", "value": 7.5,
                                        "dataQuality": "reported", "evidence": "https://stat.example/lfs-2025.pdf"},
                       headers=H)
    assert r.status_code == 201, r.text
    v = r.json()
    assert v["method"] == "manual" and v["dataQuality"] == "reported" and v["evidence"].startswith("https://")
    problem(await kpi.post("/values", json={"kpi": "EC: P: EM: 1C", "period": "2025", "value": 1,
                                            "dataQuality": "great", "evidence": "x"}, headers=H), 400)
    problem(await kpi.post("/values", json={"kpi": "XX: 9", "period": "2025", "value": 1}, headers=H), 404)
    problem(await kpi.post("/values", json={"kpi": "EC: P: EM: 1C", "period": "25", "value": 1}, headers=H), 400)
    # a computed value, verified by a person, is not overwritten by the next computation
    rep = (await kpi.post("/compute", json={"period": "2025", "kpis": ["UM: EN: T: 1P"]}, headers=H)).json()
    vid = rep["computed"][0]["id"]
    problem(await kpi.post(f"/values/{vid}/verify", json={"verified": True}, headers=H), 400)
    r = await kpi.post(f"/values/{vid}/verify", json={"verified": True, "by": "A. Auditor"}, headers=H)
    assert r.json()["verified"] is True and r.json()["verifiedBy"] == "A. Auditor"
    rep = (await kpi.post("/compute", json={"period": "2025", "kpis": ["UM: EN: T: 1P"]}, headers=H)).json()
    assert rep["computed"] == [] and rep["kept"] == [{"id": vid, "reason": "verified"}]
    problem(await kpi.get("/values/urn:ngsi-ld:KeyPerformanceIndicator:nope", headers=H), 404)
    problem(await kpi.get("/values", headers={"NGSILD-Tenant": "nowhere"}), 404)


async def test_local_kpi(client: httpx.AsyncClient, kpi: httpx.AsyncClient) -> None:
    await load_city(client)
    body = {"code": "TV: MOB: 1", "name": "Cargo bikes in the fleet", "dimension": "Environment", "unit": "count",
            "method": "Cargo bikes owned by the city, counted each December.", "direction": "higher", "target": 50}
    r = await kpi.post("/definitions", json=body, headers=H)
    assert r.status_code == 201 and r.json()["type"] == "local"
    problem(await kpi.post("/definitions", json={**body, "code": "EN: EN: AQ: 1C"}, headers=H), 400)
    r = await kpi.get("/catalogue", params={"type": "local"}, headers=H)
    assert [d["code"] for d in r.json()] == ["TV: MOB: 1"]
    r = await kpi.get("/catalogue", params={"type": "local"}, headers={"NGSILD-Tenant": "othercity"})
    assert r.json() == []                                     # a tenant never sees another's
    r = await kpi.post("/values", json={"kpi": "TV: MOB: 1", "period": "2025", "value": 20,
                                        "dataQuality": "measured", "evidence": "fleet register 2025-12"}, headers=H)
    assert r.status_code == 201 and r.json()["kpiType"] == "local"
    assert r.json()["target"] == 50


async def _two_cities(client: httpx.AsyncClient, kpi: httpx.AsyncClient) -> None:
    await load_city(client, TENANT)
    await load_city(client, "otherville")
    # otherville has twice the residents: every per-resident rate halves
    for d, pop in (("D1", 12000), ("D2", 8000)):
        r = await client.patch(f"/entities/urn:ngsi-ld:District:{d}/attrs", json={"population": {"value": pop}},
                               headers={"NGSILD-Tenant": "otherville"})
        assert r.status_code == 204
    for t in (TENANT, "otherville"):
        for period in ("2024", "2025"):
            r = await kpi.post("/compute", json={"period": period}, headers={"NGSILD-Tenant": t})
            assert r.status_code == 200


async def test_compare_rank_bands_normalise_and_trends(client: httpx.AsyncClient, kpi: httpx.AsyncClient) -> None:
    await _two_cities(client, kpi)
    r = await kpi.get("/compare", params={"period": "2025"})
    assert r.status_code == 200
    rows = {(x["code"], x["component"]): x for x in r.json()}
    ev = rows[("UM: EN: T: 1P", "")]
    assert [(e["tenant"], e["value"], e["rank"]) for e in ev["entries"]] == [(TENANT, 70.0, 1), ("otherville", 35.0, 2)]
    assert all(e["dataQuality"] == "calculated" and e["dataQualityLabel"] for e in ev["entries"])
    # lower is better for NO2; both cities have the same air: a tie shares rank 1
    no2 = rows[("EN: EN: AQ: 1C", "no2")]
    assert no2["direction"] == "lower" and [e["rank"] for e in no2["entries"]] == [1, 1]
    # achievement against the 20 µg/m³ target: 20/35 = 57.1 % -> the 33-66 band
    assert no2["entries"][0]["targetAchievement"] == pytest.approx(57.1) and no2["entries"][0]["band"] == "33-66"
    # normalisation: per capita instead of per 100,000
    r = await kpi.get("/compare", params={"period": "2025", "kpi": "UM: EN: T: 1P", "normalise": "per-capita"})
    (row,) = r.json()
    assert row["entries"][0]["value"] == pytest.approx(0.0007) and row["unit"] == "per inhabitant"
    problem(await kpi.get("/compare", params={"normalise": "per-cow"}), 400)
    problem(await kpi.get("/compare", params={"tenants": "atlantis"}), 404)
    # trends: the same data in 2024 has no history (everything is 2025) -> values differ by period
    r = await kpi.get("/trends", params={"kpi": "UM: EC: SL: 1P", "tenants": TENANT})
    series = r.json()[TENANT][""]
    assert [(p["period"], p["value"]) for p in series] == [("2024", 25.0), ("2025", 50.0)]
    assert series[1]["change"] == 25.0


async def test_export_round_trips(client: httpx.AsyncClient, kpi: httpx.AsyncClient, tmp_path: Path) -> None:
    await _two_cities(client, kpi)
    await kpi.post("/values", json={"kpi": "EC: P: EM: 1C", "period": "2025", "value": 7.5, "dataQuality": "reported",
                                    "evidence": "labour force survey, table 3", "note": "provisional"}, headers=H)
    j = await kpi.get("/export", params={"format": "json"})
    c = await kpi.get("/export", params={"format": "csv"})
    assert j.status_code == c.status_code == 200 and c.headers["content-type"].startswith("text/csv")
    first = orjson.loads(j.content)
    assert len(first["values"]) > 2 * len(FORMULAS)
    for fmt, payload, ctype in (("json", j.content, "application/json"), ("csv", c.content, "text/csv")):
        fresh = create_app(Settings(db=str(tmp_path / f"fresh-{fmt}.db"), sqlite_synchronous="NORMAL"))
        async with fresh.router.lifespan_context(fresh):
            transport = httpx.ASGITransport(app=fresh)  # type: ignore[arg-type]
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver/kpi/v1") as k2:
                r = await k2.post("/import", content=payload, headers={"Content-Type": ctype})
                assert r.status_code == 200, r.text
                per_city = {t: sum(1 for v in first["values"] if v["tenant"] == t) for t in (TENANT, "otherville")}
                assert r.json()["imported"] == per_city and per_city[TENANT] == per_city["otherville"] + 1
                again = orjson.loads((await k2.get("/export", params={"format": "json"})).content)
                assert again["values"] == first["values"], fmt
                assert (await k2.get("/export", params={"format": "csv"})).text == c.text
    problem(await kpi.post("/import", content=b"tenant,code\nx,y\n", headers={"Content-Type": "text/csv"}), 400)
    problem(await kpi.post("/import", content=b"<xml/>", headers={"Content-Type": "application/xml"}), 415)


async def test_solutions(client: httpx.AsyncClient, kpi: httpx.AsyncClient) -> None:
    await _two_cities(client, kpi)
    body = {"name": "LED street lights with remote management", "category": "lighting",
            "description": "Replaced sodium lamps with LED heads reporting over LoRaWAN.",
            "implementedFrom": "2025-01-01", "kpis": ["UM: EC: SL: 1P"], "outcome": "worked",
            "lessonsLearnt": "Tender the control platform separately from the lamps.",
            "playbook": ["Audit the lamp stock", "Pilot one district", "Tender lamps and controllers separately"],
            "tags": ["energy", "lorawan"]}
    r = await kpi.post("/solutions", json=body, headers=H)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    r = await kpi.post("/solutions", json={"name": "Citizen card", "category": "digital services",
                                           "description": "One card for library, transport and sports centres.",
                                           "implementedFrom": "2025-03-01", "kpis": ["EC: ICT: PS: 2A"],
                                           "playbook": ["Agree the card's data minimum with the DPO"]},
                       headers={"NGSILD-Tenant": "otherville"})
    assert r.status_code == 201 and r.json()["outcome"] == "too-early"
    problem(await kpi.post("/solutions", json={**body, "kpis": []}, headers=H), 400)
    problem(await kpi.post("/solutions", json={**body, "kpis": ["NOPE: 1"]}, headers=H), 404)
    problem(await kpi.post("/solutions", json={**body, "implementedFrom": "soon"}, headers=H), 400)
    # searchable across cities
    r = await kpi.get("/solutions", params={"q": "lorawan LED"})
    assert [(s["tenant"], s["name"]) for s in r.json()] == [(TENANT, body["name"])]
    r = await kpi.get("/solutions")
    assert {s["tenant"] for s in r.json()} == {TENANT, "otherville"}
    r = await kpi.get("/solutions", params={"kpi": "EC: ICT: PS: 2A"})
    assert [s["name"] for s in r.json()] == ["Citizen card"]
    # before/after from the KPI history: 2024 (before the roll-out) 25 %, 2025 50 %
    r = await kpi.get(f"/solutions/{sid}", headers=H)
    (res,) = r.json()["results"]
    assert res["before"]["period"] == "2024" and res["before"]["value"] == 25.0
    assert res["after"]["period"] == "2025" and res["after"]["value"] == 50.0
    assert res["change"] == 25.0 and res["improved"] is True


async def test_scheduler_computes_missing_current_period(app: Any, client: httpx.AsyncClient) -> None:
    await load_city(client)
    now_ms = 10**13
    assert set().union(*scheduler.due({}, TENANT, now_ms).values()) == set(FORMULAS)
    written = await scheduler.run_once(app)
    assert written > 0
    vals = await values.load(app, TENANT)
    current = {v.period for v in vals}
    assert len(current) == 1
    existing = {v.entity_id: v for v in vals}
    # nothing is due again until the period closes, except the KPIs that had no data (tried again each pass)
    have = {v.code for v in vals}
    assert set().union(*scheduler.due(existing, TENANT, now_ms).values()) == set(FORMULAS) - have
    assert "EN: EN: EQ: 2A" not in have           # the fixture's noise history is all in 2025


async def test_cli_compute_and_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "cli.db"
    app = create_app(Settings(db=str(db), sqlite_synchronous="NORMAL"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver/ngsi-ld/v1") as c:
            await load_city(c)
    code = await asyncio.to_thread(main, ["kpi", "compute", "--tenant", TENANT, "--period", "2025", "--db", str(db),
                                          "--no-progress"])
    assert code == 0
    out = capsys.readouterr()
    assert "EC: I: T: 1C\t2025\t33.39" in out.out and f"values for {TENANT}" in out.err
    code = await asyncio.to_thread(main, ["kpi", "export", "--format", "csv", "--db", str(db)])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0 and lines[0].startswith("tenant,code,component,period,value")
    assert len(lines) - 1 == len([1 for _ in FORMULAS]) + 1      # AQ gives no2 and pm10
    (tmp_path / "kpis.csv").write_text("\n".join(lines) + "\n")
    code = await asyncio.to_thread(main, ["kpi", "import", str(tmp_path / "kpis.csv"), "--tenant", "copy",
                                          "--db", str(db)])
    assert code == 0 and "imported into copy" in capsys.readouterr().err
    assert await asyncio.to_thread(main, ["kpi", "list", "--computable"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert sorted(line.split("\t")[0] for line in listed) == sorted(FORMULAS)


async def test_changing_kpis_needs_an_editor_and_computing_runs_as_the_platform(
        client: httpx.AsyncClient, kpi: httpx.AsyncClient) -> None:
    from urbanmim.security.principal import Principal, use_principal

    await load_city(client)
    reader = Principal("rita", {TENANT: frozenset({"reader"})})
    editor = Principal("eddie", {TENANT: frozenset({"editor"})})
    with use_principal(reader):
        problem(await kpi.post("/compute", json={"period": "2025"}, headers=H), 403)
        problem(await kpi.post("/values", json={"kpi": "EC: P: EM: 1C", "period": "2025", "value": 1,
                                                "dataQuality": "not-traceable"}, headers=H), 403)
    with use_principal(editor):
        r = await kpi.post("/compute", json={"period": "2025", "kpis": ["EC: I: T: 1C"]}, headers=H)
        assert r.status_code == 200 and r.json()["computed"][0]["value"] == pytest.approx(33.396, abs=0.002)


async def test_stored_values_are_valid_sdm_key_performance_indicators(client: httpx.AsyncClient,
                                                                      kpi: httpx.AsyncClient) -> None:
    import json

    from jsonschema import Draft202012Validator, FormatChecker
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    from tests.conftest import SHARED
    sdm_dir = SHARED / "data" / "smart-data-models"
    refs = json.loads((sdm_dir / "refs.json").read_text())
    registry: Registry = Registry().with_resources(
        (url, Resource.from_contents(json.loads((sdm_dir / path).read_text()), default_specification=DRAFT202012))
        for url, path in refs.items())
    schema = json.loads((sdm_dir / "KeyPerformanceIndicator" / "KeyPerformanceIndicator" / "schema.json").read_text())
    validator = Draft202012Validator(schema, registry=registry, format_checker=FormatChecker())
    await load_city(client)
    await kpi.post("/compute", json={"period": "2025"}, headers=H)
    await kpi.post("/values", json={"kpi": "EC: P: EM: 1C", "period": "2025", "value": 7.5, "dataQuality": "reported",
                                    "evidence": "survey"}, headers=H)
    r = await client.get("/entities", headers={**H, "Link": LINK},
                         params={"type": "KeyPerformanceIndicator", "options": "keyValues", "limit": "100"})
    ents = r.json()
    assert len(ents) == len(FORMULAS) + 2          # AQ has two components in the fixture, plus the manual one
    for e in ents:
        errors = [f"{'/'.join(map(str, err.path))}: {err.message}" for err in validator.iter_errors(e)]
        assert errors == [], (e["id"], errors)
        assert e["category"] == ["quantitative"] and e["calculationMethod"] in ("automatic", "manual")
