"""The embedded backend: one SQLite file in WAL mode.

Writes go through **one writer thread** fed by a queue (the Datasette pattern): it takes
every request waiting, runs their mutations inside one ``BEGIN IMMEDIATE`` transaction
(each mutation in a SAVEPOINT so one failure does not spoil its neighbours), commits
once and only then answers the callers — group commit: the fsync is shared, and an
acknowledged write is always a committed one. Reads use a separate connection on the
event-loop thread: an indexed look-up costs microseconds, less than a thread hop, and
WAL lets reads proceed while the writer commits.

Tables: ``entities`` holds each entity as one orjson document; ``etypes`` / ``eattrs``
index types and attribute names (IRIs interned in ``terms``); an R-tree holds the
bounding box of every GeoProperty for geo-queries (exact predicates run in Shapely).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson

from urbanmim.errors import InternalError, NgsiError
from urbanmim.ngsild.entity import Entity
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
from urbanmim.store.sqlite_audit import SQLiteAudit
from urbanmim.store.sqlite_outbox import SQLiteOutbox
from urbanmim.store.sqlite_temporal import SQLiteTemporal

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS tenants(tid INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL);
CREATE TABLE IF NOT EXISTS terms(term_id INTEGER PRIMARY KEY, iri TEXT UNIQUE NOT NULL);
CREATE TABLE IF NOT EXISTS entities(
    rid INTEGER PRIMARY KEY, tid INTEGER NOT NULL, id TEXT NOT NULL, doc BLOB NOT NULL, UNIQUE(tid, id));
CREATE TABLE IF NOT EXISTS etypes(tid INTEGER NOT NULL, type_id INTEGER NOT NULL, rid INTEGER NOT NULL,
    PRIMARY KEY(tid, type_id, rid)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS etypes_rid ON etypes(rid);
CREATE TABLE IF NOT EXISTS eattrs(tid INTEGER NOT NULL, attr_id INTEGER NOT NULL, rid INTEGER NOT NULL,
    kinds TEXT NOT NULL, PRIMARY KEY(tid, attr_id, rid)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS eattrs_rid ON eattrs(rid);
CREATE VIRTUAL TABLE IF NOT EXISTS geoidx USING rtree(gid, minx, maxx, miny, maxy);
CREATE TABLE IF NOT EXISTS geomap(gid INTEGER PRIMARY KEY, rid INTEGER NOT NULL, attr_id INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS geomap_rid ON geomap(rid);
CREATE TABLE IF NOT EXISTS contexts(cid TEXT PRIMARY KEY, url TEXT NOT NULL, doc BLOB NOT NULL,
    created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS subscriptions(tid INTEGER NOT NULL, id TEXT NOT NULL, doc BLOB NOT NULL,
    PRIMARY KEY(tid, id));
"""

_STOP = object()


class _Request:
    __slots__ = ("tenant", "mutations", "future", "loop")

    def __init__(self, tenant: str, mutations: list[Mutation], future: asyncio.Future[list[Outcome]],
                 loop: asyncio.AbstractEventLoop):
        self.tenant, self.mutations, self.future, self.loop = tenant, mutations, future, loop


