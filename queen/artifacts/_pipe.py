"""A bounded hand-over of bytes from the event loop to a blocking reader in a worker thread.

The S3 client (minio) uploads from a file-like object in a thread, calling `read(n)`; the content
arrives as chunks on the event loop. `ChunkPipe` joins the two without buffering the whole stream: the
writer (a coroutine) waits while `capacity` bytes are buffered, the reader (the thread) waits until data,
the end, or an abort arrives. All state lives on the event loop; the thread only submits `_take` to the
loop and waits for its result, so no locks are needed and the writer never blocks the loop.

Errors cross in both directions: `abort(cause)` makes the reader's next (or current) `read` raise
`PipeAborted`, which makes the S3 client abort its multipart upload; when the reader stops (its upload
finished or failed), `reader_stopped()` makes the writer's `write` raise `ReaderGone` instead of waiting
forever for room.
"""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["ChunkPipe", "PipeAborted", "PipeStalled", "ReaderGone"]


class PipeAborted(Exception):
    """Raised in the reader: the writer gave up (its stream failed, hit a limit, or was cancelled)."""


class PipeStalled(Exception):
    """Raised in the reader: no data, end or abort arrived within the stall timeout."""


class ReaderGone(Exception):
    """Raised in the writer: the reader stopped reading (its upload ended), so no more data is taken."""


class ChunkPipe:
    """Bytes from coroutines on `loop` to one reading thread; at most about `capacity` bytes in between.

    `read(n)` returns at least `min(n, min_read)` bytes unless the end came first (the S3 client joins
    the pieces of a part by concatenation: fewer, larger pieces keep that cheap). The buffer may exceed
    `capacity` by one chunk, so chunks should be small against it.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, *, capacity: int, min_read: int, stall_timeout: float
    ) -> None:
        self._loop = loop
        self._capacity = capacity
        self._min_read = min_read
        self._stall_timeout = stall_timeout
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._finished = False
        self._aborted = False
        self._reader_gone = False
        self._wakeup = asyncio.Event()

    # -- the writer's side (on the event loop) ---------------------------------------------------------

    async def write(self, data: bytes) -> None:
        """Hand over `data`, first waiting while the buffer is full; ReaderGone if the reader stopped."""
        while self._buffered >= self._capacity and not self._reader_gone:
            await self._changed()
        if self._reader_gone:
            raise ReaderGone
        if data:
            self._chunks.append(bytes(data))
            self._buffered += len(data)
            self._notify()

    def finish(self) -> None:
        """No more data: once the buffer is drained, `read` returns b""."""
        self._finished = True
        self._notify()

    def abort(self) -> None:
        """Make the reader's current or next `read` raise PipeAborted (buffered data is dropped)."""
        self._aborted = True
        self._chunks.clear()
        self._buffered = 0
        self._notify()

    def reader_stopped(self) -> None:
        """The reader is done (its upload ended either way): writers stop waiting for room."""
        self._reader_gone = True
        self._notify()

    # -- the reader's side -----------------------------------------------------------------------------

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (blocking; call from a worker thread, never from the event loop)."""
        if size is None or size < 0:
            size = self._capacity
        future = asyncio.run_coroutine_threadsafe(self._take(size), self._loop)
        try:
            return future.result(timeout=self._stall_timeout)
        except TimeoutError:
            future.cancel()
            raise PipeStalled(f"no content for {self._stall_timeout:g}s") from None

    async def _take(self, size: int) -> bytes:
        wanted = min(size, self._min_read)
        while not self._aborted and not self._finished and self._buffered < wanted:
            await self._changed()
        if self._aborted:
            raise PipeAborted("the upload was abandoned")
        pieces: list[bytes] = []
        taken = 0
        while self._chunks and taken < size:
            chunk = self._chunks.popleft()
            room = size - taken
            if len(chunk) > room:
                self._chunks.appendleft(chunk[room:])
                chunk = chunk[:room]
            pieces.append(chunk)
            taken += len(chunk)
        self._buffered -= taken
        self._notify()
        return b"".join(pieces)

    # -- wake-ups (edge-triggered: every change sets the current event and starts a new one) ------------

    def _notify(self) -> None:
        self._wakeup.set()
        self._wakeup = asyncio.Event()

    async def _changed(self) -> None:
        await self._wakeup.wait()
