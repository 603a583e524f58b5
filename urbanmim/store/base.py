"""The storage interface: every backend implements exactly this, and nothing else reaches a table.

The contract is deliberately small:

* **reads** — ``get`` one entity, ``query`` with an :class:`EntityQuery` (every query
  option the API has is a typed field here, so a backend cannot silently ignore one);
* **writes** — ``mutate``: a list of :class:`Mutation` (entity id + a pure function
  from the current entity to the new one). The backend runs the functions *inside one
  transaction* in its writer, so read-modify-write never races, a batch sees its own
  earlier writes, and (later) temporal instances and notification outbox rows are
  written in the same transaction as the state they describe.

Exact filtering (q, scopeQ, geo predicates) is shared here in :meth:`EntityQuery.matches`;
backends pre-filter with their indexes and report whether the pre-filter was exact.
"""

from __future__ import annotations

import dataclasses
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from urbanmim.ngsild.entity import Entity

UNCHANGED = object()   # a mutation's "nothing to write" answer


class QExprLike(Protocol):
    def matches(self, entity: Entity) -> bool: ...


@dataclass
class EntityQuery:
    """Every filter the NGSI-LD query API can express, already parsed and expanded."""

    tenant: str
    ids: list[str] | None = None
    id_pattern: str | None = None
    types: list[frozenset[str]] | None = None   # OR of AND-groups of expanded type IRIs
    attrs: set[str] | None = None                # entity must have at least one of these
    q: Any = None                                # qlang.QExpr
    scope_q: Any = None                          # qlang.ScopeExpr
    geo: Any = None                              # geo.GeoQuery
    limit: int = 20
    offset: int = 0
    count: bool = False
    _id_re: re.Pattern[str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.id_pattern is not None:
            self._id_re = re.compile(self.id_pattern)

    @property
    def needs_exact_filter(self) -> bool:
        """True when some condition can only be decided on the decoded entity."""
        return bool(self.q or self.scope_q or self.geo or (self.types and any(len(g) > 1 for g in self.types)))

    def matches(self, ent: Entity) -> bool:
        if self.ids is not None and ent["id"] not in self.ids:
            return False
        if self._id_re is not None and not self._id_re.search(ent["id"]):
            return False
        if self.types is not None:
            etypes = set(ent["type"])
            if not any(g <= etypes for g in self.types):
                return False
        if self.attrs is not None and not any(a in ent["attrs"] for a in self.attrs):
            return False
        if self.scope_q is not None and not self.scope_q.matches(ent):
            return False
        if self.q is not None and not self.q.matches(ent):
            return False
        if self.geo is not None and not self.geo.matches(ent):
            return False
        return True


@dataclass
class QueryResult:
    entities: list[Entity]
    count: int | None = None


MutationFn = Callable[[Entity | None], tuple[Any, Any]]


@dataclass
class Mutation:
    """Change one entity: ``fn(current or None) -> (new entity | None to delete | UNCHANGED, result)``.

    ``fn`` may raise an ``NgsiError``; that mutation then fails alone (its result is the
    error) and the others in the same call still commit.

    Ownership: the store hands ``fn`` a private copy of the current entity (decoded from
    storage for this call), so ``fn`` may modify it in place and return it; what ``fn``
    captured from the request is applied once. No defensive copies are needed — they
    used to cost more than the whole SQLite write.
    """

    entity_id: str
    fn: MutationFn


@dataclass
class Outcome:
    entity_id: str
    result: Any = None
    error: Exception | None = None


@dataclass
class Change:
    """One committed-to-be entity change, as listeners see it inside the write transaction."""

    tenant: str
    entity_id: str
    old: Entity | None
    new: Entity | None
    at: str          # the write's time (ISO 8601, UTC, ms)


@dataclass
class TemporalRecord:
    """One attribute instance for the temporal history (written with the state it describes)."""

    entity_id: str
    entity_type: str
    attr: str                   # expanded attribute IRI
    dataset_id: str | None
    ts: str                     # observedAt if present, else the modification time (ISO, UTC)
    instance: dict[str, Any]
    num: float | None = None    # the numeric value, for aggregation
    deleted: bool = False


@dataclass
class OutboxRecord:
    """One notification to deliver (at least once) for a subscription."""

    subscription_id: str
    payload: dict[str, Any]     # what the notifier renders and sends


@dataclass
class AuditRecord:
    """One entry of the MIM6 audit log (urbanmim/security/audit.py): who read or wrote what.

    Written by a ChangeListener in the write's own transaction (writes), or in batches
    (reads, refused requests). Append-only: no API updates or deletes it."""

    ts: str                      # ISO 8601, UTC, ms
    tenant: str
    subject: str
    action: str                  # read | query | temporal | notify | create | update | delete | ...
    decision: str                # permit | deny
    entities: list[str] = field(default_factory=list)
    attrs: list[str] = field(default_factory=list)     # expanded attribute IRIs (written / shown)
    organisation: str | None = None
    client: str = ""
    purpose: str | None = None
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"ts": self.ts, "tenant": self.tenant, "subject": self.subject, "organisation": self.organisation,
                "client": self.client, "action": self.action, "entities": self.entities, "attrs": self.attrs,
                "purpose": self.purpose, "decision": self.decision, "reason": self.reason}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> AuditRecord:
        """The inverse of :meth:`to_json` (both backends store that document)."""
        return cls(**{k: d.get(k) for k in ("ts", "tenant", "subject", "action", "decision")},
                   entities=d.get("entities") or [], attrs=d.get("attrs") or [],
                   organisation=d.get("organisation"), client=d.get("client") or "",
                   purpose=d.get("purpose"), reason=d.get("reason") or "")


