"""``/consent/v1`` — personal-data marking, consents, and the data subject's export and erasure.

A separate prefix because none of this is an NGSI-LD resource; the tenant is still the
``NGSILD-Tenant`` header and errors are still ProblemDetails. Who may do what (with security
on; with security off everything is open, like the rest of the broker):

* personal-data rules: anyone may read them (what is personal is not a secret); tenant
  admins declare and remove them;
* consents: the data subject (principal ``subject`` = the subject id), or a tenant admin
  acting for them, gives, lists and revokes; members of a recipient organisation may list the
  consents given to it (``?recipient=<their organisation>``);
* export and erasure: the data subject, or a tenant admin acting for them.

Attribute and type names are expanded with the request's @context (Link header or body), so
``refDataSubject`` means what it means in the caller's data model.
"""

from __future__ import annotations

import io
import zipfile
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from urbanmim.consent import dpv, rights
from urbanmim.consent import service as consents
from urbanmim.consent.decider import access_of
from urbanmim.consent.model import ANY, SELF, Consent, PersonalDataRule, rule_id
from urbanmim.consent.registry import ConsentRegistry, now_ms
from urbanmim.errors import BadRequestData, Forbidden, InvalidRequest, ResourceNotFound, Unauthorized
from urbanmim.ngsild import http
from urbanmim.ngsild.payload import check_attr_name
from urbanmim.security.principal import Principal, current_principal

PREFIX = "/consent/v1"
STATUSES = ("active", "revoked", "expired", "all")


def _reg(request: Request) -> ConsentRegistry:
    reg: ConsentRegistry = request.app.state.consent
    return reg


def _json(body: Any, status: int = 200, tenant: str = "", headers: dict[str, str] | None = None) -> Response:
    h = dict(headers or {})
    if tenant:
        h[http.TENANT_HEADER] = tenant
    return Response(http.dumps(body), status_code=status, media_type=http.JSON, headers=h or None)


def _open(request: Request) -> bool:
    """Security off: every caller may do everything (as everywhere else in the broker)."""
    access = access_of(request.app)
    return access is None or not access.enabled


def _caller(request: Request) -> tuple[Principal, bool]:
    """The principal, and whether it may act for anyone in this tenant (security off, system, admin)."""
    p = current_principal()
    return p, _open(request) or p.system


def _refuse(p: Principal, what: str) -> None:
    if not p.authenticated:
        raise Unauthorized(f"authentication is required to {what}")
    raise Forbidden(f"{p.subject} may not {what}")


def _require_admin(request: Request, tenant: str, what: str) -> Principal:
    p, free = _caller(request)
    if not free and not p.has_role(tenant, "admin"):
        _refuse(p, what)
    return p


def _require_subject_or_admin(request: Request, tenant: str, subject: str, what: str) -> Principal:
    p, free = _caller(request)
    if not free and p.subject != subject and not p.has_role(tenant, "admin"):
        _refuse(p, what)
    return p


async def _body(request: Request) -> tuple[dict[str, Any], str]:
    body, ctype = await http.read_json(request, int(request.app.state.settings.max_body_bytes))
    if not isinstance(body, dict):
        raise InvalidRequest("the payload must be a JSON object")
    return body, ctype


# ---- purposes -------------------------------------------------------------------------------------
async def purposes(request: Request) -> Response:
    return _json(dpv.catalogue())


# ---- personal-data rules ------------------------------------------------------------------------------
async def list_rules(request: Request) -> Response:
    tenant = http.tenant_of(request)
    ctx = await http.request_context(request)
    rules = sorted(_reg(request).tenant(tenant).rules.values(), key=lambda r: r.type_iri)
    return _json([r.to_json(ctx.compact) for r in rules], tenant=tenant)


async def get_rule(request: Request) -> Response:
    tenant = http.tenant_of(request)
    ctx = await http.request_context(request)
    type_iri = ctx.expand(request.path_params["type"])
    rule = _reg(request).tenant(tenant).rules.get(type_iri)
    if rule is None:
        raise ResourceNotFound(f"no personal-data rule for type {type_iri}")
    return _json(rule.to_json(ctx.compact), tenant=tenant)


