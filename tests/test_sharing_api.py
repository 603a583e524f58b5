"""/sharing/v1 with security off (the platform acts, naming organisations in the body): organisations,
offers, acceptance, withdrawal, ODRL validation errors, the reserved entities, and the DCAT-AP catalogue
(valid JSON-LD: expanded offline with PyLD). Runs over both backends (``client`` fixture)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pyld import jsonld

S = "http://testserver/sharing/v1"
T = {"NGSILD-Tenant": "culture"}
V = "https://uri.etsi.org/ngsi-ld/default-context/"


def offer_body(provider: str = "fa", **extra: Any) -> dict[str, Any]:
    body = {"provider": provider, "title": "Festival A opinions", "description": "NFC opinions on art works",
            "theme": ["http://publications.europa.eu/resource/authority/data-theme/EDUC"],
            "keyword": ["culture", "opinions"],
            "spatial": {"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]]},
            "temporal": {"start": "2025-06-01T00:00:00Z", "end": "2025-09-30T00:00:00Z"},
            "policy": {"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Offer",
                       "target": {"entityType": "Opinion", "attributes": ["rating", "comment"]},
                       "permission": [{"action": "use", "duty": [{"action": "attribute"}]}],
                       "prohibition": [{"action": "distribute", "target": {"entityType": "Opinion",
                                                                          "attributes": ["comment"]}}]}}
    body.update(extra)
    return body


async def setup_orgs(client: httpx.AsyncClient) -> None:
    for oid, name in (("fa", "Festival A"), ("fb", "Festival B")):
        r = await client.post(f"{S}/organisations", json={"id": oid, "name": name}, headers=T)
        assert r.status_code == 201, r.text


async def test_offer_accept_withdraw(client: httpx.AsyncClient) -> None:
    await setup_orgs(client)
    r = await client.get(f"{S}/organisations")
    assert [o["id"] for o in r.json()] == ["fa", "fb"] and r.json()[0]["tenant"] == "culture"
    r = await client.post(f"{S}/offers", json=offer_body(), headers=T)
    assert r.status_code == 201, r.text
    offer = r.json()
    assert offer["provider"] == "fa" and offer["status"] == "active"
    assert r.headers["location"].endswith(offer["id"])
    pol = offer["policy"]
    assert pol["@type"] == "Offer" and pol["assigner"] == "fa" and pol["uid"] == offer["id"]
    # the policy-level target is pushed into each rule, names are expanded
    assert pol["permission"][0]["target"]["entityType"] == [V + "Opinion"]
    assert sorted(pol["permission"][0]["target"]["attributes"]) == [V + "comment", V + "rating"]

    r = await client.post(f"{S}/offers/{offer['id']}/accept", json={"consumer": "fb"}, headers=T)
    assert r.status_code == 201, r.text
    agr = r.json()
    assert agr["provider"] == "fa" and agr["consumer"] == "fb" and agr["inForce"] is True
    assert agr["policy"]["@type"] == "Agreement" and agr["policy"]["assignee"] == "fb"
    assert agr["duties"] == ["attribute"] and agr["acceptedAt"]
    # accepting again returns the agreement in force
    r2 = await client.post(f"{S}/offers/{offer['id']}/accept", json={"consumer": "fb"}, headers=T)
    assert r2.status_code == 200 and r2.json()["id"] == agr["id"]
    # its own offer cannot be accepted; an unknown consumer is 404
    r = await client.post(f"{S}/offers/{offer['id']}/accept", json={"consumer": "fa"}, headers=T)
    assert r.status_code == 400
    r = await client.post(f"{S}/offers/{offer['id']}/accept", json={"consumer": "nobody"}, headers=T)
    assert r.status_code == 404

    # stored as reserved NGSI-LD entities in the provider's tenant
    r = await client.get("/entities", params={"type": "urbanmim:SharingAgreement"}, headers=T)
    assert [e["id"] for e in r.json()] == [agr["id"]]

    # withdrawing the offer stops its agreements; the offer leaves the catalogue
    r = await client.post(f"{S}/offers/{offer['id']}/withdraw", headers=T)
    assert r.status_code == 200 and r.json()["status"] == "withdrawn" and r.json()["withdrawnAt"]
    r = await client.get(f"{S}/agreements/{agr['id']}", headers=T)
    assert r.json()["inForce"] is False and r.json()["status"] == "active"
    r = await client.get(f"{S}/catalogue", headers=T)
    assert r.json()["dcat:dataset"] == []
    r = await client.post(f"{S}/offers/{offer['id']}/accept", json={"consumer": "fb"}, headers=T)
    assert r.status_code == 400


async def test_withdraw_agreement_only_that_one(client: httpx.AsyncClient) -> None:
    await setup_orgs(client)
    await client.post(f"{S}/organisations", json={"id": "fc", "name": "Festival C"}, headers=T)
    offer = (await client.post(f"{S}/offers", json=offer_body(), headers=T)).json()
    a_b = (await client.post(f"{S}/offers/{offer['id']}/accept", json={"consumer": "fb"}, headers=T)).json()
    a_c = (await client.post(f"{S}/offers/{offer['id']}/accept", json={"consumer": "fc"}, headers=T)).json()
    r = await client.post(f"{S}/agreements/{a_b['id']}/withdraw", headers=T)
    assert r.status_code == 200 and r.json()["status"] == "withdrawn" and r.json()["inForce"] is False
    r = await client.get(f"{S}/agreements", headers=T)
    by_id = {a["id"]: a for a in r.json()}
    assert by_id[a_c["id"]]["inForce"] is True and by_id[a_b["id"]]["inForce"] is False


@pytest.mark.parametrize("policy, member", [
    ({"@type": "Offer", "permission": [{"action": "read"}]}, "policy.permission[0].target"),
    ({"@type": "Offer", "target": {"entityType": "Opinion"}, "permission": [{"action": "print"}]},
     "policy.permission[0].action"),
    ({"@type": "Offer", "target": {"entityType": "Opinion"}, "permission": [{"action": "read", "constraint": [
        {"leftOperand": "purpose", "operator": "isA", "rightOperand": "dpv:Nonsense"}]}]},
     "policy.permission[0].constraint[0].rightOperand"),
    ({"@type": "Offer", "target": {"entityType": "Opinion"}, "permission": [{"action": "read", "constraint": [
        {"leftOperand": "spatial", "operator": "isPartOf", "rightOperand": {"type": "Point", "coordinates": [1, 2]}}
    ]}]}, "policy.permission[0].constraint[0].rightOperand"),
    ({"@type": "Offer", "target": {"entityType": "Opinion"}, "permission": [{"action": "read", "constraint": [
        {"leftOperand": "elapsedTime", "operator": "lt", "rightOperand": "P1D"}]}]},
     "policy.permission[0].constraint[0].leftOperand"),
    ({"@type": "Offer", "target": {"idPattern": "("}, "permission": [{"action": "read"}]}, "policy.target.idPattern"),
    ({"@type": "Offer", "target": {"entityType": "Opinion"}, "permission": [{"action": "read"}],
      "obligation": [{"action": "compensate"}]}, "policy.obligation"),
    ({"@type": "Offer", "target": {"entityType": "Opinion"}, "permission": [{"action": "read", "duty": [
        {"action": "compensate"}]}]}, "policy.permission[0].duty[0].action"),
    ({"@type": "Offer", "assigner": "fb", "target": {"entityType": "Opinion"}, "permission": [{"action": "read"}]},
     "policy.assigner"),
    ({"@type": "Offer", "target": {"entityType": "Opinion"}, "permission": [{"action": "read"}],
      "conflict": "perm"}, "policy.conflict"),
])
async def test_invalid_policies_name_the_member(client: httpx.AsyncClient, policy: dict[str, Any],
                                                member: str) -> None:
    await setup_orgs(client)
    r = await client.post(f"{S}/offers", json=offer_body(policy=policy), headers=T)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["type"] == "https://uri.etsi.org/ngsi-ld/errors/BadRequestData"
    assert body["detail"].startswith(member), body["detail"]


async def test_offer_needs_registered_provider_and_title(client: httpx.AsyncClient) -> None:
    r = await client.post(f"{S}/offers", json=offer_body(provider="ghost"), headers=T)
    assert r.status_code == 404
    await setup_orgs(client)
    body = offer_body()
    del body["title"]
    r = await client.post(f"{S}/offers", json=body, headers=T)
    assert r.status_code == 400 and "title" in r.json()["detail"]


async def test_reserved_entities_are_checked(client: httpx.AsyncClient) -> None:
    """A malformed sharing entity written through NGSI-LD is refused (it would silently share nothing)."""
    ent = {"id": "urn:ngsi-ld:SharingOffer:x", "type": "urbanmim:SharingOffer",
           "urbanmim:provider": {"type": "Property", "value": "fa"},
           "urbanmim:status": {"type": "Property", "value": "active"},
           "urbanmim:policy": {"type": "JsonProperty", "json": {"@type": "Offer", "permission": [{"action": "x"}]}}}
    r = await client.post("/entities", json=ent, headers=T)
    assert r.status_code == 400 and "policy.permission[0]" in r.json()["detail"]
    await client.post(f"{S}/organisations", json={"id": "fa", "name": "A"}, headers=T)
    r = await client.post(f"{S}/organisations", json={"id": "fa", "name": "A"}, headers={"NGSILD-Tenant": "other"})
    assert r.status_code == 400 and "already registered" in r.json()["detail"]


def _no_network(url: str, options: Any = None) -> Any:
    raise jsonld.JsonLdError(f"no network in tests: {url}", "loading document failed")


async def test_catalogue_is_dcat_jsonld(client: httpx.AsyncClient) -> None:
    await setup_orgs(client)
    offer = (await client.post(f"{S}/offers", json=offer_body(), headers=T)).json()
    r = await client.get(f"{S}/catalogue", headers=T)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/ld+json")
    cat = r.json()
    assert cat["@type"] == "dcat:Catalog" and isinstance(cat["@context"], dict)
    (ds,) = cat["dcat:dataset"]
    assert ds["dct:identifier"] == offer["id"] and ds["dct:title"] == "Festival A opinions"
    assert ds["dct:publisher"]["foaf:name"] == "Festival A"
    urls = [d["dcat:accessURL"] for d in ds["dcat:distribution"]]
    assert any("/ngsi-ld/v1/entities?type=" in u for u in urls)
    assert any(u.endswith("/ogc/culture/collections/Opinion") for u in urls)

    expanded = jsonld.expand(cat, {"documentLoader": _no_network})
    (catalog,) = expanded
    assert catalog["@type"] == ["http://www.w3.org/ns/dcat#Catalog"]
    (dataset,) = catalog["http://www.w3.org/ns/dcat#dataset"]
    assert dataset["@type"] == ["http://www.w3.org/ns/dcat#Dataset"]
    (policy,) = dataset["http://www.w3.org/ns/odrl/2/hasPolicy"]
    assert policy["@id"] == offer["id"] and policy["@type"] == ["http://www.w3.org/ns/odrl/2/Offer"]
    assert policy["http://www.w3.org/ns/odrl/2/assigner"] == [{"@id": "urn:ngsi-ld:Organisation:fa"}]
    (perm,) = policy["http://www.w3.org/ns/odrl/2/permission"]
    assert perm["http://www.w3.org/ns/odrl/2/action"] == [{"@id": "http://www.w3.org/ns/odrl/2/use"}]
    theme = dataset["http://www.w3.org/ns/dcat#theme"]
    assert theme == [{"@id": "http://publications.europa.eu/resource/authority/data-theme/EDUC"}]
    # RDF conversion works too (every value is well-formed)
    nquads = jsonld.to_rdf(cat, {"format": "application/n-quads", "documentLoader": _no_network})
    assert "<http://www.w3.org/ns/odrl/2/hasPolicy>" in nquads

    # across tenants
    await client.post(f"{S}/organisations", json={"id": "lx", "name": "Lab X"}, headers={"NGSILD-Tenant": "other"})
    await client.post(f"{S}/offers", json=offer_body(provider="lx", title="Lab X"), headers={"NGSILD-Tenant": "other"})
    r = await client.get(f"{S}/catalogue", params={"allTenants": "true"})
    tenants = sorted(d["tenant"] for d in r.json()["dcat:dataset"])
    assert tenants == ["culture", "other"]
    jsonld.expand(r.json(), {"documentLoader": _no_network})


async def test_explain_with_security_off(client: httpx.AsyncClient) -> None:
    await client.post("/entities", json={"id": "urn:ngsi-ld:Opinion:1", "type": "Opinion",
                                         "rating": {"type": "Property", "value": 4}}, headers=T)
    r = await client.post(f"{S}/explain", json={"entity": "urn:ngsi-ld:Opinion:1", "attribute": "rating"}, headers=T)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["visible"] is True and out["attribute"] == {"name": "rating", "present": True, "visible": True}
    assert out["owner"] is None
    r = await client.post(f"{S}/explain", json={"entity": "urn:ngsi-ld:Opinion:404"}, headers=T)
    assert r.status_code == 404


async def test_algorithm_registered(client: httpx.AsyncClient) -> None:
    r = await client.get("http://testserver/algorithms/v1/algorithms/mim3.odrl-evaluator")
    assert r.status_code == 200, r.text
    assert r.json()["kind"] == "security"


@pytest.mark.postgres
async def test_other_processes_follow_within_the_sync_interval(pg_db: str) -> None:
    """Two brokers on one PostgreSQL database: an offer published or withdrawn through one is in force in
    the other within ``sharing_sync_interval``."""
    import asyncio

    from urbanmim.app import create_app
    from urbanmim.settings import Settings
    apps = [create_app(Settings(db=pg_db, sharing_sync_interval=0.2)) for _ in range(2)]
    async with apps[0].router.lifespan_context(apps[0]), apps[1].router.lifespan_context(apps[1]):
        one = httpx.AsyncClient(transport=httpx.ASGITransport(app=apps[0]), base_url="http://testserver")
        await setup_orgs(httpx.AsyncClient(transport=httpx.ASGITransport(app=apps[0]),
                                           base_url="http://testserver/ngsi-ld/v1"))
        offer = (await one.post("/sharing/v1/offers", json=offer_body(), headers=T)).json()
        other = apps[1].state.sharing

        async def until(cond: Any) -> None:
            for _ in range(50):
                if cond():
                    return
                await asyncio.sleep(0.1)
            raise AssertionError("the other process did not follow")
        await until(lambda: offer["id"] in other.tenant("culture").offers and "fb" in other.orgs)
        await one.post(f"/sharing/v1/offers/{offer['id']}/withdraw", headers=T)
        await until(lambda: not other.tenant("culture").offers[offer["id"]].active)
        await one.aclose()


async def test_catalogue_metadata_is_checked(client: httpx.AsyncClient) -> None:
    await setup_orgs(client)
    for bad, word in (({"temporal": {"start": "yesterday"}}, "temporal.start"), ({"theme": ["education"]}, "theme"),
                      ({"spatial": {"type": "Point"}}, "coordinates"), ({"keyword": [1]}, "keyword")):
        r = await client.post(f"{S}/offers", json=offer_body(**bad), headers=T)
        assert r.status_code == 400 and word in r.json()["detail"], r.text


def test_read_count_is_not_counted_twice_while_it_is_being_stored() -> None:
    """The agreement view takes the stored readCount inside the write transaction, before the
    flush learns it committed (on PostgreSQL it also waits for other processes): during that
    window the in-flight reads are already in the view and must not be added again."""
    from dataclasses import replace

    from urbanmim.sharing.registry import Agreement, SharingRegistry
    reg = SharingRegistry()
    a = Agreement("urn:a", "city", "urn:o", "p", "c", None, "2026-01-01T00:00:00Z",  # type: ignore[arg-type]
                  read_count=5)
    reg.count("city", ["urn:a", "urn:a"])
    assert reg.reads(a) == 7
    [(tenant, aid, n, _)] = reg.take_pending()
    assert (tenant, aid, n) == ("city", "urn:a", 2) and reg.reads(a) == 7
    reg.count("city", ["urn:a"])                  # a read while the flush is under way
    reg.storing("city", "urn:a", 7)
    assert reg.reads(a) == 8                      # view not updated yet: in flight + pending
    stored = replace(a, read_count=7)             # the view after the write's listener ran
    assert reg.reads(stored) == 8
    reg.stored("city", "urn:a", True)
    assert reg.reads(stored) == 8
    # a failed write puts the reads back to pending
    [(_, _, n, _)] = reg.take_pending()
    reg.storing("city", "urn:a", 8)
    reg.stored("city", "urn:a", False)
    assert n == 1 and reg.reads(stored) == 8 and reg.take_pending()[0][2] == 1
