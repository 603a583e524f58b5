"""PostgreSQL part of the temporal history: attribute instances, hour buckets, and their reads.

Mixed into ``PostgresStore``; entity writes add their history in the write transaction
(``_write_temporal_groups`` in ``postgres_writes.py``, set form), so history and state commit
together. Same layout and semantics as ``sqlite_temporal.py``
(epoch-ms BIGINT times, ``ds`` '' for the default instance, ``num`` for aggregation,
hour buckets maintained by ``INSERT ... ON CONFLICT DO UPDATE`` and recomputed from raw
rows when an instance is patched or deleted), with attribute IRIs stored as text.

Time layout: **one table, B-tree ``(teid, attr, ts)`` + BRIN ``(ts)``**, not native range
partitioning. Every read the API makes is "one attribute of one entity over a time
range": the B-tree answers it with one range scan whatever the table size, and
partitioning would add nothing to it but a partition-pruning step (and a ``ts`` column in
every primary key, partitions to create ahead of time, instance ids no longer unique by
themselves). BRIN on ``ts`` costs a few pages and makes time-wide scans (retention:
``DELETE ... WHERE ts < x``, exports) cheap as rows arrive roughly in time order.
Partitioning becomes the right answer once retention is a product feature (dropping a
month is then ``DROP TABLE``): it is a later migration, not a change of this interface.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
import psycopg

from urbanmim.store.base import (
    AggrInputs,
    EntityQuery,
    HourBucket,
    PeriodGrid,
    StoredInstance,
    TemporalEntity,
    TemporalSpan,
)
from urbanmim.store.sqlite_temporal import HOUR, _iid, _ms, instance_id

_TIME_COLUMN = {"observedAt": "ts", "createdAt": "created_at", "modifiedAt": "modified_at",
                "deletedAt": "deleted_at"}
_BUCKET_RECOMPUTE = """
INSERT INTO tbuckets(teid, attr, ds, hour, cnt, ncnt, sum, sumsq, vmin, vmax)
SELECT teid, attr, ds, %(hour)s, count(*), count(num), coalesce(sum(num), 0), coalesce(sum(num * num), 0),
       min(num), max(num)
FROM tinstances WHERE teid=%(teid)s AND attr=%(attr)s AND ds=%(ds)s AND ts >= %(hour)s AND ts < %(hour)s + 3600000
     AND deleted_at IS NULL
GROUP BY teid, attr, ds
ON CONFLICT (teid, attr, ds, hour) DO UPDATE SET cnt=excluded.cnt, ncnt=excluded.ncnt, sum=excluded.sum,
    sumsq=excluded.sumsq, vmin=excluded.vmin, vmax=excluded.vmax
"""
# each entity with its attribute names, by skipping along its (teid, attr, ts) index
_ENTITIES = """
SELECT t.teid, t.id, t.doc, a.attrs FROM tentities t CROSS JOIN LATERAL (
    WITH RECURSIVE r(attr) AS (
        (SELECT i.attr FROM tinstances i WHERE i.teid=t.teid ORDER BY i.attr LIMIT 1)
        UNION ALL
        SELECT (SELECT i.attr FROM tinstances i WHERE i.teid=t.teid AND i.attr > r.attr ORDER BY i.attr LIMIT 1)
        FROM r WHERE r.attr IS NOT NULL)
    SELECT array_agg(r.attr) AS attrs FROM r WHERE r.attr IS NOT NULL) a
