"""A city's own (local) KPI definitions, kept as entities in its tenant.

Why entities: a local KPI belongs to the city, like its data — it must survive restarts,
be visible to every broker process on a shared PostgreSQL store and never leak to another
tenant. So each definition is a ``KpiDefinition`` entity (project type, default
vocabulary) written through the service layer, holding the same fields as a catalogue
row. Local KPIs have no formula: their values are entered manually with evidence, or
imported.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from urbanmim.errors import ResourceNotFound
from urbanmim.kpi.catalogue import KpiDefinition, builtin, find_builtin, slug
from urbanmim.kpi.citydata import DEFAULT_VOCAB
from urbanmim.service.entities import EntityService
from urbanmim.store.base import EntityQuery, Mutation

TYPE = DEFAULT_VOCAB + "KpiDefinition"
ATTR = DEFAULT_VOCAB + "definition"


def entity_id(tenant: str, code: str) -> str:
    return f"urn:ngsi-ld:KpiDefinition:{tenant or 'default'}:{slug(code)}"


async def define(app: Any, tenant: str, d: KpiDefinition) -> None:
    eid = entity_id(tenant, d.code)
    ent = {"id": eid, "type": [TYPE], "attrs": {ATTR: [{"type": "Property", "value": asdict(d)}]}}
    mut = Mutation(eid, EntityService.replace_fn(ent, must_exist=False))
    (out,) = await app.state.entities.batch(tenant, [mut])
    if out.error is not None:
        raise out.error


async def remove(app: Any, tenant: str, code: str) -> None:
    await app.state.entities.delete(tenant, entity_id(tenant, code))


async def local_definitions(app: Any, tenant: str) -> list[KpiDefinition]:
    res = await app.state.entities.query(EntityQuery(tenant=tenant, types=[frozenset({TYPE})], limit=100_000))
    out = []
    for e in res.entities:
        insts = e["attrs"].get(ATTR) or []
        if insts and isinstance(insts[0].get("value"), dict):
            try:
                out.append(KpiDefinition(**insts[0]["value"]))
            except TypeError:
                continue
    return sorted(out, key=lambda d: d.code)


async def definitions(app: Any, tenant: str | None) -> list[KpiDefinition]:
    """The catalogue, plus the tenant's local KPIs when a tenant is given."""
    return [*builtin(), *(await local_definitions(app, tenant) if tenant is not None else [])]


async def find(app: Any, tenant: str | None, code: str) -> KpiDefinition:
    d = find_builtin(code)
    if d is not None:
        return d
    if tenant is not None:
        for d in await local_definitions(app, tenant):
            if slug(d.code) == slug(code):
                return d
    raise ResourceNotFound(f"no KPI {code!r} in the catalogue" + (f" or among {tenant}'s local KPIs" if tenant else ""))
