"""The local-directory store: atomic writes, nothing left on failure, size and digest, key layout."""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from queen.artifacts import (
    ContentMismatch,
    LocalObjectStore,
    ObjectNotFound,
    ObjectStoreError,
    ObjectTooLarge,
)
from tests.fixtures.waiting import assert_eventually

pytestmark = pytest.mark.unit

KEY = "org-1/42/compile/0b7f3c1e/dist/app.whl"
DATA = bytes(range(256)) * 4096  # 1 MiB


async def chunks_of(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def everything_under(root: Path) -> set[str]:
    return {path.relative_to(root).as_posix() for path in root.rglob("*")}


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "artifacts")


async def test_put_stores_the_content_with_its_size_and_digest(store: LocalObjectStore) -> None:
    stored = await store.put(KEY, chunks_of(DATA), max_bytes=len(DATA))
    assert (stored.size, stored.sha256) == (len(DATA), hashlib.sha256(DATA).hexdigest())
    path = store.path_of(KEY)
    assert path == store.root / "org-1" / "42" / "compile" / "0b7f3c1e" / "dist" / "app.whl"
    assert path.read_bytes() == DATA
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # artifacts are readable by the Queen's user only
    assert b"".join([chunk async for chunk in store.get(KEY, chunk_size=300_000)]) == DATA
    assert [len(chunk) async for chunk in store.get(KEY, chunk_size=300_000)] == [300_000] * 3 + [148_576]
    assert await store.exists(KEY)


async def test_the_object_appears_only_when_the_stream_is_complete(store: LocalObjectStore) -> None:
    big = DATA * 3
    release = asyncio.Event()
    sent = 0

    async def slow() -> AsyncIterator[bytes]:
        nonlocal sent
        async for chunk in chunks_of(big):
            yield chunk
            sent += 1
            if sent == 24:  # 1.5 MiB: beyond what is gathered before a file is made
                await release.wait()

    upload = asyncio.create_task(store.put(KEY, slow(), max_bytes=len(big)))
    await assert_eventually(lambda: sent == 24)
    directory = store.path_of(KEY).parent
    # mid-stream: a hidden temporary file next to where the object will be, and no object
    temporary = await assert_eventually(lambda: list(directory.iterdir()))
    assert len(temporary) == 1
    assert temporary[0].name.startswith(".")
    assert not await store.exists(KEY)
    release.set()
    await upload
    assert [path.name for path in directory.iterdir()] == ["app.whl"]
    assert store.path_of(KEY).read_bytes() == big


