"""End-to-end properties (Hypothesis) of MIM3 with security on: over random tenants, roles, MIM6 attribute
rules, organisations, offers and agreements (some withdrawn), no retrieval, query, temporal read or notification
returns an entity or attribute the caller may not see; without an agreement, another organisation's data — and
another tenant's — returns nothing.

The oracle below is independent of the platform's code (MIM6's rules come from SEC's generators in
``tests/security_strategies.py``): it handles exactly the policy shapes the generator writes (target = entity
types and optional attributes; action use or read; an optional ``purpose isA`` constraint; optional prohibited
attributes) with plain set arithmetic.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.security_helpers import client, secure_settings, token
from tests.security_strategies import READ_ROLES, RuleSpec, rules_for
from tests.test_notifications import Receiver
from urbanmim.app import create_app
from urbanmim.ngsild.contexts import CORE as CORE_TERMS

_counter = itertools.count()
TENANTS = ("t1", "t2")
ORGS = ("o1", "o2", "o3")
TYPES = ("A", "B")
ATTRS = ("p", "q", "r", "s")
PURPOSES = ("dpv:ResearchAndDevelopment", "dpv:AcademicResearch", "dpv:ServiceProvision", "dpv:Marketing")
# narrower -> broader, for the purposes above (DPV)
BROADER = {"dpv:AcademicResearch": {"dpv:ResearchAndDevelopment"}}
CORE = {"id", "type", "scope", "location", "createdAt", "modifiedAt", "@context"}


@dataclass(frozen=True)
class Ent:
    tenant: str
    n: int
    type: str
    attrs: tuple[tuple[str, int], ...]
    owner: str | None                     # the writing organisation (None: written without one)

    def eid(self, prefix: str) -> str:
        return f"urn:ngsi-ld:{self.type}:{prefix}{self.n}"


@dataclass(frozen=True)
class OfferSpec:
    tenant: str
    provider: str
    types: tuple[str, ...]
    attributes: tuple[str, ...] | None
    action: str                           # use | read
    purpose: str | None                   # a purpose isA constraint, or none
    prohibited: tuple[str, ...]           # attributes prohibited
    withdrawn: bool
    accepted: bool                        # by the caller's organisation
    agreement_withdrawn: bool

    def body(self, prefix: str) -> dict[str, Any]:
        target: dict[str, Any] = {"entityType": list(self.types)}
        if self.attributes is not None:
            target["attributes"] = list(self.attributes)
        perm: dict[str, Any] = {"action": self.action, "target": target}
        if self.purpose:
            perm["constraint"] = [{"leftOperand": "purpose", "operator": "isA", "rightOperand": self.purpose}]
        policy: dict[str, Any] = {"@type": "Offer", "permission": [perm]}
        if self.prohibited:
            policy["prohibition"] = [{"action": "use", "target": {"entityType": list(TYPES),
                                                                  "attributes": list(self.prohibited)}}]
        return {"title": "t", "provider": prefix + self.provider, "policy": policy}


@dataclass
class World:
    entities: list[Ent]
    offers: list[OfferSpec]
    caller_org: str
    roles: dict[str, list[str]]           # tenant -> roles of the caller
    purpose: str | None
    org_tenant: dict[str, str] = field(default_factory=dict)
    rules: dict[str, list[RuleSpec]] = field(default_factory=dict)   # MIM6 attribute rules per tenant


@st.composite
def worlds(draw: Any) -> World:
    ents = []
    for i in range(draw(st.integers(1, 6))):
        attrs = draw(st.dictionaries(st.sampled_from(ATTRS), st.integers(0, 9), min_size=1))
        ents.append(Ent(draw(st.sampled_from(TENANTS)), i, draw(st.sampled_from(TYPES)), tuple(sorted(attrs.items())),
                        draw(st.sampled_from(ORGS + (None,)))))
    offers = []
    owned = [e for e in ents if e.owner is not None]
    mostly = st.sampled_from((True, True, True, False))
    for _ in range(draw(st.integers(0, 4))):
        attrs = draw(st.none() | st.lists(st.sampled_from(ATTRS), min_size=1, max_size=3, unique=True).map(tuple))
        # most offers are about data that exists (its owner, tenant and type), some about anything
        about = draw(st.sampled_from(owned)) if owned and draw(mostly) else None
        tenant = about.tenant if about else draw(st.sampled_from(TENANTS))
        provider = about.owner if about and about.owner else draw(st.sampled_from(ORGS))
        types = draw(st.lists(st.sampled_from(TYPES), min_size=1, unique=True))
        if about and about.type not in types:
            types.append(about.type)
        offers.append(OfferSpec(
            tenant, provider, tuple(types), attrs,
            draw(st.sampled_from(("use", "read"))), draw(st.none() | st.sampled_from(PURPOSES)),
            tuple(draw(st.lists(st.sampled_from(ATTRS), max_size=2, unique=True))),
            not draw(mostly), draw(mostly), not draw(mostly)))
    roles = draw(st.dictionaries(st.sampled_from(TENANTS), st.lists(st.sampled_from(("admin", "reader", "editor")),
                                                                    min_size=1, max_size=1), max_size=2))
    consumers = [o for o in ORGS if o not in {x.provider for x in offers}] or list(ORGS)
    caller = draw(st.sampled_from(consumers)) if draw(mostly) else draw(st.sampled_from(ORGS))
    rules = {t: draw(rules_for(t)) if draw(st.booleans()) else [] for t in TENANTS}
    return World(ents, offers, caller, roles, draw(st.none() | st.sampled_from(PURPOSES)),
                 {o: draw(st.sampled_from(TENANTS)) for o in ORGS}, rules)


def _is_a(purpose: str | None, broader: str) -> bool:
    return purpose is not None and (purpose == broader or broader in BROADER.get(purpose, set()))


def by_roles(w: World, e: Ent) -> tuple[str, set[str]]:
    """MIM6's answer: (abstain | deny | permit, attributes its roles let through) — as SEC's oracle in
    tests/security_strategies.py, but telling "no read role" (abstain) from "denied by a rule" (deny)."""
    roles = set(w.roles.get(e.tenant, [])) & set(READ_ROLES)
    if not roles:
        return "abstain", set()
    seen: set[str] | None = None
    for role in roles:
        matching = [r for r in w.rules.get(e.tenant, []) if r.role == role and r.entity_type in (e.type, "*")]
        if any(r.effect == "deny" for r in matching):
            continue
        vis = set(dict(e.attrs))
        for r in matching:
            vis -= r.hide
            if r.only is not None:
                vis &= r.only
        seen = vis if seen is None else seen | vis
    return ("deny", set()) if seen is None else ("permit", seen)


def oracle(w: World, e: Ent, action: str = "read") -> set[str] | None:
    """The attribute names the caller may see of ``e`` (None: not the entity): MIM6 roles and rules combined
    with MIM3 agreements (visible iff one permits and none denies; attributes: the intersection)."""
    effect, by_role = by_roles(w, e)
    if effect == "deny":
        return None
    shared = by_agreements(w, e, action) if e.owner is not None and e.owner != w.caller_org \
        and "admin" not in w.roles.get(e.tenant, []) else "abstain"
    if shared is None:
        return None
    if shared == "abstain":
        return by_role if effect == "permit" else None
    assert isinstance(shared, set)
    return shared & by_role if effect == "permit" else shared


def by_agreements(w: World, e: Ent, action: str) -> set[str] | None:
    """MIM3's answer for another organisation's entity: the attributes its agreements allow (None: deny)."""
    permitted: set[str] = set()
    prohibited: set[str] = set()
    for o in w.offers:
        if not (o.tenant == e.tenant and o.provider == e.owner and o.accepted and not o.withdrawn
                and not o.agreement_withdrawn and o.provider != w.caller_org):
            continue
        prohibited |= set(o.prohibited)
        if e.type in o.types and (o.action == "use" or action == "read") \
                and (o.purpose is None or _is_a(w.purpose, o.purpose)):
            permitted |= set(ATTRS if o.attributes is None else o.attributes)
    visible = (permitted - prohibited) & set(dict(e.attrs))
    # an agreement that permits only attributes this entity lacks still lets the entity itself through
    if not (permitted - prohibited):
        return None
    return visible


def _attrs(body: dict[str, Any]) -> set[str]:
    return {k for k in body if k not in CORE}


async def _build(app: Any, w: World, prefix: str) -> dict[str, str]:
    names = {t: prefix + t for t in TENANTS}
    for t in TENANTS:
        admin = token(app, {names[t]: ["admin"]}, subject=f"admin-{prefix}")
        async with client(app, admin, tenant=names[t]) as c:     # the tenant exists, even when empty of A and B
            r = await c.post("/entities", json={"id": f"urn:ngsi-ld:Z:{prefix}", "type": "Z"})
            assert r.status_code == 201, r.text
        async with client(app, admin, tenant=names[t], base="/sharing/v1") as c:
            for o in ORGS:
                if w.org_tenant[o] == t:
                    r = await c.post("/organisations", json={"id": prefix + o, "name": o})
                    assert r.status_code == 201, r.text
    for e in w.entities:
        writer = token(app, {names[e.tenant]: ["editor"]}, subject=f"w-{prefix}",
                       org=prefix + e.owner if e.owner else None)
        async with client(app, writer, tenant=names[e.tenant]) as c:
            body: dict[str, Any] = {"id": e.eid(prefix), "type": e.type}
            body.update({a: {"type": "Property", "value": v} for a, v in e.attrs})
            r = await c.post("/entities", json=body)
            assert r.status_code == 201, r.text
    consumer = token(app, {}, subject=f"consumer-{prefix}", org=prefix + w.caller_org)
    for o in w.offers:
        provider = token(app, {names[o.tenant]: ["editor"]}, subject=f"p-{prefix}", org=prefix + o.provider)
        async with client(app, provider, tenant=names[o.tenant], base="/sharing/v1") as c:
            r = await c.post("/offers", json=o.body(prefix))
            assert r.status_code == 201, r.text
            oid = r.json()["id"]
        if o.accepted and o.provider != w.caller_org:
            async with client(app, consumer, tenant=names[o.tenant], base="/sharing/v1") as c:
                r = await c.post(f"/offers/{oid}/accept")
                assert r.status_code == 201, r.text
                if o.agreement_withdrawn:
                    r = await c.post(f"/agreements/{r.json()['id']}/withdraw")
                    assert r.status_code == 200, r.text
        if o.withdrawn:
            async with client(app, provider, tenant=names[o.tenant], base="/sharing/v1") as c:
                assert (await c.post(f"/offers/{oid}/withdraw")).status_code == 200
    for t in TENANTS:             # MIM6 rules last (they may keep the writers above from writing attributes)
        admin = token(app, {names[t]: ["admin"]}, subject=f"admin-{prefix}")
        async with client(app, admin, tenant=names[t], base="/security/v1") as c:
            for rule in w.rules[t]:
                r = await c.put(f"/rules/{rule.name}", json=rule.body())
                assert r.status_code == 201, r.text
    return names


def _caller(app: Any, w: World, names: dict[str, str], prefix: str) -> str:
    return token(app, {names[t]: r for t, r in w.roles.items()}, subject=f"caller-{prefix}",
                 org=prefix + w.caller_org, purpose=w.purpose)


async def _check_reads(app: Any, w: World, prefix: str) -> None:
    names = await _build(app, w, prefix)
    tok = _caller(app, w, names, prefix)
    for t in TENANTS:
        expected = {e.eid(prefix): oracle(w, e) for e in w.entities if e.tenant == t}
        visible = {i: a for i, a in expected.items() if a is not None}
        for e in w.entities:      # what the examples exercised (--hypothesis-show-statistics)
            if e.tenant == t and e.owner not in (None, w.caller_org) and "admin" not in w.roles.get(t, []):
                seen = expected[e.eid(prefix)]
                event("another organisation's entity: " + ("hidden" if seen is None else
                                                           "shown whole" if seen == set(dict(e.attrs)) else
                                                           "shown in part"))
        async with client(app, tok, tenant=names[t]) as c:
            for eid, want in expected.items():
                r = await c.get(f"/entities/{eid}")
                if want is None:
                    assert r.status_code == 404, (eid, r.text)
                else:
                    assert r.status_code == 200 and _attrs(r.json()) == want, (eid, r.json(), want)
            r = await c.get("/entities", params={"type": "A,B", "limit": 100, "count": "true"})
            assert r.status_code == 200, r.text
            assert {b["id"]: _attrs(b) for b in r.json()} == visible
            assert int(r.headers["NGSILD-Results-Count"]) == len(visible)
            r = await c.get("/temporal/entities", params={"type": "A,B", "timerel": "after",
                                                          "timeAt": "2000-01-01T00:00:00Z", "limit": 100})
            assert r.status_code == 200, r.text
            temporal = {b["id"]: _attrs(b) for b in r.json()}
            assert set(temporal) <= set(visible)
            for eid, attrs in temporal.items():
                assert attrs <= visible[eid], (eid, attrs, visible[eid])
            if not w.roles.get(t) and not any(o.tenant == t and o.accepted and not o.withdrawn
                                              and not o.agreement_withdrawn for o in w.offers):
                assert visible == {} and r.json() == []        # no role, no agreement: nothing at all


@pytest.mark.slow
def test_no_read_path_shows_more_than_agreements_allow(tmp_path: Path) -> None:
    with asyncio.Runner() as runner:
        app = create_app(secure_settings(str(tmp_path / "share.db")))
        cm = app.router.lifespan_context(app)
        runner.run(cm.__aenter__())
        try:
            @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
            @given(world=worlds())
            def check(world: World) -> None:
                runner.run(_check_reads(app, world, f"s{next(_counter)}"))
            check()
        finally:
            runner.run(cm.__aexit__(None, None, None))


async def _check_notifications(app: Any, w: World, prefix: str, receiver: Receiver) -> None:
    names = await _build(app, w, prefix)
    tok = _caller(app, w, names, prefix)
    for t in TENANTS:
        before = len(receiver.got)
        async with client(app, tok, tenant=names[t]) as c:
            r = await c.post("/subscriptions", json={"type": "Subscription", "entities": [{"type": "A"}, {"type": "B"}],
                                                     "notification": {"endpoint": {"uri": receiver.url}}})
            if r.status_code != 201:
                assert r.status_code in (401, 403), r.text
                continue
        ents = [e for e in w.entities if e.tenant == t]
        for e in ents:       # touch every entity as the platform: one notification each, if visible
            frag = {"attrs": {CORE_TERMS.expand(a): [{"type": "Property", "value": v + 1}] for a, v in e.attrs}}
            await app.state.entities.update_attrs(names[t], e.eid(prefix), frag)
        # notifications are "distribute": an offer permitting only "read" does not cover them
        expected = {e.eid(prefix): oracle(w, e, "distribute") for e in ents}
        must = sum(1 for v in expected.values() if v is not None)
        deadline = asyncio.get_running_loop().time() + 5
        while asyncio.get_running_loop().time() < deadline:
            if len([d for n in receiver.got[before:] for d in n["data"]]) >= must:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        got = [d for n in receiver.got[before:] for d in n["data"]]
        for d in got:
            want = expected.get(d["id"])
            assert want is not None, ("notified an invisible entity", d)
            assert _attrs(d) <= want, (d, want)
        assert {d["id"] for d in got} == {i for i, v in expected.items() if v is not None}


@pytest.mark.slow
def test_no_notification_shows_more_than_agreements_allow(tmp_path: Path) -> None:
    receiver = Receiver().start()
    with asyncio.Runner() as runner:
        app = create_app(secure_settings(str(tmp_path / "sharen.db")))
        cm = app.router.lifespan_context(app)
        runner.run(cm.__aenter__())
        try:
            @settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
            @given(world=worlds())
            def check(world: World) -> None:
                runner.run(_check_notifications(app, world, f"n{next(_counter)}", receiver))
            check()
        finally:
            runner.run(cm.__aexit__(None, None, None))
            receiver.stop()
