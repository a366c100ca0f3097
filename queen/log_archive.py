"""Keeps each finished attempt's console log as a LOG artifact, off the dispatch path.

The supervisor hands over each attempt once its result is committed; one background worker copies the
lines the LogHub holds into the artifact store. It takes what has queued up within a short linger as one
batch: the objects are written one by one, their records inserted in one transaction, so a busy Queen
pays one transaction per batch, not per task. An attempt that printed nothing gets no artifact. Lines
are stored as the Ant sent them (the Ant masks secrets before sending). Until its batch is stored, a log
is readable live from the LogHub; a Queen that stops drains the queue first (for a while).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import structlog

from queen.domain.errors import FormicaryError
from queen.services.artifacts import ArtifactService, TaskLog
from queen.supervisor.job_supervisor import FinishedAttempt
from queen.task_logs import LogHub

__all__ = ["LogArchive"]

log = structlog.get_logger(__name__)

_DRAIN_SECONDS = 10.0


class LogArchive:
    """A queue of finished attempts whose logs are to be stored, and the worker that stores them."""

    def __init__(
        self,
        hub: LogHub,
        artifacts: ArtifactService,
        *,
        linger: timedelta = timedelta(milliseconds=200),
        batch: int = 200,
    ) -> None:
        self._hub = hub
        self._artifacts = artifacts
        self._linger = linger.total_seconds()
        self._batch = batch
        # None: the Queen is stopping, store what is lingering now
        self._queue: asyncio.Queue[FinishedAttempt | None] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    def attempt_finished(self, attempt: FinishedAttempt) -> None:
        """Called by the supervisor after the attempt's result committed (never blocks)."""
        self._queue.put_nowait(attempt)

    async def start(self) -> None:
        self._worker = asyncio.create_task(self._run(), name="log-archive")

    async def stop(self) -> None:
        """Store what is queued (for a while), then stop."""
        if self._worker is None:
            return
        self._queue.put_nowait(None)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_DRAIN_SECONDS):
                await self._queue.join()
        self._worker.cancel()
        await asyncio.gather(self._worker, return_exceptions=True)
        self._worker = None

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [] if first is None else [first]
            taken = 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._linger):
                    while batch and len(batch) < self._batch:
                        item = await self._queue.get()
                        taken += 1
                        if item is None:
                            break
                        batch.append(item)
            try:
                if batch:
                    await self._store(batch)
            except Exception:
                log.exception("task_logs_not_stored", count=len(batch))
            finally:
                for _ in range(taken):
                    self._queue.task_done()

    async def _store(self, batch: list[FinishedAttempt]) -> None:
        logs = [task_log for attempt in batch if (task_log := self._log_of(attempt)) is not None]
        if not logs:
            return
        try:
            await self._artifacts.store_logs(logs)
        except FormicaryError:
            if len(logs) == 1:
                raise
            # one bad log (a name refused, say) must not cost the others theirs
            for task_log in logs:
                try:
                    await self._artifacts.store_logs([task_log])
                except FormicaryError as exc:
                    log.warning(
                        "task_log_not_stored", task_execution_id=task_log.task_execution_id, error=str(exc)
                    )

    def _log_of(self, attempt: FinishedAttempt) -> TaskLog | None:
        lines, _ = self._hub.snapshot(attempt.task_execution_id)
        texts = tuple(line.text for line in lines if line.task_retry == attempt.task_retry)
        if not texts:
            return None
        retry = attempt.task_retry
        return TaskLog(
            organization_id=attempt.organization_id,
            job_request_id=attempt.job_request_id,
            job_execution_id=attempt.job_execution_id,
            task_execution_id=attempt.task_execution_id,
            task_type=attempt.task_type,
            name=f"{attempt.task_type}.log" if retry == 0 else f"{attempt.task_type}.retry-{retry}.log",
            lines=texts,
        )
