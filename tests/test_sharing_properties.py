"""Hypothesis properties of the ODRL evaluator and of the sharing decider over random policies, entities,
requests and agreement states (no server: the model and the decider directly)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from urbanmim.security.access import AccessControl, Decision, filter_entity
from urbanmim.security.principal import Principal
from urbanmim.sharing import purposes
from urbanmim.sharing.decider import SharingDecider
from urbanmim.sharing.odrl import Policy, Request, Result, Rule, evaluate
from urbanmim.sharing.odrl_parse import parse_asset, parse_constraint, parse_policy
from urbanmim.sharing.registry import Agreement, Offer, SharingRegistry

V = "https://uri.etsi.org/ngsi-ld/default-context/"
LOC = "https://uri.etsi.org/ngsi-ld/location"
TYPES = ["Opinion", "Artwork", "Visit"]
ATTRS = ["rating", "comment", "author", "score"]
PURPOSES = ["dpv:ResearchAndDevelopment", "dpv:AcademicResearch", "dpv:CommercialResearch", "dpv:Marketing",
            "dpv:DirectMarketing", "dpv:ServiceProvision", "dpv:ServiceOptimisation", "dpv:PublicBenefit"]
PAST, FUTURE = "2000-01-01T00:00:00Z", "2100-01-01T00:00:00Z"
AREA = "POLYGON((0 0,10 0,10 10,0 10,0 0))"
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def expand(term: str) -> str:
    return term if ":" in term else V + term


# ---- strategies ------------------------------------------------------------------------------------------
@st.composite
def entities(draw: Any) -> dict[str, Any]:
    t = draw(st.sampled_from(TYPES))
    names = draw(st.lists(st.sampled_from(ATTRS), min_size=1, unique=True))
    attrs: dict[str, Any] = {V + a: [{"type": "Property", "value": 1}] for a in names}
    if draw(st.booleans()):
        lon, lat = draw(st.floats(-5, 15)), draw(st.floats(-5, 15))
        attrs[LOC] = [{"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}]
    return {"id": f"urn:ngsi-ld:{t}:{draw(st.integers(0, 3))}", "type": [V + t], "attrs": attrs}


@st.composite
def targets(draw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    kind = draw(st.sampled_from(["type", "pattern", "both"]))
    if kind in ("type", "both"):
        out["entityType"] = draw(st.lists(st.sampled_from(TYPES), min_size=1, max_size=2, unique=True))
    if kind in ("pattern", "both"):
        out["idPattern"] = draw(st.sampled_from([":0$", ":[12]$", "Opinion", "^urn:"]))
    if draw(st.booleans()):
        out["attributes"] = draw(st.lists(st.sampled_from(ATTRS), min_size=1, max_size=3, unique=True))
    return out


def atomic_constraints() -> st.SearchStrategy[dict[str, Any]]:
    def c(left: str, op: str, right: Any) -> dict[str, Any]:
        return {"leftOperand": left, "operator": op, "rightOperand": right}
    return st.one_of(
        st.builds(lambda op, p: c("purpose", op, p), st.sampled_from(["eq", "neq", "isA"]), st.sampled_from(PURPOSES)),
        st.builds(lambda op, ps: c("purpose", op, ps), st.sampled_from(["isAnyOf", "isNoneOf"]),
                  st.lists(st.sampled_from(PURPOSES), min_size=1, max_size=3, unique=True)),
        st.builds(lambda op, t: c("dateTime", op, t), st.sampled_from(["lt", "lteq", "gt", "gteq", "neq"]),
                  st.sampled_from([PAST, FUTURE])),
        st.builds(lambda op, n: c("count", op, n), st.sampled_from(["lt", "lteq", "gt", "gteq", "eq", "neq"]),
                  st.integers(0, 5)),
        st.just(c("spatial", "isPartOf", AREA)),
    )


def constraints() -> st.SearchStrategy[dict[str, Any]]:
    return st.recursive(atomic_constraints(), lambda inner: st.builds(
        lambda op, items: {op: items}, st.sampled_from(["and", "or", "xone"]),
        st.lists(inner, min_size=2, max_size=3)), max_leaves=4)


@st.composite
def rules(draw: Any, kind: str) -> dict[str, Any]:
    r: dict[str, Any] = {"target": draw(targets()), "action": draw(st.sampled_from(["use", "read", "distribute",
                                                                                      "aggregate"]))}
    cons = draw(st.lists(constraints(), max_size=2))
    if cons:
        r["constraint"] = cons
    if kind == "permission" and draw(st.booleans()):
        r["duty"] = [{"action": draw(st.sampled_from(["attribute", "inform"]))}]
    return r


@st.composite
def policies(draw: Any, uid: str | None = None) -> Policy:
    doc = {"@type": "Agreement", "uid": uid or f"urn:p:{draw(st.integers(0, 999))}", "assigner": "fa",
           "assignee": "fb", "permission": draw(st.lists(rules("permission"), min_size=1, max_size=3)),
           "prohibition": draw(st.lists(rules("prohibition"), max_size=2))}
    return parse_policy(doc, expand)


@st.composite
def requests(draw: Any) -> Request:
    return Request(action=draw(st.sampled_from(["read", "distribute", "aggregate"])),
                   purpose=draw(st.one_of(st.none(), st.sampled_from(PURPOSES))),
                   at=datetime(2025, 7, 1, tzinfo=UTC),
                   counts={f"urn:p:{i}": draw(st.integers(0, 6)) for i in range(3)})


def seen(res: Result, entity: dict[str, Any]) -> frozenset[str]:
    """The attributes a result lets through (what the caller would see)."""
    if res.effect != "permit":
        return frozenset()
    return frozenset(a for a in entity["attrs"] if a not in res.hidden
                     and (res.attributes is None or a in res.attributes))


def with_uid(p: Policy, uid: str) -> Policy:
    import dataclasses
    return dataclasses.replace(p, uid=uid)


# ---- evaluator properties ------------------------------------------------------------------------------------
@SETTINGS
@given(entities(), requests())
def test_default_deny_without_policies(entity: dict[str, Any], req: Request) -> None:
    assert evaluate([], entity, req).effect == "deny"


@SETTINGS
@given(st.lists(policies(), max_size=3), entities(), requests(), st.sampled_from(["use", "read", "distribute",
                                                                                  "aggregate"]))
def test_an_unconditional_whole_entity_prohibition_always_wins(ps: list[Policy], entity: dict[str, Any],
                                                               req: Request, action: str) -> None:
    t = entity["type"][0].removeprefix(V)
    ban = parse_policy({"@type": "Set", "uid": "urn:ban", "permission": [{"target": "urn:none", "action": "read"}],
                        "prohibition": [{"target": {"entityType": t}, "action": action}]}, expand)
    res = evaluate([*ps, ban], entity, req)
    if req.action in {"use": {"read", "distribute", "aggregate"}}.get(action, {action}):
        assert res.effect == "deny" and seen(res, entity) == frozenset()
        assert not res.permitted_by or "prohibitions win" in res.reason
    else:
        assert seen(res, entity) == seen(evaluate(ps, entity, req), entity)


@SETTINGS
@given(st.lists(policies(), max_size=3), policies(uid="urn:p:extra"), entities(), requests())
def test_adding_a_permission_never_removes_access(ps: list[Policy], extra: Policy, entity: dict[str, Any],
                                                  req: Request) -> None:
    more = with_uid(extra, "urn:p:extra")
    import dataclasses
    only_perms = dataclasses.replace(more, prohibitions=())
    assert seen(evaluate(ps, entity, req), entity) <= seen(evaluate([*ps, only_perms], entity, req), entity)


@SETTINGS
@given(st.lists(policies(), max_size=3), policies(), entities(), requests())
def test_adding_a_prohibition_never_adds_access(ps: list[Policy], extra: Policy, entity: dict[str, Any],
                                                req: Request) -> None:
    import dataclasses
    only_prohibitions = dataclasses.replace(with_uid(extra, "urn:p:ban"),
                                            permissions=(Rule("permission", "read", parse_asset("urn:none", "t",
                                                                                                expand)),))
    assert seen(evaluate([*ps, only_prohibitions], entity, req), entity) <= seen(evaluate(ps, entity, req), entity)


@SETTINGS
@given(st.lists(policies(), min_size=1, max_size=3), entities(), requests())
def test_a_constraint_failing_request_is_never_permitted(ps: list[Policy], entity: dict[str, Any],
                                                         req: Request) -> None:
    """Give every permission a constraint the request fails (a period that is over): never permitted."""
    import dataclasses
    over = parse_constraint({"leftOperand": "dateTime", "operator": "lt", "rightOperand": PAST}, "c")
    failing = [dataclasses.replace(p, permissions=tuple(dataclasses.replace(r, constraints=(*r.constraints, over))
                                                        for r in p.permissions)) for p in ps]
    res = evaluate(failing, entity, req)
    assert res.effect == "deny" and not res.permitted_by


@SETTINGS
@given(st.lists(policies(), max_size=3), entities(), requests())
def test_visible_is_permitted_minus_prohibited_and_explained(ps: list[Policy], entity: dict[str, Any],
                                                            req: Request) -> None:
    res = evaluate(ps, entity, req)
    vis = seen(res, entity)
    if res.effect == "permit":
        assert res.permitted_by and res.reason.startswith("permitted by")
        for a in vis:      # every visible attribute is covered by a satisfied permission ...
            assert any(o.attributes is None or a in o.attributes for o in res.permitted_by)
        for o in res.prohibited_by:    # ... and by no applicable prohibition
            assert o.attributes is not None and not (vis & o.attributes)
    else:
        assert vis == frozenset() and res.reason
        assert not res.permitted_by or res.prohibited_by


@SETTINGS
@given(policies())
def test_normalised_policies_round_trip(p: Policy) -> None:
    assert parse_policy(p.to_json()).to_json() == p.to_json()


@SETTINGS
@given(st.sampled_from(PURPOSES), st.sampled_from(PURPOSES))
def test_narrower_purpose_satisfies_broader(a: str, b: str) -> None:
    assert purposes.is_a(a, a)
    if purposes.is_a(a, b) and purposes.is_a(b, a):
        assert a == b
    if purposes.is_a(a, b):
        p = parse_policy({"@type": "Set", "uid": "u", "permission": [{"target": "urn:x", "action": "read",
                          "constraint": [{"leftOperand": "purpose", "operator": "isA", "rightOperand": b}]}]})
        ent = {"id": "urn:x", "type": [V + "T"], "attrs": {}}
        assert evaluate([p], ent, Request(purpose=a)).effect == "permit"


# ---- the decider over random agreement states --------------------------------------------------------------
ORGS = ["fa", "fb", "fc"]


@st.composite
def worlds(draw: Any) -> tuple[SharingRegistry, list[tuple[str, str, Policy, bool, bool]]]:
    """A registry with random offers/agreements between organisations, some withdrawn."""
    reg = SharingRegistry()
    made = []
    for i in range(draw(st.integers(0, 4))):
        provider, consumer = draw(st.sampled_from([(a, b) for a in ORGS for b in ORGS if a != b]))
        p = draw(policies())
        offer_active, agreement_active = (draw(st.sampled_from((True, True, False))),
                                          draw(st.sampled_from((True, True, False))))
        oid, aid = f"urn:ngsi-ld:SharingOffer:{i}", f"urn:ngsi-ld:SharingAgreement:{i}"
        import dataclasses
        offer_pol = dataclasses.replace(p, uid=oid, type="Offer", assigner=provider, assignee=None)
        agr_pol = dataclasses.replace(p, uid=aid, type="Agreement", assigner=provider, assignee=consumer)
        offer = Offer(oid, "t", provider, offer_pol, "active" if offer_active else "withdrawn")
        agreement = Agreement(aid, "t", oid, provider, consumer, agr_pol, "2025-01-01",
                              status="active" if agreement_active else "withdrawn")
        reg.apply("t", oid, offer.to_entity())            # as the store's change listener would
        reg.apply("t", aid, agreement.to_entity())
        made.append((provider, consumer, agr_pol, offer_active, agreement_active))
    return reg, made


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds(), st.lists(entities(), min_size=1, max_size=4), st.sampled_from(ORGS + [None]), st.sampled_from(ORGS),
       st.booleans(), st.one_of(st.none(), st.sampled_from(PURPOSES)), st.data())
def test_decider_permits_only_through_agreements_in_force(world: Any, ents: list[dict[str, Any]], org: str | None,
                                                          owner: str, reader_role: bool, purpose: str | None,
                                                          data: st.DataObject) -> None:
    reg, made = world
    if made and data.draw(st.sampled_from((True, True, False)), label="parties of an agreement"):
        owner, org = data.draw(st.sampled_from([(m[0], m[1]) for m in made]), label="owner, caller")
    decider = SharingDecider(reg, owner_of=lambda e: owner)      # one decider: its decision cache is exercised
    for entity in ents + ents:
        _check_decider(decider, world, entity, org, owner, reader_role, purpose)


def _check_decider(decider: SharingDecider, world: Any, entity: dict[str, Any], org: str | None, owner: str,
                   reader_role: bool, purpose: str | None) -> None:
    _, made = world
    roles = {"t": frozenset({"reader"})} if reader_role else {}
    p = Principal("u", roles, organisation=org, purpose=purpose)
    d = decider.read(p, "t", entity)
    if org == owner:
        assert d.effect == "abstain"
        return
    in_force = [pol for prov, cons, pol, o_ok, a_ok in made if prov == owner and cons == org and o_ok and a_ok]
    expected = evaluate(in_force, entity, Request(purpose=purpose)) if in_force else None
    if expected is None or expected.effect == "deny":
        assert d.effect == "deny"                      # withdrawn / no agreement / refused → nothing
    else:
        assert d.effect == "permit" and d.only == expected.attributes and d.hidden == expected.hidden
    # combined with a role decider that permits everything (a reader of the tenant), what is visible is
    # never more than what the agreements in force allow
    ac = AccessControl(True, [_PermitAll(), decider])
    vis = ac.visible(p, "t", entity)
    if d.effect == "deny":
        assert vis is None
    elif vis is not None:
        assert expected is not None
        allowed = seen(expected, entity) | ({LOC} & entity["attrs"].keys())
        assert set(vis["attrs"]) <= allowed
        assert vis == filter_entity(entity, d.hidden, d.only)


class _PermitAll:
    name = "all"

    def read(self, p: Principal, tenant: str, entity: dict[str, Any]) -> Decision:
        return Decision("permit", source=self.name)

    def write(self, p: Principal, tenant: str, before: Any, after: Any) -> Decision:
        return Decision("permit", source=self.name)
