"""The W3C Data Privacy Vocabulary (DPV) purposes the platform understands, with their hierarchy.

Why a table in the code and not a download: consent is checked on every read of personal
data, offline, in the writer's and the reader's path; the vocabulary must be there without a
network and must not change under a running broker. This is a curated subset of the DPV 2
``Purpose`` taxonomy (namespace ``https://w3id.org/dpv#``, prefix ``dpv:``), with each term's
broader terms (``skos:broader``; DPV's purposes form a poly-hierarchy, e.g. Service
Personalisation is both a Service Provision and a Personalisation).

Consent for a purpose covers that purpose and every narrower one (``covers``): a citizen who
consents to ``dpv:ResearchAndDevelopment`` has consented to ``dpv:AcademicResearch``, not the
other way round. The root ``dpv:Purpose`` is deliberately not acceptable as a consented purpose
(GDPR Art. 6(1)(a) and 7 ask for consent to *specific* purposes).
"""

from __future__ import annotations

from functools import cache, lru_cache

NAMESPACE = "https://w3id.org/dpv#"
PREFIX = "dpv:"
ROOT = "dpv:Purpose"
# namespaces under which the same terms have been published (DPV 0.x used the W3C one)
_ALIASES = (NAMESPACE, "http://w3id.org/dpv#", "https://www.w3.org/ns/dpv#", "http://www.w3.org/ns/dpv#")

# term -> (label, broader terms); every broader term is itself in the table (checked by a test)
PURPOSES: dict[str, tuple[str, tuple[str, ...]]] = {
    "Purpose": ("Purpose", ()),
    "AccountManagement": ("Account Management", ("Purpose",)),
    "CommunicationManagement": ("Communication Management", ("Purpose",)),
    "CommunicationForCustomerCare": ("Communication for Customer Care", ("CommunicationManagement", "CustomerCare")),
    "CustomerManagement": ("Customer Management", ("Purpose",)),
    "CustomerCare": ("Customer Care", ("CustomerManagement",)),
    "CustomerRelationshipManagement": ("Customer Relationship Management", ("CustomerManagement",)),
    "EnforceSecurity": ("Enforce Security", ("Purpose",)),
    "EnforceAccessControl": ("Enforce Access Control", ("EnforceSecurity",)),
    "IdentityAuthentication": ("Identity Authentication", ("EnforceSecurity",)),
    "Verification": ("Verification", ("EnforceSecurity",)),
    "IdentityVerification": ("Identity Verification", ("Verification",)),
    "AgeVerification": ("Age Verification", ("Verification",)),
    "MisusePreventionAndDetection": ("Misuse Prevention and Detection", ("EnforceSecurity",)),
    "FraudPreventionAndDetection": ("Fraud Prevention and Detection", ("MisusePreventionAndDetection",)),
    "EstablishContractualAgreement": ("Establish Contractual Agreement", ("Purpose",)),
    "FulfilmentOfObligation": ("Fulfilment of Obligation", ("Purpose",)),
    "LegalCompliance": ("Legal Compliance", ("FulfilmentOfObligation",)),
    "FulfilmentOfContractualObligation": ("Fulfilment of Contractual Obligation", ("FulfilmentOfObligation",)),
    "HumanResourceManagement": ("Human Resource Management", ("Purpose",)),
    "Marketing": ("Marketing", ("Purpose",)),
    "Advertising": ("Advertising", ("Marketing",)),
    "DirectMarketing": ("Direct Marketing", ("Marketing",)),
    "PublicRelations": ("Public Relations", ("Marketing",)),
    "SocialMediaMarketing": ("Social Media Marketing", ("Marketing",)),
    "PersonalisedAdvertising": ("Personalised Advertising", ("Advertising", "Personalisation")),
    "TargetedAdvertising": ("Targeted Advertising", ("PersonalisedAdvertising",)),
    "OrganisationGovernance": ("Organisation Governance", ("Purpose",)),
    "Personalisation": ("Personalisation", ("Purpose",)),
    "ServicePersonalisation": ("Service Personalisation", ("ServiceProvision", "Personalisation")),
    "ProvidePersonalisedRecommendations": ("Provide Personalised Recommendations", ("ServicePersonalisation",)),
    "UserInterfacePersonalisation": ("User Interface Personalisation", ("ServicePersonalisation",)),
    "PublicBenefit": ("Public Benefit", ("Purpose",)),
    "Counterterrorism": ("Counterterrorism", ("PublicBenefit",)),
    "RecordManagement": ("Record Management", ("Purpose",)),
    "ResearchAndDevelopment": ("Research and Development", ("Purpose",)),
    "AcademicResearch": ("Academic Research", ("ResearchAndDevelopment",)),
    "CommercialResearch": ("Commercial Research", ("ResearchAndDevelopment", "CommercialPurpose")),
    "NonCommercialResearch": ("Non-Commercial Research", ("ResearchAndDevelopment", "NonCommercialPurpose")),
    "CommercialPurpose": ("Commercial Purpose", ("Purpose",)),
    "NonCommercialPurpose": ("Non-Commercial Purpose", ("Purpose",)),
    "ServiceProvision": ("Service Provision", ("Purpose",)),
    "PaymentManagement": ("Payment Management", ("ServiceProvision",)),
    "RequestedServiceProvision": ("Requested Service Provision", ("ServiceProvision",)),
    "DeliveryOfGoods": ("Delivery of Goods", ("RequestedServiceProvision",)),
    "SearchFunctionalities": ("Search Functionalities", ("ServiceProvision",)),
    "SellProducts": ("Sell Products", ("ServiceProvision",)),
    "SellDataToThirdParties": ("Sell Data to Third Parties", ("SellProducts",)),
    "ServiceOptimisation": ("Service Optimisation", ("ServiceProvision",)),
    "OptimisationForConsumer": ("Optimisation for Consumer", ("ServiceOptimisation",)),
    "OptimisationForController": ("Optimisation for Controller", ("ServiceOptimisation",)),
    "ImproveExistingProductsAndServices": ("Improve Existing Products and Services", ("OptimisationForController",)),
    "InternalResourceOptimisation": ("Internal Resource Optimisation", ("OptimisationForController",)),
    "ServiceRegistration": ("Service Registration", ("ServiceProvision",)),
    "ServiceUsageAnalytics": ("Service Usage Analytics", ("ServiceProvision",)),
    "TechnicalServiceProvision": ("Technical Service Provision", ("ServiceProvision",)),
    "RepairImpairments": ("Repair Impairments", ("ServiceProvision",)),
    "VendorManagement": ("Vendor Management", ("Purpose",)),
}


