"""Job executions (one run of a request) and their task executions (one row per task, reused by retries).

State changes are guarded UPDATEs that also append their event to the request's log. Task results
(exit code, outputs, Ant) are written by the same guarded update that ends the task.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from types import SimpleNamespace
from typing import Any, TypedDict, Unpack

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import KeyedColumnElement

from queen.domain.errors import NotFound
from queen.domain.states import JobState, TaskState, check_job_transition, check_task_transition
from queen.store._clock import utc_now
from queen.store._fast import FastStatement, defer, defer_returning, insert_if_absent, returning_columns, run
from queen.store._guarded import guarded_update
from queen.store._json import freeze, freeze_mapping, to_json_list, to_json_object, to_json_value
from queen.store.database import DuplicateKey
from queen.store.events import EventKind, append_event
from queen.store.models import JobExecutionRow, TaskExecutionRow
from queen.store.records import DefinitionRecord, JobExecutionRecord, JobRequestRecord, TaskExecutionRecord

__all__ = [
    "JobExecutionChanges",
    "Passage",
    "TaskChanges",
    "create_job_execution",
    "create_task_execution",
    "find_task_execution",
    "finish_job_execution",
    "get_job_execution",
    "get_task_execution",
    "set_cursor",
    "task_executions_of",
    "tasks_in_states",
    "transition_job_execution",
    "transition_task",
]

_JOB_EXECUTIONS: Table = JobExecutionRow.__table__  # type: ignore[assignment]
_TASK_EXECUTIONS: Table = TaskExecutionRow.__table__  # type: ignore[assignment]
_JOB_EXECUTION = "job execution"
_TASK_EXECUTION = "task execution"
# Large values that the task_state_changed event does not copy (they stay on the task row).
_BULKY_TASK_FIELDS = frozenset({"contexts", "artifacts", "stdout"})


class JobExecutionChanges(TypedDict, total=False):
    """Columns a job-execution transition may set along with the state."""

    exit_code: str
    exit_message: str
    error_code: str
    error_message: str
    contexts: Mapping[str, Any]
    ended_at: datetime | None
    cpu_secs: float


class TaskChanges(TypedDict, total=False):
    """Columns a task transition may set along with the state: the Ant's result and bookkeeping."""

    exit_code: str
    exit_message: str
    error_code: str
    error_message: str
    failed_command: str
    contexts: Mapping[str, Any]
    artifacts: Sequence[Any]
    stdout: Sequence[str]
    warnings: Sequence[str]
    ant_id: str
    ant_host: str
    cost_factor: float
    retried: int
    span_id: str
    next_run_at: datetime | None
    deadline_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None


async def create_job_execution(
    session: AsyncSession,
    request: JobRequestRecord,
    definition: DefinitionRecord,
    *,
    state: JobState = JobState.STARTED,
    contexts: Mapping[str, Any] | None = None,
    now: datetime | None = None,
    later: bool = False,
) -> JobExecutionRecord:
    """A new execution of `request` (of `definition`'s version), in `state`; logs `job_execution_created`.

    It does not touch the request: the caller points the request at it (`transition_request(...,
    job_execution_id=...)`) in the same transaction.

    `later`: the INSERT is left for the end of the transaction (`_fast.defer`: on PostgreSQL in the
    pipeline with the COMMIT); the caller then writes the new row only with statements left for the end
    too (`set_cursor(known=...)`, a deferred task creation), which run after it, in order.
    """
    now = now or utc_now()
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "job_request_id": request.id,
        "job_type": definition.job_type,
        "job_version": definition.version,
        "job_state": state,
        "exit_code": "",
        "exit_message": "",
        "error_code": "",
        "error_message": "",
        "contexts": to_json_object(contexts or {}),
        "cursor": None,
        "started_at": now,
        "ended_at": None,
        "updated_at": now,
        "cpu_secs": 0.0,
    }
    if later:
        await defer(session, _INSERT_JOB_EXECUTION, values)
    else:
        await run(session, _INSERT_JOB_EXECUTION, values)
    await append_event(
        session,
        job_request_id=request.id,
        kind=EventKind.JOB_EXECUTION_CREATED,
        to_state=state,
        data={"job_execution_id": values["id"], "job_version": definition.version},
        now=now,
    )
    row = SimpleNamespace(**values)
    return _job_execution_record(row)


