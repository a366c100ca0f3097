"""API tokens: JWTs the Queen signs (HS256), stored only as a SHA-256 hash, named, expiring, revocable.

The JWT carries who it is for, but the database row decides: a token is accepted only while its row
exists, is not revoked and has not expired, and its roles, organisation and Ant bounds come from the
row. The signature lets the Queen refuse forged or altered tokens before it touches the database.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import structlog

from queen.domain.errors import InvalidArgument, Unauthenticated
from queen.security.permissions import Role
from queen.store import Database
from queen.store import security as store
from queen.store.security import TokenRecord

__all__ = [
    "ISSUER",
    "IssuedToken",
    "TokenIssuer",
    "load_or_create_key",
    "token_hash",
]

log = structlog.get_logger(__name__)

ISSUER = "formicary"
_ALGORITHM = "HS256"
_MIN_KEY_BYTES = 32
USER = "user"
ANT = "ant"


def token_hash(token: str) -> str:
    """What the database keeps of a token (hex SHA-256: the token is high-entropy, no salt needed)."""
    return hashlib.sha256(token.encode()).hexdigest()


def load_or_create_key(configured: str, path: Path) -> bytes:
    """The key from settings (base64 or text of at least 32 bytes), else the one in `path`, created
    (0600, random) on first start."""
    if configured:
        try:
            key = base64.b64decode(configured, validate=True)
        except ValueError:
            key = configured.encode()
        if len(key) < _MIN_KEY_BYTES:
            raise InvalidArgument(f"a key must be at least {_MIN_KEY_BYTES} bytes", field="auth_signing_key")
        return key
    if path.exists():
        return base64.b64decode(path.read_text().strip())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_bytes(_MIN_KEY_BYTES)
    # O_EXCL: two Queens starting on one data directory cannot both write (and disagree on) the key
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(base64.b64encode(key).decode() + "\n")
    log.info("key_generated", path=str(path))
    return key


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A new token: the only time its text exists outside the caller's hands."""

    token: str
    record: TokenRecord


class TokenIssuer:
    """Issues, verifies, lists and revokes the Queen's API tokens."""

    def __init__(self, db: Database, key: bytes, *, issuer: str = ISSUER) -> None:
        self._db = db
        self._key = key
        self.issuer = issuer

    async def issue(
        self,
        *,
        organization_id: str,
        user_id: str,
        name: str,
        roles: Sequence[str],
        lifetime: timedelta,
        created_by: str,
        ant_methods: Sequence[str] = (),
        ant_tags: Sequence[str] = (),
        now: datetime | None = None,
    ) -> IssuedToken:
        """A new token. An Ant token (role `ant`) is bound to `ant_methods` (required) and `ant_tags`."""
        if not organization_id or not user_id or not name:
            raise InvalidArgument("a token needs an organisation, a user and a name")
        known = {role.value for role in Role}
        unknown = sorted(set(roles) - known)
        if not roles or unknown:
            raise InvalidArgument(f"roles must be some of {', '.join(sorted(known))}", field="roles")
        is_ant = Role.ANT.value in roles
        if is_ant and (len(set(roles)) > 1 or not ant_methods):
            raise InvalidArgument("an Ant token has only the ant role and lists the methods it may serve")
        if not is_ant and (ant_methods or ant_tags):
            raise InvalidArgument("methods and tags bound Ant tokens only")
        if lifetime <= timedelta(0):
            raise InvalidArgument("a token's lifetime must be positive", field="expires_in")
        issued = (now or datetime.now(UTC)).replace(microsecond=0)
        expires = issued + lifetime
        token_id = str(uuid.uuid4())
        claims = {
            "iss": self.issuer,
            "sub": user_id,
            "org": organization_id,
            "jti": token_id,
            "iat": issued,
            "exp": expires,
        }
        token = jwt.encode(claims, self._key, algorithm=_ALGORITHM)
        async with self._db.transaction() as session:
            record = await store.create_token(
                session,
                token_id=token_id,
                organization_id=organization_id,
                user_id=user_id,
                name=name,
                kind=ANT if is_ant else USER,
                roles=roles,
                token_hash=token_hash(token),
                expires_at=expires,
                created_by=created_by,
                methods=ant_methods,
                tags=ant_tags,
                now=issued,
            )
            await store.audit(
                session,
                organization_id=organization_id,
                actor=created_by,
                action="token_issued",
                subject=f"{token_id} {name} ({', '.join(sorted(roles))})",
                now=issued,
            )
        return IssuedToken(token, record)

    def is_ours(self, claims: dict[str, object]) -> bool:
        return claims.get("iss") == self.issuer

    async def verify(self, token: str, *, now: datetime | None = None) -> TokenRecord:
        """The token's record; Unauthenticated if it is not one of ours, forged, expired or revoked."""
        try:
            jwt.decode(
                token,
                self._key,
                algorithms=[_ALGORITHM],
                issuer=self.issuer,
                options={"require": ["exp", "iat", "jti", "sub", "iss"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("the token has expired") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"the token is not valid: {exc}") from exc
        async with self._db.transaction() as session:
            record = await store.token_by_hash(session, token_hash(token))
        if record is None:
            raise Unauthenticated("the token is not known to this Queen")
        if record.revoked_at is not None:
            raise Unauthenticated("the token was revoked")
        if not record.usable_at(now or datetime.now(UTC)):
            raise Unauthenticated("the token has expired")
        return record

    async def list_tokens(
        self, organization_id: str | None, *, include_revoked: bool = False
    ) -> list[TokenRecord]:
        async with self._db.transaction() as session:
            return await store.list_tokens(session, organization_id, include_revoked=include_revoked)

    async def revoke(
        self, token_id_or_name: str, *, organization_id: str | None, revoked_by: str
    ) -> list[TokenRecord]:
        async with self._db.transaction() as session:
            records = await store.revoke_token(
                session, token_id_or_name, organization_id=organization_id, revoked_by=revoked_by
            )
            for record in records:
                await store.audit(
                    session,
                    organization_id=record.organization_id,
                    actor=revoked_by,
                    action="token_revoked",
                    subject=f"{record.id} {record.name}",
                )
        return records
