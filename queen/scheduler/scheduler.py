"""The job scheduler: PENDING requests become READY by priority, then age, when they can run.

A request runs when its `scheduled_at` has come, its job type is under `max_concurrency`, and a
connected Ant serves every method and tag its tasks need (otherwise its `wait_reason` says why).
`skip_if` ends a request COMPLETED without running it. Event-driven: `wake()` (a submission, a
finished job, an Ant joining or freeing capacity) runs a pass at once; the periodic sweep is only the
safety net, and a pass also wakes itself for the next `scheduled_at` it saw.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from queen.domain.errors import InvalidArgument, InvalidTransition
from queen.domain.job_definition import JobDefinition
from queen.domain.states import JobState
from queen.domain.templating import render
from queen.notifier import ChangeNotifier
from queen.store import Database, JobRequestRecord, definitions, requests
from queen.store._clock import utc_now
from queen.supervisor.dispatch import TaskDispatcher
from queen.supervisor.supervisors import Supervisors

__all__ = ["Scheduler"]

log = structlog.get_logger(__name__)

_BATCH = 200


class Scheduler:
    """Moves runnable PENDING requests to READY and hands them to the supervisors."""

    def __init__(
        self,
        *,
        db: Database,
        dispatcher: TaskDispatcher,
        supervisors: Supervisors,
        notifier: ChangeNotifier,
        sweep_interval: timedelta,
    ) -> None:
        self._db = db
        self._notifier = notifier
        self._dispatcher = dispatcher
        self._supervisors = supervisors
        self._sweep = sweep_interval.total_seconds()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # One pass at a time: two concurrent passes would both see a free concurrency slot.
        self._pass_lock = asyncio.Lock()
        self.passes = 0
        # Whether the last pass left requests waiting on a verdict (max_concurrency, no Ant) or saw a
        # full batch: only then can a supervisor's end let something start.
        self._held = True

    def wake(self) -> None:
        """Run a pass as soon as possible (cheap; many wakes before a pass make one pass)."""
        self._wake.set()

    @property
    def due(self) -> bool:
        """A pass is due (woken since the last one started)."""
        return self._wake.is_set()

    def supervisor_ended(self) -> None:
        """A job finished, paused or reached a gate: a pass, if requests wait for such a moment (a job
        ending frees nothing for requests that wait for nothing: no transaction then)."""
        if self._held:
            self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                due_in = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduler_pass_failed")
                due_in = None
            timeout = self._sweep if due_in is None else min(self._sweep, max(due_in, 0.0))
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                await self._adopt_orphans()

    async def _adopt_orphans(self) -> None:
        """The safety net: a running request whose supervisor is gone (it crashed) gets a new one."""
        try:
            async with self._db.transaction() as session:
                unfinished = await requests.non_terminal_requests(session)
        except Exception:
            log.exception("orphan_sweep_failed")
            return
        for request in unfinished:
            if request.job_state in (
                JobState.STARTED,
                JobState.EXECUTING,
            ) and not self._supervisors.supervises(request.id):
                log.warning("orphan_request_adopted", job_request_id=request.id)
                self._supervisors.launch(request.id)

    async def run_once(self, now: datetime | None = None) -> float | None:
        """One pass; returns seconds until the next future `scheduled_at` (None if there is none)."""
        async with self._pass_lock:
            return await self._pass(now)

    async def _pass(self, now: datetime | None) -> float | None:
        """Read what is due and move it on in ONE transaction (reads, wait reasons, READY, skips and
        refusals); supervisors are launched and watchers told once it committed."""
        self.passes += 1
        self._held = True  # until this pass knows better: a supervisor ending meanwhile wakes another
        now = now or utc_now()
        changed: list[int] = []
        async with self._db.transaction() as session:
            due = await requests.due_work(session, now, limit=_BATCH)
            # paused requests whose pause_time elapsed: their supervisor moves them back to EXECUTING
            launched = [paused.id for paused in due.paused]
            pending = due.pending
            held = len(pending) >= _BATCH
            active = Counter(due.active)
            next_due = due.next_due
            for request in pending:
                job = await self._definition(session, request)
                if job is None:
                    changed.append(request.id)  # refused: its definition no longer parses
                    continue
                verdict = self._verdict(request, job, active)
                if verdict is not None:
                    held = True
                    if request.wait_reason != verdict:
                        await requests.set_wait_reason(session, request.id, verdict)
                        changed.append(request.id)
                    continue
                if job.skip_if and self._skipped(request, job):
                    if await self._move(
                        session,
                        request,
                        JobState.COMPLETED,
                        message=f"skipped: skip_if {job.skip_if!r} is true",
                        ended_at=utc_now(),
                    ):
                        changed.append(request.id)
                    continue
                if await self._move(session, request, JobState.READY, wait_reason=""):
                    active[request.organization_id, request.job_type] += 1
                    launched.append(request.id)
        self._held = held
        for request_id in changed:
            self._notifier.changed(request_id)
        for request_id in launched:
            self._supervisors.launch(request_id)
        if next_due is None:
            return None
        return (next_due - utc_now()).total_seconds()

    @staticmethod
    async def _move(
        session: AsyncSession, request: JobRequestRecord, target: JobState, **changes: Any
    ) -> bool:
        """PENDING -> `target`; False when the request moved meanwhile (cancelled: its guarded UPDATE
        matched nothing, and the transaction is unharmed)."""
        try:
            await requests.transition_request(session, request.id, JobState.PENDING, target, **changes)
        except InvalidTransition:
            return False
        return True

    async def _definition(self, session: AsyncSession, request: JobRequestRecord) -> JobDefinition | None:
        """The request's parsed definition (its pinned version, read and parsed once per process); None
        when it no longer parses, in which case the request is failed in `session`."""
        record = await definitions.pinned_definition(session, request.job_definition_id)
        try:
            return record.definition()
        except InvalidArgument as exc:
            await self._move(
                session,
                request,
                JobState.FAILED,
                error_code="ERR_INVALID_DEFINITION",
                error_message=str(exc),
                ended_at=utc_now(),
            )
            return None

    def _verdict(
        self, request: JobRequestRecord, job: JobDefinition, active: Counter[tuple[str, str]]
    ) -> str | None:
        """Why the request cannot start now, or None."""
        limit = job.max_concurrency
        if limit is not None and active[request.organization_id, request.job_type] >= limit:
            return f"max_concurrency {limit} of {request.job_type} reached"
        for task in job.tasks:
            if task.method.runs_in_queen:
                continue
            tags = frozenset(task.tags) | frozenset(job.tags)
            reason = self._dispatcher.unavailable_reason(task.method, tags)
            if reason is not None:
                return f"task {task.task_type}: {reason}"
        return None

    def _skipped(self, request: JobRequestRecord, job: JobDefinition) -> bool:
        variables = {**job.job_variables, **request.params, "JobID": request.id, "JobType": request.job_type}
        try:
            verdict = render(job.skip_if, variables).strip().lower()
        except InvalidArgument:
            log.warning("skip_if_render_failed", job_request_id=request.id, skip_if=job.skip_if)
            return False
        return verdict not in ("", "false", "0", "no")