async def get_job_execution(session: AsyncSession, job_execution_id: str) -> JobExecutionRecord:
    rows = await run(session, _GET_JOB_EXECUTION, {"w_id": job_execution_id})
    if not rows:
        raise NotFound(f"job execution {job_execution_id} does not exist")
    return _job_execution_record(SimpleNamespace(**rows[0]))


async def transition_job_execution(
    session: AsyncSession,
    job_execution_id: str,
    expected: JobState,
    target: JobState,
    *,
    message: str = "",
    now: datetime | None = None,
    known: JobExecutionRecord | None = None,
    **changes: Unpack[JobExecutionChanges],
) -> JobExecutionRecord:
    """Guarded move of the execution from `expected` to `target` (same table as requests); logs
    `job_execution_state_changed`. InvalidTransition for a forbidden move or a lost race.

    `known`: the caller holds the execution's row as it is (its supervisor): the UPDATE is left for the
    end of the transaction with its guard (as `transition_task`'s), and `known` with the changes is
    returned."""
    check_job_transition(expected, target, entity=_JOB_EXECUTION)
    now = now or utc_now()
    values: dict[str, Any] = {**changes, "updated_at": now}
    if "contexts" in changes:
        values["contexts"] = to_json_object(changes["contexts"])
    row = await guarded_update(
        session,
        JobExecutionRow,
        entity=_JOB_EXECUTION,
        row_id=job_execution_id,
        state_column=JobExecutionRow.job_state,
        expected=expected,
        target=target,
        values=values,
        known=known,
    )
    await append_event(
        session,
        job_request_id=row.job_request_id,
        kind=EventKind.JOB_EXECUTION_STATE_CHANGED,
        from_state=expected,
        to_state=target,
        message=message or changes.get("error_message", ""),
        data={
            "job_execution_id": job_execution_id,
            **{key: to_json_value(value) for key, value in changes.items() if key != "contexts"},
        },
        now=now,
    )
    return _job_execution_record(row)


async def finish_job_execution(
    session: AsyncSession,
    job_execution_id: str,
    expected: JobState,
    target: JobState,
    *,
    exit_code: str = "",
    exit_message: str = "",
    error_code: str = "",
    error_message: str = "",
    cpu_secs: float | None = None,
    contexts: Mapping[str, Any] | None = None,
    message: str = "",
    now: datetime | None = None,
    known: JobExecutionRecord | None = None,
) -> JobExecutionRecord:
    """End the execution in a terminal `target` (COMPLETED, FAILED, CANCELLED) with its outcome;
    `ended_at` is `now`. `known`: as for `transition_job_execution`."""
    if not target.is_terminal:
        raise ValueError(f"finish_job_execution needs a terminal state, not {target}")
    now = now or utc_now()
    changes: JobExecutionChanges = {
        "exit_code": exit_code,
        "exit_message": exit_message,
        "error_code": error_code,
        "error_message": error_message,
        "ended_at": now,
    }
    if cpu_secs is not None:
        changes["cpu_secs"] = cpu_secs
    if contexts is not None:
        changes["contexts"] = contexts
    return await transition_job_execution(
        session, job_execution_id, expected, target, message=message, now=now, known=known, **changes
    )


async def set_cursor(
    session: AsyncSession,
    job_execution_id: str,
    cursor: Mapping[str, Any],
    *,
    now: datetime | None = None,
    known: JobExecutionRecord | None = None,
) -> JobExecutionRecord:
    """Save the supervisor's position in the DAG (in the transaction that commits the decision behind it).

    Not an event of its own: the task transition committed with it already tells what happened.
    `known`: the caller holds the execution's row as it is: the UPDATE is left for the end of the
    transaction (`_fast.defer_returning`; NotFound raised there) and `known` with the cursor is returned.
    """
    now = now or utc_now()
    stored = to_json_object(cursor)
    params = {"w_id": job_execution_id, "cursor": stored, "updated_at": now}
    if known is not None:

        async def check(rows: list[dict[str, Any]]) -> None:
            if not rows:
                raise NotFound(f"job execution {job_execution_id} does not exist")

        await defer_returning(session, _SET_CURSOR_LATER, params, check=check)
        return replace(known, cursor=freeze_mapping(stored), updated_at=now)
    rows = await run(session, _SET_CURSOR, params)
    if not rows:
        raise NotFound(f"job execution {job_execution_id} does not exist")
    row = SimpleNamespace(**rows[0])
    return _job_execution_record(row)


