"""PostgreSQL part of the MIM6 audit log and of the platform secrets (migration 0010).

Mixed into ``PostgresStore``. ``_write_audit`` runs in the write's transaction; buffered
entries (reads, refusals) are appended in a transaction of their own. Either way all the
entries go in one statement (``unnest`` of columns), however many there are. A trigger makes the
``audit`` table append-only for every connection of the platform. Entity ids are a
``text[]`` with a GIN index, so ``?entity=`` is an index look-up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
import psycopg

from urbanmim.store.base import AuditQuery, AuditRecord

# all the entries of a write in one statement, in order (entity id lists travel as JSON arrays:
# unnest cannot take an array of arrays of different lengths)
_INSERT = """
INSERT INTO audit(ts, tenant, subject, action, decision, entities, doc)
SELECT u.ts, u.te, u.s, u.a, u.d,
       ARRAY(SELECT x FROM jsonb_array_elements_text(u.e::jsonb) WITH ORDINALITY AS j(x, n) ORDER BY j.n), u.doc
FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::bytea[])
     WITH ORDINALITY AS u(ts, te, s, a, d, e, doc, o)
ORDER BY u.o
"""


def _columns(records: list[AuditRecord]) -> tuple[list[Any], ...]:
    return ([r.ts for r in records], [r.tenant for r in records], [r.subject for r in records],
            [r.action for r in records], [r.decision for r in records],
            [orjson.dumps(list(r.entities)).decode() for r in records], [orjson.dumps(r.to_json()) for r in records])


class PostgresAudit:
    if TYPE_CHECKING:  # provided by PostgresStore
        pool: Any

        async def _fetch(self, query: str, args: Any = None, *, binary: bool = False) -> list[tuple[Any, ...]]: ...

    async def _write_audit(self, conn: psycopg.AsyncConnection[Any], records: list[AuditRecord]) -> None:
        await conn.execute(_INSERT, _columns(records))

    async def audit_append(self, records: list[AuditRecord]) -> None:
        if not records:
            return
        async with self.pool.connection() as conn:
            await conn.execute(_INSERT, _columns(records))

    async def audit_query(self, query: AuditQuery) -> list[tuple[int, AuditRecord]]:
        where: list[str] = ["seq > %s"]
        args: list[Any] = [query.after_seq]
        if query.tenants is not None:
            if not query.tenants:
                return []
            where.append("tenant = ANY(%s)")
            args.append(list(query.tenants))
        if query.subject is not None:
            where.append("subject = %s")
            args.append(query.subject)
        if query.entity is not None:
            where.append("entities @> ARRAY[%s]::text[]")
            args.append(query.entity)
        if query.start is not None:
            where.append("ts >= %s")
            args.append(query.start)
        if query.end is not None:
            where.append("ts < %s")
            args.append(query.end)
        rows = await self._fetch(f"SELECT seq, doc FROM audit WHERE {' AND '.join(where)} ORDER BY seq LIMIT %s",
                                 (*args, query.limit), binary=True)
        return [(int(seq), AuditRecord.from_json(orjson.loads(bytes(doc)))) for seq, doc in rows]

    async def secret(self, name: str, make: Callable[[], bytes]) -> bytes:
        rows = await self._fetch("SELECT value FROM secrets WHERE name=%s", (name,), binary=True)
        if rows:
            return bytes(rows[0][0])
        async with self.pool.connection() as conn:
            await conn.execute("INSERT INTO secrets(name, value) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
                               (name, make()))
        rows = await self._fetch("SELECT value FROM secrets WHERE name=%s", (name,), binary=True)
        return bytes(rows[0][0])
