"""Set-form writes: one ``mutate`` call in a constant number of statements, not ~20 per entity.

Mixed into ``PostgresStore``. A batch upsert used to cost about 24 statements per entity
(SAVEPOINT, the entity row, its index rows, the temporal entity looked up and written, a
look-up per observation for a re-sent one, one row per instance and per hour bucket, the
outbox and audit rows, RELEASE): ~375 entities/s, bound by round trips, not by work.

Here a call runs in two phases:

1. **decide, in Python**, every mutation in order, as the per-mutation path would: its
   function on the state the earlier mutations of the call left (a batch sees its own
   writes), then the ChangeListeners on the same change, right after the function (the
   temporal recorder and the audit log pair a listener call with the function that ran just
   before it). A mutation that fails here (bad input) fails alone, before any SQL.
2. **write what was decided, in set form**, inside one SAVEPOINT: one statement for every
   entity row with its index rows (data-modifying CTEs over ``unnest`` arrays), two or three
   for the temporal history, one each for the audit and outbox rows. The number of
   statements does not grow with the number of entities. The connection is in pipeline mode
   (``PostgresStore.mutate``): statements go out together until a result is needed.

Every guarantee of the per-mutation path holds: one transaction, rows locked in id order by
``_run`` before phase 1, state + history + outbox + audit committed together. Failure
isolation: phase 2 only writes mutations that already succeeded; if PostgreSQL still
refuses the batch (a value it cannot store, e.g. a NUL in an attribute name) or another
process created one of its entities or temporal entities since the lock (``_Fallback``), the
SAVEPOINT is rolled back and the call is written again by the per-mutation path, whose
SAVEPOINT per mutation isolates the failure and whose ``ON CONFLICT`` re-read handles the
race. A deadlock or serialisation failure propagates to ``mutate``'s retry. A call in which
an entity is deleted and then created again goes the per-mutation path directly (it gets a
new row id there; rare enough not to be worth a second form).

What the per-mutation path would have written is written, row for row (tested by
``tests/test_postgres_writes.py``): entity rows in creation order, temporal entities folded
with the same ``merge_entity_record``, instances in record order, a re-sent observation
(same attribute, datasetId and observedAt) replacing the stored instance — including one
sent by an earlier mutation of the same call — and hour buckets incremented in the same
order (a bucket hit k times gets k rounds of one statement each, so float sums are added in
the same order), outbox and audit rows in record order. One documented difference: an hour
whose bucket is recomputed from its raw rows (a re-sent observation) is recomputed once,
after the batch, so its sum may differ in the last bits from an incremental sum.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
import psycopg

from urbanmim.errors import InternalError, NgsiError
from urbanmim.ngsild.entity import Entity
from urbanmim.store.base import UNCHANGED, AuditRecord, Change, Mutation, OutboxRecord, Outcome, TemporalRecord

log = logging.getLogger(__name__)

Conn = psycopg.AsyncConnection[Any]
HOUR = 3_600_000

# every entity row of a call with its index rows. New rows get their rid from ``ins``; the index
# rows of new and updated entities are joined to it by entity id. Deleted entities (``drid``)
# and updated ones (``urid``) lose the index rows they no longer have.
_ENTITIES = """
WITH ins AS (
    INSERT INTO entities(tid, id, doc)
    SELECT %(tid)s, u.i, u.d FROM unnest(%(nid)s::text[], %(ndoc)s::bytea[]) WITH ORDINALITY AS u(i, d, o) ORDER BY u.o
    ON CONFLICT (tid, id) DO NOTHING RETURNING id, rid),
upd AS (UPDATE entities e SET doc=u.d FROM unnest(%(urid)s::bigint[], %(udoc)s::bytea[]) AS u(r, d) WHERE e.rid=u.r),
del AS (DELETE FROM entities WHERE rid = ANY(%(drid)s::bigint[])),
r AS (SELECT id, rid FROM ins UNION ALL SELECT * FROM unnest(%(uid)s::text[], %(urid)s::bigint[])),
tw AS (SELECT r.rid, w.t FROM unnest(%(tent)s::text[], %(ttype)s::text[]) AS w(i, t) JOIN r ON r.id=w.i),
aw AS (SELECT r.rid, w.a, w.k FROM unnest(%(aent)s::text[], %(aattr)s::text[], %(akind)s::text[]) AS w(i, a, k)
       JOIN r ON r.id=w.i),
