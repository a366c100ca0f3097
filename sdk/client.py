"""The typed Python client of a Queen, over the generated gRPC stubs (asyncio).

    async with Client("127.0.0.1:7070") as client:  # token: $FORMICARY_TOKEN, or Client(..., token=...)
        await client.upload_definition(Path("playbook.yaml").read_text())
        request = await client.submit("secure-go-cicd", {"branch": "main"})
        async for event in client.watch(request.id):
            print(event.message)

Every call raises an `sdk.errors.FormicaryError` subclass on failure, never a `grpc.RpcError`. Unary
calls have a deadline (`timeout`, 30 s by default); the streams (`watch`, `stream_logs` with follow,
`download_artifact`) run as long as their subject does.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from datetime import datetime
from types import TracebackType
from typing import BinaryIO, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from formicary.v1 import (
    admin_service_pb2,
    admin_service_pb2_grpc,
    approval_pb2,
    approval_service_pb2,
    approval_service_pb2_grpc,
    artifact_service_pb2,
    artifact_service_pb2_grpc,
    job_definition_service_pb2,
    job_definition_service_pb2_grpc,
    job_request_service_pb2,
    job_request_service_pb2_grpc,
)
from sdk.credentials import bearer_interceptors, resolve_token
from sdk.errors import FormicaryError, InvalidArgument, error_from_rpc
from sdk.models import (
    Ant,
    Approval,
    Artifact,
    DefinitionUpload,
    Health,
    JobDefinition,
    JobRequest,
    JobRequestEvent,
    JobState,
    LogLine,
)

__all__ = ["ADDRESS_VARIABLE", "DEFAULT_ADDRESS", "Client", "resolve_address"]

DEFAULT_ADDRESS = "127.0.0.1:7070"
ADDRESS_VARIABLE = "FORMICARY_URL"
DEFAULT_TIMEOUT = 30.0
_PAGE_SIZE = 500
_MAX_MESSAGE_BYTES = 8 * 1024 * 1024

T = TypeVar("T")


def resolve_address(address: str | None = None) -> str:
    """The Queen's gRPC address: `address`, else $FORMICARY_URL, else 127.0.0.1:7070.

    `HOST:PORT`, optionally written `grpc://HOST:PORT`. An `http://` URL is refused with a hint: it is the
    REST gateway's address, not the gRPC one the client dials.
    """
    text = (address or os.environ.get(ADDRESS_VARIABLE, "") or DEFAULT_ADDRESS).strip()
    if text.startswith(("http://", "https://")):
        raise InvalidArgument(
            f"{text!r} is an HTTP URL; the client dials the Queen's gRPC address, HOST:PORT "
            f"(default {DEFAULT_ADDRESS})",
            field="address",
        )
    text = text.removeprefix("grpc://").rstrip("/")
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidArgument(f"{text!r} is not HOST:PORT (e.g. {DEFAULT_ADDRESS})", field="address")
    return text


def _timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise InvalidArgument("scheduled_at must be timezone-aware", field="scheduled_at")
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


class Client:
    """A connection to one Queen. Use as an async context manager, or call `close()`."""

    def __init__(
        self, address: str | None = None, *, timeout: float = DEFAULT_TIMEOUT, token: str | None = None
    ) -> None:
        """`token`: the bearer token sent with every call (default: $FORMICARY_TOKEN)."""
        self.address = resolve_address(address)
        self.timeout = timeout
        self._channel = grpc.aio.insecure_channel(
            self.address,
            options=[
                ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
            ],
            interceptors=bearer_interceptors(resolve_token(token)),
        )
        self._definitions = job_definition_service_pb2_grpc.JobDefinitionServiceStub(self._channel)
        self._requests = job_request_service_pb2_grpc.JobRequestServiceStub(self._channel)
        self._artifacts = artifact_service_pb2_grpc.ArtifactServiceStub(self._channel)
        self._admin = admin_service_pb2_grpc.AdminServiceStub(self._channel)
        self._approvals = approval_service_pb2_grpc.ApprovalServiceStub(self._channel)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from None

    # -- job definitions ---------------------------------------------------------------------------

    async def upload_definition(self, yaml: str, *, validate_only: bool = False) -> DefinitionUpload:
        """Store a new version of the job type the YAML defines (a no-op if identical to the latest).
        InvalidDefinition lists every problem (line, column, fix)."""
        request = job_definition_service_pb2.UploadJobDefinitionRequest(
            yaml=yaml, validate_only=validate_only
        )
        response = await self._call(
            lambda: self._definitions.UploadJobDefinition(request, timeout=self.timeout)
        )
        return DefinitionUpload.from_proto(response)

    async def get_definition(
        self, job_type: str = "", *, definition_id: str = "", version: int = 0
    ) -> JobDefinition:
        """By id, or the latest (or `version`) of a job type."""
        if definition_id:
            request = job_definition_service_pb2.GetJobDefinitionRequest(id=definition_id)
        else:
            request = job_definition_service_pb2.GetJobDefinitionRequest(job_type=job_type, version=version)
        response = await self._call(lambda: self._definitions.GetJobDefinition(request, timeout=self.timeout))
        return JobDefinition.from_proto(response.job_definition)

    async def list_definitions(self, *, include_disabled: bool = True) -> list[JobDefinition]:
        """The latest version of every job type, by job type."""
        found: list[JobDefinition] = []
        token = ""
        while True:
            request = job_definition_service_pb2.ListJobDefinitionsRequest(
                page_size=_PAGE_SIZE, page_token=token, include_disabled=include_disabled
            )
            response = await self._call(
                lambda: self._definitions.ListJobDefinitions(request, timeout=self.timeout)  # noqa: B023
            )
            found.extend(JobDefinition.from_proto(d) for d in response.job_definitions)
            token = response.next_page_token
            if not token:
                return found

    # -- job requests ------------------------------------------------------------------------------

    async def submit(
        self,
        job_type: str,
        params: Mapping[str, str] | None = None,
        *,
        priority: int = 0,
        user_key: str = "",
        scheduled_at: datetime | None = None,
        job_version: int = 0,
        job_group: str = "",
    ) -> JobRequest:
        """Queue a job request; DuplicateUserKey (with `existing_id`) if `user_key` was used before."""
        request = job_request_service_pb2.SubmitJobRequestRequest(
            job_type=job_type,
            params=dict(params or {}),
            job_priority=priority,
            user_key=user_key,
            scheduled_time=_timestamp(scheduled_at),
            job_version=str(job_version) if job_version else "",
            job_group=job_group,
        )
        response = await self._call(lambda: self._requests.SubmitJobRequest(request, timeout=self.timeout))
        return JobRequest.from_proto(response.job_request)

    async def get_request(self, request_id: int) -> JobRequest:
        """The request with its current execution's tasks."""
        request = job_request_service_pb2.GetJobRequestRequest(job_request_id=request_id)
        response = await self._call(lambda: self._requests.GetJobRequest(request, timeout=self.timeout))
        return JobRequest.from_proto(response.job_request)

    async def list_requests(
        self, *, job_type: str = "", states: Collection[JobState] = (), limit: int = 50
    ) -> list[JobRequest]:
        """The newest `limit` requests matching the filters."""
        found: list[JobRequest] = []
        token = ""
        while len(found) < limit:
            request = job_request_service_pb2.ListJobRequestsRequest(
                page_size=min(limit - len(found), _PAGE_SIZE),
                page_token=token,
                job_type=job_type,
                states=[state.to_proto() for state in states],
            )
            response = await self._call(
                lambda: self._requests.ListJobRequests(request, timeout=self.timeout)  # noqa: B023
            )
            found.extend(JobRequest.from_proto(r) for r in response.job_requests)
            token = response.next_page_token
            if not token:
                break
        return found[:limit]

    async def cancel(self, request_id: int, reason: str = "") -> JobRequest:
        request = job_request_service_pb2.CancelJobRequestRequest(job_request_id=request_id, reason=reason)
        response = await self._call(lambda: self._requests.CancelJobRequest(request, timeout=self.timeout))
        return JobRequest.from_proto(response.job_request)

    async def restart(self, request_id: int, *, hard: bool = False) -> JobRequest:
        request = job_request_service_pb2.RestartJobRequestRequest(job_request_id=request_id, hard=hard)
        response = await self._call(lambda: self._requests.RestartJobRequest(request, timeout=self.timeout))
        return JobRequest.from_proto(response.job_request)

    async def pause(self, request_id: int) -> JobRequest:
        request = job_request_service_pb2.PauseJobRequestRequest(job_request_id=request_id)
        response = await self._call(lambda: self._requests.PauseJobRequest(request, timeout=self.timeout))
        return JobRequest.from_proto(response.job_request)

    async def resume(self, request_id: int) -> JobRequest:
        request = job_request_service_pb2.ResumeJobRequestRequest(job_request_id=request_id)
        response = await self._call(lambda: self._requests.ResumeJobRequest(request, timeout=self.timeout))
        return JobRequest.from_proto(response.job_request)

    async def watch(self, request_id: int) -> AsyncIterator[JobRequestEvent]:
        """The request's events from its submission on, then live; ends after it reaches a terminal state."""
        call = self._requests.WatchJobRequest(
            job_request_service_pb2.WatchJobRequestRequest(job_request_id=request_id)
        )
        try:
            async for response in call:
                yield JobRequestEvent.from_proto(response.event)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from None
        finally:
            call.cancel()

    async def stream_logs(
        self, request_id: int, *, task_type: str = "", follow: bool = False
    ) -> AsyncIterator[LogLine]:
        """The console lines of the request's tasks (or one task's); with `follow`, new lines as they
        arrive, until the request is terminal."""
        call = self._requests.StreamTaskLogs(
            job_request_service_pb2.StreamTaskLogsRequest(
                job_request_id=request_id, task_type=task_type, follow=follow
            ),
            timeout=None if follow else self.timeout,
        )
        try:
            async for batch in call:
                for line in batch.lines:
                    yield LogLine.from_proto(
                        line,
                        task_type=batch.task_type,
                        task_execution_id=batch.task_execution_id,
                        task_retry=batch.task_retry,
                    )
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from None
        finally:
            call.cancel()

    # -- approvals ---------------------------------------------------------------------------------

    async def get_approval(self, request_id: int, task_type: str) -> Approval:
        """The MANUAL gate `task_type` of a job request."""
        request = approval_service_pb2.GetApprovalRequest(job_request_id=request_id, task_type=task_type)
        response = await self._call(lambda: self._approvals.GetApproval(request, timeout=self.timeout))
        return Approval.from_proto(response.approval)

    async def decide(
        self,
        request_id: int,
        task_type: str,
        *,
        approve: bool,
        comment: str = "",
        inputs: Mapping[str, str] | None = None,
    ) -> Approval:
        """Vote to approve or reject the gate, as the authenticated caller. The call carries an
        idempotency key, so a retry of the same call never counts twice."""
        decision = (
            approval_pb2.APPROVAL_DECISION_APPROVE if approve else approval_pb2.APPROVAL_DECISION_REJECT
        )
        request = approval_service_pb2.DecideRequest(
            job_request_id=request_id,
            task_type=task_type,
            decision=decision,
            comment=comment,
            inputs=dict(inputs or {}),
            idempotency_key=uuid.uuid4().hex,
        )
        response = await self._call(lambda: self._approvals.Decide(request, timeout=self.timeout))
        return Approval.from_proto(response.approval)

    # -- artifacts ---------------------------------------------------------------------------------

    async def list_artifacts(
        self, *, request_id: int | None = None, task_type: str = "", limit: int = 500
    ) -> list[Artifact]:
        """The newest `limit` artifacts (of one job request, one task type)."""
        found: list[Artifact] = []
        token = ""
        while len(found) < limit:
            request = artifact_service_pb2.ListArtifactsRequest(
                job_request_id=request_id or 0,
                task_type=task_type,
                page_size=min(limit - len(found), _PAGE_SIZE),
                page_token=token,
            )
            response = await self._call(
                lambda: self._artifacts.ListArtifacts(request, timeout=self.timeout)  # noqa: B023
            )
            found.extend(Artifact.from_proto(a) for a in response.artifacts)
            token = response.next_page_token
            if not token:
                break
        return found[:limit]

    async def download_artifact(self, artifact_id: str, destination: BinaryIO) -> Artifact:
        """Write the artifact's content to `destination`; returns its description."""
        call = self._artifacts.DownloadArtifact(
            artifact_service_pb2.DownloadArtifactRequest(artifact_id=artifact_id)
        )
        described: Artifact | None = None
        try:
            async for message in call:
                if message.WhichOneof("content") == "artifact":
                    described = Artifact.from_proto(message.artifact)
                else:
                    destination.write(message.chunk)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from None
        finally:
            call.cancel()
        if described is None:
            raise FormicaryError(f"the Queen sent no description of artifact {artifact_id}")
        return described

    # -- operators ---------------------------------------------------------------------------------

    async def list_ants(self) -> list[Ant]:
        response = await self._call(
            lambda: self._admin.ListAnts(admin_service_pb2.ListAntsRequest(), timeout=self.timeout)
        )
        return [Ant.from_proto(ant) for ant in response.ants]

    async def health(self) -> Health:
        response = await self._call(
            lambda: self._admin.GetHealth(admin_service_pb2.GetHealthRequest(), timeout=self.timeout)
        )
        return Health.from_proto(response)
