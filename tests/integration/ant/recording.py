"""A log sink for the executor tests that records every line and lets a test wait for one."""

from __future__ import annotations

import asyncio

from ant.executors import LogStream

__all__ = ["RecordingSink"]


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
