"""Both object stores (a directory, SeaweedFS's S3) behave alike: round trips, limits and failures that
leave nothing behind, concurrent uploads; and the S3 store's multipart path and bucket creation."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator

import pytest

from queen.artifacts import (
    ContentMismatch,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreError,
    ObjectTooLarge,
    S3ObjectStore,
)
from tests.fixtures.object_stores import ObjectStoreConfig, remove_bucket
from tests.fixtures.services import S3Endpoint
from tests.fixtures.waiting import assert_eventually

from .conftest import (
    MIB,
    chunks_of,
    content,
    failing_after,
    leftovers,
    make_store,
    minio_client,
    read_all,
    s3_config_for,
    stored_names,
)

pytestmark = pytest.mark.integration

KEY = "org-1/42/compile/6f1d2c3b/dist/app.whl"


async def test_put_get_exists_delete(
    object_store: ObjectStore, object_store_config: ObjectStoreConfig
) -> None:
    data = content(300_000)
    stored = await object_store.put(KEY, chunks_of(data), content_type="application/zip", max_bytes=MIB)
    assert (stored.size, stored.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert await stored_names(object_store_config) == {KEY}
    assert await object_store.exists(KEY)
    assert await read_all(object_store.get(KEY)) == data
    assert [len(c) async for c in object_store.get(KEY, chunk_size=128 * 1024)] == [131072, 131072, 37856]

    await object_store.delete(KEY)
    assert not await object_store.exists(KEY)
    assert await leftovers(object_store_config) == set()
    await object_store.delete(KEY)  # idempotent
    with pytest.raises(ObjectNotFound):
        await anext(object_store.get(KEY))


async def test_put_many_stores_a_batch_with_sizes_and_digests(
    object_store: ObjectStore, object_store_config: ObjectStoreConfig
) -> None:
    batch = [(f"org-1/42/build/{n:08x}/log.txt", content(1000 * n)) for n in range(4)]
    stored = await object_store.put_many(batch, max_bytes=MIB)
    assert [(s.size, s.sha256) for s in stored] == [(len(d), hashlib.sha256(d).hexdigest()) for _, d in batch]
    assert await stored_names(object_store_config) == {key for key, _ in batch}
    for key, data in batch:
        assert await read_all(object_store.get(key)) == data


async def test_put_many_is_all_or_none(
    object_store: ObjectStore, object_store_config: ObjectStoreConfig
) -> None:
    batch = [
        ("org-1/42/build/0000000a/log.txt", b"fits"),
        ("org-1/42/build/0000000b/log.txt", content(MIB + 1)),
    ]
    with pytest.raises(ObjectTooLarge):
        await object_store.put_many(batch, max_bytes=MIB)
    assert await leftovers(object_store_config) == set()


async def test_empty_object(object_store: ObjectStore) -> None:
    stored = await object_store.put(KEY, chunks_of(b""), max_bytes=0)
    assert (stored.size, stored.sha256) == (0, hashlib.sha256(b"").hexdigest())
    assert await object_store.exists(KEY)
    assert await read_all(object_store.get(KEY)) == b""


async def test_a_put_beyond_the_limit_leaves_nothing(
    object_store: ObjectStore, object_store_config: ObjectStoreConfig
) -> None:
    data = content(MIB + 1)
    with pytest.raises(ObjectTooLarge, match=r"limit of 1 MiB \(1048576 bytes\)"):
        await object_store.put(KEY, chunks_of(data), max_bytes=MIB)
    assert await leftovers(object_store_config) == set()
    assert (await object_store.put(KEY, chunks_of(data[:MIB]), max_bytes=MIB)).size == MIB


@pytest.mark.parametrize(
    ("announced", "error", "field"),
    [
        ({"expected_size": 1000}, ContentMismatch, "content_length"),
        ({"expected_sha256": hashlib.sha256(b"other").hexdigest()}, ContentMismatch, "sha256"),
        ({"expected_size": MIB + 1}, ObjectTooLarge, ""),
    ],
)
async def test_content_that_differs_from_the_announcement_leaves_nothing(
    object_store: ObjectStore,
    object_store_config: ObjectStoreConfig,
    announced: dict[str, object],
    error: type[Exception],
    field: str,
) -> None:
    with pytest.raises(error) as caught:
        await object_store.put(KEY, chunks_of(content(2000)), max_bytes=MIB, **announced)  # type: ignore[arg-type]
    assert getattr(caught.value, "field", "") == field
    assert await leftovers(object_store_config) == set()


async def test_a_failing_or_cancelled_stream_leaves_nothing(
    object_store: ObjectStore, object_store_config: ObjectStoreConfig
) -> None:
    with pytest.raises(ConnectionResetError):
        await object_store.put(KEY, failing_after(content(500_000), ConnectionResetError()), max_bytes=MIB)
    assert await leftovers(object_store_config) == set()

    sent = asyncio.Event()

    async def stuck() -> AsyncIterator[bytes]:
        yield content(200_000)
        sent.set()
        await asyncio.Event().wait()
        yield b""  # pragma: no cover

    upload = asyncio.create_task(object_store.put(KEY, stuck(), max_bytes=MIB))
    await sent.wait()
    upload.cancel()
    with pytest.raises(asyncio.CancelledError):
        await upload
    assert await leftovers(object_store_config) == set()


async def test_concurrent_uploads_stay_apart(
    object_store: ObjectStore, object_store_config: ObjectStoreConfig
) -> None:
    blobs = {f"org-1/9/t/{n}/blob-{n}": content(100_000 + n * 50_000, seed=n) for n in range(8)}
    too_big = "org-1/9/t/big/blob"
    results = await asyncio.gather(
        *(object_store.put(key, chunks_of(data, 32 * 1024), max_bytes=MIB) for key, data in blobs.items()),
        object_store.put(too_big, chunks_of(content(MIB + 10), 32 * 1024), max_bytes=MIB),
        return_exceptions=True,
    )
    assert isinstance(results[-1], ObjectTooLarge)
    assert [r.sha256 for r in results[:-1]] == [hashlib.sha256(d).hexdigest() for d in blobs.values()]  # type: ignore[union-attr]
    assert await leftovers(object_store_config) >= set(blobs)
    assert await stored_names(object_store_config) == set(blobs)
    downloads = await asyncio.gather(*(read_all(object_store.get(key)) for key in blobs))
    assert downloads == list(blobs.values())


async def test_keys_are_checked(object_store: ObjectStore) -> None:
    for bad in ("../outside", "/absolute", "a//b"):
        with pytest.raises(ValueError, match="object key"):
            await object_store.put(bad, chunks_of(b"x"), max_bytes=1)
        with pytest.raises(ValueError, match="object key"):
            await object_store.delete(bad)


# -- S3 only ---------------------------------------------------------------------------------------------


async def test_s3_multipart_upload_round_trip(s3_config: ObjectStoreConfig) -> None:
    store = make_store(s3_config, part_size=5 * MIB)
    try:
        data = content(12 * MIB + 123)
        stored = await store.put(KEY, chunks_of(data, MIB), max_bytes=20 * MIB)
        assert stored.sha256 == hashlib.sha256(data).hexdigest()
        assert await read_all(store.get(KEY, chunk_size=MIB)) == data
    finally:
        await store.close()


async def test_s3_failure_after_parts_were_sent_aborts_the_multipart_upload(
    s3_config: ObjectStoreConfig,
) -> None:
    store = make_store(s3_config, part_size=5 * MIB)
    client = minio_client(s3_config)
    fail = asyncio.Event()

    async def source() -> AsyncIterator[bytes]:
        async for chunk in chunks_of(content(6 * MIB), MIB):
            yield chunk
        await fail.wait()
        raise ConnectionResetError("client went away")

    def multipart_uploads() -> list[str]:
        return [u.object_name for u in client._list_multipart_uploads(s3_config.bucket).uploads]

    try:
        upload = asyncio.create_task(store.put(KEY, source(), max_bytes=20 * MIB))
        # the first part went to the server: a multipart upload is in progress, and no object exists yet
        await assert_eventually(lambda: asyncio.to_thread(multipart_uploads), timeout=20)
        assert await stored_names(s3_config) == set()
        fail.set()
        with pytest.raises(ConnectionResetError):
            await upload
        assert await leftovers(s3_config) == set()
    finally:
        await store.close()


async def test_s3_bucket_is_created_when_missing(s3_endpoint: S3Endpoint) -> None:
    bucket = f"t-new-{uuid.uuid4().hex[:16]}"
    config = s3_config_for(s3_endpoint, bucket)
    store = make_store(config)
    client = minio_client(config)
    try:
        assert not await store.exists(KEY)  # no bucket yet: simply nothing there
        await store.delete(KEY)
        await store.put(KEY, chunks_of(b"hello"), max_bytes=10)
        assert await asyncio.to_thread(client.bucket_exists, bucket)
        assert await read_all(store.get(KEY)) == b"hello"
    finally:
        await store.close()
        if await asyncio.to_thread(client.bucket_exists, bucket):
            await asyncio.to_thread(remove_bucket, client, bucket)


async def test_s3_unreachable_server_is_an_object_store_error() -> None:
    store = S3ObjectStore(
        endpoint="127.0.0.1:9",
        access_key="a",
        secret_key="b",
        bucket="nowhere",
        secure=False,
        connect_timeout=1,
    )
    try:
        with pytest.raises(ObjectStoreError, match=r"127\.0\.0\.1:9/nowhere"):
            await store.put(KEY, chunks_of(b"x"), max_bytes=1)
    finally:
        await store.close()
