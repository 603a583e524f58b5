"""``/security/v1`` (admins manage rules, role bindings, device keys; read the audit log) and
``/auth/v1`` (the development issuer's JWKS).

Why a small API of its own: rules, bindings and keys are reserved NGSI-LD entities, but their
shape (a role, a type, attribute names; a key shown once) is easier to get right through a
purpose-made API than by hand-writing reserved entities. Every write goes through
``app.state.entities`` as the calling admin, so it is decided, audited and stored like any
other write. Attribute and type names are compact terms expanded with the request's
@context (``Link`` header or ``@context`` member), exactly as NGSI-LD payloads are.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from urbanmim.errors import BadRequestData, Forbidden, ResourceNotFound
from urbanmim.ngsild import http
from urbanmim.ngsild.contexts import TermMap
from urbanmim.security import policy as pol
from urbanmim.security.principal import Principal, current_principal
from urbanmim.service.entities import EntityService
from urbanmim.store.base import AuditQuery, Mutation

PREFIX = "/security/v1"
AUTH_PREFIX = "/auth/v1"
MAX_BODY = 65536


def _admin(request: Request, tenant: str) -> Principal:
    p = current_principal()
    sec = request.app.state.security
    if sec.enabled and not p.has_role(tenant, "admin"):
        raise Forbidden(f"{p.subject} is not an admin of tenant {tenant or '(default)'}")
    return p


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=http.JSON, headers=headers)


async def _body(request: Request) -> tuple[dict[str, Any], TermMap]:
    body, ctype = await http.read_json(request, MAX_BODY)
    if not isinstance(body, dict):
        raise BadRequestData("the payload must be a JSON object")
    ctx = await http.request_context(request, body, ctype)
    return body, ctx


def _names(raw: Any, ctx: TermMap, what: str) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(x, str) and x for x in raw):
        raise BadRequestData(f"{what} must be a list of attribute names")
    return [ctx.expand(x) for x in raw]


async def _put(request: Request, tenant: str, ent: dict[str, Any]) -> None:
    (out,) = await request.app.state.entities.batch(tenant, [Mutation(ent["id"], EntityService.replace_fn(
        ent, must_exist=False))])
    if out.error is not None:
        raise out.error


async def _delete(request: Request, tenant: str, entity_id: str) -> None:
    await request.app.state.entities.delete(tenant, entity_id)


def _policy(request: Request, tenant: str) -> pol.TenantPolicy:
    return request.app.state.security.policies.tenant(tenant)  # type: ignore[no-any-return]


# ---- rules --------------------------------------------------------------------------------------
def _rule_json(r: pol.Rule, ctx: TermMap) -> dict[str, Any]:
    out: dict[str, Any] = {"name": r.name, "role": r.role, "effect": r.effect,
                           "entityType": r.target_type if r.target_type == "*" else ctx.compact(r.target_type),
                           "hide": sorted(ctx.compact(a) for a in r.hide)}
    if r.only is not None:
        out["only"] = sorted(ctx.compact(a) for a in r.only)
    return out


async def list_rules(request: Request) -> Response:
    tenant = http.tenant_of(request)
    _admin(request, tenant)
    ctx = await http.request_context(request)
    return _json([_rule_json(r, ctx) for r in _policy(request, tenant).rules.values()])


async def put_rule(request: Request) -> Response:
    """PUT /security/v1/rules/{name}: {role, entityType, effect?, hide?, only?}."""
    tenant = http.tenant_of(request)
    _admin(request, tenant)
    name = request.path_params["name"]
    body, ctx = await _body(request)
    unknown = set(body) - {"role", "entityType", "effect", "hide", "only", "@context", "name"}
    if unknown:
        raise BadRequestData(f"unknown member(s): {', '.join(sorted(unknown))}")
    etype = body.get("entityType")
    if not isinstance(etype, str) or not etype:
        raise BadRequestData("entityType is required (an entity type name, or * for every type)")
    rule = pol.Rule(name=name, role=body.get("role", ""), target_type=etype if etype == "*" else ctx.expand(etype),
                    effect=body.get("effect", "permit"), hide=frozenset(_names(body.get("hide"), ctx, "hide")),
                    only=frozenset(_names(body["only"], ctx, "only")) if body.get("only") is not None else None)
    ent = rule.to_entity()
    pol.parse_rule(ent)                       # the same checks as the store-side validator, before writing
    existed = pol.RULE_PREFIX + name in _policy(request, tenant).rules
    await _put(request, tenant, ent)
    return _json(_rule_json(rule, ctx), 200 if existed else 201)


async def get_rule(request: Request) -> Response:
    tenant = http.tenant_of(request)
    _admin(request, tenant)
    ctx = await http.request_context(request)
    r = _policy(request, tenant).rules.get(pol.RULE_PREFIX + request.path_params["name"])
    if r is None:
        raise ResourceNotFound(f"no access rule {request.path_params['name']}")
    return _json(_rule_json(r, ctx))


async def delete_rule(request: Request) -> Response:
    tenant = http.tenant_of(request)
    _admin(request, tenant)
    await _delete(request, tenant, pol.RULE_PREFIX + request.path_params["name"])
    return Response(status_code=204)


# ---- role bindings ------------------------------------------------------------------------------
async def list_bindings(request: Request) -> Response:
    tenant = http.tenant_of(request)
    _admin(request, tenant)
    return _json([{"subject": b.subject, "roles": sorted(b.roles), "organisation": b.organisation}
                  for b in _policy(request, tenant).bindings.values()])


async def put_binding(request: Request) -> Response:
    """PUT /security/v1/roles/{subject}: {roles: [...], organisation?} for an external IdP's subject."""
    tenant = http.tenant_of(request)
    _admin(request, tenant)
    body, _ = await _body(request)
    roles = body.get("roles")
    if (not isinstance(roles, list) or not all(isinstance(r, str) for r in roles)
            or not set(roles) <= set(pol.ROLES)):
        raise BadRequestData(f"roles must be a list among {', '.join(pol.ROLES)}")
    org = body.get("organisation")
    if org is not None and not isinstance(org, str):
        raise BadRequestData("organisation must be a string")
    b = pol.Binding(request.path_params["subject"], frozenset(roles), org)
    await _put(request, tenant, pol.binding_entity(b))
    return _json({"subject": b.subject, "roles": sorted(b.roles), "organisation": b.organisation})


