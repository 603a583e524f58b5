"""The subscriptions component: CRUD routes, the matching listener, the notifier.

``install`` registers the :class:`Matcher` as a store ChangeListener before the store opens
(so no write can happen without it); ``start`` fills its cache from the stored
subscriptions and starts the notifier, which drains whatever a previous process left in
the outbox; the routes keep the cache in step through :class:`Subscriptions`.
"""

from __future__ import annotations

import logging
from typing import Any

from urbanmim.components import Component
from urbanmim.errors import NgsiError
from urbanmim.ngsild.contexts import CORE, TermMap
from urbanmim.ngsild.routes import subscriptions as routes
from urbanmim.subscriptions.matching import Compiled, Matcher, compile_subscription
from urbanmim.subscriptions.notifier import Notifier

log = logging.getLogger(__name__)


class Subscriptions:
    """What the routes use: keep the matcher's cache and the notifier in step with the store."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.matcher = Matcher()
        self.notifier: Notifier | None = None

    async def _ctx(self, value: Any) -> TermMap:
        if value is None:
            return CORE
        try:
            tm: TermMap = await self.app.state.contexts.resolve(value)
            return tm
        except NgsiError as e:   # an unreachable context must not stop notifications
            log.warning("subscription @context unavailable (%s); using the core context", e.detail)
            return CORE

    async def put(self, tenant: str, doc: dict[str, Any]) -> None:
        query_ctx = await self._ctx(doc.get("_ctx"))
        render_ctx = await self._ctx(doc["jsonldContext"]) if doc.get("jsonldContext") else query_ctx
        try:
            sub = compile_subscription(tenant, doc, query_ctx, render_ctx)
        except Exception:
            log.exception("subscription %s cannot be compiled; it will not notify", doc.get("id"))
            self.matcher.remove(tenant, doc["id"])
            return
        self.matcher.put(sub)
        if self.notifier is not None:
            self.notifier.schedule(sub)

    async def remove(self, tenant: str, sub_id: str) -> None:
        self.matcher.remove(tenant, sub_id)
        if self.notifier is not None:
            self.notifier.forget(tenant, sub_id)
        await self.app.state.store.outbox_drop(tenant, sub_id)

    def status(self, tenant: str, sub_id: str) -> dict[str, Any]:
        return self.notifier.status(tenant, sub_id) if self.notifier is not None else {}

    async def reload(self) -> None:
        """Several processes (PostgreSQL): another process changed subscriptions and a write is
        about to be matched before its announcement arrived — re-read them all (unchanged
        documents are not recompiled)."""
        stored = await self.app.state.store.all_subscriptions()
        keep = set()
        for tenant, doc in stored:
            keep.add((tenant, doc["id"]))
            cached = self.matcher.get(tenant, doc["id"])
            if cached is None or cached.doc != doc:
                await self.put(tenant, doc)
        for sub in self.matcher.all():
            if (sub.tenant, sub.id) not in keep:
                self.matcher.remove(sub.tenant, sub.id)
                if self.notifier is not None:
                    self.notifier.forget(sub.tenant, sub.id)

    async def load(self, tenant: str, sub_id: str) -> Compiled | None:
        """The notifier's cache miss (several processes: the row was matched by another one)."""
        doc = await self.app.state.store.get_subscription(tenant, sub_id)
        if doc is None:
            return None
        await self.put(tenant, doc)
        return self.matcher.get(tenant, sub_id)


def _install(app: Any) -> None:
    subs = Subscriptions(app)
    app.state.subscriptions = subs
    app.state.store.listeners.append(subs.matcher)


async def _start(app: Any) -> None:
    subs: Subscriptions = app.state.subscriptions
    for tenant, doc in await app.state.store.all_subscriptions():
        await subs.put(tenant, doc)
    subs.notifier = Notifier(app.state.store, subs.matcher, load=subs.load)
    subs.notifier.guard = getattr(app.state, "notification_guard", None)   # MIM6 filtering (urbanmim/security)
    await subs.notifier.start()
    remote = getattr(app.state.store, "remote_listeners", None)
    if remote is not None:      # several processes on one database: follow the others' changes
        remote.append(lambda kind, tenant, key: _on_remote(subs, kind, tenant, key))
    if hasattr(app.state.store, "on_subscriptions_stale"):    # ...and never match a write with a stale cache
        app.state.store.on_subscriptions_stale = subs.reload


async def _on_remote(subs: Subscriptions, kind: str, tenant: str, key: str) -> None:
    """Another process created, changed or deleted a subscription: refresh this process's cache
    (the outbox itself is shared in the database, so nothing else needs doing)."""
    if kind != "subscription":
        return
    doc = await subs.app.state.store.get_subscription(tenant, key)
    if doc is None:
        subs.matcher.remove(tenant, key)
        if subs.notifier is not None:
            subs.notifier.forget(tenant, key)
    else:
        await subs.put(tenant, doc)


async def _stop(app: Any) -> None:
    subs: Subscriptions = app.state.subscriptions
    if subs.notifier is not None:
        await subs.notifier.stop()
        subs.notifier = None


def component() -> Component:
    return Component(name="subscriptions", routes=list(routes.routes), install=_install, start=_start, stop=_stop)
