"""``orderBy`` (clause 4.23): sort query results by entity members and attribute values.

``orderBy=type;asc,name.subProperty;desc,name`` — a comma-separated list of paths,
each optionally followed by ``;asc`` (default) or ``;desc``. A path is ``id``,
``type``, ``createdAt``, ``modifiedAt``, or an attribute name optionally followed by
``.subAttribute`` / ``.createdAt`` / ``.modifiedAt`` / ``.observedAt``...

The sort keys are parsed and expanded once per request; each entity then yields a
tuple. Entities lacking a key sort after the others whatever the direction, and
values of different JSON types never compare with each other (numbers < strings <
booleans < anything else), so a heterogeneous attribute can never raise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from urbanmim.errors import BadRequestData
from urbanmim.ngsild.contexts import TermMap
from urbanmim.ngsild.entity import Entity, default_instance, value_of

_ENTITY_MEMBERS = ("id", "type", "createdAt", "modifiedAt")
_PATH = re.compile(r"[^\s,;{}()<>\"'=|\[\]]+")


@dataclass(frozen=True)
class SortKey:
    path: tuple[str, ...]   # first item: member name or expanded attribute IRI; then sub-keys
    descending: bool


def parse_order_by(text: str, ctx: TermMap) -> list[SortKey]:
    keys: list[SortKey] = []
    for item in text.split(","):
        item = item.strip()
        path, _, direction = item.partition(";")
        direction = direction.strip().lower() or "asc"
        if direction not in ("asc", "desc") or not _PATH.fullmatch(path.strip()):
            raise BadRequestData(f"invalid orderBy item {item!r}")
        parts = path.strip().split(".")
        if any(not p for p in parts):
            raise BadRequestData(f"invalid orderBy path {path!r}")
        head = parts[0]
        if head not in _ENTITY_MEMBERS:
            head = ctx.expand(head)
        rest = tuple(p if p in ("createdAt", "modifiedAt", "observedAt", "unitCode", "datasetId")
                     else ctx.expand(p) for p in parts[1:])
        keys.append(SortKey((head, *rest), direction == "desc"))
    return keys


def _value(ent: Entity, path: tuple[str, ...]) -> Any:
    head = path[0]
    if head in _ENTITY_MEMBERS and len(path) == 1:
        v = ent.get(head)
        return v[0] if head == "type" and isinstance(v, list) and v else v
    insts = ent["attrs"].get(head)
    if not insts:
        return None
    inst: Any = default_instance(insts)
    for key in path[1:]:
        if not isinstance(inst, dict) or key not in inst:
            return None
        inst = inst[key]
    return value_of(inst) if isinstance(inst, dict) else inst


def _rank(v: Any) -> tuple[int, Any]:
    if isinstance(v, bool):
        return (2, v)
    if isinstance(v, (int, float)):
        return (0, v)
    if isinstance(v, str):
        return (1, v)
    return (3, orjson.dumps(v, option=orjson.OPT_SORT_KEYS))


def sort_entities(entities: list[Entity], keys: list[SortKey]) -> list[Entity]:
    """A stable multi-key sort: apply keys from the least to the most significant."""
    out = list(entities)
    for key in reversed(keys):
        present = [e for e in out if _value(e, key.path) is not None]
        absent = [e for e in out if _value(e, key.path) is None]
        present.sort(key=lambda e, k=key: _rank(_value(e, k.path)), reverse=key.descending)
        out = present + absent
    return out
