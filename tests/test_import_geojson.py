"""GeoJSON importer on the Barcelona districts: create, idempotent re-import, broken files, the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import SHARED
from tests.import_helpers import entities, open_client, settings, tenants
from urbanmim.cli import main
from urbanmim.ingest.importers import ImportFailed, Mapping, parse_map
from urbanmim.ingest.importers.runner import import_file

DISTRICTS = SHARED / "data" / "cities" / "barcelona" / "districtes" / "districtes_geo.json"
pytestmark = pytest.mark.skipif(not DISTRICTS.exists(), reason="shared data bundle not present")


def mapping() -> Mapping:
    return Mapping(type="District", id_field="C_Distri",
                   attrs=[parse_map("N_Distri=name"), parse_map("Homes+Dones=population"),
                          parse_map("Area=area:MTK")])


async def run(db: Path, path: Path = DISTRICTS, **kw: object):
    return await import_file(settings(db), "geojson", str(path), "barcelona", mapping(), show_progress=False, **kw)


async def test_creates_ten_districts_with_population_and_geometry(tmp_path: Path) -> None:
    db = tmp_path / "bcn.db"
    s = await run(db)
    assert (s.created, s.updated, s.unchanged, s.rejected, s.failed) == (10, 0, 0, [], [])
    got = await entities(db, "barcelona", "District", options="keyValues")
    assert len(got) == 10
    total = sum(e["population"] for e in got)
    assert total == 1_621_481                     # Homes + Dones over the 10 districts (SOURCES.md)
    eixample = next(e for e in got if e["id"] == "urn:ngsi-ld:District:02")
    assert eixample["name"] == "Eixample" and eixample["population"] > 200_000
    assert eixample["location"]["type"] in ("Polygon", "MultiPolygon")


async def test_reimport_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "bcn.db"
    await run(db)
    before = {e["id"]: e for e in await entities(db, "barcelona", "District")}
    async with open_client(db) as c:
        h1 = await c.get("/temporal/entities/urn:ngsi-ld:District:01", headers={"NGSILD-Tenant": "barcelona"})
    s = await run(db)
    assert (s.created, s.updated, s.unchanged) == (0, 0, 10)
    after = {e["id"]: e for e in await entities(db, "barcelona", "District")}
    assert after == before                        # modifiedAt did not move
    async with open_client(db) as c:
        h2 = await c.get("/temporal/entities/urn:ngsi-ld:District:01", headers={"NGSILD-Tenant": "barcelona"})
    assert h1.status_code == h2.status_code and h1.json() == h2.json()   # no new history


async def test_changed_feature_is_updated_alone(tmp_path: Path) -> None:
    db = tmp_path / "bcn.db"
    await run(db)
    doc = DISTRICTS.read_text().replace('"Eixample"', '"L\'Eixample"')
    changed = tmp_path / "changed.json"
    changed.write_text(doc)
    s = await run(db, changed)
    assert (s.created, s.updated, s.unchanged) == (0, 1, 9)


async def test_broken_file_writes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "bcn.db"
    broken = tmp_path / "broken.json"
    broken.write_bytes(DISTRICTS.read_bytes()[:50_000])     # truncated mid-feature
    with pytest.raises(ImportFailed, match="not valid JSON"):
        await run(db, broken)
    notfc = tmp_path / "notfc.json"
    notfc.write_text('{"type": "Feature", "geometry": null}')
    with pytest.raises(ImportFailed, match="FeatureCollection"):
        await run(db, notfc)
    assert "barcelona" not in await tenants(db)


async def test_bad_features_are_rejected_with_reasons_and_strict_writes_nothing(tmp_path: Path) -> None:
    import json
    doc = json.loads(DISTRICTS.read_text())
    doc["features"][3]["geometry"] = None
    doc["features"][5]["properties"]["Homes"] = "many"
    doc["features"][7]["geometry"] = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    db = tmp_path / "strict.db"
    with pytest.raises(ImportFailed, match="strict"):
        await run(db, bad, strict=True)
    assert "barcelona" not in await tenants(db)
    s = await run(tmp_path / "lenient.db", bad)
    assert s.created == 7
    reasons = {r.where.split(" (")[0]: r.reason for r in s.rejected}
    assert set(reasons) == {"feature 3", "feature 5", "feature 7"}
    assert "geometry" in reasons["feature 3"] and "Homes" in reasons["feature 5"]


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "cli.db"
    argv = ["import", "geojson", str(DISTRICTS), "--tenant", "barcelona", "--type", "District", "--db", str(db),
            "--id-field", "C_Distri", "--map", "N_Distri=name", "--map", "Homes+Dones=population", "--no-progress"]
    assert main(argv) == 0
    assert "created 10, updated 0, unchanged 0, rejected 0" in capsys.readouterr().out
    assert main(argv) == 0
    assert "created 0, updated 0, unchanged 10" in capsys.readouterr().out
    assert main(["import", "geojson", str(tmp_path / "missing.json"), "--tenant", "x", "--db", str(db),
                 "--type", "District", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "cannot read" in err and "nothing was written" in err
    assert main(["import", "geojson", str(DISTRICTS), "--tenant", "x", "--db", str(db), "--id-field", "nope",
                 "--type", "District", "--no-progress"]) == 2
    assert "field(s) nope not found" in capsys.readouterr().err
    assert main(["import", "geojson", str(DISTRICTS), "--tenant", "x", "--db", str(db), "--no-progress"]) == 2
    assert "--type is required" in capsys.readouterr().err
    assert main(["import", "shapefile", str(DISTRICTS), "--tenant", "x", "--db", str(db), "--no-progress"]) == 2
    assert "no importer named 'shapefile' (known: csv, geojson, gtfs)" in capsys.readouterr().err
