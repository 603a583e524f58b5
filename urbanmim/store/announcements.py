"""Entity change announcements: how every process on one database hears what the others wrote.

Why: several ``urbanmim serve`` processes on one PostgreSQL database keep in-memory views that a
store ChangeListener updates inside each write transaction — the reserved-entity caches (MIM2
policies, MIM6 rules/bindings/keys, MIM3 offers/agreements, MIM4 consents), the twin's layer cache
and live streams, the OGC catalogue's collection lists and extents. A listener only sees the
writes of its own process. Polling the store (every 5-30 s) made a revoked consent hold in one
process and not in another for that long; instead, each write batch announces the entities it
changed and every process updates its views on receipt, within milliseconds.

What is announced: per changed entity a :class:`Note` — its id, its types (old and new when they
changed) and flags (created, deleted, its types/attribute names changed, a GeoProperty changed).
A note says *what* to re-read, never the state: a consumer reads the entity from the store after
the announcement arrived (after the commit), so a late, duplicated or coalesced note cannot leave
a view older than the database. Past :data:`MAX_CHUNKS` payloads the batch is announced as
*many* with its types only: consumers reload whatever they keep of those types.

Where it is produced (PostgreSQL, ``postgres_changes.py``): :func:`collect` is a store
ChangeListener that records notes in the current ``mutate`` call (a ContextVar set around it), and
the store sends them with one ``pg_notify`` statement before committing (delivered on commit, never
for a rolled-back write). SQLite is one process: its ChangeListeners already see every write and
nothing here is used.

How it is consumed: ``store.entity_listeners`` (PostgreSQL only) are called on the event loop with
one :class:`Announcement` per payload, including this process's own (``own``: its ChangeListeners
saw the change already; a reserved cache still re-reads, which repairs a read of another process's
change that raced with this process's write). A consumer that reads the store does so through a
:class:`Follower`: one batch at a time, in arrival order, coalescing what arrives meanwhile.
After the LISTEN connection was lost (announcements may be missing) the store sends a *resync*:
``tenant=None, many=True`` — reload everything.

Settling — why a write of a reserved entity waits for the other processes: a consent revoked, an
offer withdrawn or an access rule changed through process B must hold on the very next request,
whichever process serves it. Announcements alone make that a race of milliseconds (B answers
while A is still re-reading). So a write touching ``store.settle_types`` (the reserved types of
the caches that follow: registered by :meth:`ReservedCache.follow`) carries an ack id; in each
process, once every settling follower has applied it, the process sends an ack; the writer counts
the acks of the processes listening at commit time (``pg_stat_activity``, in the announcing
statement) before it answers, at most :data:`SETTLE_TIMEOUT` seconds (a hung process does not
block writes). Ordinary data writes carry no ack id and wait for nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import orjson

log = logging.getLogger(__name__)

CREATED, DELETED, SHAPE, GEO = "c", "d", "s", "g"   # SHAPE: types or attribute names changed
CHUNK = 7900          # bytes per payload (PostgreSQL refuses 8000 and more)
MAX_CHUNKS = 16       # more than this: one "many" announcement instead of ~130 notes per payload
KIND = "entities"
SETTLE_TIMEOUT = 1.0  # seconds a reserved-entity write waits for the other processes to follow it


@dataclass(frozen=True, slots=True)
class Note:
    id: str
    types: tuple[str, ...]
    flags: str = ""


@dataclass(frozen=True)
class Announcement:
    tenant: str | None                      # None: every tenant (a resync)
    notes: tuple[Note, ...] = ()
    many: bool = False                      # entities not listed: reload what is kept of ``types``
    types: frozenset[str] | None = None     # with ``many``: the types concerned (None: any)
    own: bool = False                       # written by this process
    # the writer waits until every process followed it (see "Settling"): called once by every
    # settling listener when it has (or has nothing to do); None: nobody waits
    settle: Callable[[], None] | None = field(default=None, compare=False, repr=False)

    def concerns(self, types: frozenset[str] | set[str]) -> bool:
        if self.many:
            return self.types is None or not self.types.isdisjoint(types)
        return any(not types.isdisjoint(n.types) for n in self.notes)

    def settled(self) -> None:
        if self.settle is not None:
            self.settle()


RESYNC = Announcement(None, many=True)


# ---- producing (inside the write transaction) ----------------------------------------------------

_BATCH: ContextVar[list[Note] | None] = ContextVar("urbanmim_announce_batch", default=None)


@contextlib.contextmanager
def collecting() -> Iterator[list[Note]]:
    """Around one ``mutate`` call's work: the notes of its changes accumulate in the yielded list."""
    batch: list[Note] = []
    token = _BATCH.set(batch)
    try:
        yield batch
    finally:
        _BATCH.reset(token)


