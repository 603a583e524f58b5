"""Giving and revoking consent, declaring personal data: the writes behind ``/consent/v1``.

Each is one write of a reserved entity through ``app.state.entities`` as the platform
(``SYSTEM``) — the handler has already checked that the caller may act for the subject or is
a tenant admin; the consent decider refuses any other principal's write of these entities,
so the only way to give consent is this one, with its checks. The store's change listener
updates the :class:`ConsentRegistry` inside the same transaction: when the write is
acknowledged, the next request already sees it.
"""

from __future__ import annotations

import uuid
from typing import Any

from urbanmim.consent import dpv
from urbanmim.consent.model import CONSENT_PREFIX, Consent, PersonalDataRule
from urbanmim.consent.registry import now_ms
from urbanmim.errors import BadRequestData, ResourceNotFound
from urbanmim.security.principal import SYSTEM, use_principal
from urbanmim.service.entities import EntityService, now_iso, outcome_error
from urbanmim.store.base import Mutation
from urbanmim.temporal.timeutil import iso, parse_instant


def check_purpose(purpose: Any) -> str:
    """A consentable DPV purpose as ``dpv:X`` (400 when unknown, or the root ``dpv:Purpose``)."""
    got = dpv.normalise(purpose) if isinstance(purpose, str) else None
    if got is None:
        raise BadRequestData(f"purpose {purpose!r} is not a W3C DPV purpose this platform knows "
                             "(GET /consent/v1/purposes lists them)")
    if got == dpv.ROOT:
        raise BadRequestData("consent must be for a specific purpose, not dpv:Purpose itself")
    return got


async def _put(app: Any, tenant: str, ent: dict[str, Any]) -> None:
    svc: EntityService = app.state.entities
    with use_principal(SYSTEM):
        (out,) = await svc.batch(tenant, [Mutation(ent["id"], EntityService.replace_fn(ent, must_exist=False))])
    if out.error is not None:
        raise outcome_error(out)


async def give(app: Any, tenant: str, *, subject: str, recipient: str, purpose: str, given_by: str,
               expires_at: str | None = None) -> Consent:
    """Record a new consent (validated here: 400 for an unknown purpose or a past expiry)."""
    if not isinstance(subject, str) or not subject:
        raise BadRequestData("subject must be a non-empty string (the data subject's id)")
    if not isinstance(recipient, str) or not recipient:
        raise BadRequestData("recipient must be an organisation id or \"any\"")
    norm = check_purpose(purpose)
    if expires_at is not None:
        if not isinstance(expires_at, str):
            raise BadRequestData("expiresAt must be an ISO 8601 date-time")
        ms = parse_instant(expires_at, "expiresAt")
        if ms <= now_ms():
            raise BadRequestData("expiresAt is in the past")
        expires_at = iso(ms)
    c = Consent(CONSENT_PREFIX + uuid.uuid4().hex, subject, recipient, norm, now_iso(), given_by, expires_at)
    await _put(app, tenant, c.to_entity())
    return c


async def revoke(app: Any, tenant: str, consent: Consent, by: str) -> Consent:
    """Mark a consent revoked (the record stays: when it was given, by whom, when it ended)."""
    if consent.revoked_at is not None:
        return consent
    new = Consent(consent.id, consent.subject, consent.recipient, consent.purpose, consent.given_at,
                  consent.given_by, consent.expires_at, now_iso(), by)
    await _put(app, tenant, new.to_entity())
    return new


async def put_rule(app: Any, tenant: str, rule: PersonalDataRule) -> None:
    await _put(app, tenant, rule.to_entity())


async def delete_rule(app: Any, tenant: str, rule: PersonalDataRule) -> None:
    svc: EntityService = app.state.entities
    with use_principal(SYSTEM):
        try:
            await svc.delete(tenant, rule.entity_id)
        except ResourceNotFound:
            pass
