"""The Queen's security parts built from its settings: token issuer, OIDC verifier, authenticator with
its rate limits, and the secret box."""

from __future__ import annotations

from dataclasses import dataclass

from queen.domain.identity import Identity
from queen.security.api_tokens import TokenIssuer, load_or_create_key
from queen.security.authenticator import Authenticator, AuthSettings
from queen.security.oidc import OidcSettings, OidcVerifier
from queen.security.permissions import Permission
from queen.security.rate_limits import RateLimit, RateLimiter
from queen.security.secret_box import SecretBox, load_secret_box
from queen.settings import QueenSettings
from queen.store import Database

__all__ = ["SecurityParts", "build_security"]


@dataclass(frozen=True, slots=True)
class SecurityParts:
    tokens: TokenIssuer
    oidc: OidcVerifier | None
    authenticator: Authenticator
    secrets: SecretBox
    signing_key: bytes

    async def close(self) -> None:
        if self.oidc is not None:
            await self.oidc.close()


def build_security(settings: QueenSettings, db: Database) -> SecurityParts:
    key = load_or_create_key(
        settings.auth_signing_key.get_secret_value(), settings.data_dir / "auth" / "signing.key"
    )
    tokens = TokenIssuer(db, key)
    oidc = None
    if settings.oidc_issuer:
        oidc = OidcVerifier(
            OidcSettings(
                issuer=settings.oidc_issuer,
                audience=settings.oidc_audience,
                jwks_url=settings.oidc_jwks_url,
                roles_claim=settings.oidc_roles_claim,
                organization_claim=settings.oidc_organization_claim,
                default_organization=settings.oidc_default_organization,
                cache_ttl=settings.oidc_jwks_cache_ttl.total_seconds(),
                min_refresh_interval=settings.oidc_jwks_min_refresh_interval.total_seconds(),
            )
        )
    limiter = RateLimiter(
        {
            Permission.SUBMIT: RateLimit(settings.submit_rate_per_minute, settings.submit_burst),
            Permission.APPROVE: RateLimit(settings.decide_rate_per_minute, settings.decide_burst),
        }
    )
    local = Identity(settings.organization_id, settings.user_id)
    authenticator = Authenticator(
        AuthSettings(
            required=settings.auth_required, local=local, cache_ttl=settings.auth_cache_ttl.total_seconds()
        ),
        tokens=tokens,
        oidc=oidc,
        limiter=limiter,
    )
    secrets = load_secret_box(settings.secret_keys.get_secret_value(), settings.data_dir)
    return SecurityParts(tokens, oidc, authenticator, secrets, key)
