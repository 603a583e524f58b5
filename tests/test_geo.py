"""Geo-queries and GeoJSON validation (urbanmim.ngsild.geo).

Reference distances are hand-computed from the WGS84 length of a degree
(lat: 111132.92 - 559.82 cos 2φ + 1.175 cos 4φ; lon: 111412.84 cos φ - 93.5 cos 3φ),
so they do not depend on the code under test. The ETSI cases reuse the coordinates of
the NGSI-LD test suite (019_10, 019_11, 019_30) with the counts it expects.
"""

from __future__ import annotations

import json
import math

import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Geod

from urbanmim import errors
from urbanmim.ngsild.entity import LOCATION, NGSILD
from urbanmim.ngsild.geo import (
    GeoQuery,
    bbox,
    normalize_geometry,
    parse_geo_q_object,
    parse_geo_query,
    validate_geometry,
)

VOCAB = "https://example.org/vocab/"
OBSERVATION_SPACE = NGSILD + "observationSpace"
GEOD = Geod(ellps="WGS84")


def expand(term: str) -> str:
    return NGSILD + term if term in ("location", "observationSpace") else VOCAB + term


def point(lon: float, lat: float) -> dict:
    return {"type": "Point", "coordinates": [lon, lat]}


def square(x0: float, y0: float, x1: float, y1: float) -> dict:
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


def entity(*values: dict, prop: str = LOCATION) -> dict:
    return {"id": "urn:ngsi-ld:T:1", "type": [VOCAB + "T"],
            "attrs": {prop: [{"type": "GeoProperty", "value": v} for v in values]}}


def query(georel: str, geometry: str, coordinates: object, geoproperty: str | None = None) -> GeoQuery:
    coords = coordinates if isinstance(coordinates, str) else json.dumps(coordinates)
    q = parse_geo_query(georel, geometry, coords, geoproperty, expand)
    assert q is not None
    return q


def count(q: GeoQuery, entities: list[dict]) -> int:
    return sum(q.matches(e) for e in entities)


def deg_lat_m(phi: float) -> float:
    r = math.radians(phi)
    return 111132.92 - 559.82 * math.cos(2 * r) + 1.175 * math.cos(4 * r)


def deg_lon_m(phi: float) -> float:
    r = math.radians(phi)
    return 111412.84 * math.cos(r) - 93.5 * math.cos(3 * r) + 0.118 * math.cos(5 * r)


# ------------------------------------------------------------------------------------------ validation

@pytest.mark.parametrize("value, kind", [
    (point(2.17, 41.38), shapely.Point),
    ({"type": "Point", "coordinates": [2.17, 41.38, 12.5]}, shapely.Point),
    ({"type": "MultiPoint", "coordinates": [[0, 0], [1, 1]]}, shapely.MultiPoint),
    ({"type": "LineString", "coordinates": [[0, 0], [1, 1]]}, shapely.LineString),
    ({"type": "MultiLineString", "coordinates": [[[0, 0], [1, 1]], [[2, 2], [3, 3]]]}, shapely.MultiLineString),
    (square(0, 0, 1, 1), shapely.Polygon),
    ({"type": "MultiPolygon", "coordinates": [square(0, 0, 1, 1)["coordinates"]]}, shapely.MultiPolygon),
    ({"type": "Point", "coordinates": [-180, -90]}, shapely.Point),
    ({"type": "Point", "coordinates": [180, 90], "bbox": [180, 90, 180, 90]}, shapely.Point),
])
def test_valid_geometries(value: dict, kind: type) -> None:
    geom = validate_geometry(value)
    assert isinstance(geom, kind)
    assert not shapely.has_z(geom)             # altitude is dropped: predicates are 2-D


def test_polygon_with_hole_and_clockwise_shell_is_valid() -> None:
    shell = [[0, 0], [0, 10], [10, 10], [10, 0], [0, 0]]        # clockwise: RFC 7946 SHOULD NOT reject
    hole = [[4, 4], [6, 4], [6, 6], [4, 6], [4, 4]]
    geom = validate_geometry({"type": "Polygon", "coordinates": [shell, hole]})
    assert geom.area == pytest.approx(96)


def test_self_intersecting_polygon_is_accepted() -> None:
    # the ETSI suite's own fixture (019_11): crossing edges near its first vertex
    value = {"type": "Polygon", "coordinates": [[[13.2865906, 52.5648645], [13.2879639, 52.5648645],
                                                 [13.2797241, 52.4988679], [13.477478, 52.4712703],
                                                 [13.5049438, 52.5373084], [13.2865906, 52.5648645]]]}
    assert not validate_geometry(value).is_valid


