"""GTFS importer on a tiny feed written here: SDM Gtfs* entities, idempotence, broken feeds."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from tests.import_helpers import open_client, settings, tenants
from urbanmim.ingest.demo.sdm import context_id
from urbanmim.ingest.importers import ImportFailed, Mapping
from urbanmim.ingest.importers.runner import import_file

FEED = {
    "agency.txt": "agency_id,agency_name,agency_url,agency_timezone\nTMB,Transit,https://example.org,Europe/Madrid\n",
    "stops.txt": "stop_id,stop_name,stop_lat,stop_lon,stop_code,zone_id,location_type,parent_station,"
                 "wheelchair_boarding\n"
                 "S,Central station,41.38,2.17,,1A,1,,1\n"
                 "S1,Central platform 1,41.3801,2.1701,101,1A,0,S,1\n"
                 "S2,Harbour,41.37,2.18,102,1A,0,,2\n"
                 "S3,Hill,41.36,2.15,103,1B,,,\n",
    "routes.txt": "route_id,agency_id,route_short_name,route_long_name,route_type,route_color\n"
                  "R1,TMB,L1,Central - Hill,1,FF0000\nR2,TMB,B2,Harbour loop,3,00FF00\n",
    "trips.txt": "route_id,service_id,trip_id,trip_headsign,direction_id,shape_id\n"
                 "R1,WD,T1,Hill,0,SH1\nR1,WD,T2,Central,1,SH1\nR2,WE,T3,Harbour,0,\n",
    "shapes.txt": "shape_id,shape_pt_lat,shape_pt_lon,shape_pt_sequence,shape_dist_traveled\n"
                  "SH1,41.36,2.15,3,3.2\nSH1,41.3801,2.1701,1,0\nSH1,41.37,2.18,2,1.5\n",
    "stop_times.txt": "trip_id,arrival_time,departure_time,stop_id,stop_sequence\n"
                      "T1,08:00:00,08:00:00,S1,1\nT1,08:04:00,08:04:30,S2,2\nT1,08:09:00,08:09:00,S3,3\n",
}


def write_feed(tmp_path: Path, files: dict[str, str] = FEED, as_zip: bool = True) -> Path:
    if as_zip:
        path = tmp_path / "feed.zip"
        with zipfile.ZipFile(path, "w") as z:
            for name, text in files.items():
                z.writestr(name, text)
        return path
    folder = tmp_path / "feed"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


async def run(db: Path, path: Path, **options: object):
    return await import_file(settings(db), "gtfs", str(path), "bcn", Mapping(options=dict(options)),
                             show_progress=False)


async def kv(c, etype: str) -> dict[str, dict]:   # type: ignore[no-untyped-def]
    link = f'<http://x{"/ngsi-ld/v1/jsonldContexts/"}{context_id("UrbanMobility")}>; ' \
           'rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
    r = await c.get("/entities", params={"type": etype, "options": "keyValues", "limit": "100"},
                    headers={"NGSILD-Tenant": "bcn", "Link": link})
    assert r.status_code == 200, r.text
    return {e["id"]: e for e in r.json()}


async def test_feed_becomes_sdm_entities(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    s = await run(db, write_feed(tmp_path), stop_times=True)
    assert s.rejected == [] and s.failed == []
    assert s.created == 4 + 2 + 1 + 3 + 3          # stops (1 station), routes, shapes, trips, stop times
    async with open_client(db) as c:
        stops = await kv(c, "GtfsStop")
        assert set(stops) == {"urn:ngsi-ld:GtfsStop:S1", "urn:ngsi-ld:GtfsStop:S2", "urn:ngsi-ld:GtfsStop:S3"}
        s1 = stops["urn:ngsi-ld:GtfsStop:S1"]
        assert s1["name"] == "Central platform 1" and s1["code"] == "101" and s1["zoneCode"] == "1A"
        assert s1["hasParentStation"] == "urn:ngsi-ld:GtfsStation:S"
        assert s1["wheelChairAccessible"] == "1" and s1["location"]["coordinates"] == [2.1701, 41.3801]
        assert list(await kv(c, "GtfsStation")) == ["urn:ngsi-ld:GtfsStation:S"]
        routes = await kv(c, "GtfsRoute")
        assert routes["urn:ngsi-ld:GtfsRoute:R1"]["routeType"] == "1"
        assert routes["urn:ngsi-ld:GtfsRoute:R1"]["shortName"] == "L1"
        assert routes["urn:ngsi-ld:GtfsRoute:R1"]["operatedBy"] == "urn:ngsi-ld:GtfsAgency:TMB"
        trips = await kv(c, "GtfsTrip")
        t1 = trips["urn:ngsi-ld:GtfsTrip:T1"]
        assert t1["hasRoute"] == "urn:ngsi-ld:GtfsRoute:R1" and t1["hasService"] == "urn:ngsi-ld:GtfsService:WD"
        assert t1["hasShape"] == "urn:ngsi-ld:GtfsShape:SH1" and t1["direction"] == 0 and t1["headSign"] == "Hill"
        shape = (await kv(c, "GtfsShape"))["urn:ngsi-ld:GtfsShape:SH1"]
        assert shape["location"] == {"type": "LineString",
                                     "coordinates": [[2.1701, 41.3801], [2.18, 41.37], [2.15, 41.36]]}
        assert shape["distanceTravelled"] == [0, 1.5, 3.2]
        times = await kv(c, "GtfsStopTime")
        assert times["urn:ngsi-ld:GtfsStopTime:T1-2"]["departureTime"] == "08:04:30"
    folder = tmp_path / "as-folder"
    folder.mkdir()
    s = await run(db, write_feed(folder, as_zip=False), stop_times=True)
    assert (s.created, s.updated, s.unchanged) == (0, 0, 13)          # a folder of the same feed: no change


async def test_dangling_references_are_rejected(tmp_path: Path) -> None:
    files = dict(FEED, **{"trips.txt": FEED["trips.txt"] + "R9,WD,T9,Nowhere,0,\nR1,WD,T8,Hill,0,SH9\n",
                          "stops.txt": FEED["stops.txt"] + "S4,No coordinates,,,,,,,\n"})
    s = await run(tmp_path / "g.db", write_feed(tmp_path, files))
    reasons = {r.where: r.reason for r in s.rejected}
    assert "route_id 'R9' is not in routes.txt" in reasons["trips.txt line 5 (T9)"]
    assert "shape_id 'SH9' is not in shapes.txt" in reasons["trips.txt line 6 (T8)"]
    assert "stop_lon" in reasons["stops.txt line 6 (S4)"]
    assert s.created == 4 + 2 + 1 + 3


@pytest.mark.parametrize("files,message", [
    ({k: v for k, v in FEED.items() if k != "routes.txt"}, "routes.txt is missing"),
    (dict(FEED, **{"trips.txt": "route_id,trip_id\nR1,T1\n"}), "trips.txt lacks required column(s) service_id"),
    (dict(FEED, **{"stops.txt": FEED["stops.txt"] + "S9,Extra,41,2,,,,,,,,\n"}), "more cells than the header"),
])
async def test_broken_feed_writes_nothing(tmp_path: Path, files: dict[str, str], message: str) -> None:
    db = tmp_path / "g.db"
    with pytest.raises(ImportFailed) as e:
        await run(db, write_feed(tmp_path, files))
    assert message in str(e.value)
    assert "bcn" not in await tenants(db)


async def test_not_a_zip(tmp_path: Path) -> None:
    f = tmp_path / "feed.zip"
    f.write_text("hello")
    with pytest.raises(ImportFailed, match="not a zip"):
        await run(tmp_path / "g.db", f)
