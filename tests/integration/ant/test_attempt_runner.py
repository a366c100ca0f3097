"""Around the executor: the attempt's directory, secrets masked, dependencies downloaded before and
artifacts uploaded after (with a scripted transfer), and what a transfer failure or a cancel does."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pytest
import structlog

from ant.artifacts import (
    ArtifactDownloadError,
    ArtifactOwner,
    ArtifactTransferError,
    ArtifactUploadError,
    TransferOutcome,
)
from ant.attempt import AttemptRequest, AttemptRunner
from ant.executors import (
    ArtifactRef,
    ExecutionContext,
    ExecutionResult,
    ExecutionStatus,
    ExecutorRegistry,
    LogStream,
    Method,
    TaskSpec,
    Variable,
)
from ant.executors.shell import ShellExecutor
from tests.fixtures.waiting import assert_eventually
from tests.integration.ant.recording import RecordingSink

pytestmark = pytest.mark.integration


class Broken:
    async def run(self, spec: TaskSpec, ctx: ExecutionContext) -> ExecutionResult:
        raise RuntimeError("kaput")


REPORT = ArtifactRef(id="a-1", name="out/report.txt", sha256="ab" * 32, content_length=6)


class ScriptedTransfer:
    """Records the calls; downloads write `files`, uploads return `uploaded` (or raise / hang)."""

    def __init__(
        self,
        *,
        files: dict[str, str] | None = None,
        uploaded: tuple[ArtifactRef, ...] = (REPORT,),
        download_error: ArtifactTransferError | None = None,
        upload_error: ArtifactTransferError | None = None,
        hang_upload: bool = False,
    ) -> None:
        self.files = files or {}
        self.uploaded = uploaded
        self.download_error = download_error
        self.upload_error = upload_error
        self.hang_upload = hang_upload
        self.uploads: list[tuple[tuple[str, ...], ArtifactOwner, list[str]]] = []
        self.downloads: list[tuple[str, ...]] = []
        self.upload_cancelled = asyncio.Event()

    async def download(self, artifact_ids: Sequence[str], destination: Path) -> TransferOutcome:
        self.downloads.append(tuple(artifact_ids))
        if self.download_error is not None:
            raise self.download_error
        await asyncio.to_thread(_write_files, destination, self.files)
        refs = tuple(ArtifactRef(id=f"id-{n}", name=n, content_length=len(t)) for n, t in self.files.items())
        return TransferOutcome(artifacts=refs, warnings=("a download warning",))

    async def upload(self, paths: Sequence[str], base: Path, *, owner: ArtifactOwner) -> TransferOutcome:
        present = await asyncio.to_thread(_files_under, base)
        self.uploads.append((tuple(paths), owner, present))
        if self.hang_upload:
            try:
                await asyncio.Event().wait()
            finally:
                self.upload_cancelled.set()
        if self.upload_error is not None:
            raise self.upload_error
        return TransferOutcome(artifacts=self.uploaded, warnings=("artifacts path 'x' matched no files",))


def _write_files(destination: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (destination / name).parent.mkdir(parents=True, exist_ok=True)
        (destination / name).write_text(text)


def _files_under(base: Path) -> list[str]:
    return sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())


def runner(tmp_path: Path, *, keep: bool = False, transfer: ScriptedTransfer | None = None) -> AttemptRunner:
    return AttemptRunner(
        ExecutorRegistry({Method.SHELL: ShellExecutor(), Method.HTTP_GET: Broken()}),
        work_root=tmp_path / "work",
        artifacts=transfer or ScriptedTransfer(),
        ant_id="a",
        host="h",
        logger=structlog.get_logger(),
        keep_work_dirs=keep,
    )


async def test_secrets_are_masked_in_logs_and_in_the_result(tmp_path: Path, sink: RecordingSink) -> None:
    spec = TaskSpec(
        task_execution_id="te/1",
        job_request_id=1,
        task_type="deploy",
        method=Method.SHELL,
        script=(
            'echo "token is $API_TOKEN"',
            'echo "::set-output name=t::$API_TOKEN"',
            'test "$API_TOKEN" = x',
        ),
        variables={"API_TOKEN": Variable("hunter2-secret", secret=True), "PIN": Variable("12", secret=True)},
    )
    result = await runner(tmp_path).run(AttemptRequest(spec=spec, correlation_id="c"), sink, asyncio.Event())
    everything = "\n".join(sink.texts()) + repr(result)
    assert "hunter2-secret" not in everything
    assert "token is [MASKED]" in sink.texts(LogStream.STDOUT)
    assert result.task_context == {"t": "[MASKED]"}
    assert result.failed_command == 'test "$API_TOKEN" = x'
    assert any("1 secret values shorter than 4" in line for line in sink.texts(LogStream.SYSTEM))
    assert result.cost_factor == 1.0
    assert result.timings.receive_time is not None
    assert result.timings.finish_time is not None


async def test_each_attempt_gets_a_fresh_directory_that_is_removed(
    tmp_path: Path, sink: RecordingSink
) -> None:
    spec = TaskSpec(
        task_execution_id="te-2",
        job_request_id=1,
        task_type="t",
        method=Method.SHELL,
        script=("pwd", "ls -A"),
        task_retry=3,
    )
    stale = tmp_path / "work" / "te-2-3-c"  # left by an Ant that crashed during the same attempt
    stale.mkdir(parents=True)
    (stale / "old-file").touch()
    result = await runner(tmp_path).run(AttemptRequest(spec=spec, correlation_id="c"), sink, asyncio.Event())
    assert result.stdout == (str(stale),)
    assert not stale.exists()


def shell(*script: str, task: str = "te-3") -> TaskSpec:
    return TaskSpec(
        task_execution_id=task, job_request_id=7, task_type="build", method=Method.SHELL, script=script
    )


async def test_dependencies_are_downloaded_before_and_artifacts_uploaded_after(
    tmp_path: Path, sink: RecordingSink
) -> None:
    transfer = ScriptedTransfer(files={"in/dep.txt": "dep"})
    request = AttemptRequest(
        spec=shell("cat in/dep.txt", "mkdir out", "echo hello > out/report.txt"),
        correlation_id="c",
        dependent_artifact_ids=("d-1",),
        artifact_paths=("out/report.txt", "x"),
        artifact_retention=timedelta(days=2),
    )
    result = await runner(tmp_path, transfer=transfer).run(request, sink, asyncio.Event())

    assert result.status is ExecutionStatus.COMPLETED
    assert result.stdout == ("dep",)  # the script saw the download
    assert transfer.downloads == [("d-1",)]
    ((paths, owner, present),) = transfer.uploads
    assert paths == ("out/report.txt", "x")
    assert owner == ArtifactOwner(7, "te-3", "build", timedelta(days=2))
    assert present == ["in/dep.txt", "out/report.txt"]  # the upload saw the script's files
    assert result.artifacts == (REPORT,)
    assert result.warnings == ("a download warning", "artifacts path 'x' matched no files")
    timings = result.timings
    assert timings.dependencies_download_time is not None
    assert timings.start_time is not None
    assert timings.script_finish_time is not None
    assert timings.artifacts_upload_time is not None
    assert timings.finish_time is not None
    assert timings.dependencies_download_time <= timings.start_time
    assert timings.script_finish_time <= timings.artifacts_upload_time <= timings.finish_time
    system = sink.texts(LogStream.SYSTEM)
    assert "artifact in/dep.txt (3 bytes, sha256 ) downloaded" in system
    assert f"artifact out/report.txt (6 bytes, sha256 {'ab' * 6}) uploaded" in system
    assert "warning: artifacts path 'x' matched no files" in system


async def test_without_dependencies_or_paths_nothing_moves(tmp_path: Path, sink: RecordingSink) -> None:
    transfer = ScriptedTransfer()
    result = await runner(tmp_path, transfer=transfer).run(
        AttemptRequest(spec=shell("true"), correlation_id="c"), sink, asyncio.Event()
    )
    assert result.status is ExecutionStatus.COMPLETED
    assert (transfer.downloads, transfer.uploads) == ([], [])
    assert result.timings.dependencies_download_time is None
    assert result.timings.artifacts_upload_time is None


async def test_a_failed_download_fails_the_task_before_its_script_runs(
    tmp_path: Path, sink: RecordingSink
) -> None:
    transfer = ScriptedTransfer(
        download_error=ArtifactDownloadError("cannot download artifact d-9: NOT_FOUND", artifact="d-9")
    )
    request = AttemptRequest(
        spec=shell("touch ran"), correlation_id="c", dependent_artifact_ids=("d-9",), artifact_paths=("ran",)
    )
    result = await runner(tmp_path, keep=True, transfer=transfer).run(request, sink, asyncio.Event())
    assert result.status is ExecutionStatus.FAILED
    assert result.error_code == "ERR_ARTIFACT_DOWNLOAD"
    assert result.exit_code == "FAILED"
    assert result.error_message == "cannot download artifact d-9: NOT_FOUND (the script did not run)"
    assert not list((tmp_path / "work").rglob("ran"))
    assert transfer.uploads == []
    assert result.timings.start_time is None
    assert result.timings.dependencies_download_time is None
    assert "error: cannot download artifact d-9: NOT_FOUND" in sink.texts(LogStream.SYSTEM)


async def test_artifacts_are_uploaded_after_a_failed_script_too(tmp_path: Path, sink: RecordingSink) -> None:
    transfer = ScriptedTransfer()
    request = AttemptRequest(
        spec=shell("echo partial > out.log", "exit 3"), correlation_id="c", artifact_paths=("out.log",)
    )
    result = await runner(tmp_path, transfer=transfer).run(request, sink, asyncio.Event())
    assert result.status is ExecutionStatus.FAILED
    assert result.exit_code == "3"
    assert transfer.uploads[0][2] == ["out.log"]
    assert result.artifacts == (REPORT,)


async def test_a_failed_upload_fails_a_successful_task_and_lists_nothing(
    tmp_path: Path, sink: RecordingSink
) -> None:
    error = ArtifactUploadError("cannot upload artifact 'out.txt': the Queen answered INTERNAL: disk full")
    transfer = ScriptedTransfer(upload_error=error)
    request = AttemptRequest(spec=shell("echo x > out.txt"), correlation_id="c", artifact_paths=("out.txt",))
    result = await runner(tmp_path, transfer=transfer).run(request, sink, asyncio.Event())
    assert result.status is ExecutionStatus.FAILED
    assert result.error_code == "ERR_ARTIFACT_UPLOAD"
    assert result.exit_code == "FAILED"  # not "0": an on_exit_code route for success must not fire
    assert result.error_message == f"{error} (the script succeeded)"
    assert result.artifacts == ()
    assert result.timings.artifacts_upload_time is None


async def test_a_failed_upload_after_a_failed_script_keeps_the_scripts_error(
    tmp_path: Path, sink: RecordingSink
) -> None:
    transfer = ScriptedTransfer(upload_error=ArtifactUploadError("cannot upload artifact 'out.txt': boom"))
    request = AttemptRequest(spec=shell("false"), correlation_id="c", artifact_paths=("out.txt",))
    result = await runner(tmp_path, transfer=transfer).run(request, sink, asyncio.Event())
    assert (result.status, result.exit_code, result.error_code) == (ExecutionStatus.FAILED, "1", "")
    assert result.failed_command == "false"
    assert "artifacts were not uploaded: cannot upload artifact 'out.txt': boom" in result.warnings
    assert result.artifacts == ()


async def test_a_cancelled_task_uploads_nothing(tmp_path: Path, sink: RecordingSink) -> None:
    transfer = ScriptedTransfer()
    cancel = asyncio.Event()
    request = AttemptRequest(spec=shell("sleep 30"), correlation_id="c", artifact_paths=("out.txt",))
    running = asyncio.create_task(runner(tmp_path, transfer=transfer).run(request, sink, cancel))
    await sink.wait_for("")  # the shell executor's first line: it started
    cancel.set()
    result = await running
    assert result.status is ExecutionStatus.CANCELLED
    assert transfer.uploads == []
    assert "artifacts were not uploaded: the task was cancelled" in result.warnings


async def test_a_cancel_during_the_upload_stops_it(tmp_path: Path, sink: RecordingSink) -> None:
    transfer = ScriptedTransfer(hang_upload=True)
    cancel = asyncio.Event()
    request = AttemptRequest(spec=shell("echo x > out.txt"), correlation_id="c", artifact_paths=("out.txt",))
    running = asyncio.create_task(runner(tmp_path, transfer=transfer).run(request, sink, cancel))
    await assert_eventually(lambda: transfer.uploads)
    cancel.set()
    result = await running
    assert transfer.upload_cancelled.is_set()
    assert result.status is ExecutionStatus.CANCELLED
    assert result.error_code == "ERR_TASK_CANCELLED"
    assert result.error_message == "the task was cancelled while its artifacts were uploaded"
    assert result.artifacts == ()


async def test_a_broken_executor_gives_a_failed_result(tmp_path: Path, sink: RecordingSink) -> None:
    spec = TaskSpec(task_execution_id="te-4", job_request_id=1, task_type="t", method=Method.HTTP_GET)
    result = await runner(tmp_path).run(AttemptRequest(spec=spec, correlation_id="c"), sink, asyncio.Event())
    assert result.status is ExecutionStatus.FAILED
    assert result.error_code == "ERR_EXECUTOR"
    assert "kaput" in result.error_message


async def test_a_task_cancelled_before_it_started_does_not_run(tmp_path: Path, sink: RecordingSink) -> None:
    cancel = asyncio.Event()
    cancel.set()
    spec = TaskSpec(
        task_execution_id="te-5", job_request_id=1, task_type="t", method=Method.SHELL, script=("echo x",)
    )
    result = await runner(tmp_path).run(AttemptRequest(spec=spec, correlation_id="c"), sink, cancel)
    assert result.status is ExecutionStatus.CANCELLED
    assert sink.texts(LogStream.STDOUT) == []