async def delete_binding(request: Request) -> Response:
    tenant = http.tenant_of(request)
    _admin(request, tenant)
    await _delete(request, tenant, pol.binding_id(request.path_params["subject"]))
    return Response(status_code=204)


# ---- device API keys ------------------------------------------------------------------------------
def _key_json(k: pol.ApiKey) -> dict[str, Any]:
    return {"id": k.key_id, "entities": sorted(k.entities), "organisation": k.organisation, "label": k.label,
            "role": "device"}


async def create_key(request: Request) -> Response:
    """POST /security/v1/apikeys: {entities: [ids], organisation?, label?} → the key, shown this once."""
    tenant = http.tenant_of(request)
    _admin(request, tenant)
    body, _ = await _body(request)
    ents = body.get("entities")
    if not isinstance(ents, list) or not ents or not all(isinstance(e, str) and e for e in ents):
        raise BadRequestData("entities must be a non-empty list of the entity ids the device may write")
    kid, secret, full = pol.new_key_secret()
    k = pol.ApiKey(kid, pol.hash_secret(secret), frozenset(ents), body.get("organisation") or None,
                   str(body.get("label") or ""))
    await _put(request, tenant, pol.apikey_entity(k))
    return _json({**_key_json(k), "key": full}, 201)


async def list_keys(request: Request) -> Response:
    tenant = http.tenant_of(request)
    _admin(request, tenant)
    return _json([_key_json(k) for k in _policy(request, tenant).apikeys.values()])


async def delete_key(request: Request) -> Response:
    tenant = http.tenant_of(request)
    _admin(request, tenant)
    await _delete(request, tenant, pol.APIKEY_PREFIX + request.path_params["kid"])
    return Response(status_code=204)


# ---- who am I, explain -----------------------------------------------------------------------------
async def whoami(request: Request) -> Response:
    p = current_principal()
    out = p.to_json()
    out["roles"] = {t: sorted(p.roles[t]) for t in p.roles}
    out["security"] = "on" if request.app.state.security.enabled else "off"
    return _json(out)


async def explain(request: Request) -> Response:
    """GET /security/v1/explain?id=<entity id>: every decider's answer for the caller reading it."""
    tenant = http.tenant_of(request)
    eid = request.query_params.get("id")
    if not eid:
        raise BadRequestData("id (the entity id) is required")
    p = current_principal()
    ent = await request.app.state.store.get(tenant, eid)
    access = request.app.state.access
    if ent is None or (access.enabled and not p.system and access.visible(p, tenant, ent) is None
                       and not p.has_role(tenant, "admin")):
        raise ResourceNotFound(f"entity {eid} not found")
    decisions = access.explain(p, tenant, ent)
    from urbanmim.security.access import combine
    v = combine(decisions)
    return _json({"entity": eid, "tenant": tenant, "subject": p.subject, "visible": v.allowed or p.system
                  or not access.enabled, "decisions": [d.to_json() for d in decisions],
                  "hidden": sorted(v.hidden), "only": sorted(v.only) if v.only is not None else None})


