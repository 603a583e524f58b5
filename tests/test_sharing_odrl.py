"""The ODRL subset evaluator (urbanmim/sharing/odrl.py) on hand-written policies: every decision and its
explanation (which rule permitted or prohibited, which constraint failed)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from urbanmim.errors import BadRequestData
from urbanmim.sharing.odrl import Request, evaluate, visible_attributes
from urbanmim.sharing.odrl_parse import parse_policy

V = "https://uri.etsi.org/ngsi-ld/default-context/"
LOC = "https://uri.etsi.org/ngsi-ld/location"


def expand(term: str) -> str:
    return term if ":" in term else V + term


def pol(rules: dict[str, Any], uid: str = "urn:p:1", **extra: Any) -> Any:
    return parse_policy({"@type": "Agreement", "uid": uid, "assigner": "fa", "assignee": "fb", **rules, **extra},
                        expand)


def opinion(i: int = 1, lon: float = 5.0, lat: float = 5.0, **attrs: Any) -> dict[str, Any]:
    a = {V + k: [{"type": "Property", "value": v}] for k, v in (attrs or {"rating": 4, "comment": "x",
                                                                          "author": "ann"}).items()}
    a[LOC] = [{"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}]
    return {"id": f"urn:ngsi-ld:Opinion:{i}", "type": [V + "Opinion"], "attrs": a}


OPINIONS = {"entityType": "Opinion"}
JULY = datetime(2025, 7, 15, tzinfo=UTC)


def test_default_deny() -> None:
    res = evaluate([], opinion(), Request())
    assert res.effect == "deny" and "default deny" in res.reason


def test_permission_whole_entity() -> None:
    p = pol({"permission": [{"target": OPINIONS, "action": "read"}]})
    res = evaluate([p], opinion(), Request())
    assert res.effect == "permit" and res.attributes is None
    assert res.permitted_by[0].rule == "policy.permission[0]" and "urn:p:1 policy.permission[0]" in res.reason


def test_target_must_match_type_and_pattern() -> None:
    p = pol({"permission": [{"target": {"entityType": "Opinion", "idPattern": ":Opinion:1$"}, "action": "read"}]})
    assert evaluate([p], opinion(1), Request()).effect == "permit"
    assert evaluate([p], opinion(2), Request()).effect == "deny"
    other = dict(opinion(1), type=[V + "Artwork"])
    assert evaluate([p], other, Request()).effect == "deny"


def test_entity_id_as_target() -> None:
    p = pol({"permission": [{"target": "urn:ngsi-ld:Opinion:1", "action": "read"}]})
    assert evaluate([p], opinion(1), Request()).effect == "permit"
    assert evaluate([p], opinion(11), Request()).effect == "deny"


def test_attributes_and_prohibited_attributes() -> None:
    p = pol({"permission": [{"target": {"entityType": "Opinion", "attributes": ["rating", "comment"]},
                             "action": "use"}],
             "prohibition": [{"target": {"entityType": "Opinion", "attributes": ["comment"]}, "action": "read"}]})
    res = evaluate([p], opinion(), Request())
    assert res.effect == "permit" and res.attributes == {V + "rating"} and res.hidden == {V + "comment"}
    assert visible_attributes(res, opinion()) == [V + "rating"]
    assert "attributes prohibited by urn:p:1 policy.prohibition[0]" in res.reason


def test_prohibition_of_the_whole_entity_wins() -> None:
    p1 = pol({"permission": [{"target": OPINIONS, "action": "use"}]}, uid="urn:p:1")
    p2 = pol({"permission": [{"target": OPINIONS, "action": "read"}],
              "prohibition": [{"target": OPINIONS, "action": "read"}]}, uid="urn:p:2")
    res = evaluate([p1, p2], opinion(), Request())
    assert res.effect == "deny" and "prohibited by urn:p:2 policy.prohibition[0] (prohibitions win)" in res.reason


def test_every_permitted_attribute_prohibited_is_deny() -> None:
    p = pol({"permission": [{"target": {"entityType": "Opinion", "attributes": ["rating"]}, "action": "read"}],
             "prohibition": [{"target": {"entityType": "Opinion", "attributes": ["rating"]}, "action": "use"}]})
    assert evaluate([p], opinion(), Request()).effect == "deny"


def test_actions_use_includes_read_distribute_aggregate() -> None:
    use = pol({"permission": [{"target": OPINIONS, "action": "use"}]})
    read = pol({"permission": [{"target": OPINIONS, "action": "read"}]})
    for action in ("read", "distribute", "aggregate"):
        assert evaluate([use], opinion(), Request(action=action)).effect == "permit"
    assert evaluate([read], opinion(), Request(action="read")).effect == "permit"
    assert evaluate([read], opinion(), Request(action="distribute")).effect == "deny"
    no_notify = pol({"permission": [{"target": OPINIONS, "action": "use"}],
                     "prohibition": [{"target": OPINIONS, "action": "distribute"}]})
    assert evaluate([no_notify], opinion(), Request(action="read")).effect == "permit"
    assert evaluate([no_notify], opinion(), Request(action="distribute")).effect == "deny"


@pytest.mark.parametrize("op, right, purpose, ok", [
    ("isA", "dpv:ResearchAndDevelopment", "dpv:AcademicResearch", True),
    ("isA", "dpv:ResearchAndDevelopment", "https://w3id.org/dpv#NonCommercialResearch", True),
    ("isA", "dpv:ResearchAndDevelopment", "dpv:ResearchAndDevelopment", True),
    ("isA", "dpv:AcademicResearch", "dpv:ResearchAndDevelopment", False),
    ("isA", "dpv:ResearchAndDevelopment", "dpv:Marketing", False),
    ("eq", "dpv:ResearchAndDevelopment", "dpv:AcademicResearch", False),
    ("eq", "dpv:ServiceProvision", "dpv:ServiceProvision", True),
    ("neq", "dpv:Marketing", "dpv:ServiceProvision", True),
    ("isAnyOf", ["dpv:Marketing", "dpv:PublicBenefit"], "dpv:PublicBenefit", True),
    ("isAnyOf", ["dpv:Marketing", "dpv:ServiceProvision"], "dpv:ServiceOptimisation", True),
    ("isAnyOf", ["dpv:Marketing"], "dpv:AcademicResearch", False),
    ("isNoneOf", ["dpv:Marketing"], "dpv:Advertising", False),
    ("isNoneOf", ["dpv:Marketing"], "dpv:AcademicResearch", True),
    ("isA", "dpv:ResearchAndDevelopment", "made-up-purpose", False),
])
def test_purpose_constraints(op: str, right: Any, purpose: str, ok: bool) -> None:
    p = pol({"permission": [{"target": OPINIONS, "action": "read", "constraint": [
        {"leftOperand": "purpose", "operator": op, "rightOperand": right}]}]})
    res = evaluate([p], opinion(), Request(purpose=purpose))
    assert (res.effect == "permit") is ok, res.reason
    if not ok:
        assert "policy.permission[0].constraint[0]: purpose" in res.reason


def test_no_purpose_fails_a_permission_but_applies_a_prohibition() -> None:
    permit = pol({"permission": [{"target": OPINIONS, "action": "read", "constraint": [
        {"leftOperand": "purpose", "operator": "isA", "rightOperand": "dpv:ResearchAndDevelopment"}]}]})
    res = evaluate([permit], opinion(), Request(purpose=None))
    assert res.effect == "deny" and "undecidable (no purpose stated)" in res.reason
    no_marketing = pol({"permission": [{"target": OPINIONS, "action": "read"}], "prohibition": [
        {"target": OPINIONS, "action": "read", "constraint": [
            {"leftOperand": "purpose", "operator": "isA", "rightOperand": "dpv:Marketing"}]}]})
    assert evaluate([no_marketing], opinion(), Request(purpose="dpv:AcademicResearch")).effect == "permit"
    assert evaluate([no_marketing], opinion(), Request(purpose="dpv:DirectMarketing")).effect == "deny"
    assert evaluate([no_marketing], opinion(), Request(purpose=None)).effect == "deny"   # in doubt: prohibited


def test_datetime_constraints() -> None:
    p = pol({"permission": [{"target": OPINIONS, "action": "read", "constraint": [
        {"leftOperand": "dateTime", "operator": "gteq", "rightOperand": "2025-06-01T00:00:00Z"},
        {"leftOperand": "dateTime", "operator": "lt",
         "rightOperand": {"@value": "2025-10-01", "@type": "xsd:date"}}]}]})
    assert evaluate([p], opinion(), Request(at=JULY)).effect == "permit"
    res = evaluate([p], opinion(), Request(at=datetime(2025, 10, 1, tzinfo=UTC)))
    assert res.effect == "deny" and "constraint[1]: dateTime lt 2025-10-01 is false" in res.reason
    assert evaluate([p], opinion(), Request(at=datetime(2025, 5, 31, 23, 59, tzinfo=UTC))).effect == "deny"


def test_spatial_constraint() -> None:
    area = {"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]]}
    p = pol({"permission": [{"target": OPINIONS, "action": "read", "constraint": [
        {"leftOperand": "spatial", "operator": "isPartOf", "rightOperand": area}]}]})
    assert evaluate([p], opinion(lon=5, lat=5), Request()).effect == "permit"
    assert evaluate([p], opinion(lon=10, lat=5), Request()).effect == "permit"      # on the boundary: covered
    assert evaluate([p], opinion(lon=11, lat=5), Request()).effect == "deny"
    nowhere = opinion()
    del nowhere["attrs"][LOC]
    res = evaluate([p], nowhere, Request())
    assert res.effect == "deny" and "the entity has no location" in res.reason
    wkt = pol({"permission": [{"target": OPINIONS, "action": "read", "constraint": [
        {"leftOperand": "spatial", "operator": "isPartOf", "rightOperand": "POLYGON((0 0,1 0,1 1,0 1,0 0))"}]}]})
    assert evaluate([wkt], opinion(lon=0.5, lat=0.5), Request()).effect == "permit"
    assert evaluate([wkt], opinion(lon=5, lat=5), Request()).effect == "deny"


def test_count_constraint() -> None:
    p = pol({"permission": [{"target": OPINIONS, "action": "read", "constraint": [
        {"leftOperand": "count", "operator": "lteq", "rightOperand": 3}]}]})
    assert p.counted
    for done in range(3):
        assert evaluate([p], opinion(), Request(counts={"urn:p:1": done})).effect == "permit"
    res = evaluate([p], opinion(), Request(counts={"urn:p:1": 3}))
    assert res.effect == "deny" and "this would be read 4" in res.reason
    assert evaluate([p], opinion(), Request(counts={"urn:p:1": 0})).used_policies == ("urn:p:1",)


def test_logical_constraints() -> None:
    def with_(c: dict[str, Any]) -> Any:
        return pol({"permission": [{"target": OPINIONS, "action": "read", "constraint": [c]}]})
    research = {"leftOperand": "purpose", "operator": "isA", "rightOperand": "dpv:ResearchAndDevelopment"}
    public = {"leftOperand": "purpose", "operator": "isA", "rightOperand": "dpv:PublicBenefit"}
    summer = {"leftOperand": "dateTime", "operator": "lt", "rightOperand": "2025-09-01T00:00:00Z"}
    either = with_({"or": [research, public]})
    assert evaluate([either], opinion(), Request(purpose="dpv:PublicBenefit")).effect == "permit"
    res = evaluate([either], opinion(), Request(purpose="dpv:Marketing"))
    assert res.effect == "deny" and "(purpose isA dpv:ResearchAndDevelopment or purpose isA dpv:PublicBenefit)" \
        in res.reason
    both = with_({"and": [research, summer]})
    assert evaluate([both], opinion(), Request(purpose="dpv:AcademicResearch", at=JULY)).effect == "permit"
    assert evaluate([both], opinion(), Request(purpose="dpv:AcademicResearch",
                                               at=datetime(2025, 9, 2, tzinfo=UTC))).effect == "deny"
    one = with_({"xone": {"@list": [research, summer]}})
    assert evaluate([one], opinion(), Request(purpose="dpv:Marketing", at=JULY)).effect == "permit"
    assert evaluate([one], opinion(), Request(purpose="dpv:AcademicResearch", at=JULY)).effect == "deny"


def test_duties_are_reported() -> None:
    p = pol({"permission": [{"target": OPINIONS, "action": "read", "duty": [{"action": "attribute"},
                                                                           {"action": "odrl:inform"}]}]})
    res = evaluate([p], opinion(), Request())
    assert p.duties == ("attribute", "inform") and res.permitted_by[0].duties == ("attribute", "inform")


def test_odrl_spellings_are_accepted() -> None:
    p = parse_policy({"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "odrl:Set", "uid": "urn:x",
                      "odrl:permission": [{"odrl:target": {"@type": "Asset", "entityType": ["Opinion"]},
                                           "odrl:action": {"@id": "http://www.w3.org/ns/odrl/2/read"},
                                           "constraint": [{"leftOperand": {"@id": "odrl:purpose"},
                                                           "operator": {"@id": "odrl:isA"},
                                                           "rightOperand": {"@id": "dpv:PublicBenefit"}}]}],
                      "dct:title": "ignored description"}, expand)
    assert p.type == "Set" and p.permissions[0].action == "read"
    assert evaluate([p], opinion(), Request(purpose="dpv:PublicBenefit")).effect == "permit"


def test_normalised_form_round_trips() -> None:
    p = pol({"target": OPINIONS, "permission": [{"action": "use", "constraint": [
        {"or": [{"leftOperand": "count", "operator": "lt", "rightOperand": 5},
                {"leftOperand": "spatial", "operator": "isPartOf", "rightOperand": "POLYGON((0 0,1 0,1 1,0 0))"}]}]}],
        "prohibition": [{"action": "distribute", "target": {"entityType": "Opinion", "attributes": ["author"]}}]})
    again = parse_policy(p.to_json())
    assert again.to_json() == p.to_json()
    assert evaluate([again], opinion(), Request()).to_json() == evaluate([p], opinion(), Request()).to_json()


@pytest.mark.parametrize("doc, path", [
    ({"@type": "Policy", "uid": "x", "permission": []}, "policy.@type"),
    ({"@type": "Offer", "uid": "x", "permission": []}, "policy.permission"),
    ({"@type": "Offer", "uid": "x", "target": {"attributes": ["a"]}, "permission": [{"action": "read"}]},
     "policy.target"),
    ({"@type": "Offer", "uid": "x", "target": "urn:a", "permission": [{"action": ["read", "use"]}]},
     "policy.permission[0].action"),
    ({"@type": "Offer", "uid": "x", "target": "urn:a", "permission": [{"action": {"rdf:value": {"@id": "odrl:read"},
                                                                                  "refinement": []}}]},
     "policy.permission[0].action.refinement"),
    ({"@type": "Offer", "uid": "x", "target": "urn:a", "permission": [{"action": "read", "constraint": [
        {"leftOperand": "dateTime", "operator": "lt", "rightOperand": "2025-01-01T00:00:00"}]}]},
     "policy.permission[0].constraint[0].rightOperand"),
    ({"@type": "Offer", "uid": "x", "target": "urn:a", "permission": [{"action": "read", "constraint": [
        {"leftOperand": "count", "operator": "lt", "rightOperand": -1}]}]},
     "policy.permission[0].constraint[0].rightOperand"),
    ({"@type": "Offer", "uid": "x", "target": "urn:a", "permission": [{"action": "read", "constraint": [
        {"or": [{"leftOperand": "count", "operator": "lt", "rightOperand": 1}]}]}]},
     "policy.permission[0].constraint[0].or"),
    ({"@type": "Offer", "uid": "x", "target": "urn:a", "permission": [{"action": "read", "constraint": [
        {"leftOperand": "count", "operator": "lt"}]}]}, "policy.permission[0].constraint[0].rightOperand"),
    ({"@type": "Offer", "uid": "x", "target": "urn:a", "permission": [{"action": "read"}],
      "prohibition": [{"action": "read", "duty": [{"action": "inform"}]}]}, "policy.prohibition[0].duty"),
    ({"@type": "Offer", "uid": "x", "target": "urn:a", "permission": [{"action": "read"}],
      "prohibition": [{"action": "read", "remedy": [{"action": "inform"}]}]}, "policy.prohibition[0].remedy"),
    ({"@type": "Offer", "uid": "x", "assigner": "a b", "target": "urn:a", "permission": [{"action": "read"}]},
     "policy.assigner"),
])
def test_parse_errors_name_the_member(doc: dict[str, Any], path: str) -> None:
    with pytest.raises(BadRequestData) as e:
        parse_policy(doc, expand)
    assert e.value.detail.startswith(path + ":"), e.value.detail
