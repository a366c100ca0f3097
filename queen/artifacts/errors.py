"""Errors of the object stores, rooted in the Queen's hierarchy so the API maps them like any other."""

from __future__ import annotations

from queen.domain.errors import FormicaryError, InvalidArgument, NotFound

__all__ = ["ContentMismatch", "ObjectNotFound", "ObjectStoreError", "ObjectTooLarge"]


class ObjectStoreError(FormicaryError):
    """The object store failed (unreachable, refused the request, disk full): not the caller's fault."""


class ObjectNotFound(NotFound):
    """No object is stored under the key."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no object is stored under {key!r}")
        self.key = key


class ObjectTooLarge(InvalidArgument):
    """The content grew beyond the limit; nothing of it was kept."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the content is larger than the limit of {_size_text(limit)}")
        self.limit = limit


class ContentMismatch(InvalidArgument):
    """The content received differs from the size or digest the uploader announced; nothing was kept."""

    def __init__(self, field: str, expected: str, received: str) -> None:
        super().__init__(
            f"the content received does not match the announced {field}: announced {expected}, "
            f"received {received}",
            field=field,
        )
        self.expected = expected
        self.received = received


def _size_text(size: int) -> str:
    """ "512 MiB (536870912 bytes)" for round sizes, "1000 bytes" for the others."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit} ({size} bytes)"
    return f"{size} bytes"