async def create_task_execution(
    session: AsyncSession,
    job_execution_id: str,
    task_type: str,
    *,
    method: str,
    task_order: int,
    allow_failure: bool = False,
    job_request_id: int | None = None,
    now: datetime | None = None,
    absent: bool = False,
) -> TaskExecutionRecord:
    """The READY task execution of `task_type` in the job execution; idempotent on (execution, task type).

    Returns the existing row unchanged when there is one (also when a concurrent call created it first);
    otherwise creates it and logs `task_created`. NotFound if the job execution does not exist.

    `absent`: the caller knows there is no such row (the supervisor, which holds its execution's tasks):
    the INSERT is left for the end of the transaction (`_fast.defer_returning`), and a row found there
    after all refuses the transaction with DuplicateKey.
    """
    if job_request_id is None:
        job_request_id = await _job_request_id(session, job_execution_id)
    now = now or utc_now()
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "job_execution_id": job_execution_id,
        "task_type": task_type,
        "method": str(method),
        "task_state": TaskState.READY,
        "task_order": task_order,
        "allow_failure": allow_failure,
        "exit_code": "",
        "exit_message": "",
        "error_code": "",
        "error_message": "",
        "failed_command": "",
        "ant_id": "",
        "ant_host": "",
        "retried": 0,
        "contexts": {},
        "artifacts": [],
        "stdout": [],
        "warnings": [],
        "cost_factor": 0.0,
        "span_id": "",
        "next_run_at": None,
        "deadline_at": None,
        "started_at": None,
        "ended_at": None,
        "updated_at": now,
    }
    if absent:

        async def check(rows: list[dict[str, Any]]) -> None:
            if not rows:
                raise DuplicateKey(f"job execution {job_execution_id} already has a task {task_type!r}")

        await defer_returning(session, _INSERT_TASK_IF_ABSENT, values, check=check)
    # One statement whether or not the task exists: an existing (execution, task type) row wins and is
    # returned unchanged (a concurrent creator, or a caller that did not know), with no savepoint.
    elif not await run(session, _INSERT_TASK_IF_ABSENT, values):
        existing = await find_task_execution(session, job_execution_id, task_type)
        if existing is None:
            raise NotFound(f"job execution {job_execution_id} does not exist")
        return existing
    await append_event(
        session,
        job_request_id=job_request_id,
        kind=EventKind.TASK_CREATED,
        task_execution_id=values["id"],
        task_type=task_type,
        to_state=TaskState.READY,
        data={"job_execution_id": job_execution_id, "method": values["method"], "task_order": task_order},
        now=now,
    )
    return _task_record_of(values)


async def find_task_execution(
    session: AsyncSession, job_execution_id: str, task_type: str
) -> TaskExecutionRecord | None:
    """The task execution of `task_type` in the job execution, or None."""
    stmt = (
        select(TaskExecutionRow)
        .where(TaskExecutionRow.job_execution_id == job_execution_id, TaskExecutionRow.task_type == task_type)
        .execution_options(populate_existing=True)
    )
    row = (await session.scalars(stmt)).one_or_none()
    return None if row is None else _task_record(row)


async def get_task_execution(session: AsyncSession, task_execution_id: str) -> TaskExecutionRecord:
    rows = await run(session, _GET_TASK_EXECUTION, {"w_id": task_execution_id})
    if not rows:
        raise NotFound(f"task execution {task_execution_id} does not exist")
    return _task_record(SimpleNamespace(**rows[0]))


async def task_executions_of(session: AsyncSession, job_execution_id: str) -> list[TaskExecutionRecord]:
    """The job execution's tasks in task order."""
    rows = await run(session, _TASKS_OF, {"w_id": job_execution_id})
    return [_task_record(SimpleNamespace(**row)) for row in rows]


@dataclass(frozen=True, slots=True)
class Passage:
    """A state a task went through between two writes (see `transition_task`), when, with what changes."""

    state: TaskState
    at: datetime
    changes: Mapping[str, Any]


