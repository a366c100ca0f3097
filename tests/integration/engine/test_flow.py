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
    await engine.upload(
        job("chain", shell("a", "on_completed: b") + shell("b", "on_completed: c") + shell("c"))
    )
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


async def test_soft_restart_reuses_completed_tasks_and_hard_runs_all(engine: Engine) -> None:
    from tests.fixtures.engine import IDENTITY

    tasks = shell("a", "on_completed: b") + shell("b", "on_completed: c") + shell("c")
    await engine.upload(job("restart", tasks))
    engine.dispatcher.then("b", fail())
    request_id = await engine.submit("restart")
    failed = await engine.wait_for(request_id, *DONE)
    assert failed.request.job_state is JobState.FAILED
    first_execution = failed.execution
    assert first_execution is not None

    await engine.requests.restart(IDENTITY, request_id, hard=False)
    soft = await engine.wait_for(request_id, JobState.COMPLETED)
    assert soft.execution is not None
    assert soft.execution.id != first_execution.id
    assert engine.dispatcher.ran() == ["a", "b", "b", "c"]  # `a` was reused, not run again
    assert engine.task_states(soft) == {"a": "COMPLETED", "b": "COMPLETED", "c": "COMPLETED"}

    await engine.requests.restart(IDENTITY, request_id, hard=True)
    await engine.wait_for(request_id, JobState.COMPLETED)
    assert engine.dispatcher.ran()[4:] == ["a", "b", "c"]
    # the restart ran the version the request pinned
    assert {w.job_version for w in engine.dispatcher.calls} == {1}


async def test_job_retry_reruns_only_failed_tasks(engine: Engine) -> None:
    tasks = shell("a", "on_completed: b") + shell("b")
    await engine.upload(job("jobretry", tasks, header="retry: 1\n"))
    engine.dispatcher.then("b", fail(), ok())
    details = await engine.wait_for(await engine.submit("jobretry"), *DONE)
    assert details.request.job_state is JobState.COMPLETED
    assert details.request.retried == 1
    assert engine.dispatcher.ran() == ["a", "b", "b"]
    assert [w.job_retry for w in engine.dispatcher.calls] == [0, 0, 1]


async def test_hard_reset_after_retries_reruns_everything(engine: Engine) -> None:
    tasks = shell("a", "on_completed: b") + shell("b")
    await engine.upload(job("hard", tasks, header="retry: 2\nhard_reset_after_retries: 2\n"))
    engine.dispatcher.then("b", fail(), fail(), ok())
    details = await engine.wait_for(await engine.submit("hard"), *DONE)
    assert details.request.job_state is JobState.COMPLETED
    # retry 1 is soft (only b), retry 2 is hard (a and b again)
    assert engine.dispatcher.ran() == ["a", "b", "b", "a", "b"]


async def test_priority_then_age_and_max_concurrency_of_one(engine: Engine) -> None:
    from queen.domain.job_definition import TaskMethod
    from queen.services.requests import Submission
    from tests.fixtures.engine import IDENTITY

    await engine.upload(job("single", shell("only"), header="max_concurrency: 1\n"))
    engine.dispatcher.unavailable.add(TaskMethod.SHELL)
    ids = []
    for priority in (0, 5, 0, 9):
        record = await engine.requests.submit(IDENTITY, Submission("single", {}, priority=priority))
        ids.append(record.id)
    await engine.scheduler.run_once()
    waiting = await engine.details(ids[0])
    assert waiting.request.job_state is JobState.PENDING
    assert waiting.request.wait_reason == "task only: no connected Ant runs SHELL tasks"

    gates = [asyncio.Event() for _ in ids]
    engine.dispatcher.then("only", *gates)
    engine.dispatcher.unavailable.clear()
    order = []
    for gate in gates:
        await engine.scheduler.run_once()
        running = [i for i in ids if (await engine.details(i)).request.job_state.is_active]
        assert len(running) == 1, "max_concurrency 1 means one at a time"
        order.append(running[0])
        blocked = [i for i in ids if i not in order]
        if blocked:
            assert (
                await engine.details(blocked[0])
            ).request.wait_reason == "max_concurrency 1 of single reached"
        gate.set()
        await engine.wait_for(running[0], JobState.COMPLETED)
    assert order == [ids[3], ids[1], ids[0], ids[2]]


