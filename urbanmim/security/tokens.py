"""Authentication: bearer JWTs from configured OIDC issuers or the built-in development issuer,
and device API keys.

Why joserfc and a cache: signature checks are the only per-request cryptography, so a
verified token is remembered (token → principal, until its ``exp``) and the next request
with the same token costs a dict look-up. Every check a JWT needs is made on first sight:
signature against the issuer's JWKS (never ``alg: none``, never an HMAC key for a public
issuer), ``iss`` among the configured issuers, ``aud`` containing our audience, ``exp`` and
``nbf`` (with a small leeway), and a ``sub``.

Issuers' JWKS are fetched with a timeout and cached (``auth_jwks_ttl``); a token signed with
a key id we do not know triggers one early refresh (at most every 30 s per issuer), so key
rotation works without a restart and a flood of bad tokens cannot hammer the IdP.

The development issuer signs with an ES256 key generated on first use and kept in the store
(``secrets`` table): ``urbanmim token`` and every server process on the same database share
it. Its public key is served at ``/auth/v1/jwks.json``.

Roles come from the token claim ``roles`` (``{"tenant": ["reader", ...]}``, ``"*"`` for
every tenant) and from role bindings an admin stored for the subject (:mod:`.policy`);
``org`` names the MIM3 organisation, ``purpose`` a DPV purpose (the ``Urbanmim-Purpose``
header overrides it per request).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import httpx
import orjson
from joserfc import jwk, jwt
from joserfc.errors import JoseError

from urbanmim.errors import Unauthorized
from urbanmim.security.policy import PolicyCache, key_matches, split_key
from urbanmim.security.principal import ROLES, Principal

log = logging.getLogger(__name__)

DEV_ISSUER = "urbanmim:dev-issuer"
DEV_KEY_SECRET = "dev-issuer-key"
ALGORITHMS = ["ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "EdDSA"]
LEEWAY_S = 30
REFRESH_MIN_S = 30.0
CACHE_MAX = 10_000


class BoundRoles(Mapping[str, frozenset[str]]):
    """Token roles merged with the subject's stored role bindings, looked up per tenant on use
    (so a binding changed by an admin counts on the very next request)."""

    def __init__(self, claimed: Mapping[str, frozenset[str]], subject: str, cache: PolicyCache | None):
        self.claimed, self.subject, self.cache = claimed, subject, cache

    def __getitem__(self, tenant: str) -> frozenset[str]:
        got = self.get(tenant)
        if got is None:
            raise KeyError(tenant)
        return got  # type: ignore[no-any-return]

    def get(self, tenant: str, default: Any = None) -> Any:   # the hot path: no exception, no allocation
        got = self.claimed.get(tenant)
        cache = self.cache
        if cache is not None:
            tp = cache.tenants.get(tenant)
            if tp is not None and tp.bindings:
                b = tp.bindings.get(self.subject)
                if b is not None:
                    got = b.roles if got is None else got | b.roles
        return got if got else default

    def _tenants(self) -> list[str]:
        out = list(self.claimed)
        if self.cache is not None:
            out += [t for t, tp in self.cache.tenants.items() if self.subject in tp.bindings and t not in out]
        return out

    def __iter__(self) -> Iterator[str]:
        return iter(self._tenants())

    def __len__(self) -> int:
        return len(self._tenants())


def parse_roles(raw: Any) -> dict[str, frozenset[str]]:
    """The ``roles`` claim: ``{"portamar": ["reader"], "*": ["admin"]}``; unknown roles are ignored."""
    if not isinstance(raw, dict):
        return {}
    out = {}
    for tenant, roles in raw.items():
        if isinstance(tenant, str) and isinstance(roles, list):
            got = frozenset(r for r in roles if r in ROLES)
            if got:
                out[tenant] = got
    return out


@dataclass
class _Issuer:
    url: str
    jwks_url: str | None
    keys: jwk.KeySet | None = None
    fetched: float = 0.0
    lock: asyncio.Lock | None = None


class Authenticator:
    """Turns an ``Authorization`` header into a :class:`Principal` (or raises 401)."""

    def __init__(self, *, issuers: list[tuple[str, str | None]], audience: str, policies: PolicyCache,
                 dev_keys: jwk.KeySet | None = None, jwks_ttl: float = 300.0, jwks_timeout: float = 5.0,
                 http: httpx.AsyncClient | None = None):
        self.audience = audience
        self.policies = policies
        self.issuers = {url: _Issuer(url, jwks) for url, jwks in issuers}
        if dev_keys is not None:
            self.issuers[DEV_ISSUER] = _Issuer(DEV_ISSUER, None, dev_keys, float("inf"))
        self.jwks_ttl, self.jwks_timeout = jwks_ttl, jwks_timeout
        self.http = http
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    # ---- entry point ------------------------------------------------------------------------------
    async def authenticate(self, authorization: str | None, api_key: str | None = None) -> Principal | None:
        """The caller's principal, None without credentials; 401 for credentials we refuse."""
        cred = None
        if authorization:
            scheme, _, value = authorization.strip().partition(" ")
            scheme = scheme.lower()
            value = value.strip()
            if scheme == "apikey" or (scheme == "bearer" and value.startswith("umk_")):
                return self.device(value)
            if scheme != "bearer" or not value:
                raise Unauthorized("use Authorization: Bearer <token> (or ApiKey <device key>)",
                                   error="invalid_request")
            cred = value
        elif api_key:
            return self.device(api_key)
        if cred is None:
            return None
        hit = self._verified.get(cred)
        if hit is not None:
            p, exp = hit
            if time.time() < exp + LEEWAY_S:
                return p                    # (first-in, first-out eviction: no re-ordering per request)
            del self._verified[cred]
        p, exp = await self.verify(cred)
        self._verified[cred] = (p, exp)
        if len(self._verified) > CACHE_MAX:
            self._verified.popitem(last=False)
        return p

    # ---- JWT ------------------------------------------------------------------------------------
    async def verify(self, token: str) -> tuple[Principal, float]:
        try:
            header_claims = _peek(token)
        except ValueError as e:
            raise Unauthorized(f"malformed bearer token: {e}", error="invalid_token") from None
        header, claims = header_claims
        iss = claims.get("iss")
        issuer = self.issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise Unauthorized(f"token issuer {iss!r} is not trusted", error="invalid_token")
        if header.get("alg") not in ALGORITHMS:
            raise Unauthorized(f"token algorithm {header.get('alg')!r} is not accepted", error="invalid_token")
        keys = await self._keys(issuer, header.get("kid"))
        try:
            tok = jwt.decode(token, keys, algorithms=ALGORITHMS)
            jwt.JWTClaimsRegistry(leeway=LEEWAY_S, iss={"essential": True, "value": issuer.url},
                                  aud={"essential": True, "value": self.audience},
                                  exp={"essential": True}, sub={"essential": True}).validate(tok.claims)
        except JoseError as e:
            raise Unauthorized(f"bearer token refused: {e.error}: {e.description or ''}".strip(),
                               error="invalid_token") from None
        except ValueError as e:
            raise Unauthorized(f"bearer token refused: {e}", error="invalid_token") from None
        c = tok.claims
        sub = str(c["sub"])
        principal = Principal(
            subject=sub, roles=BoundRoles(parse_roles(c.get("roles")), sub, self.policies),
            organisation=c.get("org") if isinstance(c.get("org"), str) else None,
            purpose=c.get("purpose") if isinstance(c.get("purpose"), str) else None,
            client=str(c.get("azp") or c.get("client_id") or sub), issuer=issuer.url)
        if principal.organisation is None:
            principal = replace(principal, organisation=self._bound_org(sub))
        return principal, float(c["exp"])

    def _bound_org(self, sub: str) -> str | None:
        for tp in self.policies.tenants.values():
            b = tp.bindings.get(sub)
            if b is not None and b.organisation:
                return b.organisation
        return None

    async def _keys(self, issuer: _Issuer, kid: Any) -> jwk.KeySet:
        now = time.monotonic()
        stale = issuer.keys is None or now - issuer.fetched > self.jwks_ttl
        unknown = issuer.keys is not None and kid is not None and not any(
            k.kid == kid for k in issuer.keys.keys)
        if issuer.jwks_url is not None or issuer.url != DEV_ISSUER:
            if stale or (unknown and now - issuer.fetched > REFRESH_MIN_S):
                await self._fetch(issuer)
        if issuer.keys is None:
            raise Unauthorized(f"the keys of issuer {issuer.url} are not available", error="invalid_token")
        return issuer.keys

    async def _fetch(self, issuer: _Issuer) -> None:
        if issuer.lock is None:
            issuer.lock = asyncio.Lock()
        async with issuer.lock:
            if issuer.keys is not None and time.monotonic() - issuer.fetched < 1.0:
                return                          # another request just fetched them
            client = self.http or httpx.AsyncClient()
            try:
                url = issuer.jwks_url
                if url is None:
                    conf = await client.get(issuer.url.rstrip("/") + "/.well-known/openid-configuration",
                                            timeout=self.jwks_timeout)
                    conf.raise_for_status()
                    url = str(conf.json()["jwks_uri"])
                resp = await client.get(url, timeout=self.jwks_timeout)
                resp.raise_for_status()
                issuer.keys = jwk.KeySet.import_key_set(resp.json())
                issuer.fetched = time.monotonic()
            except (httpx.HTTPError, ValueError, KeyError, JoseError) as e:
                log.warning("cannot fetch the JWKS of issuer %s: %s", issuer.url, e)
                issuer.fetched = time.monotonic()      # do not retry on every request
            finally:
                if self.http is None:
                    await client.aclose()

    # ---- device API keys -----------------------------------------------------------------------
    def device(self, key: str) -> Principal:
        parts = split_key(key.strip())
        found = self.policies.keys.get(parts[0]) if parts else None
        if parts is None or found is None or not key_matches(found[1], parts[1]):
            raise Unauthorized("unknown or revoked API key", error="invalid_token")
        tenant, k = found
        return Principal(subject=f"apikey:{k.key_id}", roles={tenant: frozenset({"device"})},
                         organisation=k.organisation, client=f"apikey:{k.key_id}", issuer="",
                         entities=k.entities)


