"""Flow rules end to end through the engine (store, scheduler, supervisor), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from queen.domain.states import JobState, TaskState
from tests.fixtures.engine import Engine, fail, ok

pytestmark = pytest.mark.integration

DONE = (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)


def job(name: str, tasks: str, header: str = "") -> str:
    return f"job_type: {name}\n{header}tasks:\n{tasks}"


def shell(task_type: str, extra: str = "") -> str:
    lines = f"- task_type: {task_type}\n  method: SHELL\n  script: [ 'true' ]\n"
    for line in extra.strip("\n").splitlines():
        lines += f"  {line}\n"
    return lines


async def test_chain_completes_in_order(engine: Engine) -> None:
    await engine.upload(job("chain", shell("a", "on_completed: b") + shell("b", "on_completed: c") + shell("c")))
    request_id = await engine.submit("chain")
    details = await engine.wait_for(request_id, *DONE)
    assert details.request.job_state is JobState.COMPLETED
    assert engine.dispatcher.ran() == ["a", "b", "c"]
    assert engine.task_states(details) == {"a": "COMPLETED", "b": "COMPLETED", "c": "COMPLETED"}


async def test_exit_code_routing(engine: Engine) -> None:
    tasks = shell("probe", "on_exit_code: {3: three, FAILED: other}") + shell("three") + shell("other")
    await engine.upload(job("routing", tasks))
    engine.dispatcher.then("probe", fail("3"))
    details = await engine.wait_for(await engine.submit("routing"), *DONE)
    assert engine.dispatcher.ran() == ["probe", "three"]
    # a failure routed by its exit code is handled: the task stays FAILED, the job completes
    assert details.request.job_state is JobState.COMPLETED
    assert engine.task_states(details) == {"probe": "FAILED", "three": "COMPLETED"}


async def test_handled_failure_completes_the_job(engine: Engine) -> None:
    tasks = shell("check", "on_failed: provision\non_completed: no-op") + shell("provision")
    await engine.upload(job("dr", tasks))
    engine.dispatcher.then("check", fail("1"))
    details = await engine.wait_for(await engine.submit("dr"), *DONE)
    assert details.request.job_state is JobState.COMPLETED
    assert engine.task_states(details) == {"check": "FAILED", "provision": "COMPLETED"}
    assert {t.task_type: t.exit_code for t in details.tasks}["check"] == "1"


async def test_unrouted_failure_fails_the_job_and_always_run_still_runs(engine: Engine) -> None:
    tasks = shell("build", "on_completed: deploy") + shell("deploy") + shell("cleanup", "always_run: true")
    await engine.upload(job("ci", tasks))
    engine.dispatcher.then("build", fail("2"))
    details = await engine.wait_for(await engine.submit("ci"), *DONE)
    assert details.request.job_state is JobState.FAILED
    assert details.request.error_code == "ERR_TASK_FAILED"
    assert engine.dispatcher.ran() == ["build", "cleanup"]
    assert engine.task_states(details) == {"build": "FAILED", "cleanup": "COMPLETED"}


async def test_allow_failure_continues_on_completed(engine: Engine) -> None:
    tasks = shell("scan", "allow_failure: true\non_completed: deploy") + shell("deploy")
    await engine.upload(job("scan", tasks))
    engine.dispatcher.then("scan", fail("1"))
    details = await engine.wait_for(await engine.submit("scan"), *DONE)
    assert details.request.job_state is JobState.COMPLETED
    assert engine.task_states(details) == {"scan": "FAILED", "deploy": "COMPLETED"}


async def test_retries_with_backoff_then_success(engine: Engine) -> None:
    extra = "retry: 2\nretry_backoff_policy: {initial_delay: 10ms, multiplier: 2, max_delay: 50ms}"
    await engine.upload(job("flaky", shell("flaky", extra)))
    engine.dispatcher.then("flaky", fail(), fail(), ok())
    details = await engine.wait_for(await engine.submit("flaky"), *DONE)
    assert details.request.job_state is JobState.COMPLETED
    assert engine.dispatcher.ran() == ["flaky", "flaky", "flaky"]
    assert [w.task_retry for w in engine.dispatcher.calls] == [0, 1, 2]
    assert details.tasks[0].retried == 2


async def test_retries_exhausted_fail_the_job(engine: Engine) -> None:
    await engine.upload(job("flaky", shell("flaky", "retry: 1\ndelay_between_retries: 10ms")))
    engine.dispatcher.then("flaky", fail(), fail())
    details = await engine.wait_for(await engine.submit("flaky"), *DONE)
    assert details.request.job_state is JobState.FAILED
    assert len(engine.dispatcher.calls) == 2


async def test_task_timeout_fails_the_task(engine: Engine) -> None:
    await engine.upload(job("slow", shell("slow", "timeout: 100ms")))
    engine.dispatcher.then("slow", asyncio.Event())  # never released: the Queen gives up
    details = await engine.wait_for(await engine.submit("slow"), *DONE)
    assert details.request.job_state is JobState.FAILED
    assert details.tasks[0].error_code == "ERR_TASK_TIMEOUT"
    assert engine.dispatcher.cancelled == [details.tasks[0].id]


async def test_executing_is_a_sensor_loop(engine: Engine) -> None:
    extra = "delay_between_retries: 10ms\non_exit_code: {1: EXECUTING, 0: after}"
    await engine.upload(job("sensor", shell("poll", extra) + shell("after")))
    engine.dispatcher.then("poll", fail("1"), fail("1"), ok("0"))
    details = await engine.wait_for(await engine.submit("sensor"), *DONE)
    assert details.request.job_state is JobState.COMPLETED
    assert engine.dispatcher.ran() == ["poll", "poll", "poll", "after"]
    assert {t.task_type: t.retried for t in details.tasks}["poll"] == 0


async def test_fatal_skips_retries_but_always_run_runs(engine: Engine) -> None:
    tasks = shell("t", "retry: 3\non_exit_code: {7: FATAL}") + shell("cleanup", "always_run: true")
    await engine.upload(job("fatal", tasks))
    engine.dispatcher.then("t", fail("7"))
    details = await engine.wait_for(await engine.submit("fatal"), *DONE)
    assert details.request.job_state is JobState.FAILED
    assert details.request.error_code == "ERR_FATAL"
    assert engine.dispatcher.ran() == ["t", "cleanup"]


async def test_error_code_route_and_completed_override(engine: Engine) -> None:
    await engine.upload(job("errs", shell("t", "on_exit_code: {4: ERR_QUOTA, 5: COMPLETED}")))
    engine.dispatcher.then("t", fail("4"), fail("5"))
    first = await engine.wait_for(await engine.submit("errs"), *DONE)
    assert (first.request.job_state, first.request.error_code) == (JobState.FAILED, "ERR_QUOTA")
    second = await engine.wait_for(await engine.submit("errs"), *DONE)
    assert second.request.job_state is JobState.COMPLETED


async def test_cancel_stops_the_task_and_runs_always_run(engine: Engine) -> None:
    tasks = shell("long", "on_completed: next") + shell("next") + shell("cleanup", "always_run: true")
    await engine.upload(job("cancel", tasks))
    engine.dispatcher.then("long", asyncio.Event())
    request_id = await engine.submit("cancel")
    await asyncio.wait_for(engine.dispatcher.started.wait(), 10)
    from tests.fixtures.engine import IDENTITY

    await engine.requests.cancel(IDENTITY, request_id, "changed my mind")
    details = await engine.wait_for(request_id, *DONE)
    assert details.request.job_state is JobState.CANCELLED
    assert engine.dispatcher.ran() == ["long", "cleanup"]
    assert engine.task_states(details) == {"long": "CANCELLED", "cleanup": "COMPLETED"}


async def test_pause_job_route_pauses_and_resume_continues(engine: Engine) -> None:
    tasks = shell("gate", "on_exit_code: {2: PAUSE_JOB, 0: done}") + shell("done")
    await engine.upload(job("pause", tasks))
    engine.dispatcher.then("gate", fail("2"), ok("0"))
    request_id = await engine.submit("pause")
    paused = await engine.wait_for(request_id, JobState.PAUSED)
    assert engine.task_states(paused)["gate"] == "READY"
    from tests.fixtures.engine import IDENTITY

    await engine.requests.resume(IDENTITY, request_id)
    details = await engine.wait_for(request_id, *DONE)
    assert details.request.job_state is JobState.COMPLETED
    assert engine.dispatcher.ran() == ["gate", "gate", "done"]


async def test_manual_task_opens_a_gate_without_an_ant(engine: Engine) -> None:
    tasks = (
        shell("build", "on_completed: approve")
        + "- task_type: approve\n  method: MANUAL\n  on_exit_code: {APPROVED: ship, REJECTED: rollback}\n"
        + shell("ship")
        + shell("rollback")
    )
    await engine.upload(job("gated", tasks))
    details = await engine.wait_for(await engine.submit("gated"), JobState.MANUAL_APPROVAL_REQUIRED)
    assert engine.task_states(details) == {"build": "COMPLETED", "approve": "MANUAL_APPROVAL_REQUIRED"}
    assert engine.dispatcher.ran() == ["build"]
    assert details.tasks[1].task_state is TaskState.MANUAL_APPROVAL_REQUIRED