async def transition_task(
    session: AsyncSession,
    task_execution_id: str,
    expected: TaskState,
    target: TaskState,
    *,
    message: str = "",
    job_request_id: int | None = None,
    now: datetime | None = None,
    through: Passage | None = None,
    known: TaskExecutionRecord | None = None,
    **changes: Unpack[TaskChanges],
) -> TaskExecutionRecord:
    """Move the task from `expected` to `target`, writing `changes` (its result, its Ant, timings) in the
    same guarded UPDATE, and log `task_state_changed`. A caller that knows the task's job request passes
    `job_request_id` and saves a lookup (the supervisor does, on every task of the dispatch path).

    `through`: the task passed through another state on the way (a short task's EXECUTING, recorded with
    its result): one UPDATE still, with the passage's changes, and both transitions in the event log.

    Raises InvalidTransition before touching the database if the table forbids expected → target, and
    after the UPDATE if the task is no longer in `expected` (e.g. a result racing a cancel); NotFound if
    it does not exist.

    `known`: the caller holds the task's row as it is now (the supervisor does): the UPDATE is left for
    the end of the transaction, with the guard checked there (`guarded_update(known=...)`: the errors
    above, raised before the commit), and the record returned is `known` with the changes. Not for a task the
    same transaction writes again afterwards.
    """
    if through is None:
        check_task_transition(expected, target)
    else:
        check_task_transition(expected, through.state)
        check_task_transition(through.state, target)
    now = now or utc_now()
    values: dict[str, Any] = {**(through.changes if through else {}), **changes, "updated_at": now}
    if "contexts" in changes:
        values["contexts"] = to_json_object(changes["contexts"])
    if "artifacts" in changes:
        values["artifacts"] = to_json_list(changes["artifacts"])
    if "stdout" in changes:
        values["stdout"] = [str(line) for line in changes["stdout"]]
    if "warnings" in changes:
        values["warnings"] = [str(line) for line in changes["warnings"]]
    row = await guarded_update(
        session,
        TaskExecutionRow,
        entity=_TASK_EXECUTION,
        row_id=task_execution_id,
        state_column=TaskExecutionRow.task_state,
        expected=expected,
        target=target,
        values=values,
        known=known,
    )
    job_request_id = job_request_id or await _job_request_id(session, row.job_execution_id)
    data = {key: to_json_value(value) for key, value in changes.items() if key not in _BULKY_TASK_FIELDS}
    steps = [(expected, target, message or changes.get("error_message", ""), data, now)]
    if through is not None:
        passage_data = {key: to_json_value(value) for key, value in through.changes.items()}
        steps = [(expected, through.state, "", passage_data, through.at), (through.state, *steps[0][1:])]
    for from_state, to_state, text, event_data, at in steps:
        await append_event(
            session,
            job_request_id=job_request_id,
            kind=EventKind.TASK_STATE_CHANGED,
            task_execution_id=task_execution_id,
            task_type=row.task_type,
            from_state=from_state,
            to_state=to_state,
            message=text,
            data=event_data,
            now=at,
        )
    return _task_record(row)


async def tasks_in_states(
    session: AsyncSession, states: Collection[TaskState], *, ant_id: str | None = None
) -> list[TaskExecutionRecord]:
    """Tasks (of every execution) in any of `states`, optionally only those on one Ant; for the Ant-lost
    sweep and the resume after a restart. Ordered by execution, then task order."""
    stmt = select(TaskExecutionRow).where(TaskExecutionRow.task_state.in_(sorted(states)))
    if ant_id is not None:
        stmt = stmt.where(TaskExecutionRow.ant_id == ant_id)
    stmt = stmt.order_by(TaskExecutionRow.job_execution_id, TaskExecutionRow.task_order).execution_options(
        populate_existing=True
    )
    return [_task_record(row) for row in (await session.scalars(stmt)).all()]


async def _job_request_id(session: AsyncSession, job_execution_id: str) -> int:
    found = await session.scalar(
        select(JobExecutionRow.job_request_id).where(JobExecutionRow.id == job_execution_id)
    )
    if found is None:
        raise NotFound(f"job execution {job_execution_id} does not exist")
    return found


_TASK_EXECUTION_INSERTED = (
    "id",
    "job_execution_id",
    "task_type",
    "method",
    "task_state",
    "task_order",
    "allow_failure",
    "exit_code",
    "exit_message",
    "error_code",
    "error_message",
    "failed_command",
    "ant_id",
    "ant_host",
    "retried",
    "contexts",
    "artifacts",
    "stdout",
    "warnings",
    "cost_factor",
    "span_id",
    "next_run_at",
    "deadline_at",
    "started_at",
    "ended_at",
    "updated_at",
)


