"""Device provisioning: devices are NGSI-LD ``Device`` entities in their tenant, cached for ingestion.

Why entities and not a table of our own: the registry then works on every storage
backend, is per tenant for free, is visible and queryable through the NGSI-LD API
(``GET /ngsi-ld/v1/entities?type=Device``), and follows the Smart Data Models Device
model (``controlledAsset``, ``controlledProperty``, ``name``) plus three urbanmim
extension attributes: ``apiKeyHash``, ``attributeMapping`` and ``staticAttributes``.
Terms are expanded with the core @context, so no remote context is ever needed.

The API key is stored only as a salted PBKDF2-SHA256 hash. PBKDF2 is slow on purpose,
so a verified key is remembered (as its SHA-256 digest) on the cached device; wrong keys
too, in a bounded set, so a flood of bad keys costs one PBKDF2 per distinct key.

The cache of decoded devices is invalidated by a store change listener (any write of a
``urn:ngsi-ld:Device:`` entity, through any API) and again after the commit, plus a TTL
as a safety net for writers in other processes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Iterable
from typing import Any

from urbanmim.errors import BadRequestData, NgsiError, ResourceNotFound
from urbanmim.ngsild.contexts import CORE
from urbanmim.ngsild.entity import Entity, value_of
from urbanmim.ngsild.payload import check_attr_name, check_entity_id, expand_types, parse_attributes
from urbanmim.service.entities import EntityService, outcome_error
from urbanmim.store.base import Change, EntityQuery, Mutation, Store

from .mapping import ATTR_TYPES, AttrMap, Device, ensure_fn

DEVICE_PREFIX = "urn:ngsi-ld:Device:"
DEVICE_TYPE = CORE.expand("Device")
_DEVICE_ID = re.compile(r"[A-Za-z0-9_\-.:~]{1,128}")
_A = {n: CORE.expand(n) for n in ("name", "controlledAsset", "controlledProperty", "apiKeyHash",
                                  "attributeMapping", "staticAttributes", "explicitAttrs", "controlledAssetType")}
PBKDF2_ITERATIONS = 10_000
CACHE_TTL = 60.0
_MAX_BAD_KEYS = 64


def hash_key(key: str, *, iterations: int = PBKDF2_ITERATIONS) -> str:
    salt = secrets.token_bytes(16)
    dk = hashlib.pbkdf2_hmac("sha256", key.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(dk).decode()}"


def check_key(key: str, stored: str) -> bool:
    try:
        algo, iters, salt, dk = stored.split("$")
        if algo != "pbkdf2_sha256":
            return False
        got = hashlib.pbkdf2_hmac("sha256", key.encode(), base64.b64decode(salt), int(iters))
        return hmac.compare_digest(got, base64.b64decode(dk))
    except (ValueError, TypeError):
        return False


def device_entity_id(device_id: str) -> str:
    return DEVICE_PREFIX + device_id


def check_device_id(device_id: Any) -> str:
    if not isinstance(device_id, str) or not _DEVICE_ID.fullmatch(device_id):
        raise BadRequestData("deviceId must be 1-128 characters of A-Z a-z 0-9 _ - . : ~ (no '/', '+' or '#': "
                             "it is a topic level)")
    return device_id


def _parse_mapping(raw: Any) -> dict[str, AttrMap]:
    """``attributes``: a list of {key (or object_id), name, type?, unitCode?} (IoT-agent style)."""
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise BadRequestData("attributes must be a list of {key, name, type, unitCode}")
    out: dict[str, AttrMap] = {}
    for a in raw:
        if not isinstance(a, dict):
            raise BadRequestData("each attribute mapping must be an object")
        key = a.get("key", a.get("object_id"))
        name = a.get("name", key)
        typ = a.get("type", "Property")
        unit = a.get("unitCode")
        if not isinstance(key, str) or not key or not isinstance(name, str):
            raise BadRequestData("an attribute mapping needs a string key (and name)")
        if key in out:
            raise BadRequestData(f"measurement key {key!r} is mapped twice")
        check_attr_name(name)
        if name in ("id", "type", "scope"):
            raise BadRequestData(f"{name!r} cannot be a measured attribute")
        if typ not in ATTR_TYPES:
            raise BadRequestData(f"attribute type must be one of {', '.join(ATTR_TYPES)}, not {typ!r}")
        if unit is not None and not isinstance(unit, str):
            raise BadRequestData("unitCode must be a string (UN/CEFACT code, e.g. CEL)")
        out[key] = AttrMap(key, name, CORE.expand(name), typ, unit)
    return out


def parse_device(tenant: str, body: Any) -> tuple[Device, dict[str, Any], str | None]:
    """A provisioning request → (device, its raw static attributes, the generated key or None)."""
    if not isinstance(body, dict):
        raise BadRequestData("a device must be a JSON object")
    unknown = set(body) - {"deviceId", "apiKey", "entityId", "entityType", "attributes", "staticAttributes",
                           "explicitAttrs"}
    if unknown:
        raise BadRequestData(f"unknown device member(s): {', '.join(sorted(unknown))}")
    device_id = check_device_id(body.get("deviceId"))
    etype = body.get("entityType", "Device")
    if not isinstance(etype, str):
        raise BadRequestData("entityType must be a string")
    etype_iri = expand_types(etype, CORE)[0]
    entity_id = check_entity_id(body.get("entityId", f"urn:ngsi-ld:{etype}:{device_id}"))
    if entity_id.startswith(DEVICE_PREFIX) and entity_id == device_entity_id(device_id):
        raise BadRequestData("entityId must differ from the Device entity's own id "
                             f"({device_entity_id(device_id)})")
    key = body.get("apiKey")
    generated = None
    if key is None:
        key = generated = secrets.token_urlsafe(24)
    if not isinstance(key, str) or not 8 <= len(key) <= 256 or "/" in key or "+" in key or "#" in key:
        raise BadRequestData("apiKey must be a string of 8-256 characters without '/', '+' or '#'")
    static_raw = body.get("staticAttributes", {})
    if not isinstance(static_raw, dict):
        raise BadRequestData("staticAttributes must be an object of NGSI-LD attributes")
    static = parse_attributes(static_raw, CORE)
    explicit = body.get("explicitAttrs", False)
    if not isinstance(explicit, bool):
        raise BadRequestData("explicitAttrs must be true or false")
    dev = Device(tenant, device_id, entity_id, etype_iri, hash_key(key), _parse_mapping(body.get("attributes")),
                 static, explicit)
    dev.good_keys.add(hashlib.sha256(key.encode()).digest())
    return dev, static_raw, generated


def to_entity(dev: Device, static_raw: dict[str, Any], etype: str) -> Entity:
    """The ``Device`` entity that stores a provisioned device."""
    def prop(v: Any) -> list[dict[str, Any]]:
        return [{"type": "Property", "value": v}]
    attrs: dict[str, Any] = {
        _A["name"]: prop(dev.device_id),
        _A["controlledAsset"]: [{"type": "Relationship", "object": dev.entity_id}],
        _A["controlledAssetType"]: prop(etype),
        _A["apiKeyHash"]: prop(dev.key_hash),
        _A["attributeMapping"]: [{"type": "JsonProperty",
                                  "json": [dict(am.to_json(), key=k) for k, am in dev.mapping.items()]}],
        _A["staticAttributes"]: [{"type": "JsonProperty", "json": static_raw}],
        _A["explicitAttrs"]: prop(dev.explicit_attrs),
    }
    if dev.mapping:
        attrs[_A["controlledProperty"]] = prop(sorted({am.name for am in dev.mapping.values()}))
    return {"id": device_entity_id(dev.device_id), "type": [DEVICE_TYPE], "attrs": attrs}


def _val(ent: Entity, name: str) -> Any:
    insts = ent["attrs"].get(_A[name])
    return value_of(insts[0]) if insts else None


def from_entity(tenant: str, ent: Entity) -> Device:
    """A stored ``Device`` entity → the decoded device (raises BadRequestData when it is not one of ours)."""
    if not ent["id"].startswith(DEVICE_PREFIX) or _val(ent, "apiKeyHash") is None:
        raise BadRequestData(f"{ent['id']} is not a provisioned device")
    etype = _val(ent, "controlledAssetType") or "Device"
    static_raw = _val(ent, "staticAttributes") or {}
    return Device(tenant, ent["id"][len(DEVICE_PREFIX):], str(_val(ent, "controlledAsset")),
                  expand_types(etype, CORE)[0], str(_val(ent, "apiKeyHash")),
                  _parse_mapping(_val(ent, "attributeMapping") or []), parse_attributes(static_raw, CORE),
                  bool(_val(ent, "explicitAttrs")))


def describe(ent: Entity) -> dict[str, Any]:
    """The provisioning API's view of a Device entity (never the key hash)."""
    return {"deviceId": ent["id"][len(DEVICE_PREFIX):], "entityId": _val(ent, "controlledAsset"),
            "entityType": _val(ent, "controlledAssetType"), "attributes": _val(ent, "attributeMapping") or [],
            "staticAttributes": _val(ent, "staticAttributes") or {},
            "explicitAttrs": bool(_val(ent, "explicitAttrs")), "createdAt": ent.get("createdAt")}


