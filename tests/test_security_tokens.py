"""MIM6 authentication against a configured OIDC issuer (a local one: tests stay offline).

The issuer is a small HTTP server in the test process serving OIDC discovery and a JWKS;
tokens are signed with its RSA key. Checked: a valid token works; expired, not-yet-valid,
wrong audience, untrusted issuer, tampered and foreign-key tokens are 401; a rotated key is
picked up; an external subject gets its roles from an admin's role binding.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwk, jwt

from tests.conftest import free_port
from tests.helpers import assert_problem
from tests.security_helpers import client, secure_app, spot, token

CITY = "lindmark"


class Issuer:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/realms/city"
        self.key = jwk.RSAKey.generate_key(2048, parameters={"kid": "k1"})
        self.fetches = 0
        issuer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                if self.path.endswith("/.well-known/openid-configuration"):
                    body = {"issuer": issuer.url, "jwks_uri": issuer.url + "/certs"}
                elif self.path.endswith("/certs"):
                    issuer.fetches += 1
                    body = {"keys": [issuer.key.as_dict(private=False)]}
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, *, key: Any = None, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": self.url, "sub": "user-1", "aud": "urbanmim", "iat": now, "exp": now + 300,
                "roles": {CITY: ["editor"]}}
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        k = key or self.key
        return jwt.encode({"alg": "RS256", "kid": k.kid}, body, k)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    i = Issuer()
    yield i
    i.close()


@pytest.fixture
async def app(tmp_path: Path, issuer: Issuer) -> AsyncIterator[Any]:
    async for a in secure_app(tmp_path, auth_issuers=issuer.url):
        yield a


async def _status(app: Any, tok: str) -> Any:
    async with client(app, tok, tenant=CITY) as c:
        return await c.post("/entities", json=spot())


async def test_valid_token_from_configured_issuer(app: Any, issuer: Issuer) -> None:
    r = await _status(app, issuer.token())
    assert r.status_code == 201, r.text
    r = await _status(app, issuer.token())     # cached verification, cached JWKS
    assert r.status_code == 409
    assert issuer.fetches == 1


@pytest.mark.parametrize("claims", [
    {"exp": int(time.time()) - 3600},                       # expired
    {"nbf": int(time.time()) + 3600},                       # not yet valid
    {"aud": "another-service"},                              # wrong audience
    {"aud": None},                                           # no audience
    {"iss": "http://127.0.0.1:1/realms/evil"},               # untrusted issuer
    {"sub": None},                                           # no subject
])
async def test_refused_tokens(app: Any, issuer: Issuer, claims: dict[str, Any]) -> None:
    r = await _status(app, issuer.token(**claims))
    assert_problem(r, 401, "Unauthorized")
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]


async def test_tampered_and_foreign_key_tokens(app: Any, issuer: Issuer) -> None:
    good = issuer.token()
    header, payload, sig = good.split(".")
    import base64
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["roles"] = {CITY: ["admin"]}
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert_problem(await _status(app, f"{header}.{forged}.{sig}"), 401, "Unauthorized")
    other = jwk.RSAKey.generate_key(2048, parameters={"kid": "k1"})     # same kid, another key
    assert_problem(await _status(app, issuer.token(key=other)), 401, "Unauthorized")
    # the development issuer's tokens are not the external issuer's: a dev token claiming its iss fails
    dev = token(app, tenant=CITY, role="admin", iss=issuer.url)
    assert_problem(await _status(app, dev), 401, "Unauthorized")


async def test_key_rotation_is_picked_up(app: Any, issuer: Issuer) -> None:
    assert (await _status(app, issuer.token())).status_code == 201
    issuer.key = jwk.RSAKey.generate_key(2048, parameters={"kid": "k2"})
    app.state.security.authenticator.issuers[issuer.url].fetched -= 60   # past the 30 s refetch guard
    r = await _status(app, issuer.token(sub="user-2"))
    assert r.status_code == 409, r.text          # authenticated (the entity exists already)
    assert issuer.fetches == 2


async def test_external_subject_with_role_binding(app: Any, issuer: Issuer) -> None:
    tok = issuer.token(sub="ext-42", roles=None)
    assert_problem(await _status(app, tok), 403, "Forbidden")
    admin = token(app, tenant=CITY, role="admin")
    async with client(app, admin, tenant=CITY, base="/security/v1") as c:
        r = await c.put("/roles/ext-42", json={"roles": ["editor"], "organisation": "org:x"})
        assert r.status_code == 200, r.text
    assert (await _status(app, tok)).status_code == 201          # on the very next request
    async with client(app, admin, tenant=CITY, base="/security/v1") as c:
        assert (await c.delete("/roles/ext-42")).status_code == 204
    async with client(app, tok, tenant=CITY) as c:
        r = await c.patch("/entities/urn:ngsi-ld:ParkingSpot:1/attrs", json={"status": {"type": "Property",
                                                                                       "value": "x"}})
        assert_problem(r, 403, "Forbidden")


async def test_unreachable_issuer_is_401_not_500(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/realms/gone"
    async for app in secure_app(tmp_path, auth_issuers=url, auth_jwks_timeout=0.5):
        key = jwk.RSAKey.generate_key(2048, parameters={"kid": "z"})
        tok = jwt.encode({"alg": "RS256", "kid": "z"}, {"iss": url, "sub": "a", "aud": "urbanmim",
                                                         "exp": int(time.time()) + 60}, key)
        assert_problem(await _status(app, tok), 401, "Unauthorized")
