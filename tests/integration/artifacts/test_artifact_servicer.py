"""ArtifactService over gRPC: a `grpc.aio` server on a free port with the servicer, a real database and
a real object store; the client side is the generated stub, as any client in any language would use."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from formicary.v1 import artifact_pb2
from formicary.v1 import artifact_service_pb2 as pb
from formicary.v1 import artifact_service_pb2_grpc as pb_grpc
from queen.api.artifact_service import DOWNLOAD_CHUNK_SIZE, ArtifactServicer
from queen.api.auth_interceptor import AuthInterceptor
from queen.artifacts import ObjectStore, StoredObject
from queen.security.authenticator import Authenticator, AuthSettings
from queen.services.artifacts import ArtifactService
from queen.store import Database
from tests.fixtures.object_stores import ObjectStoreConfig
from tests.fixtures.waiting import assert_eventually

from .conftest import ANT, MIB, Job, content, leftovers, start_job

pytestmark = pytest.mark.integration

LIMIT = 4 * MIB
UPLOAD_CHUNK = 256 * 1024


class WatchedStore:
    """The object store, counting the bytes its puts have taken in (to know an upload is under way)."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store
        self.received = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def put(self, key: str, chunks: AsyncIterator[bytes], **options: Any) -> StoredObject:
        async def counted() -> AsyncIterator[bytes]:
            async for chunk in chunks:
                self.received += len(chunk)
                yield chunk

        return await self._store.put(key, counted(), **options)


@dataclass(frozen=True, slots=True)
class Api:
    stub: pb_grpc.ArtifactServiceStub
    store: WatchedStore
    job: Job
    other_job: Job


@pytest.fixture
async def api(db: Database, object_store: ObjectStore) -> AsyncIterator[Api]:
    store = WatchedStore(object_store)
    # In embedded mode every call acts as the Queen's local identity; here that is an Ant's.
    servicer = ArtifactServicer(ArtifactService(db, store, LIMIT))  # type: ignore[arg-type]
    # (with the admin role: listing and deleting are not an Ant's to do; permissions are tested elsewhere)
    caller = dataclasses.replace(ANT, roles=frozenset({"admin"}))
    local = Authenticator(AuthSettings(required=False, local=caller), tokens=None)
    server = grpc.aio.server(interceptors=[AuthInterceptor(local)])
    pb_grpc.add_ArtifactServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield Api(pb_grpc.ArtifactServiceStub(channel), store, await start_job(db), await start_job(db))
    finally:
        await server.stop(None)


def upload_messages(
    metadata: pb.UploadArtifactMetadata, data: bytes, chunk_size: int = UPLOAD_CHUNK
) -> Iterable[pb.UploadArtifactRequest]:
    yield pb.UploadArtifactRequest(metadata=metadata)
    for start in range(0, len(data), chunk_size):
        yield pb.UploadArtifactRequest(chunk=data[start : start + chunk_size])


async def download(
    stub: pb_grpc.ArtifactServiceStub, artifact_id: str
) -> tuple[artifact_pb2.Artifact, list[bytes]]:
    messages = [m async for m in stub.DownloadArtifact(pb.DownloadArtifactRequest(artifact_id=artifact_id))]
    assert messages[0].WhichOneof("content") == "artifact"
    assert all(m.WhichOneof("content") == "chunk" for m in messages[1:])
    return messages[0].artifact, [m.chunk for m in messages[1:]]


async def failure(call: grpc.aio.Call) -> tuple[grpc.StatusCode, str, error_details_pb2.ErrorInfo]:
    """Await a call that must fail; its code, message and ErrorInfo (the rich status, as clients read it)."""
    try:
        if isinstance(call, grpc.aio.UnaryStreamCall):
            _ = [message async for message in call]
        else:
            await call  # type: ignore[misc]
    except grpc.aio.AioRpcError:
        pass
    else:
        pytest.fail("the call succeeded")
    status = await rpc_status.aio.from_call(call)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return await call.code(), status.message, info


