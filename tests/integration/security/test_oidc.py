"""OIDC bearer tokens against a JWKS server on loopback: signature, issuer, audience, expiry, roles and
organisation claims, and key rotation (an unknown key id makes the verifier fetch the key set again)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from queen.domain.errors import Unauthenticated
from queen.domain.identity import Identity
from queen.security.authenticator import Authenticator, AuthSettings
from queen.security.oidc import OidcSettings, OidcVerifier
from queen.security.principal import CredentialKind

pytestmark = pytest.mark.integration

AUDIENCE = "formicary-dashboard"


@dataclass
class Jwks:
    """A loopback HTTP server answering GET with the current key set; counts the requests."""

    keys: dict[str, Any] = field(default_factory=dict)
    hits: int = 0
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        self.hits += 1
        body = json.dumps({"keys": [public for _, public in self.keys.values()]}).encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()

    def add_key(self, kid: str) -> None:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
        public.update(kid=kid, alg="RS256", use="sig")
        self.keys[kid] = (private, public)

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def sign(self, kid: str, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": self.issuer, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 300}
        body |= {"org": "acme", "roles": ["operator", "ant", "wizard"]}
        body |= claims
        return jwt.encode(body, self.keys[kid][0], algorithm="RS256", headers={"kid": kid})


@pytest.fixture
async def jwks() -> AsyncIterator[Jwks]:
    served = Jwks()
    served.add_key("k1")
    server = await asyncio.start_server(served.handle, "127.0.0.1", 0)
    served.port = server.sockets[0].getsockname()[1]
    try:
        yield served
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def authenticator(jwks: Jwks) -> AsyncIterator[Authenticator]:
    verifier = OidcVerifier(
        OidcSettings(
            issuer=jwks.issuer,
            audience=AUDIENCE,
            jwks_url=f"{jwks.issuer}/jwks.json",
            min_refresh_interval=0.0,
            leeway=0.0,
        )
    )
    auth = Authenticator(
        AuthSettings(required=True, local=Identity("local", "local-admin"), cache_ttl=0),
        tokens=None,
        oidc=verifier,
    )
    try:
        yield auth
    finally:
        await verifier.close()


async def test_a_valid_token_gives_the_claims_identity(jwks: Jwks, authenticator: Authenticator) -> None:
    principal = await authenticator.authenticate(f"Bearer {jwks.sign('k1')}")
    assert principal.kind is CredentialKind.OIDC
    identity = principal.identity
    assert (identity.organization_id, identity.user_id, identity.authenticated) == ("acme", "alice", True)
    # unknown roles are dropped, and an OIDC token never acts as an Ant
    assert identity.roles == frozenset({"operator"})
    assert jwks.hits == 1
    await authenticator.authenticate(f"Bearer {jwks.sign('k1', sub='bob')}")
    assert jwks.hits == 1  # the key set is cached


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"aud": "someone-else"}, "audience"),
        ({"exp": int(time.time()) - 120}, "expired"),
        ({"org": ""}, "organisation"),
        ({"iss": "https://evil.example"}, "issuer"),
    ],
)
async def test_bad_tokens_are_refused(
    jwks: Jwks, authenticator: Authenticator, claims: dict[str, Any], why: str
) -> None:
    with pytest.raises(Unauthenticated):
        await authenticator.authenticate(f"Bearer {jwks.sign('k1', **claims)}")
    del why


async def test_a_forged_signature_is_refused(jwks: Jwks, authenticator: Authenticator) -> None:
    good = jwks.sign("k1")
    jwks.add_key("k1-forged")
    forged = jwt.encode(
        jwt.decode(good, options={"verify_signature": False}),
        jwks.keys["k1-forged"][0],
        algorithm="RS256",
        headers={"kid": "k1"},
    )
    with pytest.raises(Unauthenticated):
        await authenticator.authenticate(f"Bearer {forged}")


async def test_key_rotation_refetches_the_key_set_once(jwks: Jwks, authenticator: Authenticator) -> None:
    await authenticator.authenticate(f"Bearer {jwks.sign('k1')}")
    assert jwks.hits == 1
    jwks.add_key("k2")
    del jwks.keys["k1"]  # the issuer rotated: k2 signs, k1 is retired
    principal = await authenticator.authenticate(f"Bearer {jwks.sign('k2')}")
    assert principal.identity.user_id == "alice"
    assert jwks.hits == 2  # the unknown kid made the verifier fetch again
    await authenticator.authenticate(f"Bearer {jwks.sign('k2', sub='carol')}")
    assert jwks.hits == 2
    unpublished = _unknown(jwks)
    with pytest.raises(Unauthenticated, match="not in the issuer's key set"):
        await authenticator.authenticate(f"Bearer {unpublished}")


def _unknown(jwks: Jwks) -> str:
    jwks.add_key("k3")
    token = jwks.sign("k3")
    del jwks.keys["k3"]  # signed with a key the issuer does not publish
    return token
