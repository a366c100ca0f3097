"""Objects in an S3-compatible bucket (SeaweedFS, MinIO, AWS S3) through the `minio` client.

The client blocks, so every call runs on a small thread pool of the store's own (not the loop's default
executor: an upload holds its thread for as long as the uploader takes to send, and slow uploaders must
not starve everything else that uses `asyncio.to_thread`).

Uploads stream: chunks pass through a bounded `ChunkPipe` into `put_object` with an unknown length,
which sends one PUT for content smaller than a part and a multipart upload otherwise. Nothing becomes
visible before the end: the client completes the upload (or sends the single PUT) only after it has
read the end of the stream, and the end is handed over only after the size limit and the announced
size/digest were checked. Any failure before that aborts the pipe; the client then aborts the multipart
upload, so no object and no parts remain. (A Queen killed mid-upload can leave parts of an incomplete
multipart upload behind; give production buckets a lifecycle rule `AbortIncompleteMultipartUpload`.)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO, TypeVar, cast

import certifi
import structlog
import urllib3
from minio import Minio
from minio.error import MinioException, S3Error
from urllib3.exceptions import HTTPError

from queen.artifacts._meter import ContentMeter
from queen.artifacts._pipe import ChunkPipe, PipeAborted, ReaderGone
from queen.artifacts.errors import ObjectNotFound, ObjectStoreError
from queen.artifacts.keys import check_key
from queen.artifacts.object_store import DEFAULT_CHUNK_SIZE, DEFAULT_CONTENT_TYPE, StoredObject

__all__ = ["S3ObjectStore"]

log = structlog.get_logger(__name__)

T = TypeVar("T")

_MIB = 1024 * 1024
# S3's bounds for multipart uploads.
_MIN_PART_SIZE = 5 * _MIB
_MAX_PARTS = 10_000
_MISSING = frozenset({"NoSuchKey", "NoSuchBucket"})
_BUCKET_TAKEN = frozenset({"BucketAlreadyOwnedByYou", "BucketAlreadyExists"})


class S3ObjectStore:
    """One bucket of an S3-compatible server; the bucket is created on the first upload if missing.

    Memory per upload in flight: about `part_size` (the client assembles one part at a time) plus
    `buffer_bytes` (the pipe). `max_workers` bounds the uploads and calls in flight; more wait their turn.
    """

    def __init__(
        self,
        *,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        secure: bool = True,
        region: str | None = None,
        part_size: int = 8 * _MIB,
        buffer_bytes: int = 2 * _MIB,
        max_workers: int = 16,
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
        stall_timeout: float = 600.0,
    ) -> None:
        if part_size < _MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {_MIN_PART_SIZE} bytes (S3's minimum)")
        self._endpoint = endpoint
        self._bucket = bucket
        self._region = region or None
        self._part_size = part_size
        self._buffer_bytes = buffer_bytes
        self._stall_timeout = stall_timeout
        self._http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            maxsize=max_workers,
            cert_reqs="CERT_REQUIRED",
            ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
            retries=urllib3.Retry(total=3, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504)),
        )
        self._client = Minio(
            endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            region=self._region,
            http_client=self._http,
        )
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="formicary-s3")
        self._bucket_ready = False
        self._bucket_lock = asyncio.Lock()

    @property
    def bucket(self) -> str:
        return self._bucket

    async def put(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        content_type: str = DEFAULT_CONTENT_TYPE,
        max_bytes: int,
        expected_size: int | None = None,
        expected_sha256: str | None = None,
    ) -> StoredObject:
        check_key(key)
        meter = ContentMeter(max_bytes, expected_size=expected_size, expected_sha256=expected_sha256)
        await self._ensure_bucket()
        loop = asyncio.get_running_loop()
        pipe = ChunkPipe(loop, capacity=self._buffer_bytes, min_read=_MIB, stall_timeout=self._stall_timeout)
        put = functools.partial(
            self._client.put_object,
            self._bucket,
            key,
            cast(BinaryIO, pipe),  # the client only calls read()
            length=-1,
            content_type=content_type or DEFAULT_CONTENT_TYPE,
            part_size=self._part_size_for(max_bytes),
            num_parallel_uploads=1,
        )
        upload = loop.run_in_executor(self._executor, put)
        upload.add_done_callback(lambda _: pipe.reader_stopped())
        try:
            async for chunk in chunks:
                meter.add(chunk)
                await pipe.write(chunk)
            stored = meter.finish()
            pipe.finish()
            await asyncio.wait([upload])
        except ReaderGone:
            # The upload failed on its own (server error, stall): report its error, not the symptom.
            await self._settle(key, upload)
            cause = self._failure_of(upload) or RuntimeError("the upload ended before the content did")
            raise self._error(key, cause) from cause
        except BaseException:
            pipe.abort()
            await self._settle(key, upload)
            raise
        error = self._failure_of(upload)
        if error is not None:
            raise self._error(key, error) from error
        return stored

    async def put_many(self, objects: Sequence[tuple[str, bytes]], *, max_bytes: int) -> list[StoredObject]:
        """One `put` after the other (S3 makes each durable on its own); all or none."""
        stored: list[StoredObject] = []
        try:
            for key, data in objects:
                stored.append(await self.put(key, _whole(data), max_bytes=max_bytes))
        except BaseException:
            for key, _ in objects[: len(stored)]:
                with contextlib.suppress(ObjectStoreError):
                    await asyncio.shield(self.delete(key))
            raise
        return stored

    async def get(self, key: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> AsyncGenerator[bytes, None]:
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        check_key(key)
        response = await self._call(key, self._client.get_object, self._bucket, key)
        try:
            while chunk := await self._call(key, response.read, chunk_size):
                yield chunk
        finally:
            await asyncio.shield(self._run(_release, response))

    async def delete(self, key: str) -> None:
        check_key(key)
        with contextlib.suppress(ObjectNotFound):  # no bucket: no object either
            await self._call(key, self._client.remove_object, self._bucket, key)

    async def exists(self, key: str) -> bool:
        check_key(key)
        try:
            await self._call(key, self._client.stat_object, self._bucket, key)
        except ObjectNotFound:
            return False
        return True

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._http.clear()

    # -- internals -------------------------------------------------------------------------------------

    def _part_size_for(self, max_bytes: int) -> int:
        """The configured part size, or larger if the limit would not fit in S3's 10 000 parts."""
        needed = -(-max_bytes // _MAX_PARTS)
        return max(self._part_size, -(-needed // _MIB) * _MIB)

    async def _ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        async with self._bucket_lock:
            if self._bucket_ready:
                return
            if not await self._call("", self._client.bucket_exists, self._bucket):
                try:
                    await self._call("", self._client.make_bucket, self._bucket, location=self._region)
                    log.info("artifact_bucket_created", bucket=self._bucket, endpoint=self._endpoint)
                except ObjectStoreError as exc:
                    cause = exc.__cause__
                    if not (isinstance(cause, S3Error) and cause.code in _BUCKET_TAKEN):
                        raise
            self._bucket_ready = True

    async def _settle(self, key: str, upload: asyncio.Future[Any]) -> None:
        """After a failed put: wait until the client let go of the pipe, and remove the object if the
        upload still completed (the failure came after the end was handed over)."""
        await asyncio.wait([upload])
        if upload.cancelled():
            return
        error = upload.exception()
        if error is None:
            try:
                await self.delete(key)
            except ObjectStoreError:
                log.warning("artifact_object_left_behind", bucket=self._bucket, key=key, exc_info=True)
        elif not isinstance(error, PipeAborted):
            log.debug("artifact_upload_aborted", bucket=self._bucket, key=key, error=repr(error))

    @staticmethod
    def _failure_of(upload: asyncio.Future[Any]) -> BaseException | None:
        """The finished upload's exception (a cancelled one: the store was closed under it)."""
        if upload.cancelled():
            return RuntimeError("the object store was closed during the upload")
        return upload.exception()

    async def _run(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(function, *args, **kwargs))

    async def _call(self, key: str, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`function` on the store's threads; S3 "no such key/bucket" → ObjectNotFound, other failures →
        ObjectStoreError."""
        try:
            return await self._run(function, *args, **kwargs)
        except S3Error as exc:
            if exc.code in _MISSING:
                raise ObjectNotFound(key) from exc
            raise self._error(key, exc) from exc
        except (MinioException, HTTPError, OSError, ValueError) as exc:
            raise self._error(key, exc) from exc

    def _error(self, key: str, exc: BaseException) -> ObjectStoreError:
        where = f"{self._endpoint}/{self._bucket}/{key}" if key else f"{self._endpoint}/{self._bucket}"
        if isinstance(exc, S3Error):
            return ObjectStoreError(f"S3 {where}: {exc.code}: {exc.message}")
        return ObjectStoreError(f"S3 {where}: {type(exc).__name__}: {exc}")


def _release(response: Any) -> None:
    response.close()
    response.release_conn()


async def _whole(data: bytes) -> AsyncIterator[bytes]:
    yield data
