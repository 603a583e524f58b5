"""SQLite part of the MIM6 audit log and of the platform secrets.

Mixed into ``SQLiteStore``. ``_write_audit`` runs in the writer's transaction (an audited
write and its audit entry commit or vanish together); buffered entries (reads, refusals)
are appended on the outbox mixin's side thread, never on the event loop. Queries run on the
event loop's read connection (WAL: never blocked by the writer).

Append-only is enforced by the database too: triggers abort any UPDATE or DELETE of
``audit`` rows, so neither the API nor a bug in the platform can rewrite history (an
operator with the file can still archive it; see docs/security.md).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import orjson

from urbanmim.store.base import AuditQuery, AuditRecord

SCHEMA_PART = """
CREATE TABLE IF NOT EXISTS audit(seq INTEGER PRIMARY KEY AUTOINCREMENT, ts TEXT NOT NULL, tenant TEXT NOT NULL,
    subject TEXT NOT NULL, action TEXT NOT NULL, decision TEXT NOT NULL, entities TEXT NOT NULL,
    doc BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS audit_tenant_ts ON audit(tenant, ts);
CREATE INDEX IF NOT EXISTS audit_subject_ts ON audit(subject, ts);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TABLE IF NOT EXISTS secrets(name TEXT PRIMARY KEY, value BLOB NOT NULL);
"""


def _row(r: AuditRecord) -> tuple[Any, ...]:
    # entities as "\x1f"-separated text with separators at both ends: an exact-id match is a LIKE
    ents = "\x1f" + "\x1f".join(r.entities) + "\x1f" if r.entities else ""
    return (r.ts, r.tenant, r.subject, r.action, r.decision, ents, orjson.dumps(r.to_json()))



_INSERT = "INSERT INTO audit(ts, tenant, subject, action, decision, entities, doc) VALUES (?,?,?,?,?,?,?)"


class SQLiteAudit:
    SCHEMA_PART = SCHEMA_PART
    # provided by SQLiteStore / SQLiteOutbox
    _side_run: Callable[..., Any]

    def _write_audit(self, conn: sqlite3.Connection, records: list[AuditRecord]) -> None:
        """Inside the writer's transaction."""
        conn.executemany(_INSERT, [_row(r) for r in records])

    async def audit_append(self, records: list[AuditRecord]) -> None:
        if not records:
            return

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(_INSERT, [_row(r) for r in records])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        await self._side_run(run)

    async def audit_query(self, query: AuditQuery) -> list[tuple[int, AuditRecord]]:
        where: list[str] = ["seq > ?"]
        args: list[Any] = [query.after_seq]
        if query.tenants is not None:
            if not query.tenants:
                return []
            where.append(f"tenant IN ({','.join('?' * len(query.tenants))})")
            args.extend(query.tenants)
        if query.subject is not None:
            where.append("subject = ?")
            args.append(query.subject)
        if query.entity is not None:
            where.append("instr(entities, ?) > 0")
            args.append("\x1f" + query.entity + "\x1f")
        if query.start is not None:
            where.append("ts >= ?")
            args.append(query.start)
        if query.end is not None:
            where.append("ts < ?")
            args.append(query.end)
        conn: sqlite3.Connection = self.rconn  # type: ignore[attr-defined]
        rows = conn.execute(f"SELECT seq, doc FROM audit WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?",
                            (*args, query.limit)).fetchall()
        return [(seq, AuditRecord.from_json(orjson.loads(doc))) for seq, doc in rows]

    async def secret(self, name: str, make: Callable[[], bytes]) -> bytes:
        def run(conn: sqlite3.Connection) -> bytes:
            row = conn.execute("SELECT value FROM secrets WHERE name=?", (name,)).fetchone()
            if row is not None:
                return bytes(row[0])
            conn.execute("INSERT OR IGNORE INTO secrets(name, value) VALUES (?,?)", (name, make()))
            (value,) = conn.execute("SELECT value FROM secrets WHERE name=?", (name,)).fetchone()
            return bytes(value)
        out: bytes = await self._side_run(run)
        return out
