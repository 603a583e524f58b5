"""Organisations, offers and agreements: reserved NGSI-LD entities, and their in-memory view.

Why entities: like MIM2's validation policies (``urbanmim/models/registry.py``), sharing data
lives in the store every backend already has — in the *provider's* tenant, where the data
it governs lives — so SQLite and PostgreSQL both keep it, backups include it, and a
change is one write through the EntityService. The reserved types are

* ``urbanmim:Organisation`` (``urn:ngsi-ld:Organisation:<org>``), in the tenant it was registered
  in; organisation ids are global (they are the token claim ``org``), so an id is refused if
  another tenant has it;
* ``urbanmim:SharingOffer`` — a provider's ODRL Offer, with its catalogue description;
* ``urbanmim:SharingAgreement`` — a consumer's acceptance of an offer: the ODRL Agreement
  (assigner, assignee, the offer's rules), when and by whom it was accepted, its read count.

The access decision runs for every entity read, so :class:`SharingRegistry` keeps parsed
policies in memory, kept in step by a store ChangeListener inside the write transaction:
a withdrawal is in force for the very next request. Reads use an index
``(tenant, consumer, provider) -> active agreements`` rebuilt lazily after a change.

Read counts (the ODRL ``count`` left operand, and the ``inform`` duty's usage report) are
counted in memory per agreement and added to the stored ``urbanmim:readCount`` by the
component's background task (setting ``sharing_flush_interval``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from urbanmim.errors import BadRequestData
from urbanmim.ngsild.entity import Entity, default_instance, value_of
from urbanmim.service.reserved import ReservedCache
from urbanmim.sharing.odrl import Policy
from urbanmim.sharing.odrl_parse import ORG_ID, ORG_PREFIX, parse_policy

ORG_TYPE = "urbanmim:Organisation"
OFFER_TYPE = "urbanmim:SharingOffer"
AGREEMENT_TYPE = "urbanmim:SharingAgreement"
RESERVED_TYPES = frozenset({ORG_TYPE, OFFER_TYPE, AGREEMENT_TYPE})
OFFER_PREFIX = "urn:ngsi-ld:SharingOffer:"
AGREEMENT_PREFIX = "urn:ngsi-ld:SharingAgreement:"

A_NAME, A_DESCRIPTION, A_HOMEPAGE = "urbanmim:name", "urbanmim:description", "urbanmim:homepage"
A_PROVIDER, A_CONSUMER, A_OFFER = "urbanmim:provider", "urbanmim:consumer", "urbanmim:offer"
A_POLICY, A_STATUS, A_CATALOGUE, A_CONTEXT = "urbanmim:policy", "urbanmim:status", "urbanmim:catalogue", \
    "urbanmim:context"
A_CREATED_BY, A_ACCEPTED_AT, A_WITHDRAWN_AT = "urbanmim:createdBy", "urbanmim:acceptedAt", "urbanmim:withdrawnAt"
A_READ_COUNT, A_LAST_READ = "urbanmim:readCount", "urbanmim:lastReadAt"
STATUSES = ("active", "withdrawn")


def org_entity_id(org: str) -> str:
    return ORG_PREFIX + org


def now_iso() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


_SECOND: list[Any] = [0, ""]


def _now_second() -> str:
    """The current time to the second (formatted once per second: it is taken on every counted read)."""
    t = int(time.time())
    if _SECOND[0] != t:
        _SECOND[:] = [t, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))]
    return str(_SECOND[1])


def _prop(v: Any) -> list[dict[str, Any]]:
    return [{"type": "Property", "value": v}]


def _json(v: Any) -> list[dict[str, Any]]:
    return [{"type": "JsonProperty", "json": v}]


def attr_value(ent: Entity, iri: str) -> Any:
    inst = default_instance(ent["attrs"].get(iri) or [])
    return value_of(inst) if inst is not None else None


def _str(ent: Entity, iri: str, required: bool = True) -> str | None:
    v = attr_value(ent, iri)
    if v is None and not required:
        return None
    if not isinstance(v, str) or not v:
        raise BadRequestData(f"{ent['id']}: {iri} must be a non-empty string")
    return v


@dataclass
class Organisation:
    id: str
    tenant: str
    name: str
    description: str | None = None
    homepage: str | None = None

    def to_entity(self) -> Entity:
        attrs: dict[str, Any] = {A_NAME: _prop(self.name)}
        if self.description:
            attrs[A_DESCRIPTION] = _prop(self.description)
        if self.homepage:
            attrs[A_HOMEPAGE] = _prop(self.homepage)
        return {"id": org_entity_id(self.id), "type": [ORG_TYPE], "attrs": attrs}

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "tenant": self.tenant, "name": self.name}
        if self.description:
            out["description"] = self.description
        if self.homepage:
            out["homepage"] = self.homepage
        return out


@dataclass
class Offer:
    id: str
    tenant: str
    provider: str
    policy: Policy
    status: str = "active"
    meta: dict[str, Any] = field(default_factory=dict)    # title, description, theme, keywords, spatial, temporal
    context: Any = None                                   # the @context the offer was written with
    created_by: str | None = None
    created_at: str | None = None
    withdrawn_at: str | None = None

    @property
    def active(self) -> bool:
        return self.status == "active"

    def to_entity(self) -> Entity:
        attrs: dict[str, Any] = {A_PROVIDER: _prop(self.provider), A_POLICY: _json(self.policy.to_json()),
                                 A_STATUS: _prop(self.status), A_CATALOGUE: _json(self.meta)}
        if self.context is not None:
            attrs[A_CONTEXT] = _json(self.context)
        if self.created_by:
            attrs[A_CREATED_BY] = _prop(self.created_by)
        if self.withdrawn_at:
            attrs[A_WITHDRAWN_AT] = _prop(self.withdrawn_at)
        return {"id": self.id, "type": [OFFER_TYPE], "attrs": attrs}

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "tenant": self.tenant, "provider": self.provider,
                               "status": self.status, **self.meta, "policy": self.policy.to_json()}
        for k, v in (("createdBy", self.created_by), ("createdAt", self.created_at),
                     ("withdrawnAt", self.withdrawn_at)):
            if v:
                out[k] = v
        return out


@dataclass
class Agreement:
    id: str
    tenant: str
    offer_id: str
    provider: str
    consumer: str
    policy: Policy
    accepted_at: str
    accepted_by: str | None = None
    status: str = "active"
    withdrawn_at: str | None = None
    read_count: int = 0                 # as stored (pending reads are in SharingRegistry)
    last_read_at: str | None = None

    def to_entity(self) -> Entity:
        attrs: dict[str, Any] = {A_OFFER: [{"type": "Relationship", "object": self.offer_id}],
                                 A_PROVIDER: _prop(self.provider), A_CONSUMER: _prop(self.consumer),
                                 A_POLICY: _json(self.policy.to_json()), A_ACCEPTED_AT: _prop(self.accepted_at),
                                 A_STATUS: _prop(self.status), A_READ_COUNT: _prop(self.read_count)}
        if self.accepted_by:
            attrs[A_CREATED_BY] = _prop(self.accepted_by)
        if self.withdrawn_at:
            attrs[A_WITHDRAWN_AT] = _prop(self.withdrawn_at)
        if self.last_read_at:
            attrs[A_LAST_READ] = _prop(self.last_read_at)
        return {"id": self.id, "type": [AGREEMENT_TYPE], "attrs": attrs}


# ---------------------------------------------------------------------------------------- parsing entities

def parse_org(tenant: str, ent: Entity) -> Organisation:
    oid = ent["id"].removeprefix(ORG_PREFIX)
    if not ent["id"].startswith(ORG_PREFIX) or not ORG_ID.match(oid):
        raise BadRequestData(f"an {ORG_TYPE} id must be {ORG_PREFIX}<org> with <org> of [A-Za-z0-9._:-]")
    return Organisation(oid, tenant, _str(ent, A_NAME) or oid, _str(ent, A_DESCRIPTION, False),
                        _str(ent, A_HOMEPAGE, False))


def _status(ent: Entity) -> str:
    s = attr_value(ent, A_STATUS)
    if s not in STATUSES:
        raise BadRequestData(f"{ent['id']}: {A_STATUS} must be one of {', '.join(STATUSES)}")
    return str(s)


def parse_offer(tenant: str, ent: Entity) -> Offer:
    if not ent["id"].startswith(OFFER_PREFIX):
        raise BadRequestData(f"an {OFFER_TYPE} id must start with {OFFER_PREFIX}")
    provider = _str(ent, A_PROVIDER) or ""
    policy = parse_policy(attr_value(ent, A_POLICY), uid=ent["id"])
    if policy.type not in ("Offer", "Set") or policy.assigner != provider:
        raise BadRequestData(f"{ent['id']}: the policy must be an Offer whose assigner is {provider}")
    meta = attr_value(ent, A_CATALOGUE)
    return Offer(ent["id"], tenant, provider, policy, _status(ent), meta if isinstance(meta, dict) else {},
                 attr_value(ent, A_CONTEXT), _str(ent, A_CREATED_BY, False), ent.get("createdAt"),
                 _str(ent, A_WITHDRAWN_AT, False))


def parse_agreement(tenant: str, ent: Entity) -> Agreement:
    if not ent["id"].startswith(AGREEMENT_PREFIX):
        raise BadRequestData(f"an {AGREEMENT_TYPE} id must start with {AGREEMENT_PREFIX}")
    inst = default_instance(ent["attrs"].get(A_OFFER) or [])
    offer = inst.get("object") if inst else None
    if not isinstance(offer, str):
        raise BadRequestData(f"{ent['id']}: {A_OFFER} must be a Relationship to the offer")
    provider, consumer = _str(ent, A_PROVIDER) or "", _str(ent, A_CONSUMER) or ""
    policy = parse_policy(attr_value(ent, A_POLICY), uid=ent["id"])
    if policy.type != "Agreement" or policy.assigner != provider or policy.assignee != consumer:
        raise BadRequestData(f"{ent['id']}: the policy must be an Agreement from {provider} to {consumer}")
    count = attr_value(ent, A_READ_COUNT) or 0
    return Agreement(ent["id"], tenant, offer, provider, consumer, policy, _str(ent, A_ACCEPTED_AT) or "",
                     _str(ent, A_CREATED_BY, False), _status(ent), _str(ent, A_WITHDRAWN_AT, False),
                     int(count) if isinstance(count, int | float) else 0, _str(ent, A_LAST_READ, False))


# ---------------------------------------------------------------------------------------- the registry

@dataclass
class _Tenant:
    offers: dict[str, Offer] = field(default_factory=dict)
    agreements: dict[str, Agreement] = field(default_factory=dict)


class SharingRegistry(ReservedCache):
    """``app.state.sharing``: every tenant's organisations, offers and agreements, parsed."""

    reserved_types = RESERVED_TYPES

    def __init__(self) -> None:
        self.orgs: dict[str, Organisation] = {}
        self.tenants: dict[str, _Tenant] = {}
        self._lock = threading.RLock()
        self._index: dict[tuple[str, str, str], tuple[Agreement, ...]] | None = None
        self.pending: dict[tuple[str, str], int] = {}         # (tenant, agreement) -> reads not yet stored
        # reads being stored: (n, the readCount the store will hold once they are) — the view takes
        # the new readCount inside the write transaction, before the writer learns it committed
        self.in_flight: dict[tuple[str, str], tuple[int, int | None]] = {}
        self.last_read: dict[tuple[str, str], str] = {}
        self._count_lock = threading.Lock()
        self._journal: list[tuple[str, str, Entity | None]] | None = None   # changes during a reload
        self.version = 0                     # bumped by every change (caches of decisions key on it)

    def tenant(self, tenant: str) -> _Tenant:
        """The tenant's offers and agreements (an empty, unregistered view for a tenant with none, so
        look-ups with arbitrary tenant names do not grow the registry)."""
        return self.tenants.get(tenant) or _Tenant()

    def _ensure(self, tenant: str) -> _Tenant:
        with self._lock:
            return self.tenants.setdefault(tenant, _Tenant())

    # ---- keeping in step with the store ------------------------------------------------------------


    def apply(self, tenant: str, eid: str, ent: Entity | None) -> None:
        with self._lock:
            if self._journal is not None:
                self._journal.append((tenant, eid, ent))
            t = self._ensure(tenant)
            if ent is None:
                if eid.startswith(ORG_PREFIX):
                    org = self.orgs.get(eid.removeprefix(ORG_PREFIX))
                    if org is not None and org.tenant == tenant:
                        del self.orgs[org.id]
                t.offers.pop(eid, None)
                t.agreements.pop(eid, None)
            elif ORG_TYPE in ent["type"]:
                org = parse_org(tenant, ent)
                self.orgs[org.id] = org
            elif OFFER_TYPE in ent["type"]:
                t.offers[eid] = parse_offer(tenant, ent)
            elif AGREEMENT_TYPE in ent["type"]:
                a = parse_agreement(tenant, ent)
                t.agreements[eid] = a
            self._index = None
            self.version += 1

    def begin_reload(self) -> None:
        """A reload from the store starts: remember this process's changes until :meth:`replace`."""
        with self._lock:
            self._journal = []

    def replace(self, fresh: SharingRegistry) -> None:
        """Take over a freshly loaded registry's entities (other processes' changes); counts stay.
        Changes applied here while it was loading are applied to it again (the load may predate them)."""
        with self._lock:
            for tenant, eid, ent in self._journal or ():
                try:
                    fresh.apply(tenant, eid, ent)
                except BadRequestData:
                    pass
            self._journal = None
            self.orgs, self.tenants, self._index = fresh.orgs, fresh.tenants, None
            self.version += 1

    def check_reserved(self, tenant: str, ent: Entity) -> None:
        """A write of a reserved entity must parse, and an organisation id must be free elsewhere."""
        types = ent.get("type") or ()
        if ORG_TYPE in types:
            org = parse_org(tenant, ent)
            other = self.orgs.get(org.id)
            if other is not None and other.tenant != tenant:
                raise BadRequestData(f"organisation {org.id} is already registered in tenant "
                                     f"{other.tenant or '(default)'}")
        if OFFER_TYPE in types:
            parse_offer(tenant, ent)
        if AGREEMENT_TYPE in types:
            parse_agreement(tenant, ent)

    # ---- look-ups ----------------------------------------------------------------------------------
    def active(self, tenant: str, consumer: str, provider: str) -> tuple[Agreement, ...]:
        """The agreements in force from ``provider`` to ``consumer`` in ``tenant`` (hot path)."""
        index = self._index
        if index is None:
            index = self._build_index()
        return index.get((tenant, consumer, provider), ())

    def _build_index(self) -> dict[tuple[str, str, str], tuple[Agreement, ...]]:
        with self._lock:
            out: dict[tuple[str, str, str], list[Agreement]] = {}
            for tenant, t in self.tenants.items():
                for a in t.agreements.values():
                    offer = t.offers.get(a.offer_id)
                    if a.status == "active" and offer is not None and offer.active:
                        out.setdefault((tenant, a.consumer, a.provider), []).append(a)
            index = {k: tuple(v) for k, v in out.items()}
            self._index = index
            return index

    def is_active(self, a: Agreement) -> bool:
        offer = self.tenant(a.tenant).offers.get(a.offer_id)
        return a.status == "active" and offer is not None and offer.active

    def agreements_of(self, tenant: str, org: str | None = None) -> list[Agreement]:
        items = list(self.tenant(tenant).agreements.values())
        return [a for a in items if org is None or org in (a.consumer, a.provider)]

    def offers_of(self, tenant: str) -> list[Offer]:
        return list(self.tenant(tenant).offers.values())

    # ---- read counts -------------------------------------------------------------------------------
    def reads(self, a: Agreement) -> int:
        """Reads made under ``a`` so far (stored + not yet stored)."""
        key = (a.tenant, a.id)
        n, total = self.in_flight.get(key, (0, None))
        if total is not None and a.read_count >= total:     # already in the view's readCount
            n = 0
        return a.read_count + self.pending.get(key, 0) + n

    def count(self, tenant: str, agreement_ids: Iterable[str]) -> None:
        now = _now_second()
        with self._count_lock:
            for aid in agreement_ids:
                key = (tenant, aid)
                self.pending[key] = self.pending.get(key, 0) + 1
                self.last_read[key] = now

    def take_pending(self) -> list[tuple[str, str, int, str | None]]:
        """(tenant, agreement, reads, last read) to store, moved from pending to in flight; the caller
        calls :meth:`storing` with the total it writes, then :meth:`stored` with the outcome."""
        with self._count_lock:
            out = [(t, a, n, self.last_read.get((t, a))) for (t, a), n in self.pending.items()
                   if n and (t, a) not in self.in_flight]
            for t, a, n, _ in out:
                self.pending.pop((t, a), None)
                self.in_flight[(t, a)] = (n, None)
            return out

    def storing(self, tenant: str, agreement_id: str, total: int) -> None:
        """The write of the in-flight reads sets readCount to ``total`` (called by the mutation)."""
        key = (tenant, agreement_id)
        with self._count_lock:
            n, _ = self.in_flight.get(key, (0, None))
            self.in_flight[key] = (n, total)

    def stored(self, tenant: str, agreement_id: str, ok: bool) -> None:
        """The in-flight reads were written (``ok``) or not (back to pending, counted again next time)."""
        key = (tenant, agreement_id)
        with self._count_lock:
            n, _ = self.in_flight.pop(key, (0, None))
            if not ok and n:
                self.pending[key] = self.pending.get(key, 0) + n
