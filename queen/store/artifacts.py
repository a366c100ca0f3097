"""Artifact records: created after their content is stored, read and listed per organisation, soft-deleted.

Every read takes the caller's organisation and sees only that organisation's artifacts that are not
deleted; an artifact of another organisation is NotFound, exactly like one that does not exist.
`expired_artifacts` is the one organisation-wide query (for the expiry sweep).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from queen.domain.errors import NotFound
from queen.store._clock import utc_now
from queen.store._fast import FastStatement, defer, run
from queen.store._json import freeze_mapping
from queen.store.models import ArtifactRow
from queen.store.records import ArtifactKind, ArtifactRecord

__all__ = [
    "create_artifact",
    "expired_artifacts",
    "get_artifact",
    "list_artifacts",
    "soft_delete_artifact",
]


async def create_artifact(
    session: AsyncSession,
    *,
    artifact_id: str,
    organization_id: str,
    user_id: str,
    name: str,
    kind: ArtifactKind,
    bucket: str,
    key: str,
    sha256: str,
    content_length: int,
    content_type: str,
    job_request_id: int | None = None,
    job_execution_id: str | None = None,
    task_execution_id: str | None = None,
    task_type: str = "",
    metadata: Mapping[str, str] | None = None,
    expires_at: datetime | None = None,
    now: datetime | None = None,
    later: bool = False,
) -> ArtifactRecord:
    """Record an artifact whose content is already stored under (`bucket`, `key`); flushed, so a broken
    reference (unknown job request, execution or task) or a reused key fails here with IntegrityError.
    `later`: inserted with the transaction's deferred statements (`_fast.defer`: a batch of records in
    one round trip on PostgreSQL), so such a failure comes at the end of the transaction instead."""
    values: dict[str, Any] = {
        "id": artifact_id,
        "organization_id": organization_id,
        "user_id": user_id,
        "job_request_id": job_request_id,
        "job_execution_id": job_execution_id,
        "task_execution_id": task_execution_id,
        "task_type": task_type,
        "name": name,
        "kind": kind,
        "bucket": bucket,
        "key": key,
        "sha256": sha256,
        "content_length": content_length,
        "content_type": content_type,
        "metadata": {str(k): str(v) for k, v in (metadata or {}).items()},  # the `labels` attribute
        "expires_at": expires_at,
        "created_at": now or utc_now(),
        "deleted_at": None,
    }
    if later:
        await defer(session, _INSERT_ARTIFACT, values)
    else:
        await run(session, _INSERT_ARTIFACT, values)
    return _record(SimpleNamespace(**values, labels=values["metadata"]))


_ARTIFACTS: Table = ArtifactRow.__table__  # type: ignore[assignment]
_ARTIFACT_INSERTED = (
    "id",
    "organization_id",
    "user_id",
    "job_request_id",
    "job_execution_id",
    "task_execution_id",
    "task_type",
    "name",
    "kind",
    "bucket",
    "key",
    "sha256",
    "content_length",
    "content_type",
    "metadata",
    "expires_at",
    "created_at",
    "deleted_at",
)
# every finished attempt's log is recorded (see _fast)
_INSERT_ARTIFACT = FastStatement(
    lambda _dialect: insert(_ARTIFACTS).values({key: bindparam(key) for key in _ARTIFACT_INSERTED})
)


async def get_artifact(session: AsyncSession, artifact_id: str, *, organization_id: str) -> ArtifactRecord:
    """The organisation's artifact; NotFound if it does not exist, is deleted, or is another's."""
    stmt = _visible(organization_id).where(ArtifactRow.id == artifact_id)
    row = (await session.scalars(stmt)).one_or_none()
    if row is None:
        raise NotFound(f"artifact {artifact_id} does not exist")
    return _record(row)


async def list_artifacts(
    session: AsyncSession,
    organization_id: str,
    *,
    job_request_id: int | None = None,
    task_execution_id: str | None = None,
    task_type: str | None = None,
    kind: ArtifactKind | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[ArtifactRecord]:
    """The organisation's artifacts, newest first, optionally only those of a job request, a task
    execution, a task type or a kind (filters combine)."""
    stmt = _visible(organization_id)
    if job_request_id is not None:
        stmt = stmt.where(ArtifactRow.job_request_id == job_request_id)
    if task_execution_id is not None:
        stmt = stmt.where(ArtifactRow.task_execution_id == task_execution_id)
    if task_type is not None:
        stmt = stmt.where(ArtifactRow.task_type == task_type)
    if kind is not None:
        stmt = stmt.where(ArtifactRow.kind == kind)
    stmt = stmt.order_by(ArtifactRow.created_at.desc(), ArtifactRow.id.desc()).limit(limit).offset(offset)
    return [_record(row) for row in (await session.scalars(stmt)).all()]


async def soft_delete_artifact(
    session: AsyncSession, artifact_id: str, *, organization_id: str, now: datetime | None = None
) -> ArtifactRecord:
    """Mark the organisation's artifact deleted and return it; NotFound if it is not visible (a second
    delete, racing or not, is NotFound: one guarded UPDATE decides)."""
    stmt = (
        update(ArtifactRow)
        .where(
            ArtifactRow.id == artifact_id,
            ArtifactRow.organization_id == organization_id,
            ArtifactRow.deleted_at.is_(None),
        )
        .values(deleted_at=now or utc_now())
        .returning(ArtifactRow)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    row = (await session.execute(stmt)).scalars().one_or_none()
    if row is None:
        raise NotFound(f"artifact {artifact_id} does not exist")
    return _record(row)


async def expired_artifacts(
    session: AsyncSession, now: datetime, *, limit: int = 100
) -> list[ArtifactRecord]:
    """Artifacts of every organisation whose expiry is at or before `now` and that are not deleted yet,
    soonest expired first, at most `limit`."""
    stmt = (
        select(ArtifactRow)
        .where(ArtifactRow.expires_at <= now, ArtifactRow.deleted_at.is_(None))
        .order_by(ArtifactRow.expires_at, ArtifactRow.id)
        .limit(limit)
        .execution_options(populate_existing=True)
    )
    return [_record(row) for row in (await session.scalars(stmt)).all()]


def _visible(organization_id: str) -> Any:
    return (
        select(ArtifactRow)
        .where(ArtifactRow.organization_id == organization_id, ArtifactRow.deleted_at.is_(None))
        .execution_options(populate_existing=True)
    )


def _record(row: ArtifactRow | SimpleNamespace) -> ArtifactRecord:
    return ArtifactRecord(
        id=row.id,
        organization_id=row.organization_id,
        user_id=row.user_id,
        job_request_id=row.job_request_id,
        job_execution_id=row.job_execution_id,
        task_execution_id=row.task_execution_id,
        task_type=row.task_type,
        name=row.name,
        kind=row.kind,
        bucket=row.bucket,
        key=row.key,
        sha256=row.sha256,
        content_length=row.content_length,
        content_type=row.content_type,
        metadata=freeze_mapping(row.labels),
        expires_at=row.expires_at,
        created_at=row.created_at,
        deleted_at=row.deleted_at,
    )
