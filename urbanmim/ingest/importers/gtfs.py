"""GTFS (a .zip or a folder of .txt) → Smart Data Models GtfsStop/Station, GtfsRoute, GtfsTrip, GtfsShape.

Why the builders are separate functions: the demo cities generate GTFS-shaped rows and
turn them into entities with exactly these functions, so a demo network and an imported
feed look the same to a client.

Attribute names and value types follow the SDM UrbanMobility schemas (``routeType`` and
``wheelChairAccessible`` are strings there, ``direction`` a number; references are
Relationships: ``hasRoute``, ``hasService``, ``hasShape``, ``hasParentStation``,
``operatedBy``). Each entity carries the UrbanMobility @context terms (``sdm.py``), so no
``--context`` is needed. Identifiers: ``urn:ngsi-ld:<Type>:[<feed>:]<gtfs id>``.

Checks before writing: stops.txt, routes.txt and trips.txt must exist with their required
columns (else the feed is refused); a trip pointing to an unknown route/shape, or a stop
without coordinates, is rejected alone. ``stop_times.txt`` is read only with
``options["stop_times"]`` (feeds carry millions of rows).
"""

from __future__ import annotations

import csv as stdcsv
import io
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from urbanmim.ingest.demo.sdm import term_map
from urbanmim.ingest.importers import ImportFailed, Mapping, Record, coerce, register

REQUIRED = {
    "stops.txt": ("stop_id",),
    "routes.txt": ("route_id", "route_type"),
    "trips.txt": ("route_id", "service_id", "trip_id"),
}


def gid(kind: str, raw: str, feed: str | None = None) -> str:
    safe = "".join(c if c.isalnum() or c in "._-~" else "-" for c in str(raw).strip())
    return f"urn:ngsi-ld:{kind}:{feed + ':' if feed else ''}{safe}"


def _prop(value: Any, unit: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "Property", "value": value}
    if unit:
        out["unitCode"] = unit
    return out


def _rel(target: str) -> dict[str, Any]:
    return {"type": "Relationship", "object": target}


def _text(row: dict[str, str], key: str) -> str | None:
    v = (row.get(key) or "").strip()
    return v or None


