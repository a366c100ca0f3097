"""LogArchive: finished attempts' console logs become LOG artifacts in batches, off the dispatch path."""

from __future__ import annotations

from datetime import timedelta

import pytest

from formicary.v1 import log_line_pb2
from queen.artifacts import ObjectStore
from queen.log_archive import LogArchive
from queen.services.artifacts import ArtifactService
from queen.store import Database
from queen.store.records import ArtifactKind
from queen.supervisor.job_supervisor import FinishedAttempt
from queen.task_logs import LogHub

from .conftest import ALICE, MIB, ORG, Job, read_all, start_job

pytestmark = pytest.mark.integration


def _attempt(job: Job, task_type: str, retry: int = 0) -> FinishedAttempt:
    return FinishedAttempt(
        organization_id=ORG,
        job_request_id=job.request.id,
        job_execution_id=job.execution_id,
        task_execution_id=job.tasks[task_type].id,
        task_type=task_type,
        task_retry=retry,
    )


def _lines(*texts: str) -> list[log_line_pb2.LogLine]:
    return [log_line_pb2.LogLine(sequence=n, text=text) for n, text in enumerate(texts, start=1)]


async def test_attempts_finished_together_are_stored_in_one_batch_and_drained_at_stop(
    db: Database, object_store: ObjectStore
) -> None:
    job = await start_job(db)
    hub = LogHub()
    service = ArtifactService(db, object_store, MIB)
    archive = LogArchive(hub, service, linger=timedelta(seconds=30))
    hub.lines(job.tasks["compile"].id, 0, _lines("$ make", "built"))
    hub.lines(job.tasks["test"].id, 1, _lines("$ pytest", "passed"))
    await archive.start()
    archive.attempt_finished(_attempt(job, "compile"))
    archive.attempt_finished(_attempt(job, "test", retry=1))
    # silent attempt: nothing to store
    archive.attempt_finished(_attempt(job, "test", retry=2))
    await archive.stop()  # the batch is still lingering: stop stores it before it ends

    stored = sorted(await service.list(ALICE), key=lambda record: record.name)
    assert [(record.name, record.kind) for record in stored] == [
        ("compile.log", ArtifactKind.LOG),
        ("test.retry-1.log", ArtifactKind.LOG),
    ]
    _, chunks = await service.download(ALICE, stored[1].id)
    assert (await read_all(chunks)).decode() == "$ pytest\npassed\n"
