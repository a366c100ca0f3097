"""One job's supervisor: walks the DAG, runs each task, applies the flow rules, and persists every step.

Durability: the result of a task and the decision taken on it (the new `Cursor`) are committed in one
transaction before the Ant is acknowledged or anyone is told. A supervisor started on a request that
was already running (after a Queen restart) reads the cursor and the task rows and continues exactly
there: a task still on an Ant is re-attached, a delayed retry waits only for what is left of its delay.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from queen.approvals import gates
from queen.domain import flow
from queen.domain.errors import InvalidArgument, InvalidTransition
from queen.domain.flow import Decision, Step, TaskOutcome
from queen.domain.job_definition import JobDefinition, TaskDefinition, TaskMethod
from queen.domain.states import JobState, TaskState
from queen.domain.templating import builtins, is_template, parse_set_output, render
from queen.domain.work import TaskConfigs, TaskReport, TaskWork
from queen.notifier import ChangeNotifier
from queen.store import (
    Database,
    DefinitionRecord,
    JobExecutionRecord,
    JobRequestRecord,
    TaskExecutionRecord,
    artifacts,
    definitions,
    executions,
    requests,
)
from queen.store._clock import utc_now
from queen.store.records import ArtifactKind
from queen.supervisor.cursor import Cursor, Ending
from queen.supervisor.dispatch import DispatchOutcome, TaskDispatcher
from queen.telemetry.observer import JobObserver
from queen.telemetry.spans import task_span_id

__all__ = [
    "ERR_JOB_TIMEOUT",
    "ERR_TASK_TIMEOUT",
    "FinishedAttempt",
    "JobSupervisor",
    "Stop",
    "SupervisorDeps",
]

log = structlog.get_logger(__name__)

ERR_TASK_TIMEOUT = "ERR_TASK_TIMEOUT"
ERR_JOB_TIMEOUT = "ERR_JOB_TIMEOUT"
ERR_TEMPLATE = "ERR_TEMPLATE"
ERR_UNSUPPORTED_METHOD = "ERR_UNSUPPORTED_METHOD"
_RUNNING = frozenset({TaskState.STARTED, TaskState.EXECUTING})


class Stop(enum.Enum):
    """Why a supervisor was asked to stop early."""

    CANCEL = "cancel"
    PAUSE = "pause"


class TaskConfigReader(Protocol):
    """Reads the configs a task gets with the caller's transaction (queen.security.ConfigService): the
    result, called once the transaction has ended, gives them."""

    async def read_later(
        self, session: AsyncSession, *, organization_id: str, job_type: str, user_id: str
    ) -> Callable[[], TaskConfigs]: ...


@dataclass(frozen=True, slots=True)
class SupervisorDeps:
    """What every supervisor needs; built once by the Queen."""

    db: Database
    dispatcher: TaskDispatcher
    notifier: ChangeNotifier
    # How long beyond a task's own timeout the Queen waits for the Ant to report it before giving up.
    timeout_grace: timedelta = timedelta(seconds=30)
    # Told once an attempt's result is committed (the log archive stores its console log).
    attempt_finished: Callable[[FinishedAttempt], None] = lambda _attempt: None
    # Spans, metrics and log context of the job's life (queen.telemetry).
    observer: JobObserver = field(default_factory=JobObserver)
    # With it, a task's configs are read in the transaction that creates its row, not at dispatch.
    configs: TaskConfigReader | None = None


@dataclass(frozen=True, slots=True)
class FinishedAttempt:
    """An attempt whose result is committed, with where it belongs (so nobody has to look it up)."""

    organization_id: str
    job_request_id: int
    job_execution_id: str
    task_execution_id: str
    task_type: str
    task_retry: int


@dataclass(frozen=True, slots=True)
class _Attempt:
    """A finished attempt: its task row, and the report to store (None when the row already holds it)."""

    record: TaskExecutionRecord
    report: TaskReport | None = None
    dispatch: DispatchOutcome | None = None


class _Cut(enum.Enum):
    """Why the wait for an attempt ended without its outcome."""

    STOPPED = "stopped"
    TIMED_OUT = "timed out"


class _Interrupted(Exception):
    """A wait ended because the job was cancelled, paused or timed out."""

    def __init__(self, ending: Ending) -> None:
        super().__init__(ending.error_code)
        self.ending = ending


class _Progress:
    """Persists where an attempt is, as the dispatcher reports it (DispatchProgress)."""

    def __init__(self, supervisor: JobSupervisor, task: TaskExecutionRecord) -> None:
        self._supervisor = supervisor
        self.task = task

    async def waiting(self, reason: str) -> None:
        await self._supervisor.set_wait_reason(reason)

    async def dispatched(self, ant_id: str, ant_host: str) -> None:
        # The state moves on acceptance; the Ant is recorded now so operators see where it went.
        self._supervisor.note_dispatched(ant_id)

    async def accepted(self, ant_id: str, at: datetime | None = None) -> None:
        if self.task.task_state is TaskState.EXECUTING:
            return
        async with self._supervisor.deps.db.transaction() as session:
            self.task = await self._supervisor.record_acceptance(session, self.task, ant_id, at or utc_now())
        self._supervisor.announce()


class JobSupervisor:
    """Runs one job request from its cursor to a terminal state (or to a pause or an approval gate)."""

    def __init__(self, deps: SupervisorDeps, request_id: int) -> None:
        self.deps = deps
        self.request_id = request_id
        self._stop = asyncio.Event()
        self._on_stop: Callable[[], None] | None = None
        self._stop_kind: Stop | None = None
        self._stop_reason = ""
        self._wait_reason: str | None = None
        self._request: JobRequestRecord | None = None
        self._job: JobDefinition | None = None
        self._execution: JobExecutionRecord | None = None
        self._cursor = Cursor(next_task=None)
        self._tasks: dict[str, TaskExecutionRecord] = {}
        self._configs: dict[str, Callable[[], TaskConfigs]] = {}  # read with a task's row, for its dispatch
        self._deadline: float | None = None
        self._timed_out = False

    # -- control from outside --------------------------------------------------------------------

    def stop(self, kind: Stop, reason: str) -> None:
        """Cancel (stop now, run always_run tasks, end CANCELLED) or pause (after the current task)."""
        if self._stop_kind is Stop.CANCEL:
            return
        self._stop_kind = kind
        self._stop_reason = reason
        if kind is Stop.CANCEL:
            self._stop.set()
            if self._on_stop is not None:  # waiting for an attempt (_attempt_unless_stopped)
                self._on_stop()

    def announce(self) -> None:
        self.deps.notifier.changed(self.request_id)

    def note_dispatched(self, ant_id: str) -> None:
        log.debug("task_dispatched", job_request_id=self.request_id, ant_id=ant_id)

    async def record_acceptance(
        self, session: AsyncSession, task: TaskExecutionRecord, ant_id: str, at: datetime
    ) -> TaskExecutionRecord:
        """The attempt runs on `ant_id` since `at`: EXECUTING, in the caller's transaction."""
        passage = await self._acceptance_in(session, task, ant_id, at)
        return await executions.transition_task(
            session,
            task.id,
            task.task_state,
            passage.state,
            job_request_id=self.request_id,
            now=passage.at,
            **passage.changes,
        )

    async def _acceptance_in(
        self, session: AsyncSession, task: TaskExecutionRecord, ant_id: str, at: datetime
    ) -> executions.Passage:
        """What an acceptance writes (EXECUTING, the Ant, the span, the start), to be written by the caller
        in `session` alone or with the result; the wait for an Ant, if one was recorded, ends with it."""
        span_id = self.deps.observer.attempt_accepted(self._require_request(), task, ant_id, at)
        await self.set_wait_reason_in(session, "")
        changes = {"ant_id": ant_id, "span_id": span_id, "started_at": task.started_at or at}
        return executions.Passage(TaskState.EXECUTING, at, changes)

    async def set_wait_reason(self, reason: str) -> None:
        if reason == self._wait_reason:
            return
        async with self.deps.db.transaction() as session:
            await self.set_wait_reason_in(session, reason)
        self.announce()

    async def set_wait_reason_in(self, session: AsyncSession, reason: str) -> None:
        """Record why the job waits ("" when it no longer does) in the caller's transaction, if it changed."""
        if reason == self._wait_reason:
            return
        self._wait_reason = reason
        await requests.set_wait_reason(session, self.request_id, reason)

    # -- the walk --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Drive the job until it ends, pauses or waits at a gate."""
        if not await self._load():
            return
        job = self._require_job()
        while True:
            if self._stop_kind is Stop.CANCEL and (self._cursor.ending is None or self._cursor.next_task):
                await self._save_cursor(self._cursor.ending_with(self._cancel_ending()))
            if (
                self._stop_kind is Stop.PAUSE
                and self._cursor.next_task is not None
                and self._cursor.ending is None
            ):
                await self._pause(None)
                return
            task = self._next_task(job)
            if task is None:
                await self._finish()
                return
            owed = self._cursor.next_task is None  # an always_run task the ending still owes
            try:
                attempt = await self._run_task(job, task, owed=owed)
            except _Interrupted as interrupted:
                await self._save_cursor(self._cursor.ending_with(interrupted.ending))
                continue
            if attempt is None:
                return  # waiting at a gate (MANUAL): the approval continues the job
            if await self._decide(job, task, attempt, owed=owed):
                return  # the decision ended the job (in the same transaction)

    def _next_task(self, job: JobDefinition) -> TaskDefinition | None:
        if self._cursor.next_task is not None:
            return job.task(self._cursor.next_task)
        ran = {t.task_type for t in self._tasks.values() if t.task_state is not TaskState.READY}
        owed = flow.always_run_tasks(job, ran)
        return owed[0] if owed else None

    def _cancel_ending(self) -> Ending:
        return Ending(JobState.CANCELLED, "ERR_CANCELLED", self._stop_reason or "cancelled by a user")

    def _require_job(self) -> JobDefinition:
        assert self._job is not None
        return self._job

    def _require_request(self) -> JobRequestRecord:
        assert self._request is not None
        return self._request

    def _require_execution(self) -> JobExecutionRecord:
        assert self._execution is not None
        return self._execution

    async def _load(self) -> bool:
        """Read the request, its definition and execution; move it to EXECUTING. False if not runnable."""
        try:
            return await self._load_and_start()
        except InvalidTransition:
            # the request moved on between the launch and now (e.g. a user cancelled it): nothing to do
            log.info("supervisor_not_needed", job_request_id=self.request_id)
            return False

    async def _load_and_start(self) -> bool:
        async with self.deps.db.transaction() as session:
            request = await requests.get_request(session, self.request_id)
            definition_record = await definitions.pinned_definition(session, request.job_definition_id)
            job = definition_record.definition()
            queued = request.job_state is JobState.READY
            earlier = request.job_execution_id
            if request.job_state in (JobState.READY, JobState.STARTED, JobState.PAUSED):
                request, execution = await self._start(session, request, definition_record)
            elif request.job_state is JobState.EXECUTING and request.job_execution_id:
                execution = await executions.get_job_execution(session, request.job_execution_id)
            else:
                return False
            # an execution created by this start has no tasks yet
            tasks = (
                await executions.task_executions_of(session, execution.id) if execution.id == earlier else []
            )
            self._request, self._job, self._execution = request, job, execution
            self._tasks = {t.task_type: t for t in tasks}
            self._cursor = Cursor.from_json(execution.cursor, job.first_task.task_type)
            following = None if self._cursor.next_task is None else job.task(self._cursor.next_task)
            if following is not None and following.task_type not in self._tasks:
                # created with the start: one transaction fewer before the first dispatch
                await self._create_task_record(session, following)
        self._wait_reason = request.wait_reason
        self.deps.observer.job_loaded(request)
        if queued:
            self.deps.observer.job_started(request)
        if job.timeout is not None and request.started_at is not None:
            remaining = (request.started_at + job.timeout - utc_now()).total_seconds()
            self._deadline = asyncio.get_running_loop().time() + max(remaining, 0.0)
        self.announce()
        return True

    async def _start(
        self, session: AsyncSession, request: JobRequestRecord, definition_record: DefinitionRecord
    ) -> tuple[JobRequestRecord, JobExecutionRecord]:
        """READY/STARTED/PAUSED → EXECUTING, creating the execution when the request has none running."""
        now = utc_now()
        execution: JobExecutionRecord | None = None
        if request.job_execution_id:
            existing = await executions.get_job_execution(session, request.job_execution_id)
            if not existing.job_state.is_terminal:
                execution = existing
        if request.job_state is JobState.READY:
            created = execution is None
            if execution is None:
                # created running: READY -> STARTED -> EXECUTING all happen in this transaction, and
                # its writes wait for its end (on PostgreSQL one round trip with the COMMIT)
                execution = await executions.create_job_execution(
                    session, request, definition_record, state=JobState.EXECUTING, now=now, later=True
                )
                if request.restart_mode == "soft" and request.job_execution_id:
                    first = definition_record.definition().first_task.task_type
                    cursor = Cursor(first, None, reuse_from=request.job_execution_id)
                    execution = await executions.set_cursor(
                        session, execution.id, cursor.to_json(), known=execution
                    )
            elif execution.job_state is not JobState.EXECUTING:
                execution = await executions.transition_job_execution(
                    session, execution.id, execution.job_state, JobState.EXECUTING
                )
            request = await requests.transition_request(
                session,
                request.id,
                JobState.READY,
                JobState.EXECUTING,
                through=JobState.STARTED,
                job_execution_id=execution.id,
                started_at=request.started_at or now,
                wait_reason="",
                paused_until=None,
                # read in this transaction; its guard refuses the whole start if it moved meanwhile
                known=request if created else None,
            )
            return request, execution
        assert execution is not None, "a STARTED or PAUSED request always has a running execution"
        if execution.job_state is not JobState.EXECUTING:
            execution = await executions.transition_job_execution(
                session, execution.id, execution.job_state, JobState.EXECUTING
            )
        request = await requests.transition_request(
            session, request.id, request.job_state, JobState.EXECUTING, paused_until=None
        )
        return request, execution

    # -- one task --------------------------------------------------------------------------------

    async def _run_task(self, job: JobDefinition, task: TaskDefinition, *, owed: bool) -> _Attempt | None:
        """Run (or re-attach, or reuse) one attempt of `task`; None when it waits at a gate."""
        record = await self._task_record(task)
        if record.task_state is TaskState.MANUAL_APPROVAL_REQUIRED:
            return None
        if record.task_state.is_terminal:
            # an owed always_run task whose row an earlier path already ended
            return _Attempt(record)
        if record.task_state is TaskState.READY:
            reused = await self._reuse(task, record)
            if reused is not None:
                return _Attempt(reused)
            if record.next_run_at is not None:
                await self._sleep_until(record.next_run_at, owed=owed)
            if task.method is TaskMethod.MANUAL:
                await self._open_gate(record)
                return None
            if task.method.runs_in_queen:
                report = TaskReport(
                    TaskState.FAILED,
                    error_code=ERR_UNSUPPORTED_METHOD,
                    error_message=f"{task.method} tasks are not supported by this Queen yet",
                )
                return _Attempt(record, report)
            skipped = self._excepted(job, task, record)
            if skipped is not None:
                return _Attempt(record, skipped)
        work = self._work(job, task, record)
        if isinstance(work, TaskReport):
            return _Attempt(record, work)
        progress = _Progress(self, record)
        if record.task_state in _RUNNING:
            call = self.deps.dispatcher.reattach(work, record.ant_id, progress)
        else:
            call = self.deps.dispatcher.run(work, progress)
        outcome = await self._await_attempt(call, task, owed=owed)
        return _Attempt(progress.task, outcome.report, outcome)

    async def _await_attempt(self, call: Any, task: TaskDefinition, *, owed: bool) -> DispatchOutcome:
        """Await the dispatcher, bounded by the task's timeout (plus grace) and the job's; cancellable."""
        limit = None
        if task.timeout is not None:
            limit = (task.timeout + self.deps.timeout_grace).total_seconds()
        job_left = self._job_time_left() if not owed else None
        timeout = min((t for t in (limit, job_left) if t is not None), default=None)
        ended = await self._attempt_unless_stopped(call, timeout, stoppable=not owed)
        if isinstance(ended, DispatchOutcome):
            return ended
        record = self._tasks[task.task_type]
        await self.deps.dispatcher.cancel(record.id, "stopped by the Queen")
        if ended is _Cut.STOPPED:
            report = TaskReport(
                TaskState.CANCELLED, error_code="ERR_CANCELLED", error_message=self._stop_reason
            )
        elif job_left is not None and (limit is None or job_left <= limit):
            report = TaskReport(
                TaskState.FAILED,
                error_code=ERR_JOB_TIMEOUT,
                error_message=f"the job exceeded {self._job_timeout()}",
            )
            self._timed_out = True
        else:
            report = TaskReport(
                TaskState.FAILED,
                error_code=ERR_TASK_TIMEOUT,
                error_message=f"no result within {task.timeout}",
            )
        return DispatchOutcome(report)

    async def _attempt_unless_stopped(
        self, call: Coroutine[Any, Any, DispatchOutcome], limit: float | None, *, stoppable: bool
    ) -> DispatchOutcome | _Cut:
        """The dispatcher's outcome, or why the wait was cut (the dispatcher has then given the attempt up):
        the job was cancelled, or `limit` seconds passed.

        The dispatcher's coroutine runs in this task, not in one of its own raced against the stop by
        `asyncio.wait`: its outcome resumes the supervisor in one loop iteration instead of three. A
        cancel of the job (`stop`) cancels this task while it waits here, and is told apart from any other
        cancellation (the Queen stopping) by `Task.uncancel`, as `asyncio.timeout` tells its own apart.
        """
        if stoppable and self._stop.is_set():
            call.close()  # never started: nothing was dispatched
            return _Cut.STOPPED
        current = asyncio.current_task()
        assert current is not None
        stopped = False

        def on_stop() -> None:
            nonlocal stopped
            if not stopped:
                stopped = True
                current.cancel()

        self._on_stop = on_stop if stoppable else None
        try:
            async with asyncio.timeout(limit):
                return await call
        except TimeoutError:
            return _Cut.TIMED_OUT
        except asyncio.CancelledError:
            if stopped and current.uncancel() == 0:
                return _Cut.STOPPED
            raise
        finally:
            self._on_stop = None

    def _job_timeout(self) -> timedelta | None:
        return self._require_job().timeout

    def _job_time_left(self) -> float | None:
        if self._deadline is None:
            return None
        return max(self._deadline - asyncio.get_running_loop().time(), 0.0)

    async def _sleep_until(self, moment: datetime, *, owed: bool) -> None:
        delay = (moment - utc_now()).total_seconds()
        if delay <= 0:
            return
        if owed:
            await asyncio.sleep(delay)
            return
        job_left = self._job_time_left()
        if job_left is not None and job_left < delay:
            await self._interruptible_sleep(job_left)
            raise _Interrupted(
                Ending(JobState.FAILED, ERR_JOB_TIMEOUT, "the job timed out while waiting to retry")
            )
        await self._interruptible_sleep(delay)

    async def _interruptible_sleep(self, delay: float) -> None:
        try:
            async with asyncio.timeout(delay):
                await self._stop.wait()
        except TimeoutError:
            return
        raise _Interrupted(self._cancel_ending())

    async def _task_record(self, task: TaskDefinition) -> TaskExecutionRecord:
        record = self._tasks.get(task.task_type)
        if record is not None:
            return record
        async with self.deps.db.transaction() as session:
            return await self._create_task_record(session, task)

    async def _create_task_record(self, session: AsyncSession, task: TaskDefinition) -> TaskExecutionRecord:
        """The task's row (not in `_tasks`, so not in the database either: `_load` read them all), and its
        configs, both written and read with the transaction's deferred statements."""
        job = self._require_job()
        record = await executions.create_task_execution(
            session,
            self._require_execution().id,
            task.task_type,
            method=task.method.value,
            task_order=[t.task_type for t in job.tasks].index(task.task_type),
            allow_failure=task.allow_failure,
            job_request_id=self.request_id,
            absent=True,
        )
        self._tasks[task.task_type] = record
        request = self._require_request()
        if self.deps.configs is not None and request.organization_id and not task.method.runs_in_queen:
            self._configs[task.task_type] = await self.deps.configs.read_later(
                session,
                organization_id=request.organization_id,
                job_type=request.job_type,
                user_id=request.user_id,
            )
        return record

    async def _reuse(self, task: TaskDefinition, record: TaskExecutionRecord) -> TaskExecutionRecord | None:
        """On a soft restart or job retry, a task that completed in the earlier run is not run again."""
        source = self._cursor.reuse_from
        if source is None or task.allow_start_if_completed:
            return None
        async with self.deps.db.transaction() as session:
            earlier = await executions.find_task_execution(session, source, task.task_type)
            if earlier is None or earlier.task_state is not TaskState.COMPLETED:
                return None
            record = await executions.transition_task(
                session,
                record.id,
                TaskState.READY,
                TaskState.COMPLETED,
                message=f"reused the result of the earlier run {source}",
                exit_code=earlier.exit_code,
                exit_message=earlier.exit_message,
                contexts=earlier.contexts,
                artifacts=earlier.artifacts,
                ant_id=earlier.ant_id,
                ant_host=earlier.ant_host,
                started_at=earlier.started_at,
                ended_at=earlier.ended_at,
                job_request_id=self.request_id,
            )
        self._tasks[task.task_type] = record
        return record

    def _excepted(
        self, job: JobDefinition, task: TaskDefinition, record: TaskExecutionRecord
    ) -> TaskReport | None:
        """SKIPPED when the task's `except` renders truthy; a FAILED report when it cannot be rendered."""
        if not task.except_:
            return None
        try:
            verdict = render(task.except_, self._variables(job, task, record)).strip().lower()
        except InvalidArgument as exc:
            return TaskReport(TaskState.FAILED, error_code=ERR_TEMPLATE, error_message=str(exc))
        if verdict in ("", "false", "0", "no"):
            return None
        return TaskReport(TaskState.SKIPPED, exit_code="SKIPPED", exit_message=f"except: {task.except_}")

    async def _open_gate(self, record: TaskExecutionRecord) -> None:
        """A MANUAL task waits for people: no Ant holds it; the request says so, and the gate record (policy,
        version, deadlines, artifact digests) is stored in the same transaction (queen.approvals)."""
        task = self._require_job().task(record.task_type)
        assert task is not None
        now = utc_now()
        async with self.deps.db.transaction() as session:
            record = await executions.transition_task(
                session,
                record.id,
                TaskState.READY,
                TaskState.MANUAL_APPROVAL_REQUIRED,
                started_at=now,
                span_id=task_span_id(self._require_request(), record),  # the gate's traceparent
                job_request_id=self.request_id,
            )
            self._request = await requests.transition_request(
                session, self.request_id, JobState.EXECUTING, JobState.MANUAL_APPROVAL_REQUIRED
            )
            await gates.open_gate(session, self._request, record, task, now)
        self._tasks[record.task_type] = record
        self.announce()
        self.deps.notifier.gates_changed()

    def _variables(
        self,
        job: JobDefinition,
        task: TaskDefinition,
        record: TaskExecutionRecord,
        *,
        with_builtins: bool = True,
    ) -> dict[str, Any]:
        """The task's variables by precedence (templating.py); built-ins are for templates only, not sent
        to the Ant (an HTTP task's body is its variables)."""
        request = self._require_request()
        outputs: dict[str, Any] = {}
        for earlier in sorted(self._tasks.values(), key=lambda t: t.ended_at or utc_now()):
            if earlier.task_type != task.task_type:
                outputs.update(
                    {k: v for k, v in earlier.contexts.items() if isinstance(v, str | int | float)}
                )
        built: Mapping[str, Any] = {}
        if with_builtins:
            built = builtins(
                job_id=request.id,
                job_type=request.job_type,
                job_retry=request.retried,
                task_type=task.task_type,
                task_retry=record.retried,
            )
        layers: list[Mapping[str, Any]] = [job.job_variables, built, task.variables, request.params, outputs]
        merged: dict[str, Any] = {}
        for layer in layers:
            merged.update(layer)
        return merged

    def _work(
        self, job: JobDefinition, task: TaskDefinition, record: TaskExecutionRecord
    ) -> TaskWork | TaskReport:
        """The attempt to dispatch, with templates rendered; a TaskReport when rendering fails."""
        request = self._require_request()
        try:
            rendered = _render_task(task, lambda: self._variables(job, task, record))
        except InvalidArgument as exc:
            return TaskReport(TaskState.FAILED, error_code=ERR_TEMPLATE, error_message=str(exc))
        dependencies = tuple(
            str(artifact.get("id", ""))
            for name in task.dependencies
            if (earlier := self._tasks.get(name)) is not None
            for artifact in earlier.artifacts
            if isinstance(artifact, Mapping)
        )
        sent = self._variables(job, task, record, with_builtins=False)
        plain = {k: _as_text(v) for k, v in sent.items() if not isinstance(v, dict | list)}
        return TaskWork(
            job_request_id=request.id,
            job_definition_id=request.job_definition_id,
            job_type=request.job_type,
            job_version=request.job_version,
            job_execution_id=self._require_execution().id,
            task_execution_id=record.id,
            correlation_id=f"{record.id}:{request.retried}.{record.retried}",
            task=rendered,
            variables=plain,
            organization_id=request.organization_id,
            user_id=request.user_id,
            platform=job.platform,
            job_retry=request.retried,
            task_retry=record.retried,
            dependent_artifact_ids=tuple(d for d in dependencies if d),
            traceparent=self.deps.observer.attempt_prepared(request, record),
            configs=configs() if (configs := self._configs.pop(task.task_type, None)) else None,
        )

    # -- decisions -------------------------------------------------------------------------------

    async def _decide(
        self, job: JobDefinition, task: TaskDefinition, attempt: _Attempt, *, owed: bool
    ) -> bool:
        """Apply the flow rules to the finished attempt; result, decision and cursor commit together, and
        when nothing is left to run, the end of the job too. True when the job ended."""
        record, report = attempt.record, attempt.report
        request = self._require_request()
        execution_id = self._require_execution().id  # a RESTART_JOB replaces it below
        if report is None:
            outcome = _outcome_of(record, request.retried)
        else:
            state = report.state
            outcome = TaskOutcome(
                state=state,
                exit_code=report.exit_code or _default_exit_code(state),
                error_code=report.error_code,
                retried=record.retried,
                job_retried=request.retried,
            )
        if owed:
            decision = self._owed_decision(task, outcome)
        else:
            decision = flow.decide(job, task, outcome)
            if decision.step is Step.END_JOB:
                decision = flow.job_retry(job, decision, outcome.job_retried) or decision
        if (self._stop_kind is Stop.CANCEL or self._timed_out) and decision.step is not Step.END_JOB:
            decision = Decision(Step.END_JOB, job_state=JobState.CANCELLED, error_code="ERR_CANCELLED")
            if self._timed_out:
                decision = Decision(Step.END_JOB, job_state=JobState.FAILED, error_code=ERR_JOB_TIMEOUT)
        now = utc_now()
        accepted = attempt.dispatch.accepted if attempt.dispatch is not None else None
        async with self.deps.db.transaction() as session:
            through = None
            if accepted is not None and report is not None and record.task_state is not TaskState.EXECUTING:
                # a short task: its acceptance was left for this transaction (DispatchOutcome.accepted)
                through = await self._acceptance_in(session, record, accepted.ant_id, accepted.at)
            if report is not None:
                # RUN_TASK and END_JOB write the task's row no more in this transaction: its UPDATE can wait
                # for the transaction's end (one round trip for all of them on PostgreSQL)
                later = decision.step in (Step.RUN_TASK, Step.END_JOB)
                record = await self._store_result(session, record, report, now, through=through, later=later)
            self._tasks[task.task_type] = record
            await self._apply(session, task, record, decision, now=now)
            ending = None
            if decision.step is Step.END_JOB and self._next_task(job) is None:
                # nothing owed (no always_run task left): the job ends with its last result
                ending = await self._finish_in(session, now)
        if attempt.dispatch is not None:
            await attempt.dispatch.ack()
            self.deps.attempt_finished(
                FinishedAttempt(
                    organization_id=request.organization_id,
                    job_request_id=request.id,
                    job_execution_id=execution_id,
                    task_execution_id=attempt.record.id,
                    task_type=task.task_type,
                    task_retry=attempt.record.retried,
                )
            )
        self.announce()
        await self.deps.observer.attempt_ended(self.deps.db, request, record, report)
        if ending is not None:
            self._finished(ending)
            return True
        if decision.step is Step.RESTART_JOB and decision.delay > timedelta(0):
            # not durable: a Queen restart during this delay restarts the job at once
            await self._interruptible_sleep(decision.delay.total_seconds())
        return False

    def _owed_decision(self, task: TaskDefinition, outcome: TaskOutcome) -> Decision:
        """An always_run task run because the job is ending: its routes are not followed."""
        failed = outcome.state in (TaskState.FAILED, TaskState.CANCELLED) and not task.allow_failure
        if failed:
            return Decision(
                Step.END_JOB,
                job_state=JobState.FAILED,
                error_code=outcome.error_code or flow.ERR_TASK_FAILED,
                error_message=f'always_run task "{task.task_type}" failed',
            )
        return Decision(Step.END_JOB, job_state=JobState.COMPLETED)

    async def _store_result(
        self,
        session: AsyncSession,
        record: TaskExecutionRecord,
        report: TaskReport,
        now: datetime,
        *,
        through: executions.Passage | None = None,
        later: bool = False,
    ) -> TaskExecutionRecord:
        contexts = dict(record.contexts)
        contexts.update(report.task_context)
        contexts.update(parse_set_output(report.stdout))
        reported = await self._verified_artifacts(session, record, report) if report.artifacts else []
        started_at = record.started_at or (through.changes["started_at"] if through else None)
        return await executions.transition_task(
            session,
            record.id,
            record.task_state,
            report.state,
            through=through,
            exit_code=report.exit_code or _default_exit_code(report.state),
            exit_message=report.exit_message,
            error_code=report.error_code,
            error_message=report.error_message,
            failed_command=report.failed_command,
            contexts=contexts,
            artifacts=reported,
            stdout=list(report.stdout),
            warnings=list(report.warnings),
            ant_id=report.ant_id or record.ant_id or (through.changes["ant_id"] if through else ""),
            ant_host=report.ant_host or record.ant_host,
            cost_factor=report.cost_factor,
            started_at=started_at or report.started_at or now,
            ended_at=report.ended_at or now,
            job_request_id=self.request_id,
            known=record if later else None,
        )

    async def _verified_artifacts(
        self, session: AsyncSession, record: TaskExecutionRecord, report: TaskReport
    ) -> list[Mapping[str, object]]:
        """Only the artifacts the Ant reports that really are this task's (later tasks download by id)."""
        stored = await artifacts.list_artifacts(
            session,
            self._require_request().organization_id,
            task_execution_id=record.id,
            kind=ArtifactKind.TASK,
            limit=10_000,
        )
        known = {artifact.id: artifact for artifact in stored}
        kept: list[Mapping[str, object]] = [
            dict(item) for item in report.artifacts if str(item.get("id", "")) in known
        ]
        if len(kept) != len(report.artifacts):
            log.warning(
                "artifacts_not_recorded",
                task_execution_id=record.id,
                reported=len(report.artifacts),
                recorded=len(kept),
            )
        return kept

    async def _apply(
        self,
        session: AsyncSession,
        task: TaskDefinition,
        record: TaskExecutionRecord,
        decision: Decision,
        *,
        now: datetime,
    ) -> None:
        job = self._require_job()
        match decision.step:
            case Step.RUN_TASK:
                await self._save_cursor_in(
                    session, Cursor(decision.task_type, self._cursor.ending, self._cursor.reuse_from)
                )
                following = job.task(decision.task_type)
                if following is not None and decision.task_type not in self._tasks:
                    # created with the decision: one transaction fewer on the dispatch path
                    await self._create_task_record(session, following)
            case Step.RETRY_TASK | Step.REPEAT_TASK:
                retried = record.retried + (1 if decision.step is Step.RETRY_TASK else 0)
                record = await executions.transition_task(
                    session,
                    record.id,
                    record.task_state,
                    TaskState.READY,
                    message=f"{decision.step.lower()} after {decision.delay}",
                    retried=retried,
                    next_run_at=now + decision.delay,
                    ended_at=None,
                    job_request_id=self.request_id,
                )
                self._tasks[task.task_type] = record
                await self._save_cursor_in(
                    session, Cursor(task.task_type, self._cursor.ending, self._cursor.reuse_from)
                )
            case Step.RESTART_JOB:
                await self._restart_in(session, job, decision, now)
            case Step.PAUSE_JOB:
                record = await executions.transition_task(
                    session,
                    record.id,
                    record.task_state,
                    TaskState.READY,
                    message="paused by PAUSE_JOB",
                    job_request_id=self.request_id,
                )
                self._tasks[task.task_type] = record
                await self._save_cursor_in(
                    session, Cursor(task.task_type, self._cursor.ending, self._cursor.reuse_from)
                )
                until = now + decision.delay if decision.delay > timedelta(0) else None
                self._request = await requests.transition_request(
                    session,
                    self.request_id,
                    JobState.EXECUTING,
                    JobState.PAUSED,
                    paused_until=until,
                    message="PAUSE_JOB",
                )
                self._stop_kind = Stop.PAUSE
            case Step.END_JOB:
                ending = Ending(decision.job_state, decision.error_code, decision.error_message)
                await self._save_cursor_in(session, self._cursor.ending_with(ending))

    async def _restart_in(
        self, session: AsyncSession, job: JobDefinition, decision: Decision, now: datetime
    ) -> None:
        """A job retry or RESTART_JOB: a new execution; a soft one reuses the tasks that completed."""
        request = self._require_request()
        old = self._require_execution()
        hard = decision.hard
        await executions.finish_job_execution(
            session,
            old.id,
            JobState.EXECUTING,
            JobState.FAILED,
            error_code=decision.error_code or "ERR_RESTARTED",
            error_message=decision.error_message or "restarted by RESTART_JOB",
            now=now,
        )
        definition_record = await definitions.pinned_definition(session, request.job_definition_id)
        execution = await executions.create_job_execution(
            session, request, definition_record, state=JobState.EXECUTING
        )
        cursor = Cursor(job.first_task.task_type, None, None if hard else old.id)
        execution = await executions.set_cursor(session, execution.id, cursor.to_json())
        self._request = await requests.update_request(
            session,
            self.request_id,
            JobState.EXECUTING,
            message=f"job retry {request.retried + 1} ({'hard' if hard else 'soft'})",
            job_execution_id=execution.id,
            retried=request.retried + 1,
        )
        self._execution = execution
        self._tasks = {}
        self._cursor = cursor

    async def _save_cursor_in(self, session: AsyncSession, cursor: Cursor) -> None:
        execution = self._require_execution()
        self._execution = await executions.set_cursor(
            session, execution.id, cursor.to_json(), known=execution
        )
        self._cursor = cursor

    async def _save_cursor(self, cursor: Cursor) -> None:
        async with self.deps.db.transaction() as session:
            await self._save_cursor_in(session, cursor)

    async def _pause(self, until: datetime | None) -> None:
        if self._require_request().job_state is JobState.PAUSED:
            return
        async with self.deps.db.transaction() as session:
            self._request = await requests.transition_request(
                session,
                self.request_id,
                JobState.EXECUTING,
                JobState.PAUSED,
                paused_until=until,
                message=self._stop_reason or "paused",
            )
        self.announce()

    async def _finish(self) -> None:
        now = utc_now()
        async with self.deps.db.transaction() as session:
            ending = await self._finish_in(session, now)
        self._finished(ending)

    async def _finish_in(self, session: AsyncSession, now: datetime) -> Ending:
        """End the execution and the request as the cursor says (in the caller's transaction)."""
        ending = self._cursor.ending or Ending(JobState.COMPLETED)
        execution = self._require_execution()
        await executions.finish_job_execution(
            session,
            execution.id,
            JobState.EXECUTING,
            ending.state,
            error_code=ending.error_code,
            error_message=ending.error_message,
            now=now,
            # the supervisor holds its running execution's row: the UPDATE waits for the transaction's end
            known=execution if execution.job_state is JobState.EXECUTING else None,
        )
        request = self._require_request()
        self._request = await requests.transition_request(
            session,
            self.request_id,
            JobState.EXECUTING,
            ending.state,
            error_code=ending.error_code,
            error_message=ending.error_message,
            ended_at=now,
            wait_reason="",
            # nobody else writes a running request (a cancel or a pause comes through `stop`), so the
            # supervisor's record is the row, but for the wait reason, which this write sets anyway
            known=request if request.job_state is JobState.EXECUTING else None,
        )
        return ending

    def _finished(self, ending: Ending) -> None:
        log.info("job_finished", job_request_id=self.request_id, job_state=ending.state.value)
        self.announce()
        self.deps.observer.job_ended(self._require_request())


