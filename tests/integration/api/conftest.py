"""Fixtures of the public API tests: a real Queen on a free port (per database), stubs dialled to it, a
scripted Ant, and helpers to read rich error statuses the way clients do (grpcio-status)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from formicary.v1 import (
    admin_service_pb2_grpc,
    ant_service_pb2,
    ant_service_pb2_grpc,
    job_definition_service_pb2,
    job_definition_service_pb2_grpc,
    job_request_service_pb2_grpc,
    log_line_pb2,
    state_pb2,
    task_pb2,
)
from queen.app import Queen
from queen.settings import QueenSettings
from tests.fixtures.auth import authorized_channel, mint

REPO = Path(__file__).resolve().parents[3]
PLAYBOOKS = REPO / "tests" / "fixtures" / "playbooks"


def playbook(name: str) -> str:
    """A playbook's YAML: from examples/ when it is there, else from the test fixtures."""
    example = REPO / "examples" / name
    return (example if example.exists() else PLAYBOOKS / name).read_text()


SHELL_YAML = """\
job_type: shell-hello
description: two shell tasks
required_params: [who]
tasks:
- task_type: greet
  method: SHELL
  script:
    - echo hello {{.who}}
  on_completed: bye
- task_type: bye
  method: SHELL
  script: [echo bye]
"""


@dataclass(frozen=True, slots=True)
class Api:
    """Stubs of the public services, on one channel."""

    definitions: job_definition_service_pb2_grpc.JobDefinitionServiceStub
    requests: job_request_service_pb2_grpc.JobRequestServiceStub
    admin: admin_service_pb2_grpc.AdminServiceStub
    channel: grpc.aio.Channel
    port: int

    def upload(self, yaml: str) -> Awaitable[job_definition_service_pb2.UploadJobDefinitionResponse]:
        """The upload call (await it; `failure()` takes it as it is)."""
        return self.definitions.UploadJobDefinition(
            job_definition_service_pb2.UploadJobDefinitionRequest(yaml=yaml)
        )


@pytest.fixture
async def queen(database_url: str, tmp_path: Path) -> AsyncIterator[Queen]:
    settings = QueenSettings(
        grpc_port=0,
        data_dir=tmp_path,
        database_url=database_url,
        heartbeat_interval=timedelta(milliseconds=200),
        sweep_interval=timedelta(seconds=1),
    )
    queen = Queen(settings)
    await queen.start()
    try:
        yield queen
    finally:
        await queen.stop()


@pytest.fixture
async def admin_token(queen: Queen) -> str:
    return await mint(queen)


