"""File importers: GeoJSON, CSV, GTFS → NGSI-LD entities, by name (an extension point).

An importer is a function ``read(path, mapping) -> list[Record]``: it only *reads* and
turns rows/features into NGSI-LD payloads (or rejections). Validation, idempotent
batched upserts, the progress bar and the summary are shared (``runner.py``), so a new
format is one function registered with :func:`register`; ``urbanmim import NAME FILE``
finds it in :data:`IMPORTERS`.

A :class:`Mapping` says how a row becomes an entity: the entity type, which field holds
its identifier, which source fields become which attributes (and their UN/CEFACT unit
codes). A source may be ``a+b`` (the numeric sum of fields, e.g. ``population=Homes+Dones``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from urbanmim.ingest.importers.runner import ImportFailed, Record

Reader = Callable[[Path, "Mapping"], list[Record]]
IMPORTERS: dict[str, Reader] = {}


def register(name: str) -> Callable[[Reader], Reader]:
    """Make an importer available as ``urbanmim import NAME``."""
    def deco(fn: Reader) -> Reader:
        IMPORTERS[name] = fn
        return fn
    return deco


def get_importer(name: str) -> Reader:
    _load_builtin()
    try:
        return IMPORTERS[name]
    except KeyError:
        raise ImportFailed(f"no importer named {name!r} (known: {', '.join(sorted(IMPORTERS))})") from None


def _load_builtin() -> None:
    from urbanmim.ingest.importers import csv, geojson, gtfs  # noqa: F401  (they register themselves)


@dataclass
class AttrMap:
    source: str                      # a field name, or "a+b+c" (numeric sum)
    name: str                        # the attribute name
    unit: str | None = None          # UN/CEFACT unit code


@dataclass
class Mapping:
    type: str = "Thing"
    id_field: str | None = None      # None: the feature id / a row number
    attrs: list[AttrMap] = field(default_factory=list)   # empty: every field under its own name
    id_prefix: str | None = None     # urn:ngsi-ld:<Type>: by default
    lon_field: str | None = None     # CSV: longitude/latitude columns (auto-detected when None)
    lat_field: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def entity_id(self, raw: Any) -> str:
        text = str(raw).strip()
        if re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*:", text) and " " not in text:
            return text           # already a URI
        prefix = self.id_prefix or f"urn:ngsi-ld:{self.type}:"
        return prefix + re.sub(r"[^A-Za-z0-9._\-~:]", "-", text)


def parse_map(spec: str) -> AttrMap:
    """``src=attr[:unit]`` (or ``src`` alone: same name, no unit)."""
    src, _, target = spec.partition("=")
    src = src.strip()
    if not src:
        raise ImportFailed(f"--map {spec!r}: expected src=attr[:unit]")
    name, _, unit = (target or src).partition(":")
    return AttrMap(src, name.strip() or src, unit.strip() or None)


def coerce(value: Any) -> Any:
    """CSV text → number/bool where it plainly is one; JSON values are kept."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text == "":
        return None
    if re.fullmatch(r"[+-]?\d{1,15}", text) and not (len(text) > 1 and text.lstrip("+-").startswith("0")):
        return int(text)
    if re.fullmatch(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?", text):
        return float(text)
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def source_value(fields: dict[str, Any], source: str) -> Any:
    """The value of a mapped source: a field, or the numeric sum of ``a+b+...``."""
    if "+" in source and source not in fields:
        total: float = 0
        for part in source.split("+"):
            v = coerce(fields.get(part.strip()))
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"{part.strip()!r} is not a number ({v!r})")
            total += v
        return total
    if source not in fields:
        raise ValueError(f"field {source!r} is missing")
    return coerce(fields[source])


def attributes(fields: dict[str, Any], mapping: Mapping, skip: set[str]) -> dict[str, Any]:
    """The NGSI-LD attributes of one row: mapped fields (with units), or every field."""
    out: dict[str, Any] = {}
    maps = mapping.attrs or [AttrMap(k, k) for k in fields if k not in skip]
    for m in maps:
        value = source_value(fields, m.source)
        if value is None:
            continue
        attr: dict[str, Any] = {"type": "Property", "value": value}
        if m.unit:
            attr["unitCode"] = m.unit
        out[m.name] = attr
    return out


def check_sources(available: set[str], mapping: Mapping, what: str) -> None:
    """Every mapped field must exist in the file (else the whole file is refused, before writing)."""
    needed = [p.strip() for m in mapping.attrs for p in (m.source.split("+") if m.source not in available
                                                         else [m.source])]
    if mapping.id_field:
        needed.append(mapping.id_field)
    missing = sorted({n for n in needed if n not in available})
    if missing:
        raise ImportFailed(f"{what}: field(s) {', '.join(missing)} not found "
                           f"(available: {', '.join(sorted(available)) or 'none'})")


__all__ = ["IMPORTERS", "AttrMap", "ImportFailed", "Mapping", "Reader", "Record", "attributes", "check_sources",
           "coerce", "get_importer", "parse_map", "register", "source_value"]
