"""A handful of sample entities so ``urbanmim demo`` shows a living broker from the first run.

The full three-city generator arrives with the demo-cities issue; until then this seeds a
small Barcelona-like sample through the service layer (never the tables).
"""

from __future__ import annotations

import math

from urbanmim.ngsild.contexts import CORE
from urbanmim.ngsild.payload import parse_entity
from urbanmim.service.entities import EntityService
from urbanmim.settings import Settings
from urbanmim.store.base import Mutation


def sample_entities(n: int = 50) -> list[dict]:
    out = []
    for i in range(n):
        lon = 2.15 + 0.05 * math.cos(i)
        lat = 41.39 + 0.03 * math.sin(i * 1.3)
        out.append({
            "id": f"urn:ngsi-ld:AirQualityObserved:sample-{i:03d}",
            "type": "AirQualityObserved",
            "NO2": {"type": "Property", "value": round(20 + 30 * abs(math.sin(i)), 1), "unitCode": "GQ"},
            "PM10": {"type": "Property", "value": round(10 + 25 * abs(math.cos(i)), 1), "unitCode": "GQ"},
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [round(lon, 5),
                                                                                             round(lat, 5)]}},
        })
    return out


async def seed(settings: Settings) -> int:
    from urbanmim.app import open_store
    store = open_store(settings)
    await store.open()
    try:
        svc = EntityService(store)
        muts = []
        for raw in sample_entities():
            ent = parse_entity(raw, CORE)
            muts.append(Mutation(ent["id"], EntityService.replace_fn(ent, must_exist=False)))
        outs = await svc.batch("", muts)
        return sum(1 for o in outs if o.error is None)
    finally:
        await store.close()
