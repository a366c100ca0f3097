"""The embedded object store: one file per object under a root directory (default `<data_dir>/artifacts`).

Writes are atomic: the content goes to a hidden temporary file in the object's own directory (so the
same filesystem) and is renamed over the key's path only after the whole stream arrived, fitted the
limit, matched what was announced and was flushed to disk (fsync of the file, then of the directory:
the database record committed next must never point at content a power cut can lose). Any failure
removes the temporary file, and directories left empty are pruned. Blocking calls run in worker threads
that are awaited to their end even when the upload is cancelled, so the clean-up never races them; a
cancellation that arrives during the final rename removes the renamed object again.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import sys
import uuid
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Sequence
from pathlib import Path
from typing import BinaryIO, TypeVar

import structlog

from queen.artifacts._meter import ContentMeter
from queen.artifacts.errors import ObjectNotFound, ObjectStoreError
from queen.artifacts.keys import check_key
from queen.artifacts.object_store import DEFAULT_CHUNK_SIZE, DEFAULT_CONTENT_TYPE, StoredObject

__all__ = ["LocalObjectStore"]

T = TypeVar("T")

log = structlog.get_logger(__name__)

# Content is written in slices of about this size (fewer thread hops than one per small chunk).
_WRITE_BATCH = 1024 * 1024
# Temporary files: hidden, and never a valid last key segment of an artifact by accident.
_TEMP_PREFIX = ".formicary-upload-"
# A concurrent delete may prune a directory between our mkdir and our open; that many tries.
_CREATE_ATTEMPTS = 5


class LocalObjectStore:
    """Objects as files under `root` (created if missing); the bucket is the root directory's name."""

    def __init__(self, root: Path) -> None:
        self._root = root.expanduser().absolute()
        self._root.mkdir(parents=True, exist_ok=True)

    @property
    def root(self) -> Path:
        return self._root

    @property
    def bucket(self) -> str:
        return self._root.name

    def path_of(self, key: str) -> Path:
        """Where the object of `key` is (or would be) stored."""
        return self._root.joinpath(*check_key(key).split("/"))

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
        del content_type  # the record keeps it; a file has none
        path = self.path_of(key)
        meter = ContentMeter(max_bytes, expected_size=expected_size, expected_sha256=expected_sha256)
        # The first _WRITE_BATCH bytes are gathered before any file exists: an object that small (a task
        # log, most artifacts) is then written, flushed and renamed in ONE worker-thread call.
        stream = aiter(chunks)
        pending = bytearray()
        ended = False
        while len(pending) < _WRITE_BATCH:
            chunk = await anext(stream, None)
            if chunk is None:
                ended = True
                break
            meter.add(chunk)
            pending += chunk
        if ended:
            stored = meter.finish()
            await self._io(key, self._write_whole, bytes(pending), path, undo=self._remove)
            return stored
        file, temp = await self._io(key, self._create_temp, path.parent, undo=self._abandon_temp)
        done = False
        try:
            async for chunk in stream:
                if len(pending) >= _WRITE_BATCH:
                    data, pending = bytes(pending), bytearray()
                    await self._io(key, file.write, data)
                meter.add(chunk)
                pending += chunk
            stored = meter.finish()
            await self._io(key, self._commit, file, bytes(pending), temp, path)
            done = True
            return stored
        finally:
            if not done:
                await self._io(key, self._abandon, file, temp, path)

    async def put_many(self, objects: Sequence[tuple[str, bytes]], *, max_bytes: int) -> list[StoredObject]:
        stored: list[StoredObject] = []
        items: list[tuple[bytes, Path]] = []
        for key, data in objects:
            meter = ContentMeter(max_bytes)
            meter.add(data)
            stored.append(meter.finish())
            items.append((data, self.path_of(key)))
        if items:
            await self._io(objects[0][0], self._write_batch, items, undo=self._remove_all)
        return stored

    async def get(self, key: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> AsyncGenerator[bytes, None]:
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        path = self.path_of(key)
        try:
            file = await asyncio.to_thread(path.open, "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise ObjectNotFound(key) from exc
        except OSError as exc:
            raise ObjectStoreError(f"could not open {key!r} under {self._root}: {exc}") from exc
        try:
            while chunk := await self._io(key, file.read, chunk_size):
                yield chunk
        finally:
            file.close()

    async def delete(self, key: str) -> None:
        await self._io(key, self._remove, self.path_of(key))

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self.path_of(key).is_file)

    async def close(self) -> None:
        return None

    async def _io(
        self, key: str, function: Callable[..., T], *args: object, undo: Callable[[T], object] | None = None
    ) -> T:
        """`function(*args)` in a worker thread; an OSError becomes ObjectStoreError naming the key.

        The thread is awaited to its end even if this task is cancelled meanwhile (a thread cannot be
        stopped, and the clean-up that follows a cancellation must not race it); if it completed,
        `undo(result)` reverses it before the cancellation goes on.
        """
        work = asyncio.ensure_future(asyncio.to_thread(function, *args))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            await asyncio.wait([work])
            if not work.cancelled() and work.exception() is None and undo is not None:
                await asyncio.wait([asyncio.ensure_future(asyncio.to_thread(undo, work.result()))])
            raise
        except OSError as exc:
            raise ObjectStoreError(f"object {key!r} under {self._root}: {exc}") from exc

    # -- blocking parts, run in worker threads ---------------------------------------------------------

    def _create_temp(self, directory: Path) -> tuple[BinaryIO, Path]:
        for attempt in range(_CREATE_ATTEMPTS):
            directory.mkdir(parents=True, exist_ok=True)
            temp = directory / f"{_TEMP_PREFIX}{uuid.uuid4().hex}"
            try:
                # O_EXCL: never reuse an existing file. 0o600: only the Queen's user reads artifacts.
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileNotFoundError:
                if attempt == _CREATE_ATTEMPTS - 1:
                    raise
                continue  # pruned by a concurrent delete between mkdir and open
            return os.fdopen(fd, "wb"), temp
        raise AssertionError("unreachable")

    def _write_whole(self, data: bytes, path: Path) -> Path:
        """A small object in one go: temporary file, content, fsync, rename, fsync of the directory."""
        file, temp = self._create_temp(path.parent)
        try:
            self._commit(file, data, temp, path)
        except BaseException:
            self._abandon(file, temp, path)
            raise
        return path

    def _write_batch(self, items: list[tuple[bytes, Path]]) -> list[Path]:
        """Several small objects: each written to its temporary file, then ONE sync of the file system
        (`syncfs`, where the platform has it; else an fsync per file), the renames, and one more sync
        for the directory entries. All or none: a failure removes what the batch wrote."""
        written: list[tuple[BinaryIO, Path, Path]] = []
        try:
            for data, path in items:
                file, temp = self._create_temp(path.parent)
                written.append((file, temp, path))
                file.write(data)
                file.flush()
            if not _sync_filesystem(self._root):
                for file, _, _ in written:
                    os.fsync(file.fileno())
            for file, temp, path in written:
                file.close()
                os.replace(temp, path)
            if not _sync_filesystem(self._root):
                for directory in {path.parent for _, _, path in written}:
                    self._fsync_directory(directory)
        except BaseException:
            for file, temp, path in written:
                self._abandon(file, temp, path)
            raise
        return [path for _, _, path in written]

    def _remove_all(self, paths: list[Path]) -> None:
        for path in paths:
            self._remove(path)

    def _commit(self, file: BinaryIO, tail: bytes, temp: Path, path: Path) -> None:
        with file:
            file.write(tail)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
        self._fsync_directory(path.parent)

    def _abandon(self, file: BinaryIO, temp: Path, path: Path) -> None:
        """Undo a put that did not complete: remove its temporary file or, if the failure (or
        cancellation) came after the rename, the object itself; then prune empty directories."""
        try:
            file.close()
            if temp.exists():
                temp.unlink()
            elif path.exists():
                path.unlink()  # renamed, but the put failed after all: the caller never learns of it
            self._prune(temp.parent)
        except OSError:
            log.warning("artifact_upload_left_behind", temp=str(temp), path=str(path), exc_info=True)

    def _abandon_temp(self, created: tuple[BinaryIO, Path]) -> None:
        file, temp = created
        file.close()
        temp.unlink(missing_ok=True)
        self._prune(temp.parent)

    def _remove(self, path: Path) -> None:
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return
        self._prune(path.parent)

    def _prune(self, directory: Path) -> None:
        """Remove `directory` and its parents up to the root while they are empty."""
        while directory != self._root and directory.is_relative_to(self._root):
            try:
                directory.rmdir()
            except OSError:
                return  # not empty (or already gone, or in use): stop here
            directory = directory.parent

    @staticmethod
    def _fsync_directory(directory: Path) -> None:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
_SYNCFS = getattr(_LIBC, "syncfs", None)


def _sync_filesystem(directory: Path) -> bool:
    """Flush everything written to the file system holding `directory` (Linux `syncfs`: one journal
    commit for a whole batch); False where the platform has no such call (the caller fsyncs instead)."""
    if _SYNCFS is None:
        return False
    fd = os.open(directory, os.O_RDONLY)
    try:
        if _SYNCFS(fd) != 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error), str(directory))
    finally:
        os.close(fd)
    return True
