"""The outbound frame queue: control frames first, bounded bulk, half-close last (ant.outbound)."""

from __future__ import annotations

import asyncio

import pytest

from ant.outbound import OutboundQueue

pytestmark = pytest.mark.unit


async def test_control_frames_overtake_bulk_frames_but_keep_their_own_order() -> None:
    queue: OutboundQueue[str] = OutboundQueue(max_bulk=10)
    await queue.put_bulk("log-1")
    await queue.put_bulk("result-1")
    queue.put_control("accepted-2")
    queue.put_control("heartbeat")
    queue.close()
    queue.put_control("too late")
    sent = [frame async for frame in queue.frames()]
    assert sent == ["accepted-2", "heartbeat", "log-1", "result-1"]


async def test_bulk_producers_wait_for_room_while_control_frames_do_not() -> None:
    queue: OutboundQueue[str] = OutboundQueue(max_bulk=2)
    await queue.put_bulk("b1")
    await queue.put_bulk("b2")
    third = asyncio.create_task(queue.put_bulk("b3"))
    await asyncio.sleep(0)
    assert not third.done()
    queue.put_control("pong")
    assert queue.bulk_waiting == 2
    assert await queue.get() == "pong"
    assert await queue.get() == "b1"
    await asyncio.wait_for(third, 1)
    assert [await queue.get() for _ in range(2)] == ["b2", "b3"]


async def test_closing_releases_waiting_producers() -> None:
    queue: OutboundQueue[str] = OutboundQueue(max_bulk=1)
    await queue.put_bulk("b1")
    waiting = asyncio.create_task(queue.put_bulk("b2"))
    await asyncio.sleep(0)
    queue.close()
    await asyncio.wait_for(waiting, 1)
    assert [frame async for frame in queue.frames()] == ["b1"]
