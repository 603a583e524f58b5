"""GeoJSON FeatureCollection → one entity per feature (geometry → ``location``).

The whole document is parsed and checked before anything is written (``runner``): a file
that is not JSON or not a FeatureCollection is refused with :class:`ImportFailed`; a
feature without a geometry or identifier is rejected alone, with its index.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from urbanmim.ingest.importers import ImportFailed, Mapping, Record, attributes, check_sources, register


def _load(path: Path) -> dict[str, Any]:
    try:
        doc = orjson.loads(path.read_bytes())
    except OSError as e:
        raise ImportFailed(f"{path}: cannot read ({e.strerror})") from None
    except orjson.JSONDecodeError as e:
        raise ImportFailed(f"{path}: not valid JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection" or not isinstance(doc.get("features"),
                                                                                           list):
        raise ImportFailed(f"{path}: not a GeoJSON FeatureCollection (no \"features\" list)")
    return doc


@register("geojson")
def read(path: Path, mapping: Mapping) -> list[Record]:
    doc = _load(path)
    features = doc["features"]
    props = set().union(*((f.get("properties") or {}).keys() for f in features if isinstance(f, dict))) \
        if features else set()
    check_sources(props, mapping, str(path))
    out: list[Record] = []
    for i, feat in enumerate(features):
        where = f"feature {i}"
        if not isinstance(feat, dict) or feat.get("type") != "Feature":
            out.append(Record(where, reason="not a GeoJSON Feature"))
            continue
        fields = feat.get("properties") or {}
        raw_id = fields.get(mapping.id_field) if mapping.id_field else feat.get("id")
        if raw_id is None or raw_id == "":
            what = f"property {mapping.id_field!r}" if mapping.id_field else "a feature id (use --id-field)"
            out.append(Record(where, reason=f"no identifier: {what} is empty"))
            continue
        where = f"feature {i} ({raw_id})"
        geom = feat.get("geometry")
        if not isinstance(geom, dict):
            out.append(Record(where, reason="no geometry"))
            continue
        try:
            attrs = attributes(fields, mapping, skip={mapping.id_field or ""})
        except ValueError as e:
            out.append(Record(where, reason=str(e)))
            continue
        payload: dict[str, Any] = {"id": mapping.entity_id(raw_id), "type": mapping.type, **attrs,
                                   "location": {"type": "GeoProperty", "value": geom}}
        out.append(Record(where, payload))
    return out
