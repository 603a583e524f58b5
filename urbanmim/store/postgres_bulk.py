"""PostgreSQL bulk loading: millions of new entities (and history) without the request path.

Why a separate path: a city's first import, or a benchmark dataset of 10M entities, would
spend its time in HTTP, JSON-LD expansion and one transaction per batch. Here the caller
hands over entities already in the internal shape (expanded IRIs, as
``urbanmim/ngsild/payload.py`` makes them) and the rows go in with binary ``COPY``:

* **The same rows as the write path**, built by the same function (``_index_params``):
  the document in ``entities``, its types in ``etypes``, attribute names and kinds in
  ``eattrs``, bounding boxes in ``egeo`` (through a temporary table, so the envelope is
  made by the very ``ST_MakeEnvelope`` the writer uses). Queries cannot tell the two apart.
* **One transaction per chunk** (``chunk`` entities, default 50,000) with
  ``synchronous_commit`` off for that transaction only: an interrupted load keeps the
  chunks it committed (nothing half-written), and a crash can lose at most the last
  commits of the load itself, never other writers' data.
* **An empty database loads faster with ``defer_indexes``**: the secondary indexes and
  the key constraints of the four tables are dropped first and built once at the end
  (sorting beats 70M single B-tree/GiST insertions for a 10M-entity city: see
  ``bench/pg_scale.py``). Only allowed when the tables are empty — other tenants' queries
  would otherwise lose their indexes meanwhile.
* **New entities only.** Row ids are drawn from the ``entities`` sequence (safe beside
  live writers); an id that already exists fails the chunk with :class:`BulkConflict`
  (use batch upsert to change existing entities).
* **No notifications, no temporal history for the entities**: it is a load, not a stream
  of changes. :meth:`bulk_load_instances` adds history separately (instances + the same
  hour buckets as the writer), for imports of past measurements and for benchmarks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import TYPE_CHECKING, Any

import orjson
import psycopg

from urbanmim.errors import AlreadyExists, Conflict
from urbanmim.ngsild.entity import Entity

HOUR = 3_600_000


class BulkConflict(AlreadyExists):
    """A bulk-loaded entity id already exists in the tenant."""


_BULK_TABLES = ["entities", "etypes", "eattrs", "egeo"]
_KEEP = {"entities_pkey"}          # rid ascending: appended to anyway


def _chunks(items: Iterable[Entity], size: int) -> Iterator[list[Entity]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


class PostgresBulk:
    if TYPE_CHECKING:  # provided by PostgresStore
        pool: Any

        async def _tenant_w(self, conn: psycopg.AsyncConnection[Any], name: str) -> int: ...

    _tenants: dict[str, int]

    async def bulk_load(self, tenant: str, entities: Iterable[Entity], *, chunk: int = 50_000,
                        progress: Callable[[int], None] | None = None, defer_indexes: bool = False) -> int:
        """Insert new entities (internal shape) with COPY; returns how many. ``progress(n)`` after each chunk."""
        if not defer_indexes:
            return await self._bulk(tenant, entities, chunk, progress)
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT EXISTS(SELECT 1 FROM entities)")
            if (await cur.fetchone() or (False,))[0]:
                raise Conflict("defer_indexes is for an empty database: entities already exist")
            cur = await conn.execute(
                "SELECT c.conname, t.relname, pg_get_constraintdef(c.oid) FROM pg_constraint c "
                "JOIN pg_class t ON t.oid=c.conrelid WHERE t.relname = ANY(%s) AND c.contype IN ('p', 'u') "
                "AND t.relnamespace = current_schema()::regnamespace", (_BULK_TABLES,))
            constraints = [r for r in await cur.fetchall() if r[0] not in _KEEP]
            cur = await conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
                "AND tablename = ANY(%s)", (_BULK_TABLES,))
            names = {c[0] for c in constraints} | _KEEP
            indexes = [r for r in await cur.fetchall() if r[0] not in names]
            for name, table, _ in constraints:
                await conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
            for name, _ in indexes:
                await conn.execute(f'DROP INDEX "{name}"')
        try:
            return await self._bulk(tenant, entities, chunk, progress)
        finally:
            async with self.pool.connection() as conn:
                await conn.execute("SET maintenance_work_mem = '1GB'")
                for name, table, definition in constraints:
                    await conn.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
                for _, definition in indexes:
                    await conn.execute(definition)
                await conn.execute("RESET maintenance_work_mem")

    async def _bulk(self, tenant: str, entities: Iterable[Entity], chunk: int,
                    progress: Callable[[int], None] | None) -> int:
        from urbanmim.store.postgres import _index_params
        total = 0
        async with self.pool.connection() as conn:
            for part in _chunks(entities, chunk):
                async with conn.transaction():
                    await conn.execute("SET LOCAL synchronous_commit = off")
                    tid = await self._tenant_w(conn, tenant)
                    cur = await conn.execute("SELECT nextval(pg_get_serial_sequence('entities', 'rid')) "
                                             "FROM generate_series(1, %s)", (len(part),))
                    rids = [r[0] for r in await cur.fetchall()]
                    params = [_index_params(tid, rid, ent) for rid, ent in zip(rids, part, strict=True)]
                    try:
                        async with conn.cursor() as c:
                            async with c.copy("COPY entities(rid, tid, id, doc) FROM STDIN (FORMAT BINARY)") as cp:
                                cp.set_types(["int8", "int4", "text", "bytea"])
                                for rid, ent in zip(rids, part, strict=True):
                                    await cp.write_row((rid, tid, ent["id"], orjson.dumps(ent)))
                    except psycopg.errors.UniqueViolation as e:
                        raise BulkConflict(f"an entity of this chunk already exists: {e.diag.message_detail}") from e
                    async with conn.cursor() as c:
                        async with c.copy("COPY etypes(tid, type, rid) FROM STDIN (FORMAT BINARY)") as cp:
                            cp.set_types(["int4", "text", "int8"])
                            for p in params:
                                for t in dict.fromkeys(p["types"]):
                                    await cp.write_row((tid, t, p["rid"]))
                        async with c.copy("COPY eattrs(tid, attr, rid, kinds) FROM STDIN (FORMAT BINARY)") as cp:
                            cp.set_types(["int4", "text", "int8", "text"])
                            for p in params:
                                for a, k in zip(p["attrs"], p["kinds"], strict=True):
                                    await cp.write_row((tid, a, p["rid"], k))
                        if any(p["gattrs"] for p in params):
                            await c.execute("CREATE TEMP TABLE IF NOT EXISTS bulk_geo(attr text, rid int8, x1 float8, "
                                            "y1 float8, x2 float8, y2 float8) ON COMMIT DELETE ROWS")
                            async with c.copy("COPY bulk_geo FROM STDIN (FORMAT BINARY)") as cp:
                                cp.set_types(["text", "int8", "float8", "float8", "float8", "float8"])
                                for p in params:
                                    for i, a in enumerate(p["gattrs"]):
                                        await cp.write_row((a, p["rid"], p["x1"][i], p["y1"][i], p["x2"][i],
                                                            p["y2"][i]))
                            await c.execute("INSERT INTO egeo(tid, attr, rid, g) SELECT %s, attr, rid, "
                                            "ST_MakeEnvelope(x1, y1, x2, y2, 4326) FROM bulk_geo", (tid,))
                self._tenants[tenant] = tid
                total += len(part)
                if progress is not None:
                    progress(total)
        return total

    async def bulk_load_instances(self, tenant: str, entity_id: str, entity_type: str, attr: str,
                                  rows: list[tuple[int, float]]) -> None:
        """Append numeric instances ``(ts ms, value)`` of one attribute (default instance) with COPY,
        and fold them into the hour buckets, in one transaction (``SQLiteStore`` has the same)."""
        from urbanmim.temporal.timeutil import iso
        if not rows:
            return
        buckets: dict[int, list[float]] = {}
        for ts, v in rows:
            b = buckets.setdefault(ts - ts % HOUR, [0, 0.0, 0.0, v, v])
            b[0] += 1
            b[1] += v
            b[2] += v * v
            b[3] = min(b[3], v)
            b[4] = max(b[4], v)
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("SET LOCAL synchronous_commit = off")
            tid = await self._tenant_w(conn, tenant)
            cur = await conn.execute(
                "INSERT INTO tentities(tid, id, doc) VALUES (%s, %s, %s) ON CONFLICT (tid, id) "
                "DO UPDATE SET id=excluded.id RETURNING teid",
                (tid, entity_id, orjson.dumps({"type": [entity_type]})))
            got = await cur.fetchone()
            assert got is not None
            teid = int(got[0])
            async with conn.cursor() as c:
                async with c.copy("COPY tinstances(tid, teid, attr, ds, ts, created_at, modified_at, num, doc) "
                                  "FROM STDIN (FORMAT BINARY)") as cp:
                    cp.set_types(["int4", "int8", "text", "text", "int8", "int8", "int8", "float8", "bytea"])
                    for ts, v in rows:
                        await cp.write_row((tid, teid, attr, "", ts, ts, ts, v, orjson.dumps(
                            {"type": "Property", "value": v, "observedAt": iso(ts)})))
                await c.executemany(
                    "INSERT INTO tbuckets AS b(teid, attr, ds, hour, cnt, ncnt, sum, sumsq, vmin, vmax) "
                    "VALUES (%s, %s, '', %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (teid, attr, ds, hour) DO UPDATE SET "
                    "cnt = b.cnt + excluded.cnt, ncnt = b.ncnt + excluded.ncnt, sum = b.sum + excluded.sum, "
                    "sumsq = b.sumsq + excluded.sumsq, vmin = least(b.vmin, excluded.vmin), "
                    "vmax = greatest(b.vmax, excluded.vmax)",
                    [(teid, attr, h, n, n, s, sq, lo, hi) for h, (n, s, sq, lo, hi) in buckets.items()])
        self._tenants[tenant] = tid