async def put_rule(request: Request) -> Response:
    """Body ``{"attributes": ["name", "email"], "subject": "refDataSubject" | "@self", "description": ""}``."""
    tenant = http.tenant_of(request)
    _require_admin(request, tenant, f"declare personal data in tenant {tenant or '(default)'}")
    body, ctype = await _body(request)
    ctx_value = http.context_source(request, body, ctype)
    ctx = await http.request_context(request, body, ctype)
    attrs, subject, desc = body.get("attributes"), body.get("subject", SELF), body.get("description", "")
    if not isinstance(attrs, list) or not attrs or not all(isinstance(a, str) and a for a in attrs):
        raise BadRequestData("attributes must be a non-empty list of attribute names")
    for a in attrs:
        check_attr_name(a)
    if not isinstance(subject, str) or not subject:
        raise BadRequestData(f"subject must be the name of the attribute that holds the data subject's id, "
                             f"or {SELF!r} when the entity itself is the data subject")
    if subject != SELF:
        check_attr_name(subject)
    if not isinstance(desc, str):
        raise BadRequestData("description must be a string")
    type_iri = ctx.expand(request.path_params["type"])
    rule = PersonalDataRule(type_iri, frozenset(ctx.expand(a) for a in attrs),
                            None if subject == SELF else ctx.expand(subject), ctx_value, desc)
    created = type_iri not in _reg(request).tenant(tenant).rules
    await consents.put_rule(request.app, tenant, rule)
    return _json(rule.to_json(ctx.compact), 201 if created else 200, tenant,
                 {"Location": f"{PREFIX}/personal-data/{request.path_params['type']}"} if created else None)


async def delete_rule(request: Request) -> Response:
    tenant = http.tenant_of(request)
    _require_admin(request, tenant, f"remove personal-data rules in tenant {tenant or '(default)'}")
    ctx = await http.request_context(request)
    type_iri = ctx.expand(request.path_params["type"])
    rule = _reg(request).tenant(tenant).rules.get(type_iri)
    if rule is None or rule.entity_id != rule_id(type_iri):
        raise ResourceNotFound(f"no personal-data rule for type {type_iri}")
    await consents.delete_rule(request.app, tenant, rule)
    return http.empty(204, tenant=tenant or None)


# ---- consents ---------------------------------------------------------------------------------------
async def give_consent(request: Request) -> Response:
    """Body ``{"subject": id (default: the caller), "recipient": org id | "any", "purpose": "dpv:X",
    "expiresAt": ISO date-time (optional)}`` → 201 with the consent."""
    tenant = http.tenant_of(request)
    body, _ = await _body(request)
    unknown = set(body) - {"subject", "recipient", "purpose", "expiresAt", "@context"}
    if unknown:
        raise BadRequestData(f"unknown member(s): {', '.join(sorted(unknown))}")
    p = current_principal()
    subject = body.get("subject")
    if subject is None and p.authenticated and not p.system:
        subject = p.subject
    if not isinstance(subject, str) or not subject:
        raise BadRequestData("subject (the data subject's id) is required")
    _require_subject_or_admin(request, tenant, subject, f"give consent for {subject}")
    if "recipient" not in body or "purpose" not in body:
        raise BadRequestData("recipient (an organisation id, or \"any\") and purpose (a DPV purpose) are required")
    c = await consents.give(request.app, tenant, subject=subject, recipient=body["recipient"],
                            purpose=body["purpose"], given_by=p.subject, expires_at=body.get("expiresAt"))
    return _json(c.to_json(now_ms()), 201, tenant, {"Location": f"{PREFIX}/consents/{c.id}"})


async def list_consents(request: Request) -> Response:
    """``?subject=`` (default: the caller's own), ``?recipient=``, ``?purpose=`` (consents covering it),
    ``?status=active|revoked|expired|all`` (default all)."""
    tenant = http.tenant_of(request)
    q = request.query_params
    unknown = set(q) - {"subject", "recipient", "purpose", "status"}
    if unknown:
        raise BadRequestData(f"unknown parameter(s): {', '.join(sorted(unknown))}")
    status = q.get("status", "all")
    if status not in STATUSES:
        raise BadRequestData(f"status must be one of {', '.join(STATUSES)}")
    purpose = consents.check_purpose(q["purpose"]) if "purpose" in q else None
    p, free = _caller(request)
    admin = free or p.has_role(tenant, "admin")
    subject, recipient = q.get("subject"), q.get("recipient")
    if not admin:
        own_org = recipient is not None and p.organisation is not None and recipient == p.organisation
        if subject is None and not own_org:
            subject = p.subject
        if subject is not None and subject != p.subject and not own_org:
            _refuse(p, f"list the consents of {subject}")
        if not p.authenticated:
            _refuse(p, "list consents")
    reg = _reg(request)
    items = reg.consents_of(tenant, subject) if subject is not None else reg.all_consents(tenant)
    now = now_ms()
    out = [c for c in items
           if (recipient is None or c.recipient == recipient or (c.recipient == ANY and recipient != ANY))
           and (purpose is None or dpv.covers(c.purpose, purpose))
           and (status == "all" or c.status(now) == status)]
    out.sort(key=lambda c: (c.given_at, c.id))
    return _json([c.to_json(now) for c in out], tenant=tenant)


