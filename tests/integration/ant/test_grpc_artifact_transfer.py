"""GrpcArtifactTransfer against a scripted ArtifactService on a real `grpc.aio` server: the messages it
sends, the checks it makes on what it receives, and how it fails, retries and cleans up. (The same
transfer against a real Queen, inside an Ant, is tested in tests/integration/artifacts.)"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

from ant.artifact_transfer import CHUNK_SIZE, GrpcArtifactTransfer, TransferTimeouts
from ant.artifacts import ArtifactDownloadError, ArtifactOwner, ArtifactUploadError
from formicary.v1 import artifact_pb2
from formicary.v1 import artifact_service_pb2 as pb
from formicary.v1 import artifact_service_pb2_grpc as pb_grpc
from tests.fixtures.waiting import assert_eventually

pytestmark = pytest.mark.integration

OWNER = ArtifactOwner(job_request_id=42, task_execution_id="te-1", task_type="build")
FAST = TransferTimeouts(stall=5.0, transfer=30.0, reconnect=5.0)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class FakeArtifacts(pb_grpc.ArtifactServiceServicer):
    """Stores uploads in memory; each fault is switched on by the test."""

    blobs: dict[str, tuple[artifact_pb2.Artifact, bytes]] = field(default_factory=dict)
    uploads: list[tuple[pb.UploadArtifactMetadata, list[int]]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    download_calls: int = 0
    fail_upload: dict[str, grpc.StatusCode] = field(default_factory=dict)  # name -> status, once
    misreport_sha256: bool = False
    hold_first_download: asyncio.Event | None = None
    metadata_seen: list[dict[str, str]] = field(default_factory=list)

    def put(self, name: str, data: bytes, **recorded: Any) -> str:
        artifact_id = str(uuid.uuid4())
        fields: dict[str, Any] = {"sha256": sha(data), "content_length": len(data)} | recorded
        self.blobs[artifact_id] = (artifact_pb2.Artifact(id=artifact_id, name=name, **fields), data)
        return artifact_id

    async def UploadArtifact(
        self, request_iterator: AsyncIterator[pb.UploadArtifactRequest], context: Any
    ) -> pb.UploadArtifactResponse:
        self.metadata_seen.append(dict(context.invocation_metadata()))
        first = await anext(request_iterator)
        chunks = [m.chunk async for m in request_iterator]
        meta = first.metadata
        self.uploads.append((meta, [len(c) for c in chunks]))
        status = self.fail_upload.pop(meta.name, None)
        if status is not None:
            await context.abort(status, f"scripted failure of {meta.name}")
        data = b"".join(chunks)
        artifact_id = str(uuid.uuid4())
        artifact = artifact_pb2.Artifact(
            id=artifact_id,
            name=meta.name,
            kind=meta.kind,
            bucket="artifacts",
            key=f"org/{meta.job_request_id}/{meta.task_type}/{artifact_id}/{meta.name}",
            sha256="0" * 64 if self.misreport_sha256 else sha(data),
            content_length=len(data),
            content_type=meta.content_type,
            job_request_id=meta.job_request_id,
            task_execution_id=meta.task_execution_id,
            task_type=meta.task_type,
            organization_id="org",
            user_id="ant",
        )
        artifact.create_time.GetCurrentTime()
        self.blobs[artifact_id] = (artifact, data)
        return pb.UploadArtifactResponse(artifact=artifact)

    async def DownloadArtifact(
        self, request: pb.DownloadArtifactRequest, context: Any
    ) -> AsyncIterator[pb.DownloadArtifactResponse]:
        self.download_calls += 1
        if self.download_calls == 1 and self.hold_first_download is not None:
            await self.hold_first_download.wait()
        if request.artifact_id not in self.blobs:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"artifact {request.artifact_id} does not exist")
        artifact, data = self.blobs[request.artifact_id]
        yield pb.DownloadArtifactResponse(artifact=artifact)
        for start in range(0, len(data), 64 * 1024):
            yield pb.DownloadArtifactResponse(chunk=data[start : start + 64 * 1024])

    async def ListArtifacts(self, request: pb.ListArtifactsRequest, context: Any) -> pb.ListArtifactsResponse:
        return pb.ListArtifactsResponse(artifacts=[artifact for artifact, _ in self.blobs.values()])

    async def DeleteArtifact(
        self, request: pb.DeleteArtifactRequest, context: Any
    ) -> pb.DeleteArtifactResponse:
        self.blobs.pop(request.artifact_id, None)
        self.deleted.append(request.artifact_id)
        return pb.DeleteArtifactResponse()


@dataclass
class Service:
    fake: FakeArtifacts
    address: str
    channel: grpc.aio.Channel

    def transfer(self, timeouts: TransferTimeouts = FAST, **options: Any) -> GrpcArtifactTransfer:
        async def current() -> grpc.aio.Channel:
            return self.channel

        return GrpcArtifactTransfer(current, timeouts=timeouts, **options)


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    fake = FakeArtifacts()
    server = grpc.aio.server()
    pb_grpc.add_ArtifactServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    address = f"127.0.0.1:{port}"
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            yield Service(fake, address, channel)
    finally:
        await server.stop(None)


def write(base: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).write_bytes(data)
    return base


def listing(base: Path) -> dict[str, bytes]:
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


async def test_uploads_stream_in_chunks_with_metadata_and_download_back(
    service: Service, tmp_path: Path
) -> None:
    big = bytes(range(256)) * (CHUNK_SIZE // 256 * 2 + 3)  # two full chunks and a bit
    files = {"out/report.txt": b"all good\n", "dist/app.tar.gz": big, "empty.bin": b""}
    work = write(tmp_path / "work", files)
    owner = ArtifactOwner(42, "te-1", "build", retention=timedelta(days=7))
    transfer = service.transfer(metadata=(("authorization", "Bearer ant-token"),))

    outcome = await transfer.upload(["out/report.txt", "dist", "empty.bin", "nothing/*"], work, owner=owner)

    assert [a.name for a in outcome.artifacts] == ["dist/app.tar.gz", "empty.bin", "out/report.txt"]
    assert outcome.warnings == ("artifacts path 'nothing/*' matched no files",)
    sent = {meta.name: (meta, sizes) for meta, sizes in service.fake.uploads}
    meta, sizes = sent["dist/app.tar.gz"]
    assert sizes == [CHUNK_SIZE, CHUNK_SIZE, len(big) - 2 * CHUNK_SIZE]
    assert meta.kind == artifact_pb2.ARTIFACT_KIND_TASK
    assert (meta.job_request_id, meta.task_execution_id, meta.task_type) == (42, "te-1", "build")
    assert meta.content_length == len(big)
    assert meta.content_type == "application/gzip"
    assert meta.retention_duration.ToTimedelta() == timedelta(days=7)
    assert sent["out/report.txt"][0].content_type == "text/plain"
    assert sent["empty.bin"][1] == []
    assert all(seen.get("authorization") == "Bearer ant-token" for seen in service.fake.metadata_seen)
    report = outcome.artifacts[2]
    assert report.sha256 == sha(b"all good\n")
    assert (report.bucket, report.task_execution_id, report.user_id) == ("artifacts", "te-1", "ant")
    assert report.key.endswith("/out/report.txt")
    assert report.create_time is not None

    later = tmp_path / "later"
    later.mkdir()
    downloaded = await transfer.download([a.id for a in outcome.artifacts], later)
    assert [a.name for a in downloaded.artifacts] == ["dist/app.tar.gz", "empty.bin", "out/report.txt"]
    assert listing(later) == files
    assert (later / "out" / "report.txt").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize(
    ("recorded", "expected"),
    [
        (
            {"sha256": "1" * 64},
            r"arrived as 5 bytes with sha256 .* but the Queen recorded 5 bytes with sha256 1111",
        ),
        ({"content_length": 3}, "is longer than the 3 bytes the Queen recorded"),
        ({"content_length": 9}, "arrived as 5 bytes .* the Queen recorded 9 bytes"),
    ],
)
async def test_a_download_that_is_not_as_recorded_fails_and_leaves_nothing(
    service: Service, tmp_path: Path, recorded: dict[str, Any], expected: str
) -> None:
    good = service.fake.put("good.txt", b"fine")
    bad = service.fake.put("out/bad.txt", b"hello", **recorded)
    with pytest.raises(ArtifactDownloadError, match=expected) as caught:
        await service.transfer().download([good, bad], tmp_path)
    assert caught.value.error_code == "ERR_ARTIFACT_DOWNLOAD"
    assert caught.value.artifact == bad
    assert listing(tmp_path) == {"good.txt": b"fine"}  # no partial or temporary file


async def test_a_missing_artifact_fails_with_the_queens_answer(service: Service, tmp_path: Path) -> None:
    with pytest.raises(ArtifactDownloadError) as caught:
        await service.transfer().download(["no-such-id"], tmp_path)
    assert str(caught.value) == (
        "cannot download artifact no-such-id: the Queen answered NOT_FOUND: "
        "artifact no-such-id does not exist"
    )
    assert caught.value.status == "NOT_FOUND"


@pytest.mark.parametrize("name", ["../evil.txt", "/tmp/evil.txt", "a/../../evil.txt"])
async def test_a_download_never_writes_outside_the_directory(
    service: Service, tmp_path: Path, name: str
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    artifact_id = service.fake.put(name, b"pwned")
    with pytest.raises(ArtifactDownloadError, match="not a safe relative path"):
        await service.transfer().download([artifact_id], work)
    assert listing(tmp_path) == {}


async def test_same_name_twice_the_later_wins_with_a_warning(service: Service, tmp_path: Path) -> None:
    first = service.fake.put("report.txt", b"first")
    second = service.fake.put("report.txt", b"second")
    outcome = await service.transfer().download([first, second, first], tmp_path)
    assert listing(tmp_path) == {"report.txt": b"second"}
    assert service.fake.download_calls == 2  # the repeated id is fetched once
    assert outcome.warnings == (
        f"artifact 'report.txt' ({second}) replaced the artifact of the same name ({first}) "
        "downloaded before it",
    )


async def test_a_failed_upload_deletes_what_the_set_already_stored(service: Service, tmp_path: Path) -> None:
    work = write(tmp_path, {"a.txt": b"a", "b.txt": b"b", "c.txt": b"c"})
    service.fake.fail_upload["b.txt"] = grpc.StatusCode.RESOURCE_EXHAUSTED
    with pytest.raises(ArtifactUploadError) as caught:
        await service.transfer().upload(["*.txt"], work, owner=OWNER)
    assert str(caught.value) == (
        "cannot upload artifact 'b.txt': the Queen answered RESOURCE_EXHAUSTED: scripted failure of b.txt"
    )
    assert caught.value.error_code == "ERR_ARTIFACT_UPLOAD"
    assert [meta.name for meta, _ in service.fake.uploads] == ["a.txt", "b.txt"]  # c.txt never tried
    assert len(service.fake.deleted) == 1
    assert service.fake.blobs == {}


async def test_a_stored_digest_that_differs_from_the_sent_one_fails(service: Service, tmp_path: Path) -> None:
    work = write(tmp_path, {"a.txt": b"a"})
    service.fake.misreport_sha256 = True
    with pytest.raises(
        ArtifactUploadError, match=r"stored as 1 bytes with sha256 0000.*but 1 bytes with sha256"
    ):
        await service.transfer().upload(["a.txt"], work, owner=OWNER)
    assert service.fake.blobs == {}  # deleted again


async def test_a_path_leaving_the_directory_fails_before_anything_is_uploaded(
    service: Service, tmp_path: Path
) -> None:
    work = write(tmp_path / "work", {"a.txt": b"a"})
    with pytest.raises(ArtifactUploadError, match="leaves the task's working directory"):
        await service.transfer().upload(["a.txt", "../secret"], work, owner=OWNER)
    assert service.fake.uploads == []


async def test_unavailable_is_retried_and_uploads_once(service: Service, tmp_path: Path) -> None:
    work = write(tmp_path, {"a.txt": b"a"})
    service.fake.fail_upload["a.txt"] = grpc.StatusCode.UNAVAILABLE
    outcome = await service.transfer().upload(["a.txt"], work, owner=OWNER)
    assert [a.name for a in outcome.artifacts] == ["a.txt"]
    assert len(service.fake.uploads) == 2
    assert len(service.fake.blobs) == 1


async def test_a_download_cut_by_a_reconnect_is_fetched_again_on_the_next_channel(
    service: Service, tmp_path: Path
) -> None:
    artifact_id = service.fake.put("report.txt", b"content")
    service.fake.hold_first_download = asyncio.Event()
    old = grpc.aio.insecure_channel(service.address)
    channels = [old]

    async def current() -> grpc.aio.Channel:
        return channels[-1]

    transfer = GrpcArtifactTransfer(current, timeouts=FAST)
    downloading = asyncio.create_task(transfer.download([artifact_id], tmp_path))
    await assert_eventually(lambda: service.fake.download_calls == 1)
    channels.append(service.channel)  # the Ant reconnected...
    await old.close()  # ...and its old connection's channel closed under the call
    outcome = await downloading
    assert [a.id for a in outcome.artifacts] == [artifact_id]
    assert service.fake.download_calls == 2
    assert listing(tmp_path) == {"report.txt": b"content"}


async def test_no_connection_within_the_reconnect_limit_fails(tmp_path: Path) -> None:
    async def never() -> grpc.aio.Channel:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    transfer = GrpcArtifactTransfer(never, timeouts=TransferTimeouts(stall=1, transfer=1, reconnect=0.1))
    with pytest.raises(ArtifactDownloadError, match=r"no connection to the Queen for 0\.1 s"):
        await transfer.download(["a"], tmp_path)


async def test_a_stalled_download_fails_after_the_stall_limit(service: Service, tmp_path: Path) -> None:
    artifact_id = service.fake.put("report.txt", b"content")
    service.fake.hold_first_download = asyncio.Event()  # never set: the Queen sends nothing
    transfer = service.transfer(TransferTimeouts(stall=0.2, transfer=30, reconnect=1))
    with pytest.raises(ArtifactDownloadError, match=r"nothing moved for 0\.2 s"):
        await transfer.download([artifact_id], tmp_path)
    service.fake.hold_first_download.set()
    assert listing(tmp_path) == {}


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("report.txt", "text/plain"),
        ("out/index.html", "text/html"),
        ("state.json", "application/json"),
        ("dist/app.tar.gz", "application/gzip"),
        ("terraform.tfstate", "application/octet-stream"),
        ("no-extension", "application/octet-stream"),
    ],
)
def test_content_types_are_guessed_from_the_name(name: str, content_type: str) -> None:
    async def unused() -> grpc.aio.Channel:
        raise AssertionError("no call expected")

    assert GrpcArtifactTransfer(unused).content_type(name) == content_type
