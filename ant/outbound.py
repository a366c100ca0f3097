"""The one queue of frames the Ant sends on a stream, feeding gRPC's request iterator.

Everything goes through it, so frames are never interleaved, and in two lanes: CONTROL (Register,
TaskAccepted/TaskRejected, Pong, Heartbeat) is always sent before BULK (LogLines, TaskResult), so
heartbeats and pongs never wait behind log volume; within a lane the order is kept (a task's LogLines
before its TaskResult, a TaskAccepted before the Heartbeat that counts it).

gRPC writes one frame at a time, each after the previous one completed, so two things are decided when
the writer is ready for the next frame rather than when something happens:

- A *deferred* control frame (the Heartbeat) is built when its turn comes, after every control frame
  queued before it was handed over, and one waiting deferred frame stands for any number of requests
  for it: five slots freed while a frame was being written make one Heartbeat, with the state as it
  then is.
- When nothing is queued, the `when_idle` hook may queue frames (the log lines waiting since the last
  frame): lines go out at once on a quiet stream and in batches on a busy one, without a timer on the
  way of each line.

BULK frames are bounded: producers look at `bulk_room` and leave the rest waiting in their own bounded
buffers (see `AttemptLog`), to be taken when there is room again.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

__all__ = ["OutboundQueue"]

T = TypeVar("T")


class OutboundQueue(Generic[T]):
    """Frames to send, by lane. `frames()` is the request iterator; it ends after `close()`."""

    def __init__(self, *, max_bulk: int = 8, when_idle: Callable[[], None] | None = None) -> None:
        self._control: deque[T] = deque()
        self._deferred: Callable[[], T] | None = None
        self._bulk: deque[T] = deque()
        self._max_bulk = max_bulk
        self._when_idle = when_idle
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    @property
    def bulk_room(self) -> int:
        """How many more BULK frames may be queued now (0 or more)."""
        return max(0, self._max_bulk - len(self._bulk))

    @property
    def idle(self) -> bool:
        """Nothing queued: the writer is waiting for a frame (or finishing the write of the last)."""
        return not (self._control or self._deferred or self._bulk)

    def put_control(self, frame: T) -> None:
        """Queue a control frame."""
        if not self._closed:
            self._control.append(frame)
            self._wake()

    def put_deferred(self, build: Callable[[], T]) -> None:
        """Queue a control frame that `build` makes when its turn comes (after the control frames queued
        before it); while one waits, a later request is the same frame."""
        if not self._closed:
            self._deferred = build
            self._wake()

    def put_bulk(self, frame: T) -> None:
        """Queue a bulk frame; producers keep within `bulk_room` (a frame beyond it is still queued)."""
        if not self._closed:
            self._bulk.append(frame)
            self._wake()

    def poke(self) -> None:
        """Something waits for `when_idle`: let the writer call it if it is idle."""
        self._wake()

    def close(self) -> None:
        """Half-close after the frames already queued; later puts are ignored."""
        self._closed = True
        self._wake()

    def next_frame(self) -> T | None:
        """The frame to send now (asking `when_idle` if nothing is queued); None if there is none."""
        frame = self._take()
        if frame is None and self._when_idle is not None and not self._closed:
            self._when_idle()
            frame = self._take()
        return frame

    async def frames(self) -> AsyncIterator[T]:
        """The request iterator for the gRPC call."""
        while True:
            frame = self.next_frame()
            if frame is not None:
                yield frame
            elif self._closed:
                return
            else:
                self._waiter = asyncio.get_running_loop().create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None

    def _take(self) -> T | None:
        if self._control:
            return self._control.popleft()
        if self._deferred is not None:
            build, self._deferred = self._deferred, None
            return build()
        if self._bulk:
            return self._bulk.popleft()
        return None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
