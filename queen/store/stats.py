"""Counters for operators (AdminService.GetStats, GetHealth): read-only queries over requests and tasks.

Like every repository module, each function takes the caller's `AsyncSession` and never commits.
Job counters are scoped to one organization; task counters join through the task's job request.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from queen.domain.job_definition import TaskMethod
from queen.domain.states import JobState, TaskState
from queen.store.models import JobExecutionRow, JobRequestRow, TaskExecutionRow

__all__ = ["count_tasks", "ping", "queue_depth", "requests_by_state"]

_QUEEN_SIDE_METHODS = sorted(method.value for method in TaskMethod if method.runs_in_queen)
_TERMINAL_JOB_STATES = sorted(state for state in JobState if state.is_terminal)


async def ping(session: AsyncSession) -> None:
    """Run `SELECT 1`: proves the database answers (raises what the driver raises when it does not)."""
    await session.execute(text("SELECT 1"))


async def requests_by_state(session: AsyncSession, organization_id: str) -> dict[JobState, int]:
    """How many of the organization's job requests are in each state; states with none are absent."""
    stmt = (
        select(JobRequestRow.job_state, func.count())
        .where(JobRequestRow.organization_id == organization_id)
        .group_by(JobRequestRow.job_state)
    )
    return {state: int(count) for state, count in (await session.execute(stmt)).all()}


async def queue_depth(session: AsyncSession, organization_id: str, now: datetime) -> int:
    """PENDING requests of the organization that are due (no scheduled time, or at/before `now`)."""
    stmt = (
        select(func.count())
        .select_from(JobRequestRow)
        .where(
            JobRequestRow.organization_id == organization_id,
            JobRequestRow.job_state == JobState.PENDING,
            or_(JobRequestRow.scheduled_at.is_(None), JobRequestRow.scheduled_at <= now),
        )
    )
    return int(await session.scalar(stmt) or 0)


async def count_tasks(
    session: AsyncSession,
    organization_id: str,
    states: Collection[TaskState],
    *,
    ant_methods_only: bool = False,
) -> int:
    """Task executions of the organization's unfinished job executions in any of `states`.

    Tasks of finished executions are left out (a restart leaves the old execution's rows behind);
    `ant_methods_only` leaves out the methods the Queen runs itself (MANUAL, JOB_FORK, ...).
    """
    stmt = (
        select(func.count())
        .select_from(TaskExecutionRow)
        .join(JobExecutionRow, JobExecutionRow.id == TaskExecutionRow.job_execution_id)
        .join(JobRequestRow, JobRequestRow.id == JobExecutionRow.job_request_id)
        .where(
            JobRequestRow.organization_id == organization_id,
            JobExecutionRow.job_state.not_in(_TERMINAL_JOB_STATES),
            TaskExecutionRow.task_state.in_(sorted(states)),
        )
    )
    if ant_methods_only:
        stmt = stmt.where(TaskExecutionRow.method.not_in(_QUEEN_SIDE_METHODS))
    return int(await session.scalar(stmt) or 0)
