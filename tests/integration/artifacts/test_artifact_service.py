"""ArtifactService on both databases and both object stores: the life of an artifact, organisation
scoping, limits and bad uploads that leave nothing behind, a failed record insert, task logs, expiry."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from queen.artifacts import ContentMismatch, ObjectStore, ObjectStoreError, ObjectTooLarge
from queen.domain.errors import InvalidArgument, NotFound, PermissionDenied
from queen.services.artifacts import LOG_CONTENT_TYPE, QUEEN_USER_ID, ArtifactService, ArtifactUpload, TaskLog
from queen.store import Database
from queen.store import artifacts as artifact_records
from queen.store._clock import utc_now
from queen.store.records import ArtifactKind
from tests.fixtures.object_stores import ObjectStoreConfig

from .conftest import (
    ALICE,
    ANT,
    MALLORY,
    MIB,
    ORG,
    Job,
    chunks_of,
    content,
    leftovers,
    make_store,
    minio_client,
    names,
    read_all,
    start_job,
    stored_names,
)

pytestmark = pytest.mark.integration

LIMIT = MIB


@pytest.fixture
def service(db: Database, object_store: ObjectStore) -> ArtifactService:
    return ArtifactService(db, object_store, LIMIT)


@pytest.fixture
async def job(db: Database) -> Job:
    return await start_job(db)


async def never_read() -> AsyncIterator[bytes]:
    raise AssertionError("the content was read although the upload was refused")
    yield b""  # pragma: no cover


async def test_an_artifact_from_upload_to_delete(
    service: ArtifactService, job: Job, object_store_config: ObjectStoreConfig
) -> None:
    compile_ = job.tasks["compile"]
    wheel = content(300_000)
    wheel_upload = ArtifactUpload(
        name="dist/app.whl",
        kind=ArtifactKind.TASK,
        task_execution_id=compile_.id,
        metadata={"git_sha": "3f2a"},
        sha256=hashlib.sha256(wheel).hexdigest(),
    )
    built = await service.upload(ANT, wheel_upload, chunks_of(wheel))
    # a task execution alone is enough: request, execution and task type are looked up
    assert (built.job_request_id, built.job_execution_id, built.task_execution_id, built.task_type) == (
        job.request.id,
        job.execution_id,
        compile_.id,
        "compile",
    )
    assert (built.organization_id, built.user_id, built.kind, built.content_type) == (
        ORG,
        ANT.user_id,
        ArtifactKind.TASK,
        "application/octet-stream",
    )
    assert (built.content_length, built.sha256) == (len(wheel), hashlib.sha256(wheel).hexdigest())
    assert built.key == f"{ORG}/{job.request.id}/compile~{built.id}/dist/app.whl"
    assert built.expires_at is None
    assert dict(built.metadata) == {"git_sha": "3f2a"}

    notes_upload = ArtifactUpload(
        name="notes.txt",
        content_type="text/plain; charset=utf-8",
        job_request_id=job.request.id,
        retention=timedelta(days=7),
    )
    notes = await service.upload(ALICE, notes_upload, chunks_of(b"release notes"))
    assert (notes.job_execution_id, notes.task_execution_id, notes.task_type) == (job.execution_id, None, "")
    assert notes.expires_at is not None
    assert notes.expires_at - notes.created_at == timedelta(days=7)

    record, chunks = await service.download(ALICE, built.id)
    assert record == built
    assert await read_all(chunks) == wheel
    assert names(await service.list(ALICE, job_request_id=job.request.id)) == ["notes.txt", "dist/app.whl"]
    assert names(await service.list(ALICE, task_execution_id=compile_.id)) == ["dist/app.whl"]
    assert names(await service.list(ALICE, kind=ArtifactKind.USER)) == ["notes.txt"]
    assert await stored_names(object_store_config) == {built.key, notes.key}

    await service.delete(ALICE, built.id)
    assert await stored_names(object_store_config) == {notes.key}
    for call in (
        service.get(ALICE, built.id),
        service.download(ALICE, built.id),
        service.delete(ALICE, built.id),
    ):
        with pytest.raises(NotFound, match=f"artifact {built.id} does not exist"):
            await call
    assert names(await service.list(ALICE)) == ["notes.txt"]


async def test_another_organisation_sees_and_touches_nothing(
    service: ArtifactService, job: Job, object_store_config: ObjectStoreConfig
) -> None:
    mine = await service.upload(ALICE, ArtifactUpload(name="secret.txt"), chunks_of(b"s3cr3t"))
    for call in (
        service.get(MALLORY, mine.id),
        service.download(MALLORY, mine.id),
        service.delete(MALLORY, mine.id),
    ):
        with pytest.raises(NotFound):
            await call
    assert await service.list(MALLORY) == []
    assert await service.list(MALLORY, job_request_id=job.request.id) == []
    # nor can it attach its uploads to this organisation's job or tasks
    with pytest.raises(NotFound, match=f"job request {job.request.id} does not exist"):
        await service.upload(MALLORY, ArtifactUpload(name="x", job_request_id=job.request.id), never_read())
    task_id = job.tasks["test"].id
    with pytest.raises(NotFound, match=f"task execution {task_id} does not exist"):
        await service.upload(
            MALLORY, ArtifactUpload(name="x", kind=ArtifactKind.TASK, task_execution_id=task_id), never_read()
        )
    assert await stored_names(object_store_config) == {mine.key}
    assert await service.get(ALICE, mine.id) == mine


async def test_an_oversize_upload_is_refused_and_leaves_nothing(
    service: ArtifactService, job: Job, object_store_config: ObjectStoreConfig
) -> None:
    with pytest.raises(ObjectTooLarge) as caught:
        await service.upload(ALICE, ArtifactUpload(name="huge.bin"), chunks_of(content(LIMIT + 1)))
    assert isinstance(caught.value, InvalidArgument)
    assert str(caught.value) == "the content is larger than the limit of 1 MiB (1048576 bytes)"
    # announced too large: refused before a byte is read
    with pytest.raises(ObjectTooLarge):
        await service.upload(ALICE, ArtifactUpload(name="huge.bin", content_length=LIMIT + 1), never_read())
    assert await service.list(ALICE) == []
    assert await leftovers(object_store_config) == set()


BAD_UPLOADS = [
    (ArtifactUpload(name="../../etc/cron.d/x"), InvalidArgument, "name"),
    (ArtifactUpload(name="/etc/passwd"), InvalidArgument, "name"),
    (ArtifactUpload(name="n" * 256), InvalidArgument, "name"),
    (ArtifactUpload(name="a.o", kind=ArtifactKind.TASK), PermissionDenied, ""),
    (ArtifactUpload(name="c.tgz", kind=ArtifactKind.CACHE), PermissionDenied, ""),
    (ArtifactUpload(name="x", content_type="not a type"), InvalidArgument, "content_type"),
    (ArtifactUpload(name="x", task_type="../up"), InvalidArgument, "task_type"),
    (ArtifactUpload(name="x", retention=timedelta(0)), InvalidArgument, "retention_duration"),
    (ArtifactUpload(name="x", sha256="xyz"), InvalidArgument, "sha256"),
    (ArtifactUpload(name="x", content_length=-1), InvalidArgument, "content_length"),
    (ArtifactUpload(name="x", metadata={"k": "v" * 1025}), InvalidArgument, "metadata"),
    (ArtifactUpload(name="x", job_request_id=987_654), NotFound, ""),
]


async def test_bad_uploads_are_refused_before_reading(
    service: ArtifactService, object_store_config: ObjectStoreConfig
) -> None:
    for upload, error, field in BAD_UPLOADS:
        with pytest.raises(error) as caught:
            await service.upload(ALICE, upload, never_read())
        assert getattr(caught.value, "field", "") == field, upload
    assert await leftovers(object_store_config) == set()


async def test_an_upload_that_contradicts_its_task_or_announcement(
    service: ArtifactService, db: Database, job: Job, object_store_config: ObjectStoreConfig
) -> None:
    task = job.tasks["compile"]
    wrong_type = ArtifactUpload(name="x", kind=ArtifactKind.TASK, task_execution_id=task.id, task_type="test")
    with pytest.raises(InvalidArgument, match="is of task type 'compile', not 'test'"):
        await service.upload(ANT, wrong_type, never_read())
    other = await start_job(db)
    wrong_request = ArtifactUpload(
        name="x", kind=ArtifactKind.TASK, task_execution_id=task.id, job_request_id=other.request.id
    )
    with pytest.raises(InvalidArgument, match=f"does not belong to job request {other.request.id}"):
        await service.upload(ANT, wrong_request, never_read())
    with pytest.raises(ContentMismatch, match="announced sha256"):
        await service.upload(ALICE, ArtifactUpload(name="x", sha256="0" * 64), chunks_of(b"data"))
    with pytest.raises(ContentMismatch, match="announced content_length: announced 5, received 4"):
        await service.upload(ALICE, ArtifactUpload(name="x", content_length=5), chunks_of(b"data"))
    assert await service.list(ALICE) == []
    assert await leftovers(object_store_config) == set()


async def test_a_failed_record_insert_deletes_the_stored_object(
    service: ArtifactService, monkeypatch: pytest.MonkeyPatch, object_store_config: ObjectStoreConfig
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr(artifact_records, "create_artifact", broken)
    with pytest.raises(RuntimeError, match="database went away"):
        await service.upload(ALICE, ArtifactUpload(name="x.bin"), chunks_of(content(200_000)))
    assert await leftovers(object_store_config) == set()


async def test_task_logs_and_expiry(
    service: ArtifactService,
    db: Database,
    object_store: ObjectStore,
    job: Job,
    object_store_config: ObjectStoreConfig,
) -> None:
    task = job.tasks["test"]
    log = await service.store_log(task.id, ["line one", "ünïcode line"], retention=timedelta(hours=1))
    assert (log.kind, log.name, log.content_type, log.user_id) == (
        ArtifactKind.LOG,
        "test.log",
        LOG_CONTENT_TYPE,
        QUEEN_USER_ID,
    )
    assert (log.job_request_id, log.task_execution_id, log.organization_id) == (job.request.id, task.id, ORG)
    _, chunks = await service.download(ALICE, log.id)
    assert (await read_all(chunks)).decode() == "line one\nünïcode line\n"

    # a runaway log is cut at the limit, with a note, rather than lost
    small = ArtifactService(db, object_store, 200)

    async def lines() -> AsyncIterator[str]:
        for n in range(100):
            yield f"line {n}"

    cut = await small.store_log(task.id, lines(), name="runaway.log")
    _, chunks = await small.download(ALICE, cut.id)
    text = (await read_all(chunks)).decode()
    assert cut.content_length == len(text) <= 200
    assert text.startswith("line 0\nline 1\n")
    assert text.endswith("[formicary: log truncated at the artifact size limit]\n")

    keep = await service.upload(ALICE, ArtifactUpload(name="keep"), chunks_of(b"k"))
    assert await service.delete_expired(now=utc_now() + timedelta(minutes=59)) == 0
    assert await service.delete_expired(now=utc_now() + timedelta(hours=2)) == 1
    assert names(await service.list(ALICE)) == ["keep", "runaway.log"]
    assert await stored_names(object_store_config) == {keep.key, cut.key}


async def test_default_retention_applies_when_the_uploader_gives_none(
    db: Database, object_store: ObjectStore
) -> None:
    service = ArtifactService(db, object_store, LIMIT, default_retention=timedelta(days=30))
    record = await service.upload(ALICE, ArtifactUpload(name="x"), chunks_of(b"x"))
    assert record.expires_at == record.created_at + timedelta(days=30)


async def test_a_download_notices_content_changed_behind_its_back(
    service: ArtifactService, object_store_config: ObjectStoreConfig
) -> None:
    record = await service.upload(ALICE, ArtifactUpload(name="x"), chunks_of(b"original"))
    tamper = make_store(object_store_config)
    try:
        await tamper.put(record.key, chunks_of(b"tampered"), max_bytes=100)
    finally:
        await tamper.close()
    _, chunks = await service.download(ALICE, record.id)
    with pytest.raises(ObjectStoreError, match="changed in the object store"):
        await read_all(chunks)

    if object_store_config.kind == "s3":
        await _remove_directly(object_store_config, record.key)
    else:
        assert object_store_config.root is not None
        object_store_config.root.joinpath(*record.key.split("/")).unlink()
    with pytest.raises(ObjectStoreError, match="missing from the object store"):
        await service.download(ALICE, record.id)


async def _remove_directly(config: ObjectStoreConfig, key: str) -> None:
    client = minio_client(config)
    await asyncio.to_thread(client.remove_object, config.bucket, key)


def _task_log(job: Job, task_type: str, lines: tuple[str, ...]) -> TaskLog:
    task = job.tasks[task_type]
    return TaskLog(
        organization_id=ORG,
        job_request_id=job.request.id,
        job_execution_id=job.execution_id,
        task_execution_id=task.id,
        task_type=task_type,
        name=f"{task_type}.log",
        lines=lines,
    )


async def test_task_logs_in_one_batch_are_recorded_together(service: ArtifactService, job: Job) -> None:
    stored = await service.store_logs(
        [_task_log(job, "compile", ("built",)), _task_log(job, "test", ("ran", "passed"))]
    )
    assert [(log.name, log.kind, log.task_execution_id) for log in stored] == [
        ("compile.log", ArtifactKind.LOG, job.tasks["compile"].id),
        ("test.log", ArtifactKind.LOG, job.tasks["test"].id),
    ]
    _, chunks = await service.download(ALICE, stored[1].id)
    assert (await read_all(chunks)).decode() == "ran\npassed\n"


async def test_a_failed_batch_records_nothing_and_removes_every_object(
    service: ArtifactService,
    job: Job,
    monkeypatch: pytest.MonkeyPatch,
    object_store_config: ObjectStoreConfig,
) -> None:
    real = artifact_records.create_artifact
    calls = 0

    async def second_fails(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("database went away")
        return await real(*args, **kwargs)

    monkeypatch.setattr(artifact_records, "create_artifact", second_fails)
    with pytest.raises(RuntimeError, match="database went away"):
        await service.store_logs([_task_log(job, "compile", ("a",)), _task_log(job, "test", ("b",))])
    assert await service.list(ALICE) == []
    assert await leftovers(object_store_config) == set()
