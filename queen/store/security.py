"""Security records: API tokens (by hash), configs (secret ones as ciphertext), the security audit log.

Like every store module, each function takes the caller's session and never commits. Configs and
tokens are always read within one organisation; an entry of another organisation is NotFound.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, delete, or_, select, update
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ClauseElement

from queen.domain.errors import NotFound
from queen.store._clock import utc_now
from queen.store._fast import FastStatement, defer_returning, returning_columns
from queen.store.models import ApiTokenRow, ConfigRow, SecurityAuditRow

__all__ = [
    "AuditRecord",
    "ConfigRecord",
    "ConfigScope",
    "TokenRecord",
    "audit",
    "create_token",
    "delete_config",
    "get_config",
    "list_audit",
    "list_configs",
    "list_tokens",
    "revoke_token",
    "set_config",
    "task_configs",
    "token_by_hash",
]


class ConfigScope(enum.StrEnum):
    """Where a config applies; the narrower wins: user over job over organisation."""

    ORGANIZATION = "organization"
    JOB = "job"
    USER = "user"


@dataclass(frozen=True, slots=True)
class TokenRecord:
    id: str
    organization_id: str
    user_id: str
    name: str
    kind: str
    roles: tuple[str, ...]
    methods: tuple[str, ...]
    tags: tuple[str, ...]
    created_by: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None

    def usable_at(self, now: datetime) -> bool:
        return self.revoked_at is None and now < self.expires_at


@dataclass(frozen=True, slots=True)
class ConfigRecord:
    id: str
    organization_id: str
    scope: ConfigScope
    owner: str
    name: str
    secret: bool
    value: str  # plain text, or the ciphertext (base64) of a secret
    key_id: str
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class AuditRecord:
    id: int
    organization_id: str
    actor: str
    action: str
    subject: str
    created_at: datetime


def _token(row: ApiTokenRow) -> TokenRecord:
    return TokenRecord(
        id=row.id,
        organization_id=row.organization_id,
        user_id=row.user_id,
        name=row.name,
        kind=row.kind,
        roles=tuple(row.roles),
        methods=tuple(row.methods),
        tags=tuple(row.tags),
        created_by=row.created_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


def _config(row: ConfigRow) -> ConfigRecord:
    return ConfigRecord(
        id=row.id,
        organization_id=row.organization_id,
        scope=ConfigScope(row.scope),
        owner=row.owner,
        name=row.name,
        secret=row.secret,
        value=row.value,
        key_id=row.key_id,
        updated_at=row.updated_at,
    )


# -- tokens ------------------------------------------------------------------------------------------


async def create_token(
    session: AsyncSession,
    *,
    token_id: str,
    organization_id: str,
    user_id: str,
    name: str,
    kind: str,
    roles: Sequence[str],
    token_hash: str,
    expires_at: datetime,
    created_by: str,
    methods: Sequence[str] = (),
    tags: Sequence[str] = (),
    now: datetime | None = None,
) -> TokenRecord:
    row = ApiTokenRow(
        id=token_id,
        organization_id=organization_id,
        user_id=user_id,
        name=name,
        kind=kind,
        roles=sorted(roles),
        methods=sorted(methods),
        tags=sorted(tags),
        token_hash=token_hash,
        created_by=created_by,
        created_at=now or utc_now(),
        expires_at=expires_at,
        revoked_at=None,
        revoked_by="",
    )
    session.add(row)
    await session.flush()
    return _token(row)


async def token_by_hash(session: AsyncSession, token_hash: str) -> TokenRecord | None:
    row = (
        await session.scalars(select(ApiTokenRow).where(ApiTokenRow.token_hash == token_hash))
    ).one_or_none()
    return None if row is None else _token(row)


async def list_tokens(
    session: AsyncSession, organization_id: str | None, *, include_revoked: bool = False
) -> list[TokenRecord]:
    """The organisation's tokens (every organisation's with None), newest first."""
    stmt = select(ApiTokenRow)
    if organization_id is not None:
        stmt = stmt.where(ApiTokenRow.organization_id == organization_id)
    if not include_revoked:
        stmt = stmt.where(ApiTokenRow.revoked_at.is_(None))
    stmt = stmt.order_by(ApiTokenRow.created_at.desc(), ApiTokenRow.id)
    return [_token(row) for row in (await session.scalars(stmt)).all()]


async def revoke_token(
    session: AsyncSession,
    token_id_or_name: str,
    *,
    organization_id: str | None,
    revoked_by: str,
    now: datetime | None = None,
) -> list[TokenRecord]:
    """Revoke the token with this id, or every unrevoked token with this name (within the organisation
    when given); NotFound when nothing matched."""
    stmt = (
        update(ApiTokenRow)
        .where(
            or_(ApiTokenRow.id == token_id_or_name, ApiTokenRow.name == token_id_or_name),
            ApiTokenRow.revoked_at.is_(None),
        )
        .values(revoked_at=now or utc_now(), revoked_by=revoked_by)
        .returning(ApiTokenRow.id)
    )
    if organization_id is not None:
        stmt = stmt.where(ApiTokenRow.organization_id == organization_id)
    ids = list((await session.scalars(stmt)).all())
    if not ids:
        raise NotFound(f"no unrevoked token has the id or name {token_id_or_name!r}")
    rows = (await session.scalars(select(ApiTokenRow).where(ApiTokenRow.id.in_(ids)))).all()
    return [_token(row) for row in rows]


# -- configs -----------------------------------------------------------------------------------------


async def set_config(
    session: AsyncSession,
    *,
    organization_id: str,
    scope: ConfigScope,
    owner: str,
    name: str,
    value: str,
    secret: bool,
    key_id: str,
    created_by: str,
    now: datetime | None = None,
) -> ConfigRecord:
    """Create or replace the config (organisation, scope, owner, name)."""
    when = now or utc_now()
    stmt = select(ConfigRow).where(
        ConfigRow.organization_id == organization_id,
        ConfigRow.scope == scope.value,
        ConfigRow.owner == owner,
        ConfigRow.name == name,
    )
    row = (await session.scalars(stmt)).one_or_none()
    if row is None:
        row = ConfigRow(
            id=str(uuid.uuid4()),
            organization_id=organization_id,
            scope=scope.value,
            owner=owner,
            name=name,
            created_by=created_by,
            created_at=when,
        )
        session.add(row)
    row.secret = secret
    row.value = value
    row.key_id = key_id
    row.updated_at = when
    await session.flush()
    return _config(row)


async def get_config(
    session: AsyncSession, *, organization_id: str, scope: ConfigScope, owner: str, name: str
) -> ConfigRecord:
    stmt = select(ConfigRow).where(
        ConfigRow.organization_id == organization_id,
        ConfigRow.scope == scope.value,
        ConfigRow.owner == owner,
        ConfigRow.name == name,
    )
    row = (await session.scalars(stmt)).one_or_none()
    if row is None:
        raise NotFound(f"no {scope.value} config {name!r}" + (f" of {owner!r}" if owner else ""))
    return _config(row)


async def list_configs(session: AsyncSession, organization_id: str | None) -> list[ConfigRecord]:
    """The organisation's configs (every organisation's with None: key rotation)."""
    stmt = select(ConfigRow)
    if organization_id is not None:
        stmt = stmt.where(ConfigRow.organization_id == organization_id)
    stmt = stmt.order_by(ConfigRow.organization_id, ConfigRow.scope, ConfigRow.owner, ConfigRow.name)
    return [_config(row) for row in (await session.scalars(stmt)).all()]


async def delete_config(
    session: AsyncSession, *, organization_id: str, scope: ConfigScope, owner: str, name: str
) -> None:
    result = await session.execute(
        delete(ConfigRow).where(
            ConfigRow.organization_id == organization_id,
            ConfigRow.scope == scope.value,
            ConfigRow.owner == owner,
            ConfigRow.name == name,
        )
    )
    if not getattr(result, "rowcount", 0):
        raise NotFound(f"no {scope.value} config {name!r}" + (f" of {owner!r}" if owner else ""))


_CONFIGS: Table = ConfigRow.__table__  # type: ignore[assignment]


def _task_configs_statement(_dialect: Dialect) -> ClauseElement:
    configs = _CONFIGS.c
    return select(*configs).where(
        configs.organization_id == bindparam("organization_id"),
        or_(
            configs.scope == ConfigScope.ORGANIZATION.value,
            (configs.scope == ConfigScope.JOB.value) & (configs.owner == bindparam("job_type")),
            (configs.scope == ConfigScope.USER.value) & (configs.owner == bindparam("user_id")),
        ),
    )


# read for every task dispatched (in the transaction creating its row): compiled once (see _fast)
_TASK_CONFIGS = FastStatement(_task_configs_statement, returning_columns(_CONFIGS))
_SCOPE_RANK = {ConfigScope.ORGANIZATION: 0, ConfigScope.JOB: 1, ConfigScope.USER: 2}


async def task_configs(
    session: AsyncSession, *, organization_id: str, job_type: str, user_id: str
) -> Callable[[], list[ConfigRecord]]:
    """The configs a task of `job_type` submitted by `user_id` sees, lowest precedence first
    (organisation, then the job type's, then the user's), so that later ones override earlier ones.

    Read with the transaction's deferred statements (`_fast.defer_returning`: no round trip of its own
    on PostgreSQL): call the result once the transaction has ended."""
    deferred = await defer_returning(
        session,
        _TASK_CONFIGS,
        {"organization_id": organization_id, "job_type": job_type, "user_id": user_id},
    )
    return lambda: _task_config_records(deferred.rows)


def _task_config_records(rows: list[dict[str, Any]]) -> list[ConfigRecord]:
    found = [
        ConfigRecord(
            id=row["id"],
            organization_id=row["organization_id"],
            scope=ConfigScope(row["scope"]),
            owner=row["owner"],
            name=row["name"],
            secret=row["secret"],
            value=row["value"],
            key_id=row["key_id"],
            updated_at=row["updated_at"],
        )
        for row in rows
    ]
    return sorted(found, key=lambda record: (_SCOPE_RANK[record.scope], record.name))


# -- audit -------------------------------------------------------------------------------------------


async def audit(
    session: AsyncSession,
    *,
    organization_id: str,
    actor: str,
    action: str,
    subject: str,
    now: datetime | None = None,
) -> None:
    session.add(
        SecurityAuditRow(
            organization_id=organization_id,
            actor=actor,
            action=action,
            subject=subject,
            created_at=now or utc_now(),
        )
    )
    await session.flush()


async def list_audit(session: AsyncSession, organization_id: str | None) -> list[AuditRecord]:
    stmt = select(SecurityAuditRow)
    if organization_id is not None:
        stmt = stmt.where(SecurityAuditRow.organization_id == organization_id)
    rows = (await session.scalars(stmt.order_by(SecurityAuditRow.id))).all()
    return [
        AuditRecord(row.id, row.organization_id, row.actor, row.action, row.subject, row.created_at)
        for row in rows
    ]
