"""ArtifactService servicer: chunked upload and download of artifacts, listing and deletion."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import grpc

from formicary.v1 import artifact_pb2
from formicary.v1 import artifact_service_pb2 as pb
from formicary.v1 import artifact_service_pb2_grpc as pb_grpc
from queen.api import _convert as convert
from queen.api.errors import stream_rpc, unary_rpc
from queen.domain.errors import FormicaryError, InvalidArgument
from queen.domain.identity import Identity
from queen.services.artifacts import ArtifactService, ArtifactUpload
from queen.store.records import ArtifactKind, ArtifactRecord

__all__ = ["DOWNLOAD_CHUNK_SIZE", "MAX_UPLOAD_CHUNK_BYTES", "ArtifactServicer", "artifact_to_proto"]

# Content of DownloadArtifact travels in chunks of this size (the contract allows up to 1 MiB).
DOWNLOAD_CHUNK_SIZE = 64 * 1024
# The contract's limit for one UploadArtifact chunk; larger ones are refused, which keeps the memory an
# upload can hold predictable.
MAX_UPLOAD_CHUNK_BYTES = 1024 * 1024
_MAX_REQUEST_ID = 2**63 - 1  # ids are BIGINT: anything above cannot exist (and would overflow the driver)
_MAX_TASK_TYPE = 256

_KIND_TO_PROTO = {
    kind: artifact_pb2.ArtifactKind.Value(f"ARTIFACT_KIND_{kind.value}") for kind in ArtifactKind
}
_KIND_FROM_PROTO: dict[int, ArtifactKind] = {int(value): kind for kind, value in _KIND_TO_PROTO.items()}

_Context = grpc.aio.ServicerContext[Any, Any]


def artifact_to_proto(record: ArtifactRecord) -> artifact_pb2.Artifact:
    """An artifact record as the public `Artifact` message."""
    return artifact_pb2.Artifact(
        id=record.id,
        name=record.name,
        kind=_KIND_TO_PROTO[record.kind],
        bucket=record.bucket,
        key=record.key,
        sha256=record.sha256,
        content_length=record.content_length,
        content_type=record.content_type,
        job_request_id=record.job_request_id or 0,
        job_execution_id=record.job_execution_id or "",
        task_execution_id=record.task_execution_id or "",
        task_type=record.task_type,
        organization_id=record.organization_id,
        user_id=record.user_id,
        metadata=dict(record.metadata),
        expiry_time=convert.timestamp(record.expires_at),
        create_time=convert.timestamp(record.created_at),
    )


def _kind(value: int, *, field: str = "kind") -> ArtifactKind | None:
    """A proto kind; None for UNSPECIFIED, InvalidArgument for a value this Queen does not know."""
    if value == artifact_pb2.ARTIFACT_KIND_UNSPECIFIED:
        return None
    kind = _KIND_FROM_PROTO.get(value)
    if kind is None:
        raise InvalidArgument(f"unknown artifact kind {value}", field=field)
    return kind


def _job_request_id(value: int) -> int | None:
    if value > _MAX_REQUEST_ID:
        raise InvalidArgument(f"job_request_id {value} is not a job request id", field="job_request_id")
    return value or None


def _upload(metadata: pb.UploadArtifactMetadata) -> ArtifactUpload:
    return ArtifactUpload(
        name=metadata.name,
        kind=_kind(metadata.kind) or ArtifactKind.USER,
        content_type=metadata.content_type,
        job_request_id=_job_request_id(metadata.job_request_id),
        task_execution_id=metadata.task_execution_id,
        task_type=metadata.task_type,
        metadata=dict(metadata.metadata),
        retention=(
            metadata.retention_duration.ToTimedelta() if metadata.HasField("retention_duration") else None
        ),
        content_length=metadata.content_length or None,
        sha256=metadata.sha256,
    )


async def _chunks(messages: AsyncIterator[pb.UploadArtifactRequest]) -> AsyncIterator[bytes]:
    """The content of the messages after the first: each must carry a chunk of at most 1 MiB."""
    async for message in messages:
        if message.WhichOneof("content") != "chunk":
            raise InvalidArgument(
                "only the first message may carry metadata; send chunks after it", field="chunk"
            )
        if len(message.chunk) > MAX_UPLOAD_CHUNK_BYTES:
            raise InvalidArgument(
                f"a chunk holds at most {MAX_UPLOAD_CHUNK_BYTES} bytes, got {len(message.chunk)}",
                field="chunk",
            )
        yield message.chunk


class ArtifactServicer(pb_grpc.ArtifactServiceServicer):
    """Thin: convert, call `ArtifactService` as the caller, convert back."""

    def __init__(self, artifacts: ArtifactService) -> None:
        self._artifacts = artifacts

    def _identity(self, context: _Context) -> Identity:
        return convert.identity_of(context)

    @unary_rpc
    async def UploadArtifact(
        self, request_iterator: AsyncIterator[pb.UploadArtifactRequest], context: _Context
    ) -> pb.UploadArtifactResponse:
        identity = self._identity(context)
        first = await anext(request_iterator, None)
        try:
            if first is None or first.WhichOneof("content") != "metadata":
                raise InvalidArgument("the first message must carry the metadata", field="metadata")
            record = await self._artifacts.upload(
                identity, _upload(first.metadata), _chunks(request_iterator)
            )
        except FormicaryError:
            # A refusal sent while the client still streams can reach it as a bare INTERNAL ("error from
            # Core"); reading a bounded rest of the stream first lets the real status arrive.
            await _drain(request_iterator)
            raise
        return pb.UploadArtifactResponse(artifact=artifact_to_proto(record))

    @stream_rpc
    async def DownloadArtifact(
        self, request: pb.DownloadArtifactRequest, context: _Context
    ) -> AsyncGenerator[pb.DownloadArtifactResponse, None]:
        record, content = await self._artifacts.download(
            self._identity(context), request.artifact_id, chunk_size=DOWNLOAD_CHUNK_SIZE
        )
        async with contextlib.aclosing(content):
            yield pb.DownloadArtifactResponse(artifact=artifact_to_proto(record))
            async for chunk in content:
                yield pb.DownloadArtifactResponse(chunk=chunk)

    @unary_rpc
    async def ListArtifacts(
        self, request: pb.ListArtifactsRequest, context: _Context
    ) -> pb.ListArtifactsResponse:
        identity = self._identity(context)
        if len(request.task_type) > _MAX_TASK_TYPE:
            raise InvalidArgument(f"task_type is longer than {_MAX_TASK_TYPE} characters", field="task_type")
        job_request_id = _job_request_id(request.job_request_id)
        kind = _kind(request.kind)
        page = convert.page_request(
            request.page_size, request.page_token, (job_request_id, request.task_type, kind)
        )
        # One more than the page: whether there is a next page without counting them all.
        found = await self._artifacts.list(
            identity,
            job_request_id=job_request_id,
            task_type=request.task_type or None,
            kind=kind,
            limit=page.limit + 1,
            offset=page.offset,
        )
        more = len(found) > page.limit
        return pb.ListArtifactsResponse(
            artifacts=[artifact_to_proto(record) for record in found[: page.limit]],
            next_page_token=page.next_token(page.offset + page.limit) if more else "",
        )

    @unary_rpc
    async def DeleteArtifact(
        self, request: pb.DeleteArtifactRequest, context: _Context
    ) -> pb.DeleteArtifactResponse:
        await self._artifacts.delete(self._identity(context), request.artifact_id)
        return pb.DeleteArtifactResponse()


_DRAIN_BYTES = 8 * 1024 * 1024
_DRAIN_SECONDS = 5.0


async def _drain(request_iterator: AsyncIterator[pb.UploadArtifactRequest]) -> None:
    """Read and drop what the client still sends, up to a few MiB and seconds."""
    read = 0
    with contextlib.suppress(Exception):
        async with asyncio.timeout(_DRAIN_SECONDS):
            async for message in request_iterator:
                read += len(message.chunk)
                if read > _DRAIN_BYTES:
                    return
