"""OpenID Connect bearer tokens, verified against the issuer's JWKS (signature, issuer, audience, expiry).

The key set is fetched once and cached for `cache_ttl`; a token signed with a key id the cache does not
know makes the verifier fetch the set again at once (the issuer rotated its keys), but at most once per
`min_refresh_interval`, so that a flood of tokens with made-up key ids cannot turn the Queen into a
load generator against the issuer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import structlog

from queen.domain.errors import Unauthenticated

__all__ = ["OidcClaims", "OidcSettings", "OidcVerifier"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class OidcSettings:
    issuer: str
    audience: str
    jwks_url: str = ""  # empty: from the issuer's discovery document
    algorithms: Sequence[str] = ("RS256", "ES256", "PS256", "EdDSA")
    roles_claim: str = "roles"
    organization_claim: str = "org"
    default_organization: str = ""
    cache_ttl: float = 300.0
    min_refresh_interval: float = 10.0
    http_timeout: float = 5.0
    leeway: float = 30.0


@dataclass(frozen=True, slots=True)
class OidcClaims:
    subject: str
    organization_id: str
    roles: frozenset[str]
    claims: Mapping[str, Any] = field(default_factory=dict)


class OidcVerifier:
    """Verifies the issuer's tokens; owns an HTTP client (call `close()`)."""

    def __init__(self, settings: OidcSettings, *, client: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self._client = client or httpx.AsyncClient(timeout=settings.http_timeout)
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def close(self) -> None:
        await self._client.aclose()

    def is_ours(self, claims: Mapping[str, object]) -> bool:
        return claims.get("iss") == self.settings.issuer

    async def verify(self, token: str) -> OidcClaims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"the token is not a JWT: {exc}") from exc
        kid = str(header.get("kid", ""))
        key = await self._key(kid)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=list(self.settings.algorithms),
                audience=self.settings.audience,
                issuer=self.settings.issuer,
                leeway=self.settings.leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("the token has expired") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"the token is not valid: {exc}") from exc
        organization = str(claims.get(self.settings.organization_claim) or self.settings.default_organization)
        if not organization:
            raise Unauthenticated(
                f"the token has no {self.settings.organization_claim!r} claim and no default "
                "organisation is set"
            )
        raw_roles = claims.get(self.settings.roles_claim, [])
        roles = [raw_roles] if isinstance(raw_roles, str) else list(raw_roles or [])
        return OidcClaims(str(claims["sub"]), organization, frozenset(str(r) for r in roles), claims)

    async def _key(self, kid: str) -> jwt.PyJWK:
        now = time.monotonic()
        key = self._keys.get(kid)
        if key is not None and now - self._fetched_at < self.settings.cache_ttl:
            return key
        async with self._lock:
            key = self._keys.get(kid)
            fresh = time.monotonic() - self._fetched_at < self.settings.cache_ttl
            if key is not None and fresh:
                return key
            # unknown kid (a rotation) or a stale cache: refetch, unless we just did
            if time.monotonic() - self._fetched_at >= self.settings.min_refresh_interval or not fresh:
                await self._refresh()
            key = self._keys.get(kid)
        if key is None:
            raise Unauthenticated(f"the token's signing key {kid!r} is not in the issuer's key set")
        return key

    async def _refresh(self) -> None:
        try:
            url = self.settings.jwks_url or await self._discover()
            response = await self._client.get(url)
            response.raise_for_status()
            key_set = jwt.PyJWKSet.from_dict(response.json())
        except (httpx.HTTPError, ValueError, jwt.PyJWKSetError) as exc:
            log.warning("oidc_jwks_fetch_failed", issuer=self.settings.issuer, error=str(exc))
            # keep the keys we had: an issuer outage must not lock everybody out at once
            self._fetched_at = time.monotonic()
            return
        self._keys = {str(key.key_id or ""): key for key in key_set.keys}
        self._fetched_at = time.monotonic()
        self.fetches += 1
        log.info("oidc_jwks_fetched", issuer=self.settings.issuer, keys=len(self._keys))

    async def _discover(self) -> str:
        url = self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
        response = await self._client.get(url)
        response.raise_for_status()
        found = response.json().get("jwks_uri")
        if not isinstance(found, str) or not found:
            raise ValueError(f"{url} names no jwks_uri")
        return found
