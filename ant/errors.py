"""The Ant's error hierarchy: one root, typed subclasses; callers never see a raw `grpc.RpcError`."""

from __future__ import annotations

__all__ = [
    "AntError",
    "AntIdConflict",
    "ConfigurationError",
    "QueenRefused",
]


class AntError(Exception):
    """Root of every error the Ant raises on purpose."""


class ConfigurationError(AntError):
    """The Ant cannot start as configured (a method without its engine, a bad work directory, ...)."""


class QueenRefused(AntError):
    """The Queen ended the stream with a status that retrying will not fix (AntService section 10).

    `code` is the gRPC status code's name ("UNAUTHENTICATED", "PERMISSION_DENIED", "INVALID_ARGUMENT",
    "FAILED_PRECONDITION"), `details` the Queen's message.
    """

    def __init__(self, code: str, details: str) -> None:
        super().__init__(f"the Queen refused this Ant: {code}: {details}")
        self.code = code
        self.details = details


class AntIdConflict(AntError):
    """Another process registered with this Ant's ant_id (the Queen ended our stream with ABORTED)."""

    def __init__(self, ant_id: str, details: str) -> None:
        super().__init__(
            f"another process uses ant_id {ant_id!r} (the Queen aborted this stream: {details}); "
            "give each Ant process its own --ant-id"
        )
        self.ant_id = ant_id
        self.details = details