dt AS (DELETE FROM etypes e WHERE e.rid = ANY(%(xrid)s::bigint[])
       AND NOT EXISTS (SELECT 1 FROM tw WHERE tw.rid=e.rid AND tw.t=e.type)),
it AS (INSERT INTO etypes(tid, type, rid) SELECT %(tid)s, t, rid FROM tw ON CONFLICT DO NOTHING),
da AS (DELETE FROM eattrs e WHERE e.rid = ANY(%(xrid)s::bigint[])
       AND NOT EXISTS (SELECT 1 FROM aw WHERE aw.rid=e.rid AND aw.a=e.attr)),
ia AS (INSERT INTO eattrs(tid, attr, rid, kinds) SELECT %(tid)s, a, rid, k FROM aw
       ON CONFLICT (tid, attr, rid) DO UPDATE SET kinds = excluded.kinds WHERE eattrs.kinds <> excluded.kinds),
dg AS (DELETE FROM egeo WHERE rid = ANY(%(xrid)s::bigint[])),
ig AS (INSERT INTO egeo(tid, attr, rid, g)
       SELECT %(tid)s, u.a, r.rid, ST_MakeEnvelope(u.x1, u.y1, u.x2, u.y2, 4326)
       FROM unnest(%(gent)s::text[], %(gattr)s::text[], %(x1)s::float8[], %(y1)s::float8[], %(x2)s::float8[],
                   %(y2)s::float8[]) AS u(i, a, x1, y1, x2, y2) JOIN r ON r.id=u.i)
SELECT id, rid FROM ins
"""

# the temporal entities of a call: the existing ones locked (id order), the missing ones created in
# the order the per-mutation path would create them
_TENTITIES = """
WITH s AS (SELECT id, teid, doc FROM tentities WHERE tid=%(tid)s AND id = ANY(%(ids)s::text[]) ORDER BY id FOR UPDATE),
i AS (INSERT INTO tentities(tid, id, doc)
      SELECT %(tid)s, u.i, u.d FROM unnest(%(ids)s::text[], %(docs)s::bytea[]) WITH ORDINALITY AS u(i, d, o)
      WHERE NOT EXISTS (SELECT 1 FROM s WHERE s.id=u.i) ORDER BY u.o
      ON CONFLICT (tid, id) DO NOTHING RETURNING id, teid)
SELECT id, teid, doc FROM s UNION ALL SELECT id, teid, NULL FROM i
"""
_TENTITIES_UPDATE = ("UPDATE tentities t SET doc=u.d FROM unnest(%s::bigint[], %s::bytea[]) AS u(e, d) "
                     "WHERE t.teid=u.e")
# stored instances a re-sent observation replaces: same (teid, attr, ts, ds), not deleted
_SAME = """
SELECT DISTINCT ON (u.e, u.a, u.ts, u.ds) u.e, u.a, u.ts, u.ds, i.iid
FROM unnest(%s::bigint[], %s::text[], %s::bigint[], %s::text[]) AS u(e, a, ts, ds)
JOIN tinstances i ON i.teid=u.e AND i.attr=u.a AND i.ts=u.ts AND i.ds=u.ds AND i.deleted_at IS NULL
ORDER BY u.e, u.a, u.ts, u.ds, i.iid
"""
_INSTANCES = """
WITH ins AS (
    INSERT INTO tinstances(tid, teid, attr, ds, ts, created_at, modified_at, deleted_at, num, doc)
    SELECT %(tid)s, u.e, u.a, u.ds, u.ts, u.c, u.m, u.d, u.n, u.doc
    FROM unnest(%(e)s::bigint[], %(a)s::text[], %(ds)s::text[], %(ts)s::bigint[], %(c)s::bigint[],
                %(m)s::bigint[], %(d)s::bigint[], %(n)s::float8[], %(doc)s::bytea[])
         WITH ORDINALITY AS u(e, a, ds, ts, c, m, d, n, doc, o)
    ORDER BY u.o),
