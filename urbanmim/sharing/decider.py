"""The MIM3 decider: what another organisation's data an agreement lets the caller see.

It answers, for one principal and one entity (``urbanmim/security/access.py`` combines it
with the role and consent deciders):

* entity with no owner (written with security off, or by the platform) → ``abstain``;
* owned by the caller's own organisation → ``abstain`` (roles decide, as for any data);
* the tenant's ``admin`` → ``abstain`` (a city's administrators are not parties to agreements);
* owned by another organisation → the ODRL evaluation of the caller organisation's agreements
  *from that owner* in this tenant: ``permit`` with ``only``/``hidden`` = what they allow for
  the stated purpose at this time, place and count, else ``deny`` with the reason (no
  agreement, constraint failed, prohibited). A consumer in another tenant (no role here) gets
  exactly this, since the role decider abstains for it.

Writes: agreements never grant writing, so ``abstain`` — except the reserved sharing entities,
which only the platform itself (the ``/sharing/v1`` API, acting as SYSTEM after its own
checks) may write: anyone else is denied, so no editor can forge an agreement through NGSI-LD.

The action asked is ``read`` unless the code around the read says otherwise with
:func:`acting` (e.g. a notifier delivering a notification: ``distribute``). Reads permitted by
an agreement are counted (the ``count`` constraint, the ``inform`` duty) unless inside
:func:`not_counted` (explanations).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

from urbanmim.ngsild.entity import Entity
from urbanmim.security.access import Decision
from urbanmim.security.principal import Principal
from urbanmim.sharing.odrl import Request, Result, evaluate
from urbanmim.sharing.registry import AGREEMENT_TYPE, RESERVED_TYPES, Agreement, SharingRegistry

NAME = "sharing"
CACHE_SIZE = 10_000
ACTION: ContextVar[str] = ContextVar("urbanmim_sharing_action", default="read")
_COUNTING: ContextVar[bool] = ContextVar("urbanmim_sharing_counting", default=True)

_UNOWNED = Decision("abstain", reason="the entity has no owner organisation", source=NAME)
_OWN = Decision("abstain", reason="the caller's own organisation's data", source=NAME)
_ADMIN = Decision("abstain", reason="tenant admin: not subject to agreements", source=NAME)
_WRITE = Decision("abstain", reason="agreements grant no writes", source=NAME)


@contextlib.contextmanager
def acting(action: str) -> Iterator[None]:
    """Evaluate reads inside the block as ODRL ``action`` (``read``, ``distribute``, ``aggregate``)."""
    token = ACTION.set(action)
    try:
        yield
    finally:
        ACTION.reset(token)


@contextlib.contextmanager
def not_counted() -> Iterator[None]:
    """Decisions inside the block do not count as reads (explanations, dry runs)."""
    token = _COUNTING.set(False)
    try:
        yield
    finally:
        _COUNTING.reset(token)


def _default_owner_of() -> Callable[[Entity], str | None]:
    from urbanmim.security.ownership import owner_of
    return owner_of


class SharingDecider:
    name = NAME

    def __init__(self, registry: SharingRegistry, owner_of: Callable[[Entity], str | None] | None = None):
        self.registry = registry
        self.owner_of = owner_of or _default_owner_of()
        # decisions under "static" agreements (no count/dateTime/spatial constraint) depend only on the
        # entity's types (and id, with id patterns), the purpose and the action: cached until any change
        self._cache: dict[tuple[Any, ...], tuple[Decision, tuple[str, ...]]] = {}
        self._cache_version = -1

    # ---- reads ---------------------------------------------------------------------------------------
    def evaluate(self, p: Principal, tenant: str, entity: Entity, owner: str) -> tuple[Result | None,
                                                                                        tuple[Agreement, ...]]:
        """The ODRL evaluation behind :meth:`read` (None when there is no agreement at all)."""
        agreements = self.registry.active(tenant, p.organisation, owner) if p.organisation else ()
        if not agreements:
            return None, ()
        counts = {a.id: self.registry.reads(a) for a in agreements if a.policy.counted}
        req = Request(action=ACTION.get(), purpose=p.purpose, counts=counts)
        return evaluate([a.policy for a in agreements], entity, req), agreements

    def read(self, p: Principal, tenant: str, entity: Entity) -> Decision:
        types = entity.get("type") or ()
        if not RESERVED_TYPES.isdisjoint(types):
            return self._reserved(p, tenant, entity)
        owner = self.owner_of(entity)
        if owner is None:
            return _UNOWNED
        if p.organisation == owner:
            return _OWN
        if p.has_role(tenant, "admin"):
            return _ADMIN
        agreements = self.registry.active(tenant, p.organisation, owner) if p.organisation else ()
        key = None
        if agreements and all(a.policy.static for a in agreements):
            if self._cache_version != self.registry.version or len(self._cache) > CACHE_SIZE:
                self._cache.clear()
                self._cache_version = self.registry.version
            by_id = any(a.policy.by_id for a in agreements)
            key = (tenant, p.organisation, owner, tuple(types), entity["id"] if by_id else None, p.purpose,
                   ACTION.get())
            hit = self._cache.get(key)
            if hit is not None:
                if hit[1] and _COUNTING.get():
                    self.registry.count(tenant, hit[1])
                return hit[0]
        res, _ = self.evaluate(p, tenant, entity, owner) if agreements else (None, ())
        if res is None:
            who = f"organisation {p.organisation}" if p.organisation else "a caller without an organisation"
            return Decision("deny", reason=f"{entity['id']} belongs to organisation {owner}; {who} has no "
                                           "agreement with it in this tenant", source=NAME)
        if res.effect != "permit":
            decision, used = Decision("deny", reason=res.reason, source=NAME), ()
        else:
            decision, used = Decision("permit", res.hidden, res.attributes, res.reason, NAME), res.used_policies
            if _COUNTING.get():
                self.registry.count(tenant, used)
        if key is not None:
            self._cache[key] = (decision, used)
        return decision

    def _reserved(self, p: Principal, tenant: str, entity: Entity) -> Decision:
        """Organisations and offers are public (they are the catalogue); an agreement is visible to
        its two parties and the tenant's admins."""
        if AGREEMENT_TYPE not in (entity.get("type") or ()):
            return Decision("permit", reason="organisations and offers are public", source=NAME)
        a = self.registry.tenant(tenant).agreements.get(entity["id"])
        if p.has_role(tenant, "admin") or (a is not None and p.organisation in (a.provider, a.consumer)):
            return Decision("permit", reason="a party to the agreement (or tenant admin)", source=NAME)
        return Decision("deny", reason="an agreement is visible to its parties only", source=NAME)

    # ---- writes --------------------------------------------------------------------------------------
    def write(self, p: Principal, tenant: str, before: Entity | None, after: Entity | None) -> Decision:
        for ent in (before, after):
            if ent is not None and RESERVED_TYPES.intersection(ent.get("type") or ()):
                return Decision("deny", reason="sharing data is written through /sharing/v1 only", source=NAME)
        return _WRITE
