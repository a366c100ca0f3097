"""Counting and hashing content as it streams into a store, so size and digest are known at the end."""

from __future__ import annotations

import hashlib

from queen.artifacts.errors import ContentMismatch, ObjectTooLarge
from queen.artifacts.object_store import StoredObject

__all__ = ["ContentMeter"]


class ContentMeter:
    """Measures one stream: refuses it the moment it exceeds `max_bytes` (at once if the announced size
    already does), and at the end checks it against the announced size and digest."""

    __slots__ = ("_digest", "_expected_sha256", "_expected_size", "_max_bytes", "size")

    def __init__(
        self, max_bytes: int, *, expected_size: int | None = None, expected_sha256: str | None = None
    ) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must not be negative, got {max_bytes}")
        if expected_size is not None and expected_size > max_bytes:
            raise ObjectTooLarge(max_bytes)
        self._max_bytes = max_bytes
        self._expected_size = expected_size
        self._expected_sha256 = expected_sha256.lower() if expected_sha256 else None
        self._digest = hashlib.sha256()
        self.size = 0

    def add(self, chunk: bytes) -> None:
        """Count and hash one chunk; ObjectTooLarge once the total exceeds the limit."""
        self.size += len(chunk)
        if self.size > self._max_bytes:
            raise ObjectTooLarge(self._max_bytes)
        self._digest.update(chunk)

    def finish(self) -> StoredObject:
        """The measured object; ContentMismatch if it differs from the announced size or digest."""
        digest = self._digest.hexdigest()
        if self._expected_size is not None and self._expected_size != self.size:
            raise ContentMismatch("content_length", str(self._expected_size), str(self.size))
        if self._expected_sha256 is not None and self._expected_sha256 != digest:
            raise ContentMismatch("sha256", self._expected_sha256, digest)
        return StoredObject(size=self.size, sha256=digest)
