"""City profile + seed → NGSI-LD entities (normalized, Smart Data Models names) and live devices.

Why generated rather than shipped: three plausible cities of ~9,000 entities would be
megabytes of fixtures; a seeded generator is a few hundred lines, always consistent with
the current models, and lets tests build a small city in milliseconds. The only inputs
are the profile (``cities.py``) and a reference time for the first sensor values;
``random.Random(profile.seed)`` drives every choice, so the same profile and time give
the same entities, byte for byte.

Geometry is simple on purpose: a central district and a ring of sectors around it
(non-overlapping polygons), buildings as small rotated rectangles denser and taller
towards the centre, transit lines as gently curving polylines through the city.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from urbanmim.ingest.demo.cities import CityProfile
from urbanmim.ingest.demo.simulator import Device, normalized, observe
from urbanmim.ingest.importers import gtfs

REFERENCE_TIME = 1768467600.0   # 2026-01-15T09:00:00Z: the default instant of the first values

STREETS = {
    "ES": ["Carrer Major", "Avinguda del Mar", "Carrer de la Sal", "Passeig de les Palmeres", "Carrer del Port",
           "Rambla Nova", "Carrer de les Flors", "Avinguda Diagonal", "Carrer del Sol", "Plaça de la Vila"],
    "DK": ["Storegade", "Havnevej", "Skovvej", "Kirkegade", "Møllevej", "Strandvejen", "Nørregade", "Vestergade",
           "Banegårdsgade", "Åboulevarden"],
    "IT": ["Via Roma", "Via del Duomo", "Borgo San Lorenzo", "Via delle Mura", "Piazza del Campo", "Via Garibaldi",
           "Vicolo dei Fabbri", "Via della Torre", "Via San Martino", "Via dei Mercanti"],
}
DISTRICTS = {
    "ES": ["Ciutat Vella", "Eixample", "La Marina", "Sant Pere", "Les Corts", "Gràcia", "Horta", "Sant Andreu",
           "Poblenou", "Montjuïc", "Sarrià", "El Carmel"],
    "DK": ["Midtby", "Havnen", "Nordby", "Søndermark", "Vesterbro", "Østerby", "Skovbakken", "Engen", "Åbyen"],
    "IT": ["Centro Storico", "San Frediano", "Borgo Nuovo", "Porta Vecchia", "Colle Alto", "La Pieve"],
}
MUSEUM_KINDS = [("fineArts", "Art"), ("history", "History"), ("archaeology", "Archaeology"),
                ("scienceAndTechnology", "Science"), ("maritime", "Maritime"), ("decorativeArts", "Design")]
POI_KINDS = ["park", "library", "school", "pharmacy", "viewpoint", "market", "theatre", "sportsCentre",
             "restaurant", "hotel"]
BUILDING_KINDS = [("apartments", 0.45), ("residential", 0.2), ("commercial", 0.1), ("office", 0.1), ("retail", 0.07),
                  ("school", 0.03), ("church", 0.02), ("hotel", 0.03)]


def P(value: Any, unit: str | None = None) -> dict[str, Any]:   # noqa: N802 (reads like the spec)
    out: dict[str, Any] = {"type": "Property", "value": value}
    if unit:
        out["unitCode"] = unit
    return out


def G(geom: dict[str, Any]) -> dict[str, Any]:   # noqa: N802
    return {"type": "GeoProperty", "value": geom}


def R(target: str) -> dict[str, Any]:   # noqa: N802
    return {"type": "Relationship", "object": target}


@dataclass
class City:
    profile: CityProfile
    entities: list[dict[str, Any]] = field(default_factory=list)
    devices: list[Device] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for e in self.entities:
            out[e["type"]] = out.get(e["type"], 0) + 1
        return out


class _Geo:
    """Kilometres around the city centre ↔ lon/lat (equirectangular: fine at city scale)."""

    def __init__(self, c: CityProfile):
        self.c = c
        self.kx = 111.32 * math.cos(math.radians(c.lat))

    def pt(self, x_km: float, y_km: float) -> list[float]:
        return [round(self.c.lon + x_km / self.kx, 6), round(self.c.lat + y_km / 111.32, 6)]


class Generator:
    def __init__(self, profile: CityProfile, at: float = REFERENCE_TIME):
        self.c = profile
        self.at = at
        self.rng = random.Random(profile.seed)
        self.geo = _Geo(profile)
        self.city = City(profile)
        self.n = 0

    # ---- helpers -----------------------------------------------------------------------------
    def eid(self, kind: str, i: int | str) -> str:
        return f"urn:ngsi-ld:{kind}:{self.c.key}:{i}"

    def polar(self, bias: float = 1.0) -> tuple[float, float, float]:
        """A random point in the city disc; ``bias`` > 1 pulls it towards the centre. Returns (x, y, r/R)."""
        rr = self.rng.random() ** (0.5 * bias)
        a = self.rng.uniform(0, 2 * math.pi)
        r = rr * self.c.radius_km
        return r * math.cos(a), r * math.sin(a), rr

    def address(self) -> dict[str, Any]:
        street = self.rng.choice(STREETS[self.c.country])
        return {"streetAddress": f"{street} {self.rng.randint(1, 180)}", "addressLocality": self.c.name,
                "addressCountry": self.c.country, "postalCode": f"{self.rng.randint(100, 999)}{self.c.seed % 100:02d}"}

    def add(self, payload: dict[str, Any], device_params: dict[str, Any] | None = None) -> None:
        self.city.entities.append(payload)
        if device_params is not None:
            d = Device(payload["id"], payload["type"], self.c.seed * 100_000 + len(self.city.entities), device_params)
            self.city.devices.append(d)
            payload.update(normalized(observe(self.c, d, self.at), self.at))

    def point(self, bias: float = 1.0) -> tuple[dict[str, Any], float]:
        x, y, rr = self.polar(bias)
        return G({"type": "Point", "coordinates": self.geo.pt(x, y)}), rr

    # ---- the city ----------------------------------------------------------------------------
    def districts(self) -> None:
        c, n = self.c, self.c.districts
        r0 = c.radius_km * 0.35
        ring = [self.geo.pt(r0 * math.cos(2 * math.pi * k / 24), r0 * math.sin(2 * math.pi * k / 24))
                for k in range(24)]
        shapes: list[tuple[list[list[float]], float]] = [(ring + [ring[0]], math.pi * r0 * r0 * 2.2)]
        cuts = sorted(2 * math.pi * (k + self.rng.uniform(-0.25, 0.25)) / (n - 1) for k in range(n - 1))
        for k in range(n - 1):
            a0, a1 = cuts[k], cuts[(k + 1) % (n - 1)] + (2 * math.pi if k == n - 2 else 0)
            steps = max(3, int((a1 - a0) / (2 * math.pi / 24)) + 1)
            arc = [a0 + (a1 - a0) * s / steps for s in range(steps + 1)]
            outer = [self.geo.pt(c.radius_km * math.cos(a), c.radius_km * math.sin(a)) for a in arc]
            inner = [self.geo.pt(r0 * math.cos(a), r0 * math.sin(a)) for a in reversed(arc)]
            poly = outer + inner
            area = 0.5 * (a1 - a0) * (c.radius_km ** 2 - r0 ** 2)
            shapes.append((poly + [poly[0]], area * self.rng.uniform(0.7, 1.1)))
        total_w = sum(w for _, w in shapes)
        names = DISTRICTS[c.country]
        left = c.population
        for i, (poly, w) in enumerate(shapes):
            pop = left if i == len(shapes) - 1 else round(c.population * w / total_w)
            left -= pop
            self.add({"id": self.eid("District", i + 1), "type": "District",
                      "name": P(names[i % len(names)] + ("" if i < len(names) else f" {i // len(names) + 1}")),
                      "population": P(pop), "address": P({"addressLocality": c.name, "addressCountry": c.country}),
                      "location": G({"type": "Polygon", "coordinates": [poly]})})

    def buildings(self) -> None:
        c = self.c
        kinds, weights = zip(*BUILDING_KINDS, strict=True)
        for i in range(c.buildings):
            x, y, rr = self.polar(bias=1.6)
            w, ln = self.rng.uniform(0.012, 0.035), self.rng.uniform(0.015, 0.045)
            a = self.rng.uniform(0, math.pi)
            corners = [(-w / 2, -ln / 2), (w / 2, -ln / 2), (w / 2, ln / 2), (-w / 2, ln / 2)]
            ring = [self.geo.pt(x + px * math.cos(a) - py * math.sin(a), y + px * math.sin(a) + py * math.cos(a))
                    for px, py in corners]
            floors = round(c.floors_mean * (1.45 - 0.9 * rr) * self.rng.lognormvariate(0, 0.35))
            floors = max(1, min(c.floors_max, floors))
            kind = self.rng.choices(kinds, weights)[0]
            self.add({"id": self.eid("Building", i + 1), "type": "Building", "category": P([kind]),
                      "address": P(self.address()), "floorsAboveGround": P(floors),
                      "floorsBelowGround": P(self.rng.choice((0, 0, 1, 1, 2)) if floors > 3 else 0),
                      "height": P(round(floors * 3.1 + self.rng.uniform(0.5, 3.0), 1), "MTR"),
                      "location": G({"type": "Polygon", "coordinates": [ring + [ring[0]]]})})

    def transit(self) -> None:
        c, feed = self.c, None
        agency = gtfs.gid("GtfsAgency", f"{c.key}-1")
        self.add({"id": agency, "type": "GtfsAgency", "name": P(f"{c.name} Transport")})
        for svc, label in (("weekday", "Monday to Friday"), ("weekend", "Saturday and Sunday")):
            self.add({"id": gtfs.gid("GtfsService", f"{c.key}-{svc}"), "type": "GtfsService", "name": P(label),
                      "operatedBy": R(agency)})
        prefix = f"{c.key}"
        rn = 0
        for mode in c.transit:
            for _ in range(mode.routes):
                rn += 1
                rid = f"{prefix}-{rn}"
                short = {"1": "M", "0": "T", "3": ""}.get(mode.route_type, "") + str(rn)
                route = gtfs.route_payload({"route_id": rid, "route_type": mode.route_type, "route_short_name": short,
                                            "route_long_name": f"{c.name} line {short}", "route_color": mode.color,
                                            "route_text_color": "FFFFFF", "route_sort_order": str(rn),
                                            "agency_id": f"{c.key}-1"}, feed)
                self.add(route)
                self._line(rid, mode)

    def _line(self, rid: str, mode: Any) -> None:
        c = self.c
        length = min(2 * c.radius_km * 0.95, mode.spacing_m * (mode.stops_per_route - 1) / 1000)
        a = self.rng.uniform(0, math.pi)
        off = self.rng.uniform(-0.35, 0.35) * c.radius_km
        bend = self.rng.uniform(-0.15, 0.15)
        pts = []
        for k in range(mode.stops_per_route):
            s = -length / 2 + length * k / (mode.stops_per_route - 1)
            lateral = off + bend * (s * s) / max(0.5, c.radius_km) + self.rng.uniform(-0.04, 0.04)
            pts.append((s * math.cos(a) - lateral * math.sin(a), s * math.sin(a) + lateral * math.cos(a)))
        stop_ids, names = [], []
        for k, (x, y) in enumerate(pts):
            sid = f"{rid}-{k + 1}"
            lon, lat = self.geo.pt(x, y)
            names.append(self.rng.choice(STREETS[c.country]))
            self.add(gtfs.stop_payload({"stop_id": sid, "stop_name": names[-1],
                                        "stop_code": f"{rid.split('-')[-1]}{k + 1:02d}", "stop_lon": str(lon),
                                        "stop_lat": str(lat), "wheelchair_boarding": self.rng.choice("112"),
                                        "zone_id": "A" if math.hypot(x, y) < c.radius_km / 2 else "B"}))
            stop_ids.append(sid)
        dist = [0.0]
        for (x0, y0), (x1, y1) in zip(pts, pts[1:], strict=False):
            dist.append(round(dist[-1] + math.hypot(x1 - x0, y1 - y0), 3))
        speed_kmh = {"1": 32, "0": 19, "3": 15}.get(mode.route_type, 15)
        for d in (0, 1):
            order = list(range(len(pts))) if d == 0 else list(reversed(range(len(pts))))
            shape = f"{rid}-{d}"
            lonlat = [self.geo.pt(*pts[k]) for k in order]
            self.add(gtfs.shape_payload(shape, [{"shape_pt_sequence": str(i), "shape_pt_lon": str(ll[0]),
                                                 "shape_pt_lat": str(ll[1]),
                                                 "shape_dist_traveled": str(round(abs(dist[k] - dist[order[0]]), 3))}
                                                for i, (k, ll) in enumerate(zip(order, lonlat, strict=True))]))
            for j in range(c.trips_per_direction):
                tid = f"{rid}-{d}-{j + 1}"
                start = 6 * 3600 + j * (16 * 3600 // max(1, c.trips_per_direction)) + d * 420
                self.add(gtfs.trip_payload({"trip_id": tid, "route_id": rid, "service_id": f"{c.key}-weekday",
                                            "trip_headsign": names[order[-1]], "direction_id": str(d),
                                            "shape_id": shape, "wheelchair_accessible": "1", "bikes_allowed": "1"}))
                t = start
                for seq, k in enumerate(order, start=1):
                    if seq > 1:
                        t += round(abs(dist[k] - dist[order[seq - 2]]) / speed_kmh * 3600) + 25
                    hms = f"{t // 3600:02d}:{t % 3600 // 60:02d}:{t % 60:02d}"
                    self.add(gtfs.stop_time_payload({"trip_id": tid, "stop_id": stop_ids[k], "stop_sequence": str(seq),
                                                     "arrival_time": hms, "departure_time": hms}))

    def sensors(self) -> None:
        c, cnt = self.c, self.c.counts
        for i in range(cnt.get("AirQualityObserved", 0)):
            loc, rr = self.point(1.3)
            self.add({"id": self.eid("AirQualityObserved", i + 1), "type": "AirQualityObserved", "location": loc,
                      "address": P(self.address()), "typeofLocation": P("outdoor"), "reliability": P(0.9)},
                     {"exposure": round(self.rng.uniform(0.5, 1.3) * (1.3 - 0.6 * rr), 3)})
        for i in range(cnt.get("NoiseLevelObserved", 0)):
            loc, rr = self.point(1.3)
            self.add({"id": self.eid("NoiseLevelObserved", i + 1), "type": "NoiseLevelObserved", "location": loc,
                      "sonometerClass": P(self.rng.choice("12"))},
                     {"exposure": round(self.rng.uniform(0.3, 1.4) * (1.3 - 0.6 * rr), 3)})
        for i in range(cnt.get("WeatherObserved", 0)):
            loc, _ = self.point(0.8)
            self.add({"id": self.eid("WeatherObserved", i + 1), "type": "WeatherObserved", "location": loc,
                      "name": P(f"{c.name} weather station {i + 1}")},
                     {"offset": round(self.rng.uniform(-0.6, 0.6), 2)})
        for i in range(cnt.get("TrafficFlowObserved", 0)):
            loc, rr = self.point(1.1)
            lanes = self.rng.choice((1, 2, 2, 3))
            self.add({"id": self.eid("TrafficFlowObserved", i + 1), "type": "TrafficFlowObserved", "location": loc,
                      "laneId": P(self.rng.randint(1, lanes)),
                      "laneDirection": P(self.rng.choice(("forward", "backward")))},
                     {"capacity": 900 * lanes * c.traffic_scale, "load": round(self.rng.uniform(0.6, 1.3), 3),
                      "speed": self.rng.choice((30, 50, 50, 70)) * (0.8 if rr < 0.4 else 1.0)})
        for i in range(cnt.get("OffStreetParking", 0)):
            loc, rr = self.point(1.4)
            total = self.rng.choice((80, 120, 200, 350, 500))
            self.add({"id": self.eid("OffStreetParking", i + 1), "type": "OffStreetParking", "location": loc,
                      "name": P(f"Parking {self.rng.choice(STREETS[c.country])}"), "totalSpotNumber": P(total),
                      "category": P(["public", "feeCharged", "parkingGarage" if total > 150 else "parkingLot"]),
                      "allowedVehicleType": P(["car"]), "chargeType": P(["temporaryPrice"]),
                      "requiredPermit": P(["noPermitNeeded"]), "address": P(self.address())},
                     {"total": total, "demand": round(self.rng.uniform(0.6, 1.0) * (1.2 - 0.4 * rr), 3)})
        for i in range(cnt.get("EVChargingStation", 0)):
            loc, _ = self.point(1.0)
            sockets = self.rng.choice((2, 2, 4, 6, 8))
            self.add({"id": self.eid("EVChargingStation", i + 1), "type": "EVChargingStation", "location": loc,
                      "name": P(f"EV {self.rng.choice(STREETS[c.country])}"), "capacity": P(sockets),
                      "socketNumber": P(sockets), "socketType": P(self.rng.choice((["Type2"], ["Type2", "CCS/SAE"],
                                                                                   ["CHAdeMO", "CCS/SAE"]))),
                      "allowedVehicleType": P(["car"]), "chargeType": P(["flat"]), "network": P(f"{c.name} Charge"),
                      "amperage": P(self.rng.choice((16, 32, 125))), "voltage": P(self.rng.choice((230, 400)))},
                     {"total": sockets})
        for i in range(cnt.get("BikeHireDockingStation", 0)):
            loc, rr = self.point(1.2)
            total = self.rng.choice((15, 20, 24, 30))
            self.add({"id": self.eid("BikeHireDockingStation", i + 1), "type": "BikeHireDockingStation",
                      "location": loc, "name": P(f"Bici {i + 1}"), "totalSlotNumber": P(total)},
                     {"total": total, "broken": self.rng.choice((0, 0, 0, 1, 2)), "pull": round(1.4 - 2 * rr, 3)})
        for i in range(cnt.get("Streetlight", 0)):
            loc, _ = self.point(1.0)
            self.add({"id": self.eid("Streetlight", i + 1), "type": "Streetlight", "location": loc,
                      "status": P("defectiveLamp" if self.rng.random() < 0.02 else "ok"),
                      "controllingMethod": P("group"), "lanternHeight": P(self.rng.choice((6, 8, 10)), "MTR"),
                      "locationCategory": P(self.rng.choice(("road", "sidewalk", "park", "pedestrianPath")))},
                     {"rating": self.rng.choice((40, 60, 90, 150))})
        for i in range(cnt.get("WasteContainer", 0)):
            loc, _ = self.point(1.1)
            kind = self.rng.choice(("organic", "inorganic", "glass", "paper", "plastic"))
            self.add({"id": self.eid("WasteContainer", i + 1), "type": "WasteContainer", "location": loc,
                      "storedWasteKind": P(kind), "status": P("ok"), "category": P(["fixed"]),
                      "binCapacity": P(self.rng.choice((1100, 2200, 3200)))},
                     {"cycle_h": self.rng.choice((24, 48, 72, 96)), "phase": round(self.rng.random(), 4)})

    def places(self) -> None:
        c, cnt = self.c, self.c.counts
        for i in range(cnt.get("Museum", 0)):
            loc, _ = self.point(2.2)
            kind, word = self.rng.choice(MUSEUM_KINDS)
            self.add({"id": self.eid("Museum", i + 1), "type": "Museum", "location": loc,
                      "name": P(f"{c.name} {word} Museum" + (f" {i + 1}" if i >= len(MUSEUM_KINDS) else "")),
                      "museumType": P([kind]), "facilities": P(self.rng.sample(["shop", "cafeteria", "audioguide",
                                                                               "guidedTour", "forDisabled"], 2)),
                      "historicalPeriod": P([self.rng.choice(("15thCentury", "18thCentury", "19thCentury",
                                                               "20thCentury"))]),
                      "address": P(self.address())})
        for i in range(cnt.get("PointOfInterest", 0)):
            loc, _ = self.point(1.2 + c.tourism)
            kind = self.rng.choice(POI_KINDS)
            self.add({"id": self.eid("PointOfInterest", i + 1), "type": "PointOfInterest", "location": loc,
                      "name": P(f"{kind.capitalize()} {self.rng.choice(STREETS[c.country])}"), "category": P([kind]),
                      "address": P(self.address())})

    def run(self) -> City:
        self.districts()
        self.buildings()
        self.transit()
        self.sensors()
        self.places()
        return self.city


def generate(profile: CityProfile, at: float = REFERENCE_TIME) -> City:
    """The whole city: same profile and ``at`` → the same entities."""
    return Generator(profile, at).run()


def devices(profile: CityProfile) -> list[Device]:
    """Only the live devices (the simulator's view), regenerated from the seed."""
    return generate(profile).devices
