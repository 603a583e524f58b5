"""The MIM6 component: authentication, the access decision, rate limits and the audit log.

How it plugs in (``install``, before the store opens — listed first in ``default_components``
so that ``app.state.access`` exists when MIM3 sharing and MIM4 consent append their deciders):

* ``app.state.access`` — the :class:`AccessControl` shared with ``app.state.entities``;
  enabled only with ``secure``, its first decider the :class:`RoleDecider`;
* a :class:`PolicyCache` of rules, role bindings and device keys, kept in step with their
  reserved entities by a store ChangeListener, and a validator that refuses malformed ones;
* with ``secure``: the :class:`AuditLog` (its ChangeListener writes audit entries in each
  write's transaction), the notifier's guard (``app.state.notification_guard``), and the
  :class:`SecurityMiddleware` around the whole app;
* ``/security/v1`` and ``/auth/v1`` (+ ``/.well-known/jwks.json``) mounted;
* the access decision registered in the MIM5 algorithm register (kind ``security``).

With security off and a non-loopback ``host``, install refuses to start unless
``insecure_public`` says so explicitly; open on loopback, it logs a loud warning and the home
page (``/``) carries a banner.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from typing import Any

from starlette.routing import Mount, Route

from urbanmim.algorithms.register import Algorithm, Risk, register_of
from urbanmim.components import Component
from urbanmim.security import api, enforce, policy
from urbanmim.security.access import AccessControl
from urbanmim.security.audit import AuditLog
from urbanmim.security.middleware import SecurityMiddleware
from urbanmim.security.ratelimit import RateLimiter
from urbanmim.security.roles import RoleDecider
from urbanmim.security.tokens import Authenticator, dev_key, public_jwks
from urbanmim.store.announcements import Follower
from urbanmim.store.base import all_of_type

log = logging.getLogger(__name__)

BANNER = ("SECURITY IS OFF: this broker is open to anyone who can reach it (loopback only). "
          "Start it with --secure (setting secure = true) before exposing it.")

ACCESS_ALGORITHM = Algorithm(
    id="mim6.access-decision", name="Access decision (roles, attribute rules, agreements, consent)", version="1",
    kind="security",
    purpose="Decide, for every read and write of city data, whether the caller may see or change each entity and "
            "which attributes, so data is shared only as its owners and the people it describes allow.",
    method="Each decider (MIM6 roles and per-type attribute rules, MIM3 agreements, MIM4 consent) answers permit, "
           "deny or abstain for one caller and one entity, optionally hiding attributes. An entity is visible or "
           "writable iff at least one decider permits and none denies; visible attributes are all minus every "
           "hidden set, intersected with every 'only' set. The platform's own background work is exempt.",
    inputs=("the caller's verified identity: token subject, tenant roles, organisation, stated purpose",
            "the entity (types, attributes, owner organisation)", "the tenant's access rules and role bindings"),
    outputs=("the entity as the caller may see it, or nothing (404/empty)", "401/403 for refused writes",
             "an audit entry per request (who, what, purpose, decision, reason)"),
    owner="the city's data platform team", contact="see the platform's /algorithms page",
    human_oversight="Tenant admins set roles and attribute rules through /security/v1; every decision can be "
                    "explained (/security/v1/explain) and is recorded in the append-only audit log that admins "
                    "query and export (/security/v1/audit).",
    risks=(Risk("A rule that is too broad exposes attributes (e.g. an owner's name) to every reader.",
                "Default: readers see a tenant's data only with a role; rules hide attributes per type; the audit "
                "log shows which attributes each caller was shown."),
           Risk("A compromised token or device key reads or writes in the caller's name.",
                "Short-lived tokens verified against the issuer's keys; device keys hashed at rest, bound to their "
                "entities and revocable at once; per-client rate limits; every write audited in its transaction."),
           Risk("Open deployments (security off) leak everything.",
                "Security off refuses to listen on a non-loopback address unless explicitly told so, and says so "
                "loudly in the log and on the home page.")),
    component="security", references=("MIM6 (OASC)", "RFC 6749 / RFC 6750 / RFC 7519 (OAuth2, bearer JWT)"),
)


def _csv(text: str) -> list[str]:
    return [x.strip() for x in (text or "").split(",") if x.strip()]


def parse_issuers(text: str) -> list[tuple[str, str | None]]:
    """``auth_issuers``: ``ISSUER[ JWKS_URL], ...`` (without a JWKS URL: OIDC discovery)."""
    out = []
    for item in _csv(text):
        parts = item.split()
        out.append((parts[0], parts[1] if len(parts) > 1 else None))
    return out


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class InsecureExposure(RuntimeError):
    """Security is off and the broker would listen beyond loopback."""


def check_exposure(settings: Any) -> str | None:
    """Raise when open + public without ``insecure_public``; the warning text when open at all."""
    if getattr(settings, "secure", False):
        return None
    host = str(getattr(settings, "host", "127.0.0.1"))
    if not is_loopback(host) and not getattr(settings, "insecure_public", False):
        raise InsecureExposure(
            f"refusing to serve {host} with security off: use --secure (or set secure = true), or "
            "--insecure-public if you really mean an open broker on a non-loopback address")
    if not is_loopback(host):
        return f"SECURITY IS OFF and this broker listens on {host} (--insecure-public): anyone can read and write."
    return BANNER


class Security:
    """``app.state.security``: everything MIM6 keeps per process."""

    def __init__(self, app: Any):
        s = app.state.settings
        self.settings = s
        self.enabled = bool(getattr(s, "secure", False))
        self.public_tenants = frozenset(_csv(getattr(s, "public_tenants", "")))
        self.policies = policy.PolicyCache()
        self.access: AccessControl = app.state.entities.access
        self.audit: AuditLog | None = None
        self.limiter = RateLimiter(float(getattr(s, "rate_limit", 0.0)), float(getattr(s, "rate_burst", 1.0)))
        self.authenticator: Authenticator = Authenticator(
            issuers=[], audience=getattr(s, "auth_audience", "urbanmim"), policies=self.policies)
        self.public_jwks: dict[str, Any] | None = None
        self.dev_key: Any = None
        self.follower: Follower | None = None       # other processes' changes (PostgreSQL)


def _wrap_app(app: Any, security: Security) -> None:
    """Put :class:`SecurityMiddleware` around the app's middleware stack (built here if not yet)."""
    stack = getattr(app, "middleware_stack", None)
    if isinstance(stack, SecurityMiddleware):
        return
    if stack is None and hasattr(app, "build_middleware_stack"):
        stack = app.build_middleware_stack()
    if stack is not None:
        app.middleware_stack = SecurityMiddleware(stack, security)


