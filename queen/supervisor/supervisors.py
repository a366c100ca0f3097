"""The running supervisors: one asyncio task per active job, owned here; resumed from the database."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from queen.domain.states import JobState
from queen.store import requests
from queen.supervisor.job_supervisor import JobSupervisor, Stop, SupervisorDeps

__all__ = ["Supervisors"]

log = structlog.get_logger(__name__)


class Supervisors:
    """Starts, stops and tracks job supervisors; at most one per request."""

    def __init__(self, deps: SupervisorDeps, *, on_finished: Callable[[], None] = lambda: None) -> None:
        self._deps = deps
        # told when a supervisor ends (its job finished, paused or waits at a gate): a slot may be free
        self.on_finished = on_finished
        self._running: dict[int, tuple[JobSupervisor, asyncio.Task[None]]] = {}
        # launches asked for while that request's supervisor was still finishing (e.g. a gate decided
        # just as the supervisor that opened it was leaving): honoured when it has left
        self._relaunch: set[int] = set()
        self._closing = False

    @property
    def active(self) -> int:
        return len(self._running)

    def supervises(self, request_id: int) -> bool:
        return request_id in self._running

    def launch(self, request_id: int) -> None:
        """Start supervising a request (READY, STARTED, EXECUTING or PAUSED-being-resumed)."""
        if self._closing:
            return
        if request_id in self._running:
            self._relaunch.add(request_id)
            return
        supervisor = JobSupervisor(self._deps, request_id)
        task = asyncio.create_task(self._supervise(supervisor), name=f"job-{request_id}")
        self._running[request_id] = (supervisor, task)

    def stop(self, request_id: int, kind: Stop, reason: str) -> bool:
        """Ask a running supervisor to cancel or pause its job; False when none runs for the request."""
        entry = self._running.get(request_id)
        if entry is None:
            return False
        entry[0].stop(kind, reason)
        return True

    async def _supervise(self, supervisor: JobSupervisor) -> None:
        try:
            await supervisor.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            # A bug or a lost database: the request stays where it was committed and the next start
            # (or resume sweep) picks it up again; nothing is lost, but say so loudly.
            log.exception("supervisor_crashed", job_request_id=supervisor.request_id)
        finally:
            self._running.pop(supervisor.request_id, None)
            if not self._closing:
                if supervisor.request_id in self._relaunch:
                    self._relaunch.discard(supervisor.request_id)
                    self.launch(supervisor.request_id)
                self.on_finished()

    async def resume_all(self) -> None:
        """On start: continue every request that was running when the Queen stopped."""
        async with self._deps.db.transaction() as session:
            unfinished = await requests.non_terminal_requests(session)
            for request in unfinished:
                if request.job_state is JobState.READY:
                    # chosen by the scheduler but never started: queue it again
                    await requests.transition_request(
                        session,
                        request.id,
                        JobState.READY,
                        JobState.PENDING,
                        message="requeued after a restart",
                    )
        for request in unfinished:
            if request.job_state in (JobState.STARTED, JobState.EXECUTING):
                self.launch(request.id)
        log.info("supervisors_resumed", count=len(self._running))

    async def stop_all(self) -> None:
        """Stop every supervisor where it is (their state is committed; the next start resumes them)."""
        self._closing = True
        tasks = [task for _, task in self._running.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._running.clear()
