"""Job requests: submit, read, list, watch, and the user's controls (cancel, pause, resume, restart)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from queen.approvals import gates
from queen.domain.errors import FailedPrecondition, InvalidArgument, InvalidTransition
from queen.domain.identity import Identity
from queen.domain.states import JobState, TaskState
from queen.notifier import ChangeNotifier
from queen.store import (
    Database,
    EventRecord,
    JobExecutionRecord,
    JobRequestRecord,
    TaskExecutionRecord,
    definitions,
    events,
    executions,
    requests,
)
from queen.store._clock import utc_now
from queen.supervisor.cursor import Cursor, Ending
from queen.supervisor.job_supervisor import Stop
from queen.supervisor.supervisors import Supervisors

__all__ = ["RequestDetails", "RequestService", "Submission"]

_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,127}")
_MAX_USER_KEY = 256
_PRIORITY_RANGE = (-1000, 1000)
_MAX_SCHEDULE_AHEAD = timedelta(days=366)


@dataclass(frozen=True, slots=True)
class Submission:
    """What a caller asks to run."""

    job_type: str
    params: Mapping[str, str]
    priority: int = 0
    scheduled_at: datetime | None = None
    user_key: str = ""
    job_version: int = 0
    job_group: str = ""


@dataclass(frozen=True, slots=True)
class RequestDetails:
    """A request with its current execution and that execution's tasks (in task order)."""

    request: JobRequestRecord
    execution: JobExecutionRecord | None
    tasks: tuple[TaskExecutionRecord, ...]