def _consent(request: Request, tenant: str) -> Consent:
    c = _reg(request).consent(tenant, request.path_params["cid"])
    if c is None:
        raise ResourceNotFound(f"no consent {request.path_params['cid']}")
    return c


async def get_consent(request: Request) -> Response:
    tenant = http.tenant_of(request)
    p, free = _caller(request)
    c = _consent(request, tenant)
    if not (free or p.subject == c.subject or p.has_role(tenant, "admin")
            or (p.organisation is not None and p.organisation == c.recipient)):
        _refuse(p, f"read consent {c.id}")
    return _json(c.to_json(now_ms()), tenant=tenant)


async def revoke_consent(request: Request) -> Response:
    """DELETE = revoke: effective for the next request; the record stays, with ``revokedAt``."""
    tenant = http.tenant_of(request)
    p = current_principal()
    c = _consent(request, tenant)
    _require_subject_or_admin(request, tenant, c.subject, f"revoke consent {c.id}")
    await consents.revoke(request.app, tenant, c, p.subject)
    return http.empty(204, tenant=tenant or None)


# ---- subject rights -----------------------------------------------------------------------------------
async def export(request: Request) -> Response:
    """``?format=json`` (default), ``jsonl`` (one record per line) or ``zip`` (both files)."""
    tenant = http.tenant_of(request)
    subject = request.path_params["subject"]
    fmt = request.query_params.get("format", "json")
    if fmt not in ("json", "jsonl", "zip"):
        raise BadRequestData("format must be json, jsonl or zip")
    _require_subject_or_admin(request, tenant, subject, f"export the data of {subject}")
    ctx = await http.request_context(request)
    doc = await rights.export_subject(request.app, tenant, subject, ctx)
    if fmt == "json":
        return _json(doc, tenant=tenant)
    lines = b"".join(orjson.dumps(r) + b"\n" for r in rights.export_lines(doc))
    headers = {http.TENANT_HEADER: tenant} if tenant else {}
    if fmt == "jsonl":
        return Response(lines, media_type="application/jsonl", headers=headers)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("export.json", orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        z.writestr("export.jsonl", lines)
    headers["Content-Disposition"] = 'attachment; filename="personal-data-export.zip"'
    return Response(buf.getvalue(), media_type="application/zip", headers=headers)


async def erasure(request: Request) -> Response:
    """Erase the subject's personal data in the current state and the history → 200 with a receipt."""
    tenant = http.tenant_of(request)
    subject = request.path_params["subject"]
    p = _require_subject_or_admin(request, tenant, subject, f"erase the data of {subject}")
    ctx = await http.request_context(request)
    by = "the data subject" if p.subject == subject else p.subject
    receipt = await rights.erase_subject(request.app, tenant, subject, by, ctx)
    return _json(receipt, tenant=tenant, headers={"Location": f"{PREFIX}/erasures/{receipt['id']}"})


async def list_erasures(request: Request) -> Response:
    tenant = http.tenant_of(request)
    _require_admin(request, tenant, f"read the erasure records of tenant {tenant or '(default)'}")
    return _json(await rights.erasures_of(request.app, tenant), tenant=tenant)


async def get_erasure(request: Request) -> Response:
    tenant = http.tenant_of(request)
    _require_admin(request, tenant, f"read the erasure records of tenant {tenant or '(default)'}")
    rid = request.path_params["rid"]
    got = [r for r in await rights.erasures_of(request.app, tenant) if r["id"] == rid]
    if not got:
        raise ResourceNotFound(f"no erasure record {rid}")
    return _json(got[0], tenant=tenant)


routes = [
    Route("/purposes", purposes, methods=["GET"]),
    Route("/personal-data", list_rules, methods=["GET"]),
    Route("/personal-data/{type:path}", get_rule, methods=["GET"]),
    Route("/personal-data/{type:path}", put_rule, methods=["PUT"]),
    Route("/personal-data/{type:path}", delete_rule, methods=["DELETE"]),
    Route("/consents", give_consent, methods=["POST"]),
    Route("/consents", list_consents, methods=["GET"]),
    Route("/consents/{cid}", get_consent, methods=["GET"]),
    Route("/consents/{cid}", revoke_consent, methods=["DELETE"]),
    Route("/subjects/{subject:path}/export", export, methods=["GET"]),
    Route("/subjects/{subject:path}/erasure", erasure, methods=["POST"]),
    Route("/erasures", list_erasures, methods=["GET"]),
    Route("/erasures/{rid}", get_erasure, methods=["GET"]),
]