def test_string_encoded_geometry_is_accepted_and_normalized() -> None:
    text = '{"type": "Point", "coordinates": [17.1, 48.7]}'
    assert isinstance(validate_geometry(text), shapely.Point)
    assert normalize_geometry(text) == {"type": "Point", "coordinates": [17.1, 48.7]}
    assert normalize_geometry(point(1, 2)) == point(1, 2)


@pytest.mark.parametrize("value, fragment", [
    ("not a geometry", "not a JSON-encoded geometry"),
    ('"just a string"', "expected a GeoJSON geometry object"),
    ([1, 2], "expected a GeoJSON geometry object"),
    (None, "expected a GeoJSON geometry object"),
    ({"coordinates": [1, 2]}, "unsupported geometry type"),
    ({"type": "Circle", "coordinates": [1, 2]}, "unsupported geometry type \"Circle\""),
    ({"type": "point", "coordinates": [1, 2]}, "unsupported geometry type"),
    ({"type": "Feature", "geometry": point(1, 2)}, "unsupported geometry type"),
    ({"type": "GeometryCollection", "geometries": [point(1, 2)]}, "GeometryCollection is not supported"),
    ({"type": "Point"}, "'coordinates' is missing"),
    ({"type": "Point", "coordinates": [1]}, "2 or 3 numbers"),
    ({"type": "Point", "coordinates": [1, 2, 3, 4]}, "2 or 3 numbers"),
    ({"type": "Point", "coordinates": []}, "2 or 3 numbers"),
    ({"type": "Point", "coordinates": "1,2"}, "expected a position"),
    ({"type": "Point", "coordinates": ["1", 2]}, "must be numbers"),
    ({"type": "Point", "coordinates": [True, 2]}, "must be numbers"),
    ({"type": "Point", "coordinates": [float("nan"), 2]}, "finite"),
    ({"type": "Point", "coordinates": [1, float("inf")]}, "finite"),
    ({"type": "Point", "coordinates": [181, 0]}, "longitude 181 is outside [-180, 180]"),
    ({"type": "Point", "coordinates": [-180.5, 0]}, "longitude -180.5"),
    ({"type": "Point", "coordinates": [41.38, 91]}, "latitude 91 is outside [-90, 90]"),
    ({"type": "Point", "coordinates": [[1, 2]]}, "one nesting level too many"),
    ({"type": "MultiPoint", "coordinates": []}, "at least 1"),
    ({"type": "MultiPoint", "coordinates": [1, 2]}, "one nesting level is missing"),
    ({"type": "LineString", "coordinates": [[0, 0]]}, "at least 2"),
    ({"type": "LineString", "coordinates": [[0, 0], [1, 95]]}, "coordinates[1]: latitude 95"),
    ({"type": "MultiLineString", "coordinates": [[[0, 0], [1, 1]], [[2, 2]]]}, "coordinates[1]: a LineString"),
    ({"type": "Polygon", "coordinates": []}, "at least 1"),
    ({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]}, "coordinates[0]: a linear ring"),
    ({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}, "must be closed"),
    ({"type": "Polygon", "coordinates": [[0, 0], [1, 0], [1, 1], [0, 0]]}, "one nesting level is missing"),
    ({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]], [[0, 0], [1, 1]]]},
     "coordinates[1]: a linear ring"),
    ({"type": "MultiPolygon", "coordinates": [[[[0, 0], [1, 0], [1, 1], [0, 0]]], [[[0, 0], [1, 0], [1, 1]]]]},
     "coordinates[1][0]: a linear ring"),
    ({"type": "MultiPolygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}, "coordinates[0][0]"),
])
def test_invalid_geometries(value: object, fragment: str) -> None:
    with pytest.raises(errors.BadRequestData) as info:
        validate_geometry(value)
    assert fragment in info.value.detail
    assert info.value.to_problem()["status"] == 400


# ------------------------------------------------------------------------------------------ bbox

