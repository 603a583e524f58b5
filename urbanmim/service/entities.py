"""Entity operations — where every write decision lives (clause 5.6 and 5.9 of the spec).

HTTP routes, batch operations, MQTT ingestion and the apps all call these functions.
Each write is expressed as a *mutation*: a pure function from the current entity
(or None) to the new one, which the store runs inside its transaction. That keeps
read-modify-write atomic without locks here, and lets one batch see its own writes.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

from urbanmim.errors import AlreadyExists, BadRequestData, NgsiError, ResourceNotFound
from urbanmim.ngsild.entity import Entity, Instance, is_subattr_key
from urbanmim.ngsild.payload import NULL
from urbanmim.store.base import UNCHANGED, EntityQuery, Mutation, Outcome, QueryResult, Store


def now_iso() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def _stamp(inst: Instance, now: str, created: str | None = None) -> Instance:
    inst["createdAt"] = created or now
    inst["modifiedAt"] = now
    for k, v in inst.items():
        if is_subattr_key(k) and isinstance(v, dict):
            v.setdefault("createdAt", created or now)
            v["modifiedAt"] = now
    return inst


def _find(insts: list[Instance], dataset_id: str | None) -> int:
    for i, inst in enumerate(insts):
        if inst.get("datasetId") == dataset_id:
            return i
    return -1


@dataclass
class AttrReport:
    """updated / notUpdated of an attribute operation (answered 204 or 207)."""

    updated: list[str] = field(default_factory=list)
    not_updated: list[tuple[str, str]] = field(default_factory=list)   # (attr IRI, reason)


class EntityService:
    def __init__(self, store: Store):
        self.store = store

    # ---- single-entity writes -----------------------------------------------------------------
    async def _one(self, tenant: str, m: Mutation) -> Any:
        (out,) = await self.store.mutate(tenant, [m])
        if out.error is not None:
            raise out.error
        return out.result

    @staticmethod
    def create_fn(ent: Entity) -> Any:
        def fn(cur: Entity | None) -> tuple[Any, Any]:
            if cur is not None:
                raise AlreadyExists(f"entity {ent['id']} already exists")
            now = now_iso()
            new = copy.deepcopy(ent)
            new["createdAt"] = new["modifiedAt"] = now
            for insts in new["attrs"].values():
                for inst in insts:
                    _stamp(inst, now)
            return new, None
        return fn

    async def create(self, tenant: str, ent: Entity) -> None:
        await self._one(tenant, Mutation(ent["id"], self.create_fn(ent)))

    async def retrieve(self, tenant: str, entity_id: str) -> Entity:
        ent = await self.store.get(tenant, entity_id)
        if ent is None:
            raise ResourceNotFound(f"entity {entity_id} not found")
        return ent

    async def delete(self, tenant: str, entity_id: str) -> None:
        def fn(cur: Entity | None) -> tuple[Any, Any]:
            if cur is None:
                raise ResourceNotFound(f"entity {entity_id} not found")
            return None, None
        await self._one(tenant, Mutation(entity_id, fn))

    @staticmethod
    def replace_fn(ent: Entity, *, must_exist: bool = True) -> Any:
        def fn(cur: Entity | None) -> tuple[Any, Any]:
            if cur is None:
                if must_exist:
                    raise ResourceNotFound(f"entity {ent['id']} not found")
                return EntityService.create_fn(ent)(None)
            now = now_iso()
            new = copy.deepcopy(ent)
            if "type" not in new:
                new["type"] = cur["type"]
            new["createdAt"] = cur.get("createdAt", now)
            new["modifiedAt"] = now
            for insts in new["attrs"].values():
                for inst in insts:
                    _stamp(inst, now)
            return new, "replaced"
        return fn

    async def replace(self, tenant: str, ent: Entity) -> None:
        await self._one(tenant, Mutation(ent["id"], self.replace_fn(ent)))

    @staticmethod
    def merge_fn(entity_id: str, frag: dict[str, Any], *, must_exist: bool = True) -> Any:
        """Merge-patch (clause 5.6.17): new attributes added, existing ones merged, null deletes."""
        def fn(cur: Entity | None) -> tuple[Any, Any]:
            if cur is None:
                raise ResourceNotFound(f"entity {entity_id} not found")
            now = now_iso()
            new = copy.deepcopy(cur)
            if "type" in frag:
                for t in frag["type"]:
                    if t not in new["type"]:
                        new["type"].append(t)
            if "scope" in frag:
                if frag["scope"] is None:
                    new.pop("scope", None)
                else:
                    new["scope"] = frag["scope"]
            for iri, insts in frag["attrs"].items():
                existing = new["attrs"].get(iri, [])
                for inst in insts:
                    ds = inst.get("datasetId")
                    i = _find(existing, ds)
                    if inst.get(_value_key(inst)) == NULL:
                        if i >= 0:
                            existing.pop(i)
                        continue
                    if i >= 0:
                        existing[i] = _merge_instance(existing[i], inst, now)
                    else:
                        existing.append(_stamp(_strip_nulls(inst), now))
                if existing:
                    new["attrs"][iri] = existing
                else:
                    new["attrs"].pop(iri, None)
            new["modifiedAt"] = now
            return new, None
        return fn

    async def merge(self, tenant: str, entity_id: str, frag: dict[str, Any]) -> None:
        await self._one(tenant, Mutation(entity_id, self.merge_fn(entity_id, frag)))

    # ---- attribute writes -----------------------------------------------------------------------
    @staticmethod
    def append_fn(entity_id: str, frag: dict[str, Any], *, no_overwrite: bool, only_existing: bool = False) -> Any:
        """Append (5.6.3, with noOverwrite) or update (5.6.2, ``only_existing``) attributes."""
        def fn(cur: Entity | None) -> tuple[Any, Any]:
            if cur is None:
                raise ResourceNotFound(f"entity {entity_id} not found")
            now = now_iso()
            new = copy.deepcopy(cur)
            report = AttrReport()
            if "type" in frag and not only_existing:
                for t in frag["type"]:
                    if t not in new["type"]:
                        new["type"].append(t)
            if "scope" in frag and frag["scope"] is not None and not only_existing:
                new["scope"] = list(dict.fromkeys(new.get("scope", []) + frag["scope"]))
            for iri, insts in frag["attrs"].items():
                existing = new["attrs"].setdefault(iri, [])
                changed = False
                for inst in insts:
                    i = _find(existing, inst.get("datasetId"))
                    if i >= 0:
                        if no_overwrite:
                            report.not_updated.append((iri, "attribute exists and noOverwrite was requested"))
                            continue
                        existing[i] = _stamp(inst, now, existing[i].get("createdAt"))
                        changed = True
                    elif only_existing:
                        report.not_updated.append((iri, "attribute (with that datasetId) does not exist"))
                    else:
                        existing.append(_stamp(inst, now))
                        changed = True
                if not existing:
                    del new["attrs"][iri]
                if changed:
                    report.updated.append(iri)
            if not report.updated and "type" not in frag and "scope" not in frag:
                return UNCHANGED, report
            new["modifiedAt"] = now
            return new, report
        return fn

    async def append_attrs(self, tenant: str, entity_id: str, frag: dict[str, Any], *,
                           no_overwrite: bool = False) -> AttrReport:
        result: AttrReport = await self._one(
            tenant, Mutation(entity_id, self.append_fn(entity_id, frag, no_overwrite=no_overwrite)))
        return result

    async def update_attrs(self, tenant: str, entity_id: str, frag: dict[str, Any]) -> AttrReport:
        result: AttrReport = await self._one(
            tenant, Mutation(entity_id, self.append_fn(entity_id, frag, no_overwrite=False, only_existing=True)))
        return result

    async def partial_update_attr(self, tenant: str, entity_id: str, attr: str, insts: list[Instance]) -> None:
        """PATCH .../attrs/{attrId} (5.6.4): merge into the existing instance with the same datasetId."""
        def fn(cur: Entity | None) -> tuple[Any, Any]:
            if cur is None:
                raise ResourceNotFound(f"entity {entity_id} not found")
            existing = cur["attrs"].get(attr)
            if not existing:
                raise ResourceNotFound(f"attribute {attr} not found in {entity_id}")
            now = now_iso()
            new = copy.deepcopy(cur)
            target = new["attrs"][attr]
            for inst in insts:
                i = _find(target, inst.get("datasetId"))
                if i < 0:
                    raise ResourceNotFound(f"attribute {attr} has no instance with datasetId "
                                           f"{inst.get('datasetId')}")
                if inst.get(_value_key(inst)) == NULL:
                    target.pop(i)
                    continue
                target[i] = _merge_instance(target[i], inst, now, keep_type=True)
            if not target:
                del new["attrs"][attr]
            new["modifiedAt"] = now
            return new, None
        await self._one(tenant, Mutation(entity_id, fn))

    async def replace_attr(self, tenant: str, entity_id: str, attr: str, insts: list[Instance]) -> None:
        """PUT .../attrs/{attrId} (5.6.19): the instance is replaced whole."""
        def fn(cur: Entity | None) -> tuple[Any, Any]:
            if cur is None:
                raise ResourceNotFound(f"entity {entity_id} not found")
            if attr not in cur["attrs"]:
                raise ResourceNotFound(f"attribute {attr} not found in {entity_id}")
            now = now_iso()
            new = copy.deepcopy(cur)
            target = new["attrs"][attr]
            for inst in insts:
                i = _find(target, inst.get("datasetId"))
                if i < 0:
                    target.append(_stamp(inst, now))
                else:
                    target[i] = _stamp(inst, now, target[i].get("createdAt"))
            new["modifiedAt"] = now
            return new, None
        await self._one(tenant, Mutation(entity_id, fn))

    async def delete_attr(self, tenant: str, entity_id: str, attr: str, *, dataset_id: str | None = None,
                          delete_all: bool = False) -> None:
        def fn(cur: Entity | None) -> tuple[Any, Any]:
            if cur is None:
                raise ResourceNotFound(f"entity {entity_id} not found")
            insts = cur["attrs"].get(attr)
            if not insts:
                raise ResourceNotFound(f"attribute {attr} not found in {entity_id}")
            new = copy.deepcopy(cur)
            if delete_all:
                del new["attrs"][attr]
            else:
                target = new["attrs"][attr]
                i = _find(target, dataset_id)
                if i < 0:
                    raise ResourceNotFound(f"attribute {attr} has no instance with datasetId {dataset_id}")
                target.pop(i)
                if not target:
                    del new["attrs"][attr]
            new["modifiedAt"] = now_iso()
            return new, None
        await self._one(tenant, Mutation(entity_id, fn))

    # ---- batch ----------------------------------------------------------------------------------
    async def batch(self, tenant: str, mutations: list[Mutation]) -> list[Outcome]:
        return await self.store.mutate(tenant, mutations)

    # ---- reads ----------------------------------------------------------------------------------
    async def query(self, query: EntityQuery) -> QueryResult:
        return await self.store.query(query)


def _value_key(inst: Instance) -> str:
    from urbanmim.ngsild.entity import VALUE_KEY
    return VALUE_KEY.get(inst.get("type", "Property"), "value")


def _strip_nulls(inst: Instance) -> Instance:
    return {k: v for k, v in inst.items()
            if not (is_subattr_key(k) and isinstance(v, dict) and v.get(_value_key(v)) == NULL)}


def _merge_instance(old: Instance, patch: Instance, now: str, *, keep_type: bool = False) -> Instance:
    """Merge a patch instance into an existing one: given keys win, sub-attributes merge, null removes."""
    merged = dict(old)
    vkey_old = _value_key(old)
    if "type" in patch and patch["type"] != old.get("type") and not keep_type:
        merged.pop(vkey_old, None)
    for k, v in patch.items():
        if k in ("createdAt", "modifiedAt"):
            continue
        if is_subattr_key(k) and isinstance(v, dict):
            if v.get(_value_key(v)) == NULL:
                merged.pop(k, None)
            elif isinstance(merged.get(k), dict):
                merged[k] = _merge_instance(merged[k], v, now)
            else:
                merged[k] = dict(v, createdAt=now, modifiedAt=now)
        else:
            merged[k] = v
    if keep_type and patch.get("type") != old.get("type"):
        # a partial update may send the value in another (concise) form; keep the stored type
        if _value_key(patch) != vkey_old and _value_key(patch) in merged:
            merged[vkey_old] = merged.pop(_value_key(patch))
        merged["type"] = old.get("type", "Property")
    merged["modifiedAt"] = now
    merged.setdefault("createdAt", old.get("createdAt", now))
    return merged


def outcome_error(out: Outcome) -> NgsiError:
    err = out.error
    if isinstance(err, NgsiError):
        return err
    return BadRequestData(str(err))
