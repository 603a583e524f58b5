"""MIM3 operations: register organisations, publish / accept / withdraw, explain a decision.

The ``/sharing/v1`` routes only translate HTTP to these calls. Who may do what is decided
here, against the caller's :class:`Principal`; the reserved entities are then written through
``app.state.entities`` *as the platform* (SYSTEM) — the only principal the sharing decider
lets write them — so an editor cannot forge an offer or an agreement through NGSI-LD.

* an organisation is registered by an admin of the tenant it belongs to;
* an offer is published by a member of the provider organisation holding ``editor`` or
  ``admin`` in the tenant (the data's tenant), and withdrawn by such a member or a tenant admin;
* any member of a registered organisation accepts an offer addressed to it (or to everyone),
  also from another tenant; an agreement is withdrawn by either party or a tenant admin.

With security off the caller is the platform itself: it may act for any organisation, named
in the body (``provider`` / ``consumer``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from urbanmim.errors import BadRequestData, Forbidden, ResourceNotFound, Unauthorized
from urbanmim.ngsild.entity import Entity
from urbanmim.security.principal import SYSTEM, Principal, use_principal
from urbanmim.service.entities import EntityService, outcome_error
from urbanmim.sharing.decider import SharingDecider, not_counted
from urbanmim.sharing.odrl import Policy, visible_attributes
from urbanmim.sharing.odrl_parse import ORG_ID, parse_datetime, parse_policy
from urbanmim.sharing.registry import (
    A_LAST_READ,
    A_READ_COUNT,
    A_STATUS,
    A_WITHDRAWN_AT,
    AGREEMENT_PREFIX,
    OFFER_PREFIX,
    Agreement,
    Offer,
    Organisation,
    SharingRegistry,
    attr_value,
    now_iso,
)
from urbanmim.store.base import UNCHANGED, Mutation

META_STRINGS = ("title", "description")
META_LISTS = ("theme", "keyword")
MAX_TEXT = 4000


@contextlib.contextmanager
def _as_platform() -> Iterator[None]:
    with use_principal(SYSTEM):
        yield


def _authenticated(p: Principal) -> None:
    if not p.authenticated:
        raise Unauthorized("authentication is required")


def _acting_org(p: Principal, requested: Any, what: str, may_name_other: bool) -> str:
    """The organisation the caller acts for: its own (token claim ``org``), or the one named in the
    body when the caller is the platform or ``may_name_other`` (a tenant admin)."""
    _authenticated(p)
    if requested is not None and (not isinstance(requested, str) or not ORG_ID.match(requested)):
        raise BadRequestData(f"{what} must be an organisation id")
    if p.system or may_name_other:
        org = requested or p.organisation
    else:
        if requested is not None and requested != p.organisation:
            raise Forbidden(f"{p.subject} acts for organisation {p.organisation or '(none)'}, not {requested}")
        org = p.organisation
    if not org:
        raise (BadRequestData(f"name the {what} organisation") if p.system or may_name_other else
               Forbidden(f"{p.subject} has no organisation (token claim 'org')"))
    return org


def check_meta(body: dict[str, Any]) -> dict[str, Any]:
    """The catalogue description of an offer: title (required), description, theme (IRIs),
    keyword, spatial (a GeoJSON geometry), temporal (``{"start": ..., "end": ...}``)."""
    meta: dict[str, Any] = {}
    for k in META_STRINGS:
        v = body.get(k)
        if v is None:
            continue
        if not isinstance(v, str) or not v.strip() or len(v) > MAX_TEXT:
            raise BadRequestData(f"{k} must be a non-empty string of at most {MAX_TEXT} characters")
        meta[k] = v
    if "title" not in meta:
        raise BadRequestData("title is required (it names the dataset in the catalogue)")
    for k in META_LISTS:
        v = body.get(k)
        if v is None:
            continue
        v = [v] if isinstance(v, str) else v
        if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
            raise BadRequestData(f"{k} must be a string or a list of strings")
        if k == "theme" and not all(":" in x for x in v):
            raise BadRequestData("theme must be IRIs (e.g. http://publications.europa.eu/resource/authority/"
                                 "data-theme/EDUC)")
        meta[k] = v
    if body.get("spatial") is not None:
        from urbanmim.ngsild.geo import validate_geometry
        try:
            validate_geometry(body["spatial"])
        except TypeError:           # e.g. {"type": []}: validate_geometry assumes a hashable type
            raise BadRequestData("spatial must be a GeoJSON geometry (its type a string)") from None
        meta["spatial"] = body["spatial"]
    if body.get("temporal") is not None:
        t = body["temporal"]
        if not isinstance(t, dict) or not t or not set(t) <= {"start", "end"}:
            raise BadRequestData('temporal must be {"start": "<dateTime>", "end": "<dateTime>"} (one may be omitted)')
        for k, v in t.items():
            parse_datetime(v, f"temporal.{k}")
        meta["temporal"] = t
    return meta


class SharingService:
    """``app.state.sharing_service``: the operations behind ``/sharing/v1``."""

    def __init__(self, registry: SharingRegistry, entities: EntityService, decider: SharingDecider,
                 access: Callable[[], Any]):
        self.registry = registry
        self.entities = entities
        self.decider = decider
        self.access = access                    # -> app.state.access (or None)

    # ---- writing reserved entities ----------------------------------------------------------------------
    async def _put(self, tenant: str, ent: Entity) -> None:
        with _as_platform():
            (out,) = await self.entities.batch(tenant, [Mutation(ent["id"],
                                                                 EntityService.replace_fn(ent, must_exist=False))])
        if out.error is not None:
            raise outcome_error(out)

    async def _patch(self, tenant: str, eid: str, attrs: dict[str, Any]) -> None:
        frag = {"attrs": {k: [{"type": "Property", "value": v}] for k, v in attrs.items()}}
        with _as_platform():
            (out,) = await self.entities.batch(tenant, [Mutation(eid, EntityService.merge_fn(eid, frag))])
        if out.error is not None:
            raise outcome_error(out)

    # ---- organisations ----------------------------------------------------------------------------------
    async def register_org(self, p: Principal, tenant: str, body: dict[str, Any]) -> Organisation:
        _authenticated(p)
        if not p.has_role(tenant, "admin"):
            raise Forbidden(f"only an admin of tenant {tenant or '(default)'} registers organisations in it")
        oid, name = body.get("id"), body.get("name")
        if not isinstance(oid, str) or not ORG_ID.match(oid):
            raise BadRequestData("id must be an organisation id ([A-Za-z0-9][A-Za-z0-9._:-]*, the token claim 'org')")
        if not isinstance(name, str) or not name.strip():
            raise BadRequestData("name is required")
        for k in ("description", "homepage"):
            if body.get(k) is not None and not isinstance(body[k], str):
                raise BadRequestData(f"{k} must be a string")
        org = Organisation(oid, tenant, name, body.get("description"), body.get("homepage"))
        await self._put(tenant, org.to_entity())
        return self.registry.orgs.get(oid, org)

    def org(self, oid: str) -> Organisation:
        org = self.registry.orgs.get(oid)
        if org is None:
            raise ResourceNotFound(f"no organisation {oid}")
        return org

    # ---- offers -------------------------------------------------------------------------------------------
    async def publish(self, p: Principal, tenant: str, body: dict[str, Any], expand: Callable[[str], str],
                      context: Any) -> Offer:
        admin = p.has_role(tenant, "admin")
        provider = _acting_org(p, body.get("provider"), "provider", admin)
        if not (p.system or p.has_role(tenant, "admin", "editor")):
            raise Forbidden(f"publishing an offer needs the editor or admin role in tenant {tenant or '(default)'}")
        self.org(provider)
        doc = body.get("policy")
        if not isinstance(doc, dict):
            raise BadRequestData("policy (an ODRL Offer) is required")
        meta = check_meta(body)
        oid = OFFER_PREFIX + uuid.uuid4().hex
        policy = parse_policy(doc, expand, uid=oid)
        if policy.type == "Agreement":
            raise BadRequestData("policy.@type: publish an Offer (or Set); agreements come from accepting it")
        if policy.assigner is not None and policy.assigner != provider:
            raise BadRequestData(f"policy.assigner: the offer's assigner must be the provider {provider}")
        if policy.assignee is not None:
            self.org(policy.assignee)
        policy = dataclasses.replace(policy, type="Offer", assigner=provider)
        offer = Offer(oid, tenant, provider, policy, "active", meta, context, p.subject)
        await self._put(tenant, offer.to_entity())
        return self.registry.tenant(tenant).offers.get(oid, offer)

    def offer(self, tenant: str, oid: str) -> Offer:
        o = self.registry.tenant(tenant).offers.get(oid)
        if o is None:
            raise ResourceNotFound(f"no offer {oid} in tenant {tenant or '(default)'}")
        return o

    async def withdraw_offer(self, p: Principal, tenant: str, oid: str) -> Offer:
        _authenticated(p)
        o = self.offer(tenant, oid)
        if not (p.system or p.has_role(tenant, "admin")
                or (p.organisation == o.provider and p.has_role(tenant, "editor"))):
            raise Forbidden(f"only the provider {o.provider} (editor) or a tenant admin withdraws this offer")
        if o.active:
            await self._patch(tenant, oid, {A_STATUS: "withdrawn", A_WITHDRAWN_AT: now_iso()})
        return self.offer(tenant, oid)

    # ---- agreements --------------------------------------------------------------------------------------
    async def accept(self, p: Principal, tenant: str, oid: str, body: dict[str, Any]) -> tuple[Agreement, bool]:
        """(the agreement, created?) — accepting again returns the agreement in force."""
        o = self.offer(tenant, oid)
        consumer = _acting_org(p, body.get("consumer"), "consumer", False)
        self.org(consumer)
        if not o.active:
            raise BadRequestData(f"offer {oid} has been withdrawn")
        if consumer == o.provider:
            raise BadRequestData("an organisation does not accept its own offer")
        if o.policy.assignee is not None and o.policy.assignee != consumer:
            raise Forbidden(f"offer {oid} is addressed to {o.policy.assignee} only")
        for a in self.registry.agreements_of(tenant, consumer):
            if a.offer_id == oid and a.consumer == consumer and a.status == "active":
                return a, False
        aid = AGREEMENT_PREFIX + uuid.uuid4().hex
        policy: Policy = dataclasses.replace(o.policy, uid=aid, type="Agreement", assignee=consumer)
        a = Agreement(aid, tenant, oid, o.provider, consumer, policy, now_iso(), p.subject)
        await self._put(tenant, a.to_entity())
        return self.agreement(p, tenant, aid), True

    def agreement(self, p: Principal, tenant: str, aid: str) -> Agreement:
        a = self.registry.tenant(tenant).agreements.get(aid)
        if a is None or not self.may_see(p, tenant, a):
            raise ResourceNotFound(f"no agreement {aid} in tenant {tenant or '(default)'}")
        return a

    @staticmethod
    def may_see(p: Principal, tenant: str, a: Agreement) -> bool:
        return p.system or p.has_role(tenant, "admin") or p.organisation in (a.provider, a.consumer)

    def agreements(self, p: Principal, tenant: str) -> list[Agreement]:
        _authenticated(p)
        return sorted((a for a in self.registry.agreements_of(tenant) if self.may_see(p, tenant, a)),
                      key=lambda a: a.accepted_at)

    async def withdraw_agreement(self, p: Principal, tenant: str, aid: str) -> Agreement:
        _authenticated(p)
        a = self.agreement(p, tenant, aid)
        if a.status == "active":
            await self._patch(tenant, aid, {A_STATUS: "withdrawn", A_WITHDRAWN_AT: now_iso()})
        return self.agreement(p, tenant, aid)

    def agreement_json(self, a: Agreement) -> dict[str, Any]:
        return {"id": a.id, "tenant": a.tenant, "offer": a.offer_id, "provider": a.provider,
                "consumer": a.consumer, "status": a.status, "inForce": self.registry.is_active(a),
                "acceptedAt": a.accepted_at, "acceptedBy": a.accepted_by, "withdrawnAt": a.withdrawn_at,
                "duties": list(a.policy.duties), "reads": self.registry.reads(a),
                "lastReadAt": self.registry.last_read.get((a.tenant, a.id), a.last_read_at),
                "policy": a.policy.to_json()}

    # ---- read counts ----------------------------------------------------------------------------------------
    async def flush_counts(self) -> int:
        """Add the reads counted in memory to each agreement's stored ``readCount``; returns how many."""
        done = 0
        for tenant, aid, n, last in self.registry.take_pending():
            def fn(cur: Entity | None, n: int = n, last: str | None = last, aid: str = aid,
                   tenant: str = tenant) -> tuple[Any, Any]:
                if cur is None:
                    return UNCHANGED, None
                old = attr_value(cur, A_READ_COUNT)
                total = (old if isinstance(old, int) else 0) + n
                self.registry.storing(tenant, aid, total)
                frag = {"attrs": {A_READ_COUNT: [{"type": "Property", "value": total}]}}
                if last:
                    frag["attrs"][A_LAST_READ] = [{"type": "Property", "value": last}]
                return EntityService.merge_fn(aid, frag)(cur)
            ok = False
            try:
                with _as_platform():
                    (out,) = await self.entities.batch(tenant, [Mutation(aid, fn)])
                ok = out.error is None
            finally:
                self.registry.stored(tenant, aid, ok)
            if ok:
                done += n
        return done

    # ---- explain ----------------------------------------------------------------------------------------------
    async def explain(self, p: Principal, tenant: str, body: dict[str, Any],
                      expand: Callable[[str], str], compact: Callable[[str], str]) -> dict[str, Any]:
        """Why ``p`` (or, for an admin, the principal described in the body) sees what it sees of an entity."""
        eid = body.get("entity")
        if not isinstance(eid, str) or not eid:
            raise BadRequestData("entity (an entity id) is required")
        who = p
        if body.get("principal") is not None:
            if not (p.system or p.has_role(tenant, "admin")):
                raise Forbidden("only a tenant admin explains the access of another principal")
            who = _described_principal(body["principal"])
        if body.get("purpose") is not None:
            if not isinstance(body["purpose"], str):
                raise BadRequestData("purpose must be a DPV purpose (string)")
            who = dataclasses.replace(who, purpose=body["purpose"])
        attr = body.get("attribute")
        if attr is not None and not isinstance(attr, str):
            raise BadRequestData("attribute must be an attribute name")
        entity = await self.entities.store.get(tenant, eid)
        if entity is None:
            raise ResourceNotFound(f"entity {eid} not found")
        access = self.access()
        out: dict[str, Any] = {"entity": eid, "tenant": tenant, "principal": who.to_json(),
                               "owner": self.decider.owner_of(entity)}
        with not_counted():
            if access is None or not access.enabled:
                out["security"] = "off"
                visible: Entity | None = entity
                out["decisions"] = [{"effect": "permit", "source": "access", "reason": "security is off"}]
            else:
                visible = access.visible(who, tenant, entity)
                out["decisions"] = [d.to_json() for d in access.explain(who, tenant, entity)]
            owner = out["owner"]
            if owner is not None and who.organisation != owner:
                res, agreements = self.decider.evaluate(who, tenant, entity, owner)
                out["agreements"] = [a.id for a in agreements]
                if res is not None:
                    out["sharing"] = _compact_result(res.to_json(), compact)
                    out["sharing"]["visibleAttributes"] = [compact(a) for a in visible_attributes(res, entity)]
        out["visible"] = visible is not None
        out["visibleAttributes"] = sorted(compact(a) for a in (visible or {}).get("attrs", {}))
        if attr is not None:
            iri = expand(attr)
            out["attribute"] = {"name": attr, "present": iri in entity["attrs"],
                                "visible": visible is not None and iri in visible["attrs"]}
        for d in out["decisions"]:
            for k in ("hidden", "only"):
                if k in d:
                    d[k] = sorted(compact(a) for a in d[k])
        return out


