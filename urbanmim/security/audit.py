"""The MIM6 audit log: who read and wrote what, when, for which purpose, and what was decided.

Why two paths:

* **writes** are recorded *in the write's own transaction*: the service's write guard notes
  (principal, action, attributes) for the entity it is about to store, and this module's
  store ChangeListener turns the note into an :class:`AuditRecord` that the backend inserts
  with the state, history and outbox rows. An acknowledged write always has its entry; a
  rolled-back one never does.
* **reads** (retrieve, query, temporal, notifications) and **refusals** (401/403 on writes)
  change nothing, so they are buffered in memory and appended in batches every
  ``audit_flush_s`` seconds (or every ``BATCH`` entries). A crash loses at most the reads of
  that last interval — never a write's entry.

Only requests with security on are audited, and only those of callers (not the platform's own
background work: the simulator, KPI jobs, the device agent's ingestion), which would drown
the log. The log is append-only: the API has no update or delete, and the tables refuse them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any

from urbanmim.ngsild.entity import Entity
from urbanmim.security.principal import Principal
from urbanmim.store.base import AuditRecord, Change, Store

log = logging.getLogger(__name__)

BATCH = 500
MAX_BUFFER = 100_000          # beyond this, reads are dropped (and counted) rather than exhausting memory


_second: list[Any] = [-1, ""]     # (epoch second, its ISO prefix): strftime once per second, not per entry


def iso(t: float) -> str:
    s = int(t)
    if s != _second[0]:
        _second[0], _second[1] = s, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s))
    return f"{_second[1]}.{int(t * 1000) % 1000:03d}Z"


def now_iso() -> str:
    return iso(time.time())


def record(p: Principal, tenant: str, action: str, decision: str, entities: list[str], attrs: Iterable[str],
           reason: str = "", ts: str | None = None) -> AuditRecord:
    return AuditRecord(ts=ts or now_iso(), tenant=tenant, subject=p.subject, action=action, decision=decision,
                       entities=entities, attrs=sorted(attrs), organisation=p.organisation, client=p.client,
                       purpose=p.purpose, reason=reason)


class AuditLog:
    def __init__(self, store: Store, *, flush_s: float = 1.0, reads: bool = True):
        self.store = store
        self.flush_s = flush_s
        self.reads = reads
        self.buffer: list[AuditRecord] = []
        # reads, as cheap tuples (time, principal, tenant, action, entities, attribute lists, reason):
        # turned into records at flush time, off the request's path
        self._reads: list[tuple[float, Principal, str, str, list[str], Any, str]] = []
        self.dropped = 0
        # (tenant, entity id) -> (the entity object about to be stored, record): set by the write guard
        # inside the mutation, taken by :meth:`listener` for the same change (identity-checked)
        self._notes: dict[tuple[str, str], tuple[Entity | None, AuditRecord]] = {}
        # attribute-key tuples of single-entity reads -> their sorted list (entities of one type share
        # one tuple shape, so a retrieve costs a dict look-up here instead of a sort per entry)
        self._sorted: dict[tuple[str, ...], list[str]] = {}
        self._flushing: asyncio.Lock | None = None     # created on the running loop at first flush
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    # ---- writes (in the transaction) ----------------------------------------------------------
    def note_write(self, tenant: str, entity_id: str, new: Entity | None, rec: AuditRecord) -> None:
        self._notes[(tenant, entity_id)] = (new, rec)

    def listener(self, change: Change) -> Iterable[AuditRecord]:
        note = self._notes.pop((change.tenant, change.entity_id), None)
        if note is None or note[0] is not change.new:
            return ()
        note[1].ts = change.at
        return (note[1],)

    # ---- reads and refusals (buffered) ------------------------------------------------------
    def add(self, rec: AuditRecord) -> None:
        if len(self.buffer) + len(self._reads) >= MAX_BUFFER:
            self.dropped += 1
            return
        self._take_reads()               # the log keeps the order in which things happened
        self.buffer.append(rec)
        if len(self.buffer) >= BATCH:
            self._wake.set()

    def read(self, p: Principal, tenant: str, action: str, shown: list[Entity], reason: str = "") -> None:
        """One entry for one read request: the entity ids returned and the attributes shown."""
        if not self.reads:
            return
        if len(self._reads) + len(self.buffer) >= MAX_BUFFER:
            self.dropped += 1
            return
        if len(shown) == 1:
            attrs: Any = tuple(shown[0].get("attrs") or ())     # keys only: the entity itself is not kept alive
        else:
            attrs = set()
            for e in shown:
                attrs.update(e.get("attrs") or ())
        self._reads.append((time.time(), p, tenant, action, [e["id"] for e in shown], attrs, reason))
        if len(self._reads) >= BATCH:
            self._wake.set()

    def _take_reads(self) -> None:
        reads, self._reads = self._reads, []
        if not reads:
            return
        sorted_of = self._sorted
        if len(sorted_of) > 1000:
            sorted_of.clear()
        append = self.buffer.append
        for t, p, tenant, action, ids, attrs, reason in reads:
            if type(attrs) is tuple:
                names = sorted_of.get(attrs)
                if names is None:
                    names = sorted_of[attrs] = sorted(attrs)
                names = names.copy()          # each record owns its list
            else:
                names = sorted(attrs)
            append(AuditRecord(iso(t), tenant, p.subject, action, "permit", ids, names, p.organisation, p.client,
                               p.purpose, reason))

    async def flush(self) -> None:
        """Write what is buffered. Serialised: a flush that finds another in flight waits for it, so
        after ``await flush()`` every record buffered before the call is in the store (the audit query
        relies on this; without the lock it could run while the background flush is mid-write)."""
        if self._flushing is None:
            self._flushing = asyncio.Lock()
        async with self._flushing:
            await self._flush()

    async def _flush(self) -> None:
        self._take_reads()
        while self.buffer:
            batch, self.buffer = self.buffer[:BATCH], self.buffer[BATCH:]
            try:
                await self.store.audit_append(batch)
            except Exception:
                log.exception("cannot append %d audit entries; keeping them for the next flush", len(batch))
                self.buffer[:0] = batch
                return

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_s)
            self._wake.clear()
            await self.flush()

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._loop(), name="audit flush")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    def stats(self) -> dict[str, Any]:
        return {"buffered": len(self.buffer) + len(self._reads), "dropped": self.dropped}
