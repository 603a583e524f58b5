"""MIM4 without HTTP: the DPV purpose hierarchy, the consent registry and the consent decider."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from urbanmim.consent import dpv
from urbanmim.consent.decider import ConsentDecider
from urbanmim.consent.model import (
    ANY,
    CONSENT_PREFIX,
    Consent,
    PersonalDataRule,
    parse_consent,
    parse_rule,
)
from urbanmim.consent.registry import ConsentRegistry
from urbanmim.consent.rights import in_periods, subject_periods
from urbanmim.errors import BadRequestData
from urbanmim.security.access import AccessControl, Decision, combine
from urbanmim.security.principal import SYSTEM, Principal
from urbanmim.store.base import StoredInstance

D = "https://uri.etsi.org/ngsi-ld/default-context/"
ALICE, BOB = "urn:ngsi-ld:Person:alice", "urn:ngsi-ld:Person:bob"
VEHICLE, PERSON = D + "Vehicle", D + "Person"
NAME, PHONE, SPEED, OWNER = D + "driverName", D + "phone", D + "speed", D + "refDataSubject"


# ---- DPV ----------------------------------------------------------------------------------------------
def test_every_broader_purpose_is_in_the_table() -> None:
    for term, (_label, broader) in dpv.PURPOSES.items():
        assert term == "Purpose" or broader, term
        for b in broader:
            assert b in dpv.PURPOSES, (term, b)


def test_purpose_hierarchy() -> None:
    assert dpv.covers("dpv:ResearchAndDevelopment", "dpv:AcademicResearch")
    assert not dpv.covers("dpv:AcademicResearch", "dpv:ResearchAndDevelopment")
    assert dpv.covers("dpv:ServiceProvision", "dpv:ServicePersonalisation")
    assert dpv.covers("dpv:Personalisation", "dpv:ServicePersonalisation")       # poly-hierarchy
    assert dpv.covers("dpv:Marketing", "dpv:TargetedAdvertising")                # transitive
    assert dpv.covers("dpv:Personalisation", "dpv:TargetedAdvertising")
    assert not dpv.covers("dpv:ServiceProvision", "dpv:Marketing")
    assert dpv.covers("dpv:PublicBenefit", "dpv:PublicBenefit")


def test_purpose_spellings() -> None:
    assert dpv.normalise("https://w3id.org/dpv#Marketing") == "dpv:Marketing"
    assert dpv.normalise("http://www.w3.org/ns/dpv#Marketing") == "dpv:Marketing"
    assert dpv.normalise("Marketing") == "dpv:Marketing"
    assert dpv.normalise("dpv:Sunbathing") is None and dpv.normalise(None) is None


@given(st.sampled_from(sorted(dpv.PURPOSES)), st.sampled_from(sorted(dpv.PURPOSES)),
       st.sampled_from(sorted(dpv.PURPOSES)))
def test_covers_is_a_partial_order(a: str, b: str, c: str) -> None:
    a, b, c = "dpv:" + a, "dpv:" + b, "dpv:" + c
    assert dpv.covers(a, a) and dpv.covers(dpv.ROOT, a)
    if dpv.covers(a, b) and dpv.covers(b, a):
        assert a == b
    if dpv.covers(a, b) and dpv.covers(b, c):
        assert dpv.covers(a, c)


# ---- model round trips ----------------------------------------------------------------------------------
def test_rule_and_consent_round_trip() -> None:
    rule = PersonalDataRule(VEHICLE, frozenset({NAME, PHONE}), OWNER, description="cars of residents")
    assert parse_rule(rule.to_entity()) == rule
    me = PersonalDataRule(PERSON, frozenset({D + "email"}))
    assert parse_rule(me.to_entity()) == me
    c = Consent(CONSENT_PREFIX + "1", ALICE, "org:a", "dpv:Marketing", "2024-01-01T00:00:00Z", ALICE,
                "2030-01-01T00:00:00Z")
    assert parse_consent(c.to_entity()) == c
    bad = c.to_entity()
    bad["attrs"]["urbanmim:purpose"] = [{"type": "Property", "value": "dpv:Purpose"}]
    with pytest.raises(BadRequestData):
        parse_consent(bad)
    wrong_id = dict(rule.to_entity(), id="urn:ngsi-ld:PersonalDataRule:other")
    with pytest.raises(BadRequestData):
        parse_rule(wrong_id)


def test_consent_status_and_applies() -> None:
    c = Consent(CONSENT_PREFIX + "1", ALICE, "org:a", "dpv:ResearchAndDevelopment", "2024-01-01T00:00:00Z", ALICE,
                "2030-01-01T00:00:00Z")
    before, after = 1_800_000_000_000, 1_900_000_000_000        # 2027, 2030+
    assert c.status(before) == "active" and c.status(after) == "expired"
    assert c.applies("org:a", "dpv:AcademicResearch", before)
    assert not c.applies("org:a", "dpv:AcademicResearch", after)
    assert not c.applies("org:b", "dpv:AcademicResearch", before)
    assert not c.applies(None, "dpv:AcademicResearch", before)
    assert not c.applies("org:a", "dpv:Marketing", before)
    anyone = Consent(CONSENT_PREFIX + "2", ALICE, ANY, "dpv:PublicBenefit", "2024-01-01T00:00:00Z", ALICE)
    assert anyone.applies("org:z", "dpv:Counterterrorism", before) and anyone.applies(None, "dpv:PublicBenefit", 0)
    revoked = Consent(c.id, ALICE, "org:a", c.purpose, c.given_at, ALICE, None, "2024-02-01T00:00:00Z", ALICE)
    assert revoked.status(before) == "revoked" and not revoked.applies("org:a", "dpv:AcademicResearch", before)


# ---- the decider ------------------------------------------------------------------------------------------
def change(tenant: str, ent: dict[str, Any] | None, old: dict[str, Any] | None = None) -> Any:
    return SimpleNamespace(tenant=tenant, entity_id=(ent or old or {})["id"], new=ent, old=old)


def car(owner: str | list[str] | None = ALICE) -> dict[str, Any]:
    attrs: dict[str, Any] = {NAME: [{"type": "Property", "value": "Alice"}],
                             PHONE: [{"type": "Property", "value": "+31"}],
                             SPEED: [{"type": "Property", "value": 50}]}
    if isinstance(owner, str):
        attrs[OWNER] = [{"type": "Relationship", "object": owner}]
    elif isinstance(owner, list):
        attrs[OWNER] = [{"type": "ListRelationship", "objectList": owner}]
    return {"id": "urn:ngsi-ld:Vehicle:1", "type": [VEHICLE], "attrs": attrs}


@pytest.fixture
def reg() -> ConsentRegistry:
    r = ConsentRegistry()
    r.on_change(change("city", PersonalDataRule(VEHICLE, frozenset({NAME, PHONE}), OWNER).to_entity()))
    r.on_change(change("city", PersonalDataRule(PERSON, frozenset({D + "email"})).to_entity()))
    return r


def give(reg: ConsentRegistry, n: int, subject: str, recipient: str, purpose: str, **kw: Any) -> Consent:
    c = Consent(CONSENT_PREFIX + str(n), subject, recipient, purpose, "2024-01-01T00:00:00Z", subject, **kw)
    reg.on_change(change("city", c.to_entity()))
    return c


def who(sub: str = "urn:ngsi-ld:Person:carol", org: str | None = "org:parking", purpose: str | None = None,
        roles: dict[str, frozenset[str]] | None = None) -> Principal:
    return Principal(sub, roles or {"city": frozenset({"reader"})}, organisation=org, purpose=purpose)


def test_not_personal_abstains(reg: ConsentRegistry) -> None:
    d = ConsentDecider(reg)
    other = {"id": "urn:x:1", "type": [D + "Road"], "attrs": {NAME: [{"type": "Property", "value": 1}]}}
    assert d.read(who(), "city", other) == Decision("abstain", source="consent")
    assert d.read(who(), "elsewhere", car()).hidden == frozenset()          # rules are per tenant
    no_personal = {"id": "urn:x:2", "type": [VEHICLE], "attrs": {SPEED: [{"type": "Property", "value": 1}]}}
    assert d.read(who(), "city", no_personal).hidden == frozenset()


def test_hidden_without_consent_visible_with_it(reg: ConsentRegistry) -> None:
    d = ConsentDecider(reg)
    dec = d.read(who(purpose="dpv:ServiceProvision"), "city", car())
    assert dec.effect == "abstain" and dec.hidden == {NAME, PHONE} and "no active consent" in dec.reason
    c = give(reg, 1, ALICE, "org:parking", "dpv:ServiceProvision")
    dec = d.read(who(purpose="dpv:ServiceOptimisation"), "city", car())      # narrower purpose: covered
    assert dec.hidden == frozenset() and c.id in dec.reason
    assert d.read(who(purpose="dpv:Marketing"), "city", car()).hidden == {NAME, PHONE}
    assert d.read(who(org="org:other", purpose="dpv:ServiceProvision"), "city", car()).hidden == {NAME, PHONE}
    no_purpose = d.read(who(), "city", car())
    assert no_purpose.hidden == {NAME, PHONE} and "states no purpose" in no_purpose.reason
    unknown = d.read(who(purpose="ex:Whatever"), "city", car())
    assert unknown.hidden == {NAME, PHONE} and "not a DPV purpose" in unknown.reason
    # revocation: the listener updates the cache; the next decision hides again
    revoked = Consent(c.id, ALICE, "org:parking", c.purpose, c.given_at, ALICE, None, "2024-02-01T00:00:00Z", ALICE)
    reg.on_change(change("city", revoked.to_entity(), c.to_entity()))
    assert d.read(who(purpose="dpv:ServiceProvision"), "city", car()).hidden == {NAME, PHONE}
    # deleted consent entity: gone from the cache too
    c2 = give(reg, 2, ALICE, ANY, "dpv:ServiceProvision")
    assert d.read(who(purpose="dpv:ServiceProvision"), "city", car()).hidden == frozenset()
    reg.on_change(change("city", None, c2.to_entity()))
    assert d.read(who(purpose="dpv:ServiceProvision"), "city", car()).hidden == {NAME, PHONE}


def test_subject_sees_own_data_and_system_sees_all(reg: ConsentRegistry) -> None:
    d = ConsentDecider(reg)
    dec = d.read(who(sub=ALICE, org=None), "city", car())
    assert dec.hidden == frozenset() and "is the data subject" in dec.reason
    person = {"id": ALICE, "type": [PERSON], "attrs": {D + "email": [{"type": "Property", "value": "a@x"}]}}
    assert d.read(who(sub=ALICE), "city", person).hidden == frozenset()
    assert d.read(who(sub=BOB), "city", person).hidden == {D + "email"}
    assert d.read(SYSTEM, "city", car()).hidden == frozenset()
    # an admin is not the subject: no consent, no personal data
    admin = who(sub="admin-1", roles={"city": frozenset({"admin"})}, purpose="dpv:ServiceProvision")
    assert d.read(admin, "city", car()).hidden == {NAME, PHONE}


def test_several_subjects_all_must_agree_and_unknown_subject_hides(reg: ConsentRegistry) -> None:
    d = ConsentDecider(reg)
    shared = car([ALICE, BOB])
    give(reg, 1, ALICE, ANY, "dpv:PublicBenefit")
    p = who(purpose="dpv:PublicBenefit")
    assert d.read(p, "city", shared).hidden == {NAME, PHONE}
    give(reg, 2, BOB, "org:parking", "dpv:PublicBenefit")
    assert d.read(p, "city", shared).hidden == frozenset()
    assert d.read(who(sub=ALICE, purpose="dpv:PublicBenefit"), "city", shared).hidden == frozenset()
    orphan = d.read(who(sub=ALICE), "city", car(None))
    assert orphan.hidden == {NAME, PHONE} and "not recorded" in orphan.reason


def test_expired_consent_does_not_apply(reg: ConsentRegistry) -> None:
    give(reg, 1, ALICE, "org:parking", "dpv:ServiceProvision", expires_at="2001-01-01T00:00:00Z")
    assert ConsentDecider(reg).read(who(purpose="dpv:ServiceProvision"), "city", car()).hidden == {NAME, PHONE}


def test_reserved_entities(reg: ConsentRegistry) -> None:
    d = ConsentDecider(reg)
    c = give(reg, 1, ALICE, ANY, "dpv:PublicBenefit").to_entity()
    assert d.read(who(), "city", c).effect == "deny"
    assert d.read(who(roles={"city": frozenset({"admin"})}), "city", c).effect == "abstain"
    assert d.write(who(roles={"city": frozenset({"admin"})}), "city", None, c).effect == "deny"
    assert d.write(SYSTEM, "city", None, c).effect == "abstain"
    assert d.write(who(), "city", None, car()).effect == "abstain"


def test_combined_with_a_permitting_decider(reg: ConsentRegistry) -> None:
    """Through SEC's AccessControl: the role decider permits, the consent decider subtracts."""
    class Everyone:
        name = "roles"

        def read(self, p: Principal, tenant: str, entity: dict[str, Any]) -> Decision:
            return Decision("permit", source=self.name)

        def write(self, p: Principal, tenant: str, before: Any, after: Any) -> Decision:
            return Decision("permit", source=self.name)

    access = AccessControl(True, [Everyone(), ConsentDecider(reg)])
    seen = access.visible(who(purpose="dpv:ServiceProvision"), "city", car())
    assert seen is not None and set(seen["attrs"]) == {SPEED, OWNER}
    give(reg, 1, ALICE, "org:parking", "dpv:ServiceProvision")
    seen = access.visible(who(purpose="dpv:ServiceProvision"), "city", car())
    assert seen is not None and set(seen["attrs"]) == {SPEED, OWNER, NAME, PHONE}
    assert not combine([d.read(who(), "city", car()) for d in access.deciders]).hidden - {NAME, PHONE}


