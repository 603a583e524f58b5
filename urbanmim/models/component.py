"""The MIM2 component: validation of writes against Smart Data Models and city JSON Schemas.

How it plugs in (``install``, before the store opens):

* a :class:`ModelRegistry` on ``app.state.models``, kept in step with the reserved policy
  and schema entities by a store ChangeListener;
* :class:`WriteValidator` appended to ``EntityService.validators``: every create, replace,
  merge, append, update and attribute write of any API (NGSI-LD, batch, ingest) is checked
  inside the writer transaction, on the entity as it is about to be stored;
* the ``/models/v1`` API mounted beside ``/ngsi-ld/v1`` (it is not an NGSI-LD resource);
* the outermost ASGI app wrapped so that a write accepted with warnings answers with an
  ``Urbanmim-Validation`` header (the validator reaches the request through a ContextVar).

``start`` loads every tenant's policies and schemas and resolves their @contexts; on PostgreSQL it
then follows other processes' changes of them (the store's entity change announcements).
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any

from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from urbanmim.algorithms.register import Algorithm, Risk, register_of
from urbanmim.components import Component
from urbanmim.errors import BadRequestData
from urbanmim.models.registry import POLICY_TYPE, RESERVED_TYPES, SCHEMA_TYPE, ModelRegistry
from urbanmim.models.smartdatamodels import catalog
from urbanmim.ngsild.entity import Entity
from urbanmim.service.reserved import stop_following
from urbanmim.store.base import all_of_type

log = logging.getLogger(__name__)

REPORT_HEADER = "Urbanmim-Validation"
# the reports of the current HTTP request (set by ReportHeader, filled by WriteValidator)
WARNINGS: ContextVar[list[dict[str, Any]] | None] = ContextVar("urbanmim_validation_warnings", default=None)
MAX_DETAIL = 10


VALIDATION_ALGORITHM = Algorithm(
    id="mim2.write-validation", name="Smart Data Models write validation", version="1", kind="validation",
    purpose="Refuse (strict policy) or flag (warn policy) entities that do not conform to the data model a city "
            "chose for their type, so every consumer can rely on the shape of the data.",
    method="Each written entity is converted to key-values and checked with jsonschema against the Smart Data "
           "Models schema (or a city schema) named by the tenant's policy for its type; NGSI-LD attribute types "
           "are checked against the schema's declared types.",
    inputs=("every entity written to a tenant with a validation policy for its type", "the policy (mode, schema)"),
    outputs=("accept / refuse (400 BadRequestData) / accept with an Urbanmim-Validation warning header",
             "validation reports under /models/v1"),
    owner="the city's data platform team", contact="see the platform's /algorithms page",
    human_oversight="A city admin chooses per entity type whether validation is off, warns or refuses; every "
                    "refusal names the failing attribute and rule, and reports can be reviewed under /models/v1.",
    risks=(Risk("A schema that is too strict refuses legitimate data from a device or partner.",
                "Start new policies in warn mode, review reports, then switch to strict."),),
    component="models", references=("MIM2 (OASC)", "https://smartdatamodels.org"),
)


class WriteValidator:
    """The EntityService hook: reserved entities are checked for form, others against policies."""

    def __init__(self, registry: ModelRegistry):
        self.registry = registry

    def __call__(self, tenant: str, ent: Entity) -> None:
        types = ent.get("type") or ()
        if RESERVED_TYPES.intersection(types):
            self.registry.check_reserved(tenant, ent)
            return
        tm = self.registry.tenants.get(tenant)
        if tm is None or not tm.policies:
            return
        refused: list[tuple[str, Any]] = []
        for t in types:
            policy = tm.policies.get(t)
            if policy is None or policy.mode == "off":
                continue
            issues = self.registry.issues_for(tenant, ent, policy)
            if not issues:
                continue
            entry = self.registry.report(tenant, ent, policy, issues)
            if policy.mode == "strict":
                refused.append((policy.source, issues))
            else:
                sink = WARNINGS.get()
                if sink is not None:
                    sink.append(entry)
        if refused:
            parts = [f"{(i.attribute or '(entity)')} [{i.rule}]: {i.message}"
                     for _, issues in refused for i in issues]
            detail = (f"entity {ent['id']} does not conform to {', '.join(s for s, _ in refused)}: "
                      + "; ".join(parts[:MAX_DETAIL]) + (f"; and {len(parts) - MAX_DETAIL} more"
                                                         if len(parts) > MAX_DETAIL else ""))
            raise BadRequestData(detail, title="Entity does not conform to its data model", extra={
                "validation": [{"source": s, "issues": [i.to_json() for i in issues]} for s, issues in refused]})


def header_value(entries: list[dict[str, Any]]) -> str:
    """``warn; 2 issue(s): urn:x dateObserved (required), urn:x co (ngsiType)`` — ASCII, bounded."""
    items = [f"{e['entityId']} {i['attribute'] or '(entity)'} ({i['rule']})" for e in entries for i in e["issues"]]
    text = f"warn; {len(items)} issue(s): " + ", ".join(items[:20]) + (", ..." if len(items) > 20 else "")
    text = text.encode("ascii", "replace").decode().replace("\r", " ").replace("\n", " ")
    return text[:2000]


class ReportHeader:
    """Outermost ASGI wrapper: collects the request's validation warnings into a response header."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sink: list[dict[str, Any]] = []
        token = WARNINGS.set(sink)

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start" and sink:
                headers = list(message.get("headers") or [])
                headers.append((REPORT_HEADER.lower().encode(), header_value(sink).encode("latin-1")))
                message = dict(message, headers=headers)
            await send(message)

        try:
            await self.app(scope, receive, send_with_header)
        finally:
            WARNINGS.reset(token)


