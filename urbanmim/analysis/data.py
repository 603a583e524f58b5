"""The plain data the models read: records (one per entity), a time series, and a metric frame.

Why plain records and short names: a model should not care whether a city loaded its
districts with the core @context (``.../default-context/population``) or a Smart Data
Models one (``https://smartdatamodels.org/dataModel.Building/floorsAboveGround``). Records
carry the *local name* of each type and attribute (the IRI's last segment), which is what a
planner means by "population", and tests build them in a line.

Why one local projection: distances and areas in degrees are wrong by a factor that
varies with latitude; the models measure in metres on an azimuthal equidistant projection
centred on the city (PROJ ``aeqd`` on WGS84, as the geo-queries do, ``ngsild/geo.py``).
Within a few tens of kilometres of its centre its scale error is below 1e-5, far below
the precision of a walking radius.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import shapely
from shapely.geometry import shape

from urbanmim.ngsild.entity import LOCATION, Entity, default_instance, value_of
from urbanmim.ngsild.geo import _aeqd  # the same cached PROJ pipeline the geo-queries use

_LOCAL = re.compile(r"[^/#:]+$")


def local_name(iri: str) -> str:
    """``https://smartdatamodels.org/dataModel.Building/category`` -> ``category``."""
    m = _LOCAL.search(iri)
    return m.group(0) if m else iri


@dataclass
class Record:
    """One entity as a model sees it: id, short type, GeoJSON geometry, short-named values and units."""

    id: str
    type: str
    geometry: dict[str, Any] | None = None
    props: dict[str, Any] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)

    def number(self, name: str) -> float | None:
        v = self.props.get(name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
            return None
        return float(v)

    def label(self) -> str | None:
        v = self.props.get("name")
        return v if isinstance(v, str) else None


def record_of(ent: Entity) -> Record:
    """An internal (expanded) entity -> a Record; the default instance of each attribute."""
    types = ent.get("type") or ["?"]
    rec = Record(id=ent["id"], type=local_name(types[0]))
    for iri, insts in ent.get("attrs", {}).items():
        inst = default_instance(insts)
        if inst is None:
            continue
        if iri == LOCATION:
            v = value_of(inst)
            rec.geometry = v if isinstance(v, dict) else None
            continue
        name = local_name(iri)
        rec.props[name] = value_of(inst)
        if isinstance(inst.get("unitCode"), str):
            rec.units[name] = inst["unitCode"]
    return rec


@dataclass(frozen=True)
class SeriesRequest:
    """The history a model needs: one attribute of one entity (or the first of ``type`` that has it)."""

    type: str
    attribute: str
    entity_id: str | None
    days: int


@dataclass(frozen=True)
class Needs:
    types: tuple[str, ...]
    series: SeriesRequest | None = None


@dataclass
class Series:
    entity_id: str
    attribute: str
    points: list[tuple[int, float]]     # (epoch ms, value), oldest first
    unit: str | None = None


@dataclass
class Inputs:
    """Everything one run reads: records by short type name, and an optional time series."""

    records: dict[str, list[Record]] = field(default_factory=dict)
    series: Series | None = None

    def of(self, type_name: str) -> list[Record]:
        return self.records.get(type_name, [])


# ----------------------------------------------------------------------------- metric frame

class Frame:
    """lon/lat <-> metres on an azimuthal equidistant projection centred on (lon0, lat0)."""

    def __init__(self, lon0: float, lat0: float):
        self.lon0, self.lat0 = lon0, lat0
        self._tr = _aeqd(round(lon0, 6), round(lat0, 6))

    @classmethod
    def around(cls, geometries: list[dict[str, Any]]) -> Frame:
        """Centred on the middle of the geometries' bounding box (0, 0 if there are none)."""
        shapes = [shape(g) for g in geometries if g]
        if not shapes:
            return cls(0.0, 0.0)
        x0, y0, x1, y1 = shapely.total_bounds(shapes)
        # rounded to 1e-4° (~10 m): the same city always gets the same projection, whatever its edits
        return cls(round((x0 + x1) / 2, 4), round((y0 + y1) / 2, 4))

    def project(self, geom: dict[str, Any] | shapely.Geometry) -> shapely.Geometry:
        g = shape(geom) if isinstance(geom, dict) else geom
        if not isinstance(g, shapely.Point):
            g = shapely.segmentize(g, 0.01)   # follow lon/lat-straight edges (as ngsild/geo.py does)
        return shapely.transform(g, self._fwd)

    def project_many(self, geoms: list[dict[str, Any]]) -> np.ndarray:
        """Many GeoJSON geometries at once (one PROJ call for all their coordinates)."""
        arr = np.array([shape(g) for g in geoms] + [None], dtype=object)[:-1]
        if not len(arr):
            return arr
        return shapely.transform(shapely.segmentize(arr, 0.01), self._fwd)

    def points(self, lonlat: np.ndarray) -> np.ndarray:
        x, y = self._tr.transform(lonlat[:, 0], lonlat[:, 1])
        return np.column_stack([x, y])

    def unproject(self, geom: shapely.Geometry) -> shapely.Geometry:
        return shapely.transform(geom, self._inv)

    def _fwd(self, xy: np.ndarray) -> np.ndarray:
        return np.column_stack(self._tr.transform(xy[:, 0], xy[:, 1]))

    def _inv(self, xy: np.ndarray) -> np.ndarray:
        return np.column_stack(self._tr.transform(xy[:, 0], xy[:, 1], direction="INVERSE"))


def to_geojson_many(geoms: np.ndarray, digits: int = 6) -> list[dict[str, Any]]:
    """Many lon/lat geometries as GeoJSON (vectorised in GEOS: a grid of thousands of cells in ms)."""
    if not len(geoms):
        return []
    rounded = shapely.transform(geoms, lambda xy: np.round(xy, digits))
    return [orjson.loads(s) for s in shapely.to_geojson(rounded)]


def feature(fid: str, geometry: dict[str, Any] | None, props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Feature", "id": fid, "geometry": geometry, "properties": {"id": fid, **props}}
