"""What the OGC API publishes: one API per tenant (city), one collection per entity type.

**Path layout: ``/ogc/{city}/...``, one OGC API per tenant.** A city's GIS analyst connects
QGIS or GDAL to *their* city's URL and sees its layers under their plain type names
(``AirQualityObserved``, not ``portamar.AirQualityObserved``); each city has its own
conformance, collections and OpenAPI document, and the tenant boundary of the platform ("a
tenant never sees another") is visible in the URL, where access rules and proxies can act on
it. ``/ogc/`` lists the cities. The tenant names allowed by NGSI-LD
(``[A-Za-z0-9_\\-.:/]+``) never contain ``~``, so a path segment is the tenant name with
``/`` spelled ``~~``, and the default tenant (no ``NGSILD-Tenant`` header) is ``~``.

**Names.** Entities are stored with expanded IRIs; the OGC API shows short names. A type's
name and its attributes' names are compacted with *the type's own @context*: the hosted or
cached contexts that define a term for the type IRI (the Smart Data Models subject context
of a demo type, say) -- the same term means different IRIs in different subjects, so one
merged context would not do. Then the core context, the default vocabulary, and finally the
IRI's last segment; a name that would be ambiguous within its collection (or tenant, for
types) falls back to the full IRI. Collection ids are the type names when they are URL-safe,
otherwise a slug plus a short hash of the IRI.

**Extents and queryable types are computed from the data**, by reading every entity of the
type through the service layer (so access rules apply: each caller gets the count, extent
and queryables of what *it* may see, and a collection it can see nothing of is not listed),
and cached: a tenant's collection list until an entity of that tenant is created, deleted or
changes its types or attributes (a store change listener) and at most ``ogc_cache_seconds``;
an extent until an entity of that type is created, deleted or moved, and at most
``ogc_cache_seconds``. Writes of other processes on a shared PostgreSQL invalidate the same
way, by the store's entity change announcements (``store/announcements.py``), within
milliseconds.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from urbanmim.errors import NonexistentTenant, ResourceNotFound
from urbanmim.ngsild.contexts import CORE, TermMap
from urbanmim.ngsild.entity import DEFAULT_VOCAB, LOCATION, Entity
from urbanmim.ngsild.geo import bbox as geometry_bbox
from urbanmim.ngsild.qlang import _datetime as parse_datetime
from urbanmim.ogc.features import feature_time, simple_value
from urbanmim.security.principal import current_principal
from urbanmim.store.announcements import GEO, SHAPE, Announcement
from urbanmim.store.base import Change, EntityQuery, TypeInfo

GREGORIAN = "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"
DEFAULT_SEGMENT = "~"
GEOMETRY = "geometry"          # the queryable name of the feature geometry (the entity's location)
_SAFE_ID = re.compile(r"[A-Za-z0-9_.\-]+")
_SCAN_PAGE = 1000
MAX_CALLERS = 256             # extents cached per collection (one per distinct caller)
Box = tuple[float, float, float, float]


def tenant_segment(tenant: str) -> str:
    """The path segment of a tenant: ``~`` for the default tenant, ``/`` spelled ``~~``."""
    return DEFAULT_SEGMENT if tenant == "" else tenant.replace("/", "~~")


def segment_tenant(segment: str) -> str:
    return "" if segment == DEFAULT_SEGMENT else segment.replace("~~", "/")


def tenant_title(tenant: str) -> str:
    return tenant or "default tenant"


def _last_segment(iri: str) -> str:
    for sep in ("#", "/", ":"):
        if sep in iri:
            tail = iri.rsplit(sep, 1)[1]
            if tail:
                return tail
    return iri


@dataclass
class Collection:
    """One entity type of one tenant, with the names its features use."""

    id: str
    tenant: str
    type_iri: str
    title: str                                   # the type name as a client sees it
    count: int
    names: dict[str, str]                        # attribute IRI -> property name
    iris: dict[str, str]                         # property name -> attribute IRI
    kinds: dict[str, set[str]]                   # attribute IRI -> NGSI-LD attribute types seen
    vocab: TermMap = field(default_factory=lambda: CORE, repr=False)

    def name(self, iri: str) -> str:
        """The property name of an attribute (one added since the catalogue was read: a fallback)."""
        got = self.names.get(iri)
        if got is None:
            got = self.vocab.reverse.get(iri) or CORE.reverse.get(iri) or iri
        return got

    @property
    def geo_attrs(self) -> set[str]:
        """Attributes that hold geometries (``location`` is always one: it is the feature geometry)."""
        return {LOCATION} | {iri for iri, kinds in self.kinds.items() if "GeoProperty" in kinds}


@dataclass
class Extent:
    """What a full read of a collection *as one caller sees it* found: how many features, their
    spatial/temporal extent, the JSON types of each attribute's values."""

    count: int
    bbox: Box | None
    start: str | None
    end: str | None
    value_types: dict[str, set[str]]             # attribute IRI -> JSON Schema types seen
    geometry_types: set[str]
    computed: float


