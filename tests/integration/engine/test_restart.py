"""A Queen that stops (or dies) mid-job resumes every job where it was, from the database alone."""

from __future__ import annotations

import asyncio

import pytest

from queen.domain.states import JobState
from tests.fixtures.engine import start_engine, stop_engine
from tests.fixtures.waiting import assert_eventually
from tests.integration.engine.test_flow import DONE, job, shell

pytestmark = pytest.mark.integration


async def test_running_task_is_reattached_after_a_restart(database_url: str) -> None:
    first = await start_engine(database_url)
    try:
        await first.upload(job("long", shell("slow", "on_completed: after") + shell("after")))
        first.dispatcher.then("slow", asyncio.Event())
        request_id = await first.submit("long")
        await asyncio.wait_for(first.dispatcher.started.wait(), 10)
        running = await first.details(request_id)
        assert {t.task_type: t.task_state.value for t in running.tasks} == {"slow": "EXECUTING"}
    finally:
        await stop_engine(first)

    second = await start_engine(database_url)
    try:
        details = await second.wait_for(request_id, *DONE)
        assert details.request.job_state is JobState.COMPLETED
        # the second Queen re-attached `slow` (same task execution) and went on to `after`
        assert second.dispatcher.ran() == ["slow", "after"]
        assert second.dispatcher.calls[0].task_execution_id == running.tasks[0].id
        assert details.execution is not None
        assert running.execution is not None
        assert details.execution.id == running.execution.id
    finally:
        await stop_engine(second)


async def test_gate_and_delayed_retry_survive_a_restart(database_url: str) -> None:
    first = await start_engine(database_url)
    try:
        gate = "- task_type: approve\n  method: MANUAL\n  on_exit_code: {APPROVED: ship}\n"
        await first.upload(job("gated", gate + shell("ship")))
        await first.upload(job("retrying", shell("flaky", "retry: 1\ndelay_between_retries: 300ms")))
        from tests.fixtures.engine import fail

        first.dispatcher.then("flaky", fail())
        gated = await first.submit("gated")
        retrying = await first.submit("retrying")
        await first.wait_for(gated, JobState.MANUAL_APPROVAL_REQUIRED)

        async def retry_committed() -> bool:
            tasks = (await first.details(retrying)).tasks
            return bool(tasks) and tasks[0].retried == 1 and tasks[0].next_run_at is not None

        # stop while the retry waits out its delay (committed: READY, retried 1, next_run_at set)
        await assert_eventually(retry_committed)
    finally:
        await stop_engine(first)

    second = await start_engine(database_url)
    try:
        done = await second.wait_for(retrying, *DONE)
        assert done.request.job_state is JobState.COMPLETED
        assert done.tasks[0].retried == 1
        waiting = await second.details(gated)
        assert waiting.request.job_state is JobState.MANUAL_APPROVAL_REQUIRED
        assert second.dispatcher.ran() == ["flaky"]
    finally:
        await stop_engine(second)
