"""Sensor value models and the simulator that keeps the demo cities alive.

Why values are *functions of time* (not random walks): the same model then serves the
initial load, the live ticks and the ``--history`` back-fill, stays deterministic (a
value depends only on the city, the device and the instant) and needs no state — a
restarted demo continues where the clock is. The shapes are the ones people expect to
see: daily temperature cycles and seasons, morning and evening rush hours (weekdays
only), NO2 and noise following traffic and diluted by wind, ozone following the sun,
parking full during office hours, street lights on from dusk to dawn (dimmed after
midnight), waste containers filling up until collected.

Live updates go over MQTT when a broker is configured and the device agent
(``urbanmim.ingest.agent``) is installed; otherwise straight through the EntityService
(update mutations in batches, so history and notifications see them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from urbanmim.ingest.demo.cities import CityProfile

log = logging.getLogger("urbanmim.demo")

# UN/CEFACT common codes
UNITS = {"temperature": "CEL", "windSpeed": "MTS", "windDirection": "DD", "atmosphericPressure": "A97",
         "precipitation": "MMT", "solarRadiation": "D54", "no2": "GQ", "pm10": "GQ", "pm25": "GQ", "o3": "GQ",
         "so2": "GQ", "co": "GP", "LAeq": "2N", "LAmax": "2N", "LAS": "2N", "averageVehicleSpeed": "KMH",
         "powerConsumption": "WTT", "dewPoint": "CEL"}


@dataclass
class Device:
    """A live entity: what the models need to compute its values (all fixed by the generator)."""

    id: str
    type: str
    key: int                          # noise stream of this device
    params: dict[str, Any] = field(default_factory=dict)


# ---- deterministic noise ---------------------------------------------------------------------------
def _u(a: int, b: int) -> float:
    """A uniform [0, 1) number from two integers (splitmix64): reproducible anywhere."""
    z = (a * 0x9E3779B97F4A7C15 + b * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return ((z ^ (z >> 31)) >> 11) / float(1 << 53)


def smooth(key: int, t: float, period: float) -> float:
    """Value noise in [0, 1) that drifts smoothly over ``period`` seconds."""
    x = t / period
    i = math.floor(x)
    f = x - i
    f = f * f * (3 - 2 * f)
    return _u(key, i) * (1 - f) + _u(key, i + 1) * f


def _g(h: float, mean: float, sd: float) -> float:
    return math.exp(-0.5 * ((h - mean) / sd) ** 2)


# ---- time of day, sun, weather (per city) ---------------------------------------------------------
def local_clock(city: CityProfile, t: float) -> tuple[float, int, int]:
    """(local hour as a float, day of year, weekday 0=Monday)."""
    tm = time.gmtime(t + city.utc_offset * 3600)
    return tm.tm_hour + tm.tm_min / 60 + tm.tm_sec / 3600, tm.tm_yday, tm.tm_wday


def sun_elevation(city: CityProfile, t: float) -> float:
    """Solar elevation in degrees (a simple declination/hour-angle model: good to a degree or two)."""
    tm = time.gmtime(t)
    doy = tm.tm_yday
    decl = math.radians(23.44) * math.sin(2 * math.pi * (284 + doy) / 365)
    solar_hour = tm.tm_hour + tm.tm_min / 60 + city.lon / 15
    ha = math.radians(15 * (solar_hour - 12))
    lat = math.radians(city.lat)
    s = math.sin(lat) * math.sin(decl) + math.cos(lat) * math.cos(decl) * math.cos(ha)
    return math.degrees(math.asin(max(-1.0, min(1.0, s))))


def weather(city: CityProfile, t: float) -> dict[str, float]:
    h, doy, _ = local_clock(city, t)
    s = city.seed * 1000
    cloud = smooth(s + 1, t, 8 * 3600)
    season = -math.cos(2 * math.pi * (doy - 20) / 365)
    temp = (city.temp_mean + city.temp_season * season + city.temp_daily * math.sin(2 * math.pi * (h - 9) / 24)
            * (1.2 - 0.6 * cloud) + 5 * (smooth(s + 2, t, 36 * 3600) - 0.5))
    wind = city.wind * (0.3 + 1.4 * smooth(s + 3, t, 5 * 3600))
    humidity = min(0.99, max(0.2, city.humidity / 100 + 0.25 * (cloud - 0.5) - 0.02 * (temp - city.temp_mean)))
    sun = max(0.0, math.sin(math.radians(sun_elevation(city, t))))
    return {"temperature": temp, "cloud": cloud, "wind": wind, "windDirection": 360 * smooth(s + 4, t, 12 * 3600),
            "humidity": humidity, "precipitation": max(0.0, (cloud - 0.78) * 25),
            "pressure": 1013 + 14 * (0.5 - cloud), "solar": 950 * sun * (1 - 0.75 * cloud)}


def traffic_factor(city: CityProfile, t: float) -> float:
    """0..~1.3: the city's traffic relative to a weekday peak (rush hours on weekdays only)."""
    h, _, wd = local_clock(city, t)
    if wd < 5:
        return 0.12 + 0.95 * _g(h, 8.2, 1.2) + 0.8 * _g(h, 18.0, 1.7) + 0.45 * _g(h, 13.5, 2.8)
    return 0.12 + 0.55 * _g(h, 13.0, 3.5) + 0.15 * _g(h, 21.0, 2.0)


