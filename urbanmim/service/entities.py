"""Entity operations — where every write decision lives (clause 5.6 and 5.9 of the spec).

HTTP routes, batch operations, MQTT ingestion and the apps all call these functions.
Each write is expressed as a *mutation*: a pure function from the current entity
(or None) to the new one, which the store runs inside its transaction. That keeps
read-modify-write atomic without locks here, and lets one batch see its own writes.
"""

from __future__ import annotations

import contextvars
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from urbanmim.errors import AlreadyExists, BadRequestData, NgsiError, ResourceNotFound
from urbanmim.ngsild.entity import NGSILD, VALUE_KEY, Entity, Instance, is_subattr_key
from urbanmim.ngsild.payload import NULL
from urbanmim.security import enforce, ownership
from urbanmim.security.access import AccessControl
from urbanmim.security.principal import current_principal
from urbanmim.store.base import UNCHANGED, EntityQuery, Mutation, Outcome, QueryResult, Store

SCOPE = NGSILD + "scope"   # what the attribute name "scope" expands to (it is not an attribute)


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
        # Write validators (issue 5, MIM2 — added by urbanmim/models): each is called as
        # ``v(tenant, new_entity)`` inside the writer transaction, on every entity a mutation of
        # this service is about to store (not on deletions), and may raise an NgsiError to refuse
        # that one write. They run in the caller's contextvars context, so a validator can report
        # to the request that caused the write. No validators: the mutations are left untouched.
        self.validators: list[Callable[[str, Entity], None]] = []
        # MIM6 (urbanmim/security): the access decision and the audit log. Disabled by default
        # (security off): then nothing below costs anything. With security on, every read is
        # filtered for the request's principal and every write decided inside its transaction.
        self.access = AccessControl()
        self.audit: Any = None

    def guard(self, tenant: str, mutations: list[Mutation]) -> list[Mutation]:
        """The mutations, each decided for the current principal inside the transaction (a no-op
        with security off); for writers that bypass :meth:`_validated` (temporal history)."""
        p = current_principal()
        if not enforce.enforcing(self.access, p):
            return mutations
        return enforce.guard(self.access, self.audit, p, tenant, mutations)

    def _validated(self, tenant: str, mutations: list[Mutation]) -> list[Mutation]:
        """The mutations, each wrapped to run :attr:`validators` on the entity it produces
        (and, with security on, decided for the current principal: :meth:`guard`)."""
        mutations = self.guard(tenant, mutations)
        if not self.validators:
            return mutations
        validators = list(self.validators)
        ctx = contextvars.copy_context()

        def wrap(m: Mutation) -> Mutation:
            inner = m.fn

            def fn(cur: Entity | None) -> tuple[Any, Any]:
                new, result = inner(cur)
                if new is not None and new is not UNCHANGED:
                    for v in validators:
                        ctx.run(v, tenant, new)
                return new, result
            return Mutation(m.entity_id, fn)
        return [wrap(m) for m in mutations]

    # ---- single-entity writes -----------------------------------------------------------------
    async def _one(self, tenant: str, m: Mutation) -> Any:
        (out,) = await self.store.mutate(tenant, self._validated(tenant, [m]))
        if out.error is not None:
            raise out.error
        return out.result

    @staticmethod
    def create_fn(ent: Entity) -> Any:
        def fn(cur: Entity | None) -> tuple[Any, Any]:
            if cur is not None:
                raise AlreadyExists(f"entity {ent['id']} already exists")
            now = now_iso()
            new = ent
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
        p = current_principal()
        if enforce.enforcing(self.access, p):
            vis = enforce.retrieve(self.access, self.audit, p, tenant, ent)
            if vis is None:      # not visible is not found: existence is not disclosed
                raise ResourceNotFound(f"entity {entity_id} not found")
            return vis
        return ent

    def reader(self) -> Any:
        """A ``get_many`` source for linked entities (join) that sees what the caller may see."""
        p = current_principal()
        if not enforce.enforcing(self.access, p):
            return self.store
        return enforce.FilteringReader(self.store, self.access, p)

    async def temporal_visible(self, tenant: str, ents: list[Any]) -> list[Any]:
        """Temporal entities (``store.TemporalEntity``) as the caller may see them."""
        p = current_principal()
        if not enforce.enforcing(self.access, p):
            return ents
        return await enforce.temporal(self.store, self.access, self.audit, p, tenant, ents)

    async def check_temporal_write(self, tenant: str, entity_id: str, attr: str | None) -> None:
        """May the caller change the history of ``attr`` (None: the whole entity)?"""
        p = current_principal()
        if enforce.enforcing(self.access, p):
            current = await self.store.get(tenant, entity_id)
            enforce.check_attribute_write(self.access, self.audit, p, tenant, current, entity_id, attr)

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
            new = ent
            if "type" not in new:
                new["type"] = cur["type"]
            new["createdAt"] = cur.get("createdAt", now)
            new["modifiedAt"] = now
            for insts in new["attrs"].values():
                for inst in insts:
                    _stamp(inst, now)
            ownership.carry(cur, new)
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
            new = cur
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
                    if _is_null(inst):
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
    def append_fn(entity_id: str, frag: dict[str, Any], *, no_overwrite: bool) -> Any:
        """Append Entity Attributes (5.6.3): new attributes/instances are added; existing ones are
        replaced unless ``noOverwrite`` (then reported as not updated). Types are always added;
        the scope is replaced, or with ``noOverwrite`` extended (4.18)."""
        def fn(cur: Entity | None) -> tuple[Any, Any]:
            if cur is None:
                raise ResourceNotFound(f"entity {entity_id} not found")
            now = now_iso()
            new = cur
            report = AttrReport()
            changed = _add_types(new, frag)
            if frag.get("scope") is not None:
                scope = new.get("scope", []) + frag["scope"] if no_overwrite else frag["scope"]
                scope = list(dict.fromkeys(scope))
                if scope != new.get("scope"):
                    new["scope"] = scope
                    changed = True
            for iri, insts in frag["attrs"].items():
                existing = new["attrs"].setdefault(iri, [])
                done = False
                for inst in insts:
                    i = _find(existing, inst.get("datasetId"))
                    if i >= 0:
                        if no_overwrite:
                            report.not_updated.append((iri, "attribute exists and noOverwrite was requested"))
                            continue
                        existing[i] = _stamp(inst, now, existing[i].get("createdAt"))
                    else:
                        existing.append(_stamp(inst, now))
                    done = True
                if not existing:
                    del new["attrs"][iri]
                if done:
                    report.updated.append(iri)
            if not report.updated and not changed:
                return UNCHANGED, report
            new["modifiedAt"] = now
            return new, report
        return fn

    @staticmethod
    def update_fn(entity_id: str, frag: dict[str, Any]) -> Any:
        """Update Attributes (V1.9.1 5.6.2.4): the instance with the same datasetId (or the default
        one) is replaced, keeping its createdAt, or appended when absent; an NGSI-LD Null deletes
        it (a Null for a missing instance is reported as not updated). Types are added; the scope
        is replaced only where the entity has one, otherwise ignored (reported as not updated)."""
        def fn(cur: Entity | None) -> tuple[Any, Any]:
            if cur is None:
                raise ResourceNotFound(f"entity {entity_id} not found")
            now = now_iso()
            new = cur
            report = AttrReport()
            changed = _add_types(new, frag)
            if "scope" in frag:
                if "scope" not in new:
                    report.not_updated.append(("scope", "the entity has no scope to update"))
                elif frag["scope"] is None:
                    del new["scope"]
                    report.updated.append("scope")
                else:
                    new["scope"] = frag["scope"]
                    report.updated.append("scope")
            for iri, insts in frag["attrs"].items():
                existing = new["attrs"].get(iri, [])
                done = False
                for inst in insts:
                    i = _find(existing, inst.get("datasetId"))
                    if _is_null(inst):
                        if i < 0:
                            report.not_updated.append((iri, "no such attribute instance to delete"))
                            continue
                        existing.pop(i)
                    elif i < 0:
                        existing.append(_stamp(_strip_nulls(inst), now))
                    else:
                        existing[i] = _stamp(_strip_nulls(inst), now, existing[i].get("createdAt"))
                    done = True
                if existing:
                    new["attrs"][iri] = existing
                else:
                    new["attrs"].pop(iri, None)
                if done:
                    report.updated.append(iri)
            if not report.updated and not changed:
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
        result: AttrReport = await self._one(tenant, Mutation(entity_id, self.update_fn(entity_id, frag)))
        return result

    async def partial_update_attr(self, tenant: str, entity_id: str, attr: str, patch: Instance, *,
                                  explicit_type: bool = True) -> None:
        """PATCH .../attrs/{attrId} (5.6.4): merge a fragment into the instance with the same datasetId.

        The fragment may hold any subset of the attribute's members. A type given explicitly
        must be the stored one (the operation cannot change it); an NGSI-LD Null value deletes
        the instance; a null sub-attribute deletes that sub-attribute.
        """
        def fn(cur: Entity | None) -> tuple[Any, Any]:
            if cur is None:
                raise ResourceNotFound(f"entity {entity_id} not found")
            if not cur["attrs"].get(attr):
                raise ResourceNotFound(f"attribute {attr} not found in {entity_id}")
            now = now_iso()
            new = cur
            target = new["attrs"][attr]
            ds = patch.get("datasetId")
            i = _find(target, ds)
            if i < 0:
                raise ResourceNotFound(f"attribute {attr} has no instance with datasetId {ds}")
            old = target[i]
            old_type = old.get("type", "Property")
            fix = dict(patch)
            ptype = fix.pop("type", None)
            if ptype is not None and ptype != old_type:
                if explicit_type:
                    raise BadRequestData(f"attribute {attr} is a {old_type}, not a {ptype}")
                # concise input: a bare value goes to the stored type's value key
                pkey = VALUE_KEY.get(ptype, "value")
                if pkey in fix:
                    if pkey != "value" and fix[pkey] != NULL:
                        raise BadRequestData(f"attribute {attr} is a {old_type}, not a {ptype}")
                    fix[VALUE_KEY.get(old_type, "value")] = fix.pop(pkey)
            if _is_null(dict(fix, type=old_type)):
                target.pop(i)
            else:
                target[i] = _merge_instance(old, fix, now)
            if not target:
                del new["attrs"][attr]
            new["modifiedAt"] = now
            return new, None
        await self._one(tenant, Mutation(entity_id, fn))

    async def replace_attr(self, tenant: str, entity_id: str, attr: str, insts: list[Instance]) -> None:
        """PUT .../attrs/{attrId} (5.6.19): the instance (same datasetId) is replaced whole."""
        def fn(cur: Entity | None) -> tuple[Any, Any]:
            if cur is None:
                raise ResourceNotFound(f"entity {entity_id} not found")
            if attr not in cur["attrs"]:
                raise ResourceNotFound(f"attribute {attr} not found in {entity_id}")
            now = now_iso()
            new = cur
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
        """DELETE .../attrs/{attrId} (5.6.5): the default instance, the one with ``datasetId``, or
        all of them; ``scope`` (not an attribute, 4.18) removes the entity's scope."""
        def fn(cur: Entity | None) -> tuple[Any, Any]:
            if cur is None:
                raise ResourceNotFound(f"entity {entity_id} not found")
            new = cur
            if attr == SCOPE and attr not in cur["attrs"]:
                if "scope" not in new:
                    raise ResourceNotFound(f"entity {entity_id} has no scope")
                del new["scope"]
                new["modifiedAt"] = now_iso()
                return new, None
            insts = cur["attrs"].get(attr)
            if not insts:
                raise ResourceNotFound(f"attribute {attr} not found in {entity_id}")
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

    # ---- purge (5.6.21) -----------------------------------------------------------------------------
    @staticmethod
    def purge_fn(query: EntityQuery, keep: set[str] | None, drop: set[str] | None) -> Any:
        """Delete the entity, or only some of its attributes, if it (still) matches ``query``.

        The match is decided again inside the writer transaction, so an entity changed since
        the candidates were listed is judged on its current state."""
        def fn(cur: Entity | None) -> tuple[Any, Any]:
            if cur is None or not query.matches(cur):
                return UNCHANGED, False
            if keep is None and drop is None:
                return None, True
            attrs = {k: v for k, v in cur["attrs"].items()
                     if (keep is None or k in keep) and (drop is None or k not in drop)}
            if len(attrs) == len(cur["attrs"]):
                return UNCHANGED, False
            new = dict(cur, attrs=attrs, modifiedAt=now_iso())
            return new, True
        return fn

    async def purge(self, query: EntityQuery, *, keep: set[str] | None = None, drop: set[str] | None = None,
                    page: int = 500) -> int:
        """Purge Entities: every entity matching ``query`` is deleted (or trimmed by keep/drop).

        Candidates are listed first (the query pages through the store), then deleted in
        batches of mutations; returns how many entities were changed."""
        ids: list[str] = []
        offset = 0
        while True:
            q = dataclasses.replace(query, limit=page, offset=offset, count=False)
            got = (await self.store.query(q)).entities
            ids.extend(e["id"] for e in got)
            if len(got) < page:
                break
            offset += page
        changed = 0
        fn = self.purge_fn(query, keep, drop)
        for i in range(0, len(ids), page):
            muts = self._validated(query.tenant, [Mutation(eid, fn) for eid in ids[i:i + page]])
            outs = await self.store.mutate(query.tenant, muts)
            changed += sum(1 for o in outs if o.error is None and o.result)
        return changed

    # ---- batch ----------------------------------------------------------------------------------
    async def batch(self, tenant: str, mutations: list[Mutation]) -> list[Outcome]:
        return await self.store.mutate(tenant, self._validated(tenant, mutations))

    # ---- reads ----------------------------------------------------------------------------------
    async def query(self, query: EntityQuery) -> QueryResult:
        p = current_principal()
        if enforce.enforcing(self.access, p):
            return await enforce.query(self.store, self.access, self.audit, p, query)
        return await self.store.query(query)


def _value_key(inst: Instance) -> str:
    return VALUE_KEY.get(inst.get("type", "Property"), "value")


def _is_null(inst: Instance) -> bool:
    """Is this fragment instance an NGSI-LD Null (payload.py normalises every form to NULL)?"""
    return inst.get(_value_key(inst)) == NULL


def _add_types(new: Entity, frag: dict[str, Any]) -> bool:
    """Types in a fragment are added to the entity's (4.16: an entity's types only grow)."""
    added = False
    for t in frag.get("type") or ():
        if t not in new["type"]:
            new["type"].append(t)
            added = True
    return added


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
