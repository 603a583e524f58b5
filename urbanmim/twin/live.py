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

Limits: the listener runs inside the write transaction, so an event can (in the rare case of
a failed commit) announce a change that was rolled back; the twin is a view, and the next
reading corrects it. With several processes on PostgreSQL a tab hears the writes of the process
it is connected to (the LISTEN/NOTIFY bridge carries only @context changes today).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from urbanmim.ngsild.entity import Entity
from urbanmim.security.enforce import snapshot
from urbanmim.security.principal import Principal, current_principal
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
