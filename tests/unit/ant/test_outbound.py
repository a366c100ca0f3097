"""The outbound frame queue: control frames first, deferred frames built late, bulk room, the idle hook,
half-close last (ant.outbound)."""

from __future__ import annotations

import asyncio

import pytest

from ant.outbound import BATCH_BYTES, BATCH_FRAMES, OutboundQueue

pytestmark = pytest.mark.unit


async def test_control_frames_overtake_bulk_frames_but_keep_their_own_order() -> None:
    queue: OutboundQueue[str] = OutboundQueue(max_bulk=10)
    queue.put_bulk("log-1")
    queue.put_bulk("result-1")
    queue.put_control("accepted-2")
    queue.put_control("pong")
    queue.close()
    queue.put_control("too late")
    sent = [frame async for frame in queue.frames()]
    assert sent == ["accepted-2", "pong", "log-1", "result-1"]


async def test_a_deferred_frame_is_built_after_the_control_frames_and_once_for_many_requests() -> None:
    queue: OutboundQueue[str] = OutboundQueue()
    state = {"answered": 0}
    built: list[str] = []

    def heartbeat() -> str:
        built.append(f"heartbeat covering {state['answered']}")
        return built[-1]

    queue.put_control("accepted-1")
    state["answered"] = 1
    queue.put_deferred(heartbeat)
    queue.put_bulk("result-0")
    queue.put_control("accepted-2")  # queued after the request: still sent before the heartbeat
    state["answered"] = 2
    queue.put_deferred(heartbeat)
    assert [queue.next_frame() for _ in range(4)] == [
        "accepted-1",
        "accepted-2",
        "heartbeat covering 2",
        "result-0",
    ]
    assert built == ["heartbeat covering 2"]
    assert queue.next_frame() is None


async def test_bulk_room_is_what_producers_go_by() -> None:
    queue: OutboundQueue[str] = OutboundQueue(max_bulk=2)
    assert queue.bulk_room == 2
    queue.put_bulk("b1")
    queue.put_bulk("b2")
    assert queue.bulk_room == 0
    queue.put_bulk("result")  # a producer may go beyond it for a small frame
    assert queue.bulk_room == 0
    assert queue.next_frame() == "b1"
    assert queue.bulk_room == 0
    assert [queue.next_frame(), queue.next_frame()] == ["b2", "result"]
    assert queue.bulk_room == 2
    assert queue.idle


async def test_the_idle_hook_fills_an_empty_queue_and_a_poke_wakes_the_writer() -> None:
    waiting = ["line-1"]

    def when_idle() -> None:
        while waiting:
            queue.put_bulk(waiting.pop(0))

    queue: OutboundQueue[str] = OutboundQueue(when_idle=when_idle)
    queue.put_control("accepted")
    frames = queue.frames()
    assert await anext(frames) == "accepted"
    assert await anext(frames) == "line-1"  # nothing queued: the hook was asked
    writer = asyncio.ensure_future(anext(frames))
    await asyncio.sleep(0)
    assert not writer.done()  # nothing queued, nothing from the hook: the writer waits
    waiting.append("line-2")
    queue.poke()
    assert await asyncio.wait_for(writer, 1) == "line-2"
    queue.close()
    assert [frame async for frame in frames] == []


async def test_closing_ends_the_frames_after_what_is_queued_without_asking_the_hook() -> None:
    asked: list[bool] = []
    queue: OutboundQueue[str] = OutboundQueue(when_idle=lambda: asked.append(True))
    frames = queue.frames()
    writer = asyncio.ensure_future(anext(frames))
    await asyncio.sleep(0)
    queue.put_bulk("b1")
    assert await asyncio.wait_for(writer, 1) == "b1"
    queue.put_control("c1")
    queue.close()
    asked.clear()
    assert [frame async for frame in frames] == ["c1"]
    assert asked == []


def test_with_batching_a_turn_takes_all_that_is_queued_in_order_and_a_lone_frame_goes_bare() -> None:
    queue: OutboundQueue[str] = OutboundQueue(max_bulk=10)
    queue.batch_with("+".join, len)
    queue.put_control("pong")
    assert queue.next_frame() == "pong"
    state = {"answered": 0}
    queue.put_bulk("result-1")
    queue.put_control("accepted-1")
    state["answered"] = 1
    queue.put_deferred(lambda: f"heartbeat-{state['answered']}")
    queue.put_control("accepted-2")
    state["answered"] = 2  # the heartbeat is built when the batch reaches it: after accepted-2
    assert queue.next_frame() == "accepted-1+accepted-2+heartbeat-2+result-1"
    assert queue.next_frame() is None
    assert queue.idle


def test_a_batch_stops_at_its_size_and_count_and_the_rest_goes_next() -> None:
    queue: OutboundQueue[str] = OutboundQueue(max_bulk=1000)
    queue.batch_with("|".join, len)
    half = "x" * (BATCH_BYTES // 2)
    queue.put_bulk("a" + half)
    queue.put_bulk("b" + half)  # together over the bound: it waits for the next turn
    queue.put_bulk("c")
    assert queue.next_frame() == "a" + half
    assert not queue.idle
    assert queue.next_frame() == "b" + half + "|c"
    for n in range(BATCH_FRAMES + 1):
        queue.put_control(str(n))
    assert queue.next_frame() == "|".join(str(n) for n in range(BATCH_FRAMES))
    assert queue.next_frame() == str(BATCH_FRAMES)


def test_the_idle_hook_fills_a_batch_too() -> None:
    waiting = ["lines-1"]

    def send_waiting() -> None:
        while waiting:
            queue.put_bulk(waiting.pop())

    queue: OutboundQueue[str] = OutboundQueue(when_idle=send_waiting)
    queue.batch_with("+".join, len)
    queue.put_control("accepted-1")
    assert queue.next_frame() == "accepted-1+lines-1"
    assert queue.next_frame() is None
