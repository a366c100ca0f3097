"""Helpers shared by the Ant's integration tests: a recording log sink and an execution context."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
import structlog

from ant.executors import ExecutionContext, LogStream


class RecordingSink:
    """Keeps every line; `wait_for(text)` resolves once a line containing `text` was emitted."""

    def __init__(self) -> None:
        self.lines: list[tuple[LogStream, str]] = []
        self._changed = asyncio.Event()

    async def emit(self, stream: LogStream, text: str) -> None:
        self.lines.append((stream, text))
        self._changed.set()

    def texts(self, stream: LogStream | None = None) -> list[str]:
        return [text for s, text in self.lines if stream is None or s is stream]

    async def wait_for(self, fragment: str, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while not any(fragment in text for _, text in self.lines):
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def make_context(tmp_path: Path, sink: RecordingSink) -> Callable[..., ExecutionContext]:
    def make(cancel: asyncio.Event | None = None, work_dir: Path | None = None) -> ExecutionContext:
        directory = work_dir or tmp_path / "attempt"
        directory.mkdir(parents=True, exist_ok=True)
        return ExecutionContext(
            logger=structlog.get_logger("test"),
            sink=sink,
            cancel=cancel or asyncio.Event(),
            work_dir=directory,
            ant_id="test-ant",
            host="test-host",
        )

    return make
