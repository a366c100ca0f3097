"""The authenticated caller of one call: its identity plus what its credential binds it to."""

from __future__ import annotations

import contextvars
import enum
from dataclasses import dataclass

from queen.domain.identity import Identity

__all__ = ["CredentialKind", "Principal", "current_principal"]


class CredentialKind(enum.StrEnum):
    API_TOKEN = "api_token"  # a JWT the Queen signed (`formicary tokens create`)
    OIDC = "oidc"  # a bearer token of the configured OpenID Connect issuer
    SESSION = "session"  # the dashboard's session cookie (made from one of the above at login)
    LOCAL = "local"  # authentication is off: the Queen's local identity


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, and with what.

    `token_id` names the credential (rate limits are per credential); `ant_methods` / `ant_tags` bound an
    Ant token: the Ant may register for at most these methods and tags (None: no bound, which only the
    local identity of a Queen without authentication has).
    """

    identity: Identity
    kind: CredentialKind
    token_id: str
    ant_methods: frozenset[str] | None = None
    ant_tags: frozenset[str] | None = None


# Set by the gRPC interceptor for the call it let through (each call runs in its own task).
current_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "formicary_principal", default=None
)
