"""Fixtures of the artifact tests: a store per object-store kind, a database per backend, a started job
to attach artifacts to, and helpers that look into the store behind the code's back."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from queen.artifacts import LocalObjectStore, ObjectStore, S3ObjectStore
from queen.domain.definition_parser import parse_job_definition
from queen.domain.identity import Identity
from queen.domain.states import JobState
from queen.store import Database, JobRequestRecord, TaskExecutionRecord, definitions, executions, requests
from tests.fixtures.object_stores import ObjectStoreConfig, remove_bucket
from tests.fixtures.object_stores import minio_client as _minio_client
from tests.fixtures.services import S3Endpoint

ORG = "org-1"
OTHER_ORG = "org-2"
USER = "user-1"
ALICE = Identity(ORG, USER, roles=frozenset({"developer"}), authenticated=True)
ANT = Identity(ORG, "ant-1", roles=frozenset({"ant"}), authenticated=True)
MALLORY = Identity(OTHER_ORG, "mallory", roles=frozenset({"admin"}), authenticated=True)
MIB = 1024 * 1024

JOB_YAML = """\
job_type: build
description: build and test
tasks:
- task_type: compile
  method: SHELL
  script: [make]
  on_completed: test
- task_type: test
  method: SHELL
  script: [make test]
"""


def make_store(config: ObjectStoreConfig, **s3_options: Any) -> ObjectStore:
    """The store `config` describes (S3: extra constructor options, e.g. a smaller part size)."""
    if config.kind == "local":
        assert config.root is not None
        return LocalObjectStore(config.root)
    assert config.endpoint
    assert config.bucket
    return S3ObjectStore(
        endpoint=config.endpoint,
        access_key=config.access_key or "",
        secret_key=config.secret_key or "",
        bucket=config.bucket,
        secure=config.secure,
        **s3_options,
    )


def minio_client(config: ObjectStoreConfig) -> Any:
    assert config.endpoint
    return _minio_client(
        S3Endpoint(config.endpoint, config.access_key or "", config.secret_key or "", config.secure)
    )


async def stored_names(config: ObjectStoreConfig) -> set[str]:
    """Everything in the store, read directly: files (temporary ones too) or objects."""
    if config.kind == "local":
        assert config.root is not None
        root = config.root
        return await asyncio.to_thread(
            lambda: {path.relative_to(root).as_posix() for path in root.rglob("*") if not path.is_dir()}
        )
    client = minio_client(config)
    return await asyncio.to_thread(
        lambda: {obj.object_name for obj in client.list_objects(config.bucket, recursive=True)}
    )


async def leftovers(config: ObjectStoreConfig) -> set[str]:
    """What a failed upload could leave: files and empty directories (local); objects and incomplete
    multipart uploads (S3, through the client's private listing: minio has no public one)."""
    if config.kind == "local":
        assert config.root is not None
        root = config.root
        return await asyncio.to_thread(lambda: {p.relative_to(root).as_posix() for p in root.rglob("*")})
    client = minio_client(config)
    uploads = await asyncio.to_thread(lambda: client._list_multipart_uploads(config.bucket).uploads)
    return await stored_names(config) | {f"(multipart) {upload.object_name}" for upload in uploads}


async def chunks_of(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def failing_after(data: bytes, error: Exception, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    async for chunk in chunks_of(data, size):
        yield chunk
    raise error


def content(size: int, seed: int = 0) -> bytes:
    """`size` bytes that differ from position to position (so that reordered chunks would show)."""
    pattern = bytes((seed + i * 7) % 251 for i in range(251))
    return (pattern * (size // len(pattern) + 1))[:size]


async def read_all(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


def s3_config_for(s3: S3Endpoint, bucket: str) -> ObjectStoreConfig:
    return ObjectStoreConfig(
        kind="s3",
        endpoint=s3.endpoint,
        access_key=s3.access_key,
        secret_key=s3.secret_key,
        bucket=bucket,
        secure=s3.secure,
    )


@pytest.fixture
def s3_config(s3_endpoint: S3Endpoint) -> Iterator[ObjectStoreConfig]:
    """A new, empty S3 bucket only this test uses (for the tests of the S3 store alone)."""
    config = s3_config_for(s3_endpoint, f"t-{uuid.uuid4().hex}")
    client = minio_client(config)
    client.make_bucket(config.bucket)
    try:
        yield config
    finally:
        remove_bucket(client, config.bucket)


@pytest.fixture
async def object_store(object_store_config: ObjectStoreConfig) -> AsyncIterator[ObjectStore]:
    store = make_store(object_store_config)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await database.start()
    try:
        yield database
    finally:
        await database.stop()


@dataclass(frozen=True, slots=True)
class Job:
    """A started request of `build` with its execution and both tasks created."""

    request: JobRequestRecord
    execution_id: str
    tasks: dict[str, TaskExecutionRecord]


async def start_job(db: Database, organization_id: str = ORG) -> Job:
    async with db.transaction() as session:
        definition, _ = await definitions.save_definition(
            session,
            organization_id=organization_id,
            user_id=USER,
            yaml=JOB_YAML,
            definition=parse_job_definition(JOB_YAML),
        )
        request = await requests.create_request(session, definition=definition, user_id=USER)
        request = await requests.transition_request(session, request.id, JobState.PENDING, JobState.READY)
        execution = await executions.create_job_execution(session, request, definition)
        request = await requests.transition_request(
            session, request.id, JobState.READY, JobState.STARTED, job_execution_id=execution.id
        )
        tasks = {}
        for order, task_type in enumerate(("compile", "test")):
            tasks[task_type] = await executions.create_task_execution(
                session, execution.id, task_type, method="SHELL", task_order=order
            )
    return Job(request, execution.id, tasks)


def names(records: Iterable[Any]) -> list[str]:
    return [record.name for record in records]
