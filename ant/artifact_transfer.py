"""The Ant's ArtifactService client: downloads an attempt's dependencies and uploads its artifacts over
the channel of the Ant's stream to the Queen (what moves, and when, is described in `ant.artifacts`).

- Same channel as the stream (AntService overview): a large file never delays a heartbeat, and an Ant
  needs one address and one credential. The channel belongs to the stream's connection; while the Ant
  reconnects, a transfer waits up to `reconnect` seconds for the next one.
- A call that breaks with the connection (the channel closed under it, UNAVAILABLE, CANCELLED) is
  started again from the beginning on the next connection, `ATTEMPTS` times at most: a broken upload
  leaves nothing behind on the Queen, a download is rewritten from its first byte. (If the connection
  broke after the Queen stored an upload but before its answer arrived, the retry stores it a second
  time; the first copy is listed for the request but not in the task's artifacts.)
- Time limits: each UploadArtifact / DownloadArtifact call has a deadline of `transfer` seconds; a call
  in which no message moved for `stall` seconds is abandoned; DeleteArtifact has a deadline of `stall`.
- Downloads are written to a temporary file next to their destination and take its place only once
  size and SHA-256 match what the Queen recorded; they are readable by all (0644), never executable.
- Uploads stream in chunks of at most 1 MiB (the contract's limit), hashed while read; the Queen's answer
  must report the same size and SHA-256, or the upload counts as failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import mimetypes
import os
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TypeVar

import grpc
import structlog
from structlog.typing import FilteringBoundLogger

from ant import _convert
from ant.artifact_paths import ArtifactFile, download_destination, select_artifact_files
from ant.artifacts import (
    ArtifactDownloadError,
    ArtifactOwner,
    ArtifactTransferError,
    ArtifactUploadError,
    TransferOutcome,
)
from ant.executors.result import ArtifactRef
from formicary.v1 import artifact_service_pb2 as pb
from formicary.v1 import artifact_service_pb2_grpc as pb_grpc

__all__ = ["ATTEMPTS", "CHUNK_SIZE", "ChannelSource", "GrpcArtifactTransfer", "TransferTimeouts"]

CHUNK_SIZE = 1024 * 1024
"""Bytes per UploadArtifact chunk: the contract's maximum."""
ATTEMPTS = 3
"""Calls per artifact when the connection breaks under them."""

_DEFAULT_CONTENT_TYPE = "application/octet-stream"
# Compressed files are described by their compression: what a client needs to open them.
_ENCODED_CONTENT_TYPES = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
}
_TRANSIENT = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})
_T = TypeVar("_T")

ChannelSource = Callable[[], Awaitable[grpc.aio.Channel]]
"""Returns the channel of the Ant's current connection to the Queen, waiting while it reconnects."""
Metadata = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class TransferTimeouts:
    """Time limits in seconds (see the module docstring)."""

    stall: float = 60.0
    transfer: float = 3600.0
    reconnect: float = 60.0


class _ConnectionClosed(Exception):
    """The channel closed under a call: the Ant's connection to the Queen ended."""


