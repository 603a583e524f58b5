"""The DCAT-AP catalogue of what is on offer: one ``dcat:Dataset`` per active offer, as JSON-LD.

Why DCAT-AP: it is how European open-data portals (data.europa.eu and the national ones)
harvest catalogues, so a city's sharing offers become findable next to its open data. Each
dataset carries its offer as ``odrl:hasPolicy`` — the terms of use travel with the
description — and two distributions: the NGSI-LD query of the offered entity type and the
OGC API Features collection of the same type (``/ogc/{city}``, MIM7).

The @context is inline (:data:`CONTEXT`), never a remote document, so the catalogue expands
offline and a harvester needs nothing but the response (``tests/test_sharing_api.py`` expands
it with PyLD and a document loader that refuses every URL).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, urlencode

from urbanmim.sharing.odrl import Policy
from urbanmim.sharing.odrl_parse import ORG_PREFIX
from urbanmim.sharing.registry import Offer, Organisation

IANA = "https://www.iana.org/assignments/media-types/"
GEOJSON_LITERAL = IANA + "application/vnd.geo+json"
ODRL = "http://www.w3.org/ns/odrl/2/"

CONTEXT: dict[str, Any] = {
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "locn": "http://www.w3.org/ns/locn#",
    "odrl": ODRL,
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "dpv": "https://w3id.org/dpv#",
    "dcat:theme": {"@type": "@id"},
    "dcat:accessURL": {"@type": "@id"},
    "dcat:landingPage": {"@type": "@id"},
    "foaf:homepage": {"@type": "@id"},
    "odrl:hasPolicy": {"@type": "@id"},
    # the ODRL 2.2 terms the policies use (a subset of http://www.w3.org/ns/odrl.jsonld, inline)
    "uid": "@id",
    "Offer": "odrl:Offer", "Agreement": "odrl:Agreement", "Set": "odrl:Set",
    "assigner": {"@id": "odrl:assigner", "@type": "@id"},
    "assignee": {"@id": "odrl:assignee", "@type": "@id"},
    "permission": {"@id": "odrl:permission", "@container": "@set"},
    "prohibition": {"@id": "odrl:prohibition", "@container": "@set"},
    "duty": {"@id": "odrl:duty", "@container": "@set"},
    "target": {"@id": "odrl:target", "@type": "@id"},
    "action": {"@id": "odrl:action", "@type": "@vocab"},
    "constraint": {"@id": "odrl:constraint", "@container": "@set"},
    "leftOperand": {"@id": "odrl:leftOperand", "@type": "@vocab"},
    "operator": {"@id": "odrl:operator", "@type": "@vocab"},
    "rightOperand": {"@id": "odrl:rightOperand", "@type": "@json"},
    "and": {"@id": "odrl:and", "@container": "@list"},
    "or": {"@id": "odrl:or", "@container": "@list"},
    "xone": {"@id": "odrl:xone", "@container": "@list"},
    **{t: f"odrl:{t}" for t in ("use", "read", "distribute", "aggregate", "attribute", "inform", "purpose",
                                "dateTime", "spatial", "count", "eq", "neq", "lt", "lteq", "gt", "gteq", "isA",
                                "isPartOf", "isAnyOf", "isNoneOf")},
    # the entity selection (target) of this platform
    "entityType": {"@id": "urbanmim:entityType", "@type": "@id", "@container": "@set"},
    "idPattern": "urbanmim:idPattern",
    "attributes": {"@id": "urbanmim:attributes", "@type": "@id", "@container": "@set"},
    "tenant": "urbanmim:tenant",
}


def ogc_city(tenant: str) -> str:
    """The tenant as MIM7 names it in URLs (docs/ogc.md): ``~`` for the default one, ``/`` as ``~~``."""
    return quote(tenant.replace("/", "~~"), safe="~") if tenant else "~"


def party_iri(org: str) -> str:
    return ORG_PREFIX + org


def policy_jsonld(policy: Policy) -> dict[str, Any]:
    """The normalised policy with parties as IRIs (``urn:ngsi-ld:Organisation:<id>``), no @context."""
    doc = policy.to_json()
    doc.pop("@context", None)
    for k in ("assigner", "assignee"):
        if k in doc:
            doc[k] = party_iri(doc[k])
    return doc


def _publisher(org: str, orgs: dict[str, Organisation]) -> dict[str, Any]:
    o = orgs.get(org)
    out: dict[str, Any] = {"@id": party_iri(org), "@type": "foaf:Agent", "foaf:name": o.name if o else org}
    if o is not None and o.homepage:
        out["foaf:homepage"] = o.homepage
    return out


def _type_names(offer: Offer) -> list[str]:
    return sorted({t for r in offer.policy.permissions for t in r.target.types})


def dataset(offer: Offer, orgs: dict[str, Organisation], base: str,
            compact: Callable[[Offer, str], str]) -> dict[str, Any]:
    """One offer as a ``dcat:Dataset`` (``base`` = the broker's URL, no trailing slash)."""
    meta = offer.meta
    ds: dict[str, Any] = {
        "@id": f"{base}/sharing/v1/offers/{quote(offer.id, safe=':')}",
        "@type": "dcat:Dataset",
        "dct:identifier": offer.id,
        "dct:title": meta.get("title", offer.id),
        "dct:publisher": _publisher(offer.provider, orgs),
        "tenant": offer.tenant,
        "odrl:hasPolicy": policy_jsonld(offer.policy),
    }
    ds["dct:description"] = meta.get("description") or meta.get("title", offer.id)   # mandatory in DCAT-AP
    if meta.get("theme"):
        ds["dcat:theme"] = meta["theme"]
    if meta.get("keyword"):
        ds["dcat:keyword"] = meta["keyword"]
    if meta.get("spatial"):
        import orjson
        ds["dct:spatial"] = {"@type": "dct:Location", "locn:geometry": {
            "@value": orjson.dumps(meta["spatial"]).decode(), "@type": GEOJSON_LITERAL}}
    if meta.get("temporal"):
        period: dict[str, Any] = {"@type": "dct:PeriodOfTime"}
        for k, prop in (("start", "dcat:startDate"), ("end", "dcat:endDate")):
            if k in meta["temporal"]:
                period[prop] = {"@value": meta["temporal"][k], "@type": "xsd:dateTime"}
        ds["dct:temporal"] = period
    if offer.created_at:
        ds["dct:issued"] = {"@value": offer.created_at, "@type": "xsd:dateTime"}
    dists = []
    tenant_note = f"send the header NGSILD-Tenant: {offer.tenant}" if offer.tenant else "default tenant"
    for t in _type_names(offer):
        name = compact(offer, t)
        dists.append({"@type": "dcat:Distribution", "dct:title": f"NGSI-LD entities of type {name}",
                      "dcat:accessURL": f"{base}/ngsi-ld/v1/entities?{urlencode({'type': t})}",
                      "dcat:mediaType": {"@id": IANA + "application/ld+json"},
                      "dct:description": f"NGSI-LD API (ETSI GS CIM 009); {tenant_note}; bearer token of a "
                                         "member of an organisation holding an agreement on this offer"})
        dists.append({"@type": "dcat:Distribution", "dct:title": f"OGC API Features collection {name}",
                      "dcat:accessURL": f"{base}/ogc/{ogc_city(offer.tenant)}/collections/{quote(name, safe='')}",
                      "dcat:mediaType": {"@id": IANA + "application/geo+json"},
                      "dct:description": "OGC API Features (MIM7); the city (tenant) is in the path; bearer "
                                         "token as for the NGSI-LD distribution"})
    if dists:
        ds["dcat:distribution"] = dists
    return ds


def catalogue(offers: Iterable[Offer], orgs: dict[str, Organisation], base: str,
              compact: Callable[[Offer, str], str], tenant: str | None) -> dict[str, Any]:
    """A ``dcat:Catalog`` of the active offers (of one tenant, or of all when ``tenant`` is None)."""
    scope = "all tenants" if tenant is None else f"tenant {tenant or '(default)'}"
    url = f"{base}/sharing/v1/catalogue" + ("?allTenants=true" if tenant is None else "")
    return {
        "@context": CONTEXT,
        "@id": url,
        "@type": "dcat:Catalog",
        "dct:title": f"urbanmim data-sharing offers ({scope})",
        "dct:description": "Datasets organisations offer each other on this platform (MIM3). Each dataset's "
                           "odrl:hasPolicy states the terms; accept an offer with POST "
                           "/sharing/v1/offers/{id}/accept to get an agreement.",
        "dct:publisher": {"@type": "foaf:Agent", "foaf:name": "urbanmim data platform"
                          + ("" if tenant is None else f" ({tenant or 'default tenant'})")},
        "tenant": tenant if tenant is not None else "*",
        "dcat:dataset": [dataset(o, orgs, base, compact) for o in sorted(offers, key=lambda o: o.id) if o.active],
    }
