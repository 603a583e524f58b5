"""SQLite part of notifications: the outbox written with each change, drained by the notifier.

Mixed into ``SQLiteStore``. ``_write_outbox`` runs in the writer's transaction, so a change
and the notifications it triggers commit (or vanish) together: that is what makes delivery
at-least-once across a crash. Pending rows are read on the event loop's read
connection (WAL: never blocked by the writer); writes (deleting delivered rows, delivery
counters, periodic notifications) run on a dedicated side thread with its own connection,
so they never block the event loop behind the writer's lock.

Tables: ``outbox`` (``seq`` gives the global, hence per-subscription, delivery order) and
``substatus`` (the delivery counters, kept apart so a notification never rewrites the
subscription document).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

from urbanmim.store.base import OutboxRecord

SCHEMA_PART = """
CREATE TABLE IF NOT EXISTS outbox(seq INTEGER PRIMARY KEY AUTOINCREMENT, tid INTEGER NOT NULL,
    sub_id TEXT NOT NULL, payload BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS outbox_sub ON outbox(tid, sub_id, seq);
CREATE TABLE IF NOT EXISTS substatus(tid INTEGER NOT NULL, id TEXT NOT NULL, doc BLOB NOT NULL, PRIMARY KEY(tid, id));
"""

OutboxRow = tuple[int, str, str, dict[str, Any]]   # (seq, tenant, subscription id, payload)


class SQLiteOutbox:
    SCHEMA_PART = SCHEMA_PART
    # provided by SQLiteStore
    path: str
    synchronous: str
    after_commit: list[Callable[[], None]]
    _tenants: dict[str, int]

    _outbox_dirty = False
    _outbox_wakeup: Callable[[], None] | None = None
    _side: ThreadPoolExecutor | None = None
    _side_conn: sqlite3.Connection | None = None

    # ---- inside the writer's transaction --------------------------------------------------
    def _write_outbox(self, conn: sqlite3.Connection, tid: int, records: list[OutboxRecord]) -> None:
        conn.executemany("INSERT INTO outbox(tid, sub_id, payload) VALUES (?,?,?)",
                         [(tid, r.subscription_id, orjson.dumps(r.payload)) for r in records])
        self._outbox_dirty = True

    def _outbox_after_commit(self) -> None:
        """Called by the writer right after COMMIT: wake the notifier only when rows were added."""
        if self._outbox_dirty:
            self._outbox_dirty = False
            if self._outbox_wakeup is not None:
                self._outbox_wakeup()

    def set_outbox_wakeup(self, fn: Callable[[], None] | None) -> None:
        """``fn`` is called from the writer thread after each commit that added outbox rows."""
        self._outbox_wakeup = fn
        if self._outbox_after_commit not in self.after_commit:
            self.after_commit.append(self._outbox_after_commit)

    # ---- the side thread ------------------------------------------------------------------
    async def _side_run(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        if self._side is None:
            self._side = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-outbox")

        def call() -> Any:
            if self._side_conn is None:
                from urbanmim.store.sqlite import _connect
                # NORMAL: a delete of a delivered row lost in a power cut only means one more
                # delivery (at-least-once), and it saves an fsync per acknowledgement batch
                self._side_conn = _connect(self.path, "NORMAL")
            return fn(self._side_conn)
        return await asyncio.get_running_loop().run_in_executor(self._side, call)

    def _outbox_close(self) -> None:
        if self._side is not None:
            def close() -> None:
                if self._side_conn is not None:
                    self._side_conn.close()
                    self._side_conn = None
            self._side.submit(close).result()
            self._side.shutdown(wait=True)
            self._side = None

    def _tenant_names(self, conn: sqlite3.Connection) -> dict[int, str]:
        return {tid: name for tid, name in conn.execute("SELECT tid, name FROM tenants")}

    async def outbox_fetch(self, after_seq: int, limit: int) -> list[OutboxRow]:
        """On the event loop's read connection (a primary-key range scan: microseconds), never
        behind the side thread's deletes — the hot path from commit to send."""
        conn: sqlite3.Connection = self.rconn  # type: ignore[attr-defined]
        rows = conn.execute("SELECT seq, tid, sub_id, payload FROM outbox WHERE seq>? ORDER BY seq LIMIT ?",
                            (after_seq, limit)).fetchall()
        if not rows:
            return []
        names = {v: k for k, v in self._tenants.items()}
        if any(r[1] not in names for r in rows):
            names = self._tenant_names(conn)
        return [(seq, names.get(tid, ""), sid, orjson.loads(p)) for seq, tid, sid, p in rows]

    async def outbox_done(self, seqs: list[int]) -> None:
        def run(conn: sqlite3.Connection) -> None:
            for i in range(0, len(seqs), 500):
                chunk = seqs[i:i + 500]
                conn.execute(f"DELETE FROM outbox WHERE seq IN ({','.join('?' * len(chunk))})", chunk)
        if seqs:
            await self._side_run(run)

    async def outbox_add(self, tenant: str, records: list[OutboxRecord]) -> None:
        tid = self._tenants.get(tenant)
        if tid is None:
            return
        def run(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._write_outbox(conn, tid, records)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        await self._side_run(run)
        self._outbox_after_commit()

    async def outbox_drop(self, tenant: str, sub_id: str) -> None:
        tid = self._tenants.get(tenant)
        if tid is None:
            return
        def run(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM outbox WHERE tid=? AND sub_id=?", (tid, sub_id))
            conn.execute("DELETE FROM substatus WHERE tid=? AND id=?", (tid, sub_id))
        await self._side_run(run)

    async def save_subscription_statuses(self, items: list[tuple[str, str, dict[str, Any]]]) -> None:
        def run(conn: sqlite3.Connection) -> None:
            rows = [(self._tenants[t], sid, orjson.dumps(doc)) for t, sid, doc in items if t in self._tenants]
            conn.executemany("INSERT OR REPLACE INTO substatus(tid, id, doc) VALUES (?,?,?)", rows)
        if items:
            await self._side_run(run)

    async def load_subscription_statuses(self) -> list[tuple[str, str, dict[str, Any]]]:
        def run(conn: sqlite3.Connection) -> list[tuple[str, str, dict[str, Any]]]:
            names = self._tenant_names(conn)
            return [(names.get(tid, ""), sid, orjson.loads(doc))
                    for tid, sid, doc in conn.execute("SELECT tid, id, doc FROM substatus")]
        result: list[tuple[str, str, dict[str, Any]]] = await self._side_run(run)
        return result

    async def all_subscriptions(self) -> list[tuple[str, dict[str, Any]]]:
        def run(conn: sqlite3.Connection) -> list[tuple[str, dict[str, Any]]]:
            names = self._tenant_names(conn)
            return [(names.get(tid, ""), orjson.loads(doc))
                    for tid, doc in conn.execute("SELECT tid, doc FROM subscriptions ORDER BY rowid")]
        result: list[tuple[str, dict[str, Any]]] = await self._side_run(run)
        return result