@pytest.mark.parametrize("value, box", [
    (point(2.17, 41.38), (2.17, 41.38, 2.17, 41.38)),
    ({"type": "Point", "coordinates": [1, 2, 300]}, (1.0, 2.0, 1.0, 2.0)),
    ({"type": "LineString", "coordinates": [[3, -1], [-2, 4, 7]]}, (-2.0, -1.0, 3.0, 4.0)),
    ({"type": "MultiPoint", "coordinates": [[5, 5], [-5, 1]]}, (-5.0, 1.0, 5.0, 5.0)),
    ({"type": "MultiLineString", "coordinates": [[[0, 0], [1, 1]], [[9, -9], [2, 2]]]}, (0.0, -9.0, 9.0, 2.0)),
    ({"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 0]], [[1, 1], [2, 1], [2, 2], [1, 1]]]},
     (0.0, 0.0, 10.0, 10.0)),
    ({"type": "MultiPolygon", "coordinates": [square(0, 0, 1, 1)["coordinates"], square(5, -3, 6, 2)["coordinates"]]},
     (0.0, -3.0, 6.0, 2.0)),
])
def test_bbox(value: dict, box: tuple) -> None:
    assert bbox(value) == box
    assert bbox(value) == validate_geometry(value).bounds


@pytest.mark.parametrize("value", [{}, {"type": "Point"}, {"type": "Point", "coordinates": [1]},
                                   {"type": "Circle", "coordinates": [1, 2]},
                                   {"type": "MultiPoint", "coordinates": []}, {"type": "Polygon", "coordinates": 5}])
def test_bbox_of_malformed_geometry_raises_value_error(value: dict) -> None:
    # the store catches ValueError and skips indexing such a value
    with pytest.raises(ValueError):
        bbox(value)


# ------------------------------------------------------------------------------------------ georels

# a 0.04° square in the Eixample, Barcelona; one point inside it, one east of it
BCN_SQUARE = square(2.15, 41.37, 2.19, 41.41)
INSIDE, OUTSIDE = point(2.17, 41.39), point(2.20, 41.39)
BCN_SQUARE_COORDS = BCN_SQUARE["coordinates"]


def test_within() -> None:
    q = query("within", "Polygon", BCN_SQUARE_COORDS)
    assert q.matches(entity(INSIDE))
    assert not q.matches(entity(OUTSIDE))
    assert q.matches(entity(square(2.16, 41.38, 2.18, 41.40)))                   # nested polygon
    assert not q.matches(entity(square(2.16, 41.38, 2.25, 41.40)))               # sticks out
    assert not q.matches(entity(point(2.15, 41.39)))                             # on the boundary only
    assert q.matches(entity({"type": "LineString", "coordinates": [[2.16, 41.38], [2.18, 41.40]]}))


def test_within_polygon_hole_excludes_point() -> None:  # ETSI 019_30_06
    holed = [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]], [[4, 4], [6, 4], [6, 6], [4, 6], [4, 4]]]
    q = query("within", "Polygon", holed)
    assert not q.matches(entity(point(5, 5)))
    assert q.matches(entity(point(2, 2)))


def test_contains() -> None:
    assert query("contains", "Point", [2.17, 41.39]).matches(entity(BCN_SQUARE))
    assert not query("contains", "Point", [2.20, 41.39]).matches(entity(BCN_SQUARE))
    assert query("contains", "Polygon", square(2.16, 41.38, 2.18, 41.40)["coordinates"]).matches(entity(BCN_SQUARE))
    # contains is entity ⊇ query, not the other way round
    assert not query("contains", "Polygon", BCN_SQUARE_COORDS).matches(entity(INSIDE))
    assert query("contains", "Point", [2.17, 41.39]).matches(entity(INSIDE))      # a point contains itself


def test_intersects_and_disjoint() -> None:
    crossing = [[2.10, 41.39], [2.25, 41.39]]
    assert query("intersects", "LineString", crossing).matches(entity(BCN_SQUARE))
    assert not query("disjoint", "LineString", crossing).matches(entity(BCN_SQUARE))
    assert query("intersects", "Polygon", BCN_SQUARE_COORDS).matches(entity(INSIDE))
    assert not query("intersects", "Polygon", BCN_SQUARE_COORDS).matches(entity(OUTSIDE))
    assert query("intersects", "Polygon", BCN_SQUARE_COORDS).matches(entity(point(2.19, 41.40)))  # boundary
    assert query("disjoint", "Polygon", BCN_SQUARE_COORDS).matches(entity(OUTSIDE))
    assert not query("disjoint", "Polygon", BCN_SQUARE_COORDS).matches(entity(INSIDE))
    far = square(10, 10, 11, 11)                                              # bbox-disjoint shortcut
    assert query("disjoint", "Polygon", BCN_SQUARE_COORDS).matches(entity(far))
    touching = square(2.19, 41.37, 2.25, 41.41)                               # shares an edge
    assert not query("disjoint", "Polygon", BCN_SQUARE_COORDS).matches(entity(touching))


def test_equals() -> None:
    rotated = [[[2.19, 41.37], [2.19, 41.41], [2.15, 41.41], [2.15, 41.37], [2.19, 41.37]]]  # other start, cw
    assert query("equals", "Polygon", rotated).matches(entity(BCN_SQUARE))
    assert not query("equals", "Polygon", square(2.15, 41.37, 2.19, 41.42)["coordinates"]).matches(entity(BCN_SQUARE))
    assert query("equals", "Point", [2.17, 41.39]).matches(entity(INSIDE))
    assert not query("equals", "Point", [2.17, 41.391]).matches(entity(INSIDE))
    assert query("equals", "LineString", [[0, 0], [2, 2]]).matches(
        entity({"type": "LineString", "coordinates": [[0, 0], [1, 1], [2, 2]]}))