async def test_scheduled_time_is_honoured(engine: Engine) -> None:
    from datetime import timedelta

    from queen.services.requests import Submission
    from queen.store._clock import utc_now
    from tests.fixtures.engine import IDENTITY

    await engine.upload(job("later", shell("t")))
    when = utc_now() + timedelta(hours=1)
    record = await engine.requests.submit(IDENTITY, Submission("later", {}, scheduled_at=when))
    due_in = await engine.scheduler.run_once()
    assert (await engine.details(record.id)).request.job_state is JobState.PENDING
    assert due_in is not None
    assert 3500 < due_in <= 3600
    await engine.scheduler.run_once(now=when + timedelta(seconds=1))
    await engine.wait_for(record.id, JobState.COMPLETED)


async def test_skip_if_completes_without_running(engine: Engine) -> None:
    await engine.upload(job("skippy", shell("t"), header="skip_if: \"{{ mode == 'dry' }}\"\n"))
    details = await engine.wait_for(await engine.submit("skippy", mode="dry"), *DONE)
    assert details.request.job_state is JobState.COMPLETED
    assert engine.dispatcher.calls == []
    ran = await engine.wait_for(await engine.submit("skippy", mode="real"), *DONE)
    assert ran.request.job_state is JobState.COMPLETED
    assert engine.dispatcher.ran() == ["t"]


async def test_templating_and_task_outputs_flow_to_later_tasks(engine: Engine) -> None:
    tasks = (
        "- task_type: first\n  method: SHELL\n  script: [ 'echo {{.JobID}} {{ who }}' ]\n"
        "  on_completed: second\n"
        "- task_type: second\n  method: SHELL\n  script: [ 'deploy {{ version }} for {{ who }}' ]\n"
    )
    await engine.upload(job("tmpl", tasks, header="job_variables: {who: nobody}\n"))
    engine.dispatcher.then("first", ok(version="1.2.3"))
    request_id = await engine.submit("tmpl", who="alice")
    await engine.wait_for(request_id, *DONE)
    first, second = engine.dispatcher.calls
    assert first.task.script == (f"echo {request_id} alice",)
    assert second.task.script == ("deploy 1.2.3 for alice",)


async def test_a_template_anywhere_in_a_task_is_rendered_and_a_plain_task_goes_as_written(
    engine: Engine,
) -> None:
    tasks = (
        "- task_type: env-only\n  method: SHELL\n  script: [ 'make deploy' ]\n"
        "  environment: {TARGET: '{{ who }}-{{.TaskType}}'}\n  on_completed: plain\n"
        "- task_type: plain\n  method: SHELL\n  script: [ 'make test' ]\n  environment: {MODE: fast}\n"
    )
    await engine.upload(job("where", tasks))
    await engine.wait_for(await engine.submit("where", who="alice"), *DONE)
    templated, plain = engine.dispatcher.calls
    assert dict(templated.task.environment) == {"TARGET": "alice-env-only"}
    assert templated.task.script == ("make deploy",)
    assert dict(plain.task.environment) == {"MODE": "fast"}
    assert plain.task.script == ("make test",)


async def test_cron_creates_exactly_one_request_per_fire_time(engine: Engine) -> None:
    from datetime import UTC, datetime, timedelta

    from queen.scheduler.cron import CronTrigger
    from queen.store import requests as request_store

    await engine.upload(job("nightly", shell("t"), header="cron_trigger: '0 2 * * *'\n"))
    cron = CronTrigger(engine.db, on_submitted=lambda: None)
    two = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
    await cron.run_once(now=two - timedelta(seconds=1))  # before the fire time: nothing
    await cron.run_once(now=two)
    await cron.run_once(now=two + timedelta(seconds=30))  # same fire time again: nothing more
    other = CronTrigger(engine.db, on_submitted=lambda: None)  # a second Queen, or a restarted one
    await other.run_once(now=two + timedelta(minutes=1))
    upcoming = await cron.run_once(now=two + timedelta(days=1, seconds=5))  # the next night
    async with engine.db.transaction() as session:
        made, total = await request_store.list_requests(session, "org-1", job_type="nightly")
    assert total == 2
    assert all(r.cron_triggered for r in made)
    assert sorted(r.user_key or "" for r in made) == [
        "cron:nightly:2026-11-26T02:00:00+00:00",
        "cron:nightly:2026-11-27T02:00:00+00:00",
    ]
    assert upcoming == datetime(2026, 11, 28, 2, 0, tzinfo=UTC)