# ---- subject periods (export/erasure of an entity that changed hands) -------------------------------------
def link(ts: int, obj: str) -> StoredInstance:
    return StoredInstance(f"urn:i:{ts}", OWNER, None, ts, {"type": "Relationship", "object": obj}, None)


def test_subject_periods() -> None:
    hist = [link(10, ALICE), link(20, ALICE), link(30, BOB), link(40, "urn:ngsi-ld:null"), link(50, ALICE)]
    periods, exclusive = subject_periods(hist, ALICE)
    assert periods == [(10, 30), (50, None)] and not exclusive
    assert in_periods(25, periods) and not in_periods(30, periods) and in_periods(99, periods)
    assert subject_periods([link(1, ALICE), link(2, "urn:ngsi-ld:null")], ALICE) == ([(1, 2)], True)
    assert subject_periods([link(1, BOB)], ALICE) == ([], False)


# ---- property: the decider shows personal data exactly when the subject agreed ------------------------------
ORGS = ["org:a", "org:b", None]
SUBJECTS = [ALICE, BOB, "urn:ngsi-ld:Person:carol"]
SOME_PURPOSES = ["dpv:ServiceProvision", "dpv:ServiceOptimisation", "dpv:ServicePersonalisation",
                 "dpv:Personalisation", "dpv:Marketing", "dpv:ResearchAndDevelopment", "dpv:AcademicResearch"]