def test_overlaps() -> None:
    q = query("overlaps", "Polygon", BCN_SQUARE_COORDS)
    assert q.matches(entity(square(2.17, 41.39, 2.25, 41.45)))                 # partly inside
    assert not q.matches(entity(square(2.16, 41.38, 2.18, 41.40)))             # fully inside
    assert not q.matches(entity(square(3, 3, 4, 4)))                           # apart
    assert not q.matches(entity(INSIDE))                                       # different dimension


ETSI_019_10 = [entity(point(13.3986, 52.5547)), entity(point(13.509818, 52.363457)),
               entity(point(13.215983, 52.470441))]
ETSI_POLY = [[13.1616211, 52.5438124], [13.597641, 52.4840224], [13.5948944, 52.3402782],
             [13.142395, 52.386428], [13.1616211, 52.5438124]]


@pytest.mark.parametrize("georel, geometry, coordinates, expected", [
    ("equals", "Point", [13.3986, 52.5547], 1),
    ("near;maxDistance==15000", "Point", [13.388930, 52.534473], 2),
    ("near;minDistance==15000", "Point", [13.388930, 52.534473], 1),
    ("within", "Polygon", [ETSI_POLY], 2),
    ("disjoint", "Polygon", [ETSI_POLY], 1),
    ("disjoint", "Point", [13.3986, 52.5547], 2),
    ("contains", "Point", [13.3986, 52.5547], 1),
    ("intersects", "Point", [13.3986, 52.5547], 1),
])
def test_etsi_019_10_point_entities(georel: str, geometry: str, coordinates: list, expected: int) -> None:
    assert count(query(georel, geometry, coordinates), ETSI_019_10) == expected


ETSI_019_11 = [
    entity({"type": "Polygon", "coordinates": [[[13.2865906, 52.5648645], [13.2879639, 52.5648645],
                                                [13.2797241, 52.4988679], [13.477478, 52.4712703],
                                                [13.5049438, 52.5373084], [13.2865906, 52.5648645]]]}),
    entity({"type": "Polygon", "coordinates": [[[13.315773, 52.4757209], [13.339119, 52.4443421],
                                                [13.3892441, 52.4669371], [13.315773, 52.4757209]]]}),
]
_Q2 = [[[13.3456421, 52.4794848], [13.3641815, 52.4428773], [13.4177399, 52.4730023],
        [13.3459854, 52.479903], [13.3456421, 52.4794848]]]
_Q4 = [[[13.1369019, 52.5198225], [13.1365585, 52.5200314], [13.131752, 52.4980907],
        [13.1832504, 52.5026887], [13.1369019, 52.5198225]]]


@pytest.mark.parametrize("georel, geometry, coordinates, expected", [
    ("equals", "Polygon", ETSI_019_11[0]["attrs"][LOCATION][0]["value"]["coordinates"], 1),
    ("intersects", "Polygon", _Q2, 1),
    ("contains", "Polygon", [[[13.3844376, 52.5356966], [13.3844376, 52.5356966], [13.381691, 52.5123012],
                              [13.4235764, 52.5100027], [13.4331894, 52.5273425], [13.3844376, 52.5356966]]], 1),
    ("contains", "Polygon", _Q4, 0),
    ("disjoint", "Polygon", _Q4, 2),
    ("within", "Polygon", [[[13.3023834, 52.4903066], [13.3027267, 52.4905156], [13.2745743, 52.465632],
                            [13.3343124, 52.4185447], [13.4311295, 52.47107], [13.3023834, 52.4903066]]], 1),
    ("overlaps", "Polygon", _Q2, 1),
    ("contains", "Point", [13.3442688, 52.4650045], 1),
])
def test_etsi_019_11_polygon_entities(georel: str, geometry: str, coordinates: list, expected: int) -> None:
    assert count(query(georel, geometry, coordinates), ETSI_019_11) == expected


# ------------------------------------------------------------------------------------------ near

def test_near_two_points_in_barcelona() -> None:
    # 0.01° of longitude at 41.38°N: ~836.7 m along the parallel (the geodesic is ~0.2 m shorter)
    expected = deg_lon_m(41.38) * 0.01
    assert 836 < expected < 837.5
    a, b = entity(point(2.18, 41.38)), [2.17, 41.38]
    assert query("near;maxDistance==837", "Point", b).matches(a)
    assert not query("near;maxDistance==836", "Point", b).matches(a)
    assert query("near;minDistance==836", "Point", b).matches(a)
    assert not query("near;minDistance==837", "Point", b).matches(a)


