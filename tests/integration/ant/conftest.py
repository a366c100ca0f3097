"""Fixtures of the Ant's integration tests: a recording log sink and an execution context."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
import structlog

from ant.executors import ExecutionContext
from tests.integration.ant.recording import RecordingSink


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