@dataclass
class AuditQuery:
    """Filters of ``GET /security/v1/audit`` (every one optional; ``tenants`` None = all)."""

    tenants: list[str] | None = None
    subject: str | None = None
    entity: str | None = None
    start: str | None = None     # ISO, inclusive
    end: str | None = None       # ISO, exclusive
    after_seq: int = 0           # paging: entries with seq > after_seq, oldest first
    limit: int = 1000


ChangeListener = Callable[[Change], Iterable["TemporalRecord | OutboxRecord | AuditRecord"]]


@dataclass
class TypeInfo:
    type: str
    count: int
    attrs: dict[str, set[str]]   # attribute IRI -> attribute types seen (Property, Relationship...)


@dataclass
class AttributeInfo:
    attr: str
    count: int
    attr_types: set[str]
    type_names: set[str]


class Store(ABC):
    """One storage backend (SQLite, PostgreSQL...)."""

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def tenant_exists(self, tenant: str) -> bool: ...

    @abstractmethod
    async def tenants(self) -> list[str]: ...

    @abstractmethod
    async def get(self, tenant: str, entity_id: str) -> Entity | None: ...

    @abstractmethod
    async def get_many(self, tenant: str, entity_ids: Iterable[str]) -> dict[str, Entity]: ...

    @abstractmethod
    async def query(self, query: EntityQuery) -> QueryResult: ...

    @abstractmethod
    async def mutate(self, tenant: str, mutations: list[Mutation]) -> list[Outcome]: ...

    @abstractmethod
    async def type_info(self, tenant: str) -> list[TypeInfo]: ...

    @abstractmethod
    async def attribute_info(self, tenant: str) -> list[AttributeInfo]: ...

    # ---- hosted JSON-LD contexts (global, not per tenant) ---------------------------------
    @abstractmethod
    async def save_context(self, cid: str, url: str, document: Any, created_at: str) -> None: ...

    @abstractmethod
    async def delete_context(self, cid: str) -> None: ...

    @abstractmethod
    async def load_contexts(self) -> list[tuple[str, str, Any, str]]: ...

    # ---- subscriptions (per tenant; the document is the internal, expanded form) ----------
    @abstractmethod
    async def save_subscription(self, tenant: str, sub_id: str, doc: dict[str, Any]) -> None: ...

    @abstractmethod
    async def get_subscription(self, tenant: str, sub_id: str) -> dict[str, Any] | None: ...

    @abstractmethod
    async def list_subscriptions(self, tenant: str, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]: ...

    @abstractmethod
    async def delete_subscription(self, tenant: str, sub_id: str) -> bool: ...

    # ---- temporal history (clause 5.6.11-5.6.18, 5.7.3-5.7.4) -------------------------------
    # Appended by the temporal work; the per-backend layout is documented in its module
    # (SQLite: ``store/sqlite_temporal.py``). Times are epoch milliseconds (UTC) throughout.
    @abstractmethod
    async def temporal_entities(self, tenant: str, ids: list[str] | None = None) -> list[TemporalEntity]:
        """Temporal entities (with the attribute IRIs of their history), in creation order."""

    @abstractmethod
    async def temporal_latest(self, tenant: str, entity_id: str) -> dict[str, list[dict[str, Any]]]:
        """The most recent instance per (attribute, datasetId): what q and geo filters look at."""

    @abstractmethod
    async def temporal_instances(self, tenant: str, entity_id: str, attr: str, span: TemporalSpan, *,
                                 newest_first: bool, limit: int) -> list[StoredInstance]:
        """Up to ``limit`` instances of one attribute in ``span``, oldest (or newest) first."""

    @abstractmethod
    async def temporal_buckets(self, tenant: str, entity_id: str, attr: str, start: int,
                               end: int) -> list[HourBucket]:
        """The pre-aggregated hour buckets of one attribute with ``start <= hour < end`` (hour-aligned)."""

    async def temporal_aggr_inputs(self, tenant: str, keys: list[tuple[str, str]], span: TemporalSpan,
                                   bucket_end: int | None,
                                   periods: PeriodGrid | None = None) -> dict[tuple[str, str], AggrInputs]:
        """What aggregating each (entity id, attribute) of a page over ``span`` needs, for all
        keys at once: the oldest instance in ``span`` (start and end both set, end exclusive),
        the hour buckets in ``[span.start, bucket_end)`` (all datasets) and every instance in
        ``[bucket_end, span.end)`` — or, with ``bucket_end`` None, no buckets and every instance
        of the span. Keys without an instance in the span are left out. Backends answer it in
        a constant number of statements; this default loops over the per-attribute reads.
        With ``periods``, a backend may instead return each dataset's buckets already merged
        per period (``hour`` = the period's start; counts, sums and squares added in hour
        order, min/max of the hours): aggregating those gives the same numbers."""
        out: dict[tuple[str, str], AggrInputs] = {}
        for eid, attr in dict.fromkeys(keys):
            first = await self.temporal_instances(tenant, eid, attr, TemporalSpan(
                span.timeproperty, span.start, span.end, dataset_ids=span.dataset_ids), newest_first=False, limit=1)
            if not first:
                continue
            buckets: list[HourBucket] = []
            raw_from = span.start
            if bucket_end is not None and span.start is not None:
                buckets = await self.temporal_buckets(tenant, eid, attr, span.start, bucket_end)
                raw_from = bucket_end
            raw = await self.temporal_instances(tenant, eid, attr, TemporalSpan(
                span.timeproperty, raw_from, span.end, dataset_ids=span.dataset_ids), newest_first=False,
                limit=1 << 62)
            out[(eid, attr)] = AggrInputs(first[0], buckets, raw)
        return out

    async def temporal_entity_page(self, tenant: str, query: EntityQuery) -> tuple[list[TemporalEntity], int | None]:
        """The ``query.offset``/``query.limit`` page of the temporal entities matching ``query.ids``,
        ``query.types`` and ``query.attrs`` (its other filters are not looked at), in creation order,
        and how many match when ``query.count``. This default filters :meth:`temporal_entities`."""
        only = EntityQuery(tenant=tenant, ids=query.ids, types=query.types, attrs=query.attrs)
        hits = [e for e in await self.temporal_entities(tenant, query.ids)
                if only.matches({"id": e.entity_id, "type": e.types, "attrs": dict.fromkeys(e.attrs)})]
        return hits[query.offset:query.offset + query.limit], len(hits) if query.count else None

    @abstractmethod
    async def temporal_delete(self, tenant: str, entity_id: str, attr: str | None = None, *,
                              dataset_id: str | None = None, delete_all: bool = False) -> bool:
        """Delete a whole temporal entity (attr None) or one attribute's history. False when absent."""

    @abstractmethod
    async def temporal_instance_update(self, tenant: str, entity_id: str, attr: str, instance_id: str,
                                       patch: dict[str, Any] | None, now: str) -> bool:
        """Merge ``patch`` into one stored instance (None deletes it). False when absent."""

    # ---- notification outbox (rows are written by ChangeListeners inside the write transaction)
    @abstractmethod
    def set_outbox_wakeup(self, fn: Callable[[], None] | None) -> None:
        """``fn`` is called (from any thread) after each commit that added outbox rows."""

    @abstractmethod
    async def outbox_fetch(self, after_seq: int, limit: int) -> list[tuple[int, str, str, dict[str, Any]]]:
        """Pending rows ``(seq, tenant, subscription id, payload)`` with ``seq > after_seq``, in order."""

    @abstractmethod
    async def outbox_done(self, seqs: list[int]) -> None:
        """Forget delivered rows."""

    @abstractmethod
    async def outbox_add(self, tenant: str, records: list[OutboxRecord]) -> None:
        """Queue notifications that no entity write carries (periodic ``timeInterval`` ones)."""

    @abstractmethod
    async def outbox_drop(self, tenant: str, sub_id: str) -> None:
        """A deleted subscription: drop its pending rows and its delivery counters."""

    @abstractmethod
    async def save_subscription_statuses(self, items: list[tuple[str, str, dict[str, Any]]]) -> None:
        """Persist delivery counters ``(tenant, subscription id, counters)``."""

    @abstractmethod
    async def load_subscription_statuses(self) -> list[tuple[str, str, dict[str, Any]]]: ...

    @abstractmethod
    async def all_subscriptions(self) -> list[tuple[str, dict[str, Any]]]:
        """Every subscription of every tenant ``(tenant, document)`` (the notifier's cache)."""

    # ---- MIM6 audit log and security secrets (sqlite_audit.py / postgres_audit.py) ------------
    @abstractmethod
    async def audit_append(self, records: list[AuditRecord]) -> None:
        """Append entries in their own transaction (buffered reads, refused requests)."""

    @abstractmethod
    async def audit_query(self, query: AuditQuery) -> list[tuple[int, AuditRecord]]:
        """Entries ``(seq, record)`` matching ``query``, oldest first."""

    @abstractmethod
    async def secret(self, name: str, make: Callable[[], bytes]) -> bytes:
        """The platform secret ``name`` (e.g. the development issuer's key), created with ``make()``
        on first use; concurrent first uses (several processes) agree on one value."""


