"""The notifier: drains the outbox, in order per subscription, at least once.

* **Wake-up without polling delay**: the store calls :meth:`Notifier.wakeup` from its writer
  thread right after a commit that added outbox rows; a slow poll (``POLL_S``) is only the
  fallback (and what picks up rows left by a previous process after a crash).
* **Order per subscription, isolation between them**: each subscription with pending rows
  gets one worker task that sends its head row and moves on only once that row is
  delivered; a failing receiver holds back its own queue only.
* **Retries** with exponential back-off (``BACKOFF_S`` doubling up to ``MAX_BACKOFF_S``),
  forever while the subscription exists: a row is deleted only after delivery succeeded.
  A crash after a delivery and before the delete sends it again — with the same
  notification ``id``, so receivers can de-duplicate.
* **Delivery counters** (timesSent, lastSuccess...) live in memory, are written to the
  store every ``FLUSH_S`` and are shown on GET /subscriptions.
* **Periodic subscriptions** (``timeInterval``) get a timer that queues a notification with
  the matching entities through the same outbox.
* **Several processes on one database (PostgreSQL)**: only the process holding the outbox
  lock gets rows (``outbox_fetch``), so each row is delivered by one process — often not the
  one whose write matched it. A row whose subscription is not (yet) in this process's cache
  is therefore looked up in the store (``load``) before anything is dropped: only a
  subscription the store no longer has loses its rows. The other processes show the
  drainer's counters by re-reading them from the store (``STATS_REFRESH_S``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from urbanmim.store.base import EntityQuery, OutboxRecord, Store
from urbanmim.subscriptions import notification
from urbanmim.subscriptions.channels import DeliveryError, HttpChannel, MqttChannel
from urbanmim.subscriptions.matching import Compiled, Matcher, Selector

log = logging.getLogger(__name__)

POLL_S = 2.0
FETCH = 2000
BACKOFF_S = 0.25
MAX_BACKOFF_S = 30.0
FLUSH_S = 1.0
STATS_REFRESH_S = 1.0
# A backlog of BATCH_MIN rows or more is sent as one notification of up to BATCH_MAX entities
# (in order): a receiver that is slower than the update rate then catches up instead of
# falling further behind. A lone change is always notified on its own.
BATCH_MIN = 8
BATCH_MAX = 200
Key = tuple[str, str]      # (tenant, subscription id)
Loader = Callable[[str, str], Awaitable[Compiled | None]]


class Notifier:
    def __init__(self, store: Store, matcher: Matcher, load: Loader | None = None) -> None:
        self.store, self.matcher = store, matcher
        # set by urbanmim/security: guard(sub, payloads, store) -> (payloads it may see, a filtering reader)
        self.guard: Callable[..., tuple[list[dict[str, Any]], Any]] | None = None
        # (tenant, id) -> the subscription read from the store and compiled (None: it is gone).
        # Needed with several processes: the row may come from a write matched elsewhere.
        self.load = load
        self.queues: dict[Key, deque[tuple[int, dict[str, Any]]]] = {}
        self.workers: dict[Key, asyncio.Task[None]] = {}
        self.periodic: dict[Key, asyncio.Task[None]] = {}
        self.stats: dict[Key, dict[str, Any]] = {}
        self.dirty: set[Key] = set()
        self.acks: list[int] = []
        self.last_seq = 0
        self.http = HttpChannel()
        self.mqtt = MqttChannel()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._stats_at = 0.0

    # ---- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for tenant, sid, st in await self.store.load_subscription_statuses():
            self.stats[(tenant, sid)] = st
        self.store.set_outbox_wakeup(self.wakeup)
        for sub in self.matcher.all():
            self.schedule(sub)
        self._tasks = [asyncio.create_task(self._drain_loop(), name="notifier"),
                       asyncio.create_task(self._flush_loop(), name="notifier-flush")]

    async def stop(self) -> None:
        self.store.set_outbox_wakeup(None)
        self._stopping = True     # workers check it too: asyncio.wait_for can swallow a cancel
        tasks = [*self._tasks, *self.workers.values(), *self.periodic.values()]
        for _ in range(3):
            for t in tasks:
                t.cancel()
            _, pending = await asyncio.wait(tasks, timeout=1) if tasks else (set(), set())
            tasks = list(pending)
            if not tasks:
                break
        await self._flush()
        await self.http.close()
        await self.mqtt.close()

    def wakeup(self) -> None:
        """Thread-safe: called by the store's writer after a commit that added outbox rows."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    # ---- draining -------------------------------------------------------------------------
    async def _drain_loop(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_S)
            self._wake.clear()
            try:
                await self._drain()
            except Exception:
                log.exception("reading the notification outbox failed")
                await asyncio.sleep(1)

    async def _drain(self) -> None:
        while True:
            rows = await self.store.outbox_fetch(self.last_seq, FETCH)
            for seq, tenant, sid, payload in rows:
                self.last_seq = max(self.last_seq, seq)
                key = (tenant, sid)
                self.queues.setdefault(key, deque()).append((seq, payload))
                if key not in self.workers:
                    self.workers[key] = asyncio.create_task(self._worker(key), name=f"notify {sid}")
            if len(rows) < FETCH:
                return

    async def _worker(self, key: Key) -> None:
        q = self.queues[key]
        attempt = 0
        batch: list[tuple[int, dict[str, Any]]] = []
        try:
            while q and not self._stopping:
                if not batch:   # fixed until delivered: a retry resends exactly the same notification
                    n = min(len(q), BATCH_MAX) if len(q) >= BATCH_MIN else 1
                    batch = [q[i] for i in range(n)]
                sub = self.matcher.get(*key)
                if sub is None and self.load is not None:
                    try:     # not cached here (yet): matched by another process, or just created
                        sub = await self.load(*key)
                    except Exception:
                        log.exception("cannot load subscription %s; retrying", key[1])
                        await asyncio.sleep(BACKOFF_S)
                        continue
                if sub is None:          # deleted: its rows go with it
                    q.clear()
                    await self.store.outbox_drop(*key)
                    break
                try:
                    await self._deliver(sub, [p for _, p in batch])
                except DeliveryError as e:
                    attempt += 1
                    self._count(key, ok=False)
                    delay = min(BACKOFF_S * 2 ** (attempt - 1), MAX_BACKOFF_S)
                    log.info("notification for %s failed (%s); retry %d in %.2fs", key[1], e, attempt, delay)
                    await asyncio.sleep(delay)
                    continue
                except Exception:
                    attempt += 1
                    log.exception("notification for %s could not be built; retrying", key[1])
                    self._count(key, ok=False)
                    await asyncio.sleep(min(BACKOFF_S * 2 ** (attempt - 1), MAX_BACKOFF_S))
                    continue
                attempt = 0
                for _ in batch:
                    q.popleft()
                self._count(key, ok=True)
                self.acks.extend(seq for seq, _ in batch)   # deleted in the background, never awaited
                batch = []                                    # here: a delete waits for SQLite's lock
        finally:
            if not q:
                self.queues.pop(key, None)
            if self.workers.get(key) is asyncio.current_task():
                del self.workers[key]

    async def _deliver(self, sub: Compiled, payloads: list[dict[str, Any]]) -> None:
        store: Any = self.store
        if self.guard is not None:   # MIM6: only what the subscription's creator may see, decided now
            payloads, store = self.guard(sub, payloads, store)
            if not payloads:
                return
        body = await notification.build(sub, payloads, store)
        headers = notification.headers(sub)
        ep = sub.doc["notification"]["endpoint"]
        uri: str = ep["uri"]
        if uri.startswith(("mqtt://", "mqtts://")):
            info = {kv["key"]: kv["value"] for kv in ep.get("notifierInfo") or []}
            await self.mqtt.send(uri, info, {"metadata": headers, "body": body})
        elif uri.startswith(("http://", "https://")):
            await self.http.send(uri, headers, notification.encode(body))
        else:
            raise DeliveryError(f"unsupported endpoint scheme in {uri}")

    async def _ack(self) -> None:
        seqs, self.acks = self.acks, []
        if seqs:
            await self.store.outbox_done(seqs)

    def _count(self, key: Key, *, ok: bool) -> None:
        st = self.stats.setdefault(key, {"timesSent": 0, "timesFailed": 0})
        now = notification.now_iso()
        st["lastNotification"] = now
        st["status"] = "ok" if ok else "failed"
        if ok:
            st["timesSent"] = st.get("timesSent", 0) + 1
            st["lastSuccess"] = now
        else:
            st["timesFailed"] = st.get("timesFailed", 0) + 1
            st["lastFailure"] = now
        self.dirty.add(key)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_S / 2)
            try:
                await self._ack()
                await self._flush()
                await self._refresh_stats()
            except Exception:
                log.exception("saving notification state failed")

    async def _refresh_stats(self) -> None:
        """Several processes: the counters of the process that delivers, for GET on this one."""
        if getattr(self.store, "draining", True) or time.monotonic() - self._stats_at < STATS_REFRESH_S:
            return
        self._stats_at = time.monotonic()
        self.stats = {(t, s): st for t, s, st in await self.store.load_subscription_statuses()}

    async def _flush(self) -> None:
        await self._ack()
        if self.dirty:
            keys, self.dirty = self.dirty, set()
            await self.store.save_subscription_statuses([(t, s, self.stats[(t, s)]) for t, s in keys
                                                         if (t, s) in self.stats])

    def status(self, tenant: str, sub_id: str) -> dict[str, Any]:
        return dict(self.stats.get((tenant, sub_id), {}))

    def forget(self, tenant: str, sub_id: str) -> None:
        self.stats.pop((tenant, sub_id), None)
        self.dirty.discard((tenant, sub_id))
        self.schedule(None, (tenant, sub_id))

    # ---- periodic (timeInterval) ----------------------------------------------------------
    def schedule(self, sub: Compiled | None, key: Key | None = None) -> None:
        """(Re)start or stop the timer of a periodic subscription after it changed."""
        if key is None and sub is not None:
            key = (sub.tenant, sub.id)
        assert key is not None
        old = self.periodic.pop(key, None)
        if old is not None:
            old.cancel()
        if sub is not None and sub.time_interval > 0:
            self.periodic[key] = asyncio.create_task(self._periodic(key), name=f"periodic {key[1]}")

    async def _periodic(self, key: Key) -> None:
        while True:
            sub = self.matcher.get(*key)
            if sub is None or not sub.time_interval:
                return
            await asyncio.sleep(sub.time_interval)
            sub = self.matcher.get(*key)
            if sub is None or not sub.live():
                continue
            try:
                entities = await self._matching_entities(sub)
                if entities:
                    payload = {"nid": f"urn:ngsi-ld:Notification:{uuid.uuid4()}", "entities": entities,
                               "t": time.time()}
                    await self.store.outbox_add(sub.tenant, [OutboxRecord(sub.id, payload)])
            except Exception:
                log.exception("periodic notification of %s failed", key[1])

    async def _matching_entities(self, sub: Compiled) -> list[dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        selectors: list[Selector | None] = list(sub.selectors) or [None]
        for sel in selectors:
            q = EntityQuery(tenant=sub.tenant, limit=1000, q=sub.q, scope_q=sub.scope_q, geo=sub.geo_q,
                            ids=[sel.ids] if sel is not None and sel.ids else None,
                            id_pattern=sel.id_re.pattern if sel is not None and sel.id_re else None,
                            types=sel.types if sel is not None else None,
                            attrs=set(sub.watched) if sub.watched else None)
            for ent in (await self.store.query(q)).entities:
                found.setdefault(ent["id"], ent)
        return list(found.values())
