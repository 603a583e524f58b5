"""PostgreSQL transport of entity change announcements (what and why: ``announcements.py``).

Sending: one statement per ``mutate`` call, inside its transaction, whatever the batch size —
``pg_notify`` for each payload of :func:`announcements.encode` (usually one; ~130 entities fit in
a payload). PostgreSQL delivers them on commit, in commit order, and drops them on rollback.
A write of a reserved type (``store.settle_types``) also counts, in the same statement, the
processes listening (their LISTEN sessions are named ``urbanmim listen <schema> <pid>``), and
after its commit waits for that many acks (:class:`Settle`).
Receiving: the store's LISTEN loop (``postgres_outbox.py``) hands payloads of kind ``entities`` to
:func:`dispatch`, which calls every ``entity_listeners`` entry on the event loop, and ``ack ...``
payloads to :func:`acked`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

import psycopg

from urbanmim.store.announcements import SETTLE_TIMEOUT, Announcement, Note, decode, encode

log = logging.getLogger(__name__)
_ids = itertools.count(1)
_tasks: set[asyncio.Task[Any]] = set()     # the loop keeps only weak references to tasks


def _spawn(coro: Any) -> None:
    task = asyncio.ensure_future(coro)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


class Settle:
    """A reserved-entity write waiting for every listening process to have followed each of its
    ``payloads`` announcement payloads."""

    def __init__(self, ack: str, processes: int, payloads: int):
        self.ack = ack
        self.processes = processes
        self.expected = processes * payloads
        self.acks: set[tuple[str, str]] = set()       # (payload index, process token)
        self.done = asyncio.Event()
        self.born = time.monotonic()
        if self.expected <= 0:
            self.done.set()

    def add(self, index: str, token: str) -> None:
        self.acks.add((index, token))
        if len(self.acks) >= self.expected:
            self.done.set()

    async def wait(self, pending: dict[str, Settle], timeout: float = SETTLE_TIMEOUT) -> None:
        try:
            await asyncio.wait_for(self.done.wait(), timeout)
        except TimeoutError:
            log.warning("a reserved-entity write was followed by %d of %d processes within %.1f s; answering anyway",
                        len({t for _, t in self.acks}), self.processes, timeout)
        finally:
            pending.pop(self.ack, None)


def listen_name(schema: str, pid: int) -> str:
    return f"urbanmim listen {schema} {pid}"[:63]


async def announce(conn: psycopg.AsyncConnection[Any], store: Any, tenant: str, notes: list[Note]) -> Settle | None:
    """Inside the write transaction: announce ``notes`` to every process (on commit). Returns what
    to wait for after the commit when the write touches ``store.settle_types``."""
    if not notes:
        return None
    notes = merged(notes)
    settle_types: set[str] = store.settle_types
    ack = None
    if settle_types and any(not settle_types.isdisjoint(n.types) for n in notes):
        ack = f"{store._token}:{next(_ids)}"
    payloads = encode(tenant, notes, store._token, ack)
    if ack is None:
        if len(payloads) == 1:
            await conn.execute("SELECT pg_notify(%s, %s)", (store._channel, payloads[0]))
        else:
            await conn.execute("SELECT pg_notify(%s, p) FROM unnest(%s::text[]) AS p", (store._channel, payloads))
        return None
    prefix = listen_name(store.schema, 0)[:-1].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    cur = await conn.execute(
        "SELECT (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name LIKE %s), "
        "(SELECT count(pg_notify(%s, p)) FROM unnest(%s::text[]) AS p)",
        (prefix + "%", store._channel, payloads))
    row = await cur.fetchone()
    settle = Settle(ack, int(row[0]) if row else 0, len(payloads))
    pending: dict[str, Settle] = store._settles
    for key in [k for k, s in pending.items() if time.monotonic() - s.born > 10 * SETTLE_TIMEOUT]:
        del pending[key]                   # registered by a transaction that was then retried
    pending[ack] = settle
    return settle


def merged(notes: list[Note]) -> list[Note]:
    """One note per entity (a call that wrote an entity twice, or ran its listeners again)."""
    by: dict[str, Note] = {}
    for n in notes:
        old = by.get(n.id)
        by[n.id] = n if old is None else Note(n.id, tuple(dict.fromkeys((*old.types, *n.types))),
                                              "".join(dict.fromkeys(old.flags + n.flags)))
    return list(by.values()) if len(by) < len(notes) else notes


def dispatch(store: Any, msg: dict[str, Any], own: bool) -> None:
    """An ``entities`` payload: to every entity listener; with an ack id, the ack is sent once every
    settling listener has settled it."""
    listeners: list[Callable[[Announcement], Any]] = store.entity_listeners
    ack = msg.get("ack")
    settlers = sum(1 for fn in listeners if getattr(fn, "settles", False))
    settle = None
    if isinstance(ack, str) and settlers:
        left = [settlers]

        def settle() -> None:
            left[0] -= 1
            if left[0] == 0:
                _spawn(_send_ack(store, ack))
    ann = decode(msg, own, settle)
    if ann is None:
        return
    deliver(listeners, ann)
    if isinstance(ack, str) and not settlers:
        _spawn(_send_ack(store, ack))          # nothing here follows reserved entities (yet)


async def _send_ack(store: Any, ack: str) -> None:
    try:
        async with store.pool.connection() as conn:
            await conn.execute("SELECT pg_notify(%s, %s)", (store._channel, f"ack {ack} {store._token}"))
    except psycopg.Error:
        log.warning("cannot acknowledge an entity announcement (the writer waits at most %.1f s)", SETTLE_TIMEOUT)


def acked(store: Any, payload: str) -> None:
    """``ack <ack id>/<payload index> <token>``: a process followed a payload of a write of this process."""
    parts = payload.split(" ")
    if len(parts) == 3:
        ack, _, index = parts[1].rpartition("/")
        settle = store._settles.get(ack)
        if settle is not None:
            settle.add(index, parts[2])


def deliver(listeners: list[Callable[[Announcement], Any]], ann: Announcement) -> None:
    for fn in listeners:
        try:
            res = fn(ann)
            if asyncio.iscoroutine(res):
                _spawn(res)
        except Exception:
            log.exception("entity announcement listener failed")
