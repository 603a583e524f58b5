"""Hypothesis generators for access-control property tests, and the oracle they are checked against.

Reusable on purpose (MIM3 sharing extends a :class:`World` with organisations, offers and
agreements): a world is a few tenants, each with entities of a few types and attributes, the
tenant's MIM6 rules, and one caller's roles. :func:`oracle` says — independently of the
platform's code — which attributes of an entity the caller may see (None: not the entity).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

DEFAULT = "https://uri.etsi.org/ngsi-ld/default-context/"
TYPES = ("A", "B")
ATTRS = ("p", "q", "r", "s")
READ_ROLES = ("admin", "editor", "reader")


@dataclass(frozen=True)
class RuleSpec:
    name: str
    role: str
    entity_type: str            # a name of TYPES or "*"
    effect: str = "permit"
    hide: frozenset[str] = frozenset()
    only: frozenset[str] | None = None

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "entityType": self.entity_type, "effect": self.effect,
                               "hide": sorted(self.hide)}
        if self.only is not None:
            out["only"] = sorted(self.only)
        return out


@dataclass(frozen=True)
class EntitySpec:
    local_id: str
    entity_type: str
    attrs: dict[str, int]

    def body(self, prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {"id": f"urn:ngsi-ld:{self.entity_type}:{prefix}{self.local_id}",
                               "type": self.entity_type}
        for a, v in self.attrs.items():
            out[a] = {"type": "Property", "value": v}
        return out


@dataclass
class World:
    tenants: list[str]
    entities: dict[str, list[EntitySpec]]          # tenant -> entities
    rules: dict[str, list[RuleSpec]]               # tenant -> rules
    roles: dict[str, list[str]]                    # the caller's roles: tenant (or "*") -> roles
    extra: dict[str, Any] = field(default_factory=dict)   # for extensions (offers, agreements...)


def rules_for(tenant: str) -> st.SearchStrategy[list[RuleSpec]]:
    rule = st.builds(
        RuleSpec, name=st.just(""), role=st.sampled_from(READ_ROLES + ("device",)),
        entity_type=st.sampled_from(TYPES + ("*",)), effect=st.sampled_from(("permit", "permit", "deny")),
        hide=st.frozensets(st.sampled_from(ATTRS), max_size=3),
        only=st.none() | st.frozensets(st.sampled_from(ATTRS), max_size=3))
    return st.lists(rule, max_size=4).map(
        lambda rs: [RuleSpec(f"r{i}", r.role, r.entity_type, r.effect, r.hide, r.only) for i, r in enumerate(rs)])


entity_specs = st.lists(
    st.builds(EntitySpec, local_id=st.just(""), entity_type=st.sampled_from(TYPES),
              attrs=st.dictionaries(st.sampled_from(ATTRS), st.integers(0, 9), min_size=1)),
    min_size=1, max_size=5).map(lambda es: [EntitySpec(str(i), e.entity_type, e.attrs) for i, e in enumerate(es)])


@st.composite
def worlds(draw: Any, tenant_names: tuple[str, ...] = ("t1", "t2")) -> World:
    tenants = list(tenant_names)
    entities = {t: draw(entity_specs) for t in tenants}
    rules = {t: draw(rules_for(t)) for t in tenants}
    role_sets = st.lists(st.sampled_from(READ_ROLES + ("device",)), min_size=1, max_size=2, unique=True)
    roles = draw(st.dictionaries(st.sampled_from(tenants + ["*", "elsewhere"]), role_sets, max_size=2))
    return World(tenants, entities, rules, roles)


def roles_in(world: World, tenant: str) -> set[str]:
    return set(world.roles.get(tenant, [])) | set(world.roles.get("*", []))


def oracle(world: World, tenant: str, ent: EntitySpec) -> set[str] | None:
    """The attribute names the caller may see of ``ent`` (None: the entity is invisible).

    MIM6 alone: a read role in the tenant is needed; for each such role, a deny rule for the
    type hides the entity, else the attributes minus every hide of the role's matching rules,
    intersected with every only; several roles add up."""
    seen: set[str] | None = None
    for role in roles_in(world, tenant) & set(READ_ROLES):
        matching = [r for r in world.rules.get(tenant, []) if r.role == role
                    and r.entity_type in (ent.entity_type, "*")]
        if any(r.effect == "deny" for r in matching):
            continue
        vis = set(ent.attrs)
        for r in matching:
            vis -= r.hide
            if r.only is not None:
                vis &= r.only
        seen = vis if seen is None else seen | vis
    return seen
