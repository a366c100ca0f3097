"""Artifacts: uploads (checked, measured and stored, then recorded), downloads, listings, deletion, and
the Queen's own task logs; every operation scoped to the caller's organisation.

Order of an upload, and why: the metadata is checked and its job request / task resolved first (a bad
upload fails before any byte is read); then the content streams into the object store, which keeps
nothing unless the whole stream arrived within the limit and matched the announced size and digest;
only then is the record inserted. If that insert fails (or the call is cancelled in between), the
object is deleted again, so an artifact is visible exactly when both its content and its record exist.
Deletion runs the other way round: the record is marked deleted first (the artifact disappears for
everyone at once), then the content is removed; content that cannot be removed is logged, not retried.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import hashlib
import re
import uuid
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from queen.artifacts import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_CONTENT_TYPE,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreError,
    StoredObject,
    artifact_key,
    check_artifact_name,
    check_task_type,
)
from queen.domain.errors import InvalidArgument, NotFound, PermissionDenied
from queen.domain.identity import Identity
from queen.store import (
    Database,
    JobExecutionRecord,
    JobRequestRecord,
    TaskExecutionRecord,
    executions,
    requests,
)
from queen.store import artifacts as artifact_records
from queen.store._clock import utc_now
from queen.store.records import ArtifactKind, ArtifactRecord

__all__ = ["ANT_ROLE", "QUEEN_USER_ID", "ArtifactService", "ArtifactUpload", "TaskLog"]

log = structlog.get_logger(__name__)

# The role of an Ant's identity; with "admin" (the embedded Queen's local identity) the roles that may
# upload what tasks produce (TASK, CACHE, LOG).
ANT_ROLE = "ant"
_TASK_CONTENT_ROLES = frozenset({ANT_ROLE, "admin"})
_TASK_CONTENT_KINDS = frozenset({ArtifactKind.TASK, ArtifactKind.CACHE, ArtifactKind.LOG})
# Who stored the logs the Queen stores itself (ArtifactRecord.user_id).
QUEEN_USER_ID = "formicary-queen"
LOG_CONTENT_TYPE = "text/plain; charset=utf-8"

_MAX_LABELS = 64
_MAX_LABEL_KEY = 128
_MAX_LABEL_VALUE = 1024
_MAX_ID_CHARS = 64
_MAX_CONTENT_TYPE = 255
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
# type "/" subtype (RFC 6838 restricted names), optional parameters.
_CONTENT_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*(\s*;[ -~]*)?")
_LOG_BATCH = 64 * 1024
_LOG_TRUNCATED = b"\n[formicary: log truncated at the artifact size limit]\n"


@dataclass(frozen=True, slots=True)
class ArtifactUpload:
    """What an uploader says about the artifact it is about to send (UploadArtifactMetadata).

    `content_length` and `sha256`, when given, are checked against the content received. A
    `task_execution_id` alone is enough to tie the artifact to its task (its job request and execution
    are looked up); `job_request_id` alone ties it to the request and its current execution.
    """

    name: str
    kind: ArtifactKind = ArtifactKind.USER
    content_type: str = ""
    job_request_id: int | None = None
    task_execution_id: str = ""
    task_type: str = ""
    metadata: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    retention: timedelta | None = None
    content_length: int | None = None
    sha256: str = ""


@dataclass(frozen=True, slots=True)
class TaskLog:
    """One attempt's console log to store as a LOG artifact, with where it belongs (known to the caller)."""

    organization_id: str
    job_request_id: int
    job_execution_id: str
    task_execution_id: str
    task_type: str
    name: str
    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Stored:
    """Content written to the object store, not yet recorded."""

    artifact_id: str
    key: str
    stored: StoredObject


@dataclass(frozen=True, slots=True)
class _Owner:
    """Where an artifact belongs, as resolved in the caller's organisation."""

    job_request_id: int | None = None
    job_execution_id: str | None = None
    task_execution_id: str | None = None
    task_type: str = ""


