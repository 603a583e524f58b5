"""The MIM4 consent decider: personal attributes are hidden unless the subject agreed.

It plugs into ``app.state.access.deciders`` (urbanmim/security/access.py) and so applies on
every path SEC enforces — retrieve, query, temporal reads, subscription notifications. It
never *grants* access to an entity (roles and agreements do that): on personal entities it
abstains and hides the personal attributes the caller may not see, which the combination
rule subtracts from whatever the other deciders allow.

A personal attribute of an entity is visible to a caller when, for **every** data subject of
the entity (usually one), the caller is that subject, or holds an active consent from that
subject whose recipient is the caller's organisation (or ``any``) and whose DPV purpose
covers the purpose the request states (``Urbanmim-Purpose`` header / token claim). A request
that states no purpose sees no one else's personal data. An entity of a marked type whose
subject cannot be found keeps its personal attributes hidden from everyone but the platform.

Writes: the reserved rule, consent and erasure entities are written only through
``/consent/v1`` (which checks who may give, revoke or erase); any other write of them is
denied, and reading them through the NGSI-LD API is for tenant admins only.
"""

from __future__ import annotations

from typing import Any

from urbanmim.algorithms.register import Algorithm, Risk
from urbanmim.consent import dpv
from urbanmim.consent.model import RESERVED_TYPES
from urbanmim.consent.registry import ConsentRegistry, now_ms
from urbanmim.ngsild.entity import Entity
from urbanmim.security.access import Decision
from urbanmim.security.principal import Principal

NAME = "consent"
_ABSTAIN = Decision("abstain", source=NAME)

CONSENT_ALGORITHM = Algorithm(
    id="mim4.consent-decision", name="Consent check on personal data", version="1", kind="security",
    purpose="Show a person's data (attributes a city declared personal) only to that person and to organisations "
            "the person gave consent to, for the purpose they consented to.",
    method="For each entity of a type with a personal-data rule: find its data subject(s) (the entity itself or "
           "the id in a subject attribute); the personal attributes stay visible if the caller is the subject, or "
           "holds an active, unexpired consent from every subject whose recipient is the caller's organisation or "
           "'any' and whose W3C DPV purpose is the request's stated purpose or broader than it (DPV hierarchy "
           "shipped with the platform). Otherwise they are removed from the response; nothing else is changed.",
    inputs=("personal-data rules (entity type, personal attributes, subject attribute)",
            "consents (subject, recipient organisation, DPV purpose, expiry, revocation)",
            "the caller: subject, organisation, stated purpose (Urbanmim-Purpose)"),
    outputs=("per read: the personal attributes to hide, with a reason shown by the access 'explain' function",),
    owner="the city's data protection officer and data platform team", contact="see the platform's /algorithms page",
    human_oversight="City admins declare which attributes are personal; citizens give and revoke consent "
                    "(/consent/v1/consents), see everything held about them (export) and can have it erased; "
                    "every decision carries a reason that admins can inspect.",
    risks=(Risk("Personal data in an attribute nobody marked as personal is shown without consent.",
                "Admins review each entity type that describes people when it is introduced; the rule can list "
                "any attribute, and the export shows subjects exactly what is marked."),
           Risk("A caller states a purpose it does not really pursue.",
                "The stated purpose is recorded in the audit log with every read; consent is also bound to the "
                "recipient organisation, not only to the purpose.")),
    component="consent", references=("MIM4 (OASC)", "GDPR Art. 6, 7, 15, 17, 20", "W3C DPV https://w3id.org/dpv"),
)


def access_of(app: Any) -> Any:
    """MIM6's AccessControl: ``app.state.access``, else the one the EntityService enforces with."""
    access = getattr(app.state, "access", None)
    if access is None:
        access = getattr(getattr(app.state, "entities", None), "access", None)
    return access


class ConsentDecider:
    """``Decider`` (urbanmim/security/access.py) answering from the :class:`ConsentRegistry`."""

    name = NAME

    def __init__(self, registry: ConsentRegistry):
        self.registry = registry

    def read(self, p: Principal, tenant: str, entity: Entity) -> Decision:
        types = entity.get("type") or ()
        if p.system:
            return _ABSTAIN
        if not RESERVED_TYPES.isdisjoint(types):
            if p.has_role(tenant, "admin"):
                return Decision("abstain", reason="consent records: visible to tenant admins", source=NAME)
            return Decision("deny", reason="consent records are read through /consent/v1", source=NAME)
        rules = self.registry.rules_for(tenant, types)
        if not rules:
            return _ABSTAIN
        attrs = entity.get("attrs") or {}
        personal = frozenset(a for r in rules for a in r.attributes if a in attrs)
        if not personal:
            return _ABSTAIN
        subjects: set[str] = set()
        for r in rules:
            subjects |= r.subjects(entity)
        if not subjects:
            return Decision("abstain", hidden=personal, source=NAME,
                            reason="personal data whose data subject is not recorded: hidden")
        purpose = dpv.normalise(p.purpose)
        now = now_ms()
        granted: list[str] = []
        for s in sorted(subjects):
            if s == p.subject:
                granted.append(f"the caller is the data subject {s}")
                continue
            if p.purpose is None:
                return Decision("abstain", hidden=personal, source=NAME,
                                reason=f"personal data of {s}: the request states no purpose (Urbanmim-Purpose)")
            if purpose is None:
                return Decision("abstain", hidden=personal, source=NAME,
                                reason=f"personal data of {s}: {p.purpose!r} is not a DPV purpose this platform "
                                       "knows, so no consent covers it")
            hit = next((c for c in self.registry.consents_of(tenant, s)
                        if c.applies(p.organisation, purpose, now)), None)
            if hit is None:
                return Decision("abstain", hidden=personal, source=NAME,
                                reason=f"personal data of {s}: no active consent to "
                                       f"{p.organisation or '(no organisation)'} for {purpose}")
            granted.append(f"consent {hit.id} of {s} to {hit.recipient} for {hit.purpose} covers {purpose}")
        return Decision("abstain", reason="personal data visible: " + "; ".join(granted), source=NAME)

    def write(self, p: Principal, tenant: str, before: Entity | None, after: Entity | None) -> Decision:
        if p.system:
            return _ABSTAIN
        for ent in (before, after):
            if ent is not None and RESERVED_TYPES.intersection(ent.get("type") or ()):
                return Decision("deny", reason="personal-data rules, consents and erasure records are written "
                                               "through /consent/v1 only", source=NAME)
        return _ABSTAIN