@pytest.mark.parametrize("lat", [0.0, 60.0])
def test_near_east_and_north_at_equator_and_60n(lat: float) -> None:
    east = deg_lon_m(lat) * 0.01        # equator: 1113.2 m; 60°N: 558.0 m
    north = deg_lat_m(lat + 0.005) * 0.01  # equator: 1105.7 m; 60°N: 1114.1 m
    for target, metres in ((point(10.01, lat), east), (point(10.0, lat + 0.01), north)):
        e = entity(target)
        assert query(f"near;maxDistance=={metres + 1:.3f}", "Point", [10.0, lat]).matches(e)
        assert not query(f"near;maxDistance=={metres - 1:.3f}", "Point", [10.0, lat]).matches(e)
        assert query(f"near;minDistance=={metres - 1:.3f}", "Point", [10.0, lat]).matches(e)
        assert not query(f"near;minDistance=={metres + 1:.3f}", "Point", [10.0, lat]).matches(e)


def test_near_60n_longitude_degrees_are_half_as_long() -> None:
    # 0.01° east at 60°N is ~558 m: a naive degree-to-metre conversion at the equator gives 1113 m
    e = entity(point(10.01, 60.0))
    assert query("near;maxDistance==600", "Point", [10.0, 60.0]).matches(e)
    assert not query("near;maxDistance==600", "Point", [10.0, 0.0]).matches(entity(point(10.01, 0.0)))


def test_near_point_to_polygon_measures_to_the_nearest_edge() -> None:
    # the square's west edge is the meridian 0.01°E; from [0, 0] that is 1113.2 m away
    sq = entity(square(0.01, -0.01, 0.03, 0.01))
    assert query("near;maxDistance==1114", "Point", [0, 0]).matches(sq)
    assert not query("near;maxDistance==1112", "Point", [0, 0]).matches(sq)
    inside = query("near;maxDistance==1", "Point", [0.02, 0.0])              # inside: distance 0
    assert inside.matches(sq)
    assert not query("near;minDistance==1", "Point", [0.02, 0.0]).matches(sq)


def test_near_extended_reference_uses_the_closest_point() -> None:  # ETSI 019_30_09/10
    probe = entity(point(10.0, 60.009))    # ~1 km north of the line's east end, ~557 km from [0, 60]
    assert query("near;maxDistance==2000", "LineString", [[0, 60], [10, 60]]).matches(probe)
    assert not query("near;maxDistance==2000", "LineString", [[0, 61], [10, 61]]).matches(probe)
    # north of the middle of the line: 0.1° of latitude ~ 11.14 km
    mid = entity(point(5.0, 60.1))
    assert query("near;maxDistance==11200", "LineString", [[0, 60], [10, 60]]).matches(mid)
    assert not query("near;maxDistance==11100", "LineString", [[0, 60], [10, 60]]).matches(mid)
    assert query("near;minDistance==11100", "LineString", [[0, 60], [10, 60]]).matches(mid)


def test_near_polygon_reference_and_polygon_entity() -> None:
    ref = square(0, 0, 0.01, 0.01)["coordinates"]
    near_sq = entity(square(0.02, 0, 0.03, 0.01))    # gap of 0.01° of longitude at the equator: 1113.2 m
    assert query("near;maxDistance==1114", "Polygon", ref).matches(near_sq)
    assert not query("near;maxDistance==1112", "Polygon", ref).matches(near_sq)
    assert query("near;maxDistance==1", "Polygon", ref).matches(entity(point(0.005, 0.005)))


def test_near_high_latitude_picks_the_metric_closest_point() -> None:  # ETSI 019_30_11/12
    line = entity({"type": "LineString", "coordinates": [[0.0, 85.6], [1.0, 85.0]]})
    assert query("near;maxDistance==20000", "Point", [0, 85]).matches(line)
    assert not query("near;maxDistance==5000", "Point", [0, 85]).matches(line)
    assert query("near;maxDistance==9700", "Point", [0, 85]).matches(line)      # ~9.6 km
    assert not query("near;maxDistance==9500", "Point", [0, 85]).matches(line)


def test_near_across_the_antimeridian() -> None:
    e = entity(point(-179.995, 0))
    q = query("near;maxDistance==1200", "Point", [179.995, 0])                  # 0.01° apart: 1113 m
    assert q.matches(e)
    box = q.search_bbox()
    assert box is not None and box[0] <= -179.995 and box[2] >= 179.995


# ------------------------------------------------------------------------------------------ entity handling

def test_entity_without_geoproperty_never_matches() -> None:
    bare = {"id": "urn:x", "type": [VOCAB + "T"], "attrs": {}}
    other = entity(point(50, 50), prop=OBSERVATION_SPACE)
    for georel, geometry, coords in [("disjoint", "Point", [0, 0]), ("near;minDistance==1", "Point", [0, 0]),
                                     ("within", "Polygon", [[[-180, -90], [180, -90], [180, 90], [-180, 90],
                                                             [-180, -90]]])]:
        q = query(georel, geometry, coords)
        assert not q.matches(bare)
        assert not q.matches(other)
        assert not q.matches({"id": "urn:y"})


