"""Who is asking: the principal of the current request (MIM6 identity).

Why a ContextVar and not a parameter: every read and write path (NGSI-LD API, batch,
temporal, OGC API, twin, KPI jobs, ingestion) reaches the store through
``app.state.entities``; threading a ``principal`` argument through all of them would
touch every caller. The auth middleware sets the principal once per request
(:func:`use_principal`), and the service layer reads it (:func:`current_principal`).

The default is :data:`SYSTEM`: background work (the notifier, KPI jobs, bookkeeping)
that runs outside a request acts as the platform itself. Requests *always* get an
explicit principal from the middleware (:data:`ANONYMOUS` without credentials), so an
HTTP caller can never fall through to SYSTEM.

This module is a contract shared by SEC (MIM6), SHARE (MIM3) and CONSENT (MIM4): the
names and shapes below do not change.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

ROLES = ("admin", "editor", "reader", "device")
_EMPTY: frozenset[str] = frozenset()
PURPOSE_HEADER = "Urbanmim-Purpose"


@dataclass(frozen=True)
class Principal:
    """An authenticated (or anonymous) caller; immutable, safe to keep in a subscription."""

    subject: str                                   # token `sub`, "apikey:<id>", "anonymous" or "system"
    roles: Mapping[str, frozenset[str]] = field(default_factory=dict)  # tenant -> roles
    organisation: str | None = None                # MIM3 organisation id (token claim "org")
    purpose: str | None = None                     # DPV purpose: header Urbanmim-Purpose, else claim "purpose"
    client: str = ""                               # rate-limit and audit key
    system: bool = False                           # the platform itself
    # SEC additions (not part of the shared contract's required names)
    issuer: str | None = None                      # token `iss` ("" for API keys)
    entities: frozenset[str] | None = None         # device keys: the only entity ids it may write (None = any)

    def __hash__(self) -> int:                     # roles is a mapping: hash what identifies the caller
        return hash((self.subject, self.organisation, self.purpose, self.client, self.system))

    def has_role(self, tenant: str, *roles: str) -> bool:
        """True if the principal holds any of ``roles`` in ``tenant`` (``"*"`` = every tenant)."""
        if self.system:
            return True
        got = self.roles_in(tenant)
        return bool(got) and (not roles or not got.isdisjoint(roles))

    def roles_in(self, tenant: str) -> frozenset[str]:
        """Every role held in ``tenant`` (including roles granted for every tenant with ``"*"``)."""
        got = self.roles.get(tenant)
        star = self.roles.get("*")
        if not star:
            return got or _EMPTY
        return star if not got else got | star

    @property
    def anonymous(self) -> bool:
        return not self.system and self.subject == "anonymous"

    @property
    def authenticated(self) -> bool:
        return self.system or self.subject != "anonymous"

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (kept with a subscription so notifications are filtered as its creator)."""
        # roles as the credential states them (stored role bindings are looked up again on use)
        claimed = getattr(self.roles, "claimed", self.roles)
        out: dict[str, Any] = {"subject": self.subject, "roles": {t: sorted(r) for t, r in claimed.items()}}
        for k in ("organisation", "purpose", "issuer"):
            if getattr(self, k) is not None:
                out[k] = getattr(self, k)
        if self.client:
            out["client"] = self.client
        if self.system:
            out["system"] = True
        if self.entities is not None:
            out["entities"] = sorted(self.entities)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Principal:
        ents = data.get("entities")
        return cls(subject=str(data.get("subject", "anonymous")),
                   roles={str(t): frozenset(r) for t, r in (data.get("roles") or {}).items()},
                   organisation=data.get("organisation"), purpose=data.get("purpose"),
                   client=str(data.get("client", "")), system=bool(data.get("system", False)),
                   issuer=data.get("issuer"), entities=frozenset(ents) if ents is not None else None)


SYSTEM = Principal("system", {}, system=True, client="system")
ANONYMOUS = Principal("anonymous", {})

_CURRENT: ContextVar[Principal] = ContextVar("urbanmim_principal", default=SYSTEM)


def current_principal() -> Principal:
    """The principal of the running request (SYSTEM outside any request)."""
    return _CURRENT.get()


@contextlib.contextmanager
def use_principal(p: Principal) -> Iterator[Principal]:
    """Run a block as ``p`` (the auth middleware wraps each request in one)."""
    token = _CURRENT.set(p)
    try:
        yield p
    finally:
        _CURRENT.reset(token)
