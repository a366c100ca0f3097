"""The Queen's side of protocol 3's Batch frames: what a Batch may not hold ends the stream with
INVALID_ARGUMENT (ant_service.proto, PROTOCOL VERSIONS); a job run by an Ant answering in Batches is in
test_request_service.py."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from formicary.v1 import ant_service_pb2, ant_service_pb2_grpc, task_pb2

from .conftest import Api

pytestmark = pytest.mark.integration

Frame = ant_service_pb2.ConnectRequest


async def _read_to_the_end(call: grpc.aio.StreamStreamCall[Frame, ant_service_pb2.ConnectResponse]) -> None:
    while await call.read() is not grpc.aio.EOF:
        pass


@pytest.mark.parametrize(
    ("inner", "message"),
    [
        (Frame(register=Frame.Register(ant_id="again")), "a Batch may not hold a Register frame"),
        (
            Frame(batch=Frame.Batch(frames=[Frame(pong=Frame.Pong(nonce=1))])),
            "a Batch may not hold a Batch frame",
        ),
    ],
    ids=["register", "batch"],
)
async def test_a_batch_holding_a_register_or_a_batch_ends_the_stream(
    api: Api, inner: Frame, message: str
) -> None:
    call = ant_service_pb2_grpc.AntServiceStub(api.channel).Connect()
    register = Frame.Register(
        ant_id="ant-batch", methods=[task_pb2.TASK_METHOD_SHELL], max_capacity=1, host="h", protocol_version=3
    )
    await call.write(Frame(register=register))
    first = await call.read()
    assert isinstance(first, ant_service_pb2.ConnectResponse)
    assert first.registered.protocol_version == 3
    heartbeat = Frame(heartbeat=Frame.Heartbeat(free_slots=0))
    await call.write(Frame(batch=Frame.Batch(frames=[heartbeat, inner])))
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        await asyncio.wait_for(_read_to_the_end(call), 10)
    assert ended.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert ended.value.details() == message
