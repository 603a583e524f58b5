"""Filter terms the NGSI-LD q language has no node for, as q-AST nodes the store can run.

Why q-AST nodes: the store decides exact filters by calling ``EntityQuery.q.matches`` on each
candidate (after its index pre-filters), counts matches and pages through them. A CQL2 filter
or an OGC ``datetime`` compiled to a tree of :mod:`urbanmim.ngsild.qlang` nodes -- with these
few extra leaves where q has no equivalent -- is therefore paged and counted by the store
itself, exactly like an NGSI-LD query, and mixes freely with ``qlang.And`` / ``qlang.Or``.
Each leaf has a ``path`` (the attribute it reads) so ``QExpr.attributes()`` keeps working.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from urbanmim.ngsild.entity import NGSILD
from urbanmim.ngsild.geo import GeoQuery
from urbanmim.ngsild.qlang import AttrPath, QExpr, Resolver
from urbanmim.ngsild.qlang import _datetime as parse_datetime

MODIFIED_AT = AttrPath(NGSILD + "modifiedAt")


@dataclass(frozen=True, slots=True)
class Const(QExpr):
    """CQL2 ``INCLUDE`` / ``EXCLUDE``."""

    value: bool
    path: AttrPath = MODIFIED_AT

    def matches(self, entity: dict[str, Any], resolve: Resolver | None = None) -> bool:
        return self.value


@dataclass(frozen=True, slots=True)
class GeoTerm(QExpr):
    """A spatial predicate (``S_INTERSECTS(geometry, POLYGON(...))``) as a q leaf."""

    geo: GeoQuery
    path: AttrPath

    def matches(self, entity: dict[str, Any], resolve: Resolver | None = None) -> bool:
        return self.geo.matches(entity)


@dataclass(frozen=True, slots=True)
class PresentAndNot(QExpr):
    """``NOT p`` under SQL's three-valued logic: the attribute exists and ``p`` is false.

    (A missing attribute makes ``p`` unknown, and ``NOT unknown`` is unknown: not a match.)
    Used only where q has no negated operator of its own (e.g. ``NOT S_WITHIN``).
    """

    inner: QExpr
    path: AttrPath

    def matches(self, entity: dict[str, Any], resolve: Resolver | None = None) -> bool:
        if not entity.get("attrs", {}).get(self.path.attr):
            return False
        return not self.inner.matches(entity, resolve)


@dataclass(frozen=True, slots=True)
class TimeWindow(QExpr):
    """OGC ``datetime``: the feature's instant (see ``features.feature_time``) in ``[start, end]``;
    None is an open end."""

    start: datetime | None
    end: datetime | None
    path: AttrPath = MODIFIED_AT

    def matches(self, entity: dict[str, Any], resolve: Resolver | None = None) -> bool:
        from urbanmim.ogc.features import feature_time
        t = feature_time(entity)
        k = parse_datetime(t) if t else None
        if k is None:
            return False
        return (self.start is None or self.start <= k) and (self.end is None or k <= self.end)
