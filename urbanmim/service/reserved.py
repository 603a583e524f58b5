"""In-memory caches of *reserved entities*, kept in step with the store.

Several components keep their own configuration as reserved NGSI-LD entities in the tenant
(MIM2 policies and schemas, MIM6 rules/bindings/keys, MIM3 organisations/offers/agreements,
MIM4 personal-data rules and consents): written through the EntityService, so both backends,
the temporal history and other processes see them like any data. Each component also keeps a
parsed, in-memory view for the hot path. This base holds the two ways that view follows the
store — a bulk ``load`` at start and ``on_change``, a store ChangeListener that runs inside
the write transaction (so a change takes effect on the next request) — once, for all of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from urbanmim.errors import BadRequestData
from urbanmim.ngsild.entity import Entity


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