upd AS (UPDATE tinstances i SET modified_at=u.m, num=u.n, doc=u.doc
        FROM unnest(%(uiid)s::bigint[], %(um)s::bigint[], %(un)s::float8[], %(udoc)s::bytea[]) AS u(iid, m, n, doc)
        WHERE i.iid=u.iid)
"""
_BUCKETS = """
INSERT INTO tbuckets AS b(teid, attr, ds, hour, cnt, ncnt, sum, sumsq, vmin, vmax)
SELECT u.e, u.a, u.ds, u.h, 1, u.nc, u.s, u.sq, u.lo, u.hi
FROM unnest(%(be)s::bigint[], %(ba)s::text[], %(bds)s::text[], %(bh)s::bigint[], %(bnc)s::int[], %(bs)s::float8[],
            %(bsq)s::float8[], %(blo)s::float8[], %(bhi)s::float8[]) AS u(e, a, ds, h, nc, s, sq, lo, hi)
ON CONFLICT (teid, attr, ds, hour) DO UPDATE SET
    cnt = b.cnt + 1, ncnt = b.ncnt + excluded.ncnt, sum = b.sum + excluded.sum, sumsq = b.sumsq + excluded.sumsq,
    vmin = least(b.vmin, excluded.vmin), vmax = greatest(b.vmax, excluded.vmax)
"""
_RECOMPUTE_DELETE = """
DELETE FROM tbuckets b USING unnest(%s::bigint[], %s::text[], %s::text[], %s::bigint[]) AS k(e, a, ds, h)
WHERE b.teid=k.e AND b.attr=k.a AND b.ds=k.ds AND b.hour=k.h
"""
_RECOMPUTE_INSERT = """
INSERT INTO tbuckets(teid, attr, ds, hour, cnt, ncnt, sum, sumsq, vmin, vmax)
SELECT k.e, k.a, k.ds, k.h, count(*), count(i.num), coalesce(sum(i.num), 0), coalesce(sum(i.num * i.num), 0),
       min(i.num), max(i.num)
FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::bigint[]) AS k(e, a, ds, h)
JOIN tinstances i ON i.teid=k.e AND i.attr=k.a AND i.ds=k.ds AND i.ts >= k.h AND i.ts < k.h + 3600000
     AND i.deleted_at IS NULL
