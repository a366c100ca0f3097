"""ChunkPipe: bytes from coroutines to a blocking reader thread, bounded, with errors in both directions."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from queen.artifacts._pipe import ChunkPipe, PipeAborted, PipeStalled, ReaderGone
from tests.fixtures.waiting import assert_eventually

pytestmark = pytest.mark.unit


def pipe_with(capacity: int = 100, min_read: int = 10, stall_timeout: float = 10.0) -> ChunkPipe:
    return ChunkPipe(
        asyncio.get_running_loop(), capacity=capacity, min_read=min_read, stall_timeout=stall_timeout
    )


async def in_thread(function: Callable[[], object]) -> object:
    return await asyncio.to_thread(function)


async def test_reader_gets_everything_in_order_then_the_end() -> None:
    pipe = pipe_with(capacity=64, min_read=16)
    data = bytes(range(200)) * 5

    def reader() -> bytes:
        pieces = []
        while piece := pipe.read(50):
            assert len(piece) <= 50
            pieces.append(piece)
        return b"".join(pieces)

    reading = asyncio.ensure_future(in_thread(reader))
    for start in range(0, len(data), 7):
        await pipe.write(data[start : start + 7])
    pipe.finish()
    assert await reading == data


async def test_reads_wait_for_min_read_bytes_unless_the_end_came() -> None:
    pipe = pipe_with(min_read=10)
    reading = asyncio.ensure_future(in_thread(lambda: pipe.read(100)))
    await pipe.write(b"abc")
    await asyncio.sleep(0.05)
    assert not reading.done()  # 3 < 10 bytes: keeps waiting
    await pipe.write(b"defghij")
    assert await reading == b"abcdefghij"
    reading = asyncio.ensure_future(in_thread(lambda: pipe.read(100)))
    await pipe.write(b"xy")
    pipe.finish()
    assert await reading == b"xy"
    assert await in_thread(lambda: pipe.read(100)) == b""


async def test_the_writer_waits_while_the_buffer_is_full() -> None:
    pipe = pipe_with(capacity=10, min_read=1)
    await pipe.write(b"0123456789")
    writing = asyncio.ensure_future(pipe.write(b"more"))
    await asyncio.sleep(0.05)
    assert not writing.done()
    assert await in_thread(lambda: pipe.read(4)) == b"0123"
    await writing


async def test_abort_makes_the_reader_raise_even_while_it_waits() -> None:
    pipe = pipe_with()
    waiting = threading.Event()

    def reader() -> None:
        waiting.set()
        pipe.read(100)

    reading = asyncio.ensure_future(in_thread(reader))
    await assert_eventually(waiting.is_set)
    await pipe.write(b"abc")
    pipe.abort()
    with pytest.raises(PipeAborted):
        await reading


async def test_a_stopped_reader_releases_the_writer() -> None:
    pipe = pipe_with(capacity=5)
    await pipe.write(b"12345")
    writing = asyncio.ensure_future(pipe.write(b"6"))
    await asyncio.sleep(0.01)
    pipe.reader_stopped()
    with pytest.raises(ReaderGone):
        await writing


async def test_a_stalled_stream_times_the_reader_out() -> None:
    pipe = pipe_with(stall_timeout=0.05)
    with pytest.raises(PipeStalled):
        await in_thread(lambda: pipe.read(10))
