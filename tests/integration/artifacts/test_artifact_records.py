"""The artifact records of the store, on SQLite and PostgreSQL: create, organisation-scoped reads and
listings (newest first, filters), soft delete, the expiry query, and references that must exist."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError

from queen.domain.errors import NotFound
from queen.store import Database, DuplicateKey
from queen.store import artifacts as records
from queen.store.records import ArtifactKind, ArtifactRecord

from .conftest import ORG, OTHER_ORG, USER, Job, names, start_job

pytestmark = pytest.mark.integration

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


async def create(db: Database, name: str, *, minute: float, **values: Any) -> ArtifactRecord:
    fields: dict[str, Any] = {
        "artifact_id": f"00000000-0000-4000-8000-{int(minute * 1000):012d}",
        "organization_id": ORG,
        "user_id": USER,
        "name": name,
        "kind": ArtifactKind.USER,
        "bucket": "artifacts",
        "key": f"{ORG}/{name}/{minute}",
        "sha256": "a" * 64,
        "content_length": 10,
        "content_type": "text/plain",
        "now": at(minute),
    }
    fields.update(values)
    async with db.transaction() as session:
        return await records.create_artifact(session, **fields)


async def test_create_and_get_within_the_organisation(db: Database) -> None:
    job = await start_job(db)
    task = job.tasks["compile"]
    created = await create(
        db,
        "dist/app.whl",
        minute=1,
        kind=ArtifactKind.TASK,
        job_request_id=job.request.id,
        job_execution_id=job.execution_id,
        task_execution_id=task.id,
        task_type="compile",
        content_length=5 * 2**40,  # beyond 32 bits
        metadata={"git_sha": "3f2a"},
        expires_at=at(60),
    )
    async with db.transaction() as session:
        found = await records.get_artifact(session, created.id, organization_id=ORG)
        with pytest.raises(NotFound, match=f"artifact {created.id} does not exist"):
            await records.get_artifact(session, created.id, organization_id=OTHER_ORG)
        with pytest.raises(NotFound):
            await records.get_artifact(session, "no-such-id", organization_id=ORG)
    assert found == created
    assert (found.kind, found.task_type, found.content_length, dict(found.metadata)) == (
        ArtifactKind.TASK,
        "compile",
        5 * 2**40,
        {"git_sha": "3f2a"},
    )
    assert (found.job_request_id, found.job_execution_id, found.task_execution_id) == (
        job.request.id,
        job.execution_id,
        task.id,
    )
    assert (found.created_at, found.expires_at, found.deleted_at) == (at(1), at(60), None)


async def test_listings_are_newest_first_filtered_and_scoped(db: Database) -> None:
    job: Job = await start_job(db)
    other_job = await start_job(db, organization_id=OTHER_ORG)
    compile_, test = job.tasks["compile"], job.tasks["test"]
    await create(db, "loose", minute=1)
    await create(
        db, "a.o", minute=2, job_request_id=job.request.id, task_execution_id=compile_.id, task_type="compile"
    )
    await create(db, "compile.log", minute=3, kind=ArtifactKind.LOG, job_request_id=job.request.id,
                 task_execution_id=compile_.id, task_type="compile")  # fmt: skip
    await create(
        db, "report", minute=4, job_request_id=job.request.id, task_execution_id=test.id, task_type="test"
    )
    await create(db, "theirs", minute=5, organization_id=OTHER_ORG, job_request_id=other_job.request.id)

    async with db.transaction() as session:
        everything = await records.list_artifacts(session, ORG)
        of_request = await records.list_artifacts(session, ORG, job_request_id=job.request.id)
        of_task = await records.list_artifacts(session, ORG, task_execution_id=compile_.id)
        of_type = await records.list_artifacts(
            session, ORG, job_request_id=job.request.id, task_type="compile"
        )
        logs = await records.list_artifacts(session, ORG, kind=ArtifactKind.LOG)
        page = await records.list_artifacts(session, ORG, limit=2, offset=1)
        their_request = await records.list_artifacts(session, ORG, job_request_id=other_job.request.id)
    assert names(everything) == ["report", "compile.log", "a.o", "loose"]
    assert names(of_request) == ["report", "compile.log", "a.o"]
    assert names(of_task) == names(of_type) == ["compile.log", "a.o"]
    assert names(logs) == ["compile.log"]
    assert names(page) == ["compile.log", "a.o"]
    assert their_request == []


async def test_soft_delete_hides_the_record_once(db: Database) -> None:
    record = await create(db, "x", minute=1)
    async with db.transaction() as session:
        with pytest.raises(NotFound):
            await records.soft_delete_artifact(session, record.id, organization_id=OTHER_ORG)
        deleted = await records.soft_delete_artifact(session, record.id, organization_id=ORG, now=at(2))
        assert deleted.deleted_at == at(2)
        with pytest.raises(NotFound):
            await records.soft_delete_artifact(session, record.id, organization_id=ORG)
        with pytest.raises(NotFound):
            await records.get_artifact(session, record.id, organization_id=ORG)
        assert await records.list_artifacts(session, ORG) == []


async def test_expired_artifacts_of_every_organisation(db: Database) -> None:
    await create(db, "forever", minute=1)
    await create(db, "later", minute=2, expires_at=at(100))
    second = await create(db, "second", minute=3, expires_at=at(20), organization_id=OTHER_ORG)
    await create(db, "first", minute=4, expires_at=at(10))
    gone = await create(db, "gone", minute=5, expires_at=at(5))
    async with db.transaction() as session:
        await records.soft_delete_artifact(session, gone.id, organization_id=ORG)
        assert names(await records.expired_artifacts(session, at(20))) == ["first", "second"]
        assert names(await records.expired_artifacts(session, at(20), limit=1)) == ["first"]
        assert await records.expired_artifacts(session, at(9)) == []
    assert second.organization_id == OTHER_ORG


async def test_references_and_keys_must_hold(db: Database) -> None:
    await create(db, "x", minute=1, key="same/key")
    with pytest.raises(DuplicateKey):
        await create(db, "y", minute=2, key="same/key")
    with pytest.raises(IntegrityError):
        await create(db, "z", minute=3, job_request_id=999_999)
    with pytest.raises(IntegrityError):
        await create(db, "w", minute=4, task_execution_id="00000000-0000-4000-8000-00000000dead")
