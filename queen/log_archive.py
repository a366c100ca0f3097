"""Keeps each finished attempt's console log as a LOG artifact, off the dispatch path.

The supervisor hands over (task execution, retry) once the attempt's result is committed; a single
background worker copies the lines the LogHub holds into the artifact store. An attempt that printed
nothing gets no artifact. Lines are stored as the Ant sent them (the Ant masks secrets before sending).
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from queen.domain.errors import FormicaryError
from queen.services.artifacts import ArtifactService
from queen.task_logs import LogHub

__all__ = ["LogArchive"]

log = structlog.get_logger(__name__)

_DRAIN_SECONDS = 10.0


class LogArchive:
    """A queue of finished attempts whose logs are to be stored, and the worker that stores them."""

    def __init__(self, hub: LogHub, artifacts: ArtifactService) -> None:
        self._hub = hub
        self._artifacts = artifacts
        self._queue: asyncio.Queue[tuple[str, str, int]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    def attempt_finished(self, task_execution_id: str, task_type: str, task_retry: int) -> None:
        """Called by the supervisor after the attempt's result committed (never blocks)."""
        self._queue.put_nowait((task_execution_id, task_type, task_retry))

    async def start(self) -> None:
        self._worker = asyncio.create_task(self._run(), name="log-archive")

    async def stop(self) -> None:
        """Store what is queued (for a while), then stop."""
        if self._worker is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_DRAIN_SECONDS):
                await self._queue.join()
        self._worker.cancel()
        await asyncio.gather(self._worker, return_exceptions=True)
        self._worker = None

    async def _run(self) -> None:
        while True:
            task_execution_id, task_type, task_retry = await self._queue.get()
            try:
                await self._store(task_execution_id, task_type, task_retry)
            except FormicaryError as exc:
                log.warning("task_log_not_stored", task_execution_id=task_execution_id, error=str(exc))
            except Exception:
                log.exception("task_log_not_stored", task_execution_id=task_execution_id)
            finally:
                self._queue.task_done()

    async def _store(self, task_execution_id: str, task_type: str, task_retry: int) -> None:
        lines, _ = self._hub.snapshot(task_execution_id)
        texts = [line.text for line in lines if line.task_retry == task_retry]
        if not texts:
            return
        name = f"{task_type}.log" if task_retry == 0 else f"{task_type}.retry-{task_retry}.log"
        record = await self._artifacts.store_log(task_execution_id, texts, name=name)
        log.debug("task_log_stored", task_execution_id=task_execution_id, artifact_id=record.id)
