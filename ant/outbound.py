"""The one queue of frames the Ant sends on a stream, feeding gRPC's request iterator.

Everything goes through it, so frames are never interleaved, and in two lanes: CONTROL (Register,
Heartbeat, TaskAccepted/TaskRejected, Pong) is always sent before BULK (LogLines, TaskResult), so
heartbeats and pongs never wait behind log volume; within a lane the order is kept (a task's LogLines
before its TaskResult, a TaskAccepted before the Heartbeat that counts it). Only a few BULK frames may
wait at once: a producer of BULK frames waits for room, and log lines wait in their own bounded
buffers instead (see `AttemptLog`).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from enum import IntEnum
from typing import Generic, TypeVar

__all__ = ["Lane", "OutboundQueue"]

T = TypeVar("T")


class Lane(IntEnum):
    CONTROL = 0
    BULK = 1
    END = 2  # the half-close, after everything queued before it


class OutboundQueue(Generic[T]):
    """Frames to send, by lane. `frames()` is the request iterator; it ends after `close()`."""

    def __init__(self, *, max_bulk: int = 8) -> None:
        self._queue: asyncio.PriorityQueue[tuple[int, int, T | None]] = asyncio.PriorityQueue()
        self._order = itertools.count()
        self._max_bulk = max_bulk
        self._bulk = 0
        self._bulk_room = asyncio.Event()
        self._bulk_room.set()
        self._closed = False

    @property
    def bulk_waiting(self) -> int:
        return self._bulk

    def put_control(self, frame: T) -> None:
        """Queue a control frame; never waits."""
        if self._closed:
            return
        self._queue.put_nowait((Lane.CONTROL, next(self._order), frame))

    async def put_bulk(self, frame: T) -> None:
        """Queue a bulk frame, waiting while `max_bulk` of them are queued."""
        while self._bulk >= self._max_bulk and not self._closed:
            self._bulk_room.clear()
            await self._bulk_room.wait()
        if self._closed:
            return
        self._bulk += 1
        self._queue.put_nowait((Lane.BULK, next(self._order), frame))

    def close(self) -> None:
        """Half-close after the frames already queued; later puts are ignored."""
        if not self._closed:
            self._closed = True
            self._bulk_room.set()
            self._queue.put_nowait((Lane.END, next(self._order), None))

    async def get(self) -> T | None:
        """The next frame to send; None once closed and drained."""
        lane, _, frame = await self._queue.get()
        if lane == Lane.BULK:
            self._bulk -= 1
            self._bulk_room.set()
        return frame

    async def frames(self) -> AsyncIterator[T]:
        """The request iterator for the gRPC call."""
        while (frame := await self.get()) is not None:
            yield frame