def _wrap_app(app: Any) -> None:
    """Put :class:`ReportHeader` around the app's middleware stack (built here if not yet)."""
    stack = getattr(app, "middleware_stack", None)
    if isinstance(stack, ReportHeader):
        return
    if stack is None and hasattr(app, "build_middleware_stack"):
        stack = app.build_middleware_stack()
    if stack is not None:
        app.middleware_stack = ReportHeader(stack)


def _install(app: Any) -> None:
    from urbanmim.models import api
    settings = app.state.settings
    registry = ModelRegistry(catalog(getattr(settings, "sdm_schemas", None) or None), app.state.contexts)
    app.state.models = registry
    app.state.store.listeners.append(registry.on_change)
    app.state.entities.validators.append(WriteValidator(registry))
    register_of(app).register(VALIDATION_ALGORITHM)
    if not any(isinstance(r, Mount) and r.path == api.PREFIX for r in app.router.routes):
        app.router.routes.insert(0, Mount(api.PREFIX, routes=api.routes))
    _wrap_app(app)



async def _reload(app: Any) -> None:
    """Every tenant's policies and schemas read again (start; a resync after lost announcements)."""
    registry: ModelRegistry = app.state.models
    store = app.state.store
    fresh = ModelRegistry(registry.catalog, registry.contexts)
    for tenant in dict.fromkeys(["", *await store.tenants()]):
        if tenant and not await store.tenant_exists(tenant):
            continue
        fresh.load(tenant, await all_of_type(store, tenant, SCHEMA_TYPE))
        fresh.load(tenant, await all_of_type(store, tenant, POLICY_TYPE))
    registry.tenants = fresh.tenants
    for tenant in list(registry.tenants):
        await _resolve_contexts(app, tenant)


async def _resolve_contexts(app: Any, tenant: str) -> None:
    for p in list(app.state.models.tenant(tenant).policies.values()):
        if p.context is not None:
            try:
                await app.state.contexts.resolve(p.context)
            except Exception as e:  # an unreachable context must not stop the broker
                log.warning("validation policy for %s: @context unavailable (%s); using the core context",
                            p.type_iri, e)


async def _start(app: Any) -> None:
    # several processes on one PostgreSQL: a policy or schema another process changed is re-read on its
    # announcement (store/announcements.py), in force here within milliseconds
    app.state.models_follower = await app.state.models.load_and_follow(
        app.state.store, lambda tenant: _reload(app), "models follower",
        refreshed=lambda tenant: _resolve_contexts(app, tenant))


async def _stop(app: Any) -> None:
    await stop_following(app, "models_follower")


def component() -> Component:
    return Component(name="models", install=_install, start=_start, stop=_stop)