def _connect(path: str, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA cache_size=-32000")
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute("PRAGMA mmap_size=67108864")  # mapped pages count as RSS: keep it bounded
    return conn


class SQLiteStore(SQLiteTemporal, SQLiteOutbox, SQLiteAudit, Store):
    def __init__(self, path: str | Path, *, synchronous: str = "NORMAL", max_batch: int = 2000):
        self.path = str(path)
        self.synchronous = synchronous
        self.max_batch = max_batch
        self._queue: queue.Queue[Any] = queue.Queue()
        self._writer: threading.Thread | None = None
        self._read: sqlite3.Connection | None = None
        self._terms: dict[str, int] = {}
        self._term_iri: dict[int, str] = {}
        self._tenants: dict[str, int] = {}
        self._lock = threading.Lock()
        # called inside the write transaction for every entity change (temporal history, outbox)
        self.listeners: list[ChangeListener] = []
        # called by the writer thread right after each successful COMMIT (e.g. wake the notifier
        # without a polling delay); must be cheap and must not raise
        self.after_commit: list[Callable[[], None]] = []

    # ---- lifecycle --------------------------------------------------------------------------
    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = _connect(self.path, self.synchronous)
        conn.executescript(SCHEMA + "".join(getattr(k, "SCHEMA_PART", "") for k in type(self).__mro__))
        conn.close()
        self._read = _connect(self.path, self.synchronous)
        self._reload_caches(self._read)
        ready = threading.Event()
        self._writer = threading.Thread(target=self._writer_main, args=(ready,), name="sqlite-writer", daemon=True)
        self._writer.start()
        ready.wait()

    async def close(self) -> None:
        if self._writer is not None:
            self._queue.put(_STOP)
            await asyncio.get_running_loop().run_in_executor(None, self._writer.join)
            self._writer = None
        self._outbox_close()
        if self._read is not None:
            self._read.close()
            self._read = None

    def _reload_caches(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            for tid, name in conn.execute("SELECT tid, name FROM tenants"):
                self._tenants[name] = tid
            for term_id, iri in conn.execute("SELECT term_id, iri FROM terms"):
                self._terms[iri] = term_id
                self._term_iri[term_id] = iri

    @property
    def rconn(self) -> sqlite3.Connection:
        assert self._read is not None, "store is not open"
        return self._read

    # ---- writer -----------------------------------------------------------------------------
    def _writer_main(self, ready: threading.Event) -> None:
        conn = _connect(self.path, self.synchronous)
        ready.set()
        stop = False
        while not stop:
            first = self._queue.get()
            if first is _STOP:
                break
            batch: list[_Request] = [first]
            n = len(first.mutations)
            while n < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                batch.append(nxt)
                n += len(nxt.mutations)
            self._run_batch(conn, batch)
        conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Request]) -> None:
        results: list[list[Outcome]] = []
        new_terms: dict[str, int] = {}
        new_tenants: dict[str, int] = {}
        try:
            conn.execute("BEGIN IMMEDIATE")
            for req in batch:
                tid = self._tenant_id_w(conn, req.tenant, new_tenants)
                outs = []
                for m in req.mutations:
                    outs.append(self._apply(conn, tid, req.tenant, m, new_terms))
                results.append(outs)
            conn.execute("COMMIT")
        except Exception as e:  # the whole transaction failed: nobody is acknowledged
            log.exception("sqlite write transaction failed")
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            for req in batch:
                req.loop.call_soon_threadsafe(_set_exc, req.future, InternalError(f"write failed: {e}"))
            return
        with self._lock:
            self._terms.update(new_terms)
            self._term_iri.update({v: k for k, v in new_terms.items()})
            self._tenants.update(new_tenants)
        for hook in self.after_commit:   # after the caches: a hook may look tenants up
            try:
                hook()
            except Exception:
                log.exception("after-commit hook failed")
        for req, outs in zip(batch, results, strict=True):
            req.loop.call_soon_threadsafe(_set_result, req.future, outs)

    def _tenant_id_w(self, conn: sqlite3.Connection, name: str, new: dict[str, int]) -> int:
        tid = self._tenants.get(name) or new.get(name)
        if tid is None:
            row = conn.execute("SELECT tid FROM tenants WHERE name=?", (name,)).fetchone()
            tid = row[0] if row else conn.execute("INSERT INTO tenants(name) VALUES (?)", (name,)).lastrowid
            new[name] = tid
        return tid

    def _term_w(self, conn: sqlite3.Connection, iri: str, new: dict[str, int]) -> int:
        tid = self._terms.get(iri) or new.get(iri)
        if tid is None:
            row = conn.execute("SELECT term_id FROM terms WHERE iri=?", (iri,)).fetchone()
            tid = row[0] if row else conn.execute("INSERT INTO terms(iri) VALUES (?)", (iri,)).lastrowid
            new[iri] = tid
        return tid

    def _apply(self, conn: sqlite3.Connection, tid: int, tenant: str, m: Mutation,
               new_terms: dict[str, int]) -> Outcome:
        row = conn.execute("SELECT rid, doc FROM entities WHERE tid=? AND id=?", (tid, m.entity_id)).fetchone()
        current = orjson.loads(row[1]) if row else None
        try:
            new, result = m.fn(current)
        except NgsiError as e:
            return Outcome(m.entity_id, error=e)
        except Exception as e:  # a bug in a mutation must not take the batch down
            log.exception("mutation of %s failed", m.entity_id)
            return Outcome(m.entity_id, error=InternalError(f"{type(e).__name__} while writing {m.entity_id}"))
        if new is UNCHANGED:
            return Outcome(m.entity_id, result)
        conn.execute("SAVEPOINT m")
        try:
            if row is not None:
                rid = row[0]
                conn.execute("DELETE FROM etypes WHERE rid=?", (rid,))
                conn.execute("DELETE FROM eattrs WHERE rid=?", (rid,))
                for (gid,) in conn.execute("SELECT gid FROM geomap WHERE rid=?", (rid,)).fetchall():
                    conn.execute("DELETE FROM geoidx WHERE gid=?", (gid,))
                conn.execute("DELETE FROM geomap WHERE rid=?", (rid,))
                if new is None:
                    conn.execute("DELETE FROM entities WHERE rid=?", (rid,))
                else:
                    conn.execute("UPDATE entities SET doc=? WHERE rid=?", (orjson.dumps(new), rid))
            elif new is not None:
                rid = conn.execute("INSERT INTO entities(tid, id, doc) VALUES (?,?,?)",
                                   (tid, new["id"], orjson.dumps(new))).lastrowid
            if new is not None:
                self._index(conn, tid, rid, new, new_terms)
            if self.listeners:
                # ``fn`` may have modified ``current`` in place: listeners get the stored version
                before = orjson.loads(row[1]) if row else None
                change = Change(tenant, m.entity_id, before, new,
                                (new or {}).get("modifiedAt") or _now_iso())
                records = [r for listener in self.listeners for r in listener(change)]
                if records:
                    self._write_records(conn, tid, records)
            conn.execute("RELEASE m")
        except Exception as e:
            conn.execute("ROLLBACK TO m")
            conn.execute("RELEASE m")
            log.exception("write of %s failed", m.entity_id)
            return Outcome(m.entity_id, error=InternalError(f"{type(e).__name__} while writing {m.entity_id}"))
        return Outcome(m.entity_id, result)

    def _write_records(self, conn: sqlite3.Connection, tid: int, records: list[Any]) -> None:
        """Persist what listeners derived from a change, in the same transaction as the change."""
        temporal = [r for r in records if isinstance(r, TemporalRecord)]
        outbox = [r for r in records if isinstance(r, OutboxRecord)]
        if temporal:
            self._write_temporal(conn, tid, temporal)
        if outbox:
            self._write_outbox(conn, tid, outbox)
        audit = [r for r in records if isinstance(r, AuditRecord)]
        if audit:
            self._write_audit(conn, audit)

    def _index(self, conn: sqlite3.Connection, tid: int, rid: int, ent: Entity, new_terms: dict[str, int]) -> None:
        from urbanmim.ngsild.geo import bbox
        conn.executemany("INSERT OR IGNORE INTO etypes(tid, type_id, rid) VALUES (?,?,?)",
                         [(tid, self._term_w(conn, t, new_terms), rid) for t in ent["type"]])
        rows = []
        for iri, insts in ent["attrs"].items():
            aid = self._term_w(conn, iri, new_terms)
            kinds = ",".join(sorted({i.get("type", "Property") for i in insts}))
            rows.append((tid, aid, rid, kinds))
            for inst in insts:
                if inst.get("type") == "GeoProperty" and isinstance(inst.get("value"), dict):
                    try:
                        minx, miny, maxx, maxy = bbox(inst["value"])
                    except (ValueError, TypeError, KeyError, IndexError):
                        continue
                    gid = conn.execute("INSERT INTO geomap(rid, attr_id) VALUES (?,?)", (rid, aid)).lastrowid
                    conn.execute("INSERT INTO geoidx(gid, minx, maxx, miny, maxy) VALUES (?,?,?,?,?)",
                                 (gid, minx, maxx, miny, maxy))
        conn.executemany("INSERT INTO eattrs(tid, attr_id, rid, kinds) VALUES (?,?,?,?)", rows)

    async def mutate(self, tenant: str, mutations: list[Mutation]) -> list[Outcome]:
        if not mutations:
            return []
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[Outcome]] = loop.create_future()
        self._queue.put(_Request(tenant, mutations, fut, loop))
        return await fut

    # ---- reads ------------------------------------------------------------------------------
    def _tid(self, tenant: str) -> int | None:
        tid = self._tenants.get(tenant)
        if tid is None:
            row = self.rconn.execute("SELECT tid FROM tenants WHERE name=?", (tenant,)).fetchone()
            if row:
                tid = row[0]
                with self._lock:
                    self._tenants[tenant] = tid
        return tid

    def _term(self, iri: str) -> int | None:
        t = self._terms.get(iri)
        if t is None:
            row = self.rconn.execute("SELECT term_id FROM terms WHERE iri=?", (iri,)).fetchone()
            if row:
                t = row[0]
                with self._lock:
                    self._terms[iri] = t
                    self._term_iri[t] = iri
        return t

    def _iri(self, term_id: int) -> str:
        iri = self._term_iri.get(term_id)
        if iri is None:
            (iri,) = self.rconn.execute("SELECT iri FROM terms WHERE term_id=?", (term_id,)).fetchone()
            self._term_iri[term_id] = iri
        return iri

    async def tenant_exists(self, tenant: str) -> bool:
        return self._tid(tenant) is not None

    async def tenants(self) -> list[str]:
        return [r[0] for r in self.rconn.execute("SELECT name FROM tenants ORDER BY name")]

    async def get(self, tenant: str, entity_id: str) -> Entity | None:
        tid = self._tid(tenant)
        if tid is None:
            return None
        row = self.rconn.execute("SELECT doc FROM entities WHERE tid=? AND id=?", (tid, entity_id)).fetchone()
        return orjson.loads(row[0]) if row else None

    async def get_many(self, tenant: str, entity_ids: Iterable[str]) -> dict[str, Entity]:
        tid = self._tid(tenant)
        ids = list(entity_ids)
        if tid is None or not ids:
            return {}
        out: dict[str, Entity] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            sql = f"SELECT doc FROM entities WHERE tid=? AND id IN ({','.join('?' * len(chunk))})"
            for (doc,) in self.rconn.execute(sql, (tid, *chunk)):
                ent = orjson.loads(doc)
                out[ent["id"]] = ent
        return out

    def _plan(self, q: EntityQuery, tid: int) -> tuple[str, list[Any], bool, str] | None:
        """FROM/WHERE of a query, driven by the most selective index; None when nothing can match.

        Why not ``rid IN (subquery)`` for every filter: SQLite materialises such a subquery,
        i.e. every rid of a 100k-entity type on each query. Instead the driver is the id
        index (``id=``), else the type index (its primary key is in rid order, so paging
        needs no sort), else the tenant's entities; the other filters are correlated
        EXISTS checks that stop at the first hit. Returns (sql, args, needs_distinct, order
        column) — the order column is the driver's own rid, so SQLite walks the index in
        order instead of sorting every candidate.
        """
        args: list[Any] = []
        where: list[str] = []
        type_ids: list[int] = []
        if q.types is not None:
            wanted = {t for g in q.types for t in g}
            type_ids = [i for i in (self._term(t) for t in wanted) if i is not None]
            if not type_ids:
                return None
        distinct = False
        if q.ids is None and type_ids:
            source = "etypes t JOIN entities e ON e.rid=t.rid"
            where.append(f"t.tid=? AND t.type_id IN ({','.join('?' * len(type_ids))})")
            args.extend([tid, *type_ids])
            distinct = len(type_ids) > 1
        else:
            source = "entities e"
            where.append("e.tid=?")
            args.append(tid)
            if q.ids is not None:
                where.append(f"e.id IN ({','.join('?' * len(q.ids))})")
                args.extend(q.ids)
            if type_ids:
                where.append(f"EXISTS(SELECT 1 FROM etypes t WHERE t.rid=e.rid AND t.tid=? AND t.type_id IN "
                             f"({','.join('?' * len(type_ids))}))")
                args.extend([tid, *type_ids])
        if q.attrs is not None:
            ids = [i for i in (self._term(a) for a in q.attrs) if i is not None]
            if not ids:
                return None
            marks = ",".join("?" * len(ids))
            where.append(f"EXISTS(SELECT 1 FROM eattrs a WHERE a.rid=e.rid AND a.attr_id IN ({marks}))")
            args.extend(ids)
        if q.geo is not None:
            box = q.geo.search_bbox()
            if box is not None:
                aid = self._term(q.geo.geoproperty)
                if aid is None:
                    return None
                minx, miny, maxx, maxy = box
                where.append("e.rid IN (SELECT g.rid FROM geoidx r JOIN geomap g ON g.gid=r.gid "
                             "WHERE r.minx<=? AND r.maxx>=? AND r.miny<=? AND r.maxy>=? AND g.attr_id=?)")
                args.extend([maxx, minx, maxy, miny, aid])
        order = "t.rid" if source.startswith("etypes") else "e.rid"
        return f"{source} WHERE {' AND '.join(where)}", args, distinct, order

    async def query(self, query: EntityQuery) -> QueryResult:
        tid = self._tid(query.tenant)
        if tid is None:
            return QueryResult([], 0 if query.count else None)
        plan = self._plan(query, tid)
        if plan is None:
            return QueryResult([], 0 if query.count else None)
        body, args, distinct, order = plan
        conn = self.rconn
        select = "SELECT DISTINCT e.rid, e.doc" if distinct else "SELECT e.rid, e.doc"
        exact = query.needs_exact_filter or query.id_pattern is not None
        if not exact:
            count = None
            if query.count:
                what = "count(DISTINCT e.rid)" if distinct else "count(*)"
                count = conn.execute(f"SELECT {what} FROM {body}", args).fetchone()[0]
            rows = conn.execute(f"{select} FROM {body} ORDER BY {order} LIMIT ? OFFSET ?",
                                (*args, query.limit, query.offset)) if query.limit > 0 else []
            return QueryResult([orjson.loads(r[1]) for r in rows], count)
        out: list[Entity] = []
        seen = 0
        end = query.offset + query.limit
        for _rid, doc in conn.execute(f"{select} FROM {body} ORDER BY {order}", args):
            ent = orjson.loads(doc)
            if not query.matches(ent):
                continue
            if query.offset <= seen < end:
                out.append(ent)
            seen += 1
            if seen >= end and not query.count:
                break
        return QueryResult(out, seen if query.count else None)

    async def type_info(self, tenant: str) -> list[TypeInfo]:
        tid = self._tid(tenant)
        if tid is None:
            return []
        counts = {r[0]: r[1] for r in self.rconn.execute(
            "SELECT type_id, count(*) FROM etypes WHERE tid=? GROUP BY type_id", (tid,))}
        attrs: dict[int, dict[str, set[str]]] = defaultdict(dict)
        for type_id, attr_id, kinds in self.rconn.execute(
                "SELECT DISTINCT t.type_id, a.attr_id, a.kinds FROM etypes t JOIN eattrs a ON a.rid=t.rid "
                "WHERE t.tid=?", (tid,)):
            attrs[type_id].setdefault(self._iri(attr_id), set()).update(kinds.split(","))
        return [TypeInfo(self._iri(t), n, attrs.get(t, {})) for t, n in counts.items()]

    async def attribute_info(self, tenant: str) -> list[AttributeInfo]:
        tid = self._tid(tenant)
        if tid is None:
            return []
        info: dict[int, AttributeInfo] = {}
        for attr_id, n in self.rconn.execute(
                "SELECT attr_id, count(*) FROM eattrs WHERE tid=? GROUP BY attr_id", (tid,)):
            info[attr_id] = AttributeInfo(self._iri(attr_id), n, set(), set())
        for attr_id, kinds, type_id in self.rconn.execute(
                "SELECT DISTINCT a.attr_id, a.kinds, t.type_id FROM eattrs a JOIN etypes t ON t.rid=a.rid "
                "WHERE a.tid=?", (tid,)):
            ai = info[attr_id]
            ai.attr_types.update(kinds.split(","))
            ai.type_names.add(self._iri(type_id))
        return list(info.values())

    # ---- contexts ---------------------------------------------------------------------------
    async def save_context(self, cid: str, url: str, document: Any, created_at: str) -> None:
        await self._exec("INSERT OR REPLACE INTO contexts(cid, url, doc, created_at) VALUES (?,?,?,?)",
                         (cid, url, orjson.dumps(document), created_at))

    async def delete_context(self, cid: str) -> None:
        await self._exec("DELETE FROM contexts WHERE cid=?", (cid,))

    async def load_contexts(self) -> list[tuple[str, str, Any, str]]:
        return [(c, u, orjson.loads(d), t) for c, u, d, t in
                self.rconn.execute("SELECT cid, url, doc, created_at FROM contexts")]

    # ---- subscriptions -----------------------------------------------------------------------
    async def save_subscription(self, tenant: str, sub_id: str, doc: dict[str, Any]) -> None:
        """Insert or replace one subscription; the tenant is created on its first write."""
        data = orjson.dumps(doc)

        def run() -> int:
            conn = _connect(self.path, self.synchronous)
            try:
                conn.execute("BEGIN IMMEDIATE")
                tid = self._tenant_id_w(conn, tenant, {})
                conn.execute("INSERT OR REPLACE INTO subscriptions(tid, id, doc) VALUES (?,?,?)", (tid, sub_id, data))
                conn.execute("COMMIT")
                return tid
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            finally:
                conn.close()
        tid = await asyncio.get_running_loop().run_in_executor(None, run)
        with self._lock:
            self._tenants[tenant] = tid

    async def get_subscription(self, tenant: str, sub_id: str) -> dict[str, Any] | None:
        tid = self._tid(tenant)
        if tid is None:
            return None
        row = self.rconn.execute("SELECT doc FROM subscriptions WHERE tid=? AND id=?", (tid, sub_id)).fetchone()
        return orjson.loads(row[0]) if row else None

    async def list_subscriptions(self, tenant: str, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        tid = self._tid(tenant)
        if tid is None:
            return [], 0
        (total,) = self.rconn.execute("SELECT COUNT(*) FROM subscriptions WHERE tid=?", (tid,)).fetchone()
        rows = self.rconn.execute("SELECT doc FROM subscriptions WHERE tid=? ORDER BY rowid LIMIT ? OFFSET ?",
                                  (tid, limit, offset)).fetchall()
        return [orjson.loads(r[0]) for r in rows], int(total)

    async def delete_subscription(self, tenant: str, sub_id: str) -> bool:
        tid = self._tid(tenant)
        if tid is None or await self.get_subscription(tenant, sub_id) is None:
            return False
        await self._exec("DELETE FROM subscriptions WHERE tid=? AND id=?", (tid, sub_id))
        return True

    async def _exec(self, sql: str, args: tuple[Any, ...]) -> None:
        """A one-statement write outside the entity path, serialised with the writer by SQLite's lock."""
        def run() -> None:
            conn = _connect(self.path, self.synchronous)
            try:
                conn.execute(sql, args)
            finally:
                conn.close()
        await asyncio.get_running_loop().run_in_executor(None, run)


def _now_iso() -> str:
    import time
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def _set_result(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _set_exc(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
