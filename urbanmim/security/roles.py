"""The MIM6 decider: roles per tenant, with rules by entity type and attribute.

Answers (see ``access.py`` for how answers combine):

* no role in the tenant → ``abstain``: another decider (a MIM3 agreement) may still permit;
* ``admin`` / ``editor`` / ``reader`` (and anonymous callers in a public-read tenant, who
  read as ``reader``) → ``permit`` for reads, with the attributes their rules hide; a
  ``deny`` rule for the entity's type → ``deny`` (no agreement can override it);
* writes: ``admin`` and ``editor`` → ``permit`` (their rules' hidden attributes may not be
  written); ``device`` → ``permit`` only for the entity ids its key is bound to, never a
  delete; ``reader`` → ``abstain``;
* the reserved security entities (rules, bindings, keys) → ``permit`` for the tenant's
  admins only, ``deny`` for everyone else (so no agreement can expose a key hash).

With several roles, an attribute is visible if any of the roles that may see the entity
sees it (roles add rights, never remove them).
"""

from __future__ import annotations

from urbanmim.ngsild.entity import Entity
from urbanmim.security.access import CORE_ATTRIBUTES, Decision
from urbanmim.security.policy import RESERVED_TYPES, PolicyCache, RoleView
from urbanmim.security.principal import Principal

READ_ROLES = ("admin", "editor", "reader")
ABSTAIN = Decision("abstain", reason="no role in this tenant", source="roles")
MEMO_MAX = 10_000


def _sees(v: RoleView, attr: str) -> bool:
    return attr not in v.hidden and (v.only is None or attr in v.only or attr in CORE_ATTRIBUTES)


class RoleDecider:
    name = "roles"

    def __init__(self, cache: PolicyCache, public_tenants: frozenset[str] = frozenset()):
        self.cache = cache
        self.public_tenants = public_tenants
        # (tenant, roles held there, entity types) -> read decision, for the answers that depend on nothing
        # else (no role, or one role whose rules decide alone); cleared whenever a rule changes. Role
        # bindings change the roles held, which are part of the key.
        self._memo: dict[tuple[str, frozenset[str], tuple[str, ...]], Decision] = {}
        self._memo_version = -1

    def _read_roles(self, p: Principal, tenant: str) -> list[str]:
        held = p.roles_in(tenant)
        roles = [r for r in READ_ROLES if r in held] if held else []
        if not roles and tenant in self.public_tenants:
            roles = ["reader"]
        return roles

    def _views(self, roles: list[str], tenant: str, types: frozenset[str]) -> list[tuple[str, RoleView]]:
        tp = self.cache.tenant(tenant)
        return [(r, tp.view(r, types)) for r in roles]

    def _combine(self, views: list[tuple[str, RoleView]], ent: Entity) -> Decision:
        if len(views) == 1 and views[0][1].decision is not None:     # the common case: one role, memoised
            return views[0][1].decision
        allowing = [v for _, v in views if v.allowed]
        if not allowing:
            return Decision("deny", reason="; ".join(v.reason for _, v in views), source=self.name)
        if len(allowing) == 1:
            v = allowing[0]
            return v.decision or Decision("permit", v.hidden, v.only, v.reason, self.name)
        hidden = frozenset(a for a in ent.get("attrs", {}) if not any(_sees(v, a) for v in allowing))
        return Decision("permit", hidden, None, "; ".join(v.reason for v in allowing), self.name)

    def read(self, p: Principal, tenant: str, entity: Entity) -> Decision:
        raw = entity.get("type") or ()
        if not RESERVED_TYPES.isdisjoint(raw):
            if p.has_role(tenant, "admin"):
                return Decision("permit", reason="admin: security policy data", source=self.name)
            return Decision("deny", reason="security policy data is for admins only", source=self.name)
        held = p.roles_in(tenant)
        key = (tenant, held, tuple(raw))
        memo = self._memo
        if self._memo_version != self.cache.version or len(memo) > MEMO_MAX:
            memo.clear()
            self._memo_version = self.cache.version
        hit = memo.get(key)
        if hit is not None:
            return hit
        roles = [r for r in READ_ROLES if r in held] if held else []
        if not roles and tenant in self.public_tenants:
            roles = ["reader"]
        if not roles:
            memo[key] = ABSTAIN
            return ABSTAIN
        views = self._views(roles, tenant, frozenset(raw))
        if len(views) == 1 and views[0][1].decision is not None:
            d = memo[key] = views[0][1].decision
            return d
        return self._combine(views, entity)      # several roles: hidden depends on the entity's attributes

    def write(self, p: Principal, tenant: str, before: Entity | None, after: Entity | None) -> Decision:
        ent = after if after is not None else before
        assert ent is not None
        types = frozenset(ent.get("type") or ()) | frozenset((before or {}).get("type") or ())
        if RESERVED_TYPES.intersection(types):
            if p.has_role(tenant, "admin"):
                return Decision("permit", reason="admin: security policy data", source=self.name)
            return Decision("deny", reason="only admins write security policy data", source=self.name)
        roles = [r for r in ("admin", "editor") if p.has_role(tenant, r)]
        if roles:
            return self._combine(self._views(roles, tenant, types), ent)
        if p.has_role(tenant, "device"):
            if after is None:
                return Decision("deny", reason="a device may not delete entities", source=self.name)
            if p.entities is None or ent["id"] not in p.entities:
                return Decision("deny", reason=f"this device key is not bound to {ent['id']}", source=self.name)
            return self._combine(self._views(["device"], tenant, types), ent)
        if p.has_role(tenant, "reader"):
            return Decision("abstain", reason="role reader may not write", source=self.name)
        return ABSTAIN
