"""The three demo cities: who they are, how big, how they behave.

Why three different profiles: a platform for comparing cities is only demonstrable when
the cities differ in ways a query can show — size, density, building heights, transit
modes, climate, pollution, tourism. The cities are fictional (no real city's data is
implied) but each number is in the range of real European cities of its kind.

Everything the generator and the simulator do is a function of a profile and its seed,
so the same profile always yields the same city.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TransitMode:
    route_type: str        # GTFS route_type ("0" tram, "1" metro, "3" bus)
    routes: int
    stops_per_route: int
    spacing_m: float       # mean distance between stops
    color: str


@dataclass(frozen=True)
class CityProfile:
    key: str               # the tenant name
    name: str
    country: str           # ISO 3166-1 alpha-2
    lon: float
    lat: float
    radius_km: float       # of the built-up disc
    population: int
    districts: int
    utc_offset: int        # hours (standard time), for daily cycles
    seed: int
    # built form
    buildings: int
    floors_mean: float     # mean floors above ground
    floors_max: int
    # transit
    transit: tuple[TransitMode, ...]
    trips_per_direction: int = 3
    # devices and places: entity type -> how many
    counts: dict[str, int] = field(default_factory=dict)
    # climate and environment
    temp_mean: float = 15.0      # °C, annual mean
    temp_season: float = 8.0     # half the summer-winter difference
    temp_daily: float = 4.0      # half the day-night difference
    humidity: float = 65.0       # % mean
    wind: float = 3.5            # m/s mean
    no2_background: float = 20.0  # µg/m³
    traffic_scale: float = 1.0   # vehicles/h multiplier
    tourism: float = 0.5         # 0..1: weight of museums/POIs


PORTAMAR = CityProfile(
    key="portamar", name="Portamar", country="ES", lon=2.10, lat=41.30, radius_km=6.5, population=1_580_000,
    districts=10, utc_offset=1, seed=101, buildings=1500, floors_mean=6.5, floors_max=30,
    transit=(TransitMode("1", 6, 18, 800, "C8102E"), TransitMode("0", 4, 16, 500, "009B77"),
             TransitMode("3", 10, 14, 350, "E4002B")),
    counts={"AirQualityObserved": 24, "NoiseLevelObserved": 20, "WeatherObserved": 4, "TrafficFlowObserved": 40,
            "OffStreetParking": 30, "EVChargingStation": 40, "Streetlight": 600, "WasteContainer": 400,
            "BikeHireDockingStation": 60, "Museum": 22, "PointOfInterest": 120},
    temp_mean=17.5, temp_season=7.5, temp_daily=4.0, humidity=68, wind=3.0, no2_background=28, traffic_scale=1.4,
    tourism=0.8,
)

LINDMARK = CityProfile(
    key="lindmark", name="Lindmark", country="DK", lon=10.40, lat=56.20, radius_km=4.5, population=340_000,
    districts=8, utc_offset=1, seed=202, buildings=700, floors_mean=4.0, floors_max=16,
    transit=(TransitMode("0", 3, 14, 600, "0072CE"), TransitMode("3", 9, 12, 400, "FFB81C")),
    counts={"AirQualityObserved": 12, "NoiseLevelObserved": 10, "WeatherObserved": 3, "TrafficFlowObserved": 20,
            "OffStreetParking": 15, "EVChargingStation": 35, "Streetlight": 320, "WasteContainer": 200,
            "BikeHireDockingStation": 45, "Museum": 9, "PointOfInterest": 60},
    temp_mean=8.5, temp_season=8.0, temp_daily=3.0, humidity=80, wind=5.5, no2_background=14, traffic_scale=0.8,
    tourism=0.4,
)

VALDORIA = CityProfile(
    key="valdoria", name="Valdoria", country="IT", lon=11.25, lat=43.45, radius_km=1.8, population=42_000,
    districts=5, utc_offset=1, seed=303, buildings=300, floors_mean=2.8, floors_max=6,
    transit=(TransitMode("3", 4, 10, 300, "7A3E9D"),),
    counts={"AirQualityObserved": 4, "NoiseLevelObserved": 4, "WeatherObserved": 1, "TrafficFlowObserved": 6,
            "OffStreetParking": 5, "EVChargingStation": 6, "Streetlight": 140, "WasteContainer": 80,
            "BikeHireDockingStation": 8, "Museum": 12, "PointOfInterest": 55},
    temp_mean=14.5, temp_season=9.0, temp_daily=6.0, humidity=70, wind=2.5, no2_background=10, traffic_scale=0.35,
    tourism=1.0,
)

CITIES: dict[str, CityProfile] = {c.key: c for c in (PORTAMAR, LINDMARK, VALDORIA)}


def small(profile: CityProfile, factor: float = 0.1) -> CityProfile:
    """A scaled-down copy (same seed and character) for fast tests."""
    def n(x: int) -> int:
        return max(1, round(x * factor))
    return dataclasses.replace(
        profile, buildings=n(profile.buildings), districts=max(3, n(profile.districts)),
        transit=tuple(dataclasses.replace(m, routes=n(m.routes), stops_per_route=max(3, n(m.stops_per_route)))
                      for m in profile.transit[:1]),
        counts={k: n(v) for k, v in profile.counts.items()})