class RequestService:
    """Operations on job requests, scoped to the caller's organisation."""

    def __init__(
        self,
        *,
        db: Database,
        supervisors: Supervisors,
        notifier: ChangeNotifier,
        wake_scheduler: Callable[[], None],
        max_params_bytes: int,
    ) -> None:
        self._db = db
        self._supervisors = supervisors
        self._notifier = notifier
        self._wake_scheduler = wake_scheduler
        self._max_params_bytes = max_params_bytes

    async def submit(self, identity: Identity, submission: Submission) -> JobRequestRecord:
        """Queue a request; InvalidArgument for bad input, NotFound for an unknown or disabled job type,
        DuplicateUserKey (AlreadyExists) when the user_key was used before. Stores nothing on error."""
        self._check_submission(submission)
        async with self._db.transaction() as session:
            if submission.job_version:
                definition = await definitions.get_definition_version(
                    session, identity.organization_id, submission.job_type, submission.job_version
                )
                if definition.disabled:
                    raise FailedPrecondition(f"job type {submission.job_type!r} is disabled")
            else:
                definition = await definitions.get_latest_definition(
                    session, identity.organization_id, submission.job_type
                )
            job = definition.definition()
            missing = [name for name in job.required_params if not submission.params.get(name)]
            if missing:
                raise InvalidArgument(
                    f"job type {job.job_type!r} requires params: {', '.join(missing)}", field="params"
                )
            record = await requests.create_request(
                session,
                definition=definition,
                user_id=identity.user_id,
                organization_id=identity.organization_id,
                params=dict(submission.params),
                job_priority=submission.priority,
                job_group=submission.job_group,
                user_key=submission.user_key or None,
                scheduled_at=submission.scheduled_at,
            )
        self._notifier.changed(record.id)
        self._wake_scheduler()
        return record

    def _check_submission(self, submission: Submission) -> None:
        if not submission.job_type:
            raise InvalidArgument("job_type is required", field="job_type")
        for name, value in submission.params.items():
            if not _PARAM_NAME.fullmatch(name):
                raise InvalidArgument(
                    f"param name {name!r} must be letters, digits, `_`, `.`, `-` (at most 128)",
                    field="params",
                )
            if not isinstance(value, str):
                raise InvalidArgument(f"param {name!r} must be a string", field="params")
        size = len(json.dumps(dict(submission.params)).encode())
        if size > self._max_params_bytes:
            raise InvalidArgument(
                f"params take {size} bytes; the limit is {self._max_params_bytes}", field="params"
            )
        low, high = _PRIORITY_RANGE
        if not low <= submission.priority <= high:
            raise InvalidArgument(f"priority must be between {low} and {high}", field="priority")
        if len(submission.user_key) > _MAX_USER_KEY:
            raise InvalidArgument(f"user_key is longer than {_MAX_USER_KEY} characters", field="user_key")
        if submission.scheduled_at is not None and submission.scheduled_at - utc_now() > _MAX_SCHEDULE_AHEAD:
            raise InvalidArgument("scheduled_time is more than a year ahead", field="scheduled_time")

    async def get(self, identity: Identity, request_id: int) -> RequestDetails:
        async with self._db.transaction() as session:
            request = await requests.get_request(
                session, request_id, organization_id=identity.organization_id
            )
            execution = None
            tasks: list[TaskExecutionRecord] = []
            if request.job_execution_id:
                execution = await executions.get_job_execution(session, request.job_execution_id)
                tasks = await executions.task_executions_of(session, execution.id)
        return RequestDetails(request, execution, tuple(tasks))

    async def list_requests(
        self,
        identity: Identity,
        *,
        job_type: str | None,
        states: Collection[JobState] | None,
        limit: int,
        offset: int,
    ) -> tuple[list[JobRequestRecord], int]:
        async with self._db.transaction() as session:
            return await requests.list_requests(
                session,
                identity.organization_id,
                job_type=job_type,
                states=states,
                limit=limit,
                offset=offset,
            )

    async def cancel(self, identity: Identity, request_id: int, reason: str = "") -> JobRequestRecord:
        """Cancel a request; a running job stops its task and still runs its always_run tasks."""
        reason = reason or f"cancelled by {identity.user_id}"
        async with self._db.transaction() as session:
            request = await requests.get_request(
                session, request_id, organization_id=identity.organization_id
            )
            state = request.job_state
            if state in (JobState.PENDING, JobState.READY) or (
                state is JobState.PAUSED and not request.job_execution_id
            ):
                request = await requests.transition_request(
                    session,
                    request_id,
                    state,
                    JobState.CANCELLED,
                    error_code="ERR_CANCELLED",
                    error_message=reason,
                    ended_at=utc_now(),
                )
                launch = False
            elif state in (JobState.STARTED, JobState.EXECUTING):
                if not self._supervisors.stop(request_id, Stop.CANCEL, reason):
                    raise InvalidTransition(
                        f"job request {request_id}", state.value, JobState.CANCELLED.value
                    )
                launch = False
            elif state in (JobState.MANUAL_APPROVAL_REQUIRED, JobState.PAUSED):
                request = await self._end_waiting_job(session, request, reason)
                launch = True
            else:
                raise InvalidTransition(f"job request {request_id}", state.value, JobState.CANCELLED.value)
        self._notifier.changed(request_id)
        if launch:
            self._supervisors.launch(request_id)
        return request

    async def _end_waiting_job(
        self, session: AsyncSession, request: JobRequestRecord, reason: str
    ) -> JobRequestRecord:
        """A job at a gate or paused: close its open gate, record the CANCELLED ending, and let a
        supervisor run the always_run tasks it owes and finish it."""
        assert request.job_execution_id is not None
        await gates.cancel_gates(session, request.id, reason)
        execution = await executions.get_job_execution(session, request.job_execution_id)
        for task in await executions.task_executions_of(session, execution.id):
            if task.task_state is TaskState.MANUAL_APPROVAL_REQUIRED:
                await executions.transition_task(
                    session,
                    task.id,
                    task.task_state,
                    TaskState.CANCELLED,
                    exit_code="CANCELLED",
                    error_code="ERR_CANCELLED",
                    error_message=reason,
                    ended_at=utc_now(),
                )
        cursor = Cursor.from_json(execution.cursor, first_task="").ending_with(
            Ending(JobState.CANCELLED, "ERR_CANCELLED", reason)
        )
        await executions.set_cursor(session, execution.id, cursor.to_json())
        return await requests.transition_request(
            session, request.id, request.job_state, JobState.EXECUTING, message=reason
        )

    async def pause(self, identity: Identity, request_id: int) -> JobRequestRecord:
        """Pause: a queued request waits until resumed; a running one pauses after its current task."""
        async with self._db.transaction() as session:
            request = await requests.get_request(
                session, request_id, organization_id=identity.organization_id
            )
            if request.job_state is JobState.PENDING:
                request = await requests.transition_request(
                    session,
                    request_id,
                    JobState.PENDING,
                    JobState.PAUSED,
                    message=f"paused by {identity.user_id}",
                )
            elif request.job_state is JobState.EXECUTING:
                if not self._supervisors.stop(request_id, Stop.PAUSE, f"paused by {identity.user_id}"):
                    raise InvalidTransition(f"job request {request_id}", request.job_state.value, "PAUSED")
            else:
                raise InvalidTransition(f"job request {request_id}", request.job_state.value, "PAUSED")
        self._notifier.changed(request_id)
        return request

    async def resume(self, identity: Identity, request_id: int) -> JobRequestRecord:
        async with self._db.transaction() as session:
            request = await requests.get_request(
                session, request_id, organization_id=identity.organization_id
            )
            if request.job_state is not JobState.PAUSED:
                raise InvalidTransition(f"job request {request_id}", request.job_state.value, "resumed")
            running = False
            if request.job_execution_id:
                execution = await executions.get_job_execution(session, request.job_execution_id)
                running = not execution.job_state.is_terminal
            if not running:
                request = await requests.transition_request(
                    session,
                    request_id,
                    JobState.PAUSED,
                    JobState.PENDING,
                    message=f"resumed by {identity.user_id}",
                )
        if running:
            self._supervisors.launch(request_id)
        else:
            self._wake_scheduler()
        self._notifier.changed(request_id)
        return request

    async def restart(self, identity: Identity, request_id: int, *, hard: bool) -> JobRequestRecord:
        """Run a finished request again with the version it ran; soft reuses the tasks that completed."""
        async with self._db.transaction() as session:
            request = await requests.get_request(
                session, request_id, organization_id=identity.organization_id
            )
            if not request.job_state.is_terminal:
                raise InvalidTransition(f"job request {request_id}", request.job_state.value, "restarted")
            request = await requests.transition_request(
                session,
                request_id,
                request.job_state,
                JobState.PENDING,
                message=f"{'hard' if hard else 'soft'} restart by {identity.user_id}",
                error_code="",
                error_message="",
                ended_at=None,
                retried=0,
                restart_mode="hard" if hard else "soft",
            )
        self._notifier.changed(request_id)
        self._wake_scheduler()
        return request

    async def watch(
        self, identity: Identity, request_id: int, *, after_id: int = 0
    ) -> AsyncIterator[EventRecord]:
        """The request's events from `after_id` on, live, until the request is terminal and drained."""
        async with self._db.transaction() as session:
            await requests.get_request(session, request_id, organization_id=identity.organization_id)
        last = after_id
        while True:
            change = self._notifier.next_change(request_id)
            async with self._db.transaction() as session:
                batch = await events.events_since(session, request_id, last, 500)
                request = await requests.get_request(session, request_id)
            for event in batch:
                last = event.id
                yield event
            if not batch and request.job_state.is_terminal:
                return
            if not batch:
                await change.wait()

    async def trigger(self, identity: Identity, request_id: int) -> JobRequestRecord:
        """Formicary's trigger: a PENDING request waiting for its `scheduled_at` is due now.

        Its `scheduled_at` becomes now and the scheduler is woken; the scheduler's other rules (priority,
        the job type's max_concurrency, Ant capacity) still apply, so "now" means "as soon as a normal
        submission would run". A PENDING request that is already due is left as it is (the scheduler is
        woken all the same). Any other state is InvalidTransition.
        """
        async with self._db.transaction() as session:
            request = await requests.get_request(
                session, request_id, organization_id=identity.organization_id
            )
            if request.job_state is not JobState.PENDING:
                raise InvalidTransition(f"job request {request_id}", request.job_state.value, "triggered")
            now = utc_now()
            if request.scheduled_at is not None and request.scheduled_at > now:
                request = await requests.update_request(
                    session,
                    request_id,
                    JobState.PENDING,
                    message=f"triggered by {identity.user_id} (was scheduled at {request.scheduled_at})",
                    scheduled_at=now,
                    now=now,
                )
        self._notifier.changed(request_id)
        self._wake_scheduler()
        return request

    async def watch_list(
        self,
        identity: Identity,
        *,
        job_type: str | None,
        states: Collection[JobState] | None,
        limit: int,
        offset: int,
    ) -> AsyncIterator[tuple[list[JobRequestRecord], int]]:
        """`list_requests` now, then again after each committed change of any request (woken by the
        notifier, never by a timer), for a listing that follows the requests as they move.

        A page is read only when the consumer asks for the next one, so the consumer sets the pace: one
        that waits a moment between pages gets one read for a burst of changes. Changes of requests not
        on the page (or of another organization) yield the same page again; the consumer compares.
        """
        while True:
            change = self._notifier.next_change_of_any()
            yield await self.list_requests(
                identity, job_type=job_type, states=states, limit=limit, offset=offset
            )
            await change.wait()