def _outcome_of(record: TaskExecutionRecord, job_retried: int = 0) -> TaskOutcome:
    return TaskOutcome(
        state=record.task_state,
        exit_code=record.exit_code,
        error_code=record.error_code,
        retried=record.retried,
        job_retried=job_retried,
    )


def _default_exit_code(state: TaskState) -> str:
    return {
        TaskState.COMPLETED: "0",
        TaskState.SKIPPED: "SKIPPED",
        TaskState.CANCELLED: "CANCELLED",
        TaskState.APPROVED: "APPROVED",
        TaskState.REJECTED: "REJECTED",
    }.get(state, "FAILED")


def _as_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


# The fields of a task whose texts are templates: a string, a tuple of them, or a mapping to them.
_TEMPLATED_FIELDS = ("script", "before_script", "after_script", "url", "headers", "query", "environment")


def _render_task(task: TaskDefinition, variables_of: Callable[[], Mapping[str, Any]]) -> TaskDefinition:
    """The task with its scripts, URL, headers, query and environment rendered; the task itself when none
    of them is a template (most are not: the variables, built-ins included, are then not even gathered)."""
    fields = {name: getattr(task, name) for name in _TEMPLATED_FIELDS}
    if not any(is_template(text) for value in fields.values() for text in _texts(value)):
        return task
    variables = variables_of()

    def rendered(value: Any) -> Any:
        if isinstance(value, str):
            return render(value, variables)
        if isinstance(value, tuple):
            return tuple(render(text, variables) for text in value)
        return {key: render(text, variables) for key, text in value.items()}

    return replace(task, **{name: rendered(value) for name, value in fields.items()})


def _texts(value: str | tuple[str, ...] | Mapping[str, str]) -> Iterable[str]:
    if isinstance(value, str):
        return (value,)
    return value.values() if isinstance(value, Mapping) else value
