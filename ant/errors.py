"""The Ant's error hierarchy: one root, typed subclasses; callers never see a raw `grpc.RpcError`."""

from __future__ import annotations

from typing import ClassVar

from ant.executors.result import ErrorCode

__all__ = [
    "AntError",
    "AntIdConflict",
    "ArtifactDownloadError",
    "ArtifactTransferError",
    "ArtifactUploadError",
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


class ArtifactTransferError(AntError):
    """Moving artifacts between the Queen and an attempt's directory failed; the attempt fails with
    `error_code` and this message. `artifact` names what failed (an artifact id or name, or a path
    pattern); `status` is the gRPC status code's name when the Queen answered with one, else ""."""

    error_code: ClassVar[ErrorCode]

    def __init__(self, message: str, *, artifact: str = "", status: str = "") -> None:
        super().__init__(message)
        self.artifact = artifact
        self.status = status


class ArtifactDownloadError(ArtifactTransferError):
    """A dependent artifact is missing, unreadable, unsafe to write, or not what the Queen described."""

    error_code = ErrorCode.ARTIFACT_DOWNLOAD


class ArtifactUploadError(ArtifactTransferError):
    """The task's artifacts could not be selected (a path leaving the directory, too many files) or one
    of them could not be uploaded."""

    error_code = ErrorCode.ARTIFACT_UPLOAD