def test_non_geoproperty_instance_does_not_match() -> None:
    e = {"id": "urn:x", "attrs": {LOCATION: [{"type": "Property", "value": point(0, 0)}]}}
    assert not query("intersects", "Point", [0, 0]).matches(e)


def test_any_instance_matches() -> None:
    e = entity(point(50, 50), point(2.17, 41.39))
    e["attrs"][LOCATION][1]["datasetId"] = "urn:ds:gps"
    assert query("within", "Polygon", BCN_SQUARE_COORDS).matches(e)
    assert query("near;maxDistance==10", "Point", [50, 50]).matches(e)


def test_geoproperty_selects_the_target_geometry() -> None:  # ETSI 019_30_07/08
    hole_probe = entity(point(5, 5))
    hole_probe["attrs"][OBSERVATION_SPACE] = [{"type": "GeoProperty", "value": point(8, 40)}]
    others = [hole_probe, entity(point(2, 2))]
    assert count(query("near;maxDistance==2000", "Point", [8, 40], "observationSpace"), others) == 1
    assert count(query("near;maxDistance==2000", "Point", [8, 40]), others) == 0


def test_three_dimensional_entity_geometry() -> None:
    e = entity({"type": "LineString", "coordinates": [[2.16, 41.38, 10], [2.18, 41.40, 20]]})
    assert query("within", "Polygon", BCN_SQUARE_COORDS).matches(e)
    assert query("near;maxDistance==10", "Point", [2.17, 41.39]).matches(e)


# ------------------------------------------------------------------------------------------ search_bbox

def test_search_bbox_per_georel() -> None:
    for georel in ("within", "intersects", "overlaps", "equals", "contains"):
        assert query(georel, "Polygon", BCN_SQUARE_COORDS).search_bbox() == (2.15, 41.37, 2.19, 41.41)
    assert query("disjoint", "Polygon", BCN_SQUARE_COORDS).search_bbox() is None
    assert query("near;minDistance==10", "Point", [0, 0]).search_bbox() is None


def test_search_bbox_near_is_wider_in_longitude_at_60n() -> None:
    equator = query("near;maxDistance==10000", "Point", [10, 0]).search_bbox()
    north = query("near;maxDistance==10000", "Point", [10, 60]).search_bbox()
    assert equator is not None and north is not None
    half_lon_eq, half_lon_60 = (equator[2] - equator[0]) / 2, (north[2] - north[0]) / 2
    assert 10000 / deg_lon_m(0) <= half_lon_eq < 1.02 * 10000 / deg_lon_m(0)
    assert 10000 / deg_lon_m(60) <= half_lon_60 < 1.02 * 10000 / deg_lon_m(60)
    assert (north[3] - north[1]) / 2 >= 10000 / deg_lat_m(60)


def test_search_bbox_near_pole_spans_all_longitudes() -> None:
    box = query("near;maxDistance==50000", "Point", [10, 89.9]).search_bbox()
    assert box == (-180.0, pytest.approx(89.9 - 50000 / deg_lat_m(89.9), abs=0.01), 180.0, 90.0)
    assert query("near;maxDistance==50000", "Point", [10, 89.9]).matches(entity(point(-170, 89.9)))


def test_search_bbox_is_conservative_for_distance_just_matched() -> None:
    for lon, lat in ((2.17, 41.38), (0, 0), (25, 60), (-70, -55), (100, 80)):
        for az in range(0, 360, 15):
            elon, elat, _ = GEOD.fwd(lon, lat, az, 5000)
            q = query("near;maxDistance==5000.5", "Point", [lon, lat])
            e = entity(point(elon, elat))
            assert q.matches(e)
            box = q.search_bbox()
            assert box is not None and box[0] <= elon <= box[2] and box[1] <= elat <= box[3]


@settings(max_examples=300, deadline=None)
@given(lon=st.floats(-180, 180), lat=st.floats(-89.5, 89.5), az=st.floats(0, 360),
       distance=st.floats(1, 3_000_000), fraction=st.floats(0, 1.2))
def test_search_bbox_never_excludes_a_match(lon: float, lat: float, az: float, distance: float,
                                            fraction: float) -> None:
    elon, elat, _ = GEOD.fwd(lon, lat, az, distance * fraction)
    q = query(f"near;maxDistance=={distance!r}", "Point", [lon, lat])
    e = entity(point(elon, elat))
    if fraction <= 0.999:
        assert q.matches(e)
    if q.matches(e):
        box = q.search_bbox()
        assert box is not None
        ebox = bbox(point(elon, elat))
        assert box[0] <= ebox[2] and ebox[0] <= box[2] and box[1] <= ebox[3] and ebox[1] <= box[3]