consents_st = st.lists(st.tuples(st.sampled_from(SUBJECTS), st.sampled_from(["org:a", "org:b", ANY]),
                                 st.sampled_from(SOME_PURPOSES), st.sampled_from(["active", "revoked", "expired"])),
                       max_size=6)


@given(consents_st, st.sampled_from(SUBJECTS + ["app"]), st.sampled_from(ORGS),
       st.sampled_from(SOME_PURPOSES + [None, "ex:Unknown"]),
       st.lists(st.sampled_from(SUBJECTS), min_size=0, max_size=2, unique=True))
def test_personal_data_visible_only_with_the_subjects_agreement(
        consents: list[tuple[str, str, str, str]], sub: str, org: str | None, purpose: str | None,
        owners: list[str]) -> None:
    reg = ConsentRegistry()
    reg.on_change(change("city", PersonalDataRule(VEHICLE, frozenset({NAME, PHONE}), OWNER).to_entity()))
    for n, (s, recipient, pur, status) in enumerate(consents):
        kw: dict[str, Any] = {}
        if status == "revoked":
            kw["revoked_at"], kw["revoked_by"] = "2024-02-01T00:00:00Z", s
        if status == "expired":
            kw["expires_at"] = "2001-01-01T00:00:00Z"
        give(reg, n, s, recipient, pur, **kw)
    ent = car(owners if len(owners) != 1 else owners[0]) if owners else car(None)
    dec = ConsentDecider(reg).read(Principal(sub, {"city": frozenset({"reader"})}, organisation=org,
                                             purpose=purpose), "city", ent)

    def agreed(s: str) -> bool:       # the oracle, written from the rule in docs/consent.md
        if s == sub:
            return True
        return purpose in SOME_PURPOSES and any(
            cs == s and st_ == "active" and (r == ANY or r == org) and dpv.covers(p, purpose)  # type: ignore[arg-type]
            for cs, r, p, st_ in consents)

    visible = bool(owners) and all(agreed(s) for s in owners)
    assert dec.effect == "abstain"
    assert dec.hidden == (frozenset() if visible else frozenset({NAME, PHONE})), dec.reason