class DeviceRegistry:
    """Provisioning (through the EntityService) and the ingestion path's device look-up."""

    def __init__(self, store: Store, service: EntityService):
        self.store = store
        self.service = service
        self._cache: dict[tuple[str, str], tuple[float, Device | None]] = {}
        self._dirty: set[tuple[str, str]] = set()
        self._gen = 0
        self._verified: dict[str, set[bytes]] = {}     # stored key hash -> digests of keys that matched

    # ---- cache invalidation (the listener runs in the writer thread) ---------------------------
    def listener(self, change: Change) -> Iterable[Any]:
        if change.entity_id.startswith(DEVICE_PREFIX):
            key = (change.tenant, change.entity_id)
            self._cache.pop(key, None)
            self._dirty.add(key)
            self._gen += 1
        return ()

    def after_commit(self) -> None:
        while self._dirty:
            try:
                key = self._dirty.pop()
            except KeyError:
                break
            self._cache.pop(key, None)
            self._gen += 1

    # ---- look-up --------------------------------------------------------------------------------
    async def lookup(self, tenant: str, device_id: str) -> Device | None:
        key = (tenant, device_entity_id(device_id))
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[0] < CACHE_TTL:
            return hit[1]
        gen = self._gen
        ent = await self.store.get(tenant, key[1])
        dev: Device | None = None
        if ent is not None:
            try:
                dev = from_entity(tenant, ent)
            except NgsiError:
                dev = None
        if gen == self._gen:        # no device write committed meanwhile: safe to remember
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[key] = (now, dev)
        return dev

    async def verify(self, dev: Device, key: str) -> bool:
        """Check a device's API key. A verified key is remembered per stored hash (so it survives
        the device cache's TTL and invalidations, and stops matching when the key changes); PBKDF2
        itself runs in a thread, off the event loop."""
        digest = hashlib.sha256(key.encode()).digest()
        good = self._verified.get(dev.key_hash)
        if good is not None and digest in good:
            return True
        if digest in dev.bad_keys:
            return False
        ok = await asyncio.to_thread(check_key, key, dev.key_hash)
        if ok:
            if len(self._verified) > 100_000:
                self._verified.clear()
            self._verified.setdefault(dev.key_hash, set()).add(digest)
        else:
            if len(dev.bad_keys) >= _MAX_BAD_KEYS:
                dev.bad_keys.clear()
            dev.bad_keys.add(digest)
        return ok

    # ---- provisioning ---------------------------------------------------------------------------
    async def provision(self, tenant: str, bodies: list[Any]) -> list[dict[str, Any]]:
        """Create devices (and their entities with static attributes, when missing) in one batch.

        Each result is {deviceId, entityId, apiKey (only when generated)} or {deviceId, error}.
        All or nothing is not promised by the store; a device that fails is reported and the
        others stay provisioned (409 for an existing device id)."""
        parsed = [parse_device(tenant, b) for b in bodies]
        ids = [p[0].device_id for p in parsed]
        if len(set(ids)) != len(ids):
            raise BadRequestData("the same deviceId appears twice in the request")
        muts: list[Mutation] = []
        for dev, static_raw, _ in parsed:
            etype = bodies[ids.index(dev.device_id)].get("entityType", "Device")
            muts.append(Mutation(device_entity_id(dev.device_id), EntityService.create_fn(
                to_entity(dev, static_raw, etype))))
            muts.append(Mutation(dev.entity_id, ensure_fn(dev)))
        outs = await self.service.batch(tenant, muts)
        result = []
        for (dev, _, generated), out in zip(parsed, outs[::2], strict=True):
            self._cache.pop((tenant, device_entity_id(dev.device_id)), None)
            if out.error is None:
                self._verified.setdefault(dev.key_hash, set()).update(dev.good_keys)
            if out.error is not None:
                result.append({"deviceId": dev.device_id, "error": outcome_error(out)})
                continue
            item: dict[str, Any] = {"deviceId": dev.device_id, "entityId": dev.entity_id}
            if generated:
                item["apiKey"] = generated
            result.append(item)
        return result

    async def get(self, tenant: str, device_id: str) -> dict[str, Any]:
        ent = await self.store.get(tenant, device_entity_id(check_device_id(device_id)))
        if ent is None or _val(ent, "apiKeyHash") is None:
            raise ResourceNotFound(f"device {device_id} not found")
        return describe(ent)

    async def list(self, tenant: str, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        res = await self.store.query(EntityQuery(tenant, types=[frozenset({DEVICE_TYPE})], attrs={_A["apiKeyHash"]},
                                                 limit=limit, offset=offset, count=True))
        return [describe(e) for e in res.entities], res.count or 0

    async def delete(self, tenant: str, device_id: str) -> None:
        """Remove the device (its key stops working at once); its entity and history stay."""
        await self.service.delete(tenant, device_entity_id(check_device_id(device_id)))
        self._cache.pop((tenant, device_entity_id(device_id)), None)
