"""Device measurements → NGSI-LD attribute fragments, and the mutation that writes them.

Why a module of pure functions: the MQTT loop, the HTTP route and the tests all turn the
same JSON (``{"t": 21.5, "h": 40, "ts": "..."}``, or a list of those) into the same
NGSI-LD update, and a mistake here must be a counted rejection, never a crash. Nothing
here does I/O.

A measurement is a JSON object of *measurement keys*. ``ts`` (configurable per agent,
not per device) is the observation time: an ISO 8601 date-time, or a Unix epoch number
(seconds, or milliseconds when larger than 1e11). Every other key is looked up in the
device's mapping (key → attribute name, type, unitCode); an unmapped key becomes a
Property of the same name unless the device was provisioned with ``explicitAttrs``.
Every written attribute carries ``observedAt`` (the ``ts``, else the receive time), so
the temporal history orders measurements by when they were observed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from urbanmim.errors import NgsiError
from urbanmim.ngsild.contexts import CORE
from urbanmim.ngsild.entity import Entity, Instance
from urbanmim.ngsild.payload import check_attr_name, parse_instance
from urbanmim.service.entities import EntityService
from urbanmim.store.base import MutationFn

TS_KEY = "ts"
MAX_BULK = 1000          # measurements in one message / request
ATTR_TYPES = ("Property", "GeoProperty", "Relationship", "JsonProperty")


class Malformed(ValueError):
    """A payload or measurement the agent cannot turn into an update (counted, never raised out)."""


@dataclass(frozen=True)
class AttrMap:
    """Where one measurement key goes: attribute (compact name and expanded IRI), type, unit."""

    key: str
    name: str
    iri: str
    type: str = "Property"
    unit_code: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.unit_code:
            out["unitCode"] = self.unit_code
        return out


@dataclass
class Device:
    """A provisioned device, as the ingestion path needs it (decoded once, then cached)."""

    tenant: str
    device_id: str
    entity_id: str
    entity_type: str                       # expanded IRI
    key_hash: str
    mapping: dict[str, AttrMap] = field(default_factory=dict)
    static: dict[str, list[Instance]] = field(default_factory=dict)   # expanded, ready to write
    explicit_attrs: bool = False
    # sha256 digests of the key given at provisioning / of wrong keys already tried
    good_keys: set[bytes] = field(default_factory=set)
    bad_keys: set[bytes] = field(default_factory=set)


def parse_payload(raw: bytes | str) -> list[dict[str, Any]]:
    """A message body → a list of measurement objects (a single object or a non-empty list)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise Malformed(f"not JSON: {e}") from None
    items = body if isinstance(body, list) else [body]
    if not items:
        raise Malformed("empty measurement list")
    if len(items) > MAX_BULK:
        raise Malformed(f"more than {MAX_BULK} measurements in one message")
    for m in items:
        if not isinstance(m, dict) or not m:
            raise Malformed("a measurement must be a non-empty JSON object")
    return items