def stop_payload(row: dict[str, str], feed: str | None = None) -> dict[str, Any]:
    """A stops.txt row → GtfsStop (or GtfsStation for ``location_type`` 1). Raises ValueError."""
    lon, lat = coerce(row.get("stop_lon")), coerce(row.get("stop_lat"))
    if not isinstance(lon, (int, float)) or not isinstance(lat, (int, float)) or isinstance(lon, bool) \
            or not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise ValueError(f"bad or missing stop_lon/stop_lat ({row.get('stop_lon')!r}, {row.get('stop_lat')!r})")
    kind = "GtfsStation" if _text(row, "location_type") == "1" else "GtfsStop"
    p: dict[str, Any] = {"id": gid(kind, row["stop_id"], feed), "type": kind,
                         "name": _prop(_text(row, "stop_name") or row["stop_id"]),
                         "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}}
    for src, attr in (("stop_code", "code"), ("stop_desc", "description"), ("zone_id", "zoneCode"),
                      ("stop_url", "page"), ("wheelchair_boarding", "wheelChairAccessible")):
        v = _text(row, src)
        if v is not None:
            p[attr] = _prop(v)
    if _text(row, "parent_station"):
        p["hasParentStation"] = _rel(gid("GtfsStation", row["parent_station"], feed))
    return p


def route_payload(row: dict[str, str], feed: str | None = None) -> dict[str, Any]:
    rtype = _text(row, "route_type")
    if rtype is None or not rtype.isdigit():
        raise ValueError(f"route_type {row.get('route_type')!r} is not a GTFS route type")
    p: dict[str, Any] = {"id": gid("GtfsRoute", row["route_id"], feed), "type": "GtfsRoute",
                         "routeType": _prop(rtype)}
    name = _text(row, "route_long_name") or _text(row, "route_short_name")
    if name:
        p["name"] = _prop(name)
    for src, attr in (("route_short_name", "shortName"), ("route_desc", "description"), ("route_color", "routeColor"),
                      ("route_text_color", "routeTextColor"), ("route_url", "page")):
        v = _text(row, src)
        if v is not None:
            p[attr] = _prop(v)
    order = coerce(row.get("route_sort_order"))
    if isinstance(order, int):
        p["routeSortOrder"] = _prop(order)
    if _text(row, "agency_id"):
        p["operatedBy"] = _rel(gid("GtfsAgency", row["agency_id"], feed))
    return p


def trip_payload(row: dict[str, str], feed: str | None = None) -> dict[str, Any]:
    p: dict[str, Any] = {"id": gid("GtfsTrip", row["trip_id"], feed), "type": "GtfsTrip",
                         "hasRoute": _rel(gid("GtfsRoute", row["route_id"], feed)),
                         "hasService": _rel(gid("GtfsService", row["service_id"], feed))}
    for src, attr in (("trip_headsign", "headSign"), ("trip_short_name", "shortName"), ("block_id", "block")):
        v = _text(row, src)
        if v is not None:
            p[attr] = _prop(v)
    for src, attr, allowed in (("direction_id", "direction", (0, 1)), ("wheelchair_accessible",
                                                                      "wheelChairAccessible", (0, 1, 2)),
                               ("bikes_allowed", "bikesAllowed", (0, 1, 2))):
        v = coerce(row.get(src))
        if v is None:
            continue
        if v not in allowed:
            raise ValueError(f"{src} {row.get(src)!r} is not one of {allowed}")
        p[attr] = _prop(v)
    if _text(row, "shape_id"):
        p["hasShape"] = _rel(gid("GtfsShape", row["shape_id"], feed))
    return p


def shape_payload(shape_id: str, points: list[dict[str, str]], feed: str | None = None) -> dict[str, Any]:
    """All shapes.txt rows of one shape → a GtfsShape with a LineString ``location``."""
    try:
        pts = sorted(points, key=lambda r: int(r["shape_pt_sequence"]))
        coords = [[float(r["shape_pt_lon"]), float(r["shape_pt_lat"])] for r in pts]
    except (KeyError, ValueError) as e:
        raise ValueError(f"bad shape point ({e})") from None
    if len(coords) < 2:
        raise ValueError("a shape needs at least 2 points")
    p: dict[str, Any] = {"id": gid("GtfsShape", shape_id, feed), "type": "GtfsShape",
                         "location": {"type": "GeoProperty", "value": {"type": "LineString", "coordinates": coords}}}
    dist = [coerce(r.get("shape_dist_traveled")) for r in pts]
    if all(isinstance(d, (int, float)) for d in dist):
        p["distanceTravelled"] = {"type": "ListProperty", "valueList": dist}
    return p


def stop_time_payload(row: dict[str, str], feed: str | None = None) -> dict[str, Any]:
    seq = coerce(row.get("stop_sequence"))
    if not isinstance(seq, int):
        raise ValueError(f"stop_sequence {row.get('stop_sequence')!r} is not an integer")
    p: dict[str, Any] = {"id": gid("GtfsStopTime", f"{row['trip_id']}-{seq}", feed), "type": "GtfsStopTime",
                         "hasTrip": _rel(gid("GtfsTrip", row["trip_id"], feed)),
                         "hasStop": _rel(gid("GtfsStop", row["stop_id"], feed)), "stopSequence": _prop(seq)}
    for src, attr in (("arrival_time", "arrivalTime"), ("departure_time", "departureTime")):
        v = _text(row, src)
        if v is not None:
            p[attr] = _prop(v)
    return p


# ---- reading a feed -----------------------------------------------------------------------------------
class _Feed:
    def __init__(self, path: Path):
        self.path = path
        self.zip: zipfile.ZipFile | None = None
        if path.is_file():
            try:
                self.zip = zipfile.ZipFile(path)
            except zipfile.BadZipFile:
                raise ImportFailed(f"{path}: not a zip file (give a GTFS .zip or a folder of .txt)") from None
            self.names = {Path(n).name: n for n in self.zip.namelist() if n.endswith(".txt")}
        elif path.is_dir():
            self.names = {p.name: str(p) for p in path.glob("*.txt")}
        else:
            raise ImportFailed(f"{path}: no such file or folder")

    def rows(self, name: str) -> list[dict[str, str]] | None:
        if name not in self.names:
            return None
        try:
            raw = self.zip.read(self.names[name]) if self.zip else Path(self.names[name]).read_bytes()
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ImportFailed(f"{self.path}: {name} is not UTF-8") from None
        reader = stdcsv.DictReader(io.StringIO(text))
        header = [h.strip() for h in reader.fieldnames or []]
        reader.fieldnames = header
        missing = [c for c in REQUIRED.get(name, ()) if c not in header]
        if missing:
            raise ImportFailed(f"{self.path}: {name} lacks required column(s) {', '.join(missing)}")
        out = []
        for row in reader:
            if None in row:
                raise ImportFailed(f"{self.path}: {name} line {reader.line_num} has more cells than the header")
            out.append(row)
        return out


@register("gtfs")
def read(path: Path, mapping: Mapping) -> list[Record]:
    feed_id: str | None = mapping.options.get("feed")
    feed = _Feed(path)
    tables = {n: feed.rows(n) for n in ("stops.txt", "routes.txt", "trips.txt", "shapes.txt")}
    for n in REQUIRED:
        if tables[n] is None:
            raise ImportFailed(f"{path}: not a GTFS feed ({n} is missing)")
    ctx = term_map("UrbanMobility")
    out: list[Record] = []

    def add(where: str, build: Any, *args: Any) -> None:
        try:
            out.append(Record(where, build(*args, feed_id), context=ctx))
        except ValueError as e:
            out.append(Record(where, reason=str(e)))

    for i, row in enumerate(tables["stops.txt"] or [], start=2):
        add(f"stops.txt line {i} ({row['stop_id']})", stop_payload, row)
    route_ids = set()
    for i, row in enumerate(tables["routes.txt"] or [], start=2):
        route_ids.add(row["route_id"])
        add(f"routes.txt line {i} ({row['route_id']})", route_payload, row)
    shapes: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in tables["shapes.txt"] or []:
        shapes[row.get("shape_id", "")].append(row)
    for sid, pts in shapes.items():
        add(f"shapes.txt shape {sid}", shape_payload, sid, pts)
    for i, row in enumerate(tables["trips.txt"] or [], start=2):
        where = f"trips.txt line {i} ({row['trip_id']})"
        if row["route_id"] not in route_ids:
            out.append(Record(where, reason=f"route_id {row['route_id']!r} is not in routes.txt"))
        elif _text(row, "shape_id") and row["shape_id"] not in shapes:
            out.append(Record(where, reason=f"shape_id {row['shape_id']!r} is not in shapes.txt"))
        else:
            add(where, trip_payload, row)
    if mapping.options.get("stop_times"):
        for i, row in enumerate(feed.rows("stop_times.txt") or [], start=2):
            add(f"stop_times.txt line {i}", stop_time_payload, row)
    return out
