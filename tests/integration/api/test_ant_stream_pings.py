"""The Queen's side of an idle Ant stream: Pings at the ping interval (ant_service.proto section 8)."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from formicary.v1 import ant_service_pb2, ant_service_pb2_grpc, task_pb2

from .conftest import Api

pytestmark = pytest.mark.integration

Frame = ant_service_pb2.ConnectRequest


async def test_an_idle_stream_is_pinged_once_per_ping_interval(api: Api) -> None:
    call = ant_service_pb2_grpc.AntServiceStub(api.channel).Connect()
    try:
        register = Frame.Register(
            ant_id="ant-idle", methods=[task_pb2.TASK_METHOD_SHELL], max_capacity=1, host="test-host"
        )
        await call.write(Frame(register=register))
        first = await call.read()
        assert isinstance(first, ant_service_pb2.ConnectResponse)
        assert first.WhichOneof("frame") == "registered"
        interval = first.registered.ping_interval.ToTimedelta().total_seconds()
        assert interval > 0
        await call.write(Frame(heartbeat=Frame.Heartbeat(free_slots=0)))

        loop = asyncio.get_running_loop()
        seen = [loop.time()]  # when Registered was read: nothing was written to the Ant since
        nonces = []
        while len(nonces) < 3:
            frame = await asyncio.wait_for(call.read(), 10)
            assert isinstance(frame, ant_service_pb2.ConnectResponse)
            assert frame.WhichOneof("frame") == "ping", frame  # an idle stream gets nothing else
            seen.append(loop.time())
            nonces.append(frame.ping.nonce)
            await call.write(Frame(pong=Frame.Pong(nonce=frame.ping.nonce)))
    finally:
        call.cancel()

    assert nonces == sorted(set(nonces))
    # each Ping comes after an interval of silence, not sooner (half of it: the test reads late at times)
    gaps = [later - earlier for earlier, later in itertools.pairwise(seen)]
    assert all(gap >= interval / 2 for gap in gaps), (gaps, interval)
