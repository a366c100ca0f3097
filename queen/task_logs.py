"""Live task log lines from Ants: kept per attempt (bounded, in memory) for followers to stream.

Lines arrive in order per attempt (ant_service.proto §6); duplicates after a reconnect are dropped by
sequence number. Durable storage of whole logs (as an artifact) belongs to the artifact store.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from formicary.v1 import log_line_pb2

__all__ = ["LogHub", "StoredLine"]

_LINES_PER_TASK = 10_000
_TASKS_KEPT = 2_000


@dataclass(frozen=True, slots=True)
class StoredLine:
    """One log line of one attempt."""

    task_execution_id: str
    task_retry: int
    sequence: int
    time: datetime
    stream: str
    text: str


class _TaskLog:
    def __init__(self) -> None:
        self.lines: deque[StoredLine] = deque(maxlen=_LINES_PER_TASK)
        self.last_sequence: dict[int, int] = {}
        self.changed = asyncio.Event()


class LogHub:
    """Keeps recent lines of recent attempts and wakes followers (implements the registry's LogSink)."""

    def __init__(self) -> None:
        self._tasks: dict[str, _TaskLog] = {}

    def lines(self, task_execution_id: str, task_retry: int, lines: Iterable[log_line_pb2.LogLine]) -> None:
        log = self._log(task_execution_id)
        last = log.last_sequence.get(task_retry, 0)
        added = False
        for line in lines:
            if line.sequence and line.sequence <= last:
                continue  # re-sent after a reconnect
            last = max(last, line.sequence)
            when = line.time.ToDatetime(tzinfo=UTC) if line.HasField("time") else datetime.now(UTC)
            stream = log_line_pb2.LogStream.Name(line.stream).removeprefix("LOG_STREAM_").lower()
            log.lines.append(
                StoredLine(task_execution_id, task_retry, line.sequence, when, stream, line.text)
            )
            added = True
        log.last_sequence[task_retry] = last
        if added:
            log.changed.set()
            log.changed = asyncio.Event()

    def snapshot(self, task_execution_id: str) -> tuple[list[StoredLine], asyncio.Event]:
        """The lines kept so far and an event set when more arrive."""
        log = self._log(task_execution_id)
        return list(log.lines), log.changed

    def _log(self, task_execution_id: str) -> _TaskLog:
        log = self._tasks.get(task_execution_id)
        if log is None:
            if len(self._tasks) >= _TASKS_KEPT:
                self._tasks.pop(next(iter(self._tasks)))
            log = self._tasks[task_execution_id] = _TaskLog()
        return log
