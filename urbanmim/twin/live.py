"""Live updates for the twin: a store change listener fans entity changes out to Server-Sent Events.

Why a change listener and not an NGSI-LD subscription: a subscription's notifications are
durable (an outbox row per change, retried until delivered) — right for a partner system, but
a browser tab needs none of that: when it reconnects it simply reloads its layers. The listener
costs nothing when no tab is open (one dict look-up per write), adds no row to the write
transaction, and reaches the browser in milliseconds instead of a notifier round trip.
Why SSE and not WebSocket: the stream only goes server → browser, EventSource reconnects by
itself, and it is plain HTTP through any proxy.

Bounded per client: a tab's pending updates are *coalesced by entity* (a sensor that changed
five times while the tab was slow is sent once, with its latest state) and capped at
``twin_sse_queue`` entities; past that the tab gets a single ``resync`` event (reload the
layers) instead of an ever-growing queue. Per tenant: a tab only hears its own city.

Several processes on one PostgreSQL database: a tab is connected to one process but must hear
the writes made through every other. Those arrive as the store's entity change announcements
(``store/announcements.py``, LISTEN/NOTIFY, after the writer's commit): the hub drops the cached
layers of the announced types and, only if it has tabs open for that tenant, reads the announced
entities from the store (one read per batch of announcements, whatever the number of tabs) and
publishes them exactly as a local change — each tab's principal decides what it sees. A
"many" announcement (a very large batch) or a resync after lost announcements gives the tenant's
tabs a ``resync`` event.

Limits: the listener runs inside the write transaction, so an event can (in the rare case of
a failed commit) announce a change that was rolled back; the twin is a view, and the next
reading corrects it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from urbanmim.ngsild.entity import Entity
from urbanmim.security.enforce import snapshot
from urbanmim.security.principal import Principal, current_principal
from urbanmim.store.announcements import Announcement, Follower, listeners_of
from urbanmim.store.base import Change
from urbanmim.twin.data import LayerCache, feature, properties
from urbanmim.twin.layers import LAYERS, Layer

HEARTBEAT = 15.0     # seconds between keep-alive comments (proxies close idle streams)


class Client:
    """One open event stream: its tenant, and the latest pending change of each entity."""

    def __init__(self, tenant: str, limit: int, principal: Principal):
        self.tenant = tenant
        self.limit = limit
        self.principal = principal          # who opened the stream: what they may see is decided per change
        self.pending: dict[str, dict[str, Any]] = {}
        self.overflow = False
        self.wake = asyncio.Event()

    def push(self, entity_id: str, event: dict[str, Any]) -> None:
        if self.overflow:
            return
        self.pending.pop(entity_id, None)        # re-insert: keeps the order of latest change
        if len(self.pending) >= self.limit:
            self.pending.clear()
            self.overflow = True
        else:
            self.pending[entity_id] = event
        self.wake.set()

    def resync(self) -> None:
        """Too much changed to send one by one: the tab reloads its layers."""
        self.pending.clear()
        self.overflow = True
        self.wake.set()

    def take(self) -> tuple[list[dict[str, Any]], bool]:
        events, overflow = list(self.pending.values()), self.overflow
        self.pending.clear()
        self.overflow = False
        self.wake.clear()
        return events, overflow


class LiveHub:
    """Receives store changes (any thread), publishes them on the event loop to the tenant's clients."""

    def __init__(self, cache: LayerCache, queue_limit: int = 1000, entities: Any = None):
        self.cache = cache
        self.entities = entities            # the service layer: its AccessControl decides what each tab sees
        self.queue_limit = queue_limit
        self.clients: dict[str, set[Client]] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.closing = asyncio.Event()
        self._type_layer: dict[str, Layer] = {iri: layer for layer in LAYERS for iri in layer.type_iris()}
        self.published = 0
        self.follower: Follower | None = None

    # ---- the store side (inside the write transaction; keep it cheap) ---------------------------
    def on_change(self, change: Change) -> list[Any]:
        ent = change.new or change.old
        if ent is None or self.loop is None:
            return []
        layer = next((self._type_layer[t] for t in ent.get("type", ()) if t in self._type_layer), None)
        if layer is None:
            return []
        # The entity is read later, on the event loop, while the writer may go on editing it (a batch
        # sees its own writes): tabs get a snapshot; with no tab open only the cache entry is dropped.
        new = snapshot(change.new) if change.new is not None and self.clients.get(change.tenant) else None
        self._call(self._publish, change.tenant, layer, change.entity_id, new, change.new is None, change.at)
        return []

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            fn(*args)
        else:
            loop.call_soon_threadsafe(fn, *args)

    def _publish(self, tenant: str, layer: Layer, entity_id: str, new: Entity | None, deleted: bool,
                 at: str) -> None:
        """On the event loop: drop the cached layer, then give each of the tenant's streams the change
        as its principal may see it (the same access decision as every other read path)."""
        self.cache.invalidate(tenant, layer.id)
        clients = self.clients.get(tenant)
        if not clients or (new is None and not deleted):    # a tab opened since: it loads its layers itself
            return
        shared: dict[str, Any] | None = None
        access = getattr(self.entities, "access", None)
        for client in clients:
            if access is None or not access.enabled or client.principal.system:
                if shared is None:
                    shared = self._event(layer, entity_id, new, at)
                client.push(entity_id, shared)
                continue
            seen = access.visible(client.principal, tenant, new) if new is not None else None
            if new is not None and seen is None:       # not (or no longer) visible: to this tab it is gone
                client.push(entity_id, {"op": "delete", "id": entity_id, "layer": layer.id})
            else:
                client.push(entity_id, self._event(layer, entity_id, seen, at))
        self.published += 1

    @staticmethod
    def _event(layer: Layer, entity_id: str, ent: Entity | None, at: str) -> dict[str, Any]:
        if ent is None:
            return {"op": "delete", "id": entity_id, "layer": layer.id}
        feat = feature(ent, layer)
        return {"op": "upsert", "id": entity_id, "layer": layer.id, "at": at, "feature": feat,
                "properties": properties(ent) if feat is None else None}

    # ---- other processes' writes (PostgreSQL) ----------------------------------------------------
    def follow(self, store: Any) -> None:
        """Hear the entity change announcements of ``store`` (nothing on a one-process store)."""
        listeners = listeners_of(store)
        if listeners is None:
            return
        self.follower = Follower(lambda batch: self._remote(store, batch), "twin live follower")
        listeners.append(self._announced)

    def _announced(self, ann: Announcement) -> None:
        """On the event loop, for each announcement: this process's own writes were published by
        ``on_change`` already. Dropping cached layers needs no read; fetching does, and only for
        tenants with open tabs."""
        if ann.own or self.follower is None:
            return
        tenants = list(self.clients) if ann.tenant is None else [ann.tenant]
        if ann.many:
            for tenant in ([ann.tenant] if ann.tenant is not None else [t for t, _ in list(self.cache.entries)]):
                self.cache.invalidate(tenant)
            for tenant in tenants:
                for client in self.clients.get(tenant, ()):
                    client.resync()
            return
        tenant = ann.tenant or ""               # (only a "many" announcement is for every tenant)
        for n in ann.notes:
            layer = self._layer_of(n.types)
            if layer is not None:
                self.cache.invalidate(tenant, layer.id)
        if self.clients.get(tenant) and any(self._layer_of(n.types) for n in ann.notes):
            self.follower(ann)

    async def _remote(self, store: Any, batch: list[Announcement]) -> None:
        ids: dict[str, dict[str, Layer]] = {}
        for ann in batch:
            for n in ann.notes:
                layer = self._layer_of(n.types)
                if layer is not None and ann.tenant is not None:
                    ids.setdefault(ann.tenant, {})[n.id] = layer
        for tenant, wanted in ids.items():
            if not self.clients.get(tenant):
                continue
            got = await store.get_many(tenant, list(wanted))
            for eid, layer in wanted.items():
                ent = got.get(eid)
                if ent is not None:
                    layer = self._layer_of(ent.get("type", ())) or layer
                at = (ent or {}).get("modifiedAt") or ""
                self._publish(tenant, layer, eid, ent, ent is None, at)

    def _layer_of(self, types: Any) -> Layer | None:
        return next((self._type_layer[t] for t in types if t in self._type_layer), None)

    # ---- the HTTP side ---------------------------------------------------------------------------
    def subscribe(self, tenant: str, principal: Principal | None = None) -> Client:
        client = Client(tenant, self.queue_limit, principal or current_principal())
        self.clients.setdefault(tenant, set()).add(client)
        return client

    def unsubscribe(self, client: Client) -> None:
        group = self.clients.get(client.tenant)
        if group is not None:
            group.discard(client)
            if not group:
                del self.clients[client.tenant]

    async def stream(self, client: Client) -> AsyncIterator[bytes]:
        """The SSE body: ``hello``, then batches of ``change`` events, ``resync`` after an overflow."""
        try:
            yield b"retry: 2000\nevent: hello\ndata: {}\n\n"
            while not self.closing.is_set():
                try:
                    await asyncio.wait_for(client.wake.wait(), HEARTBEAT)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                events, overflow = client.take()
                if overflow:
                    yield b"event: resync\ndata: {}\n\n"
                if events:
                    yield b"event: change\ndata: " + orjson.dumps(events) + b"\n\n"
        finally:
            self.unsubscribe(client)

    # ---- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.closing = asyncio.Event()

    def close(self) -> None:
        """End every stream (the lifespan's stop). A served process needs no help: on SIGTERM uvicorn
        tells open responses the client is gone, and the streams end (``test_server_stops_promptly...``)."""
        self.closing.set()
        for group in self.clients.values():
            for client in group:
                client.wake.set()

    def stop(self) -> None:
        self.close()
        self.loop = None

    async def unfollow(self, store: Any) -> None:
        listeners = listeners_of(store)
        if listeners is not None and self._announced in listeners:
            listeners.remove(self._announced)
        if self.follower is not None:
            await self.follower.close()
            self.follower = None
