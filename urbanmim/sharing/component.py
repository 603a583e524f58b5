"""The MIM3 component: data-sharing agreements enforced as an access decider, and their API.

How it plugs in (``install``, before the store opens):

* a :class:`SharingRegistry` on ``app.state.sharing``, kept in step with the reserved
  organisation / offer / agreement entities by a store ChangeListener (inside the write
  transaction: a withdrawal holds for the next request);
* a write validator on ``EntityService.validators`` so a malformed reserved entity is a 400;
* :class:`SharingDecider` appended to ``app.state.access.deciders`` (MIM6's AccessControl):
  every query, retrieval, temporal read and notification goes through it; notifications are
  decided as ODRL ``distribute`` (MIM6's notification guard is wrapped in :func:`acting`), and
  MIM6's explanations do not count as reads (``access.explain`` wrapped in :func:`not_counted`);
* the ``/sharing/v1`` API beside ``/ngsi-ld/v1``; the ODRL evaluator in the MIM5 register.

``start`` loads every tenant's sharing entities and runs one background task that stores the
read counts (``sharing_flush_interval``). On PostgreSQL, where other processes write too, the
registry follows their writes by the store's entity change announcements (a withdrawal made
through another process is in force here before that process answers); ``sharing_sync_interval``, if
set, adds a periodic full reload as a safety net.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from starlette.routing import Mount

from urbanmim.algorithms.register import Algorithm, Risk, register_of
from urbanmim.components import Component
from urbanmim.ngsild.entity import Entity
from urbanmim.service.reserved import stop_following
from urbanmim.sharing.decider import SharingDecider, acting, not_counted
from urbanmim.sharing.registry import AGREEMENT_TYPE, OFFER_TYPE, ORG_TYPE, RESERVED_TYPES, SharingRegistry
from urbanmim.sharing.service import SharingService
from urbanmim.store.base import all_of_type

log = logging.getLogger(__name__)

EVALUATOR_ALGORITHM = Algorithm(
    id="mim3.odrl-evaluator", name="Data-sharing agreement evaluator (ODRL 2.2 subset)", version="1",
    kind="security",
    purpose="Let an organisation see another organisation's data exactly as far as an agreement it accepted "
            "allows, and explain every such decision, so providers stay in control of what they share.",
    method="Each read of an entity owned by another organisation evaluates the caller organisation's agreements "
           "with the owner: a permission applies when its target (entity type / id pattern / attributes), "
           "action (use ⊃ read, distribute, aggregate) and constraints (DPV purpose with its hierarchy, "
           "dateTime, spatial area, read count; and/or/xone) hold. Default deny; prohibitions win; visible "
           "attributes = permitted minus prohibited. No eval: policies are parsed into a fixed model.",
    inputs=("the caller's organisation and stated purpose", "the entity's owner organisation, type, id, "
            "attributes and location", "the agreements in force, their read counts", "the current time"),
    outputs=("permit with the visible attributes / deny, with the rules and failed constraints behind it",
             "explanations under /sharing/v1/explain"),
    owner="the city's data platform team", contact="see the platform's /algorithms page",
    human_oversight="Providers write and withdraw offers, consumers accept and withdraw agreements, tenant "
                    "admins can withdraw any of them; every decision can be explained for any principal "
                    "(POST /sharing/v1/explain) and is recorded in the audit log.",
    risks=(Risk("A broadly written offer shares more than the provider meant.",
                "Offers must name entity types or an id pattern; attributes can be listed; the catalogue and "
                "explain show exactly what an agreement grants; withdrawal takes effect on the next request."),
           Risk("A consumer states a purpose it does not pursue.",
                "Purposes are recorded in the audit log with every read; agreements can be withdrawn."),
           Risk("Read counts are kept in memory between flushes and may be lost in a crash.",
                "Counts are stored every sharing_flush_interval seconds; a count constraint should leave "
                "margin.")),
    component="sharing", references=("MIM3 (OASC)", "W3C ODRL 2.2", "W3C DPV 2", "DCAT-AP 3"),
)


class _ReservedValidator:
    """EntityService hook: a reserved sharing entity must parse (400 naming the problem)."""

    def __init__(self, registry: SharingRegistry):
        self.registry = registry

    def __call__(self, tenant: str, ent: Entity) -> None:
        if RESERVED_TYPES.intersection(ent.get("type") or ()):
            self.registry.check_reserved(tenant, ent)


def access_of(app: Any) -> Any:
    """MIM6's AccessControl (``app.state.access``, the one the EntityService enforces)."""
    return getattr(app.state, "access", None) or getattr(app.state.entities, "access", None)


