"""Waiting for an executor's work while honouring the task's timeout and cancel event."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from enum import StrEnum
from typing import Any, TypeVar

__all__ = ["StopReason", "run_cancellable", "run_until_stopped"]

T = TypeVar("T")


class StopReason(StrEnum):
    """Why an executor stopped its work before it ended by itself."""

    TIMEOUT = "timeout"
    CANCELLED = "cancelled"


async def _race(
    work: asyncio.Task[Any],
    cancel: asyncio.Event | None,
    timeout: float | None,  # noqa: ASYNC109 - the caller acts on the expiry, not this function
) -> StopReason | None:
    """Wait until `work` is done (None), `cancel` is set (CANCELLED) or `timeout` passes (TIMEOUT)."""
    waiters: set[asyncio.Future[Any]] = {work}
    cancel_task: asyncio.Task[bool] | None = None
    if cancel is not None:
        cancel_task = asyncio.ensure_future(cancel.wait())
        waiters.add(cancel_task)
    try:
        done, _ = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if cancel_task is not None:
            await _cancel(cancel_task)
    if work in done:
        return None
    return StopReason.CANCELLED if cancel_task is not None and cancel_task in done else StopReason.TIMEOUT


async def _cancel(task: asyncio.Task[Any]) -> None:
    if not task.done():
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def run_until_stopped(
    work: Coroutine[Any, Any, T],
    *,
    cancel: asyncio.Event | None,
    timeout: float | None,  # noqa: ASYNC109 - the task's own timeout, enforced by calling `stop`
    stop: Callable[[], Awaitable[None]],
) -> tuple[T, StopReason | None]:
    """Await `work`; if `timeout` passes or `cancel` is set first, await `stop()` (which must make
    `work` end: kill the process, the container, the pod) and then `work` itself.

    Returns `work`'s result and why it was stopped (None when it ended by itself). If this coroutine is
    cancelled, `work` is cancelled too; releasing what `work` started is the caller's `finally`.
    """
    work_task: asyncio.Task[T] = asyncio.ensure_future(work)
    try:
        reason = await _race(work_task, cancel, timeout)
        if reason is not None:
            await stop()
        return await work_task, reason
    finally:
        if not work_task.done():
            await _cancel(work_task)


async def run_cancellable(
    work: Coroutine[Any, Any, T],
    *,
    cancel: asyncio.Event | None,
    timeout: float | None,  # noqa: ASYNC109 - the task's own timeout, enforced by cancelling `work`
) -> tuple[T | None, StopReason | None]:
    """Await `work`, cancelling it if `timeout` passes or `cancel` is set first (for work that stops
    cleanly when cancelled, like an HTTP request). Returns its result, or None and why it stopped."""
    work_task: asyncio.Task[T] = asyncio.ensure_future(work)
    try:
        reason = await _race(work_task, cancel, timeout)
        if reason is not None:
            return None, reason
        return work_task.result(), None
    finally:
        if not work_task.done():
            await _cancel(work_task)
