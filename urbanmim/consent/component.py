"""The MIM4 component: personal data, consent and subject rights.

How it plugs in (``install``, before the store opens):

* a :class:`ConsentRegistry` on ``app.state.consent``, kept in step with the reserved rule and
  consent entities by a store ChangeListener (inside the write transaction);
* an EntityService validator that refuses malformed rule and consent entities (400);
* the :class:`ConsentDecider` appended to ``app.state.access.deciders`` (MIM6 enforcement:
  retrieve, query, temporal reads, notifications) — attached again in ``start`` in case the
  security component installs after this one;
* its entry in the MIM5 algorithm register (kind ``security``);
* the ``/consent/v1`` API mounted beside ``/ngsi-ld/v1``.

``start`` loads every tenant's rules and consents. On PostgreSQL, where other processes write
too, the registry follows their writes by the store's entity change announcements (a consent
revoked through another process is in force here before that process answers: it waits for every
process to re-read it; a process's own changes at once, through the listener);
``consent_sync_interval``, if set, adds a periodic full reload as a safety net.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from starlette.routing import Mount

from urbanmim.algorithms.register import register_of
from urbanmim.components import Component
from urbanmim.consent.decider import CONSENT_ALGORITHM, ConsentDecider, access_of
from urbanmim.consent.model import RESERVED_TYPES
from urbanmim.consent.registry import ConsentRegistry
from urbanmim.ngsild.entity import Entity
from urbanmim.service.reserved import stop_following

log = logging.getLogger(__name__)


class ReservedValidator:
    """EntityService validator: a rule or consent entity must parse, whatever API writes it."""

    def __init__(self, registry: ConsentRegistry):
        self.registry = registry

    def __call__(self, tenant: str, ent: Entity) -> None:
        if RESERVED_TYPES.intersection(ent.get("type") or ()):
            self.registry.check_reserved(tenant, ent)


def attach_decider(app: Any) -> None:
    """Append the consent decider to MIM6's AccessControl once (no-op until security installed it)."""
    access = access_of(app)
    if access is None:
        return
    if not any(isinstance(d, ConsentDecider) for d in access.deciders):
        access.deciders.append(ConsentDecider(app.state.consent))


def _install(app: Any) -> None:
    from urbanmim.consent import api
    registry = ConsentRegistry()
    app.state.consent = registry
    app.state.store.listeners.append(registry.on_change)
    app.state.entities.validators.append(ReservedValidator(registry))
    register_of(app).register(CONSENT_ALGORITHM)
    attach_decider(app)
    if not any(isinstance(r, Mount) and r.path == api.PREFIX for r in app.router.routes):
        app.router.routes.insert(0, Mount(api.PREFIX, routes=api.routes))


async def _sync(app: Any, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            await app.state.consent.reload(app.state.store)
        except asyncio.CancelledError:
            raise
        except Exception:   # a failed reload keeps the current view; the next tick retries
            log.exception("consent: reloading rules and consents failed")


async def _start(app: Any) -> None:
    attach_decider(app)
    store = app.state.store
    # several processes on one PostgreSQL: a rule or consent another process changed is re-read on its
    # announcement (store/announcements.py): a revocation is in force here within milliseconds
    app.state.consent_follower = await app.state.consent.load_and_follow(
        store, lambda tenant: app.state.consent.reload(store), "consent follower")
    every = float(getattr(app.state.settings, "consent_sync_interval", 5.0))
    multi = getattr(app.state.store, "remote_listeners", None) is not None
    app.state.consent_task = (asyncio.get_running_loop().create_task(_sync(app, every), name="consent-sync")
                              if multi and every > 0 else None)


async def _stop(app: Any) -> None:
    await stop_following(app, "consent_follower")
    task = getattr(app.state, "consent_task", None)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        app.state.consent_task = None


def component() -> Component:
    return Component(name="consent", install=_install, start=_start, stop=_stop)