async def test_a_small_object_is_written_in_one_worker_thread_call(
    store: LocalObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = asyncio.to_thread

    async def counting(function: Any, *args: Any) -> Any:
        calls.append(getattr(function, "__name__", repr(function)))
        return await real(function, *args)

    monkeypatch.setattr(asyncio, "to_thread", counting)
    await store.put(KEY, chunks_of(DATA[:200_000]), max_bytes=len(DATA))
    assert calls == ["_write_whole"]
    assert store.path_of(KEY).read_bytes() == DATA[:200_000]
    assert [path.name for path in store.path_of(KEY).parent.iterdir()] == ["app.whl"]


async def test_a_put_beyond_the_limit_leaves_nothing(store: LocalObjectStore) -> None:
    with pytest.raises(ObjectTooLarge, match=r"larger than the limit of 1048575 bytes$"):
        await store.put(KEY, chunks_of(DATA), max_bytes=len(DATA) - 1)
    assert everything_under(store.root) == set()
    with pytest.raises(ObjectTooLarge, match=r"limit of 512 KiB \(524288 bytes\)$"):
        await store.put(KEY, chunks_of(DATA), max_bytes=len(DATA) // 2)
    assert everything_under(store.root) == set()
    # exactly at the limit is fine
    assert (await store.put(KEY, chunks_of(DATA), max_bytes=len(DATA))).size == len(DATA)


async def test_an_announced_size_beyond_the_limit_is_refused_before_reading(store: LocalObjectStore) -> None:
    async def never() -> AsyncIterator[bytes]:
        raise AssertionError("read")
        yield b""  # pragma: no cover

    with pytest.raises(ObjectTooLarge):
        await store.put(KEY, never(), max_bytes=10, expected_size=11)
    assert everything_under(store.root) == set()


@pytest.mark.parametrize(
    ("expected", "field"),
    [({"expected_size": len(DATA) + 1}, "content_length"), ({"expected_sha256": "0" * 64}, "sha256")],
)
async def test_content_that_differs_from_the_announcement_leaves_nothing(
    store: LocalObjectStore, expected: dict[str, object], field: str
) -> None:
    with pytest.raises(ContentMismatch) as caught:
        await store.put(KEY, chunks_of(DATA), max_bytes=len(DATA) * 2, **expected)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert everything_under(store.root) == set()
    # the right announcement (any case of hex digits) passes
    digest = hashlib.sha256(DATA).hexdigest().upper()
    await store.put(
        KEY, chunks_of(DATA), max_bytes=len(DATA), expected_size=len(DATA), expected_sha256=digest
    )


async def test_a_failing_or_cancelled_stream_leaves_nothing(store: LocalObjectStore) -> None:
    async def failing() -> AsyncIterator[bytes]:
        async for chunk in chunks_of(DATA[:300_000]):
            yield chunk
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await store.put(KEY, failing(), max_bytes=len(DATA))
    assert everything_under(store.root) == set()

    started = asyncio.Event()

    async def stuck() -> AsyncIterator[bytes]:
        yield DATA
        started.set()
        await asyncio.Event().wait()
        yield b""  # pragma: no cover

    upload = asyncio.create_task(store.put(KEY, stuck(), max_bytes=len(DATA) * 2))
    await started.wait()
    upload.cancel()
    with pytest.raises(asyncio.CancelledError):
        await upload
    assert everything_under(store.root) == set()


async def test_delete_is_idempotent_and_prunes_empty_directories(store: LocalObjectStore) -> None:
    other = "org-1/42/compile/5d6e/report.html"
    await store.put(KEY, chunks_of(b"one"), max_bytes=10)
    await store.put(other, chunks_of(b"two"), max_bytes=10)
    await store.delete(KEY)
    assert everything_under(store.root) == {
        "org-1", "org-1/42", "org-1/42/compile", "org-1/42/compile/5d6e", "org-1/42/compile/5d6e/report.html"
    }  # fmt: skip
    await store.delete(KEY)
    await store.delete(other)
    assert everything_under(store.root) == set()
    assert store.root.is_dir()


async def test_missing_objects(store: LocalObjectStore) -> None:
    await store.put(KEY, chunks_of(b"x"), max_bytes=1)
    for missing in ("org-1/42/compile/none", "org-1/42", "org-1/42/compile/0b7f3c1e/dist/app.whl/below"):
        assert not await store.exists(missing)
        with pytest.raises(ObjectNotFound):
            await anext(store.get(missing))


async def test_a_put_replaces_and_an_empty_object_is_fine(store: LocalObjectStore) -> None:
    await store.put(KEY, chunks_of(b"old content"), max_bytes=100)
    stored = await store.put(KEY, chunks_of(b""), max_bytes=100)
    assert (stored.size, stored.sha256) == (0, hashlib.sha256(b"").hexdigest())
    assert [chunk async for chunk in store.get(KEY)] == []


async def test_concurrent_puts_into_one_directory_while_deleting(store: LocalObjectStore) -> None:
    """Deletes prune directories that puts are about to use: the puts still succeed."""
    keys = [f"org-1/7/t/{n}/file" for n in range(20)]

    async def put_then_delete(key: str) -> None:
        for _ in range(3):
            await store.put(key, chunks_of(key.encode()), max_bytes=100)
            await store.delete(key)

    await asyncio.gather(*(put_then_delete(key) for key in keys))
    assert everything_under(store.root) == set()


def test_the_root_is_created_and_names_the_bucket(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "a" / "blobs")
    assert store.root.is_dir()
    assert store.bucket == "blobs"
    assert os.path.isabs(store.root)


async def test_a_cancellation_during_the_final_rename_leaves_nothing(
    store: LocalObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commit runs in a thread that cannot be stopped: the put waits for it, then undoes it."""
    entered, release = threading.Event(), threading.Event()
    commit = store._commit

    def slow_commit(*args: Any) -> None:
        entered.set()
        release.wait(10)
        commit(*args)

    monkeypatch.setattr(store, "_commit", slow_commit)
    upload = asyncio.create_task(store.put(KEY, chunks_of(DATA), max_bytes=len(DATA)))
    await assert_eventually(entered.is_set)
    upload.cancel()
    await asyncio.sleep(0)
    assert not upload.done()  # still waiting for the thread
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await upload
    assert everything_under(store.root) == set()


async def test_a_batch_that_fails_half_way_leaves_nothing(store: LocalObjectStore) -> None:
    # where the second object's directory should be, a file: its temporary file cannot be created
    blocker = store.path_of("org-1/42/compile/00000002/log.txt").parent
    blocker.parent.mkdir(parents=True)
    blocker.write_bytes(b"in the way")
    batch = [
        ("org-1/42/compile/00000001/log.txt", b"first"),
        ("org-1/42/compile/00000002/log.txt", b"second"),
    ]
    with pytest.raises(ObjectStoreError):
        await store.put_many(batch, max_bytes=1024)
    assert everything_under(store.root) == {
        "org-1",
        "org-1/42",
        "org-1/42/compile",
        "org-1/42/compile/00000002",
    }


async def test_a_batch_is_synced_once_not_per_object(
    store: LocalObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from queen.artifacts import local_store

    syncs: list[str] = []
    fsyncs: list[int] = []

    def sync(directory: object) -> bool:
        syncs.append(str(directory))
        return True

    monkeypatch.setattr(local_store, "_sync_filesystem", sync)
    monkeypatch.setattr(os, "fsync", fsyncs.append)
    batch = [(f"org-1/42/compile/{n:08x}/log.txt", b"line\n") for n in range(5)]
    stored = await store.put_many(batch, max_bytes=1024)
    assert [s.size for s in stored] == [5] * 5
    assert syncs == [str(store.root)] * 2  # the contents, then the renames
    assert fsyncs == []
    assert all(store.path_of(key).read_bytes() == b"line\n" for key, _ in batch)
