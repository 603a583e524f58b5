"""The twin's layers: which entity types make which map layer, and how each is drawn and explained.

Declared as data, once, so the server (which types to query, which attribute is the layer's
value), the page (the layer toggles, the legend with units) and the tests read the same list.
Type and attribute names are the Smart Data Models terms; they are expanded with the SDM subject
term maps the broker hosts (``urbanmim.ingest.demo.sdm``), so a city that loads its own SDM data
with the official @contexts gets the same layers. A city with other types simply has empty layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from urbanmim.ingest.demo import sdm


@dataclass(frozen=True)
class Layer:
    id: str
    types: tuple[str, ...]          # SDM short type names
    kind: str                       # fill | extrusion | line | circle (the MapLibre layer type it becomes)
    group: str                      # city | transit | sensors | places (legend sections)
    attr: str | None = None         # the attribute the layer shows (colour ramp, tooltip, history chart)
    unit: str | None = None         # catalogue key of its unit (units differ in writing by language)
    stops: tuple[float, ...] = ()   # colour-ramp thresholds of ``attr`` (legend classes)
    colors: tuple[str, ...] = ()    # one more colour than stops
    color: str = "#4a6fa5"          # when no ramp
    live: bool = False              # sensors: updated live and replayed by the time slider
    visible: bool = True            # on at first load
    extra: tuple[str, ...] = field(default=())   # further attributes charted in the feature panel

    def type_iris(self) -> list[str]:
        return [sdm.for_type(t).expand(t) for t in self.types]

    def attr_iri(self, name: str | None = None) -> str | None:
        name = name or self.attr
        if name is None:
            return None
        return sdm.for_type(self.types[0]).expand(name)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "types": list(self.types), "kind": self.kind, "group": self.group,
                "attr": self.attr, "unit": self.unit, "stops": list(self.stops), "colors": list(self.colors),
                "color": self.color, "live": self.live, "visible": self.visible, "extra": list(self.extra)}


# Colour ramps: sequential, each class distinguishable (and the legend also prints the numbers).
_GREEN_RED = ("#1a9850", "#91cf60", "#fee08b", "#fc8d59", "#d73027")
_BLUES = ("#c6dbef", "#6baed6", "#2171b5", "#08306b")
_HEIGHTS = ("#d9d3c7", "#bfb5a3", "#a39580", "#85765f", "#665843")

LAYERS: tuple[Layer, ...] = (
    Layer("districts", ("District",), "fill", "city", "population", "unit.inhabitants", color="#7b8fa8"),
    Layer("buildings", ("Building",), "extrusion", "city", "height", "unit.m", (10, 20, 30, 45), _HEIGHTS,
          extra=("floorsAboveGround",)),
    Layer("transit", ("GtfsShape",), "line", "transit", color="#8e3b9c"),
    Layer("stops", ("GtfsStop",), "circle", "transit", color="#5b2a86"),
    Layer("air", ("AirQualityObserved",), "circle", "sensors", "no2", "unit.ugm3", (20, 40, 60, 90), _GREEN_RED,
          live=True, extra=("pm10", "pm25", "o3")),
    Layer("noise", ("NoiseLevelObserved",), "circle", "sensors", "LAeq", "unit.dba", (50, 55, 65, 70), _GREEN_RED,
          live=True, extra=("LAmax",)),
    Layer("traffic", ("TrafficFlowObserved",), "circle", "sensors", "intensity", "unit.veh15", (50, 150, 300, 500),
          _GREEN_RED, live=True, extra=("averageVehicleSpeed", "occupancy")),
    Layer("weather", ("WeatherObserved",), "circle", "sensors", "temperature", "unit.celsius", (0, 10, 20, 30),
          ("#2166ac", "#67a9cf", "#fddbc7", "#ef8a62", "#b2182b"), live=True,
          extra=("relativeHumidity", "windSpeed")),
    Layer("parking", ("OffStreetParking",), "circle", "sensors", "availableSpotNumber", "unit.spaces",
          (10, 50, 150), _BLUES, live=True, extra=("occupancy",)),
    Layer("ev", ("EVChargingStation",), "circle", "sensors", "availableCapacity", "unit.chargers", (1, 2, 4),
          _BLUES, live=True),
    Layer("bikes", ("BikeHireDockingStation",), "circle", "sensors", "availableBikeNumber", "unit.bikes",
          (2, 5, 10), _BLUES, live=True, extra=("freeSlotNumber",)),
    Layer("poi", ("PointOfInterest", "Museum"), "circle", "places", color="#b35806", visible=False),
)

BY_ID: dict[str, Layer] = {layer.id: layer for layer in LAYERS}


def layer_of_types(type_iris: list[str]) -> Layer | None:
    """The layer an entity of these (expanded) types belongs to, if any."""
    for layer in LAYERS:
        if any(t in type_iris for t in layer.type_iris()):
            return layer
    return None
