"""SQLite part of the temporal history: attribute instances, hour buckets, and their reads.

Mixed into ``SQLiteStore``; :meth:`_write_temporal` runs in the writer's transaction
(records come from the temporal ChangeListener), so history and state commit together.

Layout (plain SQL, meant to port to PostgreSQL as is — BIGINT for the ms columns)::

    tentities(teid PK, tid, id, doc)            -- one row per temporal entity; doc = types,
                                                --  scope, createdAt/modifiedAt/deletedAt
    tinstances(iid PK, tid, attr_id, teid, ds, ts, created_at, modified_at, deleted_at, num, doc)
        INDEX (tid, attr_id, teid, ts)          -- every time-range read is an index range scan
        INDEX (teid, attr_id)                   -- attributes of an entity, deletes
    tbuckets(tid, teid, attr_id, ds, hour, cnt, ncnt, sum, sumsq, vmin, vmax)
        PRIMARY KEY (tid, teid, attr_id, ds, hour)   -- WITHOUT ROWID: the key is the table

* times are epoch **milliseconds** (UTC); ``ts`` is observedAt, else modifiedAt (for a
  deletion: deletedAt); ``ds`` is the datasetId, '' for the default instance (NOT NULL so
  the bucket key can conflict);
* ``num`` is the numeric value (NULL otherwise) — what aggregation reads;
* ``tbuckets`` pre-aggregates live (not deleted) instances per hour: maintained with one
  UPSERT per appended instance in the same transaction, and recomputed from the raw rows
  of that hour when an instance is patched or deleted (min/max cannot be subtracted).
  ``cnt`` counts instances, ``ncnt`` numeric ones: a bucket with ``cnt != ncnt`` holds
  non-numeric values and the reader falls back to raw instances.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from urbanmim.store.base import (
    AggrInputs,
    EntityQuery,
    HourBucket,
    PeriodGrid,
    StoredInstance,
    TemporalEntity,
    TemporalRecord,
    TemporalSpan,
)

SCHEMA_PART = """
CREATE TABLE IF NOT EXISTS tentities(teid INTEGER PRIMARY KEY, tid INTEGER NOT NULL, id TEXT NOT NULL,
    doc BLOB NOT NULL, UNIQUE(tid, id));
