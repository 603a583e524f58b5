"""The server backend: PostgreSQL 15 + PostGIS, for N broker processes on one database.

Why it looks the way it does:

* **psycopg 3, async, one connection pool per process** (``pg_pool_min``/``pg_pool_max``).
  Connections are in autocommit mode; reads are single statements (they see committed state
  only, never another process's open transaction), writes open an explicit transaction.
* **One transaction per ``mutate`` call.** The current rows of every entity in the call are
  locked with ``SELECT ... ORDER BY id FOR UPDATE`` (sorted, so two processes writing
  overlapping batches lock in the same order and do not deadlock; if PostgreSQL still
  reports a deadlock or serialisation failure, the whole call is retried). Each mutation's
  write runs in a SAVEPOINT so one failure does not spoil its neighbours — as in SQLite.
  A creation that races with another process (``INSERT ... ON CONFLICT DO NOTHING``
  returned nothing) re-reads the now-committed row and runs the mutation again on it.
  State, index rows and whatever the ChangeListeners return (temporal instances, hour
  buckets, outbox rows) are written in that same transaction: no acknowledged write
  without its history and its notifications, and none of them without the write.
* **Set form first** (``postgres_writes.py``): every mutation of a call is decided in Python,
  then everything decided is written in a constant number of multi-row statements (~15 per
  call whatever its size, instead of ~24 per entity) in one SAVEPOINT. Only if PostgreSQL
  refuses that, or a creation raced, is the call written again by the per-mutation path
  above, which isolates the failure. The write transaction runs in psycopg's pipeline mode:
  a statement whose result is not needed at once goes out with the next one that is (a
  single create: ~7 round trips instead of ~22), and psycopg syncs when a SAVEPOINT block
  ends, so a failed statement still rolls back its own block only. The subscription
  counter (see ``_reload_subscriptions``) is read in the round trip that locks the rows.
* **Listeners may run more than once per write** (set-form decision then fallback, a race, a
  deadlock retry) and run for transactions that fail. Listener state that outlives a write
  (the subscription throttle) is staged per attempt and applied at COMMIT (``attempt.py``);
  when a write fails, this process's followers are told to re-read what its listeners
  touched (``_repair``), so no in-memory view keeps a rolled-back change.
* **Documents are orjson bytes in ``bytea``**, not ``jsonb``: jsonb reorders keys, costs a
  parse on every write and a re-serialisation on every read, and nothing queries inside
  the document — q, scopeQ and geo predicates are decided exactly by the shared
  ``EntityQuery.matches``. The pre-filters are the same side tables as SQLite (types,
  attribute names with their kinds), keyed ``(tid, value, rid)`` so that a type query
  walks its primary key in rid order and a page of 20 reads 20 rows instead of sorting
  the whole type (GIN over arrays cannot return rows in order).
* **PostGIS** ``egeo(g geometry(Geometry, 4326))`` holds the bounding box of every
  GeoProperty value, and ``b``, the same box as PostgreSQL's ``box`` type (generated), with
  a GiST index that includes (tid, attr, rid): ``b && box`` is the pre-filter, read by an
  index-only scan (PostGIS's GiST cannot do those), Shapely decides.
* **Tenants are a key (tid) in every table, not a schema per tenant.** NGSI-LD creates a
  tenant implicitly on its first write: with a key that is one INSERT inside the write
  transaction, with schemas it would be DDL on the request path, migrations multiplied by
  the number of cities, and cross-tenant work (the notifier's outbox, ``tenants``) a UNION
  over schemas. Every index leads with tid (or hangs off a tid-keyed row), so isolation is
  enforced by every statement carrying ``tid=%s``. The optional ``?schema=`` URL parameter
  exists for tests and for separate *deployments* sharing one server, not for tenants.
* **Several processes are one broker.** Nothing is cached but immutable facts (tenant ids);
  every read goes to the database. Subscriptions and hosted contexts changed by one process
  are announced with ``pg_notify`` (in the same transaction: delivered on commit); each
  store LISTENs and calls ``remote_listeners`` so an application cache can reload. Every
  ``mutate`` call likewise announces the entities it changed (one ``pg_notify`` statement per
  call, ``announcements.py``) for ``entity_listeners``: in-memory views follow other processes'
  writes within milliseconds. The outbox is drained by one process at a time (see
  ``postgres_outbox.py``).
* Temporal layout: see ``postgres_temporal.py``. Bulk loading (COPY): ``postgres_bulk.py``.
  Schema: ``store/migrations/``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson
import psycopg
from psycopg import errors
from psycopg_pool import AsyncConnectionPool

from urbanmim.errors import InternalError, NgsiError
from urbanmim.ngsild.entity import Entity
from urbanmim.store.announcements import Announcement, Note, collect, collecting
from urbanmim.store.attempt import WriteAttempt
from urbanmim.store.attempt import current as current_attempt
from urbanmim.store.base import (
    UNCHANGED,
    AttributeInfo,
    AuditRecord,
    Change,
    ChangeListener,
    EntityQuery,
    Mutation,
    OutboxRecord,
    Outcome,
    QueryResult,
    Store,
    TemporalRecord,
    TypeInfo,
)
from urbanmim.store.migrations import parse_url, upgrade
from urbanmim.store.postgres_audit import PostgresAudit
from urbanmim.store.postgres_bulk import PostgresBulk
from urbanmim.store.postgres_changes import Settle, announce, deliver, merged
from urbanmim.store.postgres_outbox import PostgresOutbox
from urbanmim.store.postgres_temporal import PostgresTemporal
from urbanmim.store.postgres_writes import PostgresWrites, _Fallback, index_rows

log = logging.getLogger(__name__)

_RETRIES = 5
# a geo-query with n candidate boxes among N entities walks its type in rid order instead of
# sorting the candidates first when n² > _WIDE_AREA x N (~ page size x cost ratio; see _wide_area)
_WIDE_AREA = 200
_WIDE_MIN = 1000        # fewer candidates than this: always GiST first
_INDEX_CTES = """
dt AS (DELETE FROM etypes WHERE rid=%(rid)s AND type <> ALL(%(types)s::text[])),
it AS (INSERT INTO etypes(tid, type, rid) SELECT %(tid)s, t, %(rid)s FROM unnest(%(types)s::text[]) AS t
       ON CONFLICT DO NOTHING),