@pytest.fixture
async def api(queen: Queen, admin_token: str) -> AsyncIterator[Api]:
    async with authorized_channel(f"127.0.0.1:{queen.grpc_port}", admin_token) as channel:
        yield Api(
            definitions=job_definition_service_pb2_grpc.JobDefinitionServiceStub(channel),
            requests=job_request_service_pb2_grpc.JobRequestServiceStub(channel),
            admin=admin_service_pb2_grpc.AdminServiceStub(channel),
            channel=channel,
            port=queen.grpc_port,
        )


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed call as a client sees it: code, message, and the unpacked rich-status details."""

    code: grpc.StatusCode
    message: str
    details: tuple[any_pb2.Any, ...]

    def unpacked(self, kind: type[Any]) -> list[Any]:
        found = []
        for packed in self.details:
            message = kind()
            if packed.Is(message.DESCRIPTOR):
                packed.Unpack(message)
                found.append(message)
        return found

    @property
    def info(self) -> error_details_pb2.ErrorInfo:
        (info,) = self.unpacked(error_details_pb2.ErrorInfo)
        return info


async def failure(call: Awaitable[Message]) -> Failure:
    """Await a unary call that must fail; read its google.rpc.Status with grpcio-status."""
    with pytest.raises(grpc.aio.AioRpcError):
        await call
    assert isinstance(call, grpc.aio.Call)
    status: status_pb2.Status | None = await rpc_status.aio.from_call(call)
    code = await call.code()
    assert status is not None, f"{code} without rich status details"
    return Failure(code, status.message, tuple(status.details))


class ScriptedAnt:
    """An Ant driven by the test over the real AntService stream: it registers SHELL, offers one slot,
    and answers each dispatch with the log lines and result it is given (at protocol 3, all of that in
    one Batch frame)."""

    def __init__(
        self, channel: grpc.aio.Channel, ant_id: str = "ant-test", protocol_version: int = 0
    ) -> None:
        self.last_answered = 0
        self.protocol_version = protocol_version
        self._batch: list[ant_service_pb2.ConnectRequest] | None = None
        self._outbox: asyncio.Queue[ant_service_pb2.ConnectRequest | None] = asyncio.Queue()
        self._call = ant_service_pb2_grpc.AntServiceStub(channel).Connect(self._frames())
        self.ant_id = ant_id
        self.dispatches: asyncio.Queue[ant_service_pb2.ConnectResponse.DispatchTask] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None

    async def _frames(self) -> AsyncIterator[ant_service_pb2.ConnectRequest]:
        while (frame := await self._outbox.get()) is not None:
            yield frame

    def send(self, **frame: Any) -> None:
        if self._batch is not None:
            self._batch.append(ant_service_pb2.ConnectRequest(**frame))
        else:
            self._outbox.put_nowait(ant_service_pb2.ConnectRequest(**frame))

    async def start(self) -> None:
        Frame = ant_service_pb2.ConnectRequest
        self.send(
            register=Frame.Register(
                ant_id=self.ant_id,
                methods=[task_pb2.TASK_METHOD_SHELL],
                max_capacity=1,
                host="test-host",
                protocol_version=self.protocol_version,
            )
        )
        first = await self._call.read()
        assert isinstance(first, ant_service_pb2.ConnectResponse)
        assert first.WhichOneof("frame") == "registered"
        assert first.registered.protocol_version == max(self.protocol_version, 1)
        self.heartbeat(free_slots=1)
        self._reader = asyncio.create_task(self._read())

    def heartbeat(self, free_slots: int, running: tuple[str, ...] = ()) -> None:
        # last_acked_sequence: what this heartbeat's free_slots already accounts for (ant_service.proto §3)
        self.send(
            heartbeat=ant_service_pb2.ConnectRequest.Heartbeat(
                free_slots=free_slots,
                running_task_execution_ids=list(running),
                last_acked_sequence=self.last_answered,
            )
        )

    async def _read(self) -> None:
        while True:
            frame = await self._call.read()
            if not isinstance(frame, ant_service_pb2.ConnectResponse):
                return
            inner = frame.batch.frames if frame.WhichOneof("frame") == "batch" else [frame]
            for one in inner:
                if one.WhichOneof("frame") == "dispatch_task":
                    await self.dispatches.put(one.dispatch_task)

    async def run_next(self, lines: list[str], exit_code: str = "0") -> task_pb2.TaskRequest:
        """Take the next dispatch, accept it, send `lines` as its log, and complete it."""
        dispatch = await asyncio.wait_for(self.dispatches.get(), 10)
        task = dispatch.request
        self.last_answered = max(self.last_answered, dispatch.sequence)
        Frame = ant_service_pb2.ConnectRequest
        if self.protocol_version >= 3:
            self._batch = []
        self.send(
            task_accepted=Frame.TaskAccepted(
                sequence=dispatch.sequence, task_execution_id=task.task_execution_id
            )
        )
        self.heartbeat(free_slots=0, running=(task.task_execution_id,))
        self.send(
            log_lines=Frame.LogLines(
                task_execution_id=task.task_execution_id,
                task_retry=task.task_retry,
                lines=[
                    log_line_pb2.LogLine(sequence=n, stream=log_line_pb2.LOG_STREAM_STDOUT, text=text)
                    for n, text in enumerate(lines, start=1)
                ],
            )
        )
        self.send(
            task_result=Frame.TaskResult(
                sequence=dispatch.sequence,
                response=task_pb2.TaskResponse(
                    job_request_id=task.job_request_id,
                    task_execution_id=task.task_execution_id,
                    task_type=task.task_type,
                    correlation_id=task.correlation_id,
                    status=state_pb2.TASK_STATE_COMPLETED,
                    ant_id=self.ant_id,
                    exit_code=exit_code,
                ),
            )
        )
        self.heartbeat(free_slots=1)
        if self._batch is not None:
            frames, self._batch = self._batch, None
            self._outbox.put_nowait(Frame(batch=Frame.Batch(frames=frames)))
        return task

    async def stop(self) -> None:
        await self._outbox.put(None)
        self._call.cancel()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
