"""A real OGC API Features client: GDAL's OAPIF driver (``ogrinfo``, ``ogr2ogr``) against ``urbanmim serve``.

GDAL comes from Debian's gdal-bin, installed by ``scripts/install-gdal`` (``scripts/test`` runs it). Without
``ogrinfo`` these tests skip on a developer machine and fail in CI (``CI=true``), as the PostgreSQL and
Mosquitto tests do: a skip can never hide a gap there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server

pytestmark = pytest.mark.slow

A, B = "city-a", "city-b"


@pytest.fixture(scope="module")
def gdal() -> None:
    if shutil.which("ogrinfo") is None or shutil.which("ogr2ogr") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("ogrinfo/ogr2ogr missing in CI: scripts/install-gdal should have installed gdal-bin")
        pytest.skip("GDAL (ogrinfo, ogr2ogr) not installed: run scripts/install-gdal")


def _point(x: float, y: float) -> dict[str, Any]:
    return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [x, y]}}


def _square(x: float, y: float, d: float) -> dict[str, Any]:
    ring = [[x, y], [x + d, y], [x + d, y + d], [x, y + d], [x, y]]
    return {"type": "GeoProperty", "value": {"type": "Polygon", "coordinates": [ring]}}


def _entities() -> dict[str, list[dict[str, Any]]]:
    """city-a: 12 sensors on a line and 3 buildings; city-b: 4 sensors and 2 buildings elsewhere."""
    a = [{"id": f"urn:ngsi-ld:Sensor:a{i}", "type": "Sensor", "location": _point(10.0 + i * 0.01, 50.0 + i * 0.01),
          "no2": {"type": "Property", "value": 10.0 + i}, "name": {"type": "Property", "value": f"A sensor {i}"}}
         for i in range(12)]
    a += [{"id": f"urn:ngsi-ld:Building:a{i}", "type": "Building", "location": _square(10.0 + i * 0.05, 50.0, 0.01),
           "height": {"type": "Property", "value": 10 * (i + 1)}} for i in range(3)]
    b = [{"id": f"urn:ngsi-ld:Sensor:b{i}", "type": "Sensor", "location": _point(-3.7 - i * 0.01, 40.4),
          "no2": {"type": "Property", "value": 40.0 + i}} for i in range(4)]
    b += [{"id": f"urn:ngsi-ld:Building:b{i}", "type": "Building", "location": _square(-3.7, 40.4 + i * 0.05, 0.01),
           "height": {"type": "Property", "value": 5}} for i in range(2)]
    return {A: a, B: b}


@pytest.fixture(scope="module")
def live(gdal: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("ogc") / "live.db").start()
    try:
        for tenant, ents in _entities().items():
            r = httpx.post(f"{server.url}/entityOperations/create", json=ents, headers={"NGSILD-Tenant": tenant},
                           timeout=30)
            assert r.status_code == 201, r.text
        yield server
    finally:
        server.stop()


def _run(*args: str, debug: bool = False) -> str:
    """stdout of a GDAL command (with ``debug``: stdout and GDAL's debug log, which names each URL fetched)."""
    env = dict(os.environ, GDAL_HTTP_TIMEOUT="30", CPL_DEBUG="ON" if debug else "OFF",
               GDAL_DISABLE_READDIR_ON_OPEN="YES")
    p = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 0, f"{' '.join(args)}\nstdout:\n{p.stdout[-3000:]}\nstderr:\n{p.stderr[-3000:]}"
    return p.stdout + (p.stderr if debug else "")


def _oapif(server: Server, tenant: str) -> str:
    return f"OAPIF:http://127.0.0.1:{server.port}/ogc/{tenant}"


def test_ogrinfo_lists_the_collections_of_each_city(live: Server) -> None:
    for tenant in (A, B):
        out = _run("ogrinfo", "-ro", "-q", _oapif(live, tenant))
        layers = dict(re.findall(r"^\d+: (\S+) \(([^)]*)\)", out, re.M))
        assert layers == {"Building": "Polygon", "Sensor": "Point"} or set(layers) == {"Building", "Sensor"}, out


def test_ogrinfo_reads_features_with_a_bbox(live: Server) -> None:
    # sensors a0..a11 sit at (10 + i/100, 50 + i/100): the box takes a2..a5
    out = _run("ogrinfo", "-ro", "-al", "-spat", "10.015", "50.015", "10.055", "50.055", _oapif(live, A), "Sensor")
    ids = sorted(set(re.findall(r"urn:ngsi-ld:Sensor:a\d+", out)))
    assert ids == [f"urn:ngsi-ld:Sensor:a{i}" for i in (2, 3, 4, 5)], out
    assert re.search(r"Feature Count: 4\b", out), out
    assert "POINT (10.02 50.02)" in out
    assert re.search(r"no2 \(Real\) = 12\b", out), out
    # the other city's sensors are elsewhere and never show up
    out = _run("ogrinfo", "-ro", "-al", "-spat", "-4", "40", "-3", "41", _oapif(live, B), "Sensor")
    assert sorted(set(re.findall(r"urn:ngsi-ld:Sensor:\w+", out))) == [f"urn:ngsi-ld:Sensor:b{i}" for i in range(4)]


def test_ogrinfo_attribute_filter_runs_on_the_server(live: Server) -> None:
    out = _run("ogrinfo", "-ro", "-al", "-where", "no2 >= 19 AND name LIKE 'A%'", _oapif(live, A), "Sensor",
               debug=True)
    ids = sorted(set(re.findall(r"urn:ngsi-ld:Sensor:a\d+", out)))
    assert ids == sorted(f"urn:ngsi-ld:Sensor:a{i}" for i in (9, 10, 11)), out
    # GDAL found the filter support in the OpenAPI document and sent the whole filter to the server
    fetched = re.findall(r"Fetch\((\S+/collections/Sensor/items\?\S*filter=\S*)\)", out)
    assert fetched and "filter-lang=cql" in fetched[0], out
    assert "client side" not in out and "ERROR" not in out


def test_ogr2ogr_to_geojson_keeps_every_feature(live: Server, tmp_path: Path) -> None:
    for tenant, layer, expected in ((A, "Sensor", 12), (A, "Building", 3), (B, "Sensor", 4), (B, "Building", 2)):
        dest = tmp_path / f"{tenant}-{layer}.geojson"
        _run("ogr2ogr", "-f", "GeoJSON", str(dest), _oapif(live, tenant), layer)
        fc = json.loads(dest.read_text())
        matched = httpx.get(f"http://127.0.0.1:{live.port}/ogc/{tenant}/collections/{layer}/items",
                            params={"limit": 1}).json()["numberMatched"]
        assert len(fc["features"]) == matched == expected
        assert all(f["geometry"] is not None for f in fc["features"])
