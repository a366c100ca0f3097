"""Following one job request live: its state as it changes and its tasks' log lines as they arrive.

What a watcher of one request wants in one stream (the dashboard's request page, an SSE client): the
request with its current execution and tasks whenever any of it changed, and the console lines of its
tasks, first those kept so far, then new ones as the Ants send them, until the request is terminal.
Built on the same service calls as the gRPC WatchJobRequest and StreamTaskLogs (`RequestService.get`,
`RequestService.watch`, `LogHub.snapshot`), and like them woken by events, never by a timer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Iterable, Iterator
from dataclasses import dataclass
from typing import cast

from queen.domain.identity import Identity
from queen.services.requests import RequestDetails, RequestService
from queen.store import EventRecord, TaskExecutionRecord
from queen.task_logs import LogHub, StoredLine

__all__ = ["LogLines", "RequestChanged", "follow_request"]

# One LogLines item carries at most this many lines (lines are up to 64 KiB each).
_LINES_PER_ITEM = 500


@dataclass(frozen=True, slots=True)
class RequestChanged:
    """The request as it is now (sent first, then whenever it, its execution or a task changed)."""

    details: RequestDetails


@dataclass(frozen=True, slots=True)
class LogLines:
    """Consecutive new console lines of one attempt of one task."""

    task_type: str
    task_execution_id: str
    task_retry: int
    lines: tuple[StoredLine, ...]


async def follow_request(
    requests: RequestService,
    logs: LogHub,
    identity: Identity,
    request_id: int,
    *,
    task_type: str = "",
    with_logs: bool = True,
    follow: bool = True,
) -> AsyncGenerator[RequestChanged | LogLines, None]:
    """The request now, its kept log lines (of `task_type`'s task, or of every task), then each change
    and each new line, until the request is terminal and everything was sent (without `follow`: the
    request and its lines as they are now, and nothing more).

    NotFound (before anything is yielded) if the caller cannot see the request. Lines come task by
    task, in order within an attempt; an attempt's lines are never sent twice.
    """
    details = await requests.get(identity, request_id)
    changed = asyncio.Event()
    watcher = asyncio.create_task(_signal_changes(requests, identity, request_id, changed))
    sent: dict[str, tuple[int, int]] = {}
    shown: RequestDetails | None = None
    try:
        while True:
            if changed.is_set():
                changed.clear()
                details = await requests.get(identity, request_id)
            if details != shown:
                shown = details
                yield RequestChanged(details)
            more: list[asyncio.Event] = []
            if with_logs:
                for task in _selected(details.tasks, task_type):
                    lines, arrives = logs.snapshot(task.id)
                    more.append(arrives)
                    for batch in _new_lines(task, lines, sent):
                        yield batch
            if details.request.job_state.is_terminal or not follow:
                return
            if watcher.done() and not changed.is_set():
                watcher.result()  # re-raises what broke the watch
                return  # the watch ended: the request is terminal; the next read would show it
            await _first_of(changed, *more)
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)


async def _signal_changes(
    requests: RequestService, identity: Identity, request_id: int, changed: asyncio.Event
) -> None:
    """Set `changed` at every event of the request; returns once the request is terminal."""
    events = cast(AsyncGenerator[EventRecord, None], requests.watch(identity, request_id))
    try:
        async with contextlib.aclosing(events):
            async for _ in events:
                changed.set()
    finally:
        changed.set()  # also when the watch broke or ended: the follower then reads why


def _selected(tasks: Iterable[TaskExecutionRecord], task_type: str) -> list[TaskExecutionRecord]:
    return [task for task in tasks if not task_type or task.task_type == task_type]


def _new_lines(
    task: TaskExecutionRecord, lines: list[StoredLine], sent: dict[str, tuple[int, int]]
) -> Iterator[LogLines]:
    """The lines of `task` not sent yet (by attempt and sequence), in items of one attempt each."""
    last = sent.get(task.id, (-1, -1))
    fresh = [line for line in lines if (line.task_retry, line.sequence) > last]
    if not fresh:
        return
    sent[task.id] = (fresh[-1].task_retry, fresh[-1].sequence)
    batch: list[StoredLine] = []
    for line in fresh:
        if batch and (line.task_retry != batch[0].task_retry or len(batch) >= _LINES_PER_ITEM):
            yield LogLines(task.task_type, task.id, batch[0].task_retry, tuple(batch))
            batch = []
        batch.append(line)
    yield LogLines(task.task_type, task.id, batch[0].task_retry, tuple(batch))


async def _first_of(*events: asyncio.Event) -> None:
    """Wait until any of `events` is set."""
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
