"""`/api/auth`: the dashboard's login (a token in, an HttpOnly session cookie out), logout, and whoami.

Contract for a browser client:
- `POST /api/auth/login` with JSON `{"token": "<API or OIDC token>"}` (or the token as `Authorization:
  Bearer`). 200 sets the cookies `formicary_session` (HttpOnly, SameSite=Strict, Path=/) and
  `formicary_csrf` (readable by scripts, SameSite=Strict), and answers `{"user_id", "organization_id",
  "roles", "csrf_token", "expires_at"}`; 401 for a missing, invalid, expired or revoked token.
- Every later request sends the cookie by itself; a state-changing one (POST, PUT, PATCH, DELETE) must
  add the header `X-CSRF-Token: <csrf_token>` (also in the `formicary_csrf` cookie), else 403.
- `GET /api/auth/whoami` answers the same identity fields (401 when the session ended).
- `POST /api/auth/logout` clears both cookies (204).
The session lasts until its token expires or is revoked, and at most the Queen's `session_ttl`.
"""

# No `from __future__ import annotations`: FastAPI reads these signatures at run time.

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

import jwt
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from queen.domain.errors import Unauthenticated
from queen.domain.identity import Identity
from queen.http.caller import CSRF_COOKIE, SESSION_COOKIE, csrf_token
from queen.http.schemas import ErrorOut
from queen.security.authenticator import Authenticator, bearer_token

__all__ = ["SessionCookies", "session_router"]


@dataclass(frozen=True, slots=True)
class SessionCookies:
    """How session cookies are made."""

    csrf_key: bytes
    ttl: timedelta = timedelta(hours=8)
    secure: bool = False


class LoginIn(BaseModel):
    token: str = Field(default="", max_length=16 * 1024, description="An API token or an OIDC token.")


class SessionOut(BaseModel):
    user_id: str
    organization_id: str
    roles: list[str]
    csrf_token: str = ""
    expires_at: datetime | None = None


def session_router(
    authenticator: Authenticator,
    cookies: SessionCookies,
    caller: Callable[[Request], Awaitable[Identity]],
) -> APIRouter:
    router = APIRouter(prefix="/api/auth", tags=["session"])
    Caller = Annotated[Identity, Depends(caller)]

    @router.post(
        "/login",
        summary="Log in with a token: sets the dashboard's session cookie (HttpOnly) and returns the "
        "CSRF token",
        responses={401: {"model": ErrorOut}},
    )
    async def login(request: Request, response: Response, body: LoginIn | None = None) -> SessionOut:
        token = (body.token if body is not None else "") or bearer_token(request.headers.get("authorization"))
        if not token:
            raise Unauthenticated('login needs a token: JSON {"token": ...} or Authorization: Bearer')
        principal = await authenticator.authenticate_token(token)
        identity = principal.identity
        now = datetime.now(UTC)
        expires = now + cookies.ttl
        expiry = jwt.decode(token, options={"verify_signature": False}).get("exp")
        if isinstance(expiry, int | float):
            expires = min(expires, datetime.fromtimestamp(expiry, UTC))
        max_age = max(0, int((expires - now).total_seconds()))
        csrf = csrf_token(cookies.csrf_key, token)
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=max_age,
            httponly=True,
            samesite="strict",
            secure=cookies.secure,
            path="/",
        )
        response.set_cookie(
            CSRF_COOKIE, csrf, max_age=max_age, httponly=False, samesite="strict", secure=cookies.secure
        )
        return SessionOut(
            user_id=identity.user_id,
            organization_id=identity.organization_id,
            roles=sorted(identity.roles),
            csrf_token=csrf,
            expires_at=expires,
        )

    @router.post("/logout", status_code=204, summary="Log out: clears the session cookies")
    async def logout(response: Response) -> Response:
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        response.delete_cookie(CSRF_COOKIE, samesite="strict")
        response.status_code = 204
        return response

    @router.get("/whoami", summary="The caller's identity", responses={401: {"model": ErrorOut}})
    async def whoami(identity: Caller) -> SessionOut:
        return SessionOut(
            user_id=identity.user_id, organization_id=identity.organization_id, roles=sorted(identity.roles)
        )

    return router