def collect(change: Any) -> tuple[()]:
    """Store ChangeListener: note the change for the announcement of the current ``mutate`` call."""
    batch = _BATCH.get()
    if batch is not None:
        batch.append(note_of(change.entity_id, change.old, change.new))
    return ()


def note_of(entity_id: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> Note:
    if new is None:
        return Note(entity_id, tuple((old or {}).get("type", ())), DELETED)
    if old is None:
        return Note(entity_id, tuple(new.get("type", ())), CREATED + SHAPE + (GEO if _has_geo(new) else ""))
    flags = ""
    types = tuple(new.get("type", ()))
    oa, na = old.get("attrs", {}), new.get("attrs", {})
    if old.get("type") != new.get("type"):
        types = tuple(dict.fromkeys((*types, *old.get("type", ()))))
        flags += SHAPE
    elif oa.keys() != na.keys():
        flags += SHAPE
    if any(oa.get(k) != na.get(k) for k in (*_geo_attrs(oa), *_geo_attrs(na))):
        flags += GEO
    return Note(entity_id, types, flags)


def _geo_attrs(attrs: dict[str, Any]) -> list[str]:
    return [k for k, insts in attrs.items() if any(isinstance(i, dict) and i.get("type") == "GeoProperty"
                                                   for i in insts or ())]


def _has_geo(ent: dict[str, Any]) -> bool:
    return bool(_geo_attrs(ent.get("attrs", {})))


def encode(tenant: str, notes: list[Note], sender: str, ack: str | None = None) -> list[str]:
    """The payloads announcing ``notes`` (each under :data:`CHUNK` bytes; one "many" payload when
    they would take more than :data:`MAX_CHUNKS`). A payload names each type once. ``ack``: the
    writer waits for every process to settle each payload (its ack id, ``<ack>/<payload index>``)."""
    head: dict[str, Any] = {"kind": KIND, "from": sender, "tenant": tenant}
    base = len(orjson.dumps({**head, "ack": f"{ack}/{MAX_CHUNKS}"} if ack is not None else head)) + 24
    chunks: list[tuple[dict[str, int], list[list[Any]]]] = []
    types: dict[str, int] = {}
    rows: list[list[Any]] = []
    size = base
    for n in notes:
        row: list[Any] = [n.id, [], n.flags]
        add = 0
        for t in n.types:
            if t not in types:
                add += len(orjson.dumps(t)) + 1
        row_size = len(orjson.dumps(row)) + 4 * len(n.types) + 1
        if rows and size + add + row_size > CHUNK:
            chunks.append((types, rows))
            types, rows, size, add = {}, [], base, sum(len(orjson.dumps(t)) + 1 for t in n.types)
        if base + add + row_size > CHUNK or len(chunks) >= MAX_CHUNKS:
            return [_many({**head, "ack": f"{ack}/0"} if ack is not None else head, notes)]
        for t in n.types:
            types.setdefault(t, len(types))
        row[1] = [types[t] for t in n.types]
        rows.append(row)
        size += add + row_size
    if rows:
        chunks.append((types, rows))
    return [_payload({**head, "ack": f"{ack}/{i}"} if ack is not None else head, t, r)
            for i, (t, r) in enumerate(chunks)]


def _payload(head: dict[str, Any], types: dict[str, int], rows: list[list[Any]]) -> str:
    return orjson.dumps({**head, "types": list(types), "e": rows}).decode()


def _many(head: dict[str, Any], notes: list[Note]) -> str:
    types = sorted({t for n in notes for t in n.types})
    text = orjson.dumps({**head, "many": True, "types": types}).decode()
    if len(text.encode()) > CHUNK:
        text = orjson.dumps({**head, "many": True, "types": None}).decode()
    return text


def decode(msg: dict[str, Any], own: bool, settle: Callable[[], None] | None = None) -> Announcement | None:
    """An announcement from a parsed payload (None if it is not one or is malformed)."""
    try:
        tenant = msg["tenant"]
        types: Any = msg.get("types")
        if msg.get("many"):
            return Announcement(str(tenant), many=True, types=frozenset(types) if types is not None else None,
                                own=own, settle=settle)
        notes = tuple(Note(str(eid), tuple(types[i] for i in idx), str(flags)) for eid, idx, flags in msg["e"])
        return Announcement(str(tenant), notes, own=own, settle=settle)
    except (KeyError, TypeError, ValueError, IndexError):
        log.warning("malformed entity announcement ignored")
        return None


# ---- consuming ------------------------------------------------------------------------------------

class Follower:
    """An entity listener that runs ``handle(batch)`` one batch at a time, in arrival order.

    Each batch is handled after all of its announcements arrived, i.e. after their commits: the
    last read of an entity sees at least its last announced state, whatever order reads would
    have finished in had they run concurrently. What arrives while a batch runs forms the next.
    ``wants`` filters on arrival (the others are not queued); ``settles``: this follower is one of
    those a writer of ``settle_types`` waits for — each announcement is settled once handled (or
    at once when not wanted)."""

    def __init__(self, handle: Callable[[list[Announcement]], Awaitable[None]], name: str, *,
                 wants: Callable[[Announcement], bool] | None = None, settles: bool = False):
        self.handle = handle
        self.name = name
        self.wants = wants
        self.settles = settles
        self.pending: list[Announcement] = []
        self.task: asyncio.Task[None] | None = None
        self.handled = 0
        self._held = 0

    def __call__(self, ann: Announcement) -> None:
        if self.wants is not None and not self.wants(ann):
            if self.settles:
                ann.settled()
            return
        self.pending.append(ann)
        self._kick()

    def _kick(self) -> None:
        if not self._held and self.pending and (self.task is None or self.task.done()):
            self.task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """Announcements arriving inside the block wait until it ends (e.g. the first full load: a
        re-read running beside it could be overwritten by the load's older view)."""
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
            self._kick()

    async def idle(self) -> None:
        """Wait until everything received so far is handled (tests, shutdown)."""
        while self.task is not None and not self.task.done():
            await asyncio.shield(self.task)

    async def _run(self) -> None:
        delay = 0.1
        while self.pending:
            batch, self.pending = self.pending, []
            try:
                await self.handle(batch)
            except asyncio.CancelledError:
                raise
            except Exception:       # e.g. the database briefly unreachable: the batch is tried again
                log.exception("%s: following announced changes failed; retrying in %.1f s", self.name, delay)
                self.pending = batch + self.pending
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.1
            self.handled += len(batch)
            if self.settles:
                for ann in batch:
                    ann.settled()

    async def close(self) -> None:
        task, self.task = self.task, None
        self.pending = []
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def listeners_of(store: Any) -> list[Callable[[Announcement], Any]] | None:
    """The store's entity listeners, or None for a one-process store (SQLite) that has none."""
    return getattr(store, "entity_listeners", None)
