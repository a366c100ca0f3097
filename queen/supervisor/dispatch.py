"""The contract between the supervisor and whatever runs tasks (the Ant registry, or a test double)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from queen.domain.job_definition import TaskMethod
from queen.domain.work import TaskReport, TaskWork

__all__ = ["Acceptance", "DispatchOutcome", "DispatchProgress", "TaskDispatcher"]


async def _no_ack() -> None:
    return None


@dataclass(frozen=True, slots=True)
class Acceptance:
    """An Ant accepted the attempt at `at`."""

    ant_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class DispatchOutcome:
    """The report of a finished attempt, and `ack` to call once it is committed (the Ant then forgets it).

    `accepted`: the acceptance that was NOT reported through `DispatchProgress.accepted` because the
    result came first or within the dispatcher's short write delay; the supervisor records it (the
    EXECUTING state, with its time) in the result's transaction, so a short task costs one transaction.
    """

    report: TaskReport
    ack: Callable[[], Awaitable[None]] = _no_ack
    accepted: Acceptance | None = None


class DispatchProgress(Protocol):
    """Callbacks through which a dispatcher tells the supervisor where an attempt is; each is awaited."""

    async def waiting(self, reason: str) -> None:
        """No Ant can take the task now; `reason` says why (shown on the request)."""

    async def dispatched(self, ant_id: str, ant_host: str) -> None:
        """The task was sent to an Ant (state STARTED)."""

    async def accepted(self, ant_id: str, at: datetime | None = None) -> None:
        """The Ant accepted it at `at` (state EXECUTING)."""


class TaskDispatcher(Protocol):
    """Runs task attempts somewhere and reports how they ended; never raises for a task's own failure."""

    def unavailable_reason(self, method: TaskMethod, tags: frozenset[str]) -> str | None:
        """Why no connected Ant could ever run such a task (None when one could)."""

    async def run(self, work: TaskWork, progress: DispatchProgress) -> DispatchOutcome:
        """Dispatch one attempt, waiting for capacity as long as it takes, and await its outcome."""

    async def reattach(self, work: TaskWork, ant_id: str, progress: DispatchProgress) -> DispatchOutcome:
        """Await an attempt dispatched before a Queen restart (ERR_ANT_LOST if its Ant does not return)."""

    async def cancel(self, task_execution_id: str, reason: str) -> None:
        """Ask the Ant running the attempt to stop it; its outcome still arrives through `run`/`reattach`."""
