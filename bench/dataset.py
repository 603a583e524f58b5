"""Deterministic, realistic city-sensor entities (AirQualityObserved).

``bench/lua/common.lua`` fills the same JSON template for the wrk-driven creates,
so every figure (create, retrieve, query, batch upsert) handles the same kind of
~670-byte entity: four measured Properties with unitCode/observedAt, a string
Property, a GeoProperty Point and a Relationship. Values come from an RNG seeded
per batch, so a run is reproducible.

The template is filled with ``%`` formatting rather than built as dicts and
serialised: it is ~3x cheaper (~8 ms per 1,000 entities), which keeps the batch
client well below the server's cost per batch on its own core.

Query selectivity is designed in: ``NO2`` is uniform in [0, 200) and
``airQualityLevel`` is uniform over four levels, so ``NO2>X;airQualityLevel=="L"``
with X in [140, 160] matches 20-30% x 25% = ~5-7.5% of the entities of the type.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

ENTITY_TYPE = "AirQualityObserved"
ID_PREFIX = f"urn:ngsi-ld:{ENTITY_TYPE}:"
LEVELS = ("good", "moderate", "unhealthy", "veryUnhealthy")
DEVICES = 500  # refDevice targets: many observations per device, as in a real deployment

TEMPLATE = (
    '{"id":"' + ID_PREFIX + '%s","type":"' + ENTITY_TYPE + '",'
    '"NO2":{"type":"Property","value":%.1f,"unitCode":"GQ","observedAt":"%s"},'
    '"PM10":{"type":"Property","value":%.1f,"unitCode":"GQ","observedAt":"%s"},'
    '"PM25":{"type":"Property","value":%.1f,"unitCode":"GQ","observedAt":"%s"},'
    '"temperature":{"type":"Property","value":%.1f,"unitCode":"CEL","observedAt":"%s"},'
    '"airQualityLevel":{"type":"Property","value":"%s"},'
    '"location":{"type":"GeoProperty","value":{"type":"Point","coordinates":[%.5f,%.5f]}},'
    '"refDevice":{"type":"Relationship","object":"urn:ngsi-ld:Device:aq-%d"}}'
)


def entity_id(n: int) -> str:
    """Id of the n-th dataset entity (``get_entity.lua`` builds the same ids)."""
    return f"{ID_PREFIX}{n}"


def entity_json(n: int, rnd: random.Random) -> str:
    """The n-th entity as normalized NGSI-LD JSON (default context short names).

    Santander-sized bounding box; NO2/PM in ug/m3 (GQ), temperature in CEL.
    """
    u = rnd.random
    m = int(u() * 43200)  # a minute in May 2024
    ts = f"2024-05-{1 + m // 1440:02d}T{m // 60 % 24:02d}:{m % 60:02d}:00Z"
    return TEMPLATE % (
        n,
        u() * 200, ts,
        u() * 120, ts,
        u() * 80, ts,
        u() * 40 - 5, ts,
        LEVELS[int(u() * 4)],
        -3.90 + u() * 0.15, 43.42 + u() * 0.07,
        n % DEVICES,
    )  # fmt: skip


def batch_body(start: int, size: int, seed: int = 1) -> bytes:
    """JSON array of entities ``start .. start+size-1`` for entityOperations/upsert.

    A different ``seed`` gives the same ids with different values, so re-upserting
    existing entities really changes them.
    """
    rnd = random.Random(seed * 1_000_003 + start)
    return ("[" + ",".join(entity_json(n, rnd) for n in range(start, start + size)) + "]").encode()


def batches(start: int, count: int, size: int, seed: int = 1) -> Iterator[tuple[int, bytes]]:
    """``(entity_count, body)`` covering entities ``start .. start+count-1``, generated lazily."""
    for lo in range(start, start + count, size):
        n = min(size, start + count - lo)
        yield n, batch_body(lo, n, seed)


def segments(
    start: int, count: int, size: int, seed: int = 1, segment: int = 100_000
) -> Iterator[list[tuple[int, bytes]]]:
    """``batches`` grouped into lists of ~``segment`` entities, each generated on demand."""
    for lo in range(start, start + count, segment):
        yield list(batches(lo, min(segment, start + count - lo), size, seed))
