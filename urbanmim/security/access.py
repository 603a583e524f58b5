"""The access decision: one function every read and write path goes through.

Why deciders and one combination rule: MIM6 roles and attribute rules (SEC), MIM3
agreements (SHARE) and MIM4 consent (CONSENT) each know a part of the answer. Each is a
:class:`Decider` that answers ``permit``, ``deny`` or ``abstain`` for one principal, one
tenant and one entity, optionally hiding attributes. :class:`AccessControl` combines
them the same way everywhere (retrieve, query, temporal reads, notifications, writes), so
a policy written once holds on every path.

**Combination rule.** ``p.system`` → everything allowed. Otherwise an entity is
visible/writable iff at least one decider permits and none denies; the visible attributes
are all attributes minus the union of every ``hidden``, intersected with every non-None
``only`` (core members ``id``/``type``/``scope`` and the core geo-attributes ``location``,
``observationSpace``, ``operationSpace`` stay unless hidden explicitly).

When security is off (``enabled`` is False) nothing is evaluated: every method returns at
once, so an open deployment pays nothing.

This module is a contract shared by SEC, SHARE and CONSENT: the names below do not change.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from urbanmim.errors import Forbidden, Unauthorized
from urbanmim.ngsild.entity import LOCATION, OBSERVATION_SPACE, OPERATION_SPACE, Entity
from urbanmim.security.principal import Principal

Effect = Literal["permit", "deny", "abstain"]

# attributes an `only` does not remove (they are part of what an entity *is*); `hidden` still can
CORE_ATTRIBUTES = frozenset({LOCATION, OBSERVATION_SPACE, OPERATION_SPACE})
_NONE: frozenset[str] = frozenset()
# instance members that change on every write and do not count as "the caller changed this attribute"
_VOLATILE = frozenset({"createdAt", "modifiedAt", "instanceId"})


@dataclass(frozen=True)
class Decision:
    effect: Effect
    hidden: frozenset[str] = frozenset()           # expanded attribute IRIs the caller may not see / write
    only: frozenset[str] | None = None             # if set: only these expanded attribute IRIs are visible
    reason: str = ""                               # human-readable: used by "explain" and the audit log
    source: str = ""                               # the decider's name

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"effect": self.effect, "source": self.source, "reason": self.reason}
        if self.hidden:
            out["hidden"] = sorted(self.hidden)
        if self.only is not None:
            out["only"] = sorted(self.only)
        return out


class Decider(Protocol):
    name: str

    def read(self, p: Principal, tenant: str, entity: Entity) -> Decision: ...

    def write(self, p: Principal, tenant: str, before: Entity | None, after: Entity | None) -> Decision: ...


@dataclass(frozen=True)
class Verdict:
    """The combined outcome of every decider for one entity."""

    allowed: bool
    hidden: frozenset[str]
    only: frozenset[str] | None
    decisions: tuple[Decision, ...]

    @property
    def reason(self) -> str:
        relevant = [d for d in self.decisions if d.effect == "deny"] or \
                   [d for d in self.decisions if d.effect == "permit"] or list(self.decisions)
        return "; ".join(f"{d.source}: {d.reason}" if d.source else d.reason for d in relevant if d.reason) \
            or ("permitted" if self.allowed else "no decider permits this")


def combine(decisions: Sequence[Decision]) -> Verdict:
    """Apply the combination rule (module docstring) to the deciders' answers."""
    permit = False
    deny = False
    hidden: set[str] = set()
    only: frozenset[str] | None = None
    for d in decisions:
        if d.effect == "deny":
            deny = True
        elif d.effect == "permit":
            permit = True
        if d.hidden:
            hidden |= d.hidden
        if d.only is not None:
            only = d.only if only is None else only & d.only
    return Verdict(permit and not deny, frozenset(hidden), only, tuple(decisions))


def visible_keys(attrs: Iterable[str], hidden: frozenset[str], only: frozenset[str] | None) -> list[str]:
    """The attribute IRIs of ``attrs`` a verdict lets through (order kept)."""
    return [k for k in attrs
            if k not in hidden and (only is None or k in only or k in CORE_ATTRIBUTES)]


