"""PostgreSQL part of notifications and of cross-process coordination.

Mixed into ``PostgresStore``. Same tables and contract as ``sqlite_outbox.py`` (rows written
by ``_write_outbox`` inside the entity's transaction: at-least-once across crashes), plus
what N processes on one database need:

* **Commit order = seq order.** A ``bigserial`` is handed out at INSERT time, not at commit:
  two writers could commit seq 11 before seq 10, and a notifier that already moved past 11
  would never see 10. So a transaction that adds outbox rows first takes a transaction-level
  advisory lock (per schema) and holds it to its commit: outbox-producing writes serialise
  among themselves (only them — plain writes do not take it), and rows become visible in
  seq order, which is what ``outbox_fetch(after_seq)`` relies on.
* **One drainer = the claim.** Every process runs a notifier, but only the one holding a
  session-level advisory lock (``pg_try_advisory_lock``, on a dedicated connection that
  also reads the rows) gets rows from ``outbox_fetch`` and queues periodic notifications
  (``outbox_add``); the others see an empty outbox. This is the "claim" of the issue, at
  the granularity of the whole outbox rather than per row (``FOR UPDATE SKIP LOCKED`` would
  let two processes send two rows of one subscription out of order; a per-subscription
  order is part of the notifier's contract). Each row is therefore sent by one process.
  The drainer is usually not the process whose write matched the row: it loads the
  subscription from the store when its cache does not have it (``Notifier.load``).
  If the drainer dies its session ends, the lock is free, and the next process to poll
  (the notifier polls every few seconds) takes over from the lowest pending seq — rows
  delivered but not yet deleted go out again, with the same notification id.
* **Wake-ups across processes.** A commit that added outbox rows sends ``pg_notify``; a
  LISTEN connection per process calls the notifier's wake-up, so the drainer reacts to
  writes made by any process without waiting for its poll. The same channel carries
  "subscription/context changed" announcements for ``remote_listeners`` and the entity change
  announcements of every write for ``entity_listeners`` (``announcements.py``). A lost LISTEN
  connection is re-opened; since announcements may have been missed meanwhile, the entity
  listeners then get a resync (reload everything) and the notifier a wake-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
import psycopg

from urbanmim.store.announcements import KIND, RESYNC, Announcement
from urbanmim.store.base import OutboxRecord
from urbanmim.store.postgres_changes import acked, deliver, dispatch, listen_name

log = logging.getLogger(__name__)

OutboxRow = tuple[int, str, str, dict[str, Any]]   # (seq, tenant, subscription id, payload)


class PostgresOutbox:
    # provided by PostgresStore
    conninfo: str
    schema: str
    _tenants: dict[str, int]
    remote_listeners: list[Callable[[str, str, str], Any]]
    entity_listeners: list[Callable[[Announcement], Any]]

    _outbox_wakeup: Callable[[], None] | None = None
    _listen_conn: psycopg.AsyncConnection[Any] | None = None
    _leader_conn: psycopg.AsyncConnection[Any] | None = None
    _listen_task: asyncio.Task[None] | None = None
    _lead_fresh: bool = False
    _token: str = ""

    @property
    def _channel(self) -> str:
        return f"urbanmim_{self.schema}"[:63]

    def _lock_key(self, what: str) -> str:
        return f"urbanmim:{what}:{self.schema}"

    if TYPE_CHECKING:  # provided by PostgresStore
        pool: Any

        async def _fetch(self, query: str, args: Any = None, *, binary: bool = False) -> list[tuple[Any, ...]]: ...

    # ---- inside the writer's transaction --------------------------------------------------
    async def _write_outbox(self, conn: psycopg.AsyncConnection[Any], tid: int, records: list[OutboxRecord]) -> None:
        """Two statements however many rows: the order lock (with the wake-up, which PostgreSQL
        sends at commit), then every row in order (seq order = record order)."""
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s)), pg_notify(%s, %s)",
                           (self._lock_key("outbox-order"), self._channel, f"outbox {self._token}"))
        await conn.execute("INSERT INTO outbox(tid, sub_id, payload) SELECT %s, u.s, u.p "
                           "FROM unnest(%s::text[], %s::bytea[]) WITH ORDINALITY AS u(s, p, o) ORDER BY u.o",
                           (tid, [r.subscription_id for r in records], [orjson.dumps(r.payload) for r in records]))

    def _outbox_committed(self) -> None:
        if self._outbox_wakeup is not None:
            self._outbox_wakeup()

    async def _announce(self, conn: psycopg.AsyncConnection[Any], kind: str, tenant: str, key: str) -> None:
        """Tell the other processes (on commit) that a subscription or context changed."""
        payload = orjson.dumps({"kind": kind, "tenant": tenant, "key": key, "from": self._token}).decode()
        await conn.execute("SELECT pg_notify(%s, %s)", (self._channel, payload))

    def set_outbox_wakeup(self, fn: Callable[[], None] | None) -> None:
        self._outbox_wakeup = fn

    # ---- LISTEN ---------------------------------------------------------------------------
    async def _listen_start(self) -> None:
        self._token = uuid.uuid4().hex
        self._listen_conn = await self._listen_connect()
        self._listen_task = asyncio.create_task(self._listen_loop(self._listen_conn), name="pg-listen")

    async def _listen_connect(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(
            self.conninfo, autocommit=True, application_name=listen_name(self.schema, os.getpid()))
        await conn.execute(f'LISTEN "{self._channel}"')
        return conn

    async def _listen_loop(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Hand every notification to ``_on_notify``. If the connection is lost, reconnect (backing
        off up to 5 s); announcements sent meanwhile are lost, so the entity listeners get a resync
        and the notifier a wake-up."""
        delay = 0.2
        while True:
            try:
                async for note in conn.notifies():
                    self._on_notify(note.payload)
                    delay = 0.2
            except asyncio.CancelledError:
                raise
            except psycopg.Error:
                log.warning("postgres LISTEN connection lost; reconnecting")
            with contextlib.suppress(Exception):
                await conn.close()
            while True:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                try:
                    conn = self._listen_conn = await self._listen_connect()
                    break
                except psycopg.Error:
                    log.warning("cannot re-open the postgres LISTEN connection; retrying in %.1f s", delay)
            deliver(self.entity_listeners, RESYNC)
            self._outbox_committed()

    def _on_notify(self, payload: str) -> None:
        if payload.startswith("outbox "):
            if payload[7:] != self._token:
                self._outbox_committed()
            return
        if payload.startswith("ack "):
            acked(self, payload)
            return
        try:
            msg = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return
        if not isinstance(msg, dict):
            return
        if msg.get("kind") == KIND:
            dispatch(self, msg, own=msg.get("from") == self._token)
            return
        if msg.get("from") == self._token:
            return
        for fn in self.remote_listeners:
            try:
                res = fn(msg.get("kind", ""), msg.get("tenant", ""), msg.get("key", ""))
                if asyncio.iscoroutine(res):
                    asyncio.ensure_future(res)
            except Exception:
                log.exception("remote change listener failed")

    async def _listen_stop(self) -> None:
        if self._listen_task is not None:
            self._listen_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listen_task
            self._listen_task = None
        for conn in (self._listen_conn, self._leader_conn):
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
        self._listen_conn = self._leader_conn = None

    @property
    def draining(self) -> bool:
        """True while this process holds the outbox lock, i.e. it is the one delivering."""
        return self._leader_conn is not None and not self._leader_conn.closed

    async def _is_drainer(self) -> bool:
        """True while this process holds the outbox lock (taken on first ask, kept for the session)."""
        try:
            if self.draining:
                return True
            # named, so an operator (and the kill test) can see which process delivers
            conn = await psycopg.AsyncConnection.connect(
                self.conninfo, autocommit=True, application_name=f"urbanmim drainer {self.schema} {os.getpid()}"[:63])
            cur = await conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (self._lock_key("outbox-drain"),))
            row = await cur.fetchone()
            if row and row[0]:
                await conn.execute(f"SET search_path TO {self.schema}, public")
                self._leader_conn = conn
                self._lead_fresh = True
                return True
            await conn.close()
        except psycopg.Error:
            log.warning("cannot check the outbox lock", exc_info=True)
        return False

    async def _lost_lead(self) -> None:
        conn, self._leader_conn = self._leader_conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    # ---- the notifier's side ----------------------------------------------------------------
    async def _names(self) -> dict[int, str]:
        return {int(tid): name for tid, name in await self._fetch("SELECT tid, name FROM tenants")}

    async def outbox_fetch(self, after_seq: int, limit: int) -> list[OutboxRow]:
        """Rows for the drainer only. Read on the very session that holds the lock: if that
        session is gone (server restart, network), so is the lock — we stop at once instead of
        draining beside the process that took over. A fresh lead starts from the lowest pending
        row, whatever ``after_seq`` the notifier remembers from an earlier lead."""
        if not await self._is_drainer() or self._leader_conn is None:
            return []
        if self._lead_fresh:
            after_seq, self._lead_fresh = 0, False
        try:
            cur = await self._leader_conn.execute(
                "SELECT seq, tid, sub_id, payload FROM outbox WHERE seq>%s ORDER BY seq LIMIT %s",
                (after_seq, limit), binary=True)
            rows = await cur.fetchall()
        except psycopg.Error:
            log.warning("outbox lock session lost; another process takes over the delivery")
            await self._lost_lead()
            return []
        if not rows:
            return []
        names = {v: k for k, v in self._tenants.items()}
        if any(r[1] not in names for r in rows):
            names = await self._names()
        return [(int(seq), names.get(tid, ""), sid, orjson.loads(p)) for seq, tid, sid, p in rows]

    async def outbox_done(self, seqs: list[int]) -> None:
        if seqs:
            async with self.pool.connection() as conn:
                await conn.execute("DELETE FROM outbox WHERE seq = ANY(%s)", (seqs,))

    async def outbox_add(self, tenant: str, records: list[OutboxRecord]) -> None:
        tid = self._tenants.get(tenant)
        if tid is None or not records or not await self._is_drainer():
            return
        async with self.pool.connection() as conn:
            async with conn.transaction():
                await self._write_outbox(conn, tid, records)
        self._outbox_committed()

    async def outbox_drop(self, tenant: str, sub_id: str) -> None:
        tid = self._tenants.get(tenant)
        if tid is None:
            return
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("DELETE FROM outbox WHERE tid=%s AND sub_id=%s", (tid, sub_id))
            await conn.execute("DELETE FROM substatus WHERE tid=%s AND id=%s", (tid, sub_id))

    async def save_subscription_statuses(self, items: list[tuple[str, str, dict[str, Any]]]) -> None:
        rows = [(self._tenants[t], sid, orjson.dumps(doc)) for t, sid, doc in items if t in self._tenants]
        if rows:
            async with self.pool.connection() as conn, conn.cursor() as cur:
                await cur.executemany("INSERT INTO substatus(tid, id, doc) VALUES (%s, %s, %s) "
                                      "ON CONFLICT (tid, id) DO UPDATE SET doc=excluded.doc", rows)

    async def load_subscription_statuses(self) -> list[tuple[str, str, dict[str, Any]]]:
        names = await self._names()
        return [(names.get(tid, ""), sid, orjson.loads(doc))
                for tid, sid, doc in await self._fetch("SELECT tid, id, doc FROM substatus", binary=True)]

    async def all_subscriptions(self) -> list[tuple[str, dict[str, Any]]]:
        names = await self._names()
        return [(names.get(tid, ""), orjson.loads(doc))
                for tid, doc in await self._fetch("SELECT tid, doc FROM subscriptions ORDER BY seq", binary=True)]