@dataclass
class TemporalEntity:
    """The entity-level part of a temporal history (its attributes live in instance rows)."""

    entity_id: str
    types: list[str]
    scope: list[str] | None = None
    created_at: str | None = None
    modified_at: str | None = None
    deleted_at: str | None = None
    attrs: set[str] = field(default_factory=set)


@dataclass
class TemporalSpan:
    """Which instants a temporal query looks at: ``start <= t < end`` of ``timeproperty``."""

    timeproperty: str = "observedAt"     # observedAt | createdAt | modifiedAt | deletedAt
    start: int | None = None
    end: int | None = None               # exclusive ("before" is strict, 4.11)
    end_inclusive: bool = False          # "between" ... "after" are inclusive of their bound
    dataset_ids: frozenset[str] | None = None   # "@none" = the default instance


@dataclass
class StoredInstance:
    instance_id: str
    attr: str
    dataset_id: str | None
    ts: int                  # epoch ms of the span's timeproperty
    instance: dict[str, Any]
    num: float | None


@dataclass
class HourBucket:
    dataset_id: str | None
    hour: int                # epoch ms of the hour's start
    count: int               # live instances
    ncount: int              # of which numeric
    sum: float
    sumsq: float
    min: float | None
    max: float | None


@dataclass
class PeriodGrid:
    """The aggregation periods of :meth:`Store.temporal_aggr_inputs` (boundaries hour-aligned):
    fixed ones of ``fixed_ms`` from ``origin``, or calendar ones (P1M) listed in ``starts``."""

    origin: int
    fixed_ms: int
    starts: list[int] | None = None     # calendar periods: every start from origin, ascending


@dataclass
class AggrInputs:
    """One attribute's share of :meth:`Store.temporal_aggr_inputs`."""

    first: StoredInstance          # oldest instance in the span
    buckets: list[HourBucket]      # ordered by dataset, hour
    raw: list[StoredInstance]      # oldest first (by time, then instance id)


async def page_all(source: Any, query: EntityQuery, page: int = 500) -> list[Entity]:
    """Every entity ``query`` matches, read in pages from ``source`` (a Store, or the EntityService when
    access control must apply). Components use it to load their reserved entities at start."""
    out: list[Entity] = []
    offset = 0
    while True:
        got = (await source.query(dataclasses.replace(query, limit=page, offset=offset))).entities
        out.extend(got)
        if len(got) < page:
            return out
        offset += page


async def all_of_type(store: Any, tenant: str, type_iri: str) -> list[Entity]:
    """Every entity of one (expanded) type in a tenant, read from the store."""
    return await page_all(store, EntityQuery(tenant=tenant, types=[frozenset({type_iri})]))


async def existing_tenants(store: Any) -> list[str]:
    """The default tenant and every tenant that exists, in the store's order (for loading caches)."""
    return [t for t in dict.fromkeys(["", *await store.tenants()]) if not t or await store.tenant_exists(t)]