async def test_a_3_mib_file_goes_up_and_comes_back_identical(api: Api) -> None:
    data = content(3 * MIB + 12_345)
    compile_ = api.job.tasks["compile"]
    metadata = pb.UploadArtifactMetadata(
        name="dist/app.whl",
        kind=artifact_pb2.ARTIFACT_KIND_TASK,
        content_type="application/zip",
        task_execution_id=compile_.id,
        metadata={"git_sha": "3f2a"},
        retention_duration=Duration(seconds=3600),
        content_length=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    response = await api.stub.UploadArtifact(upload_messages(metadata, data))
    uploaded = response.artifact
    assert uuid.UUID(uploaded.id)
    assert (uploaded.name, uploaded.kind, uploaded.content_type) == (
        "dist/app.whl",
        artifact_pb2.ARTIFACT_KIND_TASK,
        "application/zip",
    )
    assert (uploaded.content_length, uploaded.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert (uploaded.job_request_id, uploaded.job_execution_id, uploaded.task_type) == (
        api.job.request.id,
        api.job.execution_id,
        "compile",
    )
    assert (uploaded.organization_id, uploaded.user_id, dict(uploaded.metadata)) == (
        ANT.organization_id,
        ANT.user_id,
        {"git_sha": "3f2a"},
    )
    assert uploaded.expiry_time.ToSeconds() - uploaded.create_time.ToSeconds() == 3600

    artifact, chunks = await download(api.stub, uploaded.id)
    assert artifact == uploaded
    assert b"".join(chunks) == data
    assert {len(chunk) for chunk in chunks[:-1]} == {DOWNLOAD_CHUNK_SIZE}

    # an empty artifact downloads as one metadata message
    empty = await api.stub.UploadArtifact(upload_messages(pb.UploadArtifactMetadata(name="empty"), b""))
    assert empty.artifact.kind == artifact_pb2.ARTIFACT_KIND_USER  # UNSPECIFIED is stored as USER
    assert await download(api.stub, empty.artifact.id) == (empty.artifact, [])


async def test_list_by_job_request_newest_first_in_pages(api: Api) -> None:
    ids = []
    for n in range(3):
        metadata = pb.UploadArtifactMetadata(name=f"report-{n}.html", job_request_id=api.job.request.id)
        ids.append((await api.stub.UploadArtifact(upload_messages(metadata, b"<html/>"))).artifact.id)
    other = pb.UploadArtifactMetadata(name="elsewhere", job_request_id=api.other_job.request.id)
    await api.stub.UploadArtifact(upload_messages(other, b"x"))

    listed = await api.stub.ListArtifacts(pb.ListArtifactsRequest(job_request_id=api.job.request.id))
    assert [a.id for a in listed.artifacts] == ids[::-1]
    assert listed.next_page_token == ""

    request = pb.ListArtifactsRequest(job_request_id=api.job.request.id, page_size=2)
    first = await api.stub.ListArtifacts(request)
    assert [a.name for a in first.artifacts] == ["report-2.html", "report-1.html"]
    request.page_token = first.next_page_token
    second = await api.stub.ListArtifacts(request)
    assert ([a.name for a in second.artifacts], second.next_page_token) == (["report-0.html"], "")

    assert len((await api.stub.ListArtifacts(pb.ListArtifactsRequest())).artifacts) == 4
    by_kind = pb.ListArtifactsRequest(kind=artifact_pb2.ARTIFACT_KIND_LOG)
    assert list((await api.stub.ListArtifacts(by_kind)).artifacts) == []


async def test_an_oversize_upload_is_invalid_argument_and_stores_nothing(
    api: Api, object_store_config: ObjectStoreConfig
) -> None:
    metadata = pb.UploadArtifactMetadata(name="huge.bin", job_request_id=api.job.request.id)
    code, message, info = await failure(
        api.stub.UploadArtifact(upload_messages(metadata, content(LIMIT + 1)))
    )
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert message == "the content is larger than the limit of 4 MiB (4194304 bytes)"
    assert (info.reason, info.metadata["error"]) == ("INVALID_ARGUMENT", "ObjectTooLarge")
    assert list((await api.stub.ListArtifacts(pb.ListArtifactsRequest())).artifacts) == []
    assert await leftovers(object_store_config) == set()


async def test_unknown_ids_are_not_found(api: Api) -> None:
    unknown = str(uuid.uuid4())
    for call in (
        api.stub.DownloadArtifact(pb.DownloadArtifactRequest(artifact_id=unknown)),
        api.stub.DeleteArtifact(pb.DeleteArtifactRequest(artifact_id=unknown)),
    ):
        code, message, _ = await failure(call)
        assert (code, message) == (grpc.StatusCode.NOT_FOUND, f"artifact {unknown} does not exist")

    uploaded = await api.stub.UploadArtifact(upload_messages(pb.UploadArtifactMetadata(name="x"), b"x"))
    await api.stub.DeleteArtifact(pb.DeleteArtifactRequest(artifact_id=uploaded.artifact.id))
    code, _, _ = await failure(
        api.stub.DeleteArtifact(pb.DeleteArtifactRequest(artifact_id=uploaded.artifact.id))
    )
    assert code is grpc.StatusCode.NOT_FOUND
    code, _, _ = await failure(
        api.stub.DownloadArtifact(pb.DownloadArtifactRequest(artifact_id=uploaded.artifact.id))
    )
    assert code is grpc.StatusCode.NOT_FOUND


async def test_broken_upload_streams_are_refused_and_leave_nothing(
    api: Api, object_store_config: ObjectStoreConfig
) -> None:
    metadata = pb.UploadArtifactMetadata(name="x")
    streams = {
        "chunk first": [pb.UploadArtifactRequest(chunk=b"data")],
        "nothing at all": [],
        "metadata twice": [pb.UploadArtifactRequest(metadata=metadata)] * 2,
        "chunk over 1 MiB": [
            pb.UploadArtifactRequest(metadata=metadata),
            pb.UploadArtifactRequest(chunk=content(MIB + 1)),
        ],
        "path traversal": [pb.UploadArtifactRequest(metadata=pb.UploadArtifactMetadata(name="../../x"))],
        "wrong digest": list(upload_messages(pb.UploadArtifactMetadata(name="x", sha256="0" * 64), b"data")),
        "unknown kind": [pb.UploadArtifactRequest(metadata=pb.UploadArtifactMetadata(name="x", kind=99))],  # type: ignore[arg-type]
    }
    for what, messages in streams.items():
        code, message, _ = await failure(api.stub.UploadArtifact(iter(messages)))
        assert code is grpc.StatusCode.INVALID_ARGUMENT, (what, message)
    assert await leftovers(object_store_config) == set()


async def test_a_client_that_cancels_mid_upload_leaves_nothing(
    api: Api, object_store_config: ObjectStoreConfig
) -> None:
    sent = asyncio.Event()

    async def stalled() -> AsyncIterator[pb.UploadArtifactRequest]:
        yield pb.UploadArtifactRequest(metadata=pb.UploadArtifactMetadata(name="partial.bin"))
        yield pb.UploadArtifactRequest(chunk=content(MIB))
        sent.set()
        await asyncio.Event().wait()

    call = api.stub.UploadArtifact(stalled())
    await sent.wait()
    await assert_eventually(lambda: api.store.received == MIB)  # the server is mid-upload
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call

    # the server notices the cancellation on its own time: wait until its clean-up is done
    async def nothing_left() -> bool:
        return await leftovers(object_store_config) == set()

    await assert_eventually(nothing_left, timeout=5)
    assert list((await api.stub.ListArtifacts(pb.ListArtifactsRequest())).artifacts) == []
