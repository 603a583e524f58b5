"""The in-memory view of every tenant's personal-data rules and consents.

The consent decider runs on every read of every entity (and inside the notifier), so it
must answer from memory. :class:`ConsentRegistry` is loaded at start and kept in step by a
store ChangeListener that sees every write of a reserved entity inside the write
transaction, whatever API made it — which is what makes "revoked" effective on the very next
request. A malformed rule or consent is refused at write time (:meth:`check_reserved`, run as
an EntityService validator) instead of silently changing what is visible.

Several processes on one PostgreSQL database: a change made by another process reaches this
cache only after a restart or :meth:`reload` — see docs/consent.md.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from urbanmim.consent.model import (
    CONSENT_TYPE,
    RESERVED_TYPES,
    RULE_PREFIX,
    RULE_TYPE,
    Consent,
    PersonalDataRule,
    parse_consent,
    parse_rule,
)
from urbanmim.errors import BadRequestData
from urbanmim.ngsild.entity import Entity
from urbanmim.service.reserved import ReservedCache
from urbanmim.store.base import all_of_type


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class TenantConsent:
    rules: dict[str, PersonalDataRule] = field(default_factory=dict)      # type IRI -> rule
    consents: dict[str, Consent] = field(default_factory=dict)            # consent id -> consent
    by_subject: dict[str, set[str]] = field(default_factory=dict)         # subject -> consent ids


class ConsentRegistry(ReservedCache):
    reserved_types = RESERVED_TYPES

    def __init__(self) -> None:
        self.tenants: dict[str, TenantConsent] = {}
        self._lock = threading.RLock()
        self._version = 0              # bumped by every change seen (see reload)

    def tenant(self, tenant: str) -> TenantConsent:
        tc = self.tenants.get(tenant)
        if tc is None:
            with self._lock:
                tc = self.tenants.setdefault(tenant, TenantConsent())
        return tc

    # ---- look-ups (the decider's hot path: dict reads only) -----------------------------------------
    def rules_for(self, tenant: str, types: Iterable[str]) -> list[PersonalDataRule]:
        tc = self.tenants.get(tenant)
        if tc is None or not tc.rules:
            return []
        return [r for t in types if (r := tc.rules.get(t)) is not None]

    def consents_of(self, tenant: str, subject: str) -> list[Consent]:
        tc = self.tenants.get(tenant)
        if tc is None:
            return []
        with self._lock:
            return [tc.consents[c] for c in tc.by_subject.get(subject, ()) if c in tc.consents]

    def all_consents(self, tenant: str) -> list[Consent]:
        tc = self.tenants.get(tenant)
        if tc is None:
            return []
        with self._lock:
            return list(tc.consents.values())

    def consent(self, tenant: str, consent_id: str) -> Consent | None:
        tc = self.tenants.get(tenant)
        return tc.consents.get(consent_id) if tc is not None else None

    # ---- keeping in step with the store -----------------------------------------------------------

    def load(self, tenant: str, entities: Iterable[Entity]) -> None:
        for ent in entities:
            try:
                self.apply(tenant, ent["id"], ent)
            except BadRequestData:
                pass

    def apply(self, tenant: str, eid: str, ent: Entity | None) -> None:
        with self._lock:
            self._version += 1
            _apply_to(self.tenant(tenant), eid, ent)

    def check_reserved(self, tenant: str, ent: Entity) -> None:
        """EntityService validator: a rule or consent written by any API must parse."""
        types = ent.get("type") or ()
        if RULE_TYPE in types:
            parse_rule(ent)
        if CONSENT_TYPE in types:
            parse_consent(ent)

    async def reload(self, store: Any, attempts: int = 3) -> None:
        """(Re)load every tenant's rules and consents from the store: at start, and periodically on
        PostgreSQL with several processes. A tenant's fresh view replaces the old one only if no
        change reached this process while it was read (else this process's own change, already
        in force, could be undone until the next reload); it is retried a few times."""
        for tenant in dict.fromkeys(["", *await store.tenants()]):
            if tenant and not await store.tenant_exists(tenant):
                continue
            for _ in range(attempts):
                before = self._version
                fresh = TenantConsent()
                for type_iri in (RULE_TYPE, CONSENT_TYPE):
                    for ent in await all_of_type(store, tenant, type_iri):
                        try:
                            _apply_to(fresh, ent["id"], ent)
                        except BadRequestData:
                            pass
                with self._lock:
                    if self._version == before:
                        self.tenants[tenant] = fresh
                        break


def _apply_to(tc: TenantConsent, eid: str, ent: Entity | None) -> None:
    """One reserved entity written (``ent``) or deleted (None) → the tenant's view (caller holds the lock)."""
    if ent is None:
        if eid.startswith(RULE_PREFIX):
            for t in [t for t, r in tc.rules.items() if r.entity_id == eid]:
                del tc.rules[t]
        old = tc.consents.pop(eid, None)
        if old is not None:
            tc.by_subject.get(old.subject, set()).discard(eid)
        return
    if RULE_TYPE in ent["type"]:
        rule = parse_rule(ent)
        tc.rules[rule.type_iri] = rule
    if CONSENT_TYPE in ent["type"]:
        c = parse_consent(ent)
        old = tc.consents.get(eid)
        if old is not None and old.subject != c.subject:
            tc.by_subject.get(old.subject, set()).discard(eid)
        tc.consents[eid] = c
        tc.by_subject.setdefault(c.subject, set()).add(eid)