# ---- the models ------------------------------------------------------------------------------------
def _air(city: CityProfile, d: Device, t: float, w: dict[str, float], tf: float) -> dict[str, Any]:
    n = smooth(d.key, t, 1800)
    dilution = min(2.0, 4.5 / (w["wind"] + 1.5))      # calm air keeps NO2 near the roads
    no2 = city.no2_background * (0.6 + 1.6 * tf * d.params["exposure"]) * dilution * (0.85 + 0.3 * n)
    pm10 = 11 + 0.35 * no2 + 10 * smooth(d.key + 1, t, 6 * 3600) * (1 - 0.6 * min(1.0, w["precipitation"] / 3))
    pm25 = 0.62 * pm10
    o3 = max(4.0, 35 + 70 * w["solar"] / 950 - 0.45 * no2 + 8 * n)
    index = max(no2 / 2.0, pm10, pm25 * 1.6, o3 / 2.4)
    level = "good" if index < 25 else "moderate" if index < 50 else "poor" if index < 75 else "veryPoor"
    return {"no2": round(no2, 1), "pm10": round(pm10, 1), "pm25": round(pm25, 1), "o3": round(o3, 1),
            "co": round(0.15 + 0.012 * no2, 2), "so2": round(1.5 + 3 * n, 1), "airQualityIndex": round(index),
            "airQualityLevel": level}


