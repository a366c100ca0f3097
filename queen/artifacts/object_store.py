"""The object-store interface the Queen keeps artifact content in, whatever the backend (directory, S3)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["DEFAULT_CHUNK_SIZE", "DEFAULT_CONTENT_TYPE", "ObjectStore", "StoredObject"]

DEFAULT_CONTENT_TYPE = "application/octet-stream"
# What `get` yields at a time unless asked otherwise.
DEFAULT_CHUNK_SIZE = 64 * 1024


@dataclass(frozen=True, slots=True)
class StoredObject:
    """What a completed `put` stored: the size in bytes and the SHA-256 (lowercase hex) of the content."""

    size: int
    sha256: str


class ObjectStore(Protocol):
    """A flat namespace of immutable blobs under `/`-separated keys, in one bucket.

    Contract of every implementation:
    - `put` is all-or-nothing: the object exists under `key` only once the whole stream arrived, fitted
      within `max_bytes` and matched the expected size and digest (when given). On any failure (the
      limit, a mismatch, an error raised by the stream itself, cancellation, a backend error) nothing is
      left behind: no partial object, no temporary file, no incomplete multipart upload. A `put` to an
      existing key replaces it (keys of artifacts are unique, so that never happens in practice).
    - `get` is an async generator: errors (ObjectNotFound included) surface at the first iteration;
      close it (`contextlib.aclosing`) when not reading to the end.
    - `delete` is idempotent: deleting a missing key is not an error.
    - Keys are checked with `queen.artifacts.keys.check_key`; a malformed key is a bug (ValueError).
    - Failures of the backend are `ObjectStoreError`; a missing object is `ObjectNotFound`; too much
      content is `ObjectTooLarge`; content that differs from what was announced is `ContentMismatch`.
    """

    @property
    def bucket(self) -> str:
        """The bucket holding the objects (the local store: the name of its root directory)."""
        ...

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
        """Store the concatenated `chunks` under `key`, atomically (see the class documentation)."""
        ...

    async def put_many(self, objects: Sequence[tuple[str, bytes]], *, max_bytes: int) -> list[StoredObject]:
        """Store several small objects given whole (a batch of task logs), all or none: on any failure
        none of them is left. A backend may make them durable together (the local store syncs its file
        system once for the batch instead of twice per object)."""
        ...

    def get(self, key: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> AsyncGenerator[bytes, None]:
        """The object's content, in chunks of `chunk_size` bytes (the last one may be shorter)."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; nothing happens if there is none."""
        ...

    async def exists(self, key: str) -> bool:
        """Whether an object is stored under `key`."""
        ...

    async def close(self) -> None:
        """Release what the store holds (worker threads, connections); call once, when the Queen stops."""
        ...
