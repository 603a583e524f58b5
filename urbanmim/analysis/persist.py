"""Scenarios and results as NGSI-LD entities of the tenant, written through the EntityService.

Why entities and not a table of our own: the store already gives every backend (SQLite,
PostgreSQL with N processes) durability, tenants and change notifications; a scenario saved
by one process is seen by all, and a planner can read or subscribe to results with plain
NGSI-LD (``type=urbanmim:AnalysisResult``). The types are reserved names in the
``urbanmim:`` scheme, like the MIM2 policies, so they never collide with a city's types.

* ``urbanmim:AnalysisScenario`` — ``urn:ngsi-ld:AnalysisScenario:<id>``: ``name``,
  ``description``, ``edits`` (JsonProperty, the validated edit list).
* ``urbanmim:AnalysisResult`` — written only for runs *without* a scenario (a scenario run is
  hypothetical and must not look like a fact about the city): see docs/analysis.md.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from urbanmim.analysis.model import Result
from urbanmim.analysis.scenario import SCENARIO_ID, Scenario, check_edits
from urbanmim.errors import BadRequestData, ResourceNotFound
from urbanmim.ngsild.contexts import CORE
from urbanmim.ngsild.entity import DEFAULT_VOCAB, LOCATION, Entity, default_instance, value_of
from urbanmim.service.entities import EntityService, outcome_error
from urbanmim.store.base import EntityQuery, Mutation

log = logging.getLogger(__name__)

SCENARIO_TYPE = "urbanmim:AnalysisScenario"
RESULT_TYPE = "urbanmim:AnalysisResult"
NAME, DESCRIPTION = CORE.expand("name"), CORE.expand("description")


def _iri(name: str) -> str:
    return DEFAULT_VOCAB + name


def scenario_entity_id(sid: str) -> str:
    return f"urn:ngsi-ld:AnalysisScenario:{sid}"


def parse_scenario(body: Any, sid: str | None = None) -> Scenario:
    """A POST/PUT body -> a validated Scenario (400 naming the member at fault)."""
    if not isinstance(body, dict):
        raise BadRequestData("a scenario must be a JSON object")
    extra = set(body) - {"id", "name", "description", "edits", "createdAt", "modifiedAt"}
    if extra:
        raise BadRequestData(f"unknown scenario member(s): {', '.join(sorted(extra))}",
                             extra={"parameter": sorted(extra)[0]})
    given = body.get("id")
    if sid is None:
        sid = given if given is not None else uuid.uuid4().hex[:12]
    elif given is not None and given != sid:
        raise BadRequestData(f"id {given!r} does not match the scenario in the path ({sid})", extra={"parameter": "id"})
    if not isinstance(sid, str) or not SCENARIO_ID.fullmatch(sid):
        raise BadRequestData("id must match [A-Za-z0-9_-]{1,64}", extra={"parameter": "id"})
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise BadRequestData("name is required (a non-empty string)", extra={"parameter": "name"})
    desc = body.get("description", "")
    if not isinstance(desc, str):
        raise BadRequestData("description must be a string", extra={"parameter": "description"})
    return Scenario(id=sid, name=name, description=desc, edits=check_edits(body.get("edits", [])))


def to_entity(s: Scenario) -> Entity:
    return {"id": scenario_entity_id(s.id), "type": [SCENARIO_TYPE], "attrs": {
        NAME: [{"type": "Property", "value": s.name}],
        DESCRIPTION: [{"type": "Property", "value": s.description}],
        _iri("edits"): [{"type": "JsonProperty", "json": s.edits}]}}


def from_entity(ent: Entity) -> Scenario:
    def val(iri: str, default: Any) -> Any:
        inst = default_instance(ent["attrs"].get(iri, []))
        return value_of(inst) if inst is not None else default
    sid = ent["id"].rsplit(":", 1)[-1]
    return Scenario(id=sid, name=val(NAME, sid), description=val(DESCRIPTION, ""), edits=val(_iri("edits"), []),
                    created_at=ent.get("createdAt"), modified_at=ent.get("modifiedAt"))


class Scenarios:
    """CRUD of one tenant's scenarios over the EntityService."""

    def __init__(self, service: EntityService):
        self.service = service

    async def list(self, tenant: str) -> list[Scenario]:
        out: list[Scenario] = []
        offset = 0
        while True:
            got = (await self.service.query(EntityQuery(tenant=tenant, types=[frozenset({SCENARIO_TYPE})],
                                                        limit=500, offset=offset))).entities
            out.extend(from_entity(e) for e in got)
            if len(got) < 500:
                break
            offset += 500
        return sorted(out, key=lambda s: s.created_at or "", reverse=True)

    async def get(self, tenant: str, sid: str) -> Scenario:
        if not SCENARIO_ID.fullmatch(sid):
            raise ResourceNotFound(f"no scenario {sid}")
        try:
            ent = await self.service.retrieve(tenant, scenario_entity_id(sid))
        except ResourceNotFound:
            raise ResourceNotFound(f"no scenario {sid}") from None
        if SCENARIO_TYPE not in ent.get("type", ()):
            raise ResourceNotFound(f"no scenario {sid}")
        return from_entity(ent)

    async def create(self, tenant: str, s: Scenario) -> Scenario:
        await self.service.create(tenant, to_entity(s))
        return await self.get(tenant, s.id)

    async def replace(self, tenant: str, s: Scenario) -> Scenario:
        await self.get(tenant, s.id)
        await self.service.replace(tenant, to_entity(s))
        return await self.get(tenant, s.id)

    async def delete(self, tenant: str, sid: str) -> None:
        await self.get(tenant, sid)
        await self.service.delete(tenant, scenario_entity_id(sid))


