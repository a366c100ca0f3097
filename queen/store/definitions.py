"""Job definitions: immutable versions per (organization, job type), de-duplicated by a canonical digest.

Rules:
- An upload whose parsed definition equals the latest visible version's (same digest) is a no-op; the
  digest is taken over a canonical form of the *parsed* definition, so comments, key order, quoting
  and layout do not count. Anything else becomes version max+1 (versions are never reused, not even
  after a soft delete).
- `disabled` belongs to the job type: it is set on every version, and a new upload inherits it (an
  upload does not silently re-enable a type an operator disabled).
- A soft-deleted type is invisible to lookups by type and to listings; `get_definition(id)` still
  finds every version, because requests pin the version they were submitted with.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Table, and_, bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from queen.domain.errors import AlreadyExists, FailedPrecondition, NotFound
from queen.domain.job_definition import JobDefinition
from queen.store._clock import utc_now
from queen.store._fast import FastStatement, returning_columns, run
from queen.store._guarded import rowcount
from queen.store._json import to_json_value
from queen.store.models import JobDefinitionRow
from queen.store.records import DefinitionRecord

__all__ = [
    "canonical_definition",
    "cron_definitions",
    "definition_digest",
    "get_definition",
    "get_definition_version",
    "get_latest_definition",
    "list_definitions",
    "list_versions",
    "pinned_definition",
    "save_definition",
    "set_disabled",
    "soft_delete",
]

# Bumped if the canonical form ever changes meaning (then every next upload is a new version once).
_CANONICAL_FORMAT = "formicary.job-definition/1"
# Two uploads racing for the same next version: the loser re-reads and tries again this many times.
_SAVE_ATTEMPTS = 3


def canonical_definition(definition: JobDefinition) -> str:
    """The definition as canonical JSON: every field (defaults included), keys sorted, tasks in order."""
    body = {"format": _CANONICAL_FORMAT, "definition": _canonical(definition)}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def definition_digest(definition: JobDefinition) -> str:
    """sha256 (hex) of `canonical_definition`."""
    return hashlib.sha256(canonical_definition(definition).encode()).hexdigest()


def _canonical(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: _canonical(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, frozenset | set):
        return sorted(_canonical(item) for item in value)
    if isinstance(value, Mapping):
        return {str(key): _canonical(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    return to_json_value(value)


async def save_definition(
    session: AsyncSession,
    *,
    organization_id: str,
    user_id: str,
    yaml: str,
    definition: JobDefinition,
    now: datetime | None = None,
) -> tuple[DefinitionRecord, bool]:
    """Store `definition` (parsed from `yaml`) as the next version of its job type.

    Returns (latest version, False) when it equals the latest visible version, else (new version, True).
    """
    now = now or utc_now()
    digest = definition_digest(definition)
    job_type = definition.job_type
    for _ in range(_SAVE_ATTEMPTS):
        latest = await _latest_row(session, organization_id, job_type)
        if latest is not None and latest.digest == digest:
            return _record(latest), False
        highest = await session.scalar(
            select(func.max(JobDefinitionRow.version)).where(
                JobDefinitionRow.organization_id == organization_id, JobDefinitionRow.job_type == job_type
            )
        )
        row = JobDefinitionRow(
            id=str(uuid.uuid4()),
            organization_id=organization_id,
            user_id=user_id,
            job_type=job_type,
            version=(highest or 0) + 1,
            digest=digest,
            yaml=yaml,
            description=definition.description,
            cron_trigger=definition.cron_trigger,
            max_concurrency=definition.max_concurrency,
            methods=sorted(method.value for method in definition.methods),
            tags=sorted(definition.all_tags),
            disabled=latest.disabled if latest is not None else False,
            deleted_at=None,
            created_at=now,
            updated_at=now,
        )
        try:
            # A savepoint, so that losing the race for this version leaves the caller's transaction usable.
            async with session.begin_nested():
                session.add(row)
        except IntegrityError:
            continue
        return _record(row), True
    raise AlreadyExists(
        f"job type {job_type!r}: another upload took each next version {_SAVE_ATTEMPTS} times; try again"
    )


async def get_definition(session: AsyncSession, definition_id: str) -> DefinitionRecord:
    """The version with this id, disabled or soft-deleted included (requests pin versions by id)."""
    rows = await run(session, _GET_DEFINITION, {"w_id": definition_id})
    if not rows:
        raise NotFound(f"job definition {definition_id} does not exist")
    return _record(SimpleNamespace(**rows[0]))


async def pinned_definition(session: AsyncSession, definition_id: str) -> DefinitionRecord:
    """`get_definition` for running the version a request pinned: a version's content never changes, so
    the record read once is kept (per process, the last `_PINNED_SIZE` versions) and later calls read
    nothing. Its `disabled`, `deleted_at` and `updated_at` are as they were at that read: a caller that
    shows them or decides on them uses `get_definition`."""
    found = _PINNED.get(definition_id)
    if found is not None:
        _PINNED.move_to_end(definition_id)
        return found
    record = _PINNED[definition_id] = await get_definition(session, definition_id)
    while len(_PINNED) > _PINNED_SIZE:
        _PINNED.popitem(last=False)
    return record


_PINNED_SIZE = 256
_PINNED: OrderedDict[str, DefinitionRecord] = OrderedDict()


async def get_latest_definition(
    session: AsyncSession, organization_id: str, job_type: str, include_disabled: bool = False
) -> DefinitionRecord:
    """The latest visible version of the job type; NotFound if none, or if it is disabled (unless asked)."""
    rows = await run(session, _LATEST_DEFINITION, {"organization_id": organization_id, "job_type": job_type})
    row = SimpleNamespace(**rows[0]) if rows else None
    if row is None:
        raise NotFound(f"job type {job_type!r} does not exist")
    if row.disabled and not include_disabled:
        raise FailedPrecondition(f"job type {job_type!r} is disabled")
    return _record(row)


async def get_definition_version(
    session: AsyncSession, organization_id: str, job_type: str, version: int
) -> DefinitionRecord:
    """One version of a visible (not soft-deleted) job type, disabled or not."""
    stmt = _visible(organization_id, job_type).where(JobDefinitionRow.version == version)
    row = (await session.scalars(stmt)).one_or_none()
    if row is None:
        raise NotFound(f"job type {job_type!r} has no version {version}")
    return _record(row)


async def list_definitions(
    session: AsyncSession, organization_id: str, *, limit: int = 100, offset: int = 0
) -> list[DefinitionRecord]:
    """The latest version of each visible job type of the organization (disabled ones too), by job type."""
    latest = (
        select(JobDefinitionRow.job_type, func.max(JobDefinitionRow.version).label("version"))
        .where(JobDefinitionRow.organization_id == organization_id, JobDefinitionRow.deleted_at.is_(None))
        .group_by(JobDefinitionRow.job_type)
        .subquery()
    )
    stmt = (
        select(JobDefinitionRow)
        .join(
            latest,
            and_(
                JobDefinitionRow.job_type == latest.c.job_type,
                JobDefinitionRow.version == latest.c.version,
            ),
        )
        .where(JobDefinitionRow.organization_id == organization_id)
        .order_by(JobDefinitionRow.job_type)
        .limit(limit)
        .offset(offset)
        .execution_options(populate_existing=True)
    )
    return [_record(row) for row in (await session.scalars(stmt)).all()]


async def cron_definitions(session: AsyncSession) -> list[DefinitionRecord]:
    """The latest version of every enabled, visible job type (all organizations) that has a cron_trigger."""
    latest = (
        select(
            JobDefinitionRow.organization_id,
            JobDefinitionRow.job_type,
            func.max(JobDefinitionRow.version).label("version"),
        )
        .where(JobDefinitionRow.deleted_at.is_(None))
        .group_by(JobDefinitionRow.organization_id, JobDefinitionRow.job_type)
        .subquery()
    )
    stmt = (
        select(JobDefinitionRow)
        .join(
            latest,
            and_(
                JobDefinitionRow.organization_id == latest.c.organization_id,
                JobDefinitionRow.job_type == latest.c.job_type,
                JobDefinitionRow.version == latest.c.version,
            ),
        )
        .where(JobDefinitionRow.cron_trigger != "", JobDefinitionRow.disabled.is_(False))
        .order_by(JobDefinitionRow.organization_id, JobDefinitionRow.job_type)
        .execution_options(populate_existing=True)
    )
    return [_record(row) for row in (await session.scalars(stmt)).all()]


async def list_versions(session: AsyncSession, organization_id: str, job_type: str) -> list[DefinitionRecord]:
    """Every version of a visible job type, newest first (empty if the type does not exist)."""
    stmt = _visible(organization_id, job_type).order_by(JobDefinitionRow.version.desc())
    return [_record(row) for row in (await session.scalars(stmt)).all()]


async def set_disabled(
    session: AsyncSession, organization_id: str, job_type: str, disabled: bool, *, now: datetime | None = None
) -> DefinitionRecord:
    """Disable (or enable) the job type, every version; returns its latest version. NotFound if none."""
    result = await session.execute(
        update(JobDefinitionRow)
        .where(
            JobDefinitionRow.organization_id == organization_id,
            JobDefinitionRow.job_type == job_type,
            JobDefinitionRow.deleted_at.is_(None),
        )
        .values(disabled=disabled, updated_at=now or utc_now())
        .execution_options(synchronize_session=False)
    )
    if rowcount(result) == 0:
        raise NotFound(f"job type {job_type!r} does not exist")
    return await get_latest_definition(session, organization_id, job_type, include_disabled=True)


async def soft_delete(
    session: AsyncSession, organization_id: str, job_type: str, *, now: datetime | None = None
) -> int:
    """Hide every version of the job type; returns how many. NotFound if it is not visible."""
    now = now or utc_now()
    result = await session.execute(
        update(JobDefinitionRow)
        .where(
            JobDefinitionRow.organization_id == organization_id,
            JobDefinitionRow.job_type == job_type,
            JobDefinitionRow.deleted_at.is_(None),
        )
        .values(deleted_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    count = rowcount(result)
    if count == 0:
        raise NotFound(f"job type {job_type!r} does not exist")
    return count


def _visible(organization_id: str, job_type: str) -> Any:
    return (
        select(JobDefinitionRow)
        .where(
            JobDefinitionRow.organization_id == organization_id,
            JobDefinitionRow.job_type == job_type,
            JobDefinitionRow.deleted_at.is_(None),
        )
        .execution_options(populate_existing=True)
    )


async def _latest_row(session: AsyncSession, organization_id: str, job_type: str) -> JobDefinitionRow | None:
    stmt = _visible(organization_id, job_type).order_by(JobDefinitionRow.version.desc()).limit(1)
    return (await session.scalars(stmt)).first()


_DEFINITIONS: Table = JobDefinitionRow.__table__  # type: ignore[assignment]
# the submission path's reads (see _fast)
_GET_DEFINITION = FastStatement(
    lambda _dialect: select(*_DEFINITIONS.c).where(_DEFINITIONS.c.id == bindparam("w_id")),
    returning_columns(_DEFINITIONS),
)
_LATEST_DEFINITION = FastStatement(
    lambda _dialect: (
        select(*_DEFINITIONS.c)
        .where(
            _DEFINITIONS.c.organization_id == bindparam("organization_id"),
            _DEFINITIONS.c.job_type == bindparam("job_type"),
            _DEFINITIONS.c.deleted_at.is_(None),
        )
        .order_by(_DEFINITIONS.c.version.desc())
        .limit(1)
    ),
    returning_columns(_DEFINITIONS),
)


def _record(row: JobDefinitionRow | SimpleNamespace) -> DefinitionRecord:
    return DefinitionRecord(
        id=row.id,
        organization_id=row.organization_id,
        user_id=row.user_id,
        job_type=row.job_type,
        version=row.version,
        digest=row.digest,
        yaml=row.yaml,
        description=row.description,
        cron_trigger=row.cron_trigger,
        max_concurrency=row.max_concurrency,
        methods=tuple(row.methods),
        tags=tuple(row.tags),
        disabled=row.disabled,
        deleted_at=row.deleted_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
