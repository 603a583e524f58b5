"""CSV importer: typed values and units, idempotence, per-line rejections, broken files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.import_helpers import entities, settings, tenants
from urbanmim.ingest.importers import ImportFailed, Mapping, parse_map
from urbanmim.ingest.importers.runner import import_file

CSV = """station;name;lon;lat;capacity;height
A1;Plaça Major;2.17;41.38;20;3.5
A2;Port Vell;2.18;41.37;15;
A3;Sants;2.14;41.379;25;4
"""


def mapping(**kw: object) -> Mapping:
    return Mapping(type="BikeHireDockingStation", id_field="station",
                   attrs=[parse_map("name"), parse_map("capacity=totalSlotNumber"), parse_map("height=height:MTR")],
                   **kw)  # type: ignore[arg-type]


async def run(db: Path, path: Path, m: Mapping | None = None, **kw: object):
    return await import_file(settings(db), "csv", str(path), "bcn", m or mapping(), show_progress=False, **kw)


async def test_rows_become_typed_entities_and_reimport_is_a_no_op(tmp_path: Path) -> None:
    f = tmp_path / "stations.csv"
    f.write_text(CSV, encoding="utf-8-sig")            # a BOM and ';' are handled
    db = tmp_path / "t.db"
    s = await run(db, f)
    assert (s.created, s.rejected) == (3, [])
    got = {e["id"]: e for e in await entities(db, "bcn", "BikeHireDockingStation")}
    a1 = got["urn:ngsi-ld:BikeHireDockingStation:A1"]
    assert a1["totalSlotNumber"]["value"] == 20 and a1["height"] == {"type": "Property", "value": 3.5,
                                                                      "unitCode": "MTR"}
    assert a1["location"]["value"]["coordinates"] == [2.17, 41.38]
    assert "height" not in got["urn:ngsi-ld:BikeHireDockingStation:A2"]    # empty cell: no attribute
    s = await run(db, f)
    assert (s.created, s.updated, s.unchanged) == (0, 0, 3)
    f.write_text(CSV.replace("Sants;2.14;41.379;25", "Sants;2.14;41.379;30"))
    s = await run(db, f)
    assert (s.created, s.updated, s.unchanged) == (0, 1, 2)


async def test_bad_lines_are_rejected_with_line_numbers(tmp_path: Path) -> None:
    f = tmp_path / "bad.csv"
    f.write_text(CSV + "A4;Too;many;cells;1;2;3\nA5;Nowhere;200;41;1;1\n;No id;2.1;41.3;1;1\n"
                 "A1;Duplicate;2.1;41.3;1;1\n")
    s = await run(tmp_path / "t.db", f)
    assert s.created == 3
    reasons = {r.where: r.reason for r in s.rejected}
    assert reasons["line 5"].startswith("7 cells")
    assert "bad coordinates" in reasons["line 6 (A5)"]
    assert "empty 'station'" in reasons["line 7"]
    assert "duplicate id" in reasons["line 8 (A1)"]


async def test_missing_columns_refuse_the_file(tmp_path: Path) -> None:
    f = tmp_path / "s.csv"
    f.write_text(CSV)
    db = tmp_path / "t.db"
    with pytest.raises(ImportFailed, match="field\\(s\\) seats not found"):
        await run(db, f, Mapping(type="X", id_field="station", attrs=[parse_map("seats")]))
    with pytest.raises(ImportFailed, match="coordinate column 'x' not found"):
        await run(db, f, mapping(lon_field="x", lat_field="lat"))
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ImportFailed, match="empty file"):
        await run(db, empty)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("station,name\nA1,Pla\xe7a\n".encode("latin-1"))
    with pytest.raises(ImportFailed, match="not UTF-8"):
        await run(db, latin)
    assert "bcn" not in await tenants(db)