@settings(max_examples=150, deadline=None)
@given(lon=st.floats(-170, 170), lat=st.floats(-80, 80), dlon=st.floats(-5, 5), dlat=st.floats(-5, 5),
       elon=st.floats(-180, 180), elat=st.floats(-90, 90), distance=st.floats(1, 2_000_000))
def test_search_bbox_never_excludes_a_match_line_reference(lon: float, lat: float, dlon: float, dlat: float,
                                                           elon: float, elat: float, distance: float) -> None:
    ref = [[lon, lat], [min(180.0, max(-180.0, lon + dlon)), min(90.0, max(-90.0, lat + dlat))]]
    q = query(f"near;maxDistance=={distance!r}", "LineString", ref)
    # entity: a random point, or one pulled close to the line's end so that it often matches
    for ex, ey in ((elon, elat), (ref[1][0] + (elon / 1800), ref[1][1] + (elat / 1800))):
        ey = min(90.0, max(-90.0, ey))
        if q.matches(entity(point(ex, ey))):
            box = q.search_bbox()
            assert box is not None and box[0] <= ex <= box[2] and box[1] <= ey <= box[3]


# ------------------------------------------------------------------------------------------ parsing

def test_no_geo_parameters_gives_none() -> None:
    assert parse_geo_query(None, None, None, None, expand) is None
    assert parse_geo_query("", "", "", "", expand) is None


def test_parse_defaults_and_expansion() -> None:
    q = query("near;maxDistance==1000", "Point", "[8.0,40.0]")
    assert (q.georel, q.max_distance, q.min_distance, q.geoproperty) == ("near", 1000.0, None, LOCATION)
    assert q.geometry.equals(shapely.Point(8, 40))
    q = query("near;minDistance==50.5", "Point", "[8,40]", "observationSpace")
    assert (q.min_distance, q.max_distance, q.geoproperty) == (50.5, None, OBSERVATION_SPACE)
    assert query("within", "Polygon", BCN_SQUARE_COORDS, "myPlace").geoproperty == VOCAB + "myPlace"
    assert query("near;maxDistance==1e3", "Point", "[8,40]").max_distance == 1000.0
    assert query("equals", "Point", " [ 8 , 40 ] ").georel == "equals"


@pytest.mark.parametrize("georel, geometry, coordinates, geoproperty, fragment", [
    ("within", None, None, None, "geometry, coordinates missing"),           # ETSI 037_03_03
    (None, "Point", "[8,40]", None, "georel missing"),
    ("within", "Point", None, None, "coordinates missing"),
    (None, None, None, "location", "georel, geometry, coordinates missing"),
    ("invalid", "Point", "[-8.503,41.202]", "location", "unknown relationship"),   # ETSI 019_03_04
    ("touches", "Point", "[8,40]", None, "unknown relationship 'touches'"),       # ETSI 019_30_05
    ("near", "Point", "[8,40]", None, "exactly one distance modifier"),           # ETSI 019_30_04
    ("near;maxDistance==5;minDistance==1", "Point", "[8,40]", None, "exactly one"),  # ETSI 019_30_03
    ("near;maxDistance==0", "Point", "[8,40]", None, "positive number"),          # ETSI 019_30_01
    ("near;maxDistance==0.0", "Point", "[8,40]", None, "positive number"),
    ("near;maxDistance==-100", "Point", "[8,40]", None, "positive number"),       # ETSI 019_30_02
    ("near;maxDistance==inf", "Point", "[8,40]", None, "positive number"),        # ETSI 019_30_13
    ("near;maxDistance==1e400", "Point", "[8,40]", None, "positive number"),      # ETSI 019_30_14
    ("near;maxDistance==NaN", "Point", "[8,40]", None, "positive number"),
    ("near;maxDistance==1,000", "Point", "[8,40]", None, "positive number"),
    ("near;maxDistance==", "Point", "[8,40]", None, "positive number"),
    ("near;maxDistance=1000", "Point", "[8,40]", None, "maxDistance==<metres>"),
    ("near;maxDistance:1000", "Point", "[8,40]", None, "maxDistance==<metres>"),
    ("near;distance==1000", "Point", "[8,40]", None, "maxDistance==<metres>"),
    ("within;maxDistance==5", "Polygon", json.dumps(BCN_SQUARE_COORDS), None, "takes no modifier"),
    ("Within", "Polygon", json.dumps(BCN_SQUARE_COORDS), None, "unknown relationship"),
    ("within", "GeometryCollection", "[]", None, "GeometryCollection is not supported"),
    ("within", "point", "[8,40]", None, "unsupported geometry type"),
    ("within", "Circle", "[8,40]", None, "unsupported geometry type"),
    ("equals", "Point", "[8.0,", None, "not a JSON array"),
    ("equals", "Point", "8,40", None, "not a JSON array"),                       # cf. ETSI 5243_01_03
    ("equals", "Point", "[NaN, 40]", None, "not a JSON array"),
    ("equals", "Point", '"[8,40]"', None, "a JSON array coherent with Point"),
    ("equals", "Point", "{\"x\": 8}", None, "a JSON array coherent with Point"),
    ("equals", "Point", "[[8,40]]", None, "one nesting level too many"),
    ("equals", "Point", "[8,40,1,2]", None, "2 or 3 numbers"),
    ("equals", "Point", "[200,40]", None, "longitude 200"),
    ("equals", "Point", "[8,1e400]", None, "finite"),
    ("equals", "LineString", "[8,40]", None, "one nesting level is missing"),
    ("within", "Polygon", "[[8,40],[9,40],[9,41],[8,40]]", None, "one nesting level is missing"),
    ("within", "Polygon", "[[[8,40],[9,40],[9,41],[8,41]]]", None, "must be closed"),
    ("within", "Polygon", "[[[8,40],[9,40],[8,40]]]", None, "at least 4"),
    ("within", "MultiPolygon", "[[[8,40],[9,40],[9,41],[8,40]]]", None, "coordinates[0][0]"),
])
def test_parse_errors(georel: str | None, geometry: str | None, coordinates: str | None,
                      geoproperty: str | None, fragment: str) -> None:
    with pytest.raises(errors.BadRequestData) as info:
        parse_geo_query(georel, geometry, coordinates, geoproperty, expand)
    assert fragment in info.value.detail
    assert info.value.to_problem()["type"] == errors.ERRORS_BASE + "BadRequestData"


