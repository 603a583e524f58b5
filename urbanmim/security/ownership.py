"""Who owns an entity: the organisation (and subject) that first wrote it with security on.

Why inside the stored entity: ownership must travel with the entity through both backends,
migrations (``db migrate-from``) and batch writes without a second table to keep in step.
It lives under a private top-level key, :data:`OWNER_KEY`, that the renderers never emit
(they only render ``id``/``type``/``scope``/system members and ``attrs``) and that no
payload can set (unknown top-level payload members become *attributes*, under ``attrs``).
The key is kept across updates and replacements; only a delete removes it.

MIM3 sharing (SHARE) reads it with :func:`owner_of`: members of the owner organisation see
their own data, others only through an agreement.
"""

from __future__ import annotations

from typing import Any

from urbanmim.ngsild.entity import Entity
from urbanmim.security.principal import Principal

OWNER_KEY = "_owner"      # {"org": organisation id or None, "sub": subject, "at": ISO time}


def owner_of(entity: Entity | None) -> str | None:
    """The owner organisation id of ``entity`` (None: unowned, e.g. written with security off)."""
    if not entity:
        return None
    rec = entity.get(OWNER_KEY)
    return rec.get("org") if isinstance(rec, dict) else None


def owner_subject(entity: Entity | None) -> str | None:
    """The subject that first wrote ``entity`` with security on."""
    rec = (entity or {}).get(OWNER_KEY)
    return rec.get("sub") if isinstance(rec, dict) else None


def stamp(before: Entity | None, after: Entity, p: Principal, now: str) -> None:
    """Keep the owner record of ``before`` on ``after``; give a new entity its writer as owner."""
    rec: Any = (before or {}).get(OWNER_KEY)
    if isinstance(rec, dict):
        after[OWNER_KEY] = rec
    elif not p.system:
        after[OWNER_KEY] = {"org": p.organisation, "sub": p.subject, "at": now}


def carry(before: Entity | None, after: Entity) -> None:
    """Keep the owner record across a replacement (also with security off)."""
    rec = (before or {}).get(OWNER_KEY)
    if rec is not None and OWNER_KEY not in after:
        after[OWNER_KEY] = rec
