"""The ChangeListener that turns every entity write into attribute instances (clause 4.5.7).

The store calls :meth:`Recorder.__call__` inside the write transaction with the old and
the new entity; the records it returns are written in that same transaction, so the
history can never disagree with the state it describes.

* one record per created or changed attribute instance (an instance equal to its old
  self is untouched and not recorded); ``ts`` = observedAt if present, else modifiedAt;
* one record per deleted instance: the value is the NGSI-LD Null, ``deletedAt`` the
  write's time (what ``timeproperty=deletedAt`` finds);
* one entity-level record (``attr == ENTITY``) carrying types, scope and system times,
  so the temporal entity exists (and knows all its types) without a state lookup.

Temporal-API writes (POST /temporal/entities...) also go through the entity writer —
they update the current state with the newest instances — but their history is the
instances the client sent, not the state diff. Their mutation function announces those
records with :meth:`expect` just before the store calls the listener for the same
entity on the same (writer) thread; the listener then records exactly those.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from urbanmim.ngsild.entity import VALUE_KEY, Entity, Instance
from urbanmim.store.base import Change, TemporalRecord

ENTITY = ""          # attr of the entity-level record
NULL = "urn:ngsi-ld:null"


# Numbers beyond this magnitude are kept in the history but not aggregated: the hourly buckets
# keep a sum of squares (for stddev/sumsq), which must stay finite in float64 on both backends.
MAX_AGGREGATED = 1e150


def numeric(inst: Instance) -> float | None:
    """The value as a float when it is an aggregatable number (booleans are not numbers here)."""
    v = inst.get("value")
    if isinstance(v, bool) or not isinstance(v, (int, float)) or inst.get("type", "Property") != "Property":
        return None
    try:
        f = float(v)
    except OverflowError:       # an integer beyond float range
        return None
    return f if -MAX_AGGREGATED <= f <= MAX_AGGREGATED else None


def record_for(entity_id: str, etype: str, attr: str, inst: Instance, *, fallback: str) -> TemporalRecord:
    ts = inst.get("observedAt") or inst.get("modifiedAt") or fallback
    return TemporalRecord(entity_id, etype, attr, inst.get("datasetId"), ts, inst, numeric(inst))


def split_records(records: Iterable[TemporalRecord]) -> tuple[dict[str, TemporalRecord], list[TemporalRecord]]:
    """Entity-level records by entity id (one is made up, with just the type, for an entity that
    only has attribute records) and the attribute-instance records, in order. Every backend
    writes the first into its temporal-entity table and the second as instances."""
    entities: dict[str, TemporalRecord] = {}
    attrs: list[TemporalRecord] = []
    for rec in records:
        if rec.attr == ENTITY:
            entities[rec.entity_id] = rec
        else:
            attrs.append(rec)
    for rec in attrs:
        if rec.entity_id not in entities:
            entities[rec.entity_id] = TemporalRecord(rec.entity_id, rec.entity_type, ENTITY, None, rec.ts,
                                                     {"type": [rec.entity_type]})
    return entities, attrs


def merge_entity_record(doc: dict[str, Any], rec: TemporalRecord) -> dict[str, Any] | None:
    """The stored temporal entity after an entity-level record, or None when nothing changes.

    Shared by every backend so the rule is decided once: types are a union (an entity keeps
    its history under every type it had), the other entity members follow the newest record
    (``createdAt`` stays the first one), and a record that is not a deletion clears
    ``deletedAt``."""
    meta = rec.instance
    new = dict(doc)
    new.update({k: v for k, v in meta.items() if k not in ("type", "createdAt")})
    new["type"] = list(dict.fromkeys([*doc.get("type", []), *meta.get("type", [])]))
    if not rec.deleted:
        new.pop("deletedAt", None)
    return None if new == doc else new


def entity_record(ent: Entity, at: str, *, deleted: bool = False) -> TemporalRecord:
    meta: dict[str, Any] = {"type": list(ent.get("type") or []), "createdAt": ent.get("createdAt") or at,
                            "modifiedAt": ent.get("modifiedAt") or at}
    if "scope" in ent:
        meta["scope"] = ent["scope"]
    if deleted:
        meta["deletedAt"] = at
    return TemporalRecord(ent["id"], (ent.get("type") or [""])[0], ENTITY, None, at, meta, None, deleted)


def deleted_record(entity_id: str, etype: str, attr: str, old: Instance, at: str) -> TemporalRecord:
    typ = old.get("type", "Property")
    null: Any = {"@none": NULL} if typ == "LanguageProperty" else NULL
    inst: Instance = {"type": typ, VALUE_KEY.get(typ, "value"): null, "deletedAt": at}
    if "datasetId" in old:
        inst["datasetId"] = old["datasetId"]
    return TemporalRecord(entity_id, etype, attr, old.get("datasetId"), at, inst, None, True)


class Recorder:
    def __init__(self) -> None:
        self._local = threading.local()

    def expect(self, entity_id: str, records: list[TemporalRecord]) -> None:
        """Called by a temporal-API mutation: record these instead of the state diff."""
        self._local.pending = (entity_id, records)

    def __call__(self, change: Change) -> Iterable[TemporalRecord]:
        pending = getattr(self._local, "pending", None)
        self._local.pending = None
        old, new, at = change.old, change.new, change.at
        ent = new or old
        if ent is None:
            return []
        out = [entity_record(ent, at, deleted=new is None)]
        if pending is not None and pending[0] == change.entity_id and new is not None:
            return out + pending[1]
        etype = (ent.get("type") or [""])[0]
        old_attrs: dict[str, list[Instance]] = (old or {}).get("attrs", {})
        new_attrs: dict[str, list[Instance]] = (new or {}).get("attrs", {})
        for attr, insts in new_attrs.items():
            before = {i.get("datasetId"): i for i in old_attrs.get(attr, [])}
            for inst in insts:
                if before.get(inst.get("datasetId")) != inst:
                    out.append(record_for(change.entity_id, etype, attr, inst, fallback=at))
        for attr, insts in old_attrs.items():
            after = {i.get("datasetId") for i in new_attrs.get(attr, [])}
            for inst in insts:
                if inst.get("datasetId") not in after:
                    out.append(deleted_record(change.entity_id, etype, attr, inst, at))
        return out