da AS (DELETE FROM eattrs WHERE rid=%(rid)s AND attr <> ALL(%(attrs)s::text[])),
ia AS (INSERT INTO eattrs(tid, attr, rid, kinds)
       SELECT %(tid)s, a, %(rid)s, k FROM unnest(%(attrs)s::text[], %(kinds)s::text[]) AS u(a, k)
       ON CONFLICT (tid, attr, rid) DO UPDATE SET kinds = excluded.kinds WHERE eattrs.kinds <> excluded.kinds),
dg AS (DELETE FROM egeo WHERE rid=%(rid)s)
INSERT INTO egeo(tid, attr, rid, g)
SELECT %(tid)s, a, %(rid)s, ST_MakeEnvelope(x1, y1, x2, y2, 4326)
FROM unnest(%(gattrs)s::text[], %(x1)s::float8[], %(y1)s::float8[], %(x2)s::float8[], %(y2)s::float8[])
     AS u(a, x1, y1, x2, y2)
"""
_UPDATE = "WITH e AS (UPDATE entities SET doc=%(doc)s WHERE rid=%(rid)s),\n" + _INDEX_CTES
_INDEX_ONLY = "WITH\n" + _INDEX_CTES
_DELETE = """
WITH dt AS (DELETE FROM etypes WHERE rid=%(rid)s), da AS (DELETE FROM eattrs WHERE rid=%(rid)s),
     dg AS (DELETE FROM egeo WHERE rid=%(rid)s)
DELETE FROM entities WHERE rid=%(rid)s
"""


class _Raced(Exception):
    """Another process created the entity between our look-up and our INSERT."""


class _Stale(Exception):
    """The subscriptions changed since this process's cache was filled: reload, then write."""

    def __init__(self, version: int):
        super().__init__(version)
        self.version = version


def _index_params(tid: int, rid: int, ent: Entity) -> dict[str, Any]:
    """The index rows of one entity (the same ``index_rows`` as the set form) as statement arguments."""
    types, attrs, geo = index_rows(ent)
    return {"tid": tid, "rid": rid, "types": types, "attrs": [a for a, _ in attrs], "kinds": [k for _, k in attrs],
            "gattrs": [a for a, _ in geo], "x1": [b[0] for _, b in geo], "y1": [b[1] for _, b in geo],
            "x2": [b[2] for _, b in geo], "y2": [b[3] for _, b in geo]}


