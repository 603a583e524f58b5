"""Helpers several formulas share: the population denominator, geometry in metres, provenance inputs."""

from __future__ import annotations

from typing import Any

import shapely
from pyproj import Geod
from shapely.geometry import shape

from urbanmim.analysis.data import Record
from urbanmim.kpi.citydata import CityData, ngsi_query
from urbanmim.kpi.formulas.base import NoData
from urbanmim.kpi.values import Input, input_of

GEOD = Geod(ellps="WGS84")


async def population(cd: CityData) -> tuple[float, Input]:
    """Residents (sum of the districts' population) and the input that says so; NoData without."""
    pop, districts = await cd.population()
    if not pop:
        raise NoData("no District entities with a population: the per-resident denominator is unknown")
    return pop, input_of("District", ["population"], [d.id for d in districts], ngsi_query("District"))


def records_input(short: str, attrs: list[str], recs: list[Record], q: str = "") -> Input:
    return input_of(short, attrs, [r.id for r in recs], ngsi_query(short, q))


def polygonal(g: Any) -> bool:
    return isinstance(g, dict) and g.get("type") in ("Polygon", "MultiPolygon")


def geodesic_area_m2(geom: dict[str, Any]) -> float:
    area, _ = GEOD.geometry_area_perimeter(shape(geom))
    return abs(area)


def geodesic_length_m(geom: dict[str, Any]) -> float:
    return float(GEOD.geometry_length(shape(geom)))


def representative_point(geom: dict[str, Any]) -> dict[str, Any]:
    g = shape(geom)
    p = g if isinstance(g, shapely.Point) else g.representative_point()
    return {"type": "Point", "coordinates": [p.x, p.y]}


def categories(rec: Record) -> set[str]:
    v = rec.props.get("category")
    if isinstance(v, str):
        return {v}
    return {c for c in v if isinstance(c, str)} if isinstance(v, list) else set()


def r(x: float, digits: int = 3) -> float:
    return round(float(x), digits)
