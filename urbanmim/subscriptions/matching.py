"""Which subscriptions a change triggers: the store ChangeListener that fills the outbox.

It runs in the SQLite writer thread, inside the write transaction, for every entity change,
so it must be cheap and must never read the database: subscriptions are compiled once
(q, scopeQ, geoQ, type expressions parsed; expiry parsed) into a per-tenant in-memory
cache that the subscription routes refresh on every create/update/delete. The cache is
replaced by whole dicts (atomic under the GIL), so the writer never sees a half update.

What the listener returns is an :class:`OutboxRecord` whose payload is *renderable*: the
entity (with deleted attributes as ``urn:ngsi-ld:null`` instances and, for showChanges,
``previousValue``-style members), the trigger reason and a notification id chosen here —
so a retried notification keeps its id and receivers can de-duplicate.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any
from urllib.parse import unquote

from urbanmim.ngsild import geo, qlang
from urbanmim.ngsild.contexts import TermMap
from urbanmim.ngsild.entity import VALUE_KEY, Entity
from urbanmim.ngsild.params import parse_type_expression
from urbanmim.store.attempt import current as write_attempt
from urbanmim.store.base import Change, OutboxRecord
from urbanmim.subscriptions.model import DEFAULT_TRIGGERS

NULL = "urn:ngsi-ld:null"


@dataclass
class Selector:
    ids: str | None
    id_re: re.Pattern[str] | None
    types: list[frozenset[str]]

    def matches(self, ent: Entity) -> bool:
        if self.ids is not None and ent["id"] != self.ids:
            return False
        if self.id_re is not None and not self.id_re.search(ent["id"]):
            return False
        etypes = set(ent["type"])
        return any(g <= etypes for g in self.types)


@dataclass
class Compiled:
    """One subscription, ready for matching (built on the event loop, read by the writer)."""

    tenant: str
    doc: dict[str, Any]
    ctx: TermMap                      # renders notifications (jsonldContext, else the request's)
    selectors: list[Selector]
    watched: frozenset[str] | None
    triggers: frozenset[str]
    q: Any = None
    scope_q: Any = None
    geo_q: Any = None
    throttling: float = 0.0
    time_interval: float = 0.0
    expires: float | None = None      # epoch seconds
    active: bool = True
    last_at: float = field(default=0.0)   # throttling: when the last notification was queued

    @property
    def id(self) -> str:
        return str(self.doc["id"])

    def live(self, now: float | None = None) -> bool:
        """Active and not expired."""
        if not self.active:
            return False
        return self.expires is None or (now or time.time()) < self.expires

    def selects(self, ent: Entity) -> bool:
        if self.selectors and not any(s.matches(ent) for s in self.selectors):
            return False
        if self.scope_q is not None and not self.scope_q.matches(ent):
            return False
        if self.q is not None and not self.q.matches(ent):
            return False
        return self.geo_q is None or self.geo_q.matches(ent)


def compile_subscription(tenant: str, doc: dict[str, Any], query_ctx: TermMap, render_ctx: TermMap) -> Compiled:
    """Parse once what matching needs; the document was validated when it was written."""
    selectors = []
    for sel in doc.get("entities") or []:
        t = sel["type"]
        types = parse_type_expression(t, query_ctx) if sel.get("_typeExpr") else [frozenset([t])]
        selectors.append(Selector(sel.get("id"), re.compile(sel["idPattern"]) if sel.get("idPattern") else None,
                                  types))
    c = Compiled(tenant, doc, render_ctx, selectors,
                 frozenset(doc["watchedAttributes"]) if doc.get("watchedAttributes") else None,
                 frozenset(doc.get("notificationTrigger") or DEFAULT_TRIGGERS))
    if doc.get("q"):
        c.q = qlang.parse_q(unquote(doc["q"]), query_ctx.expand)   # q is written as in a URI (%20...)
    if doc.get("scopeQ"):
        c.scope_q = qlang.parse_scope_q(unquote(doc["scopeQ"]))
    if doc.get("geoQ"):
        c.geo_q = geo.parse_geo_q_object(doc["geoQ"], query_ctx.expand)
    c.throttling = float(doc.get("throttling") or 0)
    c.time_interval = float(doc.get("timeInterval") or 0)
    if doc.get("expiresAt"):
        c.expires = datetime.fromisoformat(doc["expiresAt"].replace("Z", "+00:00")).timestamp()
    c.active = doc.get("isActive") is not False
    return c


def _previous_key(key: str) -> str:
    return "previous" + key[0].upper() + key[1:]


def null_instance(old: dict[str, Any], at: str, show_changes: bool, entity_gone: bool = False) -> dict[str, Any]:
    """How a deleted attribute instance is notified: its value is ``urn:ngsi-ld:null``
    (a LanguageProperty's languageMap is ``{"@none": null-IRI}``, or the bare IRI when the
    whole entity went — as the ETSI expectations have it)."""
    typ = old.get("type", "Property")
    key = VALUE_KEY.get(typ, "value")
    inst: dict[str, Any] = {"type": typ}
    if "datasetId" in old:
        inst["datasetId"] = old["datasetId"]
    if typ == "LanguageProperty" and not entity_gone:
        inst[key] = {"@none": NULL}
    else:
        inst[key] = [NULL] if typ == "ListRelationship" else NULL
    if show_changes and key in old:
        inst[_previous_key(key)] = old[key]
    for k in ("createdAt", "modifiedAt"):
        if k in old:
            inst[k] = old[k]
    inst["deletedAt"] = at
    return inst


def _default(instances: list[dict[str, Any]]) -> dict[str, Any]:
    return next((i for i in instances if "datasetId" not in i), instances[0])


def _whole(inst: dict[str, Any]) -> dict[str, Any]:
    """A whole deleted attribute is notified as one instance, without a datasetId."""
    inst.pop("datasetId", None)
    return inst


def _with_previous(new: list[dict[str, Any]], old: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """showChanges: each updated instance carries the value it had before (previousValue...)."""
    before = {i.get("datasetId"): i for i in old}
    out = []
    for inst in new:
        prev = before.get(inst.get("datasetId"))
        key = VALUE_KEY.get(inst.get("type", "Property"), "value")
        if prev is not None and prev != inst and key in prev:
            inst = dict(inst)
            inst[_previous_key(key)] = prev[key]
        out.append(inst)
    return out


@dataclass
class Diff:
    created: set[str]
    updated: set[str]
    deleted: dict[str, list[dict[str, Any]]]   # attribute -> deleted instances


def diff(old: Entity | None, new: Entity | None) -> Diff:
    oa: dict[str, Any] = old["attrs"] if old else {}
    na: dict[str, Any] = new["attrs"] if new else {}
    created = {a for a in na if a not in oa}
    updated: set[str] = set()
    deleted: dict[str, list[dict[str, Any]]] = {a: oa[a] for a in oa if a not in na}
    for a in na:
        if a in oa and na[a] != oa[a]:
            kept = {i.get("datasetId") for i in na[a]}
            gone = [i for i in oa[a] if i.get("datasetId") not in kept]
            if gone:
                deleted[a] = gone
            if len(gone) != len(oa[a]) - len(na[a]) or any(i not in oa[a] for i in na[a]):
                updated.add(a)
    return Diff(created, updated, deleted)


def _reason(sub: Compiled, change: Change, d: Diff) -> tuple[str | None, set[str]]:
    """The trigger reason for ``sub`` (None: not triggered) and the attributes it is about."""
    w = sub.watched
    trig = sub.triggers

    def hit(attrs: Any) -> set[str]:
        s = set(attrs)
        return s & w if w is not None else s

    if change.new is None:
        if "entityDeleted" in trig:
            return "entityDeleted", set()
        if "attributeDeleted" in trig and hit(d.deleted):
            return "attributeDeleted", hit(d.deleted)
        return None, set()
    if change.old is None:
        if "entityCreated" in trig and (w is None or hit(d.created)):
            return "entityCreated", set()
        if "attributeCreated" in trig and hit(d.created):
            return "attributeCreated", hit(d.created)
        return None, set()
    for name, attrs in (("attributeCreated", d.created), ("attributeUpdated", d.updated),
                        ("attributeDeleted", d.deleted)):
        if name in trig and hit(attrs):
            return name, hit(attrs)
    if "entityUpdated" in trig and hit(set(d.created) | d.updated | set(d.deleted)):
        return "entityUpdated", set()
    return None, set()


def notified_entity(sub: Compiled, change: Change, d: Diff, reason: str) -> dict[str, Any]:
    """The entity as the notification shows it (internal form, rendered later by the notifier)."""
    show = bool(sub.doc["notification"].get("showChanges"))
    if change.new is None:
        old = change.old or {"id": change.entity_id, "type": [], "attrs": {}}
        ent = {k: v for k, v in old.items() if k != "attrs"}
        ent["deletedAt"] = change.at
        names: set[str] = set(old["attrs"])
        if not show:
            if "attributeDeleted" not in sub.triggers:
                names = set()
            elif sub.watched is not None:
                names &= sub.watched
        ent["attrs"] = {a: [_whole(null_instance(_default(old["attrs"][a]), change.at, show, True))]
                        for a in old["attrs"] if a in names}
        return ent
    new = change.new
    attrs = dict(new["attrs"])
    if show and change.old is not None:
        for a in d.updated:
            attrs[a] = _with_previous(attrs[a], change.old["attrs"].get(a, []))
    for a, gone in d.deleted.items():
        if a in attrs:      # some instances (datasetIds) went: they show next to the others
            attrs[a] = [*attrs[a], *(null_instance(i, change.at, show) for i in gone)]
        else:               # the whole attribute went: one null instance
            attrs[a] = [_whole(null_instance(_default(gone), change.at, show))]
    return {**new, "attrs": attrs}


class Matcher:
    """The ChangeListener plus the subscription cache it reads."""

    def __init__(self) -> None:
        self.by_tenant: dict[str, dict[str, Compiled]] = {}
        self._throttle = threading.Lock()

    def get(self, tenant: str, sub_id: str) -> Compiled | None:
        return self.by_tenant.get(tenant, {}).get(sub_id)

    def put(self, sub: Compiled) -> None:
        subs = dict(self.by_tenant.get(sub.tenant, {}))
        prev = subs.get(sub.id)
        if prev is not None:
            sub.last_at = prev.last_at
        subs[sub.id] = sub
        self.by_tenant = {**self.by_tenant, sub.tenant: subs}

    def remove(self, tenant: str, sub_id: str) -> None:
        subs = dict(self.by_tenant.get(tenant, {}))
        subs.pop(sub_id, None)
        self.by_tenant = {**self.by_tenant, tenant: subs}

    def all(self) -> list[Compiled]:
        return [s for subs in self.by_tenant.values() for s in subs.values()]

    def _started_window(self, tenant: str, sid: str, at: float) -> None:
        """A staged throttle window, once its write committed (the subscription as cached now)."""
        sub = self.by_tenant.get(tenant, {}).get(sid)
        if sub is not None:
            with self._throttle:
                sub.last_at = max(sub.last_at, at)

    def __call__(self, change: Change) -> list[OutboxRecord]:
        subs = self.by_tenant.get(change.tenant)
        if not subs:
            return []
        out: list[OutboxRecord] = []
        d: Diff | None = None
        now = time.time()
        for sub in subs.values():
            if sub.time_interval or not sub.live(now):
                continue
            ent = change.new if change.new is not None else change.old
            if ent is None or not sub.selects(ent):
                continue
            if d is None:
                d = diff(change.old, change.new)
            reason, _ = _reason(sub, change, d)
            if reason is None:
                continue
            if sub.throttling:
                # staged until the write commits: a store may run a write's listeners again
                # (retry, fallback) and only the committed run may start the throttle window
                attempt = write_attempt()
                with self._throttle:      # a store may run listeners in several writers at once
                    key = ("throttle", change.tenant, sub.id)
                    last = sub.last_at if attempt is None else max(sub.last_at, attempt.get(key, 0.0))
                    if now - last < sub.throttling:
                        continue
                    if attempt is None:
                        sub.last_at = now
                    else:
                        attempt.stage(key, now, partial(self._started_window, change.tenant, sub.id))
            payload = {"nid": f"urn:ngsi-ld:Notification:{uuid.uuid4()}", "reason": reason,
                       "entities": [notified_entity(sub, change, d, reason)], "t": now}
            out.append(OutboxRecord(sub.id, payload))
        return out