def _noise(city: CityProfile, d: Device, t: float, tf: float) -> dict[str, Any]:
    n = smooth(d.key, t, 900)
    laeq = 38 + 10 * math.log10(1 + 90 * tf * d.params["exposure"]) + 4 * n
    return {"LAeq": round(laeq, 1), "LAmax": round(laeq + 9 + 10 * _u(d.key, int(t // 300)), 1),
            "LAS": round(laeq + 2.5, 1)}


def _traffic(city: CityProfile, d: Device, t: float, tf: float) -> dict[str, Any]:
    n = smooth(d.key, t, 600)
    occ = min(0.95, 0.04 + 0.5 * tf * d.params["load"] * (0.9 + 0.2 * n))
    per_hour = d.params["capacity"] * occ * 1.6
    speed = d.params["speed"] * max(0.15, 1 - 1.1 * occ ** 2)
    return {"intensity": round(per_hour / 4), "occupancy": round(occ, 3), "averageVehicleSpeed": round(speed, 1),
            "congested": occ > 0.55}


def _parking(city: CityProfile, d: Device, t: float) -> dict[str, Any]:
    h, _, wd = local_clock(city, t)
    busy = (0.85 * _g(h, 11.5, 3.2) + 0.3 * _g(h, 20.5, 1.5)) if wd < 5 else 0.7 * _g(h, 13.5, 3.5)
    occ = min(1.0, max(0.0, 0.08 + d.params["demand"] * busy + 0.08 * (smooth(d.key, t, 1200) - 0.5)))
    total = d.params["total"]
    available = max(0, round(total * (1 - occ)))
    status = ["full"] if available == 0 else ["almostFull"] if available < total * 0.08 else ["spacesAvailable"]
    return {"availableSpotNumber": available, "occupiedSpotNumber": total - available,
            "occupancy": round((total - available) / total, 3), "status": status}


def _ev(city: CityProfile, d: Device, t: float, tf: float) -> dict[str, Any]:
    cap = d.params["total"]
    used = min(cap, round(cap * min(1.0, 0.15 + 0.6 * tf * smooth(d.key, t, 1800) + 0.2 * _u(d.key, int(t // 900)))))
    available = cap - used
    status = "full" if available == 0 else "almostFull" if available == 1 and cap > 2 else "working"
    return {"availableCapacity": available, "status": status}


def _bikes(city: CityProfile, d: Device, t: float) -> dict[str, Any]:
    h, _, wd = local_clock(city, t)
    swing = (_g(h, 11, 3.0) - 0.6 * _g(h, 21, 3.0)) * (1.0 if wd < 5 else 0.4)
    frac = min(1.0, max(0.0, 0.5 + 0.42 * d.params["pull"] * swing + 0.12 * (smooth(d.key, t, 1500) - 0.5)))
    total, broken = d.params["total"], d.params["broken"]
    bikes = round((total - broken) * frac)
    free = total - broken - bikes
    status = ("empty" if bikes == 0 else "almostEmpty" if bikes <= 2 else "full" if free == 0
              else "almostFull" if free <= 2 else "working")
    return {"availableBikeNumber": bikes, "freeSlotNumber": free, "outOfServiceSlotNumber": broken, "status": status}


def _light(city: CityProfile, d: Device, t: float) -> dict[str, Any]:
    h, _, _ = local_clock(city, t)
    on = sun_elevation(city, t) < -0.8
    level = 0.0 if not on else 0.55 if 0.5 <= h < 5.5 else 1.0
    return {"powerState": "on" if on else "off", "illuminanceLevel": level,
            "powerConsumption": round(d.params["rating"] * level * (0.97 + 0.06 * _u(d.key, int(t // 3600))), 1)}


def _waste(city: CityProfile, d: Device, t: float) -> dict[str, Any]:
    cycle = d.params["cycle_h"] * 3600
    age = (t + d.params["phase"] * cycle) % cycle
    return {"fillingLevel": round(min(1.0, 0.03 + 0.95 * age / cycle), 3),
            "dateLastEmptying": _iso(t - age)}


def _weather_obs(city: CityProfile, d: Device, t: float, w: dict[str, float]) -> dict[str, Any]:
    temp = w["temperature"] + d.params["offset"]
    rh = w["humidity"]
    dew = temp - (100 - 100 * rh) / 5
    kind = ("heavyRain" if w["precipitation"] > 3 else "lightRain" if w["precipitation"] > 0 else
            "cloudy" if w["cloud"] > 0.6 else "partlyCloudy" if w["cloud"] > 0.35 else "clearSky")
    return {"temperature": round(temp, 1), "relativeHumidity": round(rh, 2), "windSpeed": round(w["wind"], 1),
            "windDirection": round(w["windDirection"]), "atmosphericPressure": round(w["pressure"], 1),
            "precipitation": round(w["precipitation"], 1), "solarRadiation": round(w["solar"]),
            "dewPoint": round(dew, 1), "weatherType": kind}


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def observe(city: CityProfile, d: Device, t: float) -> dict[str, Any]:
    """The key-values a device reports at ``t`` (epoch seconds)."""
    if d.type == "AirQualityObserved":
        vals = _air(city, d, t, weather(city, t), traffic_factor(city, t))
        vals.update(dateObserved=_iso(t))
    elif d.type == "NoiseLevelObserved":
        vals = _noise(city, d, t, traffic_factor(city, t))
        vals.update(dateObservedFrom=_iso(t - 300), dateObservedTo=_iso(t), dateObserved=_iso(t))
    elif d.type == "TrafficFlowObserved":
        vals = _traffic(city, d, t, traffic_factor(city, t))
        vals.update(dateObservedFrom=_iso(t - 900), dateObservedTo=_iso(t), dateObserved=_iso(t))
    elif d.type == "WeatherObserved":
        vals = _weather_obs(city, d, t, weather(city, t))
        vals.update(dateObserved=_iso(t))
    elif d.type == "OffStreetParking":
        vals = _parking(city, d, t)
    elif d.type == "EVChargingStation":
        vals = _ev(city, d, t, traffic_factor(city, t))
    elif d.type == "BikeHireDockingStation":
        vals = _bikes(city, d, t)
    elif d.type == "Streetlight":
        vals = _light(city, d, t)
    elif d.type == "WasteContainer":
        vals = _waste(city, d, t)
    else:
        return {}
    return vals


DATE_ATTRS = frozenset({"dateObserved", "dateObservedFrom", "dateObservedTo", "dateLastEmptying"})


def normalized(values: dict[str, Any], t: float) -> dict[str, Any]:
    """Key-values → NGSI-LD attributes: units, and ``observedAt`` on every measured value."""
    at = _iso(t)
    out: dict[str, Any] = {}
    for k, v in values.items():
        attr: dict[str, Any] = {"type": "Property", "value": v}
        if k in UNITS:
            attr["unitCode"] = UNITS[k]
        if k not in DATE_ATTRS:
            attr["observedAt"] = at
        out[k] = attr
    return out


def numeric_series(city: CityProfile, d: Device, start: float, end: float, step: float) -> dict[str, list[tuple[int,
                                                                                                       float]]]:
    """Every numeric attribute of a device sampled from ``start`` to ``end``: (ms, value) rows for history."""
    out: dict[str, list[tuple[int, float]]] = {}
    t = start
    while t < end:
        for k, v in observe(city, d, t).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out.setdefault(k, []).append((int(t * 1000), float(v)))
        t += step
    return out


# ---- the live loop ---------------------------------------------------------------------------------
Reading = tuple[Device, dict[str, Any]]                       # a device and its key-values
Publish = Callable[[str, list[Reading], float], Awaitable[Any]]   # (tenant, readings, epoch seconds)


class Simulator:
    """Every ``interval`` seconds a rotating share of the devices reports.

    With the default 5 s tick a sensor reports every minute (``fast_share`` ticks) and a
    street light or bin every ten (``slow_share``): the city changes every few seconds, like
    a real one whose devices are not synchronised, and the three cities make ~34k readings an
    hour instead of ~400k."""

    SLOW = frozenset({"Streetlight", "WasteContainer"})

    def __init__(self, cities: list[tuple[CityProfile, list[Device]]], publish: Publish, *, interval: float = 5.0,
                 fast_share: int = 12, slow_share: int = 120, via: str = "service"):
        self.cities = cities
        self.publish = publish
        self.interval = interval
        self.fast_share = max(1, fast_share)
        self.slow_share = max(1, slow_share)
        self.via = via            # "service" (in-process) or "mqtt"
        self.ticks = 0

    def due(self, d: Device) -> bool:
        share = self.slow_share if d.type in self.SLOW else self.fast_share
        return d.key % share == self.ticks % share

    def batch(self, t: float) -> list[tuple[str, list[Reading]]]:
        """What one tick sends: per tenant, the readings of the devices due now."""
        return [(city.key, [(d, observe(city, d, t)) for d in devices if self.due(d)])
                for city, devices in self.cities]

    async def tick(self, t: float | None = None) -> int:
        now = time.time() if t is None else t
        n = 0
        for tenant, readings in self.batch(now):
            await self.publish(tenant, readings, now)
            n += len(readings)
        self.ticks += 1
        return n

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                n = await self.tick()
                log.debug("demo simulator: %d readings via %s in %.2f s", n, self.via, time.monotonic() - started)
            except asyncio.CancelledError:
                raise
            except Exception:     # a failed tick must not stop the twin
                log.exception("demo simulator tick failed")
            await asyncio.sleep(max(0.1, self.interval - (time.monotonic() - started)))


def service_publisher(service: Any, term_map_for: Callable[[str], Any]) -> Publish:
    """In-process: update the attributes through the EntityService (one batch per tenant and tick)."""
    from urbanmim.ngsild.payload import parse_fragment
    from urbanmim.service.entities import EntityService
    from urbanmim.store.base import Mutation

    async def publish(tenant: str, readings: list[Reading], t: float) -> None:
        muts = []
        for d, values in readings:
            parsed = parse_fragment(normalized(values, t), term_map_for(d.type))
            muts.append(Mutation(d.id, EntityService.update_fn(d.id, parsed)))
        await service.batch(tenant, muts)
    return publish


DEMO_API_KEY = "urbanmim-demo-devices"    # a demo's devices share one key (documented; not a secret)


def device_id(d: Device) -> str:
    """The agent's deviceId (a topic level): the entity id without ``urn:ngsi-ld:``."""
    return d.id.removeprefix("urn:ngsi-ld:")


class MqttPublisher:
    """Over MQTT, like real devices: provision them with the device agent, then publish key-values.

    The agent maps each measurement key to the entity's SDM attribute (full IRI), so the
    entity is the same one the generator created; the agent adds ``observedAt`` from ``ts``."""

    def __init__(self, url: str, prefix: str):
        self.url, self.prefix = url, prefix
        self.client: Any = None

    def _client(self) -> Any:
        import ssl
        from urllib.parse import unquote, urlsplit

        import aiomqtt
        u = urlsplit(self.url)
        tls = u.scheme in ("mqtts", "ssl")
        return aiomqtt.Client(u.hostname or "127.0.0.1", u.port or (8883 if tls else 1883),
                              username=unquote(u.username) if u.username else None,
                              password=unquote(u.password) if u.password else None,
                              tls_context=ssl.create_default_context() if tls else None, timeout=3)

    async def connect(self) -> bool:
        try:
            self.client = self._client()
            await asyncio.wait_for(self.client.__aenter__(), 3)
            return True
        except Exception as e:      # unreachable broker, bad URL: fall back to in-process writes
            log.warning("demo simulator: MQTT broker %s not reachable (%s); writing in-process instead",
                        self.url.split("@")[-1], e)
            self.client = None
            return False

    async def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.__aexit__(None, None, None)
            self.client = None

    async def provision(self, registry: Any, cities: list[tuple[CityProfile, list[Device]]],
                        term_map_for: Callable[[str], Any]) -> int:
        """Provision the devices the agent does not know yet (PBKDF2 per device: done once per store)."""
        done = 0
        for city, devices in cities:
            keys: dict[str, list[str]] = {}
            todo = []
            for d in devices:
                if await registry.lookup(city.key, device_id(d)) is not None:
                    continue
                tm = term_map_for(d.type)
                if d.type not in keys:
                    keys[d.type] = list(observe(city, d, time.time()))
                todo.append({"deviceId": device_id(d), "apiKey": DEMO_API_KEY, "entityId": d.id,
                             "entityType": tm.expand(d.type), "explicitAttrs": True,
                             "attributes": [{"key": k, "name": tm.expand(k), **({"unitCode": UNITS[k]}
                                                                                 if k in UNITS else {})}
                                            for k in keys[d.type]]})
            for i in range(0, len(todo), 50):
                await registry.provision(city.key, todo[i:i + 50])
                done += len(todo[i:i + 50])
                await asyncio.sleep(0)
        return done

    async def publish(self, tenant: str, readings: list[Reading], t: float) -> None:
        import orjson
        ts = _iso(t)
        for d, values in readings:
            await self.client.publish(f"{self.prefix}/{tenant}/{DEMO_API_KEY}/{device_id(d)}/attrs",
                                      orjson.dumps(dict(values, ts=ts)), qos=0)
