"""Moving artifacts between the Queen's store and an attempt's directory: the interface the attempt
runner calls around each task (the implementation over ArtifactService is `ant.artifact_transfer`).

What happens, and when (the attempt runner applies it, see `ant.attempt`):
- Before the script: every artifact of the tasks the task depends on (TaskRequest's
  `executor_opts.dependent_artifact_ids`) is downloaded into the attempt's directory under its name (a
  relative path, e.g. "out/report.txt"), its size and SHA-256 checked against what the Queen recorded.
  An artifact that is missing, unreadable, unsafe to write or not as recorded fails the task with
  ERR_ARTIFACT_DOWNLOAD and the script does not run. Two artifacts with the same name: the later one
  (in the order the Queen listed them) wins, with a warning.
- After the script, when the attempt COMPLETED or FAILED (a failed build's reports and logs are what
  people need most, as GitLab's `artifacts:when: always`), but not when it was CANCELLED: the files the
  `artifacts.paths` select (`ant.artifact_paths`) are uploaded as ARTIFACT_KIND_TASK artifacts of the
  task execution, and the Queen's descriptions of them go into TaskResponse.artifacts. Either all
  selected files are listed or none: when one upload fails, those already stored are deleted again
  (best effort) and the response lists none. Such a failure fails a task whose script succeeded with
  ERR_ARTIFACT_UPLOAD; a task that had already failed keeps its own error and gets a warning instead.
- Paths are relative to the attempt's directory: the SHELL task's working directory (unless its
  definition sets `working_dir`) and the /workspace of DOCKER containers. KUBERNETES pods have a
  /workspace of their own (see `ant.executors.kubernetes`): nothing reaches or leaves it yet, so their
  artifact paths match nothing (a warning); with `--local-fallback` they run with SHELL and do transfer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import ClassVar, Protocol

from ant.errors import AntError
from ant.executors.result import ArtifactRef, ErrorCode

__all__ = [
    "ArtifactDownloadError",
    "ArtifactOwner",
    "ArtifactTransfer",
    "ArtifactTransferError",
    "ArtifactUploadError",
    "TransferOutcome",
]


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


@dataclass(frozen=True, slots=True)
class TransferOutcome:
    """What a download or upload did: the artifacts it moved (downloaded ones are for the task's log;
    uploaded ones go into the response) and warnings for the task record."""

    artifacts: tuple[ArtifactRef, ...] = ()
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ArtifactOwner:
    """The task execution the uploaded artifacts belong to, and how long the Queen keeps them
    (`retention` None: the Queen's default)."""

    job_request_id: int
    task_execution_id: str
    task_type: str
    retention: timedelta | None = None


class ArtifactTransfer(Protocol):
    """Brings dependencies into an attempt's directory before it runs and uploads its artifacts after.

    Both raise `ArtifactTransferError` subclasses for failures that fail the task.
    """

    async def download(self, artifact_ids: Sequence[str], destination: Path) -> TransferOutcome:
        """Fetch the artifacts (Artifact.id) of the tasks the task depends on into `destination`.
        ArtifactDownloadError when any of them cannot be fetched and verified."""
        ...

    async def upload(self, paths: Sequence[str], base: Path, *, owner: ArtifactOwner) -> TransferOutcome:
        """Upload the files `paths` select under `base` as `owner`'s artifacts: all, or none and
        ArtifactUploadError. A path that selects nothing is a warning."""
        ...
