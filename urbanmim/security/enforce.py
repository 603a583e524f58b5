"""Enforcement: the access decision applied on every read and write path of the service layer.

Why here and not in a gateway: retrieve, query, batch, temporal reads and writes,
notifications, OGC API, the twin and the KPI engine all reach the store through
``app.state.entities`` (or, for notifications, through the notifier's guard), so wrapping
those calls once makes a policy hold everywhere, with the same combination rule
(``access.py``). Everything here is skipped when security is off or the caller is the
platform itself: :func:`enforcing` is the one test.

Honest paging: a query is filtered *before* it is paged. The store is asked for pages of
candidates until ``offset + limit`` visible entities are found (and, with ``count=true``,
until the end, so the count is the number of entities the caller may see). A query whose
filter (``q``, ``attrs``) names an attribute the caller may not see is decided again on the
filtered entity, so a hidden value cannot be probed with ``q=owner=="x"``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from urbanmim.errors import Forbidden, NgsiError, Unauthorized
from urbanmim.ngsild.entity import Entity
from urbanmim.security import ownership
from urbanmim.security.access import AccessControl, changed_attributes, visible_keys
from urbanmim.security.audit import AuditLog, record
from urbanmim.security.principal import Principal
from urbanmim.store.base import UNCHANGED, EntityQuery, Mutation, QueryResult, Store, TemporalEntity

PAGE_MIN = 100
PAGE_MAX = 1000


def enforcing(access: AccessControl, p: Principal) -> bool:
    return access.enabled and not p.system


def snapshot(cur: Entity) -> Entity:
    """A copy of ``cur`` that a mutation's in-place edits cannot reach (mutations replace instances,
    never edit them, so copying the containers is enough)."""
    out = dict(cur)
    out["type"] = list(cur.get("type") or ())
    if "scope" in cur:
        out["scope"] = list(cur["scope"])
    out["attrs"] = {k: list(v) for k, v in (cur.get("attrs") or {}).items()}
    return out


def require_authenticated(p: Principal, what: str = "write") -> None:
    if not p.authenticated:
        raise Unauthorized(f"authentication is required to {what}")


# ---- writes ----------------------------------------------------------------------------------------
def guard(access: AccessControl, audit: AuditLog | None, p: Principal, tenant: str,
          mutations: list[Mutation]) -> list[Mutation]:
    """Each mutation wrapped: decide on (before, after) inside the transaction, stamp ownership,
    note the audit entry; a refused mutation fails alone with 401/403."""
    require_authenticated(p)

    def wrap(m: Mutation) -> Mutation:
        inner = m.fn

        def fn(cur: Entity | None) -> tuple[Any, Any]:
            before = snapshot(cur) if cur is not None else None
            new, result = inner(cur)
            after = before if new is UNCHANGED else new
            try:
                access.check_write(p, tenant, before, after)
            except (Forbidden, Unauthorized) as e:
                if audit is not None:
                    audit.add(record(p, tenant, _action(before, after), "deny", [m.entity_id],
                                     changed_attributes(before, after), e.detail))
                raise
            if new is UNCHANGED:
                return new, result
            if new is not None:
                ownership.stamp(before, new, p, new.get("modifiedAt") or "")
            if audit is not None:
                audit.note_write(tenant, m.entity_id, new, record(
                    p, tenant, _action(before, new), "permit", [m.entity_id], changed_attributes(before, new)))
            return new, result
        return Mutation(m.entity_id, fn)
    return [wrap(m) for m in mutations]


def _action(before: Entity | None, after: Entity | None) -> str:
    return "create" if before is None else "delete" if after is None else "update"


def check_attribute_write(access: AccessControl, audit: AuditLog | None, p: Principal, tenant: str,
                          current: Entity | None, entity_id: str, attr: str | None) -> None:
    """For writes that bypass mutations (temporal history edits): may ``p`` change ``attr``
    (None: the whole entity) of the entity as it stands?"""
    require_authenticated(p)
    before = current or {"id": entity_id, "type": [], "attrs": {}}
    if attr is None:
        after: Entity | None = None
    else:
        after = snapshot(before)
        after["attrs"][attr] = [{"type": "Property", "value": {"@changed": True}}]
    try:
        access.check_write(p, tenant, before, after)
    except (Forbidden, Unauthorized) as e:
        if audit is not None:
            audit.add(record(p, tenant, "temporal-write", "deny", [entity_id], [attr] if attr else [], e.detail))
        raise
    if audit is not None:
        audit.add(record(p, tenant, "temporal-write", "permit", [entity_id], [attr] if attr else []))


# ---- reads -----------------------------------------------------------------------------------------
def probed(query: EntityQuery) -> frozenset[str] | None:
    """The attributes the query's filter looks at (None: possibly any — a geo-query), so that an
    entity with some of them hidden is decided again on what the caller may see."""
    if query.geo is not None:
        return None
    out: set[str] = set(query.attrs or ())
    if query.q is not None:
        attributes = getattr(query.q, "attributes", None)
        if attributes is None:
            return None
        out |= attributes()
    return frozenset(out)


def visible_match(access: AccessControl, p: Principal, query: EntityQuery, ent: Entity,
                  probe: frozenset[str] | None = None) -> Entity | None:
    vis = access.visible(p, query.tenant, ent)
    if vis is None or vis is ent:
        return vis
    if probe is None or not probe.isdisjoint(k for k in ent["attrs"] if k not in vis["attrs"]):
        if not query.matches(vis):
            return None
    return vis


async def query(store: Store, access: AccessControl, audit: AuditLog | None, p: Principal,
                q: EntityQuery, action: str = "query") -> QueryResult:
    """``store.query`` as ``p`` sees it: filtered first, then paged; the count counts what ``p`` sees."""
    want_offset, want_limit = q.offset, q.limit
    out: list[Entity] = []
    seen = 0
    store_offset = 0
    page = max(want_offset + want_limit, 1)          # if all is visible, the first page is all we need
    probe = probed(q)
    while True:
        got = (await store.query(dataclasses.replace(q, offset=store_offset, limit=page, count=False))).entities
        for ent in got:
            vis = visible_match(access, p, q, ent, probe)
            if vis is None:
                continue
            if seen >= want_offset and len(out) < want_limit:
                out.append(vis)
            seen += 1
        if len(got) < page or (not q.count and len(out) >= want_limit):
            break
        store_offset += page
        page = min(max(page * 2, PAGE_MIN), PAGE_MAX)
    if audit is not None:
        audit.read(p, q.tenant, action, out)
    return QueryResult(out, count=seen if q.count else None)


def retrieve(access: AccessControl, audit: AuditLog | None, p: Principal, tenant: str,
             ent: Entity) -> Entity | None:
    vis = access.visible(p, tenant, ent)
    if audit is not None:
        if vis is None:
            audit.add(record(p, tenant, "retrieve", "deny", [ent["id"]], [], "not visible to this caller"))
        else:
            audit.read(p, tenant, "retrieve", [vis])
    return vis


class FilteringReader:
    """What ``fetch_linked`` needs (``get_many``), seeing only what ``p`` may see."""

    def __init__(self, store: Any, access: AccessControl, p: Principal):
        self.store, self.access, self.p = store, access, p

    async def get_many(self, tenant: str, ids: Any) -> dict[str, Entity]:
        got = await self.store.get_many(tenant, ids)
        if not enforcing(self.access, self.p):
            return dict(got)
        out = {}
        for eid, ent in got.items():
            vis = self.access.visible(self.p, tenant, ent)
            if vis is not None:
                out[eid] = vis
        return out


async def temporal(store: Store, access: AccessControl, audit: AuditLog | None, p: Principal, tenant: str,
                   ents: list[TemporalEntity]) -> list[TemporalEntity]:
    """Temporal entities as ``p`` may see them: invisible ones dropped, hidden attributes removed.

    The decision is made on the entity's current state (where its owner record lives); an
    entity deleted from the current state is judged on its newest temporal instances."""
    if not ents:
        return ents
    current = await store.get_many(tenant, [e.entity_id for e in ents])
    out = []
    for e in ents:
        ent = current.get(e.entity_id)
        if ent is None:
            ent = {"id": e.entity_id, "type": list(e.types), "attrs": await store.temporal_latest(tenant, e.entity_id)}
            if e.scope:
                ent["scope"] = e.scope
        v = access.verdict(p, tenant, ent)
        if not v.allowed:
            continue
        keep = set(visible_keys(e.attrs, v.hidden, v.only))
        out.append(e if keep == e.attrs else dataclasses.replace(e, attrs=keep))
    if audit is not None:
        audit.add(record(p, tenant, "temporal", "permit", [e.entity_id for e in out],
                         set().union(*(e.attrs for e in out)) if out else set()))
    return out


# ---- notifications -----------------------------------------------------------------------------------
def notification_guard(access: AccessControl, audit: AuditLog | None, policies: Any = None) -> Any:
    """The notifier's ``guard(sub, payloads, store) -> (payloads, store)``: each notified entity
    filtered with the subscription creator's principal *at delivery time*, so a revoked right
    (role, rule, agreement, consent) holds from the next notification on."""
    def run(sub: Any, payloads: list[dict[str, Any]], store: Any) -> tuple[list[dict[str, Any]], Any]:
        if not access.enabled:
            return payloads, store
        raw = sub.doc.get("_principal")
        p = Principal.from_json(raw) if isinstance(raw, dict) else None
        if p is None or p.system:
            return payloads, store    # created with security off / by the platform itself
        if policies is not None and p.entities is None:   # role bindings as they stand now
            from urbanmim.security.tokens import BoundRoles
            p = dataclasses.replace(p, roles=BoundRoles(p.roles, p.subject, policies))
        out = []
        shown: list[Entity] = []
        for pl in payloads:
            ents = []
            for ent in pl.get("entities") or ():
                vis = access.visible(p, sub.tenant, ent)
                if vis is not None and vis is not ent and sub.q is not None and "deletedAt" not in ent \
                        and not sub.q.matches(vis):
                    vis = None       # the subscription's q looked at something the subscriber may not see
                if vis is not None:
                    ents.append(vis)
            if ents:
                out.append(pl if len(ents) == len(pl.get("entities") or ()) and all(
                    a is b for a, b in zip(ents, pl["entities"], strict=False)) else {**pl, "entities": ents})
                shown.extend(ents)
        if audit is not None and shown:
            audit.read(p, sub.tenant, "notify", shown, reason=f"subscription {sub.id}")
        return out, FilteringReader(store, access, p)
    return run


def explain(access: AccessControl, p: Principal, tenant: str, ent: Entity) -> list[dict[str, Any]]:
    return [d.to_json() for d in access.explain(p, tenant, ent)]


__all__ = ["NgsiError", "FilteringReader", "check_attribute_write", "enforcing", "explain", "guard",
           "notification_guard", "query", "retrieve", "temporal"]
