"""What an executor returns: `ExecutionResult`, the outcome of one task attempt."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

__all__ = [
    "EXIT_CODE_COMPLETED",
    "EXIT_CODE_FAILED",
    "ArtifactRef",
    "ErrorCode",
    "ExecutionResult",
    "ExecutionStatus",
    "Timings",
    "exit_code_of_returncode",
]

EXIT_CODE_COMPLETED = "COMPLETED"
"""exit_code of a method that has no numeric code and succeeded."""
EXIT_CODE_FAILED = "FAILED"
"""exit_code when no numeric code is known (the request never ran, the pod vanished)."""


class ExecutionStatus(StrEnum):
    """How an attempt ended."""

    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class ErrorCode(StrEnum):
    """Machine-readable failure reasons (TaskResponse.error_code). Empty when a script merely failed."""

    TASK_TIMEOUT = "ERR_TASK_TIMEOUT"
    TASK_CANCELLED = "ERR_TASK_CANCELLED"
    EXECUTOR = "ERR_EXECUTOR"
    IMAGE_PULL = "ERR_IMAGE_PULL"
    CONTAINER = "ERR_CONTAINER"
    HTTP_REQUEST = "ERR_HTTP_REQUEST"
    INVALID_TASK = "ERR_INVALID_TASK"
    ARTIFACT_DOWNLOAD = "ERR_ARTIFACT_DOWNLOAD"
    """A dependent artifact could not be fetched or verified: the script did not run."""
    ARTIFACT_UPLOAD = "ERR_ARTIFACT_UPLOAD"
    """The task's artifacts could not be selected or uploaded after its script succeeded."""


@dataclass(frozen=True, slots=True)
class Timings:
    """Moments of the attempt on the Ant (UTC); None for what did not happen."""

    receive_time: datetime | None = None
    start_time: datetime | None = None
    dependencies_download_time: datetime | None = None
    script_finish_time: datetime | None = None
    artifacts_upload_time: datetime | None = None
    finish_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class ArtifactRef:
    """An artifact stored by the Queen's artifact service, as that service described it (Artifact):
    one the attempt uploaded, or one it downloaded. Fields the service left empty stay empty."""

    id: str
    name: str
    sha256: str = ""
    content_length: int = 0
    content_type: str = ""
    bucket: str = ""
    key: str = ""
    job_request_id: int = 0
    job_execution_id: str = ""
    task_execution_id: str = ""
    task_type: str = ""
    organization_id: str = ""
    user_id: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    create_time: datetime | None = None
    expiry_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    """The outcome of one attempt.

    `exit_code` is the last command's exit status in decimal for script methods (a process killed by
    signal N reports 128+N, as shells do), the HTTP status for HTTP methods, or COMPLETED / FAILED when
    no number is known. `stdout` is the tail of the standard output, bounded; `task_context` and
    `job_context` hold the values set with `::set-output name=K::V` / `::set-job-output name=K::V`.
    `fallback_note` says when the task ran on another executor than its method asked for.
    """

    status: ExecutionStatus
    exit_code: str
    exit_message: str = ""
    error_code: str = ""
    error_message: str = ""
    failed_command: str = ""
    stdout: tuple[str, ...] = ()
    task_context: Mapping[str, str] = field(default_factory=dict)
    job_context: Mapping[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    timings: Timings = field(default_factory=Timings)
    cost_factor: float = 0.0
    fallback_note: str = ""
    namespace: str = ""
    artifacts: tuple[ArtifactRef, ...] = ()

    @property
    def succeeded(self) -> bool:
        return self.status is ExecutionStatus.COMPLETED


def exit_code_of_returncode(returncode: int) -> str:
    """A process's exit status as shells print it: a death by signal N becomes 128+N."""
    return str(128 - returncode if returncode < 0 else returncode)
