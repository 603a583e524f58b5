"""Per-tenant validation policies and registered JSON Schemas, kept as NGSI-LD entities.

Why entities (and not a table or a side file): the store has no generic table, and a
JSON file beside the database would exist for SQLite only and miss backups, tenants and
replication. A policy is an entity of the reserved type ``urbanmim:ValidationPolicy`` and a
registered schema one of type ``urbanmim:JsonSchema``, written through the EntityService in
the city's own tenant: both backends store them, the tenant isolation is the broker's, and
they can be read (``GET /ngsi-ld/v1/entities?type=urbanmim:ValidationPolicy``) and
subscribed to like anything else. ``urbanmim:`` is an IRI scheme of its own, so the names
expand and compact to themselves under every @context.

The writer thread needs the policies synchronously, so :class:`ModelRegistry` keeps them in
memory: loaded at start, then kept in step by a store ChangeListener that sees every write
of a reserved entity, whatever API made it (:meth:`ModelRegistry.on_change`). Writes of the
reserved entities are themselves checked (:meth:`ModelRegistry.check_reserved`), so a
malformed policy is refused with 400 instead of silently disabling validation.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from referencing import Registry
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from urbanmim.errors import BadRequestData
from urbanmim.models.smartdatamodels import SdmCatalog, _no_network
from urbanmim.models.validator import CompiledModel, Issue, compile_model
from urbanmim.ngsild.contexts import CORE, TermMap
from urbanmim.ngsild.entity import Entity, default_instance, value_of
from urbanmim.service.reserved import ReservedCache

POLICY_TYPE = "urbanmim:ValidationPolicy"
SCHEMA_TYPE = "urbanmim:JsonSchema"
RESERVED_TYPES = frozenset({POLICY_TYPE, SCHEMA_TYPE})
A_TARGET, A_NAME, A_MODE, A_SOURCE, A_CONTEXT = ("urbanmim:targetType", "urbanmim:typeName", "urbanmim:mode",
                                                 "urbanmim:source", "urbanmim:context")
A_SCHEMA = "urbanmim:schema"
MODES = ("off", "warn", "strict")
SCHEMA_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SCHEMA_URN = "urn:urbanmim:schema:"
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
REPORT_LOG_SIZE = 1000


def policy_id(type_iri: str) -> str:
    """One policy entity per (tenant, entity type): its id is derived from the type IRI."""
    return "urn:ngsi-ld:ValidationPolicy:" + hashlib.sha256(type_iri.encode()).hexdigest()[:24]


def schema_entity_id(schema_id: str) -> str:
    return "urn:ngsi-ld:JsonSchema:" + schema_id


@dataclass
class Policy:
    type_iri: str
    type_name: str                  # the entity's "type" in the key-values view
    mode: str                       # off | warn | strict
    source: str                     # sdm:<Subject>/<Model> | schema:<id>
    context: Any = None             # the @context the policy was set with (compaction)

    def to_entity(self) -> Entity:
        attrs: dict[str, Any] = {A_TARGET: [_prop(self.type_iri)], A_NAME: [_prop(self.type_name)],
                                 A_MODE: [_prop(self.mode)], A_SOURCE: [_prop(self.source)]}
        if self.context is not None:
            attrs[A_CONTEXT] = [{"type": "JsonProperty", "json": self.context}]
        return {"id": policy_id(self.type_iri), "type": [POLICY_TYPE], "attrs": attrs}

    def to_json(self) -> dict[str, Any]:
        out = {"type": self.type_iri, "typeName": self.type_name, "mode": self.mode, "source": self.source}
        if self.context is not None:
            out["@context"] = self.context
        return out


@dataclass
class RegisteredSchema:
    schema_id: str
    document: dict[str, Any]

    @property
    def uris(self) -> list[str]:
        """The URIs other schemas may ``$ref`` it by: its ``$id`` and ``urn:urbanmim:schema:<id>``."""
        out = [SCHEMA_URN + self.schema_id]
        if isinstance(self.document.get("$id"), str):
            out.append(self.document["$id"].split("#")[0])
        return out

    def to_entity(self) -> Entity:
        return {"id": schema_entity_id(self.schema_id), "type": [SCHEMA_TYPE],
                "attrs": {A_SCHEMA: [{"type": "JsonProperty", "json": self.document}]}}


def _prop(v: Any) -> dict[str, Any]:
    return {"type": "Property", "value": v}


def _attr(ent: Entity, iri: str) -> Any:
    inst = default_instance(ent["attrs"].get(iri) or [])
    return value_of(inst) if inst is not None else None


def parse_policy(ent: Entity) -> Policy:
    """A ``urbanmim:ValidationPolicy`` entity → :class:`Policy` (BadRequestData naming what is wrong)."""
    type_iri, name, mode, source = (_attr(ent, a) for a in (A_TARGET, A_NAME, A_MODE, A_SOURCE))
    for attr, v in ((A_TARGET, type_iri), (A_NAME, name), (A_SOURCE, source)):
        if not isinstance(v, str) or not v:
            raise BadRequestData(f"{ent['id']}: {attr} must be a non-empty string")
    if mode not in MODES:
        raise BadRequestData(f"{ent['id']}: {A_MODE} must be one of {', '.join(MODES)}, not {mode!r}")
    if not source.startswith(("sdm:", "schema:")):
        raise BadRequestData(f"{ent['id']}: {A_SOURCE} must be sdm:<Model> or schema:<id>, not {source!r}")
    if ent["id"] != policy_id(type_iri):
        raise BadRequestData(f"the policy for {type_iri} must have the id {policy_id(type_iri)}")
    return Policy(type_iri, name, mode, source, _attr(ent, A_CONTEXT))


def parse_schema_entity(ent: Entity) -> RegisteredSchema:
    sid = ent["id"].removeprefix("urn:ngsi-ld:JsonSchema:")
    if not ent["id"].startswith("urn:ngsi-ld:JsonSchema:") or not SCHEMA_ID.match(sid):
        raise BadRequestData(f"a {SCHEMA_TYPE} id must be urn:ngsi-ld:JsonSchema:<id> with <id> of [A-Za-z0-9._-]")
    doc = _attr(ent, A_SCHEMA)
    check_schema_document(doc)
    return RegisteredSchema(sid, doc)


def check_schema_document(doc: Any) -> None:
    """A registered schema must be a Draft 2020-12 JSON Schema object (meta-schema checked offline)."""
    if not isinstance(doc, dict):
        raise BadRequestData("a registered schema must be a JSON object")
    if doc.get("$schema", DRAFT_2020_12) != DRAFT_2020_12:
        raise BadRequestData(f"only JSON Schema Draft 2020-12 is supported ($schema {DRAFT_2020_12})")
    try:
        Draft202012Validator.check_schema(doc)
    except SchemaError as e:
        raise BadRequestData(f"not a valid JSON Schema: {e.message}") from None


@dataclass
class TenantModels:
    policies: dict[str, Policy] = field(default_factory=dict)        # type IRI -> policy
    schemas: dict[str, RegisteredSchema] = field(default_factory=dict)
    compiled: dict[str, CompiledModel] = field(default_factory=dict)  # source -> compiled (custom schemas)
    reports: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=REPORT_LOG_SIZE))


class ModelRegistry(ReservedCache):
    """The in-memory view of every tenant's policies and schemas, and the compiled validators."""

    reserved_types = RESERVED_TYPES

    def __init__(self, catalog: SdmCatalog, contexts: Any = None):
        self.catalog = catalog
        self.contexts = contexts                    # the app's ContextRegistry (cached look-ups only)
        self.tenants: dict[str, TenantModels] = {}
        self._sdm: dict[str, CompiledModel] = {}    # source -> compiled official model
        self._lock = threading.RLock()

    def tenant(self, tenant: str) -> TenantModels:
        with self._lock:
            tm = self.tenants.get(tenant)
            if tm is None:
                tm = self.tenants[tenant] = TenantModels()
            return tm

    # ---- keeping in step with the store -----------------------------------------------------------


    def apply(self, tenant: str, eid: str, ent: Entity | None) -> None:
        tm = self.tenant(tenant)
        with self._lock:
            if ent is None:
                for t in list(tm.policies):
                    if policy_id(t) == eid:
                        del tm.policies[t]
                if eid.startswith("urn:ngsi-ld:JsonSchema:"):
                    tm.schemas.pop(eid.removeprefix("urn:ngsi-ld:JsonSchema:"), None)
                    tm.compiled.clear()
                return
            if POLICY_TYPE in ent["type"]:
                p = parse_policy(ent)
                tm.policies[p.type_iri] = p
            if SCHEMA_TYPE in ent["type"]:
                s = parse_schema_entity(ent)
                tm.schemas[s.schema_id] = s
                tm.compiled.clear()                 # a schema may be $ref'd by others

    def check_reserved(self, tenant: str, ent: Entity) -> None:
        """A write of a reserved entity must parse (and a policy's schema must be registered)."""
        if POLICY_TYPE in ent["type"]:
            p = parse_policy(ent)
            if p.source.startswith("schema:") and p.source[7:] not in self.tenant(tenant).schemas:
                raise BadRequestData(f"{p.source}: no such registered schema in this tenant")
            if p.source.startswith("sdm:"):
                self.catalog.lookup(p.source)
        if SCHEMA_TYPE in ent["type"]:
            parse_schema_entity(ent)

    # ---- compiling ------------------------------------------------------------------------------
    def tenant_registry(self, tenant: str, extra: RegisteredSchema | None = None) -> Registry[Any]:
        """Offline $ref resolution: the tenant's registered schemas plus the official ones."""
        res: list[tuple[str, Any]] = []
        schemas = list(self.tenant(tenant).schemas.values()) + ([extra] if extra else [])
        for s in schemas:
            r = DRAFT202012.create_resource(s.document)
            res.extend((uri, r) for uri in s.uris)
        return self.catalog.registry().with_resources(res)

    def compile(self, tenant: str, source: str, type_name: str | None = None) -> CompiledModel:
        """The compiled validator of a source (cached; raises BadRequestData when it cannot be built)."""
        if source.startswith("sdm:"):
            model = self.catalog.lookup(source)
            with self._lock:
                hit = self._sdm.get(model.source)
            if hit is not None:
                return hit
            full = self.catalog.full_schema(model)
            if full is not None:
                cm = self._build(model.source, model.name, "full", full, self.catalog.registry())
            else:
                kinds = {n: a.ngsi_type for n, a in self.catalog.attributes(model).items() if a.ngsi_type}
                cm = self._build(model.source, model.name, "metadata", self.catalog.derived_schema(model),
                                 Registry(retrieve=_no_network), kinds)  # type: ignore[call-arg]
            with self._lock:
                self._sdm[model.source] = cm
            return cm
        if not source.startswith("schema:"):
            raise BadRequestData(f"unknown validation source {source!r} (use sdm:<Model> or schema:<id>)")
        tm = self.tenant(tenant)
        with self._lock:
            hit = tm.compiled.get(source)
            reg = tm.schemas.get(source[7:])
        if hit is not None and (type_name is None or hit.type_name == type_name):
            return hit
        if reg is None:
            raise BadRequestData(f"{source}: no such registered schema in this tenant")
        cm = self._build(source, type_name or "", "custom", reg.document, self.tenant_registry(tenant))
        with self._lock:
            tm.compiled[source] = cm
        return cm

    @staticmethod
    def _build(source: str, name: str, level: str, schema: dict[str, Any], registry: Registry[Any],
               kinds: dict[str, str] | None = None) -> CompiledModel:
        try:
            return compile_model(source, name, level, schema, registry, kinds)
        except Unresolvable as e:
            raise BadRequestData(f"{source}: $ref {e} cannot be resolved offline (register it, or add it to the "
                                 "Smart Data Models schema directory)") from None

    def policy_context(self, policy: Policy) -> TermMap:
        """The policy's @context as a TermMap: a cached look-up only (never fetched in the writer)."""
        if policy.context is None or self.contexts is None:
            return CORE
        tm = self.contexts.cached(policy.context)
        return tm if tm is not None else CORE

    # ---- validating -----------------------------------------------------------------------------
    def issues_for(self, tenant: str, ent: Entity, policy: Policy) -> list[Issue]:
        try:
            cm = self.compile(tenant, policy.source, policy.type_name)
        except BadRequestData as e:
            return [Issue(None, "source", e.detail)]
        return cm.validate(ent, self.policy_context(policy))

    def report(self, tenant: str, ent: Entity, policy: Policy, issues: list[Issue]) -> dict[str, Any]:
        entry = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "entityId": ent["id"],
                 "type": policy.type_name, "typeIri": policy.type_iri, "source": policy.source,
                 "mode": policy.mode, "issues": [i.to_json() for i in issues]}
        self.tenant(tenant).reports.appendleft(entry)
        return entry