class GrpcArtifactTransfer:
    """`ArtifactTransfer` over ArtifactService, on the channel `channel` returns."""

    def __init__(
        self,
        channel: ChannelSource,
        *,
        metadata: Metadata | None = None,
        timeouts: TransferTimeouts | None = None,
        logger: FilteringBoundLogger | None = None,
    ) -> None:
        self._channel = channel
        self._metadata = metadata
        self._timeouts = timeouts or TransferTimeouts()
        self._log: FilteringBoundLogger = logger or structlog.get_logger("ant.artifacts")
        # The built-in table only (no /etc/mime.types): the same guess on every host.
        self._mime = mimetypes.MimeTypes()

    # -- downloads -------------------------------------------------------------------------------------

    async def download(self, artifact_ids: Sequence[str], destination: Path) -> TransferOutcome:
        fetched: list[ArtifactRef] = []
        warnings: list[str] = []
        written: dict[str, str] = {}  # name -> id of the artifact written there
        for artifact_id in dict.fromkeys(i for i in artifact_ids if i):
            artifact = await self._call(
                f"download artifact {artifact_id}",
                ArtifactDownloadError,
                artifact_id,
                functools.partial(self._download_one, artifact_id=artifact_id, destination=destination),
            )
            if artifact.name in written:
                warnings.append(
                    f"artifact {artifact.name!r} ({artifact.id}) replaced the artifact of the same name "
                    f"({written[artifact.name]}) downloaded before it"
                )
            written[artifact.name] = artifact.id
            fetched.append(artifact)
        return TransferOutcome(artifacts=tuple(fetched), warnings=tuple(warnings))

    async def _download_one(
        self, channel: grpc.aio.Channel, *, artifact_id: str, destination: Path
    ) -> ArtifactRef:
        stub = pb_grpc.ArtifactServiceStub(channel)
        call = stub.DownloadArtifact(
            pb.DownloadArtifactRequest(artifact_id=artifact_id),
            timeout=self._timeouts.transfer,
            metadata=self._metadata,
        )
        try:
            first = await self._stalling(call.read())
            if (
                not isinstance(first, pb.DownloadArtifactResponse)
                or first.WhichOneof("content") != "artifact"
            ):
                raise ArtifactDownloadError(
                    f"cannot download artifact {artifact_id}: the Queen did not describe it first",
                    artifact=artifact_id,
                )
            artifact = _convert.artifact_from_proto(first.artifact)
            target = await asyncio.to_thread(download_destination, destination, artifact.name)
            part = await asyncio.to_thread(_PartFile, target)
            try:
                while isinstance(message := await self._stalling(call.read()), pb.DownloadArtifactResponse):
                    if message.WhichOneof("content") != "chunk":
                        raise ArtifactDownloadError(
                            f"cannot download artifact {artifact.name!r}: the Queen described it twice",
                            artifact=artifact_id,
                        )
                    if part.size + len(message.chunk) > artifact.content_length:
                        raise ArtifactDownloadError(
                            f"artifact {artifact.name!r} ({artifact_id}) is longer than the "
                            f"{artifact.content_length} bytes the Queen recorded",
                            artifact=artifact_id,
                        )
                    await asyncio.to_thread(part.write, message.chunk)
                if part.size != artifact.content_length or part.sha256 != artifact.sha256.lower():
                    raise ArtifactDownloadError(
                        f"artifact {artifact.name!r} ({artifact_id}) arrived as {part.size} bytes with "
                        f"sha256 {part.sha256}, but the Queen recorded {artifact.content_length} bytes with "
                        f"sha256 {artifact.sha256}",
                        artifact=artifact_id,
                    )
                await asyncio.to_thread(part.commit)
            finally:
                await asyncio.to_thread(part.discard)
        finally:
            call.cancel()
        self._log.info(
            "artifact_downloaded",
            artifact_id=artifact.id,
            name=artifact.name,
            content_length=artifact.content_length,
        )
        return artifact

    # -- uploads ---------------------------------------------------------------------------------------

    async def upload(self, paths: Sequence[str], base: Path, *, owner: ArtifactOwner) -> TransferOutcome:
        try:
            selection = await asyncio.to_thread(select_artifact_files, paths, base)
        except OSError as exc:
            raise ArtifactUploadError(f"cannot look for the task's artifacts: {exc}") from exc
        stored: list[ArtifactRef] = []
        try:
            for file in selection.files:
                sent = await self._call(
                    f"upload artifact {file.name!r}",
                    ArtifactUploadError,
                    file.name,
                    functools.partial(self._upload_one, file=file, owner=owner),
                )
                stored.append(sent.artifact)
                sent.check()
        except BaseException:
            # All or nothing: what was stored of this set must not stay listed for the request.
            if stored:
                await asyncio.shield(self._discard(stored, owner))
            raise
        return TransferOutcome(artifacts=tuple(stored), warnings=selection.warnings)

    async def _upload_one(
        self, channel: grpc.aio.Channel, *, file: ArtifactFile, owner: ArtifactOwner
    ) -> _Stored:
        stub = pb_grpc.ArtifactServiceStub(channel)
        call = stub.UploadArtifact(timeout=self._timeouts.transfer, metadata=self._metadata)
        try:
            reader = await asyncio.to_thread(_Reader, file.path)
            try:
                first = _convert.upload_metadata(
                    file.name, owner, content_type=self.content_type(file.name), content_length=file.size
                )
                await self._write(call, first)
                while chunk := await asyncio.to_thread(reader.read, CHUNK_SIZE):
                    await self._write(call, pb.UploadArtifactRequest(chunk=chunk))
            finally:
                await asyncio.to_thread(reader.close)
            await self._stalling(call.done_writing())
            response = await self._stalling(_answer(call))
        finally:
            call.cancel()
        artifact = _convert.artifact_from_proto(response.artifact)
        self._log.info(
            "artifact_uploaded",
            artifact_id=artifact.id,
            name=artifact.name,
            content_length=artifact.content_length,
            task_execution_id=owner.task_execution_id,
        )
        return _Stored(artifact, reader.size, reader.sha256)

    async def _write(
        self,
        call: grpc.aio.StreamUnaryCall[pb.UploadArtifactRequest, pb.UploadArtifactResponse],
        message: pb.UploadArtifactRequest,
    ) -> None:
        try:
            await self._stalling(call.write(message))
        except asyncio.InvalidStateError:
            await call  # the Queen ended the call early: raise its status
            raise ArtifactUploadError("the Queen ended the upload before it received everything") from None

    async def _discard(self, stored: Sequence[ArtifactRef], owner: ArtifactOwner) -> None:
        """Delete artifacts of a set that failed; what cannot be deleted is logged and left."""
        for artifact in stored:
            try:
                async with asyncio.timeout(self._timeouts.stall):
                    channel = await self._channel()
                    await pb_grpc.ArtifactServiceStub(channel).DeleteArtifact(
                        pb.DeleteArtifactRequest(artifact_id=artifact.id),
                        timeout=self._timeouts.stall,
                        metadata=self._metadata,
                    )
            except (grpc.aio.AioRpcError, grpc.aio.UsageError, TimeoutError, asyncio.CancelledError) as exc:
                if isinstance(exc, asyncio.CancelledError) and _being_cancelled():
                    raise
                self._log.warning(
                    "artifact_left_behind",
                    artifact_id=artifact.id,
                    name=artifact.name,
                    task_execution_id=owner.task_execution_id,
                    error=repr(exc),
                )

    def content_type(self, name: str) -> str:
        """The MIME type uploads of `name` carry, guessed from its extension."""
        kind, encoding = self._mime.guess_type(PurePosixPath(name).name, strict=False)
        if encoding:
            return _ENCODED_CONTENT_TYPES.get(encoding, _DEFAULT_CONTENT_TYPE)
        return kind or _DEFAULT_CONTENT_TYPE

    # -- calls -----------------------------------------------------------------------------------------

    async def _call(
        self,
        what: str,
        error: type[ArtifactTransferError],
        artifact: str,
        operation: Callable[[grpc.aio.Channel], Awaitable[_T]],
    ) -> _T:
        """`operation` on the current channel, again on the next one when the connection broke under it.
        Every failure becomes `error`, saying what could not be done and why."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                async with asyncio.timeout(self._timeouts.reconnect):
                    channel = await self._channel()
            except TimeoutError:
                raise error(
                    f"cannot {what}: the Ant has had no connection to the Queen for "
                    f"{self._timeouts.reconnect:g} s",
                    artifact=artifact,
                ) from None
            try:
                return await _closing_as_error(operation(channel))
            except _ConnectionClosed as exc:
                if attempt < ATTEMPTS:
                    self._log.warning("artifact_transfer_retried", what=what, attempt=attempt, error=str(exc))
                    continue
                raise error(
                    f"cannot {what}: the connection to the Queen closed during each of {ATTEMPTS} attempts",
                    artifact=artifact,
                ) from exc
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                if code in _TRANSIENT and attempt < ATTEMPTS:
                    self._log.warning("artifact_transfer_retried", what=what, attempt=attempt, code=code.name)
                    continue
                raise error(
                    f"cannot {what}: the Queen answered {code.name}: {exc.details()}",
                    artifact=artifact,
                    status=code.name,
                ) from exc
            except TimeoutError as exc:  # before OSError: it is one
                raise error(
                    f"cannot {what}: nothing moved for {self._timeouts.stall:g} s", artifact=artifact
                ) from exc
            except OSError as exc:
                raise error(f"cannot {what}: {exc}", artifact=artifact) from exc
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _stalling(self, step: Awaitable[_T]) -> _T:
        """`step`, or TimeoutError when it takes longer than the stall limit."""
        async with asyncio.timeout(self._timeouts.stall):
            return await step


@dataclass(frozen=True, slots=True)
class _Stored:
    """An uploaded artifact with what was sent of it."""

    artifact: ArtifactRef
    sent_size: int
    sent_sha256: str

    def check(self) -> None:
        """ArtifactUploadError unless the Queen stored exactly what was sent."""
        artifact = self.artifact
        if artifact.content_length != self.sent_size or artifact.sha256.lower() != self.sent_sha256:
            raise ArtifactUploadError(
                f"artifact {artifact.name!r} was stored as {artifact.content_length} bytes with sha256 "
                f"{artifact.sha256}, but {self.sent_size} bytes with sha256 {self.sent_sha256} were sent",
                artifact=artifact.name,
            )


async def _answer(
    call: grpc.aio.StreamUnaryCall[pb.UploadArtifactRequest, pb.UploadArtifactResponse],
) -> pb.UploadArtifactResponse:
    return await call


async def _closing_as_error(work: Awaitable[_T]) -> _T:
    """`work`, with a closed channel (a CancelledError while this task is not being cancelled, or a
    UsageError for a call started on it) turned into _ConnectionClosed."""
    try:
        return await work
    except asyncio.CancelledError:
        if _being_cancelled():
            raise
        raise _ConnectionClosed("the channel closed under the call") from None
    except grpc.aio.UsageError as exc:
        raise _ConnectionClosed(str(exc)) from exc


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class _Reader:
    """A file read in chunks, measured and hashed on the way (blocking: use it from a thread)."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("rb")
        self._digest = hashlib.sha256()
        self.size = 0

    def read(self, size: int) -> bytes:
        data = self._file.read(size)
        self._digest.update(data)
        self.size += len(data)
        return data

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    def close(self) -> None:
        self._file.close()


class _PartFile:
    """A download written beside its destination, which it replaces only when committed (blocking: use
    it from a thread)."""

    def __init__(self, destination: Path) -> None:
        descriptor, name = tempfile.mkstemp(dir=destination.parent, prefix=".formicary-", suffix=".part")
        self._file = os.fdopen(descriptor, "wb")
        self._temporary = Path(name)
        self._destination = destination
        self._digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._digest.update(data)
        self.size += len(data)

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    def commit(self) -> None:
        self._file.close()
        self._temporary.chmod(0o644)
        os.replace(self._temporary, self._destination)

    def discard(self) -> None:
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self._temporary.unlink()
