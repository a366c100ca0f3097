"""Moving artifacts between the Queen's store and an attempt's directory: the interface the attempt
runner calls around each task, and the stand-in used until the Queen's ArtifactService exists.

The real implementation belongs with the Ant stream: it will call ArtifactService.DownloadArtifact /
UploadArtifact on the same gRPC channel (so artifact bytes never delay a heartbeat) and is built once
the Queen's ArtifactService is (another piece of work). Until then `UnavailableArtifactTransfer`
transfers nothing and says so in the task's warnings; it never pretends to have uploaded anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ant.executors.result import ArtifactRef

__all__ = ["ArtifactTransfer", "TransferOutcome", "UnavailableArtifactTransfer"]


@dataclass(frozen=True, slots=True)
class TransferOutcome:
    """What a download or upload did: the artifacts uploaded (none for a download) and warnings for
    the task record (a path that matched nothing, an artifact that could not be fetched)."""

    artifacts: tuple[ArtifactRef, ...] = ()
    warnings: tuple[str, ...] = ()


class ArtifactTransfer(Protocol):
    """Brings dependencies into an attempt's directory before it runs and uploads its artifacts after."""

    async def download(self, artifact_ids: Sequence[str], destination: Path) -> TransferOutcome:
        """Fetch the artifacts (Artifact.id) of the tasks the task depends on into `destination`."""
        ...

    async def upload(self, paths: Sequence[str], base: Path, *, task_execution_id: str) -> TransferOutcome:
        """Upload the files matching `paths` (relative to `base`, globs allowed) as the task's artifacts."""
        ...


class UnavailableArtifactTransfer:
    """No artifact service yet: nothing is downloaded or uploaded, and a task that asked for either gets
    a warning naming what was skipped."""

    async def download(self, artifact_ids: Sequence[str], destination: Path) -> TransferOutcome:
        if not artifact_ids:
            return TransferOutcome()
        return TransferOutcome(
            warnings=(
                f"{len(artifact_ids)} dependent artifacts were not downloaded: this Ant has no artifact "
                "transfer yet",
            )
        )

    async def upload(self, paths: Sequence[str], base: Path, *, task_execution_id: str) -> TransferOutcome:
        if not paths:
            return TransferOutcome()
        return TransferOutcome(
            warnings=(f"artifacts not uploaded ({', '.join(paths)}): this Ant has no artifact transfer yet",)
        )