async def test_job_timeout_stops_the_job_and_runs_always_run(engine: Engine) -> None:
    tasks = shell("long", "on_completed: next") + shell("next") + shell("cleanup", "always_run: true")
    await engine.upload(job("jobtimeout", tasks, header="timeout: 200ms\n"))
    engine.dispatcher.then("long", asyncio.Event())  # never finishes by itself
    details = await engine.wait_for(await engine.submit("jobtimeout"), *DONE)
    assert details.request.job_state is JobState.FAILED
    assert details.request.error_code == "ERR_JOB_TIMEOUT"
    assert engine.dispatcher.ran() == ["long", "cleanup"]
    assert engine.task_states(details) == {"long": "FAILED", "cleanup": "COMPLETED"}


async def test_except_skips_a_task(engine: Engine) -> None:
    tasks = shell("maybe", "except: \"{{ env == 'prod' }}\"\non_completed: after") + shell("after")
    await engine.upload(job("except", tasks))
    details = await engine.wait_for(await engine.submit("except", env="prod"), *DONE)
    assert details.request.job_state is JobState.COMPLETED
    assert engine.task_states(details) == {"maybe": "SKIPPED", "after": "COMPLETED"}
    assert {t.task_type: t.exit_code for t in details.tasks}["maybe"] == "SKIPPED"
    assert engine.dispatcher.ran() == ["after"]


async def test_the_sweep_adopts_a_running_request_whose_supervisor_died(engine: Engine) -> None:
    await engine.upload(job("orphan", shell("hold", "on_completed: after") + shell("after")))
    gate = asyncio.Event()
    engine.dispatcher.then("hold", gate)
    request_id = await engine.submit("orphan")
    await asyncio.wait_for(engine.dispatcher.started.wait(), 10)
    # the supervisor dies (as a bug would kill it): the request stays EXECUTING with nobody driving it
    _, task = engine.supervisors._running[request_id]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert not engine.supervisors.supervises(request_id)
    gate.set()
    await engine.scheduler._adopt_orphans()
    details = await engine.wait_for(request_id, *DONE)
    assert details.request.job_state is JobState.COMPLETED
    assert engine.dispatcher.ran()[-1] == "after"


async def test_a_job_ending_wakes_the_scheduler_only_for_requests_that_wait_for_it(engine: Engine) -> None:
    from queen.domain.job_definition import TaskMethod
    from queen.services.requests import Submission
    from tests.fixtures.engine import IDENTITY

    await engine.scheduler.run_once()  # nothing pending: nothing a job's end could start
    engine.scheduler._wake.clear()
    engine.scheduler.supervisor_ended()
    assert not engine.scheduler.due

    await engine.upload(job("held", shell("only")))
    engine.dispatcher.unavailable.add(TaskMethod.SHELL)
    await engine.requests.submit(IDENTITY, Submission("held", {}))
    await engine.scheduler.run_once()  # left waiting: "no connected Ant runs SHELL tasks"
    engine.scheduler._wake.clear()
    engine.scheduler.supervisor_ended()
    assert engine.scheduler.due


async def test_a_stored_definition_that_no_longer_parses_fails_its_request_not_the_pass(
    engine: Engine,
) -> None:
    """A parser grown stricter since a version was stored: its request fails with ERR_INVALID_DEFINITION
    and the other requests of the same pass still start."""
    from sqlalchemy import text

    from queen.domain.job_definition import TaskMethod
    from queen.services.requests import Submission
    from queen.store import definitions
    from tests.fixtures.engine import IDENTITY

    await engine.upload(job("fragile", shell("a")))
    await engine.upload(job("sturdy", shell("b")))
    engine.dispatcher.unavailable.add(TaskMethod.SHELL)  # both wait: their definitions get parsed now
    fragile = await engine.requests.submit(IDENTITY, Submission("fragile", {}))
    sturdy = await engine.requests.submit(IDENTITY, Submission("sturdy", {}))
    await engine.scheduler.run_once()
    async with engine.db.transaction() as session:  # what a stricter parser would now refuse
        await session.execute(
            text("UPDATE job_definitions SET yaml = :yaml, digest = :digest WHERE job_type = 'fragile'"),
            {"yaml": "job_type: fragile\ntasks: {}\n", "digest": "0" * 64},
        )
    definitions._PINNED.clear()  # versions are immutable, so the Queen keeps what it read
    engine.dispatcher.unavailable.clear()
    await engine.scheduler.run_once()

    failed = await engine.wait_for(fragile.id, JobState.FAILED)
    assert failed.request.error_code == "ERR_INVALID_DEFINITION"
    await engine.wait_for(sturdy.id, JobState.COMPLETED)
