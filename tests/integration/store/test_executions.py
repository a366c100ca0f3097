"""Job and task executions: one job's life end to end, idempotent task creation, guarded task results."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from queen.domain.errors import InvalidTransition, NotFound
from queen.domain.job_definition import TaskMethod
from queen.domain.states import JobState, TaskState
from queen.store import (
    Database,
    DefinitionRecord,
    DuplicateKey,
    JobRequestRecord,
    TaskExecutionRecord,
    events,
    executions,
    requests,
    security,
)

from .conftest import HELLO_YAML, ORG, USER, at, race, submit, upload

pytestmark = pytest.mark.integration

J = JobState
T = TaskState


async def start_job(db: Database) -> tuple[DefinitionRecord, JobRequestRecord, str]:
    """A request of `hello`, scheduled and started: returns (definition, request, job execution id)."""
    definition, _ = await upload(db, HELLO_YAML)
    request = await submit(db, definition, now=at(0))
    async with db.transaction() as session:
        ready = await requests.transition_request(session, request.id, J.PENDING, J.READY, now=at(1))
        execution = await executions.create_job_execution(session, ready, definition, now=at(2))
        request = await requests.transition_request(
            session,
            request.id,
            J.READY,
            J.STARTED,
            job_execution_id=execution.id,
            started_at=at(2),
            now=at(2),
        )
    return definition, request, execution.id


async def test_one_job_from_start_to_end(db: Database) -> None:
    definition, request, execution_id = await start_job(db)
    async with db.transaction() as session:
        execution = await executions.get_job_execution(session, execution_id)
        assert (execution.job_state, execution.job_version, execution.started_at) == (J.STARTED, 1, at(2))
        for order, task in enumerate(definition.definition().tasks):
            created = await executions.create_task_execution(
                session, execution_id, task.task_type, method=task.method, task_order=order, now=at(3)
            )
            assert (created.task_state, created.method, created.task_order) == (T.READY, "SHELL", order)
        await executions.transition_job_execution(session, execution_id, J.STARTED, J.EXECUTING, now=at(3))
        await requests.transition_request(session, request.id, J.STARTED, J.EXECUTING, now=at(3))

    async with db.transaction() as session:
        greet = await executions.find_task_execution(session, execution_id, "greet")
        assert greet is not None
        await executions.transition_task(
            session,
            greet.id,
            T.READY,
            T.STARTED,
            ant_id="ant-1",
            ant_host="host-1",
            started_at=at(4),
            now=at(4),
        )
        await executions.transition_task(session, greet.id, T.STARTED, T.EXECUTING, now=at(5))
        done = await executions.transition_task(
            session,
            greet.id,
            T.EXECUTING,
            T.COMPLETED,
            exit_code="0",
            exit_message="ok",
            contexts={"greeting": "hello", "nested": {"n": [1, 2]}},
            artifacts=[{"id": "a-1", "name": "out.txt", "size": 3}],
            stdout=["hello"],
            cost_factor=1.5,
            ended_at=at(6),
            now=at(6),
        )
    assert (done.task_state, done.exit_code, done.ant_id, done.ant_host) == (
        T.COMPLETED,
        "0",
        "ant-1",
        "host-1",
    )
    assert done.contexts["nested"]["n"] == (1, 2)  # read-only copies of the JSON
    assert done.artifacts[0]["name"] == "out.txt"
    assert done.stdout == ("hello",)
    assert (done.started_at, done.ended_at, done.cost_factor) == (at(4), at(6), 1.5)

    async with db.transaction() as session:
        bye = await executions.find_task_execution(session, execution_id, "bye")
        assert bye is not None
        await executions.transition_task(session, bye.id, T.READY, T.SKIPPED, now=at(7))
        finished = await executions.finish_job_execution(
            session, execution_id, J.EXECUTING, J.COMPLETED, exit_code="0", cpu_secs=2.5, now=at(8)
        )
        await requests.transition_request(
            session, request.id, J.EXECUTING, J.COMPLETED, ended_at=at(8), now=at(8)
        )
        tasks = await executions.task_executions_of(session, execution_id)
        stored = await executions.get_task_execution(session, done.id)
        log = await events.events_since(session, request.id)
    assert (finished.job_state, finished.ended_at, finished.cpu_secs) == (J.COMPLETED, at(8), 2.5)
    assert [(t.task_type, t.task_state) for t in tasks] == [("greet", T.COMPLETED), ("bye", T.SKIPPED)]
    assert stored == done
    assert [(e.kind, e.task_type, e.from_state, e.to_state) for e in log] == [
        ("request_submitted", None, None, "PENDING"),
        ("job_state_changed", None, "PENDING", "READY"),
        ("job_execution_created", None, None, "STARTED"),
        ("job_state_changed", None, "READY", "STARTED"),
        ("task_created", "greet", None, "READY"),
        ("task_created", "bye", None, "READY"),
        ("job_execution_state_changed", None, "STARTED", "EXECUTING"),
        ("job_state_changed", None, "STARTED", "EXECUTING"),
        ("task_state_changed", "greet", "READY", "STARTED"),
        ("task_state_changed", "greet", "STARTED", "EXECUTING"),
        ("task_state_changed", "greet", "EXECUTING", "COMPLETED"),
        ("task_state_changed", "bye", "READY", "SKIPPED"),
        ("job_execution_state_changed", None, "EXECUTING", "COMPLETED"),
        ("job_state_changed", None, "EXECUTING", "COMPLETED"),
    ]
    assert [e.id for e in log] == sorted(e.id for e in log)
    assert log[10].data["exit_code"] == "0"
    assert "stdout" not in log[10].data  # bulky results stay on the task row
    assert [e.created_at for e in log][-2:] == [at(8), at(8)]

    async with db.transaction() as session:
        first_page = await events.events_since(session, request.id, after_id=0, limit=5)
        rest = await events.events_since(session, request.id, after_id=first_page[-1].id, limit=100)
    assert [e.id for e in first_page + rest] == [e.id for e in log]


async def test_task_creation_is_idempotent(db: Database) -> None:
    _, request, execution_id = await start_job(db)
    async with db.transaction() as session:
        first = await executions.create_task_execution(
            session, execution_id, "greet", method=TaskMethod.SHELL, task_order=0
        )
        again = await executions.create_task_execution(
            session, execution_id, "greet", method=TaskMethod.SHELL, task_order=0
        )
        with pytest.raises(NotFound):
            await executions.create_task_execution(
                session, "no-such-execution", "greet", method="SHELL", task_order=0
            )
        with pytest.raises(NotFound):
            await executions.get_task_execution(session, "no-such-task")
    assert again == first

    async def create(session: AsyncSession) -> TaskExecutionRecord:
        return await executions.create_task_execution(
            session, execution_id, "bye", method=TaskMethod.SHELL, task_order=1, allow_failure=True
        )

    one, other = await race(db, create, create)
    assert isinstance(other, TaskExecutionRecord)
    assert other.id == one.id
    assert one.allow_failure
    async with db.transaction() as session:
        log = await events.events_since(session, request.id)
    assert [e.task_type for e in log if e.kind == "task_created"] == ["greet", "bye"]


async def test_task_transitions_are_guarded(db: Database) -> None:
    _, _, execution_id = await start_job(db)
    async with db.transaction() as session:
        task = await executions.create_task_execution(
            session, execution_id, "greet", method="SHELL", task_order=0
        )
        with pytest.raises(InvalidTransition):
            await executions.transition_task(session, task.id, T.READY, T.APPROVED)  # not in the table
        with pytest.raises(InvalidTransition) as stale:
            await executions.transition_task(session, task.id, T.STARTED, T.EXECUTING)  # it is READY
        with pytest.raises(NotFound):
            await executions.transition_task(session, "no-such-task", T.READY, T.STARTED)
        await executions.transition_task(session, task.id, T.READY, T.STARTED, ant_id="ant-1")
    assert stale.value.current == "READY"

    # an Ant's result racing a cancel: whichever commits first wins, the other is refused
    async def cancel(session: AsyncSession) -> TaskExecutionRecord:
        return await executions.transition_task(session, task.id, T.STARTED, T.CANCELLED)

    async def complete(session: AsyncSession) -> TaskExecutionRecord:
        return await executions.transition_task(session, task.id, T.STARTED, T.COMPLETED, exit_code="0")

    cancelled, result = await race(db, cancel, complete)
    assert cancelled.task_state is T.CANCELLED
    assert isinstance(result, InvalidTransition)
    async with db.transaction() as session:
        stored = await executions.get_task_execution(session, task.id)
        with pytest.raises(ValueError, match="terminal"):
            await executions.finish_job_execution(session, execution_id, J.STARTED, J.EXECUTING)
        with pytest.raises(InvalidTransition):
            await executions.finish_job_execution(session, execution_id, J.EXECUTING, J.COMPLETED)  # STARTED
    assert (stored.task_state, stored.exit_code) == (T.CANCELLED, "")


async def test_tasks_in_states_finds_work_to_resume(db: Database) -> None:
    _, _, execution_id = await start_job(db)
    async with db.transaction() as session:
        on_one = await executions.create_task_execution(
            session, execution_id, "a", method="SHELL", task_order=0
        )
        on_two = await executions.create_task_execution(
            session, execution_id, "b", method="SHELL", task_order=1
        )
        waiting = await executions.create_task_execution(
            session, execution_id, "c", method="SHELL", task_order=2
        )
        await executions.transition_task(session, on_one.id, T.READY, T.STARTED, ant_id="ant-1")
        await executions.transition_task(session, on_two.id, T.READY, T.EXECUTING, ant_id="ant-2")
        running = await executions.tasks_in_states(session, {T.STARTED, T.EXECUTING})
        on_ant_two = await executions.tasks_in_states(session, [T.STARTED, T.EXECUTING], ant_id="ant-2")
        ready = await executions.tasks_in_states(session, [T.READY])
    assert [t.id for t in running] == [on_one.id, on_two.id]
    assert [t.id for t in on_ant_two] == [on_two.id]
    assert [t.id for t in ready] == [waiting.id]


async def test_writes_left_for_the_end_of_the_transaction_match_what_is_stored(db: Database) -> None:
    """The supervisor's hot path: a result, the cursor and the next task's row written as deferred
    statements (one pipeline on PostgreSQL). The records they return are exactly what a read gives."""
    _, request, execution_id = await start_job(db)
    async with db.transaction() as session:
        execution = await executions.get_job_execution(session, execution_id)
        task = await executions.create_task_execution(
            session, execution_id, "greet", method="SHELL", task_order=0, job_request_id=request.id
        )
        task = await executions.transition_task(session, task.id, T.READY, T.EXECUTING, ant_id="ant-1")
    async with db.transaction() as session:
        ended = await executions.transition_task(
            session,
            task.id,
            T.EXECUTING,
            T.COMPLETED,
            known=task,
            exit_code="0",
            contexts={"greeting": "hello", "count": 2},
            artifacts=[{"id": "a-1", "name": "out.txt"}],
            stdout=["hello"],
            ended_at=at(5),
            job_request_id=request.id,
        )
        moved = await executions.set_cursor(session, execution_id, {"next_task": "bye"}, known=execution)
        following = await executions.create_task_execution(
            session, execution_id, "bye", method="SHELL", task_order=1, job_request_id=request.id, absent=True
        )
        # nothing of it has reached the database yet: a read in the same transaction still sees the old row
        assert (await executions.get_task_execution(session, task.id)).task_state is T.EXECUTING
    async with db.transaction() as session:
        assert await executions.get_task_execution(session, task.id) == ended
        assert await executions.get_job_execution(session, execution_id) == moved
        assert await executions.get_task_execution(session, following.id) == following
        log = await events.events_since(session, request.id)
    assert ended.task_state is T.COMPLETED
    assert moved.cursor == {"next_task": "bye"}

    async with db.transaction() as session:  # the end of the job: the execution's row waits too
        running = await executions.transition_job_execution(
            session, execution_id, moved.job_state, J.EXECUTING
        )
        finished = await executions.finish_job_execution(
            session, execution_id, J.EXECUTING, J.COMPLETED, now=at(9), known=running
        )
    async with db.transaction() as session:
        assert await executions.get_job_execution(session, execution_id) == finished
    assert (finished.job_state, finished.ended_at) == (J.COMPLETED, at(9))
    assert [(e.kind, e.task_type, e.to_state) for e in log][-2:] == [
        ("task_state_changed", "greet", "COMPLETED"),
        ("task_created", "bye", "READY"),
    ]


async def test_a_deferred_guard_that_fails_refuses_the_whole_transaction(db: Database) -> None:
    _, request, execution_id = await start_job(db)
    async with db.transaction() as session:
        task = await executions.create_task_execution(
            session, execution_id, "greet", method="SHELL", task_order=0, job_request_id=request.id
        )
    async with db.transaction() as session:  # someone else moved the task on: the known row is stale
        await executions.transition_task(session, task.id, T.READY, T.CANCELLED)

    async def stale_result(session: AsyncSession) -> None:
        await executions.transition_task(
            session, task.id, T.READY, T.EXECUTING, known=task, job_request_id=request.id
        )
        await executions.create_task_execution(
            session, execution_id, "bye", method="SHELL", task_order=1, absent=True
        )

    async def existing_task(session: AsyncSession) -> None:  # the caller said it did not exist
        await executions.create_task_execution(
            session, execution_id, "greet", method="SHELL", task_order=0, absent=True
        )

    async def missing_execution(session: AsyncSession) -> None:
        gone = replace(await executions.get_job_execution(session, execution_id), id="no-such-execution")
        await executions.set_cursor(session, gone.id, {"next_task": "bye"}, known=gone)

    async def wrong_known_row(session: AsyncSession) -> None:
        await executions.transition_task(session, task.id, T.EXECUTING, T.COMPLETED, known=task)

    async def stale_execution(session: AsyncSession) -> None:  # it is STARTED, not EXECUTING
        execution = await executions.get_job_execution(session, execution_id)
        await executions.finish_job_execution(
            session, execution_id, J.EXECUTING, J.FAILED, known=replace(execution, job_state=J.EXECUTING)
        )

    with pytest.raises(InvalidTransition) as refused:
        await in_transaction(db, stale_result)
    assert refused.value.current == "CANCELLED"
    with pytest.raises(DuplicateKey):
        await in_transaction(db, existing_task)
    with pytest.raises(NotFound):
        await in_transaction(db, missing_execution)
    with pytest.raises(ValueError, match="known"):
        await in_transaction(db, wrong_known_row)
    with pytest.raises(InvalidTransition):
        await in_transaction(db, stale_execution)
    async with db.transaction() as session:
        stored = await executions.task_executions_of(session, execution_id)
        log = await events.events_since(session, request.id)
    assert [(t.task_type, t.task_state) for t in stored] == [("greet", T.CANCELLED)]
    assert [(e.kind, e.to_state) for e in log if e.task_type] == [
        ("task_created", "READY"),
        ("task_state_changed", "CANCELLED"),
    ]


async def test_rows_of_a_deferred_read_come_with_the_end_of_the_transaction(db: Database) -> None:
    async with db.transaction() as session:
        read = await security.task_configs(session, organization_id=ORG, job_type="hello", user_id=USER)
        with pytest.raises(RuntimeError, match="not run yet"):
            read()
    assert read() == []


async def in_transaction(db: Database, work: Callable[[AsyncSession], Awaitable[None]]) -> None:
    async with db.transaction() as session:
        await work(session)
