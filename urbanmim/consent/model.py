"""Personal-data rules, consents and erasure records — and their form as reserved NGSI-LD entities.

Why entities (the same choice as MIM2's validation policies, ``urbanmim/models/registry.py``):
the store has no generic table; a reserved entity written through ``app.state.entities`` is
stored by both backends, lives in the city's own tenant, is backed up with the rest and is
seen by the store's change listeners inside the write transaction — so a consent given or
revoked takes effect on the very next request. ``urbanmim:`` is an IRI scheme of its own:
the names expand and compact to themselves under every @context.

* ``urbanmim:PersonalDataRule`` — one per (tenant, entity type): which attributes of that
  type are personal, and where the data subject is (the entity itself, or the entity id held
  by one of its attributes, e.g. a Relationship ``refDataSubject`` or ``owner``);
* ``urbanmim:Consent`` — a data subject's consent to a recipient organisation (or ``any``)
  for one DPV purpose, with an optional expiry; revoking keeps the record with ``revokedAt``
  (a controller must be able to show which consent it relied on, GDPR Art. 7(1));
* ``urbanmim:ErasureRecord`` — that an erasure happened: who asked, when, which entity types
  and attributes, how many history instances — never the erased values, and the subject and
  entity ids only as salted hashes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from urbanmim.consent import dpv
from urbanmim.errors import BadRequestData
from urbanmim.ngsild.entity import Entity, default_instance, value_of
from urbanmim.temporal.timeutil import opt_ms

RULE_TYPE = "urbanmim:PersonalDataRule"
CONSENT_TYPE = "urbanmim:Consent"
ERASURE_TYPE = "urbanmim:ErasureRecord"
RESERVED_TYPES = frozenset({RULE_TYPE, CONSENT_TYPE, ERASURE_TYPE})

ANY = "any"            # a consent's recipient: every organisation
SELF = "@self"         # a rule's subject: the entity itself is the data subject

A_TARGET, A_ATTRS, A_SUBJECT_ATTR, A_CONTEXT, A_DESCRIPTION = (
    "urbanmim:targetType", "urbanmim:personalAttributes", "urbanmim:subjectAttribute", "urbanmim:context",
    "urbanmim:description")
A_DATA_SUBJECT, A_RECIPIENT, A_PURPOSE, A_GIVEN_AT, A_GIVEN_BY, A_EXPIRES, A_REVOKED_AT, A_REVOKED_BY = (
    "urbanmim:dataSubject", "urbanmim:recipient", "urbanmim:purpose", "urbanmim:givenAt", "urbanmim:givenBy",
    "urbanmim:expiresAt", "urbanmim:revokedAt", "urbanmim:revokedBy")
A_SUBJECT_HASH, A_REQUESTED_BY, A_ERASED_AT, A_ITEMS, A_CONSENTS_REVOKED = (
    "urbanmim:subjectHash", "urbanmim:requestedBy", "urbanmim:erasedAt", "urbanmim:items",
    "urbanmim:consentsRevoked")
RULE_PREFIX = "urn:ngsi-ld:PersonalDataRule:"
CONSENT_PREFIX = "urn:ngsi-ld:Consent:"
ERASURE_PREFIX = "urn:ngsi-ld:ErasureRecord:"


def rule_id(type_iri: str) -> str:
    """One rule entity per (tenant, entity type): its id is derived from the type IRI."""
    return RULE_PREFIX + hashlib.sha256(type_iri.encode()).hexdigest()[:24]


def pseudonym(tenant: str, value: str) -> str:
    """The id an erasure record keeps instead of a subject or entity id (tenant-salted SHA-256):
    whoever knows the id can find the record; the record alone does not give the id back."""
    return "sha256:" + hashlib.sha256(f"urbanmim-erasure\x00{tenant}\x00{value}".encode()).hexdigest()


def _prop(v: Any) -> dict[str, Any]:
    return {"type": "Property", "value": v}


def _attr(ent: Entity, iri: str) -> Any:
    inst = default_instance(ent["attrs"].get(iri) or [])
    return value_of(inst) if inst is not None else None


def _ids_in(value: Any) -> set[str]:
    if isinstance(value, str) and value:
        return {value}
    if isinstance(value, list):
        return {v for v in value if isinstance(v, str) and v}
    if isinstance(value, dict) and isinstance(value.get("@list"), list):
        return _ids_in(value["@list"])
    return set()


@dataclass(frozen=True)
class PersonalDataRule:
    """Which attributes of ``type_iri`` are personal data, and who their data subject is."""

    type_iri: str
    attributes: frozenset[str]             # expanded attribute IRIs
    subject_attribute: str | None = None   # None: the entity id is the data subject
    context: Any = None                    # the @context it was declared with (compacting on output)
    description: str = ""

    @property
    def entity_id(self) -> str:
        return rule_id(self.type_iri)

    def subjects(self, ent: Entity) -> set[str]:
        """The data subjects of an entity of this type (every instance of the subject attribute)."""
        if self.subject_attribute is None:
            return {ent["id"]}
        out: set[str] = set()
        for inst in ent["attrs"].get(self.subject_attribute) or ():
            out |= _ids_in(value_of(inst))
        return out

    def erasable(self) -> frozenset[str]:
        """What an erasure removes from an entity that refers to the subject: the personal
        attributes and the link to the subject itself (it, too, is about the person)."""
        return self.attributes | ({self.subject_attribute} if self.subject_attribute else frozenset())

    def to_entity(self) -> Entity:
        attrs: dict[str, Any] = {A_TARGET: [_prop(self.type_iri)], A_ATTRS: [_prop(sorted(self.attributes))],
                                 A_SUBJECT_ATTR: [_prop(self.subject_attribute or SELF)]}
        if self.context is not None:
            attrs[A_CONTEXT] = [{"type": "JsonProperty", "json": self.context}]
        if self.description:
            attrs[A_DESCRIPTION] = [_prop(self.description)]
        return {"id": self.entity_id, "type": [RULE_TYPE], "attrs": attrs}

    def to_json(self, compact: Any = None) -> dict[str, Any]:
        c = compact or (lambda x: x)
        out: dict[str, Any] = {"id": self.entity_id, "type": c(self.type_iri), "typeIri": self.type_iri,
                               "attributes": sorted(c(a) for a in self.attributes),
                               "attributeIris": sorted(self.attributes),
                               "subject": c(self.subject_attribute) if self.subject_attribute else SELF}
        if self.subject_attribute:
            out["subjectIri"] = self.subject_attribute
        if self.description:
            out["description"] = self.description
        if self.context is not None:
            out["@context"] = self.context
        return out


def parse_rule(ent: Entity) -> PersonalDataRule:
    """A ``urbanmim:PersonalDataRule`` entity → :class:`PersonalDataRule` (400 naming what is wrong)."""
    type_iri, attrs, subj = _attr(ent, A_TARGET), _attr(ent, A_ATTRS), _attr(ent, A_SUBJECT_ATTR)
    if not isinstance(type_iri, str) or not type_iri:
        raise BadRequestData(f"{ent['id']}: {A_TARGET} must be a non-empty string")
    if not isinstance(attrs, list) or not attrs or not all(isinstance(a, str) and a for a in attrs):
        raise BadRequestData(f"{ent['id']}: {A_ATTRS} must be a non-empty list of attribute IRIs")
    if not isinstance(subj, str) or not subj:
        raise BadRequestData(f"{ent['id']}: {A_SUBJECT_ATTR} must be an attribute IRI or {SELF}")
    if ent["id"] != rule_id(type_iri):
        raise BadRequestData(f"the personal-data rule for {type_iri} must have the id {rule_id(type_iri)}")
    desc = _attr(ent, A_DESCRIPTION)
    return PersonalDataRule(type_iri, frozenset(attrs), None if subj == SELF else subj, _attr(ent, A_CONTEXT),
                            desc if isinstance(desc, str) else "")


@dataclass(frozen=True)
class Consent:
    """A data subject's consent to ``recipient`` for ``purpose`` (``dpv:X``)."""

    id: str
    subject: str
    recipient: str                  # organisation id, or ANY
    purpose: str                    # dpv:X (normalised)
    given_at: str
    given_by: str                   # the principal that recorded it (the subject, or an admin for them)
    expires_at: str | None = None
    revoked_at: str | None = None
    revoked_by: str | None = None
    _expires_ms: int | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_expires_ms", opt_ms(self.expires_at))

    def status(self, now_ms: int) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self._expires_ms is not None and now_ms >= self._expires_ms:
            return "expired"
        return "active"

    def applies(self, organisation: str | None, purpose: str, now_ms: int) -> bool:
        """Does this consent let ``organisation`` process the subject's data for ``purpose`` now?"""
        if self.status(now_ms) != "active":
            return False
        if self.recipient != ANY and (organisation is None or organisation != self.recipient):
            return False
        return dpv.covers(self.purpose, purpose)

    def to_entity(self) -> Entity:
        attrs: dict[str, Any] = {A_DATA_SUBJECT: [_prop(self.subject)], A_RECIPIENT: [_prop(self.recipient)],
                                 A_PURPOSE: [_prop(self.purpose)], A_GIVEN_AT: [_prop(self.given_at)],
                                 A_GIVEN_BY: [_prop(self.given_by)]}
        for iri, v in ((A_EXPIRES, self.expires_at), (A_REVOKED_AT, self.revoked_at),
                       (A_REVOKED_BY, self.revoked_by)):
            if v is not None:
                attrs[iri] = [_prop(v)]
        return {"id": self.id, "type": [CONSENT_TYPE], "attrs": attrs}

    def to_json(self, now_ms: int) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "subject": self.subject, "recipient": self.recipient,
                               "purpose": self.purpose, "purposeIri": dpv.NAMESPACE + self.purpose[len(dpv.PREFIX):],
                               "givenAt": self.given_at, "givenBy": self.given_by, "status": self.status(now_ms)}
        for k, v in (("expiresAt", self.expires_at), ("revokedAt", self.revoked_at), ("revokedBy", self.revoked_by)):
            if v is not None:
                out[k] = v
        return out