async def test_reload_does_not_undo_a_change_made_while_reading() -> None:
    """A consent revoked (through the listener) while a periodic reload reads the store stays revoked."""
    from urbanmim.consent.model import CONSENT_TYPE
    from urbanmim.store.base import QueryResult

    reg = ConsentRegistry()
    active = Consent(CONSENT_PREFIX + "1", ALICE, ANY, "dpv:PublicBenefit", "2024-01-01T00:00:00Z", ALICE)
    revoked = Consent(active.id, ALICE, ANY, active.purpose, active.given_at, ALICE, None, "2024-02-01T00:00:00Z",
                      ALICE)
    reg.on_change(change("city", active.to_entity()))
    raced: list[int] = []

    class Store:                    # the store still returns the old (active) consent; a revocation lands meanwhile
        async def tenants(self) -> list[str]:
            return ["city"]

        async def tenant_exists(self, tenant: str) -> bool:
            return True

        async def query(self, q: Any) -> QueryResult:
            if CONSENT_TYPE in next(iter(q.types)) and not raced:
                raced.append(1)
                reg.on_change(change("city", revoked.to_entity(), active.to_entity()))
                return QueryResult([active.to_entity()], None)
            return QueryResult([revoked.to_entity()] if CONSENT_TYPE in next(iter(q.types)) else [], None)

    await reg.reload(Store())
    assert reg.consent("city", active.id) is not None
    assert reg.consent("city", active.id).status(0) == "revoked"      # type: ignore[union-attr]