CREATE TABLE IF NOT EXISTS tinstances(iid INTEGER PRIMARY KEY, tid INTEGER NOT NULL, attr_id INTEGER NOT NULL,
    teid INTEGER NOT NULL, ds TEXT NOT NULL, ts INTEGER NOT NULL, created_at INTEGER, modified_at INTEGER,
    deleted_at INTEGER, num REAL, doc BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS tinstances_key ON tinstances(tid, attr_id, teid, ts);
CREATE INDEX IF NOT EXISTS tinstances_entity ON tinstances(teid, attr_id);
CREATE TABLE IF NOT EXISTS tbuckets(tid INTEGER NOT NULL, teid INTEGER NOT NULL, attr_id INTEGER NOT NULL,
    ds TEXT NOT NULL, hour INTEGER NOT NULL, cnt INTEGER NOT NULL, ncnt INTEGER NOT NULL, sum REAL NOT NULL,
    sumsq REAL NOT NULL, vmin REAL, vmax REAL, PRIMARY KEY(tid, teid, attr_id, ds, hour)) WITHOUT ROWID;
"""

HOUR = 3_600_000
INSTANCE_PREFIX = "urn:ngsi-ld:Instance:"
_TIME_COLUMN = {"observedAt": "ts", "createdAt": "created_at", "modifiedAt": "modified_at",
                "deletedAt": "deleted_at"}
_INSTANCE_INSERT = ("INSERT INTO tinstances(tid, attr_id, teid, ds, ts, created_at, modified_at, deleted_at, "
                    "num, doc) VALUES (?,?,?,?,?,?,?,?,?,?)")
_BUCKET_UPSERT = """
INSERT INTO tbuckets(tid, teid, attr_id, ds, hour, cnt, ncnt, sum, sumsq, vmin, vmax)
VALUES (?,?,?,?,?,1,?,?,?,?,?)
ON CONFLICT(tid, teid, attr_id, ds, hour) DO UPDATE SET
    cnt = cnt + 1, ncnt = ncnt + excluded.ncnt, sum = sum + excluded.sum, sumsq = sumsq + excluded.sumsq,
    vmin = CASE WHEN excluded.vmin IS NULL THEN vmin WHEN vmin IS NULL OR excluded.vmin < vmin
                THEN excluded.vmin ELSE vmin END,
    vmax = CASE WHEN excluded.vmax IS NULL THEN vmax WHEN vmax IS NULL OR excluded.vmax > vmax
                THEN excluded.vmax ELSE vmax END
"""
_BUCKET_RECOMPUTE = """
INSERT INTO tbuckets(tid, teid, attr_id, ds, hour, cnt, ncnt, sum, sumsq, vmin, vmax)
SELECT tid, teid, attr_id, ds, ?, count(*), count(num), coalesce(sum(num), 0), coalesce(sum(num * num), 0),
       min(num), max(num)
FROM tinstances WHERE tid=? AND attr_id=? AND teid=? AND ts>=? AND ts<? AND ds=? AND deleted_at IS NULL
GROUP BY tid, teid, attr_id, ds
"""


def _ms(text: object) -> int | None:
    from urbanmim.temporal.timeutil import opt_ms
    return opt_ms(text)


def instance_id(iid: int) -> str:
    return f"{INSTANCE_PREFIX}{iid}"


def _iid(instance_id_text: str) -> int | None:
    if not instance_id_text.startswith(INSTANCE_PREFIX):
        return None
    tail = instance_id_text[len(INSTANCE_PREFIX):]
    return int(tail) if tail.isdigit() else None


class SQLiteTemporal:
    SCHEMA_PART = SCHEMA_PART

    # the SQLiteStore members this mixin relies on
    rconn: sqlite3.Connection
    _terms: dict[str, int]
    _term_iri: dict[int, str]
    _lock: Any
    path: str
    synchronous: str

    if TYPE_CHECKING:  # provided by SQLiteStore
        def _tid(self, tenant: str) -> int | None: ...
        def _term(self, iri: str) -> int | None: ...
        def _iri(self, term_id: int) -> str: ...

    # ---- writes (inside the writer's transaction) ---------------------------------------------
    def _write_temporal(self, conn: sqlite3.Connection, tid: int, records: list[TemporalRecord]) -> None:
        """Record one change's instances. Rows are collected and written with ``executemany``:
        a write of 7 attributes used to cost ~23 statements, now ~5 (per-call flush keeps the
        order of changes within the transaction)."""
        from urbanmim.temporal.recorder import split_records
        new_terms: dict[str, int] = {}
        teids: dict[str, int] = {}
        memo: dict[object, int | None] = {}

        def ms(text: object) -> int | None:       # all attributes of one write share their timestamps
            if text is None:
                return None
            hit = memo.get(text, -1)
            if hit == -1:
                hit = memo[text] = _ms(text)
            return hit

        entity_recs, attr_recs = split_records(records)
        for eid, erec in entity_recs.items():
            teids[eid] = self._upsert_tentity(conn, tid, erec)
        inserts: list[tuple[object, ...]] = []
        buckets: list[tuple[object, ...]] = []
        for rec in attr_recs:
            teid = teids[rec.entity_id]
            attr_id = self._term_w(conn, rec.attr, new_terms)  # type: ignore[attr-defined]
            self._insert_instance(conn, tid, teid, attr_id, rec, ms, inserts, buckets)
        if inserts:
            conn.executemany(_INSTANCE_INSERT, inserts)
        if buckets:
            conn.executemany(_BUCKET_UPSERT, buckets)
        if new_terms:
            with self._lock:
                self._terms.update(new_terms)
                self._term_iri.update({v: k for k, v in new_terms.items()})

    def _upsert_tentity(self, conn: sqlite3.Connection, tid: int, rec: TemporalRecord) -> int:
        """Create the temporal entity or merge the entity-level record into it (types are a union)."""
        from urbanmim.temporal.recorder import merge_entity_record
        meta = rec.instance
        row = conn.execute("SELECT teid, doc FROM tentities WHERE tid=? AND id=?", (tid, rec.entity_id)).fetchone()
        if row is None:
            doc = {k: v for k, v in meta.items()}
            return int(conn.execute("INSERT INTO tentities(tid, id, doc) VALUES (?,?,?)",
                                    (tid, rec.entity_id, orjson.dumps(doc))).lastrowid or 0)
        merged = merge_entity_record(orjson.loads(row[1]), rec)
        if merged is not None:
            conn.execute("UPDATE tentities SET doc=? WHERE teid=?", (orjson.dumps(merged), row[0]))
        return int(row[0])

    def _insert_instance(self, conn: sqlite3.Connection, tid: int, teid: int, attr_id: int,
                         rec: TemporalRecord, ms: Callable[[object], int | None] = _ms,
                         inserts: list[tuple[object, ...]] | None = None,
                         buckets: list[tuple[object, ...]] | None = None) -> None:
        inst = rec.instance
        ts = ms(rec.ts) or 0
        ds = rec.dataset_id or ""
        deleted_at = ms(inst.get("deletedAt")) if rec.deleted or "deletedAt" in inst else None
        if deleted_at is None and "observedAt" in inst:
            # the same observation (attribute, datasetId, observedAt) sent again replaces the stored one
            same = conn.execute("SELECT iid FROM tinstances WHERE tid=? AND attr_id=? AND teid=? AND ts=? AND ds=? "
                                "AND deleted_at IS NULL LIMIT 1", (tid, attr_id, teid, ts, ds)).fetchone()
            if same is not None:
                conn.execute("UPDATE tinstances SET modified_at=?, num=?, doc=? WHERE iid=?",
                             (ms(inst.get("modifiedAt")), rec.num, orjson.dumps(inst), same[0]))
                self._recompute_bucket(conn, tid, teid, attr_id, ds, ts)
                return
        row = (tid, attr_id, teid, ds, ts, ms(inst.get("createdAt")), ms(inst.get("modifiedAt")),
               deleted_at, rec.num, orjson.dumps(inst))
        if inserts is None:
            conn.execute(_INSTANCE_INSERT, row)
        else:
            inserts.append(row)
        if deleted_at is None:
            num = rec.num
            brow = (tid, teid, attr_id, ds, ts - ts % HOUR, 0 if num is None else 1,
                    num or 0.0, (num or 0.0) ** 2, num, num)
            if buckets is None:
                conn.execute(_BUCKET_UPSERT, brow)
            else:
                buckets.append(brow)

    def _recompute_bucket(self, conn: sqlite3.Connection, tid: int, teid: int, attr_id: int, ds: str,
                          ts: int) -> None:
        hour = ts - ts % HOUR
        conn.execute("DELETE FROM tbuckets WHERE tid=? AND teid=? AND attr_id=? AND ds=? AND hour=?",
                     (tid, teid, attr_id, ds, hour))
        conn.execute(_BUCKET_RECOMPUTE, (hour, tid, attr_id, teid, hour, hour + HOUR, ds))

    def bulk_load_instances(self, tenant: str, entity_id: str, entity_type: str, attr: str,
                            rows: list[tuple[int, float]]) -> None:
        """Benchmark/import path: append many numeric (ts ms, value) instances in one transaction.

        Same tables and bucket UPSERT as the writer, minus the per-request JSON work."""
        from urbanmim.store.sqlite import _connect
        from urbanmim.temporal.timeutil import iso
        conn = _connect(self.path, self.synchronous)
        try:
            conn.execute("BEGIN IMMEDIATE")
            tid = self._tenant_id_w(conn, tenant, {})  # type: ignore[attr-defined]
            teid = self._upsert_tentity(conn, tid, TemporalRecord(entity_id, entity_type, "", None, iso(rows[0][0]),
                                                                  {"type": [entity_type]}))
            attr_id = self._term_w(conn, attr, {})  # type: ignore[attr-defined]
            conn.executemany(
                "INSERT INTO tinstances(tid, attr_id, teid, ds, ts, created_at, modified_at, deleted_at, num, doc) "
                "VALUES (?,?,?,'',?,?,?,NULL,?,?)",
                ((tid, attr_id, teid, ts, ts, ts, v,
                  orjson.dumps({"type": "Property", "value": v, "observedAt": iso(ts)})) for ts, v in rows))
            conn.executemany(_BUCKET_UPSERT, ((tid, teid, attr_id, "", ts - ts % HOUR, 1, v, v * v, v, v)
                                              for ts, v in rows))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()
        self._reload_caches(self.rconn)  # type: ignore[attr-defined]

    # ---- reads ----------------------------------------------------------------------------------
    def _teid(self, tenant: str, entity_id: str) -> tuple[int, int] | None:
        tid = self._tid(tenant)
        if tid is None:
            return None
        row = self.rconn.execute("SELECT teid FROM tentities WHERE tid=? AND id=?", (tid, entity_id)).fetchone()
        return (tid, int(row[0])) if row else None

    async def temporal_entities(self, tenant: str, ids: list[str] | None = None) -> list[TemporalEntity]:
        tid = self._tid(tenant)
        if tid is None:
            return []
        if ids is not None:
            marks = ",".join("?" * len(ids))
            rows = self.rconn.execute(f"SELECT teid, id, doc FROM tentities WHERE tid=? AND id IN ({marks}) "
                                      "ORDER BY teid", (tid, *ids)).fetchall()
        else:
            rows = self.rconn.execute("SELECT teid, id, doc FROM tentities WHERE tid=? ORDER BY teid",
                                      (tid,)).fetchall()
        out = []
        for teid, eid, raw in rows:
            doc = orjson.loads(raw)
            attrs = {self._iri(a) for a in self._attr_ids(teid)}
            out.append(TemporalEntity(eid, doc.get("type", []), doc.get("scope"), doc.get("createdAt"),
                                      doc.get("modifiedAt"), doc.get("deletedAt"), attrs))
        return out

    async def temporal_entity_page(self, tenant: str, query: EntityQuery) -> tuple[list[TemporalEntity], int | None]:
        """Entities in creation order, types matched on their document and attrs by an index probe,
        stopped at the page's end unless counting; only the page's attributes are skip-scanned."""
        tid = self._tid(tenant)
        if tid is None:
            return [], 0 if query.count else None
        sql, args = "SELECT teid, id, doc FROM tentities WHERE tid=?", [tid]
        if query.ids is not None:
            sql += f" AND id IN ({','.join('?' * len(query.ids))})"
            args += query.ids
        want = None if query.attrs is None else [t for a in query.attrs if (t := self._term(a)) is not None]
        probe = f"SELECT 1 FROM tinstances WHERE teid=? AND attr_id IN ({','.join('?' * len(want or ()))}) LIMIT 1"
        out: list[TemporalEntity] = []
        n = 0
        for teid, eid, raw in self.rconn.execute(sql + " ORDER BY teid", args).fetchall():
            doc = orjson.loads(raw)
            if query.types is not None and not any(g <= set(doc.get("type", [])) for g in query.types):
                continue
            if want is not None and not (want and self.rconn.execute(probe, (teid, *want)).fetchone()):
                continue
            if query.offset <= n < query.offset + query.limit:
                out.append(TemporalEntity(eid, doc.get("type", []), doc.get("scope"), doc.get("createdAt"),
                                          doc.get("modifiedAt"), doc.get("deletedAt"),
                                          {self._iri(a) for a in self._attr_ids(teid)}))
            n += 1
            if not query.count and n >= query.offset + query.limit:
                break
        return out, n if query.count else None

    def _attr_ids(self, teid: int) -> list[int]:
        """Distinct attributes of an entity by skipping along the (teid, attr_id) index: one seek
        per attribute, where ``SELECT DISTINCT`` would walk every instance of a long history."""
        out: list[int] = []
        last = -1
        while True:
            row = self.rconn.execute("SELECT attr_id FROM tinstances WHERE teid=? AND attr_id>? "
                                     "ORDER BY attr_id LIMIT 1", (teid, last)).fetchone()
            if row is None:
                return out
            last = int(row[0])
            out.append(last)

    async def temporal_latest(self, tenant: str, entity_id: str) -> dict[str, list[dict[str, Any]]]:
        key = self._teid(tenant, entity_id)
        if key is None:
            return {}
        out: dict[str, list[dict[str, Any]]] = {}
        # SQLite: the bare columns of a max() aggregate come from the row holding the max
        for attr_id, _ds, _ts, doc in self.rconn.execute(
                "SELECT attr_id, ds, max(ts), doc FROM tinstances WHERE teid=? AND deleted_at IS NULL "
                "GROUP BY attr_id, ds", (key[1],)):
            out.setdefault(self._iri(attr_id), []).append(orjson.loads(doc))
        return out

    async def temporal_instances(self, tenant: str, entity_id: str, attr: str, span: TemporalSpan, *,
                                 newest_first: bool, limit: int) -> list[StoredInstance]:
        key = self._teid(tenant, entity_id)
        attr_id = self._term(attr)
        if key is None or attr_id is None:
            return []
        col = _TIME_COLUMN[span.timeproperty]
        where = [f"tid=? AND attr_id=? AND teid=? AND {col} IS NOT NULL"]
        args: list[Any] = [key[0], attr_id, key[1]]
        if span.start is not None:
            where.append(f"{col}>=?")
            args.append(span.start)
        if span.end is not None:
            where.append(f"{col}<=?" if span.end_inclusive else f"{col}<?")
            args.append(span.end)
        if span.dataset_ids is not None:
            dss = ["" if d == "@none" else d for d in span.dataset_ids]
            where.append(f"ds IN ({','.join('?' * len(dss))})")
            args.extend(dss)
        order = "DESC" if newest_first else "ASC"
        sql = (f"SELECT iid, ds, {col}, num, doc FROM tinstances WHERE {' AND '.join(where)} "
               f"ORDER BY {col} {order}, iid {order} LIMIT ?")
        return [StoredInstance(instance_id(iid), attr, ds or None, t, orjson.loads(doc), num)
                for iid, ds, t, num, doc in self.rconn.execute(sql, (*args, limit))]

    async def temporal_buckets(self, tenant: str, entity_id: str, attr: str, start: int,
                               end: int) -> list[HourBucket]:
        key = self._teid(tenant, entity_id)
        attr_id = self._term(attr)
        if key is None or attr_id is None:
            return []
        rows = self.rconn.execute(
            "SELECT ds, hour, cnt, ncnt, sum, sumsq, vmin, vmax FROM tbuckets "
            "WHERE tid=? AND teid=? AND attr_id=? AND hour>=? AND hour<? ORDER BY ds, hour",
            (key[0], key[1], attr_id, start, end))
        return [HourBucket(ds or None, h, c, n, s, sq, lo, hi) for ds, h, c, n, s, sq, lo, hi in rows]

    async def temporal_aggr_inputs(self, tenant: str, keys: list[tuple[str, str]], span: TemporalSpan,
                                   bucket_end: int | None,
                                   periods: PeriodGrid | None = None) -> dict[tuple[str, str], AggrInputs]:
        """A page's aggregation inputs in a constant number of statements (``IN (...)`` over the
        page's entities and attributes) instead of four per attribute. ``periods`` is not used:
        hour buckets come as they are (SQLite's ``sum()`` is compensated from 3.43 on, so it
        would not add them as the Python aggregation does, and the rows are local anyway)."""
        tid = self._tid(tenant)
        keys = list(dict.fromkeys(keys))
        if tid is None or not keys or span.start is None or span.end is None:
            return {}
        col = _TIME_COLUMN[span.timeproperty]
        eids = sorted({e for e, _ in keys})
        teids = {eid: int(teid) for teid, eid in self.rconn.execute(
            f"SELECT teid, id FROM tentities WHERE tid=? AND id IN ({','.join('?' * len(eids))})", (tid, *eids))}
        attr_ids = {a: t for a in {a for _, a in keys} if (t := self._term(a)) is not None}
        keys = [k for k in keys if k[0] in teids and k[1] in attr_ids]
        if not keys:
            return {}
        by_teid = {teids[e]: e for e, _ in keys}
        by_attr = {attr_ids[a]: a for _, a in keys}
        ids = sorted(by_teid)
        aids = sorted(by_attr)
        where = (f"tid=? AND teid IN ({','.join('?' * len(ids))}) AND attr_id IN ({','.join('?' * len(aids))}) "
                 f"AND {col} IS NOT NULL AND {col}>=? AND {col}<?")
        ds_args: list[Any] = []
        if span.dataset_ids is not None:
            ds_args = ["" if d == "@none" else d for d in span.dataset_ids]
            where += f" AND ds IN ({','.join('?' * len(ds_args))})"
        firsts: dict[tuple[str, str], StoredInstance] = {}
        one = (f"SELECT * FROM (SELECT teid, attr_id, iid, ds, {col}, num, doc FROM tinstances "
               f"WHERE tid=? AND teid=? AND attr_id=? AND {col} IS NOT NULL AND {col}>=? AND {col}<?"
               + (f" AND ds IN ({','.join('?' * len(ds_args))})" if span.dataset_ids is not None else "")
               + f" ORDER BY {col}, iid LIMIT 1)")
        for at in range(0, len(keys), 200):      # one index probe per attribute, 200 to a statement
            part = keys[at:at + 200]
            args: list[Any] = []
            for e, a in part:
                args += [tid, teids[e], attr_ids[a], span.start, span.end, *ds_args]
            for teid, aid, iid, ds, t, num, doc in self.rconn.execute(" UNION ALL ".join([one] * len(part)), args):
                key = (by_teid[teid], by_attr[aid])
                firsts[key] = StoredInstance(instance_id(iid), key[1], ds or None, t, orjson.loads(doc), num)
        keys = [k for k in keys if k in firsts]
        buckets: dict[tuple[str, str], list[HourBucket]] = {}
        raw_from = span.start
        if bucket_end is not None:
            raw_from = bucket_end
            for teid, aid, ds, h, c, n, sm, sq, lo, hi in self.rconn.execute(
                    "SELECT teid, attr_id, ds, hour, cnt, ncnt, sum, sumsq, vmin, vmax FROM tbuckets "
                    f"WHERE tid=? AND teid IN ({','.join('?' * len(ids))}) "
                    f"AND attr_id IN ({','.join('?' * len(aids))}) AND hour>=? AND hour<? "
                    "ORDER BY teid, attr_id, ds, hour", (tid, *ids, *aids, span.start, bucket_end)):
                buckets.setdefault((by_teid[teid], by_attr[aid]), []).append(
                    HourBucket(ds or None, h, c, n, sm, sq, lo, hi))
        raws: dict[tuple[str, str], list[StoredInstance]] = {}
        if raw_from < span.end:
            for teid, aid, iid, ds, t, num, doc in self.rconn.execute(
                    f"SELECT teid, attr_id, iid, ds, {col}, num, doc FROM tinstances WHERE {where} "
                    f"ORDER BY teid, attr_id, {col}, iid", (tid, *ids, *aids, raw_from, span.end, *ds_args)):
                raws.setdefault((by_teid[teid], by_attr[aid]), []).append(
                    StoredInstance(instance_id(iid), by_attr[aid], ds or None, t, orjson.loads(doc), num))
        return {k: AggrInputs(firsts[k], buckets.get(k, []), raws.get(k, [])) for k in keys}

    # ---- deletes and instance edits (their own short transaction) -------------------------------
    async def _temporal_tx(self, fn: Any) -> Any:
        from urbanmim.store.sqlite import _connect

        def run() -> Any:
            conn = _connect(self.path, self.synchronous)
            try:
                conn.execute("BEGIN IMMEDIATE")
                result = fn(conn)
                conn.execute("COMMIT")
                return result
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            finally:
                conn.close()
        return await asyncio.get_running_loop().run_in_executor(None, run)

    async def temporal_delete(self, tenant: str, entity_id: str, attr: str | None = None, *,
                              dataset_id: str | None = None, delete_all: bool = False) -> bool:
        key = self._teid(tenant, entity_id)
        if key is None:
            return False
        tid, teid = key
        attr_id = self._term(attr) if attr is not None else None
        if attr is not None and attr_id is None:
            return False

        def run(conn: sqlite3.Connection) -> bool:
            if attr_id is None:
                conn.execute("DELETE FROM tinstances WHERE teid=?", (teid,))
                conn.execute("DELETE FROM tbuckets WHERE tid=? AND teid=?", (tid, teid))
                conn.execute("DELETE FROM tentities WHERE teid=?", (teid,))
                return True
            cond, args = "teid=? AND attr_id=?", [teid, attr_id]
            if not delete_all:
                cond += " AND ds=?"
                args.append(dataset_id or "")
            n = conn.execute(f"DELETE FROM tinstances WHERE {cond}", args).rowcount
            conn.execute(f"DELETE FROM tbuckets WHERE tid=? AND {cond}", (tid, *args))
            return n > 0
        return bool(await self._temporal_tx(run))

    async def temporal_instance_update(self, tenant: str, entity_id: str, attr: str, instance_id_text: str,
                                       patch: dict[str, Any] | None, now: str) -> bool:
        from urbanmim.temporal.recorder import numeric
        key = self._teid(tenant, entity_id)
        attr_id = self._term(attr)
        iid = _iid(instance_id_text)
        if key is None or attr_id is None or iid is None:
            return False
        tid, teid = key

        def run(conn: sqlite3.Connection) -> bool:
            row = conn.execute("SELECT ds, ts, doc, deleted_at FROM tinstances WHERE iid=? AND teid=? AND attr_id=?",
                               (iid, teid, attr_id)).fetchone()
            if row is None:
                return False
            ds, old_ts, doc, deleted_at = row
            if patch is None:
                conn.execute("DELETE FROM tinstances WHERE iid=?", (iid,))
            else:
                inst = orjson.loads(doc)
                inst.update(patch)
                inst["modifiedAt"] = now
                ts = _ms(inst.get("observedAt")) or old_ts
                conn.execute("UPDATE tinstances SET ts=?, modified_at=?, num=?, doc=? WHERE iid=?",
                             (ts, _ms(now), numeric(inst), orjson.dumps(inst), iid))
                if deleted_at is None and ts // HOUR != old_ts // HOUR:
                    self._recompute_bucket(conn, tid, teid, attr_id, ds, ts)
            if deleted_at is None:
                self._recompute_bucket(conn, tid, teid, attr_id, ds, old_ts)
            return True
        return bool(await self._temporal_tx(run))