# ---- audit ------------------------------------------------------------------------------------------
AUDIT_FIELDS = ("seq", "ts", "tenant", "subject", "organisation", "client", "action", "entities", "attrs",
                "purpose", "decision", "reason")


async def audit(request: Request) -> Response:
    """GET /security/v1/audit?tenant=&subject=&entity=&from=&to=&after=&limit=&format=json|jsonl|csv."""
    q = request.query_params
    p = current_principal()
    tenant = q.get("tenant", http.tenant_of(request))
    tenants: list[str] | None = [tenant]
    if tenant == "*":
        if request.app.state.security.enabled and not (p.system or "admin" in p.roles.get("*", frozenset())):
            raise Forbidden("only an admin of every tenant (*) may read every tenant's audit log")
        tenants = None
    else:
        _admin(request, tenant)
    limit = http_int(q.get("limit"), 1000, "limit")
    if not 1 <= limit <= 10000:
        raise BadRequestData("limit must be between 1 and 10000")
    fmt = q.get("format", "json")
    if fmt not in ("json", "jsonl", "csv"):
        raise BadRequestData("format must be json, jsonl or csv")
    security = request.app.state.security
    if security.audit is not None:
        await security.audit.flush()      # what this process buffered is part of the answer
    rows = await request.app.state.store.audit_query(AuditQuery(
        tenants=tenants, subject=q.get("subject"), entity=q.get("entity"), start=q.get("from"), end=q.get("to"),
        after_seq=http_int(q.get("after"), 0, "after"), limit=limit))
    items = [{"seq": seq, **r.to_json()} for seq, r in rows]
    headers = {"Urbanmim-Audit-Last": str(rows[-1][0])} if rows else {}
    if fmt == "jsonl":
        return Response(b"".join(orjson.dumps(i) + b"\n" for i in items), media_type="application/x-ndjson",
                        headers=headers)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(AUDIT_FIELDS)
        for i in items:
            w.writerow([" ".join(i[f]) if isinstance(i[f], list) else ("" if i[f] is None else i[f])
                        for f in AUDIT_FIELDS])
        return Response(buf.getvalue(), media_type="text/csv", headers=headers)
    return _json(items, headers=headers)


def http_int(raw: str | None, default: int, what: str) -> int:
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise BadRequestData(f"{what} must be an integer") from None


# ---- JWKS of the development issuer ------------------------------------------------------------------
async def jwks(request: Request) -> Response:
    keys = request.app.state.security.public_jwks
    if keys is None:
        raise ResourceNotFound("the development issuer is disabled (auth_dev_issuer = false)")
    return _json(keys, headers={"Cache-Control": "max-age=300"})


async def openid_configuration(request: Request) -> Response:
    from urbanmim.security.tokens import DEV_ISSUER
    base = str(request.base_url).rstrip("/")
    return _json({"issuer": DEV_ISSUER, "jwks_uri": base + AUTH_PREFIX + "/jwks.json",
                  "id_token_signing_alg_values_supported": ["ES256"]})


routes = [
    Route("/whoami", whoami, methods=["GET"]),
    Route("/explain", explain, methods=["GET"]),
    Route("/rules", list_rules, methods=["GET"]),
    Route("/rules/{name}", put_rule, methods=["PUT"]),
    Route("/rules/{name}", get_rule, methods=["GET"]),
    Route("/rules/{name}", delete_rule, methods=["DELETE"]),
    Route("/roles", list_bindings, methods=["GET"]),
    Route("/roles/{subject:path}", put_binding, methods=["PUT"]),
    Route("/roles/{subject:path}", delete_binding, methods=["DELETE"]),
    Route("/apikeys", create_key, methods=["POST"]),
    Route("/apikeys", list_keys, methods=["GET"]),
    Route("/apikeys/{kid}", delete_key, methods=["DELETE"]),
    Route("/audit", audit, methods=["GET"]),
]
auth_routes = [
    Route("/jwks.json", jwks, methods=["GET"]),
    Route("/.well-known/openid-configuration", openid_configuration, methods=["GET"]),
]