class PostgresStore(PostgresWrites, PostgresTemporal, PostgresOutbox, PostgresAudit, PostgresBulk, Store):
    # False: every mutate call is written per mutation, the reference the set form is tested against
    set_form = True

    def __init__(self, url: str, *, pool_min: int = 2, pool_max: int = 10, pool_timeout: float = 30.0,
                 migrate: bool = True):
        self.url = url
        self.conninfo, self.schema = parse_url(url)
        self.pool_min, self.pool_max, self.pool_timeout = pool_min, max(pool_max, pool_min, 1), pool_timeout
        self.migrate = migrate
        self._pool: AsyncConnectionPool | None = None
        self._tenants: dict[str, int] = {}
        # called inside the write transaction for every entity change (temporal history, outbox)
        # (the first notes each change for the announcement to the other processes: announcements.py)
        self.listeners: list[ChangeListener] = [collect]
        # called on the event loop after each successful write commit; cheap, must not raise
        self.after_commit: list[Callable[[], None]] = []
        # called as fn(kind, tenant, key) when ANOTHER process changed a "subscription" or "context"
        self.remote_listeners: list[Callable[[str, str, str], Any]] = []
        # called on the event loop with every entity change announcement, this process's too
        self.entity_listeners: list[Callable[[Announcement], Any]] = []
        # writes of these types wait until every process followed them (announcements.py: Settling)
        self.settle_types: set[str] = set()
        self._settles: dict[str, Settle] = {}
        # awaited before a write is matched when the subscriptions changed since the last call
        # (the subscription cache reloads; see _check_subscriptions)
        self.on_subscriptions_stale: Callable[[], Awaitable[None]] | None = None
        self._sub_seen = -1
        self._sub_lock = asyncio.Lock()

    # ---- lifecycle --------------------------------------------------------------------------
    async def open(self) -> None:
        if self.migrate:
            await asyncio.to_thread(upgrade, self.url)
        self._pool = AsyncConnectionPool(
            self.conninfo, min_size=self.pool_min, max_size=self.pool_max, timeout=self.pool_timeout, open=False,
            # jit off: our statements read a page through an index; at 3M+ rows their cost
            # estimates pass jit_above_cost and PostgreSQL spent ~80 ms compiling each one
            kwargs={"autocommit": True, "options": f"-c search_path={self.schema},public -c jit=off"})
        await self._pool.open(wait=True, timeout=self.pool_timeout)
        await self._listen_start()

    async def close(self) -> None:
        await self._listen_stop()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def pool(self) -> AsyncConnectionPool:
        assert self._pool is not None, "store is not open"
        return self._pool

    async def _fetch(self, query: str, args: Any = None, *, binary: bool = False) -> list[tuple[Any, ...]]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(query, args, binary=binary)   # type: ignore[arg-type]
            return await cur.fetchall()

    # ---- tenants ------------------------------------------------------------------------------
    async def _tid(self, tenant: str) -> int | None:
        """Tenant ids never change once committed, so caching them is safe across processes."""
        tid = self._tenants.get(tenant)
        if tid is None and "\x00" not in tenant:    # PostgreSQL text cannot hold NUL: no such tenant
            rows = await self._fetch("SELECT tid FROM tenants WHERE name=%s", (tenant,))
            if rows:
                tid = self._tenants[tenant] = int(rows[0][0])
        return tid

    async def _tenant_w(self, conn: psycopg.AsyncConnection[Any], name: str) -> int:
        """The tenant's id, created inside the caller's transaction (cached only after commit)."""
        tid = self._tenants.get(name)
        if tid is not None:
            return tid
        cur = await conn.execute("INSERT INTO tenants(name) VALUES (%s) ON CONFLICT (name) DO NOTHING RETURNING tid",
                                 (name,))
        row = await cur.fetchone()
        if row is None:
            cur = await conn.execute("SELECT tid FROM tenants WHERE name=%s", (name,))
            row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    async def tenant_exists(self, tenant: str) -> bool:
        return await self._tid(tenant) is not None

    async def tenants(self) -> list[str]:
        return [r[0] for r in await self._fetch("SELECT name FROM tenants ORDER BY name")]

    # ---- writes -------------------------------------------------------------------------------
    async def _reload_subscriptions(self, version: int) -> None:
        """Several processes: the subscription cache is reloaded when any process changed a
        subscription since it was filled, before a write is matched. The LISTEN announcement
        does the same a few milliseconds later; this closes the window in which a write
        acknowledged by B right after A acknowledged a subscription would not be matched. The
        counter is read by the write's transaction itself (``_run``, in the round trip that
        locks the rows); when it moved, the transaction is abandoned before anything is
        matched, the cache reloaded here — holding no connection: a reload must never wait for
        a pool connection while holding one — and the write started again."""
        async with self._sub_lock:
            if version > self._sub_seen and self.on_subscriptions_stale is not None:
                await self.on_subscriptions_stale()
                self._sub_seen = max(self._sub_seen, version)   # read before the reload: a later change is seen

    async def mutate(self, tenant: str, mutations: list[Mutation]) -> list[Outcome]:
        if not mutations:
            return []
        attempt = stale = 0
        touched: list[Note] = []        # what failed attempts' listeners saw (see _repair)
        while True:
            changed: list[Note] = []
            trial = WriteAttempt()          # listener state staged until COMMIT (store/attempt.py)
            try:
                # pipeline mode: statements whose results are not needed at once go out together
                # (psycopg syncs when a transaction block or SAVEPOINT ends: errors stay inside it)
                async with self.pool.connection() as conn, conn.pipeline():
                    async with conn.transaction():
                        tid = await self._tenant_w(conn, tenant)
                        with collecting() as changed, trial.active():
                            outs, notified = await self._run(conn, tid, tenant, mutations)
                        settle = await announce(conn, self, tenant, changed)
                self._tenants[tenant] = tid
                break
            except _Stale as e:
                touched += changed
                stale += 1
                if stale > 10 * _RETRIES:
                    self._repair(tenant, touched)
                    raise InternalError("write failed: the subscriptions keep changing") from e
                await self._reload_subscriptions(e.version)
            except (errors.DeadlockDetected, errors.SerializationFailure) as e:
                touched += changed
                attempt += 1
                if attempt == _RETRIES:
                    self._repair(tenant, touched)
                    raise InternalError(f"write failed after {_RETRIES} attempts: {e}") from e
                await asyncio.sleep(0.005 * 2 ** (attempt - 1))
            except psycopg.Error as e:
                log.exception("postgres write transaction failed")
                self._repair(tenant, touched + changed)
                raise InternalError(f"write failed: {type(e).__name__}") from e
            except BaseException:
                self._repair(tenant, touched + changed)
                raise
        trial.commit()
        if notified:
            self._outbox_committed()
        if settle is not None:      # a reserved entity: answer once every process follows it
            await settle.wait(self._settles)
        for hook in self.after_commit:
            try:
                hook()
            except Exception:
                log.exception("after-commit hook failed")
        return outs

    def _repair(self, tenant: str, touched: list[Note]) -> None:
        """A write that did not commit ran its ChangeListeners anyway, inside the transaction:
        in-memory views (reserved-entity caches, the twin) may hold what was rolled back, and no
        announcement went out to correct them. Tell this process's own followers the touched
        entities changed, as if another process had written them: they re-read the committed
        state."""
        if touched and self.entity_listeners:
            deliver(self.entity_listeners, Announcement(tenant, tuple(merged(touched))))

    async def _run(self, conn: psycopg.AsyncConnection[Any], tid: int, tenant: str,
                   mutations: list[Mutation]) -> tuple[list[Outcome], bool]:
        ids = sorted({m.entity_id for m in mutations})
        # the write statements are prepared (postgres_writes.py): with their arrays' lengths
        # known PostgreSQL would plan each call anew (~2 ms, more than running them)
        await conn.execute("SELECT set_config('plan_cache_mode', 'force_generic_plan', true)")
        subs = await conn.execute("SELECT v FROM subversion") if self.on_subscriptions_stale is not None else None
        cur = await conn.execute("SELECT id, rid, doc FROM entities WHERE tid=%s AND id = ANY(%s) ORDER BY id "
                                 "FOR UPDATE", (tid, ids), binary=True)
        if subs is not None:        # before anything is matched (see _reload_subscriptions)
            row = await subs.fetchone()
            version = int(row[0]) if row else 0
            if version > self._sub_seen:
                raise _Stale(version)
        state: dict[str, tuple[int, bytes]] = {r[0]: (r[1], bytes(r[2])) for r in await cur.fetchall()}
        if self.set_form:       # see postgres_writes.py
            decided = self._decide(tenant, mutations, state, _now_iso)
            if not decided.ops:
                return decided.outs, False
            if decided.batchable:
                try:
                    async with conn.transaction():      # one SAVEPOINT for everything decided
                        notified = await self._write_decided(conn, tid, decided.ops)
                    return decided.outs, notified
                except (_Fallback, psycopg.Error) as e:
                    if isinstance(e, errors.DeadlockDetected | errors.SerializationFailure):
                        raise
                    log.info("a call of %d mutations is written per mutation: %s", len(mutations), e)
        trial = current_attempt()
        if trial is not None:       # the listeners run again below: a set-form decision's run does not count
            trial.discard()
        outs, notified = [], False
        for m in mutations:
            out, wrote_outbox = await self._apply(conn, tid, tenant, m, state)
            outs.append(out)
            notified = notified or wrote_outbox
        return outs, notified

    async def _apply(self, conn: psycopg.AsyncConnection[Any], tid: int, tenant: str, m: Mutation,
                     state: dict[str, tuple[int, bytes]]) -> tuple[Outcome, bool]:
        for _ in range(_RETRIES):
            row = state.get(m.entity_id)
            current = orjson.loads(row[1]) if row else None
            try:
                new, result = m.fn(current)
            except NgsiError as e:
                return Outcome(m.entity_id, error=e), False
            except Exception as e:  # a bug in a mutation must not take the batch down
                log.exception("mutation of %s failed", m.entity_id)
                return _failed(m.entity_id, e), False
            if new is UNCHANGED:
                return Outcome(m.entity_id, result), False
            trial = current_attempt()
            staged = trial.snapshot() if trial is not None else None
            try:
                async with conn.transaction():      # a SAVEPOINT
                    raw = orjson.dumps(new) if new is not None else b""
                    rid = await self._write_entity(conn, tid, row, new, raw)
                    wrote_outbox = False
                    if self.listeners:
                        before = orjson.loads(row[1]) if row else None
                        change = Change(tenant, m.entity_id, before, new, (new or {}).get("modifiedAt") or _now_iso())
                        records = [r for listener in self.listeners for r in listener(change)]
                        if records:
                            wrote_outbox = await self._write_records(conn, tid, records)
            except _Raced:
                if trial is not None and staged is not None:    # rolled back: its listeners' state too
                    trial.restore(staged)
                cur = await conn.execute("SELECT rid, doc FROM entities WHERE tid=%s AND id=%s FOR UPDATE",
                                         (tid, m.entity_id), binary=True)
                got = await cur.fetchone()
                if got is not None:
                    state[m.entity_id] = (got[0], bytes(got[1]))
                continue
            except psycopg.Error as e:
                if isinstance(e, errors.DeadlockDetected | errors.SerializationFailure):
                    raise
                log.exception("write of %s failed", m.entity_id)
                if trial is not None and staged is not None:
                    trial.restore(staged)
                return _failed(m.entity_id, e), False
            if new is None:
                state.pop(m.entity_id, None)
            elif rid is not None:
                state[m.entity_id] = (rid, raw)
            return Outcome(m.entity_id, result), wrote_outbox
        return Outcome(m.entity_id, error=InternalError(f"{m.entity_id} kept changing under this write")), False

    async def _write_entity(self, conn: psycopg.AsyncConnection[Any], tid: int, row: tuple[int, bytes] | None,
                            new: Entity | None, raw: bytes) -> int | None:
        """State + index rows in one statement (data-modifying CTEs: one round trip)."""
        if row is not None:
            if new is None:
                await conn.execute(_DELETE, {"rid": row[0]})
            else:
                await conn.execute(_UPDATE, {**_index_params(tid, row[0], new), "doc": raw})
            return row[0]
        if new is None:
            return None
        cur = await conn.execute("INSERT INTO entities(tid, id, doc) VALUES (%s, %s, %s) "
                                 "ON CONFLICT (tid, id) DO NOTHING RETURNING rid", (tid, new["id"], raw))
        got = await cur.fetchone()
        if got is None:
            raise _Raced(new["id"])
        await conn.execute(_INDEX_ONLY, _index_params(tid, got[0], new))
        return int(got[0])

    async def _write_records(self, conn: psycopg.AsyncConnection[Any], tid: int, records: list[Any]) -> bool:
        """Persist what listeners derived from a change, in its transaction. True if outbox rows were added."""
        temporal = [r for r in records if isinstance(r, TemporalRecord)]
        outbox = [r for r in records if isinstance(r, OutboxRecord)]
        audit = [r for r in records if isinstance(r, AuditRecord)]
        if temporal:
            await self._write_temporal_groups(conn, tid, [temporal])
        if audit:
            await self._write_audit(conn, audit)
        if outbox:
            await self._write_outbox(conn, tid, outbox)
        return bool(outbox)

    # ---- reads --------------------------------------------------------------------------------
    async def get(self, tenant: str, entity_id: str) -> Entity | None:
        tid = await self._tid(tenant)
        if tid is None or "\x00" in entity_id:
            return None
        rows = await self._fetch("SELECT doc FROM entities WHERE tid=%s AND id=%s", (tid, entity_id), binary=True)
        return orjson.loads(rows[0][0]) if rows else None

    async def get_many(self, tenant: str, entity_ids: Iterable[str]) -> dict[str, Entity]:
        tid = await self._tid(tenant)
        ids = _storable(entity_ids)
        if tid is None or not ids:
            return {}
        rows = await self._fetch("SELECT doc FROM entities WHERE tid=%s AND id = ANY(%s)", (tid, ids), binary=True)
        out: dict[str, Entity] = {}
        for (doc,) in rows:
            ent = orjson.loads(doc)
            out[ent["id"]] = ent
        return out

    def _plan(self, q: EntityQuery, tid: int, *, wide_area: bool = False) -> tuple[str, list[Any], str] | None:
        """FROM/WHERE and order column of a query, driven by the most selective index.

        One type without ids or geo: the driver is ``etypes``' primary key (tid, type, rid),
        walked in rid order, so paging never sorts the whole type (a page of a ~6% q reads
        the same few hundred rows at 20k or 10M entities). With a geo-query the GiST index
        drives: its candidates (a few thousand for a city-scale area) are joined to
        ``entities`` one by one and the types checked per row on the etypes key — walking a
        type of 10M in rid order hoping to meet the area would read millions of rows — unless
        the area holds many entities (``wide_area``, probed by :meth:`query`): then the type
        is walked in rid order and each row's box checked (a page is found after a few
        hundred rows, instead of sorting a hundred thousand candidates first). Otherwise the
        tenant's entities (or the given ids) with semi-joins PostgreSQL plans as it sees fit.
        None: nothing can match (e.g. only values with NUL characters, which PostgreSQL text
        cannot even hold)."""
        args: list[Any] = []
        where: list[str] = []
        wanted = _storable({t for g in q.types for t in g}) if q.types is not None else []
        ids = _storable(q.ids) if q.ids is not None else None
        attrs = _storable(q.attrs) if q.attrs is not None else None
        if (q.types is not None and not wanted) or ids == [] or attrs == []:
            return None
        box = None
        if q.geo is not None:
            if "\x00" in q.geo.geoproperty:
                return None
            box = q.geo.search_bbox()
        geo_check = None
        if box is not None and wide_area and ids is None and len(wanted) == 1:
            box, geo_check = None, box
        if box is not None:
            # the GiST candidates, de-duplicated and in rid order, drive a nested loop into
            # entities (LATERAL): PostgreSQL cannot turn it into a walk of the whole table in
            # rid order, which it otherwise prefers for a LIMIT (measured: 35k rows read for
            # 400 results at 200k entities, growing with the table).
            minx, miny, maxx, maxy = (float(v) for v in box)
            # egeo.b (the box of g, PostgreSQL's box type) has a GiST index that includes tid,
            # attr and rid: an index-only scan, no random egeo heap visit per candidate
            source = ("(SELECT DISTINCT g.rid FROM egeo g WHERE g.tid=%s AND g.attr=%s "
                      "AND g.b && box(point(%s, %s), point(%s, %s)) ORDER BY g.rid OFFSET 0) gc "
                      "CROSS JOIN LATERAL (SELECT x.rid, x.tid, x.id, x.doc FROM entities x WHERE x.rid=gc.rid) e")
            order = "gc.rid"
            args.extend([tid, q.geo.geoproperty, minx, miny, maxx, maxy])    # type: ignore[union-attr]
            where.append("e.tid=%s")
            args.append(tid)
            if ids is not None:
                where.append("e.id = ANY(%s)")
                args.append(ids)
            if wanted:
                where.append("EXISTS(SELECT 1 FROM etypes t WHERE t.tid=%s AND t.type = ANY(%s) AND t.rid=e.rid)")
                args.extend([tid, wanted])
        elif ids is None and len(wanted) == 1:
            source, order = "etypes t JOIN entities e ON e.rid=t.rid", "t.rid"
            where.append("t.tid=%s AND t.type=%s")
            args.extend([tid, wanted[0]])
        else:
            source, order = "entities e", "e.rid"
            where.append("e.tid=%s")
            args.append(tid)
            if ids is not None:
                where.append("e.id = ANY(%s)")
                args.append(ids)
            if wanted:
                where.append("e.rid IN (SELECT t.rid FROM etypes t WHERE t.tid=%s AND t.type = ANY(%s))")
                args.extend([tid, wanted])
        if attrs is not None:
            where.append("EXISTS(SELECT 1 FROM eattrs a WHERE a.rid=e.rid AND a.tid=%s AND a.attr = ANY(%s))")
            args.extend([tid, attrs])
        if geo_check is not None:
            where.append("EXISTS(SELECT 1 FROM egeo g WHERE g.rid=e.rid AND g.attr=%s "
                         "AND g.g && ST_MakeEnvelope(%s, %s, %s, %s, 4326))")
            args.extend([q.geo.geoproperty, *(float(v) for v in geo_check)])    # type: ignore[union-attr]
        return f"{source} WHERE {' AND '.join(where)}", args, order

    async def _wide_area(self, q: EntityQuery, tid: int) -> bool:
        """Is walking the type in rid order cheaper than sorting the area's candidates first?

        With ``n`` candidate boxes among ``N`` entities, the GiST-first plan reads ~n / 40
        pages of the ``egeo_b`` index (index-only: rid, tid and attr are included) and sorts n
        rids, the walk ~page x N / n rows (entity, type and box of each row walked, ~5 entities
        a page) until a page of ~26 candidates is found: the walk wins when n² > WIDE_AREA x N.
        Measured at 1M entities in 9.4 km² (the density of 10M in 94 km²), warm: 11k
        candidates 12 ms GiST-first / 7 ms walking, 107k candidates 84 ms / 0.2 ms; in pages
        read the break-even is ~200 x N, in warm time ~110 x N. ``n`` is PostGIS's own estimate
        (its 2-D statistics on ``g``, a planning-only EXPLAIN: no rows read), ``N`` the
        table's row estimate."""
        if q.geo is None or q.ids is not None or q.types is None or len({t for g in q.types for t in g}) != 1:
            return False
        box = q.geo.search_bbox()
        if box is None or "\x00" in q.geo.geoproperty:
            return False
        async with self.pool.connection() as conn:
            cur = await conn.execute("EXPLAIN (FORMAT JSON) SELECT 1 FROM egeo g WHERE g.tid=%s AND g.attr=%s AND "
                                     "g.g && ST_MakeEnvelope(%s, %s, %s, %s, 4326)",
                                     (tid, q.geo.geoproperty, *(float(v) for v in box)))
            plan: Any = (await cur.fetchone() or [[{}]])[0]
            cur = await conn.execute("SELECT reltuples FROM pg_class WHERE oid = 'entities'::regclass")
            total = float((await cur.fetchone() or (0,))[0])
        try:
            n = float(plan[0]["Plan"]["Plan Rows"])
        except (KeyError, IndexError, TypeError):
            return False
        return n > _WIDE_MIN and n * n > _WIDE_AREA * max(total, 1.0)

    async def query(self, query: EntityQuery) -> QueryResult:
        empty = QueryResult([], 0 if query.count else None)
        tid = await self._tid(query.tenant)
        wide = tid is not None and await self._wide_area(query, tid)
        plan = self._plan(query, tid, wide_area=wide) if tid is not None else None
        if plan is None:
            return empty
        body, args, order = plan
        exact = query.needs_exact_filter or query.id_pattern is not None
        async with self.pool.connection() as conn:
            if not exact:
                count = None
                if query.count:
                    cur = await conn.execute(f"SELECT count(*) FROM {body}", args)
                    count = int((await cur.fetchone() or (0,))[0])
                if query.limit <= 0:
                    return QueryResult([], count)
                cur = await conn.execute(f"SELECT e.doc FROM {body} ORDER BY {order} LIMIT %s OFFSET %s",
                                         [*args, query.limit, query.offset], binary=True)
                return QueryResult([orjson.loads(r[0]) for r in await cur.fetchall()], count)
            out: list[Entity] = []
            seen = 0
            end = query.offset + query.limit
            # a server-side cursor: the exact filter may stop after the first page of candidates
            async with conn.transaction():
                # plan for the first rows: the exact filter usually stops after a page (the
                # default plans for 10% of the candidates, e.g. sorting an area's all first)
                await conn.execute("SET LOCAL cursor_tuple_fraction = 0.001")
                scur = conn.cursor(name="q", binary=True)
                scur.itersize = 100
                await scur.execute(f"SELECT e.doc FROM {body} ORDER BY {order}", args)
                async for (doc,) in scur:
                    ent = orjson.loads(doc)
                    if not query.matches(ent):
                        continue
                    if query.offset <= seen < end:
                        out.append(ent)
                    seen += 1
                    if seen >= end and not query.count:
                        break
                await scur.close()
        return QueryResult(out, seen if query.count else None)

    async def type_info(self, tenant: str) -> list[TypeInfo]:
        tid = await self._tid(tenant)
        if tid is None:
            return []
        counts = await self._fetch("SELECT type, count(*) FROM etypes WHERE tid=%s GROUP BY type ORDER BY type", (tid,))
        attrs: dict[str, dict[str, set[str]]] = {}
        for typ, attr, kinds in await self._fetch(
                "SELECT DISTINCT t.type, a.attr, a.kinds FROM etypes t JOIN eattrs a ON a.rid=t.rid WHERE t.tid=%s",
                (tid,)):
            attrs.setdefault(typ, {}).setdefault(attr, set()).update(kinds.split(","))
        return [TypeInfo(t, int(n), attrs.get(t, {})) for t, n in counts]

    async def attribute_info(self, tenant: str) -> list[AttributeInfo]:
        tid = await self._tid(tenant)
        if tid is None:
            return []
        info = {a: AttributeInfo(a, int(n), set(), set()) for a, n in await self._fetch(
            "SELECT attr, count(*) FROM eattrs WHERE tid=%s GROUP BY attr ORDER BY attr", (tid,))}
        for attr, kinds, typ in await self._fetch(
                "SELECT DISTINCT a.attr, a.kinds, t.type FROM eattrs a JOIN etypes t ON t.rid=a.rid WHERE a.tid=%s",
                (tid,)):
            if attr in info:
                info[attr].attr_types.update(kinds.split(","))
                info[attr].type_names.add(typ)
        return list(info.values())

    # ---- contexts (global) --------------------------------------------------------------------
    async def save_context(self, cid: str, url: str, document: Any, created_at: str) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("INSERT INTO contexts(cid, url, doc, created_at) VALUES (%s, %s, %s, %s) "
                               "ON CONFLICT (cid) DO UPDATE SET url=excluded.url, doc=excluded.doc, "
                               "created_at=excluded.created_at", (cid, url, orjson.dumps(document), created_at))
            await self._announce(conn, "context", "", cid)

    async def delete_context(self, cid: str) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("DELETE FROM contexts WHERE cid=%s", (cid,))
            await self._announce(conn, "context", "", cid)

    async def load_contexts(self) -> list[tuple[str, str, Any, str]]:
        rows = await self._fetch("SELECT cid, url, doc, created_at FROM contexts ORDER BY created_at", binary=True)
        return [(c, u, orjson.loads(d), t) for c, u, d, t in rows]

    # ---- subscriptions ------------------------------------------------------------------------
    async def save_subscription(self, tenant: str, sub_id: str, doc: dict[str, Any]) -> None:
        async with self.pool.connection() as conn:
            async with conn.transaction():
                tid = await self._tenant_w(conn, tenant)
                await conn.execute("INSERT INTO subscriptions(tid, id, doc) VALUES (%s, %s, %s) "
                                   "ON CONFLICT (tid, id) DO UPDATE SET doc=excluded.doc",
                                   (tid, sub_id, orjson.dumps(doc)))
                version = await self._bump_subscriptions(conn)
                await self._announce(conn, "subscription", tenant, sub_id)
        self._tenants[tenant] = tid
        self._own_subscription_change(version)

    async def get_subscription(self, tenant: str, sub_id: str) -> dict[str, Any] | None:
        tid = await self._tid(tenant)
        if tid is None or "\x00" in sub_id:
            return None
        rows = await self._fetch("SELECT doc FROM subscriptions WHERE tid=%s AND id=%s", (tid, sub_id), binary=True)
        return orjson.loads(rows[0][0]) if rows else None

    async def list_subscriptions(self, tenant: str, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        tid = await self._tid(tenant)
        if tid is None:
            return [], 0
        total = (await self._fetch("SELECT count(*) FROM subscriptions WHERE tid=%s", (tid,)))[0][0]
        rows = await self._fetch("SELECT doc FROM subscriptions WHERE tid=%s ORDER BY seq LIMIT %s OFFSET %s",
                                 (tid, limit, offset), binary=True)
        return [orjson.loads(r[0]) for r in rows], int(total)

    async def delete_subscription(self, tenant: str, sub_id: str) -> bool:
        tid = await self._tid(tenant)
        if tid is None:
            return False
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute("DELETE FROM subscriptions WHERE tid=%s AND id=%s RETURNING id", (tid, sub_id))
            gone = await cur.fetchone() is not None
            version = 0
            if gone:
                version = await self._bump_subscriptions(conn)
                await self._announce(conn, "subscription", tenant, sub_id)
        if gone:
            self._own_subscription_change(version)
        return gone

    async def _bump_subscriptions(self, conn: psycopg.AsyncConnection[Any]) -> int:
        cur = await conn.execute("UPDATE subversion SET v = v + 1 RETURNING v")
        row = await cur.fetchone()
        return int(row[0]) if row else 0

    def _own_subscription_change(self, version: int) -> None:
        """This process made the change (and its caller updates the cache): no reload for it,
        unless another process's change came in between."""
        if self._sub_seen == version - 1:
            self._sub_seen = version


def _storable(values: Iterable[str]) -> list[str]:
    """The values a text column could hold (no NUL), sorted: the others can never match."""
    return sorted(v for v in values if "\x00" not in v)


def _failed(entity_id: str, e: Exception) -> Outcome:
    return Outcome(entity_id, error=InternalError(f"{type(e).__name__} while writing {entity_id}"))


def _now_iso() -> str:
    import time
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"