def _attach(app: Any) -> None:
    """Append the decider to MIM6's AccessControl (idempotent), and make notification deliveries
    ask for the ODRL action ``distribute`` (the notifier reads ``notification_guard`` at start)."""
    access = access_of(app)
    decider: SharingDecider = app.state.sharing_decider
    if access is not None and decider not in access.deciders:
        access.deciders.append(decider)
        explain = access.explain               # an explanation (e.g. /security/v1/explain) is not a read

        def explain_not_counted(p: Any, tenant: str, entity: Entity) -> Any:
            with not_counted():
                return explain(p, tenant, entity)
        access.explain = explain_not_counted
    guard = getattr(app.state, "notification_guard", None)
    if guard is not None and not getattr(guard, "distributing", False):
        def distributing(sub: Any, payloads: Any, store: Any) -> Any:
            with acting("distribute"):
                return guard(sub, payloads, store)
        distributing.distributing = True  # type: ignore[attr-defined]
        app.state.notification_guard = distributing


def _install(app: Any) -> None:
    from urbanmim.sharing import api
    registry = SharingRegistry()
    app.state.sharing = registry
    decider = SharingDecider(registry)
    app.state.sharing_decider = decider
    app.state.sharing_service = SharingService(registry, app.state.entities, decider, lambda: access_of(app))
    app.state.store.listeners.append(registry.on_change)
    app.state.entities.validators.append(_ReservedValidator(registry))
    _attach(app)
    register_of(app).register(EVALUATOR_ALGORITHM)
    if not any(isinstance(r, Mount) and r.path == api.PREFIX for r in app.router.routes):
        app.router.routes.insert(0, Mount(api.PREFIX, routes=api.routes))



async def load(store: Any, registry: SharingRegistry) -> None:
    """Read every tenant's sharing entities into ``registry`` (organisations first: offers name them)."""
    for tenant in dict.fromkeys(["", *await store.tenants()]):
        if tenant and not await store.tenant_exists(tenant):
            continue
        for t in (ORG_TYPE, OFFER_TYPE, AGREEMENT_TYPE):
            registry.load(tenant, await all_of_type(store, tenant, t))


async def _loop(app: Any, svc: SharingService, flush: float, sync: float) -> None:
    next_sync = time.monotonic() + sync
    step = min(x for x in (flush, sync) if x > 0)
    while True:
        await asyncio.sleep(step)
        try:
            if flush > 0:
                await svc.flush_counts()
            if sync > 0 and time.monotonic() >= next_sync:
                await reload(app)
                next_sync = time.monotonic() + sync
        except asyncio.CancelledError:
            raise
        except Exception:  # a failed flush is retried at the next tick; the counts stay pending
            log.exception("sharing: storing read counts / reloading agreements failed")


async def reload(app: Any) -> None:
    """Every tenant's sharing entities read again into the registry (read counts stay)."""
    fresh = SharingRegistry()
    app.state.sharing.begin_reload()
    await load(app.state.store, fresh)
    app.state.sharing.replace(fresh)


async def _start(app: Any) -> None:
    # several processes on one PostgreSQL: an offer or agreement another process changed is re-read on
    # its announcement (store/announcements.py): a withdrawal is in force here within milliseconds
    app.state.sharing_follower = await app.state.sharing.load_and_follow(
        app.state.store, lambda tenant: reload(app), "sharing follower")
    _attach(app)
    settings = app.state.settings
    flush = float(getattr(settings, "sharing_flush_interval", 10.0))
    multi = getattr(app.state.store, "remote_listeners", None) is not None
    sync = float(getattr(settings, "sharing_sync_interval", 5.0)) if multi else 0.0
    app.state.sharing_task = (asyncio.get_running_loop().create_task(_loop(app, app.state.sharing_service,
                                                                           flush, sync))
                              if flush > 0 or sync > 0 else None)


async def _stop(app: Any) -> None:
    await stop_following(app, "sharing_follower")
    task = getattr(app.state, "sharing_task", None)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        app.state.sharing_task = None
    try:
        await app.state.sharing_service.flush_counts()
    except Exception:
        log.exception("sharing: storing read counts at shutdown failed")


def component() -> Component:
    return Component(name="sharing", install=_install, start=_start, stop=_stop)