@lru_cache(maxsize=1024)        # bounded: the text comes from a request header
def normalise(purpose: str | None) -> str | None:
    """``dpv:X`` for any spelling of a known purpose (``dpv:X``, ``https://w3id.org/dpv#X``, ``X``), else None."""
    if not isinstance(purpose, str):
        return None
    text = purpose.strip()
    for ns in (PREFIX, *_ALIASES):
        if text.startswith(ns):
            text = text[len(ns):]
            break
    return PREFIX + text if text in PURPOSES else None


@cache
def ancestors(purpose: str) -> frozenset[str]:
    """The purpose (``dpv:X``) and every broader purpose, transitively."""
    term = purpose.removeprefix(PREFIX)
    out = {PREFIX + term}
    for b in PURPOSES.get(term, ("", ()))[1]:
        out |= ancestors(PREFIX + b)
    return frozenset(out)


def covers(consented: str, requested: str) -> bool:
    """Does consent for ``consented`` cover a request stated for ``requested`` (both ``dpv:X``)?"""
    return consented in ancestors(requested)


def catalogue() -> list[dict[str, object]]:
    """The shipped purposes as JSON: term, IRI, label, broader (``GET /consent/v1/purposes``)."""
    return [{"id": PREFIX + t, "iri": NAMESPACE + t, "label": label, "broader": [PREFIX + b for b in broader]}
            for t, (label, broader) in sorted(PURPOSES.items())]