def test_parse_geo_q_object() -> None:
    obj = {"georel": "near;maxDistance==2000", "geometry": "Point", "coordinates": [-8.52, 41.2],
           "geoproperty": "location"}
    q = parse_geo_q_object(obj, expand)
    assert (q.georel, q.max_distance, q.geoproperty) == ("near", 2000.0, LOCATION)
    assert q.geometry.equals(shapely.Point(-8.52, 41.2))
    del obj["geoproperty"]
    assert parse_geo_q_object(obj, expand).geoproperty == LOCATION
    q = parse_geo_q_object({"georel": "within", "geometry": "Polygon", "coordinates": json.dumps(BCN_SQUARE_COORDS),
                            "geoproperty": "observationSpace"}, expand)
    assert q.geoproperty == OBSERVATION_SPACE and q.matches(entity(INSIDE, prop=OBSERVATION_SPACE))


@pytest.mark.parametrize("obj, fragment", [
    ("near", "expected a JSON object"),
    ({"geometry": "Point", "coordinates": [1, 2]}, "georel missing"),
    ({"georel": "within", "coordinates": [1, 2]}, "geometry missing"),
    ({"georel": "within", "geometry": "Point"}, "coordinates missing"),
    ({"georel": 5, "geometry": "Point", "coordinates": [1, 2]}, "georel must be a string"),
    ({"georel": "within", "geometry": ["Point"], "coordinates": [1, 2]}, "geometry must be a string"),
    ({"georel": "within", "geometry": "Point", "coordinates": 5}, "a JSON array coherent with Point"),
    ({"georel": "within", "geometry": "Point", "coordinates": "8,40"}, "not a JSON array"),
    ({"georel": "within", "geometry": "Point", "coordinates": [1, 2], "geoproperty": 3}, "geoproperty must be"),
    ({"georel": "near", "geometry": "Point", "coordinates": [1, 2]}, "exactly one distance modifier"),
    ({"georel": "within", "geometry": "Polygon", "coordinates": [[1, 2]]}, "coordinates[0]"),
])
def test_parse_geo_q_object_errors(obj: object, fragment: str) -> None:
    with pytest.raises(errors.BadRequestData) as info:
        parse_geo_q_object(obj, expand)  # type: ignore[arg-type]
    assert fragment in info.value.detail


@pytest.mark.parametrize("kwargs", [
    {"georel": "near"},
    {"georel": "near", "max_distance": 10.0, "min_distance": 5.0},
    {"georel": "near", "max_distance": 0.0},
    {"georel": "near", "min_distance": math.inf},
    {"georel": "within", "max_distance": 10.0},
    {"georel": "touches"},
])
def test_geoquery_constructor_validates(kwargs: dict) -> None:
    with pytest.raises(errors.BadRequestData):
        GeoQuery(geometry=shapely.Point(0, 0), **kwargs)


def test_geoquery_is_a_value() -> None:
    a = query("near;maxDistance==10", "Point", [1, 2])
    b = GeoQuery("near", shapely.Point(1, 2), LOCATION, 10.0, None)
    assert a == b and hash(a) == hash(b)
    assert GeoQuery("within", shapely.Point(1, 2)).geoproperty == LOCATION
