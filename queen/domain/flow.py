"""Flow rules: given how a task ended, what the job does next (pure; the supervisor applies the decision).

Formicary's semantics, with its known surprises fixed on purpose:
- a failure the definition routes somewhere (`on_failed`, or its exit code in `on_exit_code`) is
  *handled*: the task keeps its FAILED state and exit code, and the job may still end COMPLETED;
- a REJECTED gate routed by `on_exit_code.REJECTED` runs its rollback path and the job ends COMPLETED;
- `always_run` tasks run after any failure or cancellation (see `always_run_tasks`).
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta

from queen.domain.job_definition import (
    JobDefinition,
    RouteTarget,
    TaskDefinition,
    is_error_code_target,
    is_no_op_target,
)
from queen.domain.states import JobState, TaskState

__all__ = [
    "ERR_FATAL",
    "ERR_MANUAL_REJECTION",
    "ERR_TASK_FAILED",
    "Decision",
    "Step",
    "TaskOutcome",
    "always_run_tasks",
    "decide",
    "is_hard_reset",
    "job_retry",
    "retry_delay",
]

ERR_TASK_FAILED = "ERR_TASK_FAILED"
ERR_FATAL = "ERR_FATAL"
ERR_MANUAL_REJECTION = "ERR_MANUAL_REJECTION"
ERR_APPROVAL_TIMED_OUT = "ERR_APPROVAL_TIMED_OUT"


class Step(enum.StrEnum):
    """The kind of thing the job does next."""

    RUN_TASK = "RUN_TASK"  # run `task_type` next
    RETRY_TASK = "RETRY_TASK"  # run the same task again after `delay` (a retry: counts against `retry`)
    REPEAT_TASK = (
        "REPEAT_TASK"  # run the same task again after `delay` (EXECUTING sensor loop; no retry used)
    )
    RESTART_JOB = "RESTART_JOB"  # start the job over from its first task
    PAUSE_JOB = "PAUSE_JOB"  # pause; resume after `delay` if set, else when a user resumes
    END_JOB = "END_JOB"  # no further routed task: finish with `job_state` (always_run tasks first)


@dataclass(frozen=True, slots=True)
class TaskOutcome:
    """How one run of a task ended."""

    state: TaskState
    exit_code: str = ""
    error_code: str = ""
    retried: int = 0  # retries already used by this task
    job_retried: int = 0  # retries already used by the job (RESTART_JOB and job-level retry)


@dataclass(frozen=True, slots=True)
class Decision:
    """What the job does next, and what a job that ends here ends as."""

    step: Step
    task_type: str = ""
    delay: timedelta = timedelta(0)
    job_state: JobState = JobState.COMPLETED
    error_code: str = ""
    error_message: str = ""
    handled: bool = True  # False when an unrouted failure is failing the job
    hard: bool = False  # RESTART_JOB: run every task again (else reuse the tasks that completed)


_FAILED_STATES = frozenset({TaskState.FAILED, TaskState.REJECTED, TaskState.CANCELLED})


def _exit_key(task: TaskDefinition, outcome: TaskOutcome) -> str | None:
    """The `on_exit_code` key that matches this outcome, most specific first."""
    routes = task.on_exit_code
    for key in (outcome.exit_code, _state_key(outcome)):
        if key and key in routes:
            return key
    return None


def _state_key(outcome: TaskOutcome) -> str:
    if outcome.state is TaskState.APPROVED:
        return "APPROVED"
    if outcome.state is TaskState.REJECTED:
        return "REJECTED"
    if outcome.state is TaskState.SKIPPED:
        return "SKIPPED"
    return "COMPLETED" if outcome.state is TaskState.COMPLETED else "FAILED"


def retry_delay(definition_delay: timedelta | None, task: TaskDefinition, retry_number: int) -> timedelta:
    """Delay before retry `retry_number` (1-based): the backoff policy if any, else delay_between_retries."""
    if task.retry_backoff_policy is not None:
        return task.retry_backoff_policy.delay_for(retry_number)
    if task.delay_between_retries is not None:
        return task.delay_between_retries
    return definition_delay or timedelta(0)


def decide(job: JobDefinition, task: TaskDefinition, outcome: TaskOutcome) -> Decision:
    """The next step after `task` ended with `outcome`."""
    failed = outcome.state in _FAILED_STATES
    key = _exit_key(task, outcome)
    # A failure whose exit code is explicitly routed is an expected answer (a sensor, a probe): no retry.
    explicitly_routed = key is not None and key not in ("FAILED",)
    if (
        failed
        and outcome.state is TaskState.FAILED
        and not explicitly_routed
        and outcome.retried < task.retry
        and outcome.error_code != ERR_FATAL
    ):
        delay = retry_delay(job.delay_between_retries, task, outcome.retried + 1)
        return Decision(Step.RETRY_TASK, task.task_type, delay=delay)

    target = task.on_exit_code[key] if key is not None else (task.on_failed if failed else task.on_completed)
    if target:
        return _follow(job, task, target, outcome)
    if not failed:
        return Decision(Step.END_JOB, job_state=JobState.COMPLETED)
    if task.allow_failure and outcome.state is TaskState.FAILED:
        # an optional task's failure continues where its success would have led
        if task.on_completed:
            return _follow(job, task, task.on_completed, outcome)
        return Decision(Step.END_JOB, job_state=JobState.COMPLETED)
    if outcome.state is TaskState.CANCELLED:
        return Decision(
            Step.END_JOB,
            job_state=JobState.CANCELLED,
            error_code=outcome.error_code or "ERR_CANCELLED",
            error_message=f'task "{task.task_type}" was cancelled',
            handled=False,
        )
    if outcome.state is TaskState.REJECTED:
        return Decision(
            Step.END_JOB,
            job_state=JobState.FAILED,
            error_code=ERR_MANUAL_REJECTION,
            error_message=f'"{task.task_type}" was rejected',
            handled=False,
        )
    return Decision(
        Step.END_JOB,
        job_state=JobState.FAILED,
        error_code=outcome.error_code or ERR_TASK_FAILED,
        error_message=f'task "{task.task_type}" failed with exit code {outcome.exit_code or "?"}',
        handled=False,
    )


def _follow(job: JobDefinition, task: TaskDefinition, target: str, outcome: TaskOutcome) -> Decision:
    """Interpret a route target: a task of the job, or a reserved word."""
    if job.task(target) is not None:
        return Decision(Step.RUN_TASK, target)
    match target:
        case RouteTarget.FATAL:
            return Decision(
                Step.END_JOB,
                job_state=JobState.FAILED,
                error_code=ERR_FATAL,
                error_message=f'task "{task.task_type}" routed to FATAL',
                handled=False,
            )
        case RouteTarget.RESTART_TASK:
            # bounded by the task's `retry` (at least once), so a restart loop cannot run forever
            if outcome.retried < max(task.retry, 1):
                delay = retry_delay(job.delay_between_retries, task, outcome.retried + 1)
                return Decision(Step.RETRY_TASK, task.task_type, delay=delay)
            return _exhausted(task, "RESTART_TASK", outcome.retried)
        case RouteTarget.RESTART_JOB:
            if outcome.job_retried < max(job.retry, 1):
                return Decision(Step.RESTART_JOB, delay=job.delay_between_retries or timedelta(0), hard=True)
            return _exhausted(task, "RESTART_JOB", outcome.job_retried)
        case RouteTarget.PAUSE_JOB:
            pause = task.pause_time or job.pause_time or timedelta(0)
            return Decision(Step.PAUSE_JOB, delay=pause)
        case RouteTarget.EXECUTING:
            delay = task.delay_between_retries or job.delay_between_retries or timedelta(seconds=1)
            return Decision(Step.REPEAT_TASK, task.task_type, delay=delay)
        case RouteTarget.COMPLETED:
            return Decision(Step.END_JOB, job_state=JobState.COMPLETED)
        case RouteTarget.FAILED:
            return Decision(
                Step.END_JOB,
                job_state=JobState.FAILED,
                error_code=ERR_TASK_FAILED,
                error_message=f'task "{task.task_type}" routed to FAILED',
            )
    if is_error_code_target(target):
        return Decision(
            Step.END_JOB,
            job_state=JobState.FAILED,
            error_code=target,
            error_message=f'task "{task.task_type}" routed to {target}',
        )
    if is_no_op_target(target):
        return Decision(Step.END_JOB, job_state=JobState.COMPLETED)
    # The validator rejects unknown targets; an old stored definition could still hold one.
    return Decision(
        Step.END_JOB,
        job_state=JobState.FAILED,
        error_code="ERR_UNKNOWN_ROUTE",
        error_message=f'task "{task.task_type}" routes to unknown target "{target}"',
        handled=False,
    )


def _exhausted(task: TaskDefinition, route: str, used: int) -> Decision:
    return Decision(
        Step.END_JOB,
        job_state=JobState.FAILED,
        error_code="ERR_RETRIES_EXHAUSTED",
        error_message=f'task "{task.task_type}" routed to {route} after {used} retries; no retries remain',
        handled=False,
    )


def job_retry(job: JobDefinition, ending: Decision, job_retried: int) -> Decision | None:
    """A job-level retry for a job about to end FAILED, if `retry` allows one; else None.

    A soft retry re-runs only the tasks that did not complete; from retry number
    `hard_reset_after_retries` on (when set), the whole job runs again (`hard`).
    """
    if ending.step is not Step.END_JOB or ending.job_state is not JobState.FAILED:
        return None
    if ending.error_code == ERR_FATAL or job_retried >= job.retry:
        return None
    delay = job.delay_between_retries or timedelta(0)
    if job.retry_backoff_policy is not None:
        delay = job.retry_backoff_policy.delay_for(job_retried + 1)
    return Decision(
        Step.RESTART_JOB,
        delay=delay,
        error_code=ending.error_code,
        error_message=ending.error_message,
        hard=is_hard_reset(job, job_retried),
    )


def is_hard_reset(job: JobDefinition, job_retried: int) -> bool:
    """Whether job retry number `job_retried + 1` re-runs every task instead of only the failed ones."""
    return job.hard_reset_after_retries > 0 and job_retried + 1 >= job.hard_reset_after_retries


def always_run_tasks(job: JobDefinition, already_run: Collection[str]) -> tuple[TaskDefinition, ...]:
    """The always_run tasks still owed when a job ends early (failure, FATAL, cancel), in definition order."""
    return tuple(task for task in job.tasks if task.always_run and task.task_type not in already_run)