def filter_entity(entity: Entity, hidden: frozenset[str], only: frozenset[str] | None) -> Entity:
    """A shallow copy of ``entity`` without the attributes a verdict hides (the same object if none)."""
    attrs = entity.get("attrs") or {}
    if not hidden and only is None:
        return entity
    keep = visible_keys(attrs, hidden, only)
    if len(keep) == len(attrs):
        return entity
    out = dict(entity)
    out["attrs"] = {k: attrs[k] for k in keep}
    return out


def _stable(instances: Any) -> Any:
    if isinstance(instances, list):
        return [{k: v for k, v in i.items() if k not in _VOLATILE} if isinstance(i, dict) else i
                for i in instances]
    return instances


def changed_attributes(before: Entity | None, after: Entity | None) -> set[str]:
    """Attribute IRIs whose content differs between two versions (system timestamps ignored)."""
    a = (before or {}).get("attrs") or {}
    b = (after or {}).get("attrs") or {}
    out = set()
    for k in a.keys() | b.keys():
        va, vb = a.get(k), b.get(k)
        if va is vb:
            continue
        if _stable(va) != _stable(vb):
            out.add(k)
    return out


class AccessControl:
    """``app.state.access``: the deciders and the combination rule; a no-op when security is off."""

    def __init__(self, enabled: bool = False, deciders: list[Decider] | None = None):
        self.enabled = enabled
        self.deciders: list[Decider] = list(deciders or [])

    # -- reads -------------------------------------------------------------------------------------------
    def verdict(self, p: Principal, tenant: str, entity: Entity) -> Verdict:
        return combine([d.read(p, tenant, entity) for d in self.deciders])

    def visible(self, p: Principal, tenant: str, entity: Entity) -> Entity | None:
        """``entity`` as ``p`` may see it (attributes dropped), or None if it may not see it at all.

        The combination rule of :func:`combine`, inlined: this runs once per entity read, and a
        deny ends it early."""
        if not self.enabled or p.system:
            return entity
        permit = False
        hidden: frozenset[str] | None = None
        only: frozenset[str] | None = None
        for decider in self.deciders:
            d = decider.read(p, tenant, entity)
            if d.effect == "deny":
                return None
            if d.effect == "permit":
                permit = True
            if d.hidden:
                hidden = d.hidden if hidden is None else hidden | d.hidden
            if d.only is not None:
                only = d.only if only is None else only & d.only
        if not permit:
            return None
        return filter_entity(entity, hidden or _NONE, only)

    def explain(self, p: Principal, tenant: str, entity: Entity) -> list[Decision]:
        """Every decider's answer for a read of ``entity`` (what "explain" and the audit log show)."""
        if not self.enabled:
            return [Decision("permit", reason="security is off", source="access")]
        if p.system:
            return [Decision("permit", reason="the platform itself", source="access")]
        return [d.read(p, tenant, entity) for d in self.deciders]

    # -- writes ------------------------------------------------------------------------------------------
    def write_verdict(self, p: Principal, tenant: str, before: Entity | None, after: Entity | None) -> Verdict:
        v = combine([d.write(p, tenant, before, after) for d in self.deciders])
        if not v.allowed:
            return v
        if v.hidden or v.only is not None:
            changed = changed_attributes(before, after)
            barred = sorted(k for k in changed
                            if k in v.hidden or (v.only is not None and k not in v.only
                                                 and k not in CORE_ATTRIBUTES))
            if barred:
                return Verdict(False, v.hidden, v.only, v.decisions + (Decision(
                    "deny", reason="may not write attribute(s) " + ", ".join(barred), source="access"),))
        return v

    def check_write(self, p: Principal, tenant: str, before: Entity | None, after: Entity | None) -> None:
        """Raise :class:`Unauthorized` (anonymous) or :class:`Forbidden` unless ``p`` may make this change."""
        if not self.enabled or p.system:
            return
        v = self.write_verdict(p, tenant, before, after)
        if v.allowed:
            return
        target = (after or before or {}).get("id", "")
        if not p.authenticated:
            raise Unauthorized(f"authentication is required to write {target}".strip())
        raise Forbidden(f"{p.subject} may not write {target} in tenant {tenant or '(default)'}: {v.reason}",
                        extra={"reason": v.reason})
