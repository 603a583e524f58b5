"""Data subject rights: export everything held about a subject, and erase it (GDPR Art. 15, 17, 20).

Plain service functions (the HTTP handlers in ``api.py`` only check who asks and format):

* :func:`find_holdings` — every entity that refers, or referred, to the subject through a
  personal-data rule: in the current state (the subject attribute holds the subject's id, or
  the entity *is* the subject) and in the temporal history (the subject attribute held it at
  some time, also for entities deleted since). For each, the **periods** during which it
  referred to the subject, so a car sold by Alice to Bob exports and erases Alice's part of
  its history only.
* :func:`export_subject` — the personal attributes of each holding's current state, their
  history instances inside the subject's periods, the subject's consents and erasure records.
* :func:`erase_subject` — through the services: the personal attributes (and the link to
  the subject) are deleted from the current state with one mutation per entity; an entity
  that *is* the subject is deleted whole, with its whole history; in the history, each
  personal attribute's instances inside the subject's periods are deleted (whole attribute
  histories at once where the entity never referred to anyone else), which also recomputes
  the hourly aggregation buckets. Active consents are revoked, and an erasure record (no
  values, hashed ids) is written.

Everything here runs as the platform (``SYSTEM``): the caller was checked by the handler.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from urbanmim.consent.model import (
    A_SUBJECT_HASH,
    ERASURE_TYPE,
    Consent,
    PersonalDataRule,
    erasure_entity,
    erasure_json,
    pseudonym,
)
from urbanmim.consent.registry import ConsentRegistry, now_ms
from urbanmim.consent.service import revoke
from urbanmim.ngsild.contexts import TermMap
from urbanmim.ngsild.entity import Entity, default_instance, value_of
from urbanmim.ngsild.render import View, render_entity
from urbanmim.security.principal import SYSTEM, use_principal
from urbanmim.service.entities import EntityService, now_iso, outcome_error
from urbanmim.store.base import UNCHANGED, EntityQuery, Mutation, StoredInstance, TemporalSpan, all_of_type, page_all
from urbanmim.temporal.recorder import NULL
from urbanmim.temporal.service import _render_one as render_history_instance  # as GET /temporal renders it
from urbanmim.temporal.timeutil import iso

ALL = 1 << 62
Period = tuple[int, int | None]          # [start, end) in epoch ms; end None = still referring


@dataclass
class Holding:
    """One entity that holds (or held) personal data of the subject."""

    entity_id: str
    types: list[str]
    rules: list[PersonalDataRule] = field(default_factory=list)
    current: Entity | None = None          # the current state, when it refers to the subject now
    is_subject: bool = False               # the entity is the subject itself (rule subject "@self")
    periods: list[Period] | None = None    # None: all of its history is about the subject
    history_attrs: set[str] = field(default_factory=set)   # erasable attributes with history

    @property
    def attributes(self) -> frozenset[str]:
        """Personal attributes plus the subject link (what export shows and erasure removes)."""
        out: frozenset[str] = frozenset()
        for r in self.rules:
            out |= r.erasable()
        return out


def _ids(inst: dict[str, Any]) -> set[str]:
    v = value_of(inst)
    vals = v if isinstance(v, list) else [v]
    return {x for x in vals if isinstance(x, str) and x and x != NULL}


def subject_periods(link: list[StoredInstance], subject: str) -> tuple[list[Period], bool]:
    """The periods during which the subject attribute's history referred to ``subject``, and
    whether it never referred to anyone else (then the whole history is the subject's)."""
    periods: list[Period] = []
    start: int | None = None
    exclusive = True
    for inst in sorted(link, key=lambda r: (r.ts, r.instance_id)):
        ids = _ids(inst.instance)
        if ids - {subject}:
            exclusive = False
        if subject in ids:
            if start is None:
                start = inst.ts
        elif start is not None:
            periods.append((start, inst.ts))
            start = None
    if start is not None:
        periods.append((start, None))
    return periods, exclusive


def in_periods(ts: int, periods: list[Period] | None) -> bool:
    if periods is None:
        return True
    return any(s <= ts and (e is None or ts < e) for s, e in periods)


async def _instances(store: Any, tenant: str, eid: str, attr: str) -> list[StoredInstance]:
    return list(await store.temporal_instances(tenant, eid, attr, TemporalSpan(), newest_first=False, limit=ALL))


async def find_holdings(app: Any, tenant: str, subject: str) -> list[Holding]:
    """Every entity of a marked type that refers or referred to ``subject`` (see module docstring)."""
    registry: ConsentRegistry = app.state.consent
    rules = list(registry.tenant(tenant).rules.values())
    if not rules:
        return []
    store = app.state.store
    svc: EntityService = app.state.entities
    found: dict[str, Holding] = {}

    def holding(eid: str, types: Iterable[str], rule: PersonalDataRule) -> Holding:
        h = found.get(eid)
        if h is None:
            h = found[eid] = Holding(eid, list(types))
        if rule not in h.rules:
            h.rules.append(rule)
        return h

    with use_principal(SYSTEM):
        for rule in rules:
            t = frozenset({rule.type_iri})
            if rule.subject_attribute is None:
                ents = (await svc.query(EntityQuery(tenant=tenant, ids=[subject], types=[t], limit=1))).entities
            else:
                ents = [e for e in await page_all(svc, EntityQuery(tenant=tenant, types=[t],
                                                                attrs={rule.subject_attribute}))
                        if subject in rule.subjects(e)]
            for e in ents:
                h = holding(e["id"], e["type"], rule)
                h.current = e
                h.is_subject = h.is_subject or rule.subject_attribute is None
    # the history: also entities deleted since, and entities that referred to the subject before
    by_type: dict[str, list[PersonalDataRule]] = {}
    for r in rules:
        by_type.setdefault(r.type_iri, []).append(r)
    self_types = {r.type_iri for r in rules if r.subject_attribute is None}
    candidates = await store.temporal_entities(tenant, [subject]) if len(self_types) == len(rules) \
        else await store.temporal_entities(tenant)
    for te in candidates:
        for t in te.types:
            for rule in by_type.get(t, ()):
                if rule.subject_attribute is None:
                    if te.entity_id != subject:
                        continue
                    h = holding(te.entity_id, te.types, rule)
                    h.is_subject = True
                elif rule.subject_attribute in te.attrs:
                    periods, exclusive = subject_periods(
                        await _instances(store, tenant, te.entity_id, rule.subject_attribute), subject)
                    if not periods:
                        continue
                    h = holding(te.entity_id, te.types, rule)
                    if not h.is_subject:
                        h.periods = None if exclusive else (h.periods or []) + periods
                else:
                    continue
                h.history_attrs |= rule.erasable() & te.attrs
    for h in found.values():
        if h.is_subject:
            h.periods = None
    return sorted(found.values(), key=lambda h: h.entity_id)


# ---- export -----------------------------------------------------------------------------------------
async def export_subject(app: Any, tenant: str, subject: str, ctx: TermMap) -> dict[str, Any]:
    """One JSON document: everything the platform holds about ``subject`` in ``tenant``."""
    store = app.state.store
    registry: ConsentRegistry = app.state.consent
    view = View(ctx=ctx, sys_attrs=True)
    now = now_ms()
    entities = []
    for h in await find_holdings(app, tenant, subject):
        keep = h.attributes
        item: dict[str, Any] = {"id": h.entity_id, "type": [ctx.compact(t) for t in h.types],
                                "theEntityIsTheSubject": h.is_subject,
                                "personalAttributes": sorted(ctx.compact(a) for a in keep)}
        if h.current is not None:
            cur = dict(h.current, attrs={k: v for k, v in h.current["attrs"].items() if k in keep})
            body = render_entity(cur, view)
            item["current"] = {k: v for k, v in body.items() if k not in ("id", "type")}
        history: dict[str, list[Any]] = {}
        for attr in sorted(h.history_attrs):
            rows = [r for r in await _instances(store, tenant, h.entity_id, attr) if in_periods(r.ts, h.periods)]
            if rows:
                history[ctx.compact(attr)] = [render_history_instance(r, view) for r in rows]
        item["history"] = history
        if h.periods is not None:
            item["periods"] = [{"from": iso(s), "until": iso(e) if e is not None else None} for s, e in h.periods]
        entities.append(item)
    consents = sorted(registry.consents_of(tenant, subject), key=lambda c: (c.given_at, c.id))
    return {"subject": subject, "tenant": tenant, "exportedAt": now_iso(), "entities": entities,
            "consents": [c.to_json(now) for c in consents],
            "erasures": await erasures_of(app, tenant, subject)}


def export_lines(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The export as JSON Lines records: one per entity state, history instance, consent, erasure."""
    out: list[dict[str, Any]] = [{"record": "subject", "subject": doc["subject"], "tenant": doc["tenant"],
                                  "exportedAt": doc["exportedAt"]}]
    for e in doc["entities"]:
        out.append({"record": "entity", **{k: v for k, v in e.items() if k != "history"}})
        for attr, rows in e["history"].items():
            out.extend({"record": "instance", "entityId": e["id"], "attribute": attr, "instance": r} for r in rows)
    out.extend({"record": "consent", **c} for c in doc["consents"])
    out.extend({"record": "erasure", **r} for r in doc["erasures"])
    return out


async def erasures_of(app: Any, tenant: str, subject: str | None = None) -> list[dict[str, Any]]:
    """Erasure records of a tenant (of one subject: matched by its pseudonym), oldest first."""
    with use_principal(SYSTEM):
        ents = await all_of_type(app.state.store, tenant, ERASURE_TYPE)
    if subject is not None:
        h = pseudonym(tenant, subject)
        ents = [e for e in ents if (default_instance(e["attrs"].get(A_SUBJECT_HASH) or []) or {}).get("value") == h]
    return sorted((erasure_json(e) for e in ents), key=lambda r: (r["erasedAt"] or "", r["id"]))


# ---- erasure ----------------------------------------------------------------------------------------
def _drop_fn(attrs: frozenset[str]) -> Any:
    def fn(cur: Entity | None) -> tuple[Any, Any]:
        if cur is None:
            return UNCHANGED, []
        gone = sorted(a for a in attrs if a in cur["attrs"])
        if not gone:
            return UNCHANGED, []
        new = dict(cur, attrs={k: v for k, v in cur["attrs"].items() if k not in attrs}, modifiedAt=now_iso())
        return new, gone
    return fn


async def erase_subject(app: Any, tenant: str, subject: str, requested_by: str, ctx: TermMap) -> dict[str, Any]:
    """Erase the subject's personal data in the current state and the history; return the receipt."""
    store = app.state.store
    svc: EntityService = app.state.entities
    registry: ConsentRegistry = app.state.consent
    holdings = await find_holdings(app, tenant, subject)
    receipt_items: list[dict[str, Any]] = []
    record_items: list[dict[str, Any]] = []
    with use_principal(SYSTEM):
        for h in holdings:
            state_attrs: list[str] = []
            history_deleted = 0
            if h.is_subject:
                if h.current is not None:
                    (out,) = await svc.batch(tenant, [Mutation(h.entity_id, lambda cur: (None, True) if cur
                                                               else (UNCHANGED, False))])
                    if out.error is not None:
                        raise outcome_error(out)
                    state_attrs = sorted(h.current["attrs"])
                for attr in sorted((await _temporal_attrs(store, tenant, h.entity_id)) | h.history_attrs):
                    history_deleted += len(await _instances(store, tenant, h.entity_id, attr))
                await store.temporal_delete(tenant, h.entity_id)
            else:
                if h.current is not None:
                    (out,) = await svc.batch(tenant, [Mutation(h.entity_id, _drop_fn(h.attributes))])
                    if out.error is not None:
                        raise outcome_error(out)
                    state_attrs = list(out.result or [])
                # after the state write: its deletion records are part of what goes
                for attr in sorted(h.attributes & (h.history_attrs | set(state_attrs))):
                    rows = await _instances(store, tenant, h.entity_id, attr)
                    if h.periods is None:
                        if rows:
                            await store.temporal_delete(tenant, h.entity_id, attr, delete_all=True)
                        history_deleted += len(rows)
                        continue
                    for r in rows:
                        if in_periods(r.ts, h.periods) and await store.temporal_instance_update(
                                tenant, h.entity_id, attr, r.instance_id, None, now_iso()):
                            history_deleted += 1
            attrs = sorted(set(state_attrs) | h.attributes) if not h.is_subject else sorted(state_attrs)
            receipt_items.append({"id": h.entity_id, "type": [ctx.compact(t) for t in h.types],
                                  "entityDeleted": h.is_subject, "attributes": [ctx.compact(a) for a in attrs],
                                  "historyInstancesDeleted": history_deleted})
            record_items.append({"entity": pseudonym(tenant, h.entity_id), "types": list(h.types),
                                 "entityDeleted": h.is_subject, "attributes": attrs,
                                 "historyInstancesDeleted": history_deleted})
        revoked = await revoke_all(app, tenant, registry.consents_of(tenant, subject), "erasure of the subject")
        at = now_iso()
        record_id = "urn:ngsi-ld:ErasureRecord:" + uuid.uuid4().hex
        await svc.create(tenant, erasure_entity(record_id, tenant, subject, requested_by, at, record_items,
                                                len(revoked)))
    return {"id": record_id, "subject": subject, "tenant": tenant, "erasedAt": at, "requestedBy": requested_by,
            "entities": receipt_items, "consentsRevoked": revoked,
            "kept": "an erasure record with hashed subject and entity ids, types, attribute names and counts "
                    "(no values); backups made before this moment still hold the data until they expire"}


async def _temporal_attrs(store: Any, tenant: str, eid: str) -> set[str]:
    found = await store.temporal_entities(tenant, [eid])
    return set(found[0].attrs) if found else set()


async def revoke_all(app: Any, tenant: str, consents: Iterable[Consent], by: str) -> list[str]:
    """Revoke every still-active consent of ``consents`` (one write each); the ids revoked."""
    now = now_ms()
    out = []
    for c in consents:
        if c.status(now) == "active":
            await revoke(app, tenant, c, by)
            out.append(c.id)
    return out