def _described_principal(raw: Any) -> Principal:
    """The principal an admin asks about, checked member by member (``Principal.from_json`` trusts its
    input: a list of roles or a numeric organisation would fail deep in the deciders as a 500)."""
    shape = "principal must be an object {subject, roles: {tenant: [role]}, organisation, purpose}"
    if not isinstance(raw, dict):
        raise BadRequestData(shape)
    unknown = set(raw) - {"subject", "roles", "organisation", "purpose", "client"}
    if unknown:
        raise BadRequestData(f"principal: unknown member(s) {', '.join(sorted(map(str, unknown)))}; {shape}")
    for k in ("subject", "organisation", "purpose", "client"):
        if raw.get(k) is not None and not isinstance(raw[k], str):
            raise BadRequestData(f"principal.{k} must be a string")
    roles = raw.get("roles") or {}
    if not isinstance(roles, dict) or not all(isinstance(r, list) and all(isinstance(x, str) for x in r)
                                              for r in roles.values()):
        raise BadRequestData("principal.roles must be an object of tenant names to lists of roles, e.g. "
                             '{"culture": ["reader"]}')
    return Principal.from_json(raw)


def _compact_result(res: dict[str, Any], compact: Callable[[str], str]) -> dict[str, Any]:
    for k in ("attributes", "hidden"):
        if res.get(k) is not None:
            res[k] = sorted(compact(a) for a in res[k])
    for k in ("permittedBy", "prohibitedBy", "notSatisfied"):
        for o in res.get(k, []):
            if o.get("attributes") is not None:
                o["attributes"] = sorted(compact(a) for a in o["attributes"])
    return res