def parse_consent(ent: Entity) -> Consent:
    """A ``urbanmim:Consent`` entity → :class:`Consent` (400 naming what is wrong)."""
    if not ent["id"].startswith(CONSENT_PREFIX):
        raise BadRequestData(f"a {CONSENT_TYPE} id must start with {CONSENT_PREFIX}")
    vals = {iri: _attr(ent, iri) for iri in (A_DATA_SUBJECT, A_RECIPIENT, A_PURPOSE, A_GIVEN_AT, A_GIVEN_BY,
                                             A_EXPIRES, A_REVOKED_AT, A_REVOKED_BY)}
    for iri in (A_DATA_SUBJECT, A_RECIPIENT, A_PURPOSE, A_GIVEN_AT, A_GIVEN_BY):
        if not isinstance(vals[iri], str) or not vals[iri]:
            raise BadRequestData(f"{ent['id']}: {iri} must be a non-empty string")
    purpose = dpv.normalise(vals[A_PURPOSE])
    if purpose is None or purpose == dpv.ROOT:
        raise BadRequestData(f"{ent['id']}: {vals[A_PURPOSE]!r} is not a specific DPV purpose this platform knows "
                             "(GET /consent/v1/purposes lists them)")
    for iri in (A_EXPIRES, A_REVOKED_AT):
        if vals[iri] is not None and opt_ms(vals[iri]) is None:
            raise BadRequestData(f"{ent['id']}: {iri} must be an ISO 8601 date-time")
    return Consent(ent["id"], vals[A_DATA_SUBJECT], vals[A_RECIPIENT], purpose, vals[A_GIVEN_AT],
                   vals[A_GIVEN_BY], vals[A_EXPIRES], vals[A_REVOKED_AT], vals[A_REVOKED_BY])


def erasure_entity(record_id: str, tenant: str, subject: str, requested_by: str, erased_at: str,
                   items: list[dict[str, Any]], consents_revoked: int) -> Entity:
    """The record of an erasure: pseudonymised ids, types, attribute IRIs and counts — no values."""
    return {"id": record_id, "type": [ERASURE_TYPE], "attrs": {
        A_SUBJECT_HASH: [_prop(pseudonym(tenant, subject))], A_REQUESTED_BY: [_prop(requested_by)],
        A_ERASED_AT: [_prop(erased_at)], A_ITEMS: [{"type": "JsonProperty", "json": items}],
        A_CONSENTS_REVOKED: [_prop(consents_revoked)]}}


def erasure_json(ent: Entity) -> dict[str, Any]:
    return {"id": ent["id"], "subjectHash": _attr(ent, A_SUBJECT_HASH), "requestedBy": _attr(ent, A_REQUESTED_BY),
            "erasedAt": _attr(ent, A_ERASED_AT), "items": _attr(ent, A_ITEMS) or [],
            "consentsRevoked": _attr(ent, A_CONSENTS_REVOKED) or 0}