class ArtifactService:
    """Operations on artifacts; content in `store`, records in `db`, at most `max_bytes` per artifact."""

    def __init__(
        self,
        db: Database,
        store: ObjectStore,
        max_bytes: int,
        *,
        default_retention: timedelta | None = None,
    ) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self._db = db
        self._store = store
        self._max_bytes = max_bytes
        self._default_retention = default_retention
        # Set by the Queen: masks the running attempt's secrets in the names of the files it uploads.
        self.mask_name: Callable[[str, str], str] | None = None

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    async def upload(
        self, identity: Identity, upload: ArtifactUpload, chunks: AsyncIterable[bytes]
    ) -> ArtifactRecord:
        """Store `chunks` as a new artifact described by `upload`, owned by the caller's organisation.

        InvalidArgument for a bad name, label, content type, retention or digest, for content beyond the
        limit (ObjectTooLarge) and for content that differs from the announced size or digest
        (ContentMismatch); NotFound for a job request or task execution the caller cannot see;
        PermissionDenied for TASK, CACHE and LOG artifacts from anyone but an Ant (or an admin).
        """
        if self.mask_name is not None and upload.task_execution_id:
            upload = dataclasses.replace(upload, name=self.mask_name(upload.task_execution_id, upload.name))
        self._check_upload(identity, upload)
        async with self._db.transaction() as session:
            owner = await self._resolve_owner(session, identity.organization_id, upload)
        return await self._store_artifact(identity.organization_id, identity.user_id, upload, owner, chunks)

    async def download(
        self, identity: Identity, artifact_id: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> tuple[ArtifactRecord, AsyncGenerator[bytes, None]]:
        """The artifact and its content in chunks (close the iterator if not reading to the end).

        The content is opened before this returns, so a missing object fails here rather than midway.
        While streaming, size and digest are checked against the record: content that changed in the
        store ends the stream with ObjectStoreError after the last chunk instead of a quiet success.
        """
        async with self._db.transaction() as session:
            record = await artifact_records.get_artifact(
                session, _artifact_id(artifact_id), organization_id=identity.organization_id
            )
        content = self._store.get(record.key, chunk_size=chunk_size)
        try:
            first = await anext(content, None)
        except ObjectNotFound as exc:
            await content.aclose()
            raise ObjectStoreError(
                f"the content of artifact {record.id} is missing from the object store "
                f"(bucket {record.bucket!r}, key {record.key!r})"
            ) from exc
        except BaseException:
            await content.aclose()
            raise
        return record, _verified(record, first, content)

    async def get(self, identity: Identity, artifact_id: str) -> ArtifactRecord:
        """The artifact's record; NotFound if the caller's organisation has no such artifact."""
        async with self._db.transaction() as session:
            return await artifact_records.get_artifact(
                session, _artifact_id(artifact_id), organization_id=identity.organization_id
            )

    async def list(
        self,
        identity: Identity,
        *,
        job_request_id: int | None = None,
        task_execution_id: str | None = None,
        task_type: str | None = None,
        kind: ArtifactKind | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> builtins.list[ArtifactRecord]:
        """The organisation's artifacts, newest first, filtered by whichever of the arguments are given."""
        async with self._db.transaction() as session:
            return await artifact_records.list_artifacts(
                session,
                identity.organization_id,
                job_request_id=job_request_id,
                task_execution_id=task_execution_id,
                task_type=task_type,
                kind=kind,
                limit=limit,
                offset=offset,
            )

    async def delete(self, identity: Identity, artifact_id: str) -> ArtifactRecord:
        """Delete the artifact (record first, then content); NotFound if unknown or already deleted."""
        async with self._db.transaction() as session:
            record = await artifact_records.soft_delete_artifact(
                session, _artifact_id(artifact_id), organization_id=identity.organization_id
            )
        await self._remove_content(record)
        log.info("artifact_deleted", artifact_id=record.id, user_id=identity.user_id)
        return record

    async def store_log(
        self,
        task_execution_id: str,
        lines: Iterable[str] | AsyncIterable[str],
        *,
        name: str = "",
        user_id: str = QUEEN_USER_ID,
        retention: timedelta | None = None,
    ) -> ArtifactRecord:
        """Store a task execution's console log as its LOG artifact (the Queen's own call, no identity).

        `lines` are written one per line (UTF-8, "\\n" appended); the name defaults to
        "<task type>.log". A log beyond the size limit is cut there with a note, not refused: the start
        of a runaway log is what people need. Redact secrets before handing the lines over.
        """
        async with self._db.transaction() as session:
            task, execution, request = await _task_context(session, task_execution_id, organization_id=None)
        upload = ArtifactUpload(
            name=name or f"{task.task_type}.log",
            kind=ArtifactKind.LOG,
            content_type=LOG_CONTENT_TYPE,
            task_execution_id=task.id,
            retention=retention,
        )
        check_artifact_name(upload.name)
        owner = _Owner(request.id, execution.id, task.id, task.task_type)
        content = _encoded_lines(lines, self._max_bytes)
        return await self._store_artifact(request.organization_id, user_id, upload, owner, content)

    async def delete_expired(self, *, now: datetime | None = None, limit: int = 100) -> int:
        """Delete up to `limit` artifacts (of every organisation) whose expiry has passed; how many."""
        now = now or utc_now()
        async with self._db.transaction() as session:
            expired = await artifact_records.expired_artifacts(session, now, limit=limit)
        deleted = 0
        for candidate in expired:
            try:
                async with self._db.transaction() as session:
                    record = await artifact_records.soft_delete_artifact(
                        session, candidate.id, organization_id=candidate.organization_id, now=now
                    )
            except NotFound:
                continue  # deleted meanwhile
            await self._remove_content(record)
            deleted += 1
        if deleted:
            log.info("artifacts_expired", count=deleted)
        return deleted

    # -- internals -------------------------------------------------------------------------------------

    def _check_upload(self, identity: Identity, upload: ArtifactUpload) -> None:
        check_artifact_name(upload.name)
        check_task_type(upload.task_type)
        if upload.kind in _TASK_CONTENT_KINDS and not (identity.roles & _TASK_CONTENT_ROLES):
            raise PermissionDenied(f"only Ants upload {upload.kind.value} artifacts")
        if len(upload.content_type) > _MAX_CONTENT_TYPE or (
            upload.content_type and not _CONTENT_TYPE.fullmatch(upload.content_type)
        ):
            raise InvalidArgument(
                "content_type must be a MIME type such as `text/html; charset=utf-8`", field="content_type"
            )
        if upload.job_request_id is not None and upload.job_request_id <= 0:
            raise InvalidArgument("job_request_id must be positive", field="job_request_id")
        if len(upload.task_execution_id) > _MAX_ID_CHARS:
            raise InvalidArgument("task_execution_id is not a task execution id", field="task_execution_id")
        _check_labels(upload.metadata)
        if upload.retention is not None and upload.retention <= timedelta(0):
            raise InvalidArgument("retention_duration must be positive", field="retention_duration")
        if upload.content_length is not None and upload.content_length < 0:
            raise InvalidArgument("content_length must not be negative", field="content_length")
        if upload.sha256 and not _SHA256.fullmatch(upload.sha256):
            raise InvalidArgument("sha256 must be 64 hexadecimal characters", field="sha256")

    async def _resolve_owner(
        self, session: AsyncSession, organization_id: str, upload: ArtifactUpload
    ) -> _Owner:
        if upload.task_execution_id:
            task, execution, request = await _task_context(
                session, upload.task_execution_id, organization_id=organization_id
            )
            if upload.job_request_id is not None and upload.job_request_id != request.id:
                raise InvalidArgument(
                    f"task execution {task.id} does not belong to job request {upload.job_request_id}",
                    field="task_execution_id",
                )
            if upload.task_type and upload.task_type != task.task_type:
                raise InvalidArgument(
                    f"task execution {task.id} is of task type {task.task_type!r}, not {upload.task_type!r}",
                    field="task_type",
                )
            return _Owner(request.id, execution.id, task.id, task.task_type)
        if upload.job_request_id is not None:
            request = await requests.get_request(
                session, upload.job_request_id, organization_id=organization_id
            )
            return _Owner(request.id, request.job_execution_id, None, upload.task_type)
        return _Owner(task_type=upload.task_type)

    async def _store_artifact(
        self,
        organization_id: str,
        user_id: str,
        upload: ArtifactUpload,
        owner: _Owner,
        chunks: AsyncIterable[bytes],
    ) -> ArtifactRecord:
        artifact_id = str(uuid.uuid4())
        key = artifact_key(
            organization_id=organization_id,
            job_request_id=owner.job_request_id,
            task_type=owner.task_type,
            artifact_id=artifact_id,
            name=upload.name,
        )
        content_type = upload.content_type or DEFAULT_CONTENT_TYPE
        stored = await self._store.put(
            key,
            chunks,
            content_type=content_type,
            max_bytes=self._max_bytes,
            expected_size=upload.content_length,
            expected_sha256=upload.sha256 or None,
        )
        now = utc_now()
        try:
            async with self._db.transaction() as session:
                record = await self._record_artifact(
                    session,
                    organization_id=organization_id,
                    user_id=user_id,
                    upload=upload,
                    owner=owner,
                    content=_Stored(artifact_id, key, stored),
                    now=now,
                )
        except BaseException:
            # No record, so no artifact: the content must go too (even if this task is being cancelled).
            await asyncio.shield(self._remove_object(key))
            raise
        log.info(
            "artifact_stored",
            artifact_id=record.id,
            kind=record.kind.value,
            job_request_id=record.job_request_id,
            task_type=record.task_type,
            content_length=record.content_length,
        )
        return record

    async def store_logs(self, logs: Iterable[TaskLog]) -> builtins.list[ArtifactRecord]:
        """Store several attempts' console logs as LOG artifacts, their records in ONE transaction.

        What the LogArchive calls with the attempts that finished since its last batch: the owners come
        from the supervisor (no lookup), the contents go to the object store in one `put_many`, the
        records are inserted together. When the transaction fails no record exists and every object is
        removed.
        """
        batch: list[tuple[TaskLog, str, str, bytes]] = []
        for task_log in logs:
            check_artifact_name(task_log.name)
            artifact_id = str(uuid.uuid4())
            key = artifact_key(
                organization_id=task_log.organization_id,
                job_request_id=task_log.job_request_id,
                task_type=task_log.task_type,
                artifact_id=artifact_id,
                name=task_log.name,
            )
            batch.append((task_log, artifact_id, key, _encoded_log(task_log.lines, self._max_bytes)))
        if not batch:
            return []
        written: list[tuple[TaskLog, str, str, StoredObject]] = []
        try:
            # the contents in one call (all or none; the local store makes them durable together)
            contents = await self._store.put_many(
                [(key, data) for _, _, key, data in batch], max_bytes=self._max_bytes
            )
            written = [
                (task_log, artifact_id, key, stored)
                for (task_log, artifact_id, key, _), stored in zip(batch, contents, strict=True)
            ]
            now = utc_now()
            async with self._db.transaction() as session:
                records = [
                    await self._record_artifact(
                        session,
                        organization_id=task_log.organization_id,
                        user_id=QUEEN_USER_ID,
                        upload=ArtifactUpload(
                            name=task_log.name,
                            kind=ArtifactKind.LOG,
                            content_type=LOG_CONTENT_TYPE,
                            task_execution_id=task_log.task_execution_id,
                        ),
                        owner=_Owner(
                            task_log.job_request_id,
                            task_log.job_execution_id,
                            task_log.task_execution_id,
                            task_log.task_type,
                        ),
                        content=_Stored(artifact_id, key, stored),
                        now=now,
                        later=True,  # the batch's records in one statement (one round trip on PostgreSQL)
                    )
                    for task_log, artifact_id, key, stored in written
                ]
        except BaseException:
            # No records, so no artifacts: the contents must go too (even if this task is being cancelled).
            for _, _, key, _ in written:
                await asyncio.shield(self._remove_object(key))
            raise
        log.debug("task_logs_stored", count=len(records))
        return records

    async def _record_artifact(
        self,
        session: AsyncSession,
        *,
        organization_id: str,
        user_id: str,
        upload: ArtifactUpload,
        owner: _Owner,
        content: _Stored,
        now: datetime,
        later: bool = False,
    ) -> ArtifactRecord:
        """The record of content already in the object store (in the caller's transaction; `later`: with
        its deferred statements, see `artifact_records.create_artifact`)."""
        retention = upload.retention or self._default_retention
        return await artifact_records.create_artifact(
            session,
            artifact_id=content.artifact_id,
            organization_id=organization_id,
            user_id=user_id,
            name=upload.name,
            kind=upload.kind,
            bucket=self._store.bucket,
            key=content.key,
            sha256=content.stored.sha256,
            content_length=content.stored.size,
            content_type=upload.content_type or DEFAULT_CONTENT_TYPE,
            job_request_id=owner.job_request_id,
            job_execution_id=owner.job_execution_id,
            task_execution_id=owner.task_execution_id,
            task_type=owner.task_type,
            metadata=upload.metadata,
            expires_at=None if retention is None else now + retention,
            now=now,
            later=later,
        )

    async def _remove_content(self, record: ArtifactRecord) -> None:
        await self._remove_object(record.key, artifact_id=record.id)

    async def _remove_object(self, key: str, *, artifact_id: str = "") -> None:
        try:
            await self._store.delete(key)
        except ObjectStoreError:
            log.warning(
                "artifact_content_left_behind",
                artifact_id=artifact_id,
                bucket=self._store.bucket,
                key=key,
                exc_info=True,
            )


def _artifact_id(value: str) -> str:
    """An id as given by a caller: anything that cannot be an artifact id is simply not found."""
    if not value:
        raise InvalidArgument("artifact_id is required", field="artifact_id")
    if len(value) > _MAX_ID_CHARS:
        raise InvalidArgument("artifact_id is not an artifact id", field="artifact_id")
    return value


def _check_labels(labels: Mapping[str, str]) -> None:
    if len(labels) > _MAX_LABELS:
        raise InvalidArgument(f"at most {_MAX_LABELS} metadata entries", field="metadata")
    for key, value in labels.items():
        if not key or len(key) > _MAX_LABEL_KEY:
            raise InvalidArgument(f"metadata keys have 1 to {_MAX_LABEL_KEY} characters", field="metadata")
        if len(value) > _MAX_LABEL_VALUE:
            raise InvalidArgument(
                f"metadata value of {key!r} is longer than {_MAX_LABEL_VALUE} characters", field="metadata"
            )


async def _task_context(
    session: AsyncSession, task_execution_id: str, *, organization_id: str | None
) -> tuple[TaskExecutionRecord, JobExecutionRecord, JobRequestRecord]:
    """The task execution with its job execution and request; NotFound (naming only the task) if it does
    not exist or belongs to another organisation."""
    try:
        task = await executions.get_task_execution(session, task_execution_id)
        execution = await executions.get_job_execution(session, task.job_execution_id)
        request = await requests.get_request(
            session, execution.job_request_id, organization_id=organization_id
        )
    except NotFound:
        raise NotFound(f"task execution {task_execution_id} does not exist") from None
    return task, execution, request


async def _verified(
    record: ArtifactRecord, first: bytes | None, rest: AsyncGenerator[bytes, None]
) -> AsyncGenerator[bytes, None]:
    """`first` then `rest`, checked against the record's size and digest at the end."""
    digest = hashlib.sha256()
    size = 0
    async with contextlib.aclosing(rest):
        chunk = first
        while chunk is not None:
            digest.update(chunk)
            size += len(chunk)
            yield chunk
            chunk = await anext(rest, None)
    if size != record.content_length or digest.hexdigest() != record.sha256:
        raise ObjectStoreError(
            f"the content of artifact {record.id} changed in the object store: {size} bytes with sha256 "
            f"{digest.hexdigest()}, recorded {record.content_length} bytes with sha256 {record.sha256}"
        )


class _LogCut:
    """A log's lines as UTF-8 chunks of about `_LOG_BATCH` bytes, cut with a note so that the whole stays
    within `limit`: the one rule for every stored log (`_encoded_lines`, `_encoded_log`)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._budget = limit - len(_LOG_TRUNCATED)
        self._pending = bytearray()
        self._written = 0
        self.cut = False  # the note is in: later lines are dropped

    def feed(self, line: str) -> bytes | None:
        """Take one line; a chunk when one is full (or the log was cut here)."""
        data = line.encode("utf-8", errors="replace") + b"\n"
        pending = self._pending
        if self._written + len(pending) + len(data) > self._budget:
            pending += data[: max(self._budget - self._written - len(pending), 0)]
            pending += _LOG_TRUNCATED[: max(self._limit - self._written - len(pending), 0)]
            self.cut = True
            return self._take()
        pending += data
        return self._take() if len(pending) >= _LOG_BATCH else None

    def end(self) -> bytes | None:
        """What is left once the lines end (None: nothing)."""
        return self._take() if self._pending else None

    def _take(self) -> bytes:
        chunk = bytes(self._pending)
        self._written += len(chunk)
        self._pending.clear()
        return chunk


def _encoded_log(lines: Iterable[str], limit: int) -> bytes:
    """A whole log as `_encoded_lines` writes it, in memory."""
    cut = _LogCut(limit)
    chunks: list[bytes] = []
    for line in lines:
        chunk = cut.feed(line)
        if chunk is not None:
            chunks.append(chunk)
        if cut.cut:
            return b"".join(chunks)
    rest = cut.end()
    return b"".join(chunks) + (rest or b"")


async def _encoded_lines(lines: Iterable[str] | AsyncIterable[str], limit: int) -> AsyncIterator[bytes]:
    """Lines as UTF-8 chunks of about 64 KiB, cut with a note so that the whole stays within `limit`."""
    cut = _LogCut(limit)

    async def each() -> AsyncIterator[str]:
        if isinstance(lines, AsyncIterable):
            async for line in lines:
                yield line
        else:
            for line in lines:
                yield line

    async for line in each():
        chunk = cut.feed(line)
        if chunk is not None:
            yield chunk
        if cut.cut:
            return
    rest = cut.end()
    if rest is not None:
        yield rest
