"""In-memory caches of *reserved entities*, kept in step with the store.

Several components keep their own configuration as reserved NGSI-LD entities in the tenant
(MIM2 policies and schemas, MIM6 rules/bindings/keys, MIM3 organisations/offers/agreements,
MIM4 personal-data rules and consents): written through the EntityService, so both backends,
the temporal history and other processes see them like any data. Each component also keeps a
parsed, in-memory view for the hot path. This base holds the ways that view follows the
store — a bulk ``load`` at start; ``on_change``, a store ChangeListener that runs inside
the write transaction (so a change takes effect on the next request); and, with several
processes on one PostgreSQL database, ``follow``: the entity change announcements of every
process's writes (``store/announcements.py``) make it re-read just the announced reserved
entities, so another process's change takes effect here within milliseconds — once, for all
of them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from urbanmim.errors import BadRequestData
from urbanmim.ngsild.entity import Entity
from urbanmim.store.announcements import Announcement, Follower, listeners_of

Reload = Callable[[str | None], Awaitable[None]]     # reload one tenant's view (None: every tenant's)


class ReservedCache:
    """Subclasses set ``reserved_types`` (expanded type IRIs) and implement ``apply``."""

    reserved_types: frozenset[str] = frozenset()

    def apply(self, tenant: str, eid: str, ent: Entity | None) -> None:
        """Put ``ent`` (or its deletion, ``None``) into the view; raise BadRequestData if it does not parse."""
        raise NotImplementedError

    def load(self, tenant: str, entities: Iterable[Entity]) -> None:
        for ent in entities:
            try:
                self.apply(tenant, ent["id"], ent)
            except BadRequestData:      # refused at write time; an old or hand-edited one is skipped
                pass

    def on_change(self, change: Any) -> tuple[()]:
        """Store ChangeListener: a reserved entity was written or deleted (in the write transaction)."""
        ent = change.new or change.old
        if ent is not None and self.reserved_types.intersection(ent.get("type", ())):
            try:
                self.apply(change.tenant, change.entity_id, change.new)
            except BadRequestData:
                pass
        return ()

    def follow(self, store: Any, reload: Reload, name: str,
               refreshed: Callable[[str], Awaitable[None]] | None = None) -> Follower | None:
        """Follow the entity change announcements of ``store`` (None on a one-process store).

        Announced reserved entities are re-read from the store and applied, one batch at a time
        (:class:`Follower`); a "many" announcement or a resync calls ``reload`` for the tenant
        (None: all). This process's own announcements are followed too: a re-read of another
        process's change that raced with a write here is repaired by the re-read after it. A write
        of a reserved type is answered once every process has re-read it (announcements.py:
        "Settling"), so it holds on the next request whichever process serves it.
        ``refreshed(tenant)``, if given, is awaited after a tenant's entities were re-read."""
        listeners = listeners_of(store)
        if listeners is None:
            return None

        async def handle(batch: list[Announcement]) -> None:
            ids: dict[str, set[str]] = {}
            full: set[str | None] = set()
            for ann in batch:
                if ann.many or ann.tenant is None:
                    full.add(ann.tenant)
                else:
                    ids.setdefault(ann.tenant, set()).update(
                        n.id for n in ann.notes if not self.reserved_types.isdisjoint(n.types))
            if None in full:
                await reload(None)
                return
            for tenant in full:
                await reload(tenant)
                ids.pop(tenant or "", None)
            for tenant, wanted in ids.items():
                await self.refresh(store, tenant, wanted)
                if refreshed is not None:
                    await refreshed(tenant)

        follower = Follower(handle, name, wants=lambda ann: ann.concerns(self.reserved_types), settles=True)
        listeners.append(follower)
        settle_types = getattr(store, "settle_types", None)
        if settle_types is not None:        # writes of them wait for every process to follow
            settle_types.update(self.reserved_types)
        return follower

    async def load_and_follow(self, store: Any, reload: Reload, name: str,
                              refreshed: Callable[[str], Awaitable[None]] | None = None) -> Follower | None:
        """At start: ``reload(None)`` (errors propagate), then :meth:`follow` — announcements that
        arrive during the load are handled after it, so the load cannot undo them."""
        follower = self.follow(store, reload, name, refreshed)
        if follower is None:
            await reload(None)
            return None
        with follower.holding():
            await reload(None)
        return follower

    async def refresh(self, store: Any, tenant: str, ids: Iterable[str]) -> None:
        """Re-read ``ids`` from the store into the view (gone, or no longer reserved: removed)."""
        wanted = sorted(set(ids))
        got = await store.get_many(tenant, wanted)
        for eid in wanted:
            ent = got.get(eid)
            if ent is not None and self.reserved_types.isdisjoint(ent.get("type", ())):
                ent = None
            try:
                self.apply(tenant, eid, ent)
            except BadRequestData:
                pass


async def stop_following(app: Any, attr: str) -> None:
    """Shutdown: detach and close the follower a component keeps in ``app.state.<attr>``."""
    follower = getattr(app.state, attr, None)
    if follower is not None:
        with contextlib.suppress(ValueError):
            app.state.store.entity_listeners.remove(follower)
        await follower.close()
        setattr(app.state, attr, None)