def observed_at(value: Any) -> str:
    """A measurement timestamp → ISO 8601 UTC with milliseconds (what the temporal API stores)."""
    if isinstance(value, bool):
        raise Malformed("ts must be an ISO 8601 date-time or an epoch number")
    if isinstance(value, (int, float)):
        secs = value / 1000 if value > 1e11 else float(value)
        try:
            dt = datetime.fromtimestamp(secs, UTC)
        except (OverflowError, OSError, ValueError):
            raise Malformed(f"ts {value!r} is out of range") from None
    elif isinstance(value, str):
        s = value.strip()
        if s.endswith(("Z", "z")):
            s = s[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(s)
        except ValueError:
            raise Malformed(f"ts {value!r} is not an ISO 8601 date-time") from None
        dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    else:
        raise Malformed("ts must be an ISO 8601 date-time or an epoch number")
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _raw_attr(am: AttrMap, value: Any) -> dict[str, Any]:
    """The normalized NGSI-LD attribute for one measured value (validated by ``parse_instance``)."""
    if am.type == "GeoProperty":
        if isinstance(value, list):                       # [lon, lat] or [lon, lat, alt]
            value = {"type": "Point", "coordinates": value}
        return {"type": "GeoProperty", "value": value}
    if am.type == "Relationship":
        return {"type": "Relationship", "object": value}
    if am.type == "JsonProperty":
        return {"type": "JsonProperty", "json": value}
    return {"type": "Property", "value": value}


def to_fragment(dev: Device, measurement: dict[str, Any], received_at: str) -> dict[str, Any]:
    """One measurement → an attributes fragment in the internal (expanded) shape."""
    ts = observed_at(measurement[TS_KEY]) if TS_KEY in measurement else received_at
    attrs: dict[str, list[Instance]] = {}
    for key, value in measurement.items():
        if key == TS_KEY:
            continue
        am = dev.mapping.get(key)
        if am is None:
            if dev.explicit_attrs:
                continue
            am = default_map(key)
        if value is None:
            raise Malformed(f"measurement {key!r} is null")
        try:
            inst = parse_instance(am.name, _raw_attr(am, value), CORE)
        except NgsiError as e:
            raise Malformed(f"measurement {key!r}: {e.detail}") from None
        inst["observedAt"] = ts
        if am.unit_code:
            inst["unitCode"] = am.unit_code
        attrs[am.iri] = [inst]
    if not attrs:
        raise Malformed("the measurement has no attribute this device maps")
    return {"attrs": attrs}


_DEFAULT_MAPS: dict[str, AttrMap] = {}


def default_map(key: str) -> AttrMap:
    """An unmapped key is written as a Property of the same name (memoised: a fleet reuses few keys)."""
    am = _DEFAULT_MAPS.get(key)
    if am is None:
        try:
            check_attr_name(key)
        except NgsiError as e:
            raise Malformed(f"measurement key {key!r} is not a valid attribute name: {e.detail}") from None
        if key in ("id", "type", "scope", "@context", "createdAt", "modifiedAt", "deletedAt"):
            raise Malformed(f"measurement key {key!r} is reserved")
        am = AttrMap(key, key, CORE.expand(key))
        if len(_DEFAULT_MAPS) < 10_000:
            _DEFAULT_MAPS[key] = am
    return am


def measurements_fn(dev: Device, frags: list[dict[str, Any]], recorder: Any = None) -> MutationFn:
    """The write of a device's measurements of one batch, as ONE mutation of its entity.

    Why one: every mutation costs the store a read, a decode, an encode and a re-index of
    the entity, and every change listener runs once per mutation; a device sending several
    measurements within one batch (a bulk message, or a fast sensor) pays that once. The
    measurements are appended in order (the entity ends with the latest), and the temporal
    history still gets *every* measurement: the records are announced to the temporal
    recorder (``Recorder.expect``, the temporal API's own mechanism), so the history holds
    one instance per measurement, not just the final state. Subscriptions see one change
    with the latest values (like a throttled subscription would).

    The entity (type and static attributes) is created when missing, so a device's first
    measurement, or one after somebody deleted the entity, is never lost for want of it."""
    from urbanmim.temporal.recorder import record_for

    appends = [EntityService.append_fn(dev.entity_id, f, no_overwrite=False) for f in frags]

    def fn(cur: Entity | None) -> tuple[Any, Any]:
        records: list[Any] = []
        created = cur is None
        if cur is None:
            cur = EntityService.create_fn(new_entity(dev))(None)[0]
        etype = (cur.get("type") or [""])[0]
        now = cur["modifiedAt"]
        if created and recorder is not None:
            for attr, insts in cur["attrs"].items():
                records.extend(record_for(dev.entity_id, etype, attr, i, fallback=now) for i in insts)
        for frag, append in zip(frags, appends, strict=True):
            new, _ = append(cur)
            cur = new if isinstance(new, dict) else cur
            if recorder is not None:
                for attr, insts in frag["attrs"].items():
                    records.extend(record_for(dev.entity_id, etype, attr, i, fallback=now) for i in insts)
        if recorder is not None:
            recorder.expect(dev.entity_id, records)
        return cur, created
    return fn


def new_entity(dev: Device) -> Entity:
    """The device's entity as provisioning creates it: type + static attributes."""
    return {"id": dev.entity_id, "type": [dev.entity_type],
            "attrs": {k: [dict(i) for i in v] for k, v in dev.static.items()}}


def ensure_fn(dev: Device) -> MutationFn:
    """Create the device's entity with its static attributes if missing; leave it alone otherwise."""
    from urbanmim.store.base import UNCHANGED

    def fn(cur: Entity | None) -> tuple[Any, Any]:
        if cur is not None:
            return UNCHANGED, False
        return EntityService.create_fn(new_entity(dev))(None)[0], True
    return fn
