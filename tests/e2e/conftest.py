"""End-to-end fixtures: a Queen and Ants as real processes, and a gRPC client of the public API."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from formicary.v1 import (
    admin_service_pb2,
    admin_service_pb2_grpc,
    approval_service_pb2_grpc,
    artifact_service_pb2_grpc,
    job_definition_service_pb2,
    job_definition_service_pb2_grpc,
    job_request_pb2,
    job_request_service_pb2,
    job_request_service_pb2_grpc,
    state_pb2,
)
from tests.fixtures.auth import authorized_channel
from tests.fixtures.processes import admin_token, approver_token, started_count, stop_leftovers
from tests.fixtures.waiting import assert_eventually

REPO = Path(__file__).resolve().parents[2]
TERMINAL = frozenset(
    {state_pb2.JOB_STATE_COMPLETED, state_pb2.JOB_STATE_FAILED, state_pb2.JOB_STATE_CANCELLED}
)


def free_port() -> int:
    """A port free right now on loopback (a restarted Queen must come back on the same one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Client:
    """Stubs of the public API on one channel to a Queen process."""

    channel: grpc.aio.Channel
    definitions: job_definition_service_pb2_grpc.JobDefinitionServiceStub
    requests: job_request_service_pb2_grpc.JobRequestServiceStub
    admin: admin_service_pb2_grpc.AdminServiceStub
    artifacts: artifact_service_pb2_grpc.ArtifactServiceStub
    approvals: approval_service_pb2_grpc.ApprovalServiceStub
    # metadata of another person than the one who submits (to decide gates: separation of duties)
    approver: tuple[tuple[str, str], ...] = ()

    async def upload(self, yaml: str) -> None:
        await self.definitions.UploadJobDefinition(
            job_definition_service_pb2.UploadJobDefinitionRequest(yaml=yaml)
        )

    async def submit(self, job_type: str, **params: str) -> int:
        response = await self.requests.SubmitJobRequest(
            job_request_service_pb2.SubmitJobRequestRequest(job_type=job_type, params=params)
        )
        return int(response.job_request.id)

    async def get(self, request_id: int) -> job_request_pb2.JobRequest:
        response = await self.requests.GetJobRequest(
            job_request_service_pb2.GetJobRequestRequest(job_request_id=request_id)
        )
        return response.job_request

    async def wait_for(
        self,
        request_id: int,
        done: Callable[[job_request_pb2.JobRequest], bool],
        *,
        timeout: float = 60.0,  # noqa: ASYNC109 - passed on to assert_eventually
    ) -> job_request_pb2.JobRequest:
        async def check() -> job_request_pb2.JobRequest | None:
            request = await self.get(request_id)
            return request if done(request) else None

        found = await assert_eventually(check, timeout=timeout, interval=0.1, message=f"request {request_id}")
        assert found is not None
        return found

    async def ants(self) -> list[str]:
        response = await self.admin.ListAnts(admin_service_pb2.ListAntsRequest())
        return [ant.ant_id for ant in response.ants]


def tasks_of(request: job_request_pb2.JobRequest) -> dict[str, str]:
    """task_type → state name without its prefix (COMPLETED, FAILED, ...)."""
    return {
        task.task_type: state_pb2.TaskState.Name(task.task_state).removeprefix("TASK_STATE_")
        for task in request.execution.tasks
    }


def state_of(request: job_request_pb2.JobRequest) -> str:
    return state_pb2.JobState.Name(request.job_state).removeprefix("JOB_STATE_")


@pytest.fixture(autouse=True)
async def _no_leftover_processes() -> AsyncIterator[None]:
    """Whatever a test started is stopped after it, even if it failed before arming its own clean-up."""
    mark = started_count()
    yield
    await stop_leftovers(mark)


@pytest.fixture
async def connect() -> AsyncIterator[Callable[[int], Client]]:
    """Open clients to Queens by port; all channels are closed at the end of the test."""
    channels: list[grpc.aio.Channel] = []

    def open_client(port: int) -> Client:
        channel = authorized_channel(f"127.0.0.1:{port}", admin_token(port))
        channels.append(channel)
        return Client(
            channel,
            job_definition_service_pb2_grpc.JobDefinitionServiceStub(channel),
            job_request_service_pb2_grpc.JobRequestServiceStub(channel),
            admin_service_pb2_grpc.AdminServiceStub(channel),
            artifact_service_pb2_grpc.ArtifactServiceStub(channel),
            approval_service_pb2_grpc.ApprovalServiceStub(channel),
            (("authorization", f"Bearer {approver_token(port)}"),),
        )

    yield open_client
    await asyncio.gather(*(channel.close() for channel in channels))
