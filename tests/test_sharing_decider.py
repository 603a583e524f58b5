"""The sharing decider on its own (no server): its answers, its decision cache, counting, reserved entities."""

from __future__ import annotations

import dataclasses
from typing import Any

from urbanmim.security.principal import Principal
from urbanmim.sharing.decider import SharingDecider, acting, not_counted
from urbanmim.sharing.odrl_parse import parse_policy
from urbanmim.sharing.registry import Agreement, Offer, SharingRegistry

V = "https://uri.etsi.org/ngsi-ld/default-context/"
OWNERS = {"urn:ngsi-ld:Opinion:0": "fa", "urn:ngsi-ld:Opinion:1": "fa", "urn:ngsi-ld:Opinion:2": "fb"}


def opinion(i: int) -> dict[str, Any]:
    return {"id": f"urn:ngsi-ld:Opinion:{i}", "type": [V + "Opinion"],
            "attrs": {V + "rating": [{"type": "Property", "value": i}], V + "author": [{"type": "Property",
                                                                                       "value": "x"}]}}


def world(policy: dict[str, Any]) -> tuple[SharingRegistry, SharingDecider]:
    reg = SharingRegistry()
    pol = parse_policy({"@type": "Offer", "uid": "urn:ngsi-ld:SharingOffer:1", "assigner": "fa", **policy})
    reg.apply("c", "urn:ngsi-ld:SharingOffer:1", Offer("urn:ngsi-ld:SharingOffer:1", "c", "fa", pol).to_entity())
    agr = dataclasses.replace(pol, uid="urn:ngsi-ld:SharingAgreement:1", type="Agreement", assignee="fc")
    reg.apply("c", agr.uid, Agreement(agr.uid, "c", pol.uid, "fa", "fc", agr, "2025-01-01").to_entity())
    return reg, SharingDecider(reg, owner_of=lambda e: OWNERS.get(e["id"]))


CONSUMER = Principal("u", {"c": frozenset({"reader"})}, organisation="fc", purpose="dpv:AcademicResearch")


def test_answers() -> None:
    _, d = world({"target": {"entityType": V + "Opinion", "attributes": [V + "rating"]},
                  "permission": [{"action": "read"}]})
    assert d.read(CONSUMER, "c", opinion(0)).only == {V + "rating"}
    assert d.read(CONSUMER, "c", opinion(2)).effect == "deny"            # fb has no agreement with fc
    assert "belongs to organisation fb" in d.read(CONSUMER, "c", opinion(2)).reason
    owner = Principal("a", {"c": frozenset({"reader"})}, organisation="fa")
    assert d.read(owner, "c", opinion(0)).effect == "abstain"
    admin = Principal("adm", {"c": frozenset({"admin"})})
    assert d.read(admin, "c", opinion(0)).effect == "abstain"
    unowned = dict(opinion(7), id="urn:ngsi-ld:Opinion:7")
    assert d.read(CONSUMER, "c", unowned).effect == "abstain"
    stranger = Principal("s", {"c": frozenset({"reader"})})              # no organisation at all
    assert d.read(stranger, "c", opinion(0)).effect == "deny"
    assert d.read(CONSUMER, "other", opinion(0)).effect == "deny"       # agreements hold in their tenant only
    with acting("distribute"):                                           # read does not cover notifications
        assert d.read(CONSUMER, "c", opinion(0)).effect == "deny"


def test_cached_decisions_depend_on_the_id_when_targets_do() -> None:
    _, d = world({"target": {"entityType": V + "Opinion", "idPattern": ":0$"}, "permission": [{"action": "read"}]})
    for _ in range(2):                                                   # the second round answers from the cache
        assert d.read(CONSUMER, "c", opinion(0)).effect == "permit"
        assert d.read(CONSUMER, "c", opinion(1)).effect == "deny"


def test_cached_decisions_depend_on_purpose_and_action() -> None:
    _, d = world({"target": {"entityType": V + "Opinion"}, "permission": [{"action": "read", "constraint": [
        {"leftOperand": "purpose", "operator": "isA", "rightOperand": "dpv:ResearchAndDevelopment"}]}]})
    marketing = dataclasses.replace(CONSUMER, purpose="dpv:Marketing")
    for _ in range(2):
        assert d.read(CONSUMER, "c", opinion(0)).effect == "permit"
        assert d.read(marketing, "c", opinion(0)).effect == "deny"
        with acting("distribute"):
            assert d.read(CONSUMER, "c", opinion(0)).effect == "deny"


def test_withdrawal_clears_cached_decisions_and_reads_are_counted() -> None:
    reg, d = world({"target": {"entityType": V + "Opinion"}, "permission": [{"action": "use"}]})
    agreement = reg.tenant("c").agreements["urn:ngsi-ld:SharingAgreement:1"]
    for _ in range(3):
        assert d.read(CONSUMER, "c", opinion(0)).effect == "permit"
    with not_counted():
        d.read(CONSUMER, "c", opinion(0))
    assert reg.reads(agreement) == 3                                     # cache hits count, explanations do not
    withdrawn = Offer("urn:ngsi-ld:SharingOffer:1", "c", "fa", reg.tenant("c").offers[agreement.offer_id].policy,
                      "withdrawn")
    reg.apply("c", withdrawn.id, withdrawn.to_entity())
    assert d.read(CONSUMER, "c", opinion(0)).effect == "deny"


def test_reserved_entities() -> None:
    reg, d = world({"target": {"entityType": V + "Opinion"}, "permission": [{"action": "use"}]})
    agreement = reg.tenant("c").agreements["urn:ngsi-ld:SharingAgreement:1"].to_entity()
    offer = reg.tenant("c").offers["urn:ngsi-ld:SharingOffer:1"].to_entity()
    provider = Principal("p", {}, organisation="fa")
    assert d.read(CONSUMER, "c", agreement).effect == "permit" and d.read(provider, "c", agreement).effect == "permit"
    assert d.read(Principal("x", {"c": frozenset({"reader"})}, organisation="zz"), "c", agreement).effect == "deny"
    assert d.read(Principal("x", {}), "c", offer).effect == "permit"
    admin = Principal("adm", {"c": frozenset({"admin"})})
    assert d.write(admin, "c", None, agreement).effect == "deny"         # only /sharing/v1 (as SYSTEM) writes them
    assert d.write(admin, "c", opinion(0), opinion(0)).effect == "abstain"
