"""Demo city generator: sizes, determinism, plausible values, daily cycles, valid SDM entities."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from tests.conftest import SHARED
from urbanmim.ingest.demo import sdm
from urbanmim.ingest.demo.cities import CITIES, LINDMARK, PORTAMAR, VALDORIA, small
from urbanmim.ingest.demo.generator import REFERENCE_TIME, generate
from urbanmim.ingest.demo.simulator import Device, observe, sun_elevation, traffic_factor, weather
from urbanmim.ingest.importers.runner import Record, validate

SDM_DIR = SHARED / "data" / "smart-data-models"
DAY = 86400.0
MONDAY_0000_UTC = 1768176000.0        # 2026-01-12T00:00:00Z, a Monday


def kv(e: dict[str, Any]) -> dict[str, Any]:
    """Normalized → key-values (what the SDM JSON Schemas describe)."""
    out: dict[str, Any] = {"id": e["id"], "type": e["type"]}
    for k, a in e.items():
        if isinstance(a, dict) and "type" in a:
            out[k] = a.get("value", a.get("object", a.get("valueList")))
    return out


def by_type(entities: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for e in entities:
        out.setdefault(e["type"], []).append(e)
    return out


def test_three_cities_with_more_than_5000_entities_and_different_sizes() -> None:
    cities = {k: generate(p) for k, p in CITIES.items()}
    sizes = {k: len(c.entities) for k, c in cities.items()}
    assert sum(sizes.values()) >= 5000
    assert sizes["portamar"] > sizes["lindmark"] > sizes["valdoria"]
    for c in cities.values():
        ids = [e["id"] for e in c.entities]
        assert len(ids) == len(set(ids))
        assert {"District", "Building", "GtfsStop", "GtfsRoute", "GtfsTrip", "GtfsShape", "GtfsStopTime",
                "AirQualityObserved", "NoiseLevelObserved", "WeatherObserved", "TrafficFlowObserved",
                "OffStreetParking", "EVChargingStation", "Streetlight", "WasteContainer", "BikeHireDockingStation",
                "Museum", "PointOfInterest"} <= set(c.counts())


def test_same_seed_same_city_other_seed_other_city() -> None:
    a, b = generate(small(PORTAMAR)), generate(small(PORTAMAR))
    assert orjson.dumps(a.entities) == orjson.dumps(b.entities)
    assert [d.params for d in a.devices] == [d.params for d in b.devices]
    import dataclasses
    c = generate(dataclasses.replace(small(PORTAMAR), seed=999))
    assert orjson.dumps(a.entities) != orjson.dumps(c.entities)


@pytest.mark.parametrize("profile", [PORTAMAR, LINDMARK, VALDORIA], ids=lambda p: p.key)
def test_plausible_city(profile: Any) -> None:
    city = generate(profile)
    t = by_type(city.entities)
    pops = [e["population"]["value"] for e in t["District"]]
    assert sum(pops) == profile.population and min(pops) > 0 and len(pops) == profile.districts
    for b in t["Building"]:
        floors, height = b["floorsAboveGround"]["value"], b["height"]["value"]
        assert 1 <= floors <= profile.floors_max
        assert 2.8 <= height / floors <= 6.5 and 3 <= height <= 120
    mean_floors = sum(b["floorsAboveGround"]["value"] for b in t["Building"]) / len(t["Building"])
    assert 0.6 * profile.floors_mean <= mean_floors <= 1.6 * profile.floors_mean
    for e in t["AirQualityObserved"]:
        assert 0 < e["no2"]["value"] < 250 and 5 < e["pm10"]["value"] < 150 and e["no2"]["unitCode"] == "GQ"
    for e in t["WeatherObserved"]:
        assert -25 < e["temperature"]["value"] < 45 and 0 < e["relativeHumidity"]["value"] <= 1
    for e in t["NoiseLevelObserved"]:
        assert 30 < e["LAeq"]["value"] < 100
    for e in t["OffStreetParking"]:
        assert 0 <= e["availableSpotNumber"]["value"] <= e["totalSpotNumber"]["value"]
    for e in t["BikeHireDockingStation"]:
        assert e["availableBikeNumber"]["value"] + e["freeSlotNumber"]["value"] <= e["totalSlotNumber"]["value"]
    for e in t["WasteContainer"]:
        assert 0 <= e["fillingLevel"]["value"] <= 1
    for s in t["GtfsStop"]:
        lon, lat = s["location"]["value"]["coordinates"]
        assert abs(lon - profile.lon) < 0.2 and abs(lat - profile.lat) < 0.2


def test_bigger_city_is_denser_taller_and_more_polluted() -> None:
    def stats(p: Any) -> tuple[float, float]:
        t = by_type(generate(p).entities)
        floors = sum(b["floorsAboveGround"]["value"] for b in t["Building"]) / len(t["Building"])
        return floors, p.population / p.radius_km ** 2
    assert stats(PORTAMAR) > stats(VALDORIA)
    day = [MONDAY_0000_UTC + h * 3600 for h in range(24 * 7)]
    no2 = {p.key: sum(observe(p, Device("x", "AirQualityObserved", 1, {"exposure": 1.0}), t)["no2"]
                      for t in day) for p in (PORTAMAR, VALDORIA)}
    assert no2["portamar"] > 1.5 * no2["valdoria"]


def test_daily_cycles() -> None:
    p = PORTAMAR
    at = MONDAY_0000_UTC - p.utc_offset * 3600          # Monday 00:00 local
    assert traffic_factor(p, at + 8.2 * 3600) > 4 * traffic_factor(p, at + 3 * 3600)      # rush hour
    assert traffic_factor(p, at + 8.2 * 3600) > 1.5 * traffic_factor(p, at + 5 * DAY + 8.2 * 3600)  # Saturday
    warm = sum(weather(p, at + d * DAY + 15 * 3600)["temperature"] for d in range(10))
    cold = sum(weather(p, at + d * DAY + 5 * 3600)["temperature"] for d in range(10))
    assert warm > cold + 20                                    # afternoons warmer than dawns, on average
    assert sun_elevation(p, at + 13 * 3600) > 20 and sun_elevation(p, at + 1 * 3600) < -20
    light = Device("l", "Streetlight", 7, {"rating": 100})
    assert observe(p, light, at + 22 * 3600)["powerState"] == "on"
    assert observe(p, light, at + 3 * 3600)["illuminanceLevel"] < observe(p, light, at + 22 * 3600)["illuminanceLevel"]
    assert observe(p, light, at + 13 * 3600)["powerState"] == "off"
    summer = 1781258400.0          # 2026-06-12T10:00:00Z
    assert weather(p, summer)["temperature"] > weather(p, REFERENCE_TIME)["temperature"]


def test_every_generated_entity_is_valid_ngsi_ld() -> None:
    for p in CITIES.values():
        city = generate(small(p, 0.2))
        records = [Record(e["id"], e, context=sdm.for_type(e["type"])) for e in city.entities]
        entities, rejected = validate(records, sdm.term_map(None))
        assert rejected == [] and len(entities) == len(city.entities)
    ent = entities[0]
    assert all(t.startswith(("https://smartdatamodels.org/", "https://uri.etsi.org/ngsi-ld/")) for t in ent["type"])


@pytest.mark.skipif(not SDM_DIR.exists(), reason="shared Smart Data Models bundle not present")
def test_sample_is_valid_against_the_official_schemas() -> None:
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    refs = json.loads((SDM_DIR / "refs.json").read_text())
    registry: Registry = Registry().with_resources(
        (url, Resource.from_contents(json.loads((SDM_DIR / path).read_text()), default_specification=DRAFT202012))
        for url, path in refs.items())
    schemas = {p.parent.name: p for p in SDM_DIR.glob("*/*/schema.json")}
    city = generate(small(PORTAMAR, 0.2))
    checked = set()
    for etype, items in by_type(city.entities).items():
        if etype not in schemas:
            continue
        schema = json.loads(schemas[etype].read_text())
        validator = Draft202012Validator(schema, registry=registry)
        for e in items[:5]:
            errors = [f"{'/'.join(map(str, err.path))}: {err.message}" for err in validator.iter_errors(kv(e))]
            assert errors == [], (etype, e["id"], errors)
        checked.add(etype)
    assert {"AirQualityObserved", "NoiseLevelObserved", "WeatherObserved", "TrafficFlowObserved", "OffStreetParking",
            "EVChargingStation", "BikeHireDockingStation", "Streetlight", "WasteContainer", "Building", "Museum",
            "PointOfInterest", "GtfsStop", "GtfsRoute", "GtfsTrip"} <= checked


@pytest.mark.skipif(not SDM_DIR.exists(), reason="shared Smart Data Models bundle not present")
def test_subject_terms_match_the_official_contexts() -> None:
    for subject in sdm.SUBJECT_TERMS:
        official = json.loads((SDM_DIR / subject / "context.jsonld").read_text())["@context"]
        for term, iri in sdm.context_document(subject).items():
            want = official.get(term)
            want = want["@id"] if isinstance(want, dict) else want
            assert want == iri, (subject, term, iri, want)


def test_simulator_rotates_devices_so_each_reports_once_per_share() -> None:
    from urbanmim.ingest.demo.simulator import Simulator

    async def nothing(*a: object) -> None:
        return None
    city = generate(small(LINDMARK))
    sim = Simulator([(city.profile, city.devices)], nothing, fast_share=4, slow_share=8)
    seen: dict[str, int] = {}
    for _ in range(8):
        for _, readings in sim.batch(REFERENCE_TIME):
            for d, values in readings:
                seen[d.id] = seen.get(d.id, 0) + 1
                assert values
        sim.ticks += 1
    for d in city.devices:
        assert seen[d.id] == (1 if d.type in Simulator.SLOW else 2)
