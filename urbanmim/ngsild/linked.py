"""Linked entity retrieval (clause 4.5.23): ``join=inline|flat`` with ``joinLevel``.

Why a module of its own: following Relationships is the only read that needs more
entities than the query matched. It is done level by level with one ``get_many`` per
level (never one store call per relationship), and only along the Relationships the
caller's projection keeps — ``pick=rel{a,b}`` both shows ``rel`` and says what to show
of the entity behind it, so the traversal and the rendering must agree on the view of
each level (:meth:`View.child`).

* inline: each kept Relationship gets an ``entity`` member (``entityList`` for a
  ListRelationship) holding the linked entity, recursively up to ``joinLevel``; in
  keyValues the relationship's value *is* the linked entity.
* flat: the matched entities, then every linked entity once, as one array.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from urbanmim.ngsild.entity import Entity
from urbanmim.ngsild.render import View, render_entity, select_instances
from urbanmim.store.base import Store

_REL_TYPES = ("Relationship", "ListRelationship")


def _targets(ent: Entity, view: View) -> Iterator[tuple[str, str]]:
    """(relationship IRI, linked entity id) for every Relationship ``view`` shows."""
    for iri, insts in ent["attrs"].items():
        if not view.keeps(iri):
            continue
        for inst in select_instances(insts, view):
            typ = inst.get("type")
            if typ not in _REL_TYPES:
                continue
            objs: Any = inst.get("object") if typ == "Relationship" else inst.get("objectList", [])
            for obj in objs if isinstance(objs, list) else [objs]:
                if isinstance(obj, str):
                    yield iri, obj


async def fetch_linked(store: Store, tenant: str, roots: list[Entity], view: View) -> list[tuple[Entity, View]]:
    """Fetch the entities reachable from ``roots`` within ``view.join_level`` hops.

    Sets ``view.linked`` (id → entity, for inline rendering) and returns the linked
    entities in breadth-first order with the view each one is rendered with (for flat).
    """
    linked: dict[str, Entity] = {}
    view.linked = linked     # set first: the child views made below share this dict
    order: list[tuple[Entity, View]] = []
    seen = {e["id"] for e in roots}
    frontier: list[tuple[Entity, View]] = [(e, view) for e in roots]
    level = 0
    while frontier and level < view.join_level:
        wanted: list[tuple[str, View]] = []
        for ent, v in frontier:
            wanted.extend((oid, v.child(iri)) for iri, oid in _targets(ent, v))
        missing = {oid for oid, _ in wanted if oid not in linked}
        if missing:
            linked.update(await store.get_many(tenant, missing))
        frontier = []
        for oid, cv in wanted:
            ent = linked.get(oid)
            if ent is None or oid in seen:
                continue
            seen.add(oid)
            frontier.append((ent, cv))
            order.append((ent, cv))
        level += 1
    return order


def render_flat(roots: list[dict[str, Any]], extra: list[tuple[Entity, View]]) -> list[dict[str, Any]]:
    """join=flat: the rendered matched entities followed by each linked entity once."""
    out = list(roots)
    for ent, v in extra:
        body = render_entity(ent, v)
        if body:
            out.append(body)
    return out