def json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if value is None:
        return "null"
    return "object"


def _union(a: Box | None, b: Box) -> Box:
    if a is None:
        return b
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


class Catalogue:
    """Tenants, collections and extents, read through the store's discovery and the service layer."""

    def __init__(self, app: Any):
        self.app = app
        self.ttl = float(app.state.settings.ogc_cache_seconds)
        self.warmup: Any = None              # the CQL2 parser being built (component start)
        self._collections: dict[str, tuple[float, dict[str, Collection]]] = {}
        # (tenant, type IRI) -> principal -> extent: each caller's extent is computed from what the
        # service layer lets that caller see, so one caller's extent never describes another's data
        self._extents: dict[tuple[str, str], dict[Any, Extent]] = {}
        # bumped by every invalidation: a result computed across a change is not cached (the
        # listener runs in the store's writer, possibly while a scan is under way)
        self._generation: dict[Any, int] = {}

    # ---- invalidation (a store ChangeListener: runs in the write transaction, so it only marks)
    def on_change(self, change: Change) -> Iterable[Any]:
        old, new = change.old, change.new
        if old is None or new is None or old.get("type") != new.get("type") \
                or old.get("attrs", {}).keys() != new.get("attrs", {}).keys():
            self._collections.pop(change.tenant, None)
            self._generation[change.tenant] = self._generation.get(change.tenant, 0) + 1
            self._drop_extents(change.tenant, old, new)
        elif old["attrs"].get(LOCATION) != new["attrs"].get(LOCATION):
            self._drop_extents(change.tenant, old, new)
        return ()

    def _drop_extents(self, tenant: str, old: Entity | None, new: Entity | None) -> None:
        self._drop_types(tenant, [t for ent in (old, new) for t in (ent or {}).get("type", ())])

    def _drop_types(self, tenant: str, types: Iterable[str]) -> None:
        for t in types:
            self._extents.pop((tenant, t), None)
            self._generation[(tenant, t)] = self._generation.get((tenant, t), 0) + 1

    def _drop_tenant(self, tenant: str) -> None:
        self._collections.pop(tenant, None)
        self._generation[tenant] = self._generation.get(tenant, 0) + 1
        self._drop_types(tenant, [t for (ten, t) in list(self._extents) if ten == tenant])

    def on_announcement(self, ann: Announcement) -> None:
        """Another process's writes (PostgreSQL, ``store/announcements.py``): forget the same as
        :meth:`on_change` would have, from the notes' flags — its collection list when an entity
        was created, deleted or changed its types or attribute names, the extents of the types of
        an entity that also moved."""
        if ann.own:
            return                       # on_change saw them in the write transaction
        tenants = list({t for t, _ in self._extents} | set(self._collections)) if ann.tenant is None \
            else [ann.tenant]
        for tenant in tenants:
            if ann.many:
                self._drop_tenant(tenant)
                continue
            if any(SHAPE in n.flags for n in ann.notes):
                self._collections.pop(tenant, None)
                self._generation[tenant] = self._generation.get(tenant, 0) + 1
            self._drop_types(tenant, {t for n in ann.notes if SHAPE in n.flags or GEO in n.flags for t in n.types})

    # ---- tenants --------------------------------------------------------------------------
    async def tenants(self) -> list[str]:
        return list(await self.app.state.store.tenants())

    async def check_tenant(self, tenant: str) -> None:
        if tenant != "" and not await self.app.state.store.tenant_exists(tenant):
            raise NonexistentTenant(f"there is no city (tenant) {tenant!r}")

    # ---- collections ------------------------------------------------------------------------
    async def collections(self, tenant: str) -> dict[str, Collection]:
        hit = self._collections.get(tenant)
        if hit is not None and time.monotonic() - hit[0] < self.ttl:
            return hit[1]
        await self.check_tenant(tenant)
        gen = self._generation.get(tenant, 0)
        infos: list[TypeInfo] = await self.app.state.store.type_info(tenant)
        maps = await self._term_maps()
        cols = self._build(tenant, sorted(infos, key=lambda i: i.type), maps)
        if self._generation.get(tenant, 0) == gen:
            self._collections[tenant] = (time.monotonic(), cols)
        return cols

    async def collection(self, tenant: str, cid: str) -> Collection:
        col = (await self.collections(tenant)).get(cid)
        if col is None:
            raise ResourceNotFound(f"no collection {cid!r} in {tenant_title(tenant)}")
        return col

    async def _term_maps(self) -> list[tuple[str, TermMap]]:
        """Every hosted or cached @context the broker knows, as (url, term map), by url."""
        registry = self.app.state.contexts
        out = []
        for url in sorted(registry.documents):
            try:
                out.append((url, await registry.resolve(url)))
            except Exception:  # noqa: BLE001 - an unusable context only loses its short names
                continue
        return out

    def _build(self, tenant: str, infos: list[TypeInfo], maps: list[tuple[str, TermMap]]) -> dict[str, Collection]:
        type_names = _unique_names([i.type for i in infos], lambda iri: _preferred(iri, [tm for _, tm in maps]))
        used: set[str] = set()
        out: dict[str, Collection] = {}
        for info in infos:
            title = type_names[info.type]
            cid = title if _SAFE_ID.fullmatch(title) and title not in used else \
                re.sub(r"[^A-Za-z0-9_.\-]+", "-", _last_segment(info.type)).strip("-") + "-" + \
                hashlib.sha1(info.type.encode()).hexdigest()[:8]
            used.add(cid)
            own = [tm for _, tm in maps if info.type in tm.reverse] or [CORE]
            others = [tm for _, tm in maps if tm not in own]
            attrs = [a for a in sorted(info.attrs) if a != LOCATION]
            names = _unique_names(attrs, lambda iri, own=own, others=others: _preferred(iri, own, others),
                                  reserved={GEOMETRY, "id"})
            out[cid] = Collection(id=cid, tenant=tenant, type_iri=info.type, title=title, count=info.count,
                                  names=names, iris={n: i for i, n in names.items()},
                                  kinds={a: set(k) for a, k in info.attrs.items()}, vocab=own[0])
        return out

    # ---- extents ----------------------------------------------------------------------------
    async def extent(self, col: Collection) -> Extent:
        """The collection as the current caller sees it (cached per caller, see the module doc)."""
        key = (col.tenant, col.type_iri)
        who = current_principal()
        per = self._extents.get(key)
        hit = per.get(who) if per is not None else None
        if hit is not None and time.monotonic() - hit.computed < self.ttl:
            return hit
        gen = self._generation.get(key, 0)
        count = 0
        box: Box | None = None
        start = end = None
        start_key = end_key = None
        value_types: dict[str, set[str]] = {}
        geometry_types: set[str] = set()
        offset = 0
        svc = self.app.state.entities
        while True:
            page = (await svc.query(EntityQuery(tenant=col.tenant, types=[frozenset({col.type_iri})],
                                                limit=_SCAN_PAGE, offset=offset))).entities
            count += len(page)
            for ent in page:
                for iri, insts in ent.get("attrs", {}).items():
                    for inst in insts:
                        v = simple_value(inst, col.name)
                        value_types.setdefault(iri, set()).add(json_type(v))
                        if iri == LOCATION and isinstance(v, dict):
                            try:
                                b = geometry_bbox(v)
                            except ValueError:
                                continue
                            if all(math.isfinite(c) for c in b):
                                box = _union(box, b)
                                geometry_types.add(str(v.get("type")))
                t = feature_time(ent)
                k = parse_datetime(t) if t else None
                if k is not None:
                    if start_key is None or k < start_key:
                        start, start_key = t, k
                    if end_key is None or k > end_key:
                        end, end_key = t, k
            if len(page) < _SCAN_PAGE:
                break
            offset += _SCAN_PAGE
        ext = Extent(count, box, start, end, value_types, geometry_types, time.monotonic())
        if self._generation.get(key, 0) != gen:
            return ext
        per = self._extents.setdefault(key, {})
        if len(per) >= MAX_CALLERS:          # many distinct callers: forget the oldest extents
            for old in sorted(per, key=lambda k: per[k].computed)[:MAX_CALLERS // 4]:
                del per[old]
        per[who] = ext
        return ext


def _preferred(iri: str, own: list[TermMap], others: list[TermMap] = ()) -> tuple[str, bool]:  # type: ignore[assignment]
    """(short name, whether it is authoritative): own contexts, core, default vocabulary; else
    other known contexts or the last IRI segment (not authoritative: yields on a clash)."""
    for tm in own:
        if (t := tm.reverse.get(iri)) is not None:
            return t, True
    if (t := CORE.reverse.get(iri)) is not None:
        return t, True
    if iri.startswith(DEFAULT_VOCAB) and len(iri) > len(DEFAULT_VOCAB):
        return iri[len(DEFAULT_VOCAB):], True
    for tm in others:
        if (t := tm.reverse.get(iri)) is not None and ":" not in t:
            return t, False
    return _last_segment(iri), False


def _unique_names(iris: list[str], pick: Any, reserved: frozenset[str] | set[str] = frozenset()) -> dict[str, str]:
    """IRI -> name, no two IRIs sharing a name: on a clash authoritative names win, the rest
    (or all, when several are authoritative) keep their full IRI."""
    chosen = {iri: pick(iri) for iri in iris}
    by_name: dict[str, list[str]] = {}
    for iri, (name, _) in chosen.items():
        by_name.setdefault(name, []).append(iri)
    out: dict[str, str] = {}
    for name, group in by_name.items():
        if name in reserved:
            for iri in group:
                out[iri] = iri
            continue
        if len(group) == 1:
            out[group[0]] = name
            continue
        strong = [iri for iri in group if chosen[iri][1]]
        for iri in group:
            out[iri] = name if len(strong) == 1 and iri == strong[0] else iri
    return out