def _install(app: Any) -> None:
    settings = app.state.settings
    warning = check_exposure(settings)
    sec = Security(app)
    app.state.security = sec
    app.state.access = sec.access
    store = app.state.store
    store.listeners.append(sec.policies.on_change)

    def validate_reserved(tenant: str, ent: Any) -> None:
        if policy.RESERVED_TYPES.intersection(ent.get("type") or ()):
            sec.policies.check(ent)
    app.state.entities.validators.append(validate_reserved)
    register_of(app).register(ACCESS_ALGORITHM)
    routes = app.router.routes
    if not any(isinstance(r, Mount) and r.path == api.PREFIX for r in routes):
        routes.insert(0, Mount(api.PREFIX, routes=api.routes))
        routes.insert(0, Mount(api.AUTH_PREFIX, routes=api.auth_routes))
        routes.insert(0, Route("/.well-known/jwks.json", api.jwks, methods=["GET"]))
    if sec.enabled:
        sec.access.enabled = True
        sec.access.deciders.insert(0, RoleDecider(sec.policies, sec.public_tenants))
        sec.audit = AuditLog(store, flush_s=float(getattr(settings, "audit_flush_s", 1.0)),
                             reads=bool(getattr(settings, "audit_reads", True)))
        app.state.entities.audit = sec.audit
        store.listeners.append(sec.audit.listener)
        app.state.notification_guard = enforce.notification_guard(sec.access, sec.audit, sec.policies)
        _wrap_app(app, sec)
    elif warning:
        app.state.security_banner = warning
        log.warning("\n%s\n%s\n%s", "!" * 100, warning, "!" * 100)



async def _load(store: Any) -> policy.PolicyCache:
    cache = policy.PolicyCache()
    for tenant in dict.fromkeys(["", *await store.tenants()]):
        for t in sorted(policy.RESERVED_TYPES):
            cache.load(tenant, await all_of_type(store, tenant, t))
    return cache


async def _reload(sec: Security, store: Any) -> None:
    """Every tenant's rules, bindings and keys read again (start; a resync after lost announcements)."""
    fresh = await _load(store)
    sec.policies.tenants, sec.policies.keys = fresh.tenants, fresh.keys
    sec.policies.version += 1          # memoised role decisions depend on the rules


async def _start(app: Any) -> None:
    sec: Security = app.state.security
    s = sec.settings
    store = app.state.store
    # several processes on one PostgreSQL: a rule, binding or key another process changed is re-read
    # on its announcement (store/announcements.py), in force here within milliseconds
    sec.follower = await sec.policies.load_and_follow(store, lambda tenant: _reload(sec, store),
                                                      "security policy follower")
    dev_keys = None
    if getattr(s, "auth_dev_issuer", True):
        from joserfc import jwk
        sec.dev_key = await dev_key(store)
        sec.public_jwks = public_jwks(sec.dev_key)
        dev_keys = jwk.KeySet.import_key_set(sec.public_jwks)  # type: ignore[arg-type]
    sec.authenticator = Authenticator(
        issuers=parse_issuers(getattr(s, "auth_issuers", "")), audience=getattr(s, "auth_audience", "urbanmim"),
        policies=sec.policies, dev_keys=dev_keys, jwks_ttl=float(getattr(s, "auth_jwks_ttl", 300.0)),
        jwks_timeout=float(getattr(s, "auth_jwks_timeout", 5.0)))
    if sec.audit is not None:
        await sec.audit.start()


async def _stop(app: Any) -> None:
    sec: Security = app.state.security
    if sec.follower is not None:
        store = app.state.store
        with contextlib.suppress(ValueError):
            store.entity_listeners.remove(sec.follower)
        await sec.follower.close()
        sec.follower = None
    if sec.audit is not None:
        await sec.audit.stop()


def component() -> Component:
    return Component(name="security", install=_install, start=_start, stop=_stop)
