"""Who is calling the REST gateway, and may they: the FastAPI dependency every route but the open ones
takes.

The credential is `Authorization: Bearer <token>` (an API token or an OIDC token), or the dashboard's
session cookie set by `POST /api/auth/login` (`queen.http.routes.session`). Both are verified by the
same `Authenticator` as gRPC calls. A request authenticated by the cookie that changes state (any
method but GET, HEAD, OPTIONS) must also carry the session's CSRF token in the `X-CSRF-Token` header:
a cross-site form or script can make the browser send the cookie, but cannot read the token.

The permission a route needs comes from the one table (`ROUTE_PERMISSIONS`, by method and path
template); a route missing from it is refused to everybody.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable

from fastapi import Request

from queen.domain.errors import PermissionDenied
from queen.domain.identity import Identity
from queen.security.authenticator import Authenticator
from queen.security.permissions import route_template
from queen.security.principal import CredentialKind, Principal

__all__ = [
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "caller_of",
    "csrf_token",
    "principal_of",
]

SESSION_COOKIE = "formicary_session"
CSRF_COOKIE = "formicary_csrf"
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_token(key: bytes, session: str) -> str:
    """The CSRF token of a session: derived from it, so nothing needs to be stored."""
    return hmac.new(key, b"csrf:" + session.encode(), hashlib.sha256).hexdigest()


async def principal_of(request: Request, authenticator: Authenticator, csrf_key: bytes) -> Principal:
    """The request's principal: from its bearer token, else its session cookie (with the CSRF check)."""
    authorization = request.headers.get("authorization")
    session = request.cookies.get(SESSION_COOKIE)
    if authorization is not None or not session:
        return await authenticator.authenticate(authorization)
    principal = await authenticator.authenticate_token(session, kind=CredentialKind.SESSION)
    if request.method not in _SAFE_METHODS and authenticator.required:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent, csrf_token(csrf_key, session)):
            raise PermissionDenied(
                f"a request authenticated by the session cookie must carry the {CSRF_HEADER} header "
                "returned at login"
            )
    return principal


def caller_of(authenticator: Authenticator, csrf_key: bytes) -> Callable[[Request], Awaitable[Identity]]:
    """A FastAPI dependency giving the identity a request acts as, after checking the permission its
    route needs (and the credential's rate limit for it)."""

    async def caller(request: Request) -> Identity:
        principal = await principal_of(request, authenticator, csrf_key)
        # The template is found from the path itself (not from the router's internals): a route that
        # no row of the tables matches needs a permission nobody has.
        found = route_template(request.method, request.url.path)
        template, permission = found if found is not None else (request.url.path, None)
        authenticator.authorize(principal, permission, f"{request.method} {template}")
        request.state.principal = principal
        return principal.identity

    return caller
