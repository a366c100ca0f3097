"""What an executor is given besides the spec: a logger, a log sink, a cancel event, a directory."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from structlog.typing import FilteringBoundLogger

__all__ = ["ExecutionContext", "LogSink", "LogStream"]


class LogStream(StrEnum):
    """Where a console line came from."""

    STDOUT = "STDOUT"
    STDERR = "STDERR"
    SYSTEM = "SYSTEM"
    """A line the Ant writes about the task ("pulling image ...", "local fallback: ...")."""


class LogSink(Protocol):
    """Receives the task's console lines as they happen, in order, one line per call (no newline)."""

    async def emit(self, stream: LogStream, text: str) -> None: ...


@dataclass(frozen=True, slots=True)
class ExecutionContext:
    """The world of one attempt as an executor sees it.

    `cancel` is set when the attempt must stop (CancelTask, a drain that outlived its grace): the
    executor stops its work the way a timeout does and reports CANCELLED. `work_dir` is a fresh
    directory for the attempt on the Ant's host (dependencies are downloaded into it before the run and
    artifacts are collected from it after).
    """

    logger: FilteringBoundLogger
    sink: LogSink
    cancel: asyncio.Event
    work_dir: Path
    ant_id: str = ""
    host: str = ""
