"""The one authentication: a bearer credential in, a Principal out, for the gRPC interceptor and the REST
gateway alike; then the permission check (the one table) and the rate limits of the action.

A credential is an API token the Queen signed, or an OIDC token of the configured issuer (told apart
by the `iss` claim). Verified credentials are cached for `cache_ttl` seconds by their hash, so a call
costs no database round trip; a revoked token is therefore refused at most `cache_ttl` after
revocation (by any Queen, since revocation is in the database). With authentication off, every call
acts as the local identity (a mode the entry point announces loudly).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

import jwt

from queen.domain.errors import Unauthenticated
from queen.domain.identity import Identity
from queen.security.api_tokens import ANT, TokenIssuer, token_hash
from queen.security.oidc import OidcVerifier
from queen.security.permissions import Permission, Role, require
from queen.security.principal import CredentialKind, Principal
from queen.security.rate_limits import RateLimiter

__all__ = ["AuthSettings", "Authenticator", "bearer_token"]

_BEARER = "bearer "
_MAX_TOKEN_BYTES = 16 * 1024
_MAX_CACHED = 10_000


@dataclass(frozen=True, slots=True)
class AuthSettings:
    required: bool
    local: Identity
    cache_ttl: float = 5.0


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` value; None when there is none. Unauthenticated
    for another scheme or a malformed value."""
    if authorization is None or not authorization.strip():
        return None
    text = authorization.strip()
    if not text.lower().startswith(_BEARER):
        raise Unauthenticated("the authorization must be `Bearer <token>`")
    token = text[len(_BEARER) :].strip()
    if not token or len(token) > _MAX_TOKEN_BYTES:
        raise Unauthenticated("the bearer token is empty or too long")
    return token


class Authenticator:
    """Turns credentials into principals and checks what they may do."""

    def __init__(
        self,
        settings: AuthSettings,
        *,
        tokens: TokenIssuer | None,
        oidc: OidcVerifier | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.settings = settings
        self.tokens = tokens
        self.oidc = oidc
        self.limiter = limiter or RateLimiter({})
        self._cache: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self.local = Principal(settings.local, CredentialKind.LOCAL, "local")

    @property
    def required(self) -> bool:
        return self.settings.required

    async def authenticate(self, authorization: str | None) -> Principal:
        """The principal of an `authorization` header/metadata value (the local one when authentication
        is off); Unauthenticated when it is missing or not valid."""
        if not self.settings.required:
            return self.local
        token = bearer_token(authorization)
        if token is None:
            raise Unauthenticated("this call needs a credential: `authorization: Bearer <token>`")
        return await self.authenticate_token(token)

    async def authenticate_token(self, token: str, *, kind: CredentialKind | None = None) -> Principal:
        if not self.settings.required:
            return self.local
        digest = token_hash(token)
        cached = self._cache.get(digest)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        principal = await self._verify(token)
        if kind is not None:
            principal = Principal(
                principal.identity, kind, principal.token_id, principal.ant_methods, principal.ant_tags
            )
        if self.settings.cache_ttl > 0:
            self._cache[digest] = (principal, now + self.settings.cache_ttl)
            while len(self._cache) > _MAX_CACHED:
                self._cache.popitem(last=False)
        return principal

    def forget(self) -> None:
        """Drop every cached verification (tests; a revocation made by this process)."""
        self._cache.clear()

    def authorize(self, principal: Principal, permission: Permission | None, action: str) -> None:
        """PermissionDenied unless the principal's roles grant `permission`; ResourceExhausted when the
        credential's rate limit for it is used up."""
        require(principal.identity, permission, action)
        assert permission is not None
        self.limiter.check(principal.token_id, permission)

    async def _verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated("the bearer token is not a JWT") from exc
        if self.tokens is not None and self.tokens.is_ours(claims):
            record = await self.tokens.verify(token)
            identity = Identity(
                record.organization_id, record.user_id, frozenset(record.roles), authenticated=True
            )
            if record.kind == ANT:
                return Principal(
                    identity,
                    CredentialKind.API_TOKEN,
                    record.id,
                    ant_methods=frozenset(record.methods),
                    ant_tags=frozenset(record.tags),
                )
            return Principal(identity, CredentialKind.API_TOKEN, record.id)
        if self.oidc is not None and self.oidc.is_ours(claims):
            found = await self.oidc.verify(token)
            # People only: an OIDC token never acts as an Ant (Ants get Ant tokens bound to methods).
            known = {role.value for role in Role} - {Role.ANT.value}
            identity = Identity(
                found.organization_id, found.subject, frozenset(found.roles & known), authenticated=True
            )
            return Principal(identity, CredentialKind.OIDC, f"oidc:{found.subject}")
        raise Unauthenticated("the token's issuer is not trusted by this Queen")
