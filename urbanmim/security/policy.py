"""MIM6 policy data: access rules, role bindings and device API keys, kept as reserved entities.

Why reserved NGSI-LD entities (like MIM2's validation policies): they are written through
``app.state.entities`` in the tenant they govern, so both backends, backups and migrations
carry them with no table of their own, and a store ChangeListener updates the in-memory
:class:`PolicyCache` inside the write transaction — a change takes effect on the next request.

Reserved types (never readable or writable through NGSI-LD except by the tenant's admins;
the API key hash never leaves the process at all):

* ``urbanmim:AccessRule`` — for one role and one entity type (or ``*``): ``effect``
  ``permit`` (default) or ``deny`` (the role may not see the type at all), ``hide``
  (attribute IRIs the role may not see or write) and optionally ``only`` (the role sees
  only these attributes, plus the core geo-attributes).
* ``urbanmim:RoleBinding`` — roles per tenant for a subject of an external identity
  provider (whose tokens carry no urbanmim roles), plus its organisation.
* ``urbanmim:ApiKey`` — a device key: SHA-256 hash of a 256-bit random secret (a fast hash
  is enough for a random key; PBKDF2 as in the device agent protects *chosen* keys), the
  entity ids it may write, its organisation.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from urbanmim.errors import BadRequestData
from urbanmim.ngsild.entity import Entity
from urbanmim.security.access import Decision
from urbanmim.service.reserved import ReservedCache

RULE_TYPE = "urbanmim:AccessRule"
BINDING_TYPE = "urbanmim:RoleBinding"
APIKEY_TYPE = "urbanmim:ApiKey"
RESERVED_TYPES = frozenset({RULE_TYPE, BINDING_TYPE, APIKEY_TYPE})
RULE_PREFIX, BINDING_PREFIX, APIKEY_PREFIX = "urn:urbanmim:accessrule:", "urn:urbanmim:rolebinding:", \
    "urn:urbanmim:apikey:"
A = {n: f"urbanmim:{n}" for n in ("role", "targetType", "effect", "hide", "only", "subject", "roles",
                                  "organisation", "keyHash", "entities", "label", "createdBy")}
ROLES = ("admin", "editor", "reader", "device")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _prop(v: Any) -> list[dict[str, Any]]:
    return [{"type": "Property", "value": v}]


def _val(ent: Entity, key: str, default: Any = None) -> Any:
    insts = ent.get("attrs", {}).get(A[key])
    return insts[0].get("value", default) if insts else default


# ---- rules ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    name: str
    role: str
    target_type: str                     # expanded type IRI or "*"
    effect: str = "permit"               # permit | deny
    hide: frozenset[str] = frozenset()
    only: frozenset[str] | None = None

    def to_entity(self) -> Entity:
        attrs = {A["role"]: _prop(self.role), A["targetType"]: _prop(self.target_type),
                 A["effect"]: _prop(self.effect), A["hide"]: _prop(sorted(self.hide))}
        if self.only is not None:
            attrs[A["only"]] = _prop(sorted(self.only))
        return {"id": RULE_PREFIX + self.name, "type": [RULE_TYPE], "attrs": attrs}


def parse_rule(ent: Entity) -> Rule:
    name = ent["id"][len(RULE_PREFIX):] if ent["id"].startswith(RULE_PREFIX) else ""
    role, target, effect = _val(ent, "role"), _val(ent, "targetType"), _val(ent, "effect", "permit")
    hide, only = _val(ent, "hide", []), _val(ent, "only")
    if not NAME.match(name):
        raise BadRequestData(f"access rule id must be {RULE_PREFIX}<name> ({NAME.pattern})")
    if role not in ROLES:
        raise BadRequestData(f"access rule role must be one of {', '.join(ROLES)}")
    if not isinstance(target, str) or not target:
        raise BadRequestData("access rule needs a targetType (an entity type or *)")
    if effect not in ("permit", "deny"):
        raise BadRequestData("access rule effect must be permit or deny")
    if not isinstance(hide, list) or not all(isinstance(x, str) for x in hide):
        raise BadRequestData("access rule hide must be a list of attribute names")
    if only is not None and (not isinstance(only, list) or not all(isinstance(x, str) for x in only)):
        raise BadRequestData("access rule only must be a list of attribute names")
    return Rule(name, role, target, effect, frozenset(hide), frozenset(only) if only is not None else None)


@dataclass(frozen=True)
class RoleView:
    """What one role may see of one set of entity types: allowed?, hidden, only (and the decision
    the role decider answers with it, built once)."""

    allowed: bool
    hidden: frozenset[str] = frozenset()
    only: frozenset[str] | None = None
    reason: str = ""
    decision: Decision | None = None


# ---- role bindings and API keys -----------------------------------------------------------------
@dataclass(frozen=True)
class Binding:
    subject: str
    roles: frozenset[str]
    organisation: str | None = None


def binding_id(subject: str) -> str:
    return BINDING_PREFIX + hashlib.sha256(subject.encode()).hexdigest()[:32]


def binding_entity(b: Binding) -> Entity:
    attrs = {A["subject"]: _prop(b.subject), A["roles"]: _prop(sorted(b.roles))}
    if b.organisation:
        attrs[A["organisation"]] = _prop(b.organisation)
    return {"id": binding_id(b.subject), "type": [BINDING_TYPE], "attrs": attrs}


def parse_binding(ent: Entity) -> Binding:
    subject, roles, org = _val(ent, "subject"), _val(ent, "roles", []), _val(ent, "organisation")
    if not isinstance(subject, str) or not subject:
        raise BadRequestData("role binding needs a subject")
    if ent["id"] != binding_id(subject):
        raise BadRequestData(f"role binding id must be {binding_id(subject)}")
    if not isinstance(roles, list) or not set(roles) <= set(ROLES):
        raise BadRequestData(f"role binding roles must be a list among {', '.join(ROLES)}")
    return Binding(subject, frozenset(roles), org if isinstance(org, str) else None)


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    key_hash: str                       # hex SHA-256 of the secret
    entities: frozenset[str]
    organisation: str | None = None
    label: str = ""


def new_key_secret() -> tuple[str, str, str]:
    """(key id, secret, the full key ``umk_<id>_<secret>`` given to the device once)."""
    kid = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return kid, secret, f"umk_{kid}_{secret}"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_key(key: str) -> tuple[str, str] | None:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != "umk" or not re.fullmatch(r"[0-9a-f]{16}", parts[1]):
        return None
    return parts[1], parts[2]


def apikey_entity(k: ApiKey) -> Entity:
    attrs = {A["keyHash"]: _prop(k.key_hash), A["entities"]: _prop(sorted(k.entities)), A["role"]: _prop("device"),
             A["label"]: _prop(k.label)}
    if k.organisation:
        attrs[A["organisation"]] = _prop(k.organisation)
    return {"id": APIKEY_PREFIX + k.key_id, "type": [APIKEY_TYPE], "attrs": attrs}


def parse_apikey(ent: Entity) -> ApiKey:
    kid = ent["id"][len(APIKEY_PREFIX):] if ent["id"].startswith(APIKEY_PREFIX) else ""
    h, ents, org = _val(ent, "keyHash"), _val(ent, "entities", []), _val(ent, "organisation")
    if not re.fullmatch(r"[0-9a-f]{16}", kid) or not isinstance(h, str) or not re.fullmatch(r"[0-9a-f]{64}", h):
        raise BadRequestData("malformed API key entity")
    if not isinstance(ents, list) or not all(isinstance(x, str) for x in ents):
        raise BadRequestData("API key entities must be a list of entity ids")
    return ApiKey(kid, h, frozenset(ents), org if isinstance(org, str) else None, str(_val(ent, "label", "")))


def key_matches(k: ApiKey, secret: str) -> bool:
    return hmac.compare_digest(k.key_hash, hash_secret(secret))


# ---- the cache -------------------------------------------------------------------------------------
@dataclass
class TenantPolicy:
    rules: dict[str, Rule] = field(default_factory=dict)
    bindings: dict[str, Binding] = field(default_factory=dict)     # subject -> binding
    apikeys: dict[str, ApiKey] = field(default_factory=dict)       # key id -> key
    _views: dict[tuple[str, frozenset[str]], RoleView] = field(default_factory=dict)

    def view(self, role: str, types: frozenset[str]) -> RoleView:
        """The rules of ``role`` for an entity of ``types`` (memoised until a rule changes)."""
        key = (role, types)
        got = self._views.get(key)
        if got is None:
            got = self._views[key] = self._compute(role, types)
        return got

    def _compute(self, role: str, types: frozenset[str]) -> RoleView:
        hidden: set[str] = set()
        only: frozenset[str] | None = None
        names = []
        for r in self.rules.values():
            if r.role != role or (r.target_type != "*" and r.target_type not in types):
                continue
            if r.effect == "deny":
                reason = f"rule {r.name}: role {role} may not access this type"
                return RoleView(False, reason=reason, decision=Decision("deny", reason=reason, source="roles"))
            hidden |= r.hide
            if r.only is not None:
                only = r.only if only is None else only & r.only
            names.append(r.name)
        reason = f"role {role}" + (f" with rule(s) {', '.join(names)}" if names else "")
        return RoleView(True, frozenset(hidden), only, reason, Decision("permit", frozenset(hidden), only, reason,
                                                                         "roles"))


class PolicyCache(ReservedCache):
    """Every tenant's rules, bindings and keys, kept in step with the reserved entities."""

    reserved_types = RESERVED_TYPES

    def __init__(self) -> None:
        self.tenants: dict[str, TenantPolicy] = {}
        self.keys: dict[str, tuple[str, ApiKey]] = {}     # key id -> (tenant, key): a key names no tenant
        self.version = 0        # bumped on every change of a rule (memoised role decisions depend on rules)

    def tenant(self, tenant: str) -> TenantPolicy:
        tp = self.tenants.get(tenant)
        if tp is None:
            tp = self.tenants[tenant] = TenantPolicy()
        return tp

    def apply(self, tenant: str, entity_id: str, ent: Entity | None) -> None:
        """Put (``ent``) or remove (None) one reserved entity."""
        tp = self.tenant(tenant)
        if entity_id.startswith(RULE_PREFIX):
            tp.rules.pop(entity_id, None)
            if ent is not None:
                tp.rules[entity_id] = parse_rule(ent)
            tp._views.clear()
            self.version += 1
        elif entity_id.startswith(BINDING_PREFIX):
            for s in list(tp.bindings):
                if binding_id(s) == entity_id:
                    del tp.bindings[s]
            if ent is not None:
                b = parse_binding(ent)
                tp.bindings[b.subject] = b
        elif entity_id.startswith(APIKEY_PREFIX):
            kid = entity_id[len(APIKEY_PREFIX):]
            tp.apikeys.pop(kid, None)
            self.keys.pop(kid, None)
            if ent is not None:
                k = parse_apikey(ent)
                tp.apikeys[kid] = k
                self.keys[kid] = (tenant, k)



    def check(self, ent: Entity) -> None:
        """A write of a reserved entity must parse (the EntityService validator hook)."""
        types = set(ent.get("type") or ())
        if RULE_TYPE in types:
            parse_rule(ent)
        elif BINDING_TYPE in types:
            parse_binding(ent)
        elif APIKEY_TYPE in types:
            parse_apikey(ent)