def _peek(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWS, unverified (to pick the issuer's keys)."""
    import base64
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a compact JWS")

    def dec(s: str) -> dict[str, Any]:
        out = orjson.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
        if not isinstance(out, dict):
            raise ValueError("not a JSON object")
        return out
    try:
        return dec(parts[0]), dec(parts[1])
    except (ValueError, orjson.JSONDecodeError) as e:
        raise ValueError(str(e)) from None


# ---- the development issuer ----------------------------------------------------------------------
def new_dev_key() -> bytes:
    key = jwk.ECKey.generate_key("P-256", parameters={"kid": f"dev-{int(time.time())}", "use": "sig"})
    return orjson.dumps(key.as_dict(private=True))


async def dev_key(store: Any) -> jwk.ECKey:
    """The development issuer's private key (created in the store on first use)."""
    raw = await store.secret(DEV_KEY_SECRET, new_dev_key)
    return jwk.ECKey.import_key(orjson.loads(raw))


def public_jwks(key: jwk.ECKey) -> dict[str, Any]:
    return {"keys": [key.as_dict(private=False)]}


def issue(key: jwk.ECKey, *, subject: str, roles: Mapping[str, list[str]], audience: str, ttl: float = 3600,
          organisation: str | None = None, purpose: str | None = None, issuer: str = DEV_ISSUER,
          extra: Mapping[str, Any] | None = None) -> str:
    """A signed bearer token (the ``urbanmim token`` command and tests)."""
    now = int(time.time())
    claims: dict[str, Any] = {"iss": issuer, "sub": subject, "aud": audience, "iat": now, "nbf": now,
                              "exp": now + int(ttl), "roles": {t: list(r) for t, r in roles.items()}}
    if organisation:
        claims["org"] = organisation
    if purpose:
        claims["purpose"] = purpose
    claims.update(extra or {})
    return jwt.encode({"alg": "ES256", "kid": key.kid, "typ": "JWT"}, claims, key)