# dispatch-path statements (see _fast)
_GET_JOB_EXECUTION = FastStatement(
    lambda _dialect: select(*_JOB_EXECUTIONS.c).where(_JOB_EXECUTIONS.c.id == bindparam("w_id")),
    returning_columns(_JOB_EXECUTIONS),
)
_GET_TASK_EXECUTION = FastStatement(
    lambda _dialect: select(*_TASK_EXECUTIONS.c).where(_TASK_EXECUTIONS.c.id == bindparam("w_id")),
    returning_columns(_TASK_EXECUTIONS),
)
_TASKS_OF = FastStatement(
    lambda _dialect: (
        select(*_TASK_EXECUTIONS.c)
        .where(_TASK_EXECUTIONS.c.job_execution_id == bindparam("w_id"))
        .order_by(_TASK_EXECUTIONS.c.task_order, _TASK_EXECUTIONS.c.task_type)
    ),
    returning_columns(_TASK_EXECUTIONS),
)
_JOB_EXECUTION_INSERTED = (
    "id",
    "job_request_id",
    "job_type",
    "job_version",
    "job_state",
    "exit_code",
    "exit_message",
    "error_code",
    "error_message",
    "contexts",
    "cursor",
    "started_at",
    "ended_at",
    "updated_at",
    "cpu_secs",
)
_INSERT_JOB_EXECUTION = FastStatement(
    lambda _dialect: insert(_JOB_EXECUTIONS).values({key: bindparam(key) for key in _JOB_EXECUTION_INSERTED})
)
_INSERT_TASK_IF_ABSENT = insert_if_absent(_TASK_EXECUTIONS, _TASK_EXECUTION_INSERTED)


def _set_cursor_statement(returned: Sequence[KeyedColumnElement[Any]]) -> FastStatement:
    return FastStatement(
        lambda _dialect: (
            update(_JOB_EXECUTIONS)
            .where(_JOB_EXECUTIONS.c.id == bindparam("w_id"))
            .values(cursor=bindparam("cursor"), updated_at=bindparam("updated_at"))
            .returning(*returned)
        ),
        returned,
    )


_SET_CURSOR = _set_cursor_statement(returning_columns(_JOB_EXECUTIONS))
_SET_CURSOR_LATER = _set_cursor_statement((_JOB_EXECUTIONS.c["id"],))  # the row is the caller's


def _task_record_of(values: Mapping[str, Any]) -> TaskExecutionRecord:
    return _task_record(SimpleNamespace(**values))


def _job_execution_record(row: JobExecutionRow | SimpleNamespace) -> JobExecutionRecord:
    return JobExecutionRecord(
        id=row.id,
        job_request_id=row.job_request_id,
        job_type=row.job_type,
        job_version=row.job_version,
        job_state=row.job_state,
        exit_code=row.exit_code,
        exit_message=row.exit_message,
        error_code=row.error_code,
        error_message=row.error_message,
        contexts=freeze_mapping(row.contexts),
        cursor=None if row.cursor is None else freeze_mapping(row.cursor),
        started_at=row.started_at,
        ended_at=row.ended_at,
        updated_at=row.updated_at,
        cpu_secs=row.cpu_secs,
    )


def _task_record(row: TaskExecutionRow | SimpleNamespace) -> TaskExecutionRecord:
    return TaskExecutionRecord(
        id=row.id,
        job_execution_id=row.job_execution_id,
        task_type=row.task_type,
        method=row.method,
        task_state=row.task_state,
        task_order=row.task_order,
        allow_failure=row.allow_failure,
        exit_code=row.exit_code,
        exit_message=row.exit_message,
        error_code=row.error_code,
        error_message=row.error_message,
        failed_command=row.failed_command,
        ant_id=row.ant_id,
        ant_host=row.ant_host,
        retried=row.retried,
        contexts=freeze_mapping(row.contexts),
        artifacts=tuple(freeze(item) for item in row.artifacts),
        stdout=tuple(row.stdout),
        warnings=tuple(row.warnings),
        cost_factor=row.cost_factor,
        span_id=row.span_id,
        next_run_at=row.next_run_at,
        deadline_at=row.deadline_at,
        started_at=row.started_at,
        ended_at=row.ended_at,
        updated_at=row.updated_at,
    )