WHERE {where} ORDER BY t.teid
"""

Conn = psycopg.AsyncConnection[Any]


class PostgresTemporal:
    if TYPE_CHECKING:  # provided by PostgresStore
        pool: Any

        async def _tid(self, tenant: str) -> int | None: ...
        async def _fetch(self, query: str, args: Any = None, *, binary: bool = False) -> list[tuple[Any, ...]]: ...

    # ---- writes (inside the write transaction) --------------------------------------------------
    # Instances, hour buckets and temporal entities of entity writes: ``_write_temporal_groups``
    # (postgres_writes.py, set form). Below: what the temporal API's instance PATCH/DELETE needs.
    async def _recompute_bucket(self, conn: Conn, teid: int, attr: str, ds: str, ts: int) -> None:
        hour = ts - ts % HOUR
        await conn.execute("DELETE FROM tbuckets WHERE teid=%s AND attr=%s AND ds=%s AND hour=%s",
                           (teid, attr, ds, hour))
        await conn.execute(_BUCKET_RECOMPUTE, {"teid": teid, "attr": attr, "ds": ds, "hour": hour})

    # ---- reads ----------------------------------------------------------------------------------
    async def _teid(self, tenant: str, entity_id: str) -> tuple[int, int] | None:
        tid = await self._tid(tenant)
        if tid is None or "\x00" in entity_id:    # text cannot hold NUL: no such entity
            return None
        rows = await self._fetch("SELECT teid FROM tentities WHERE tid=%s AND id=%s", (tid, entity_id))
        return (tid, int(rows[0][0])) if rows else None

    async def temporal_entities(self, tenant: str, ids: list[str] | None = None) -> list[TemporalEntity]:
        """One statement, however many entities: each one's attribute names come from a skip
        scan of its (teid, attr, ts) index in a LATERAL subquery (was: one query per entity,
        i.e. a thousand round trips for a temporal query over a thousand sensors)."""
        tid = await self._tid(tenant)
        if tid is None:
            return []
        where = "t.tid=%(tid)s"
        args: dict[str, Any] = {"tid": tid}
        if ids is not None:
            where += " AND t.id = ANY(%(ids)s)"
            args["ids"] = [i for i in ids if "\x00" not in i]
        rows = await self._fetch(_ENTITIES.format(where=where), args, binary=True)
        out = []
        for _teid, eid, raw, attrs in rows:
            doc = orjson.loads(raw)
            out.append(TemporalEntity(eid, doc.get("type", []), doc.get("scope"), doc.get("createdAt"),
                                      doc.get("modifiedAt"), doc.get("deletedAt"), set(attrs or ())))
        return out

    async def temporal_entity_page(self, tenant: str, query: EntityQuery) -> tuple[list[TemporalEntity], int | None]:
        """The page in SQL (``ORDER BY teid LIMIT/OFFSET``): a page of 20 reads 20 entities and
        skip-scans their attributes, not the tenant's whole history (~30 ms for 1,000 temporal
        entities); types are matched on the JSON document (``@>``), attrs by an index probe; the
        count is a second statement, only when asked for."""
        tid = await self._tid(tenant)
        if tid is None:
            return [], 0 if query.count else None
        where = ["t.tid=%(tid)s"]
        args: dict[str, Any] = {"tid": tid, "limit": query.limit, "offset": query.offset}
        if query.ids is not None:
            where.append("t.id = ANY(%(ids)s)")
            args["ids"] = [i for i in query.ids if "\x00" not in i]
        if query.types is not None:
            groups = [sorted(g) for g in query.types if not any("\x00" in t for t in g)]
            for n, g in enumerate(groups):
                args[f"type{n}"] = orjson.dumps(g).decode()
            where.append("(" + (" OR ".join(f"convert_from(t.doc, 'UTF8')::jsonb->'type' @> %(type{n})s::jsonb"
                                             for n in range(len(groups))) or "false") + ")")
        if query.attrs is not None:
            where.append("EXISTS (SELECT 1 FROM tinstances i WHERE i.teid=t.teid AND i.attr = ANY(%(attrs)s))")
            args["attrs"] = [a for a in query.attrs if "\x00" not in a]
        cond = " AND ".join(where)
        rows = await self._fetch(_ENTITIES.format(where=cond) + " LIMIT %(limit)s OFFSET %(offset)s", args,
                                 binary=True)
        out = []
        for _teid, eid, raw, attrs in rows:
            doc = orjson.loads(raw)
            out.append(TemporalEntity(eid, doc.get("type", []), doc.get("scope"), doc.get("createdAt"),
                                      doc.get("modifiedAt"), doc.get("deletedAt"), set(attrs or ())))
        if not query.count:
            return out, None
        if len(out) < query.limit and (out or query.offset == 0):
            return out, query.offset + len(out)          # the last page: its end is the count
        total = await self._fetch(f"SELECT count(*) FROM tentities t WHERE {cond}", args)
        return out, int(total[0][0])

    async def temporal_latest(self, tenant: str, entity_id: str) -> dict[str, list[dict[str, Any]]]:
        key = await self._teid(tenant, entity_id)
        if key is None:
            return {}
        out: dict[str, list[dict[str, Any]]] = {}
        for attr, doc in await self._fetch(
                "SELECT DISTINCT ON (attr, ds) attr, doc FROM tinstances WHERE teid=%s AND deleted_at IS NULL "
                "ORDER BY attr, ds, ts DESC, iid DESC", (key[1],), binary=True):
            out.setdefault(attr, []).append(orjson.loads(doc))
        return out

    async def temporal_instances(self, tenant: str, entity_id: str, attr: str, span: TemporalSpan, *,
                                 newest_first: bool, limit: int) -> list[StoredInstance]:
        tid = await self._tid(tenant)
        if tid is None or "\x00" in attr or "\x00" in entity_id:
            return []
        col = _TIME_COLUMN[span.timeproperty]
        # the entity's teid looked up in the same statement: one round trip (aggregation over a
        # page of entities makes several of these calls per entity)
        where = [f"teid=(SELECT teid FROM tentities WHERE tid=%s AND id=%s) AND attr=%s AND {col} IS NOT NULL"]
        args: list[Any] = [tid, entity_id, attr]
        if span.start is not None:
            where.append(f"{col}>=%s")
            args.append(span.start)
        if span.end is not None:
            where.append(f"{col}<=%s" if span.end_inclusive else f"{col}<%s")
            args.append(span.end)
        if span.dataset_ids is not None:
            where.append("ds = ANY(%s)")
            args.append(["" if d == "@none" else d for d in span.dataset_ids])
        order = "DESC" if newest_first else "ASC"
        rows = await self._fetch(f"SELECT iid, ds, {col}, num, doc FROM tinstances WHERE {' AND '.join(where)} "
                                 f"ORDER BY {col} {order}, iid {order} LIMIT %s", [*args, limit], binary=True)
        return [StoredInstance(instance_id(iid), attr, ds or None, int(t), orjson.loads(doc), num)
                for iid, ds, t, num, doc in rows]

    async def temporal_buckets(self, tenant: str, entity_id: str, attr: str, start: int,
                               end: int) -> list[HourBucket]:
        tid = await self._tid(tenant)
        if tid is None or "\x00" in attr or "\x00" in entity_id:
            return []
        rows = await self._fetch("SELECT ds, hour, cnt, ncnt, sum, sumsq, vmin, vmax FROM tbuckets "
                                 "WHERE teid=(SELECT teid FROM tentities WHERE tid=%s AND id=%s) AND attr=%s "
                                 "AND hour>=%s AND hour<%s ORDER BY ds, hour", (tid, entity_id, attr, start, end))
        return [HourBucket(ds or None, int(h), int(c), int(n), s, sq, lo, hi) for ds, h, c, n, s, sq, lo, hi in rows]

    async def temporal_aggr_inputs(self, tenant: str, keys: list[tuple[str, str]], span: TemporalSpan,
                                   bucket_end: int | None,
                                   periods: PeriodGrid | None = None) -> dict[tuple[str, str], AggrInputs]:
        """A page's aggregation inputs in at most three statements whatever its size (was: four
        per attribute): first instances (with the teids), hour buckets and raw tails, each one
        statement over the page's (entity, attr) pairs. With
        ``periods`` the buckets come merged per period by ``GROUP BY`` (a month of days: 30 rows
        per attribute instead of 720, which Python would decode only to add them up again);
        sums are added in hour order (``ORDER BY hour``), as the Python aggregation adds them."""
        tid = await self._tid(tenant)
        keys = [k for k in dict.fromkeys(keys) if "\x00" not in k[0] and "\x00" not in k[1]]
        if tid is None or not keys or span.start is None or span.end is None:
            return {}
        col = _TIME_COLUMN[span.timeproperty]
        ds_where, ds_args = "", []
        if span.dataset_ids is not None:
            ds_where = " AND i.ds = ANY(%s)"
            ds_args = [["" if d == "@none" else d for d in span.dataset_ids]]
        firsts: dict[tuple[str, str], StoredInstance] = {}
        teids: dict[str, int] = {}
        for pos, teid, iid, ds, t, num, doc in await self._fetch(
                # the teid joined in (no statement of its own); the oldest time first (an index probe),
                # then the lowest instance id at that time: the same row as ORDER BY time, iid LIMIT 1,
                # which a generic plan answers by sorting them all
                "SELECT k.n, e.teid, f.iid, f.ds, f.t, f.num, f.doc "
                "FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS k(id, attr, n) "
                "JOIN tentities e ON e.tid=%s AND e.id=k.id CROSS JOIN LATERAL ("
                f"SELECT i.iid, i.ds, i.{col} AS t, i.num, i.doc FROM tinstances i "
                f"WHERE i.teid=e.teid AND i.attr=k.attr AND i.{col} = ("
                f"SELECT i.{col} FROM tinstances i WHERE i.teid=e.teid AND i.attr=k.attr AND i.{col} IS NOT NULL "
                f"AND i.{col}>=%s AND i.{col}<%s{ds_where} ORDER BY i.{col} LIMIT 1){ds_where} "
                "ORDER BY i.iid LIMIT 1) f",
                [[e for e, _ in keys], [a for _, a in keys], tid, span.start, span.end, *ds_args, *ds_args],
                binary=True):
            key = keys[pos - 1]
            teids[key[0]] = int(teid)
            firsts[key] = StoredInstance(instance_id(iid), key[1], ds or None, int(t), orjson.loads(doc), num)
        keys = [k for k in keys if k in firsts]
        if not keys:
            return {}
        # per (teid, attr) a LATERAL range scan of the primary key / (teid, attr, ts) index, which
        # returns rows already in order (a plain ``teid = ANY`` scan then sorts on the text IRIs)
        pairs = [[teids[e] for e, _ in keys], [a for _, a in keys]]
        buckets: dict[tuple[str, str], list[HourBucket]] = {}
        raw_from = span.start
        if bucket_end is not None:
            raw_from = bucket_end
            # rows name their key by its position (an int, not the attribute IRI on every row)
            select, p_args = "SELECT ds, hour, cnt, ncnt, sum, sumsq, vmin, vmax FROM tbuckets", []
            group = "ORDER BY ds, hour"
            if periods is not None:
                if periods.starts is None:
                    period = "%s::bigint + (hour - %s::bigint) / %s::bigint * %s::bigint"
                    p_args = [periods.origin, periods.origin, periods.fixed_ms, periods.fixed_ms]
                else:
                    period = "(%s::bigint[])[width_bucket(hour, %s::bigint[])]"
                    p_args = [periods.starts, periods.starts]
                # min/max of equal values keep the earliest hour's (Python's ``<``): only the sign of a
                # zero can tell, so the earliest hour with a zero and with a negative zero come along
                select = (f"SELECT ds, {period} AS p, sum(cnt)::bigint, sum(ncnt)::bigint, sum(sum ORDER BY hour), "
                          "sum(sumsq ORDER BY hour), min(vmin), max(vmax), "
                          "min(hour) FILTER (WHERE vmin = 0), min(hour) FILTER (WHERE vmin = 0 AND vmin::text = '-0'), "
                          "min(hour) FILTER (WHERE vmax = 0), min(hour) FILTER (WHERE vmax = 0 AND vmax::text = '-0') "
                          "FROM tbuckets")
                group = "GROUP BY 1, 2 ORDER BY 1, 2"
            for pos, ds, h, c, n, sm, sq, lo, hi, *zeros in await self._fetch(
                    "SELECT k.n, b.* "
                    "FROM unnest(%s::bigint[], %s::text[]) WITH ORDINALITY AS k(teid, attr, n) CROSS JOIN LATERAL ("
                    f"{select} WHERE teid=k.teid AND attr=k.attr AND hour>=%s AND hour<%s {group}) b",
                    [*pairs, *p_args, span.start, bucket_end], binary=True):
                if zeros and lo == 0:
                    lo = -0.0 if zeros[1] == zeros[0] else 0.0
                if zeros and hi == 0:
                    hi = -0.0 if zeros[3] == zeros[2] else 0.0
                buckets.setdefault(keys[pos - 1], []).append(HourBucket(ds or None, h, c, n, sm, sq, lo, hi))
        raws: dict[tuple[str, str], list[StoredInstance]] = {}
        if raw_from < span.end:
            for pos, iid, ds, t, num, doc in await self._fetch(
                    "SELECT k.n, r.iid, r.ds, r.t, r.num, r.doc "
                    "FROM unnest(%s::bigint[], %s::text[]) WITH ORDINALITY AS k(teid, attr, n) CROSS JOIN LATERAL ("
                    f"SELECT i.iid, i.ds, i.{col} AS t, i.num, i.doc FROM tinstances i "
                    f"WHERE i.teid=k.teid AND i.attr=k.attr AND i.{col} IS NOT NULL AND i.{col}>=%s AND i.{col}<%s"
                    f"{ds_where} ORDER BY i.{col}, i.iid) r",
                    [*pairs, raw_from, span.end, *ds_args], binary=True):
                key = keys[pos - 1]
                raws.setdefault(key, []).append(
                    StoredInstance(instance_id(iid), key[1], ds or None, int(t), orjson.loads(doc), num))
        return {k: AggrInputs(firsts[k], buckets.get(k, []), raws.get(k, [])) for k in keys}

    # ---- deletes and instance edits (their own short transaction) -------------------------------
    async def _temporal_tx(self, fn: Callable[[Conn], Awaitable[bool]]) -> bool:
        async with self.pool.connection() as conn, conn.transaction():
            return await fn(conn)

    async def temporal_delete(self, tenant: str, entity_id: str, attr: str | None = None, *,
                              dataset_id: str | None = None, delete_all: bool = False) -> bool:
        key = await self._teid(tenant, entity_id)
        if key is None:
            return False
        teid = key[1]

        async def run(conn: Conn) -> bool:
            if attr is None:
                await conn.execute("DELETE FROM tinstances WHERE teid=%s", (teid,))
                await conn.execute("DELETE FROM tbuckets WHERE teid=%s", (teid,))
                await conn.execute("DELETE FROM tentities WHERE teid=%s", (teid,))
                return True
            cond, args = "teid=%s AND attr=%s", [teid, attr]
            if not delete_all:
                cond += " AND ds=%s"
                args.append(dataset_id or "")
            cur = await conn.execute(f"DELETE FROM tinstances WHERE {cond}", args)
            await conn.execute(f"DELETE FROM tbuckets WHERE {cond}", args)
            return cur.rowcount > 0
        return await self._temporal_tx(run)

    async def temporal_instance_update(self, tenant: str, entity_id: str, attr: str, instance_id_text: str,
                                       patch: dict[str, Any] | None, now: str) -> bool:
        from urbanmim.temporal.recorder import numeric
        key = await self._teid(tenant, entity_id)
        iid = _iid(instance_id_text)
        if key is None or iid is None:
            return False
        teid = key[1]

        async def run(conn: Conn) -> bool:
            cur = await conn.execute("SELECT ds, ts, doc, deleted_at FROM tinstances WHERE iid=%s AND teid=%s "
                                     "AND attr=%s FOR UPDATE", (iid, teid, attr), binary=True)
            row = await cur.fetchone()
            if row is None:
                return False
            ds, old_ts, doc, deleted_at = row
            if patch is None:
                await conn.execute("DELETE FROM tinstances WHERE iid=%s", (iid,))
            else:
                inst = orjson.loads(doc)
                inst.update(patch)
                inst["modifiedAt"] = now
                ts = _ms(inst.get("observedAt")) or old_ts
                await conn.execute("UPDATE tinstances SET ts=%s, modified_at=%s, num=%s, doc=%s WHERE iid=%s",
                                   (ts, _ms(now), numeric(inst), orjson.dumps(inst), iid))
                if deleted_at is None and ts // HOUR != old_ts // HOUR:
                    await self._recompute_bucket(conn, teid, attr, ds, ts)
            if deleted_at is None:
                await self._recompute_bucket(conn, teid, attr, ds, old_ts)
            return True
        return await self._temporal_tx(run)
