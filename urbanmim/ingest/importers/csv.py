"""CSV → one entity per row (``lon``/``lat`` columns → a Point ``location``).

The delimiter (``,`` ``;`` tab) is the one the header uses, a UTF-8 BOM is accepted, numbers are typed.
The header must hold the id field, the mapped fields and the coordinates, else the file
is refused before anything is written; a row with the wrong number of cells or bad
coordinates is rejected alone, with its line number.
"""

from __future__ import annotations

import csv as stdcsv
from pathlib import Path
from typing import Any

from urbanmim.ingest.importers import ImportFailed, Mapping, Record, attributes, check_sources, coerce, register

LON_NAMES = ("lon", "lng", "long", "longitude", "x", "stop_lon")
LAT_NAMES = ("lat", "latitude", "y", "stop_lat")


def _pick(header: list[str], given: str | None, names: tuple[str, ...]) -> str | None:
    if given:
        return given
    low = {h.lower(): h for h in header}
    return next((low[n] for n in names if n in low), None)


@register("csv")
def read(path: Path, mapping: Mapping) -> list[Record]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise ImportFailed(f"{path}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise ImportFailed(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if not text.strip():
        raise ImportFailed(f"{path}: empty file")
    first = text.split("\n", 1)[0]
    delimiter = max(",;\t", key=first.count)      # from the header: data rows may be ragged
    rows = list(stdcsv.reader(text.splitlines(), delimiter=delimiter))
    header = [h.strip() for h in rows[0]]
    if len(set(header)) != len(header) or any(not h for h in header):
        raise ImportFailed(f"{path}: the header row has empty or repeated column names")
    lon, lat = _pick(header, mapping.lon_field, LON_NAMES), _pick(header, mapping.lat_field, LAT_NAMES)
    check_sources(set(header), mapping, str(path))
    for given, col in ((mapping.lon_field, lon), (mapping.lat_field, lat)):
        if given and col not in header:
            raise ImportFailed(f"{path}: coordinate column {given!r} not found")
    skip = {c for c in (mapping.id_field, lon, lat) if c}
    out: list[Record] = []
    for n, cells in enumerate(rows[1:], start=2):
        where = f"line {n}"
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            out.append(Record(where, reason=f"{len(cells)} cells, the header has {len(header)}"))
            continue
        fields = dict(zip(header, cells, strict=True))
        raw_id = fields[mapping.id_field].strip() if mapping.id_field else str(n - 1)
        if not raw_id:
            out.append(Record(where, reason=f"empty {mapping.id_field!r}"))
            continue
        where = f"line {n} ({raw_id})"
        try:
            attrs = attributes(fields, mapping, skip=skip)
        except ValueError as e:
            out.append(Record(where, reason=str(e)))
            continue
        payload: dict[str, Any] = {"id": mapping.entity_id(raw_id), "type": mapping.type, **attrs}
        if lon and lat:
            x, y = coerce(fields[lon]), coerce(fields[lat])
            if not isinstance(x, (int, float)) or not isinstance(y, (int, float)) or isinstance(x, bool) \
                    or not (-180 <= x <= 180 and -90 <= y <= 90):
                out.append(Record(where, reason=f"bad coordinates {fields[lon]!r}, {fields[lat]!r}"))
                continue
            payload["location"] = {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [x, y]}}
        out.append(Record(where, payload))
    return out
