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

On a protocol-3 stream (`batch_with`) the writer's turn takes everything queued, in the same order, as
one Batch frame (up to `BATCH_FRAMES` frames and `BATCH_BYTES` unless one frame is larger; a frame that
would go over waits for the next turn): a busy stream pays gRPC's per-message cost once for many frames.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

__all__ = ["OutboundQueue"]

T = TypeVar("T")

# Bounds of one Batch, far below gRPC's 4 MiB message limit (ant_service.proto, PROTOCOL VERSIONS).
BATCH_FRAMES = 64
BATCH_BYTES = 1 << 20


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
        self._combine: Callable[[list[T]], T] | None = None
        self._size_of: Callable[[T], int] = lambda _: 0
        self._carried: T | None = None  # taken for a Batch it did not fit in: the next turn's first

    @property
    def bulk_room(self) -> int:
        """How many more BULK frames may be queued now (0 or more)."""
        return max(0, self._max_bulk - len(self._bulk))

    @property
    def idle(self) -> bool:
        """Nothing queued: the writer is waiting for a frame (or finishing the write of the last)."""
        return not (self._control or self._deferred or self._bulk or self._carried is not None)

    def batch_with(self, combine: Callable[[list[T]], T], size_of: Callable[[T], int]) -> None:
        """From now on, send what is queued at each turn as one frame, `combine(frames)`, of frames whose
        `size_of` adds up to at most `BATCH_BYTES`."""
        self._combine = combine
        self._size_of = size_of

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
        """The frame to send now (asking `when_idle` if nothing is queued); None if there is none. With
        `batch_with`, a Batch of all that is queued and fits, or a lone frame."""
        frame = self._next_one()
        if frame is None or self._combine is None:
            return frame
        following = self._next_one()
        if following is None:
            return frame
        frames = [frame]
        size = self._size_of(frame)
        while following is not None:
            size += self._size_of(following)
            if size > BATCH_BYTES:
                self._carried = following
                break
            frames.append(following)
            if len(frames) == BATCH_FRAMES:
                break
            following = self._next_one()
        return frames[0] if len(frames) == 1 else self._combine(frames)

    def _next_one(self) -> T | None:
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
        if self._carried is not None:
            frame, self._carried = self._carried, None
            return frame
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