# ----------------------------------------------------------------------------- results

def _p(value: Any, unit: str | None = None) -> list[dict[str, Any]]:
    inst: dict[str, Any] = {"type": "Property", "value": value}
    if unit:
        inst["unitCode"] = unit
    return [inst]


def _json(value: Any) -> list[dict[str, Any]]:
    return [{"type": "JsonProperty", "json": value}]


def _rel(target: str) -> list[dict[str, Any]]:
    return [{"type": "Relationship", "object": target}]


def result_entities(model_id: str, version: str, params: dict[str, Any], result: Result,
                    computed_at: str) -> list[Entity]:
    """The urbanmim:AnalysisResult entities of one baseline run (docs/analysis.md, Results as entities)."""
    base = {_iri("model"): _p(model_id), _iri("modelVersion"): _p(version), _iri("parameters"): _json(params),
            _iri("computedAt"): _p(computed_at)}

    def ent(eid: str, attrs: dict[str, Any]) -> Entity:
        # a null value is not an NGSI-LD Property value (e.g. the share of a district without residents)
        kept = {k: v for k, v in attrs.items() if v[0].get("value", v[0].get("object", 0)) is not None}
        return {"id": eid, "type": [RESULT_TYPE], "attrs": {**base, **kept}}

    prefix = f"urn:ngsi-ld:AnalysisResult:{model_id}"
    s = result.summary
    if model_id == "transport-convenience":
        out = [ent(f"{prefix}:city", {_iri("share"): _p(s["value"], "C62"), _iri("residents"): _p(s["residents"]),
                                      _iri("servedResidents"): _p(s["servedResidents"])})]
        for f in result.features:
            p = f["properties"]
            attrs = {_iri("share"): _p(p["value"], "C62"), _iri("residents"): _p(p["residents"]),
                     _iri("servedResidents"): _p(p["servedResidents"]), _iri("method"): _p(p["method"]),
                     _iri("refDistrict"): _rel(p["id"])}
            if f.get("geometry"):
                attrs[LOCATION] = [{"type": "GeoProperty", "value": f["geometry"]}]
            out.append(ent(f"{prefix}:{p['id']}", attrs))
        return out
    if model_id == "interpolation":
        return [ent(f"{prefix}:{params['type']}:{params['attribute']}", {_iri("summary"): _json(s)})]
    if model_id == "forecast":
        series = result.extra.get("series", {})
        return [ent(f"{prefix}:{s['entityId']}:{s['attribute']}", {
            _iri("refEntity"): _rel(s["entityId"]), _iri("summary"): _json(s),
            _iri("forecast"): [{"type": "ListProperty", "valueList": series.get("forecast", [])}],
            _iri("forecastStart"): _p((series.get("forecastTimestamps") or [None])[0])})]
    return []


async def write_results(service: EntityService, tenant: str, entities: list[Entity]) -> list[str]:
    """Upsert (replace or create) the result entities; the ids written. A refused write is logged, not fatal."""
    if not entities:
        return []
    muts = [Mutation(e["id"], EntityService.replace_fn(e, must_exist=False)) for e in entities]
    written = []
    for out in await service.batch(tenant, muts):
        if out.error is None:
            written.append(out.entity_id)
        else:
            log.warning("analysis result %s not written: %s", out.entity_id, outcome_error(out).detail)
    return written
