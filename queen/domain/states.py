"""Job-request and task-execution states and the one table of allowed transitions (design.md §5)."""

from __future__ import annotations

import enum
from collections.abc import Mapping

from queen.domain.errors import InvalidTransition

__all__ = [
    "JOB_TRANSITIONS",
    "TASK_TRANSITIONS",
    "JobState",
    "TaskState",
    "check_job_transition",
    "check_task_transition",
]


class JobState(enum.StrEnum):
    """The life of a job request."""

    PENDING = "PENDING"  # accepted, waiting for the scheduler (priority, capacity, schedule time)
    READY = "READY"  # chosen by the scheduler, about to start
    STARTED = "STARTED"  # its execution record exists; the first task is being launched
    EXECUTING = "EXECUTING"  # tasks are running
    MANUAL_APPROVAL_REQUIRED = "MANUAL_APPROVAL_REQUIRED"  # waiting for people at a MANUAL gate
    PAUSED = "PAUSED"  # stopped on purpose (PAUSE_JOB or a user); resumed by a user or after pause_time
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in _JOB_TERMINAL

    @property
    def is_active(self) -> bool:
        """Holding a concurrency slot of its job type (started and not yet finished)."""
        return self in _JOB_ACTIVE


class TaskState(enum.StrEnum):
    """The life of one task execution (one row per task of a job execution; retries reuse it)."""

    READY = "READY"  # created, waiting to be dispatched (or for an Ant that fits)
    STARTED = "STARTED"  # dispatched to an Ant, not yet acknowledged
    EXECUTING = "EXECUTING"  # running on an Ant (or in the Queen for Queen-side methods)
    MANUAL_APPROVAL_REQUIRED = "MANUAL_APPROVAL_REQUIRED"  # a MANUAL gate is open
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"  # `except` matched, or the job ended before the task was reached
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in _TASK_TERMINAL


_JOB_TERMINAL = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})
_JOB_ACTIVE = frozenset(
    {JobState.READY, JobState.STARTED, JobState.EXECUTING, JobState.MANUAL_APPROVAL_REQUIRED, JobState.PAUSED}
)
_TASK_TERMINAL = frozenset(
    {
        TaskState.APPROVED,
        TaskState.REJECTED,
        TaskState.COMPLETED,
        TaskState.FAILED,
        TaskState.SKIPPED,
        TaskState.CANCELLED,
    }
)

_J = JobState
JOB_TRANSITIONS: Mapping[JobState, frozenset[JobState]] = {
    # skip_if ends a request COMPLETED before it runs; missing params or no Ant ever fail it
    _J.PENDING: frozenset({_J.READY, _J.COMPLETED, _J.FAILED, _J.CANCELLED, _J.PAUSED}),
    # READY/STARTED go back to PENDING when the Queen dies before the job really started
    _J.READY: frozenset({_J.STARTED, _J.PENDING, _J.FAILED, _J.CANCELLED}),
    _J.STARTED: frozenset({_J.EXECUTING, _J.PENDING, _J.FAILED, _J.CANCELLED}),
    _J.EXECUTING: frozenset(
        {_J.MANUAL_APPROVAL_REQUIRED, _J.PAUSED, _J.COMPLETED, _J.FAILED, _J.CANCELLED, _J.PENDING}
    ),
    _J.MANUAL_APPROVAL_REQUIRED: frozenset({_J.EXECUTING, _J.PAUSED, _J.COMPLETED, _J.FAILED, _J.CANCELLED}),
    _J.PAUSED: frozenset({_J.PENDING, _J.EXECUTING, _J.MANUAL_APPROVAL_REQUIRED, _J.CANCELLED, _J.FAILED}),
    # a finished request can be restarted (soft or hard), which queues it again
    _J.COMPLETED: frozenset({_J.PENDING}),
    _J.FAILED: frozenset({_J.PENDING}),
    _J.CANCELLED: frozenset({_J.PENDING}),
}

_T = TaskState
TASK_TRANSITIONS: Mapping[TaskState, frozenset[TaskState]] = {
    _T.READY: frozenset(
        {
            _T.STARTED,
            _T.EXECUTING,
            _T.MANUAL_APPROVAL_REQUIRED,
            _T.COMPLETED,
            _T.FAILED,
            _T.SKIPPED,
            _T.CANCELLED,
        }
    ),
    # STARTED/EXECUTING go back to READY when their Ant is lost and the task is dispatched again
    _T.STARTED: frozenset({_T.EXECUTING, _T.COMPLETED, _T.FAILED, _T.CANCELLED, _T.READY}),
    _T.EXECUTING: frozenset({_T.COMPLETED, _T.FAILED, _T.CANCELLED, _T.READY}),
    # a gate is decided, times out (FAILED with exit code TIMED_OUT) or goes away with its job
    _T.MANUAL_APPROVAL_REQUIRED: frozenset({_T.APPROVED, _T.REJECTED, _T.FAILED, _T.CANCELLED, _T.READY}),
    # finished tasks run again on a retry, a sensor loop (EXECUTING), RESTART_TASK or a job restart
    _T.APPROVED: frozenset({_T.READY}),
    _T.REJECTED: frozenset({_T.READY}),
    _T.COMPLETED: frozenset({_T.READY}),
    _T.FAILED: frozenset({_T.READY}),
    _T.SKIPPED: frozenset({_T.READY}),
    _T.CANCELLED: frozenset({_T.READY}),
}


def check_job_transition(current: JobState, target: JobState, *, entity: str = "job request") -> None:
    """Raise `InvalidTransition` unless the table allows current → target."""
    if target not in JOB_TRANSITIONS[current]:
        raise InvalidTransition(entity, current.value, target.value)


def check_task_transition(current: TaskState, target: TaskState, *, entity: str = "task execution") -> None:
    """Raise `InvalidTransition` unless the table allows current → target."""
    if target not in TASK_TRANSITIONS[current]:
        raise InvalidTransition(entity, current.value, target.value)