GROUP BY k.e, k.a, k.ds, k.h
"""


class _Fallback(Exception):
    """The batch cannot be written in set form: roll it back and write it per mutation."""


@dataclass
class _Op:
    """One decided mutation: what the per-mutation path would write for it."""

    entity_id: str
    before: tuple[int | None, bytes] | None     # the row it changes (rid None: created earlier in this call)
    new: Entity | None
    raw: bytes
    records: list[Any] = field(default_factory=list)


@dataclass
class _Decided:
    outs: list[Outcome]               # those of written mutations hold if the batch commits
    ops: list[_Op]
    batchable: bool = True


def index_rows(ent: Entity) -> tuple[list[str], list[tuple[str, str]], list[tuple[str, list[float]]]]:
    """Types, (attribute, kinds) and (GeoProperty attribute, box) of an entity: its index rows."""
    from urbanmim.ngsild.geo import bbox
    attrs: list[tuple[str, str]] = []
    geo: list[tuple[str, list[float]]] = []
    for iri, insts in ent["attrs"].items():
        attrs.append((iri, ",".join(sorted({i.get("type", "Property") for i in insts}))))
        for inst in insts:
            if inst.get("type") == "GeoProperty" and isinstance(inst.get("value"), dict):
                try:
                    b = [float(v) for v in bbox(inst["value"])]
                except (ValueError, TypeError, KeyError, IndexError):
                    continue
                geo.append((iri, b))
    return list(ent["type"]), attrs, geo


def failed(entity_id: str, e: Exception) -> Outcome:
    return Outcome(entity_id, error=InternalError(f"{type(e).__name__} while writing {entity_id}"))


class PostgresWrites:
    if TYPE_CHECKING:  # provided by PostgresStore and its other mixins
        listeners: list[Any]

        async def _write_audit(self, conn: Conn, records: list[AuditRecord]) -> None: ...
        async def _write_outbox(self, conn: Conn, tid: int, records: list[OutboxRecord]) -> None: ...

    def _decide(self, tenant: str, mutations: list[Mutation], state: dict[str, tuple[int, bytes]],
                now: Callable[[], str]) -> _Decided:
        """Phase 1: every mutation's function and listeners, in order, on the state the earlier
        ones left. Nothing is written; ``state`` is not modified."""
        sim: dict[str, tuple[int | None, bytes]] = dict(state)
        deleted: set[str] = set()
        d = _Decided([], [])
        for m in mutations:
            row = sim.get(m.entity_id)
            current = orjson.loads(row[1]) if row else None
            try:
                new, result = m.fn(current)
            except NgsiError as e:
                d.outs.append(Outcome(m.entity_id, error=e))
                continue
            except Exception as e:  # a bug in a mutation must not take the batch down
                log.exception("mutation of %s failed", m.entity_id)
                d.outs.append(failed(m.entity_id, e))
                continue
            if new is UNCHANGED:
                d.outs.append(Outcome(m.entity_id, result))
                continue
            raw = orjson.dumps(new) if new is not None else b""
            op = _Op(m.entity_id, row, new, raw)
            if self.listeners:
                before = orjson.loads(row[1]) if row else None
                change = Change(tenant, m.entity_id, before, new, (new or {}).get("modifiedAt") or now())
                op.records = [r for listener in self.listeners for r in listener(change)]
            if new is None:
                if row is not None:
                    deleted.add(m.entity_id)
                sim.pop(m.entity_id, None)
            else:
                if row is None and m.entity_id in deleted:
                    d.batchable = False      # deleted, then created again in this call
                sim[m.entity_id] = (row[0] if row else None, raw)
            d.outs.append(Outcome(m.entity_id, result))
            d.ops.append(op)
        return d

    async def _write_decided(self, conn: Conn, tid: int, ops: list[_Op]) -> bool:
        """Phase 2, inside the caller's SAVEPOINT, in pipeline mode: statements go out together
        until a result is needed (the temporal entities' ids); psycopg syncs before the SAVEPOINT
        ends, so an error of any of them rolls it back. True if outbox rows were written."""
        check = await self._write_entities(conn, tid, ops)
        temporal: list[list[TemporalRecord]] = []
        audit: list[AuditRecord] = []
        outbox: list[OutboxRecord] = []
        for op in ops:
            if op.records:
                temporal.append([r for r in op.records if isinstance(r, TemporalRecord)])
                audit.extend(r for r in op.records if isinstance(r, AuditRecord))
                outbox.extend(r for r in op.records if isinstance(r, OutboxRecord))
        if any(temporal):
            await self._write_temporal_groups(conn, tid, [g for g in temporal if g])
        if audit:
            await self._write_audit(conn, audit)
        if outbox:
            await self._write_outbox(conn, tid, outbox)
        if check is not None and len(await check[0].fetchall()) != check[1]:
            raise _Fallback("an entity was created by another process meanwhile")
        return bool(outbox)

    async def _write_entities(self, conn: Conn, tid: int, ops: list[_Op]
                              ) -> tuple[psycopg.AsyncCursor[Any], int] | None:
        """The entity rows and index rows, sent; the cursor that returns the new rows' ids (fewer
        than expected: another process created one meanwhile) and how many are expected."""
        first: dict[str, _Op] = {}
        final: dict[str, _Op] = {}
        for op in ops:
            first.setdefault(op.entity_id, op)
            final[op.entity_id] = op
        p: dict[str, Any] = {k: [] for k in ("nid", "ndoc", "urid", "udoc", "uid", "drid", "tent", "ttype", "aent",
                                             "aattr", "akind", "gent", "gattr", "x1", "y1", "x2", "y2")}
        created: list[str] = []
        for eid, op in first.items():          # dict order = order of first write = creation order
            orig = op.before
            last = final[eid]
            if orig is None:
                if last.new is None:
                    continue
                p["nid"].append(eid)
                p["ndoc"].append(last.raw)
                created.append(eid)
            elif last.new is None:
                p["drid"].append(orig[0])
                continue
            else:
                p["urid"].append(orig[0])
                p["uid"].append(eid)
                p["udoc"].append(last.raw)
            types, attrs, geo = index_rows(last.new)
            for t in types:
                p["tent"].append(eid)
                p["ttype"].append(t)
            for a, k in attrs:
                p["aent"].append(eid)
                p["aattr"].append(a)
                p["akind"].append(k)
            for a, b in geo:
                p["gent"].append(eid)
                p["gattr"].append(a)
                for key, v in zip(("x1", "y1", "x2", "y2"), b, strict=True):
                    p[key].append(v)
        if not (p["nid"] or p["urid"] or p["drid"]):
            return None
        p["tid"] = tid
        p["xrid"] = p["urid"] + p["drid"]
        return await conn.execute(_ENTITIES, p, prepare=True), len(created)

    # ---- temporal history -------------------------------------------------------------------------
    async def _write_temporal_groups(self, conn: Conn, tid: int, groups: list[list[TemporalRecord]]) -> None:
        """The records of several changes (one group per change, in order), written as the
        per-change path wrote them one group after the other."""
        from urbanmim.store.sqlite_temporal import _ms
        from urbanmim.temporal.recorder import merge_entity_record, split_records
        memo: dict[object, int | None] = {}

        def ms(text: object) -> int | None:       # all attributes of one write share their timestamps
            if text is None:
                return None
            if text not in memo:
                memo[text] = _ms(text)
            return memo[text]

        split = [split_records(g) for g in groups]
        # temporal entities: the doc each would get if created here (first record, then merges)
        fresh: dict[str, dict[str, Any]] = {}
        for ents, _ in split:
            for eid, rec in ents.items():
                if eid not in fresh:
                    fresh[eid] = dict(rec.instance)
                else:
                    merged = merge_entity_record(fresh[eid], rec)
                    if merged is not None:
                        fresh[eid] = merged
        ids = list(fresh)
        cur = await conn.execute(_TENTITIES, {"tid": tid, "ids": ids, "docs": [orjson.dumps(fresh[i]) for i in ids]},
                                 binary=True, prepare=True)
        teids: dict[str, int] = {}
        stored: dict[str, tuple[int, dict[str, Any]]] = {}
        for eid, teid, doc in await cur.fetchall():
            teids[eid] = int(teid)
            if doc is not None:
                stored[eid] = (int(teid), orjson.loads(doc))
        if len(teids) != len(ids):
            raise _Fallback("a temporal entity was created by another process meanwhile")
        changed: dict[int, dict[str, Any]] = {}
        for ents, _ in split:
            for eid, rec in ents.items():
                if eid in stored:
                    teid, doc = stored[eid]
                    merged = merge_entity_record(doc, rec)
                    if merged is not None:
                        stored[eid] = (teid, merged)
                        changed[teid] = merged
        if changed:
            await conn.execute(_TENTITIES_UPDATE, (list(changed), [orjson.dumps(d) for d in changed.values()]),
                               prepare=True)

        # stored instances that re-sent observations replace (only temporal entities that existed)
        probe: dict[tuple[int, str, int, str], None] = {}
        for _, attrs in split:
            for rec in attrs:
                inst = rec.instance
                if rec.entity_id in stored and "observedAt" in inst and not (rec.deleted or "deletedAt" in inst):
                    probe[(teids[rec.entity_id], rec.attr, ms(rec.ts) or 0, rec.dataset_id or "")] = None
        same: dict[tuple[int, str, int, str], int] = {}
        if probe:
            pkeys = list(probe)
            cur = await conn.execute(_SAME, ([k[0] for k in pkeys], [k[1] for k in pkeys], [k[2] for k in pkeys],
                                             [k[3] for k in pkeys]), prepare=True)
            same = {(int(e), a, int(ts), ds): int(iid) for e, a, ts, ds, iid in await cur.fetchall()}

        inserts: list[list[Any]] = []
        updates: dict[int, tuple[int | None, float | None, bytes]] = {}
        rounds: list[dict[tuple[int, str, str, int], tuple[Any, ...]]] = []
        hits: dict[tuple[int, str, str, int], int] = {}
        recompute: dict[tuple[int, str, str, int], None] = {}
        pending: dict[tuple[int, str, int, str], int] = {}      # instances inserted by earlier groups
        for _, attrs in split:
            mine: dict[tuple[int, str, int, str], int] = {}
            for rec in attrs:
                teid = teids[rec.entity_id]
                inst = rec.instance
                ts = ms(rec.ts) or 0
                ds = rec.dataset_id or ""
                deleted_at = ms(inst.get("deletedAt")) if rec.deleted or "deletedAt" in inst else None
                key = (teid, rec.attr, ts, ds)
                hour = (teid, rec.attr, ds, ts - ts % HOUR)
                if deleted_at is None and "observedAt" in inst:
                    # the same observation (attribute, datasetId, observedAt) sent again replaces the stored one
                    iid = same.get(key)
                    j = pending.get(key) if iid is None else None
                    if iid is not None or j is not None:
                        m, doc = ms(inst.get("modifiedAt")), orjson.dumps(inst)
                        if iid is not None:
                            updates[iid] = (m, rec.num, doc)
                        else:
                            row = inserts[j]    # type: ignore[index]
                            row[5], row[7], row[8] = m, rec.num, doc
                        recompute[hour] = None
                        continue
                # the columns of _INSTANCES: teid, attr, ds, ts, created_at, modified_at, deleted_at, num, doc
                inserts.append([teid, rec.attr, ds, ts, ms(inst.get("createdAt")), ms(inst.get("modifiedAt")),
                                deleted_at, rec.num, orjson.dumps(inst)])
                if deleted_at is None:
                    mine.setdefault(key, len(inserts) - 1)
                    num = rec.num
                    k = hits.get(hour, 0)
                    hits[hour] = k + 1
                    if k == len(rounds):
                        rounds.append({})
                    rounds[k][hour] = (0 if num is None else 1, num or 0.0, (num or 0.0) ** 2, num, num)
            for key, j in mine.items():
                pending.setdefault(key, j)
        await self._write_instances(conn, tid, inserts, updates, rounds)
        if recompute:
            keys = list(recompute)
            cols = ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys], [k[3] for k in keys])
            await conn.execute(_RECOMPUTE_DELETE, cols, prepare=True)
            await conn.execute(_RECOMPUTE_INSERT, cols, prepare=True)

    async def _write_instances(self, conn: Conn, tid: int, inserts: list[list[Any]],
                               updates: dict[int, tuple[int | None, float | None, bytes]],
                               rounds: list[dict[tuple[int, str, str, int], tuple[Any, ...]]]) -> None:
        """Instances inserted and replaced, and the first round of bucket increments, in one
        statement; each further round (a bucket hit again in this call) in one more."""
        for n, buckets in enumerate(rounds or [{}]):
            p: dict[str, Any] = {}
            if n == 0:
                p = {"tid": tid, "e": [], "a": [], "ds": [], "ts": [], "c": [], "m": [], "d": [], "n": [], "doc": [],
                     "uiid": list(updates), "um": [], "un": [], "udoc": []}
                for row in inserts:
                    for col, v in zip(("e", "a", "ds", "ts", "c", "m", "d", "n", "doc"), row, strict=True):
                        p[col].append(v)
                for m, num, doc in updates.values():
                    p["um"].append(m)
                    p["un"].append(num)
                    p["udoc"].append(doc)
            if not buckets and not (n == 0 and (inserts or updates)):
                continue
            for col in ("be", "ba", "bds", "bh", "bnc", "bs", "bsq", "blo", "bhi"):
                p[col] = []
            for (teid, attr, ds, hour), (nc, s, sq, lo, hi) in buckets.items():
                for col, v in zip(("be", "ba", "bds", "bh", "bnc", "bs", "bsq", "blo", "bhi"),
                                  (teid, attr, ds, hour, nc, s, sq, lo, hi), strict=True):
                    p[col].append(v)
            await conn.execute((_INSTANCES + _BUCKETS) if n == 0 else _BUCKETS, p, prepare=True)
