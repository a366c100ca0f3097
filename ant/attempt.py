"""Running one task attempt around its executor: a fresh directory, dependencies in, the executor,
artifacts out, secrets masked, timings filled, the result reported, the directory removed.

The artifact rules (what is downloaded and uploaded, when, and what a failure does) are described in
`ant.artifacts`. A cancel stops a transfer in progress: the attempt then ends CANCELLED.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from structlog.typing import FilteringBoundLogger

from ant.artifacts import ArtifactOwner, ArtifactTransfer, ArtifactTransferError, TransferOutcome
from ant.executors.context import ExecutionContext, LogSink, LogStream
from ant.executors.lines import split_long_line
from ant.executors.registry import ExecutorRegistry
from ant.executors.result import EXIT_CODE_FAILED, ArtifactRef, ErrorCode, ExecutionResult, ExecutionStatus
from ant.executors.spec import TaskSpec
from ant.redaction import MIN_SECRET_LENGTH, Redactor
from ant.telemetry import executor_span, in_phase
from ant.work_dirs import WorkDirectories

__all__ = ["AttemptRequest", "AttemptRunner", "RedactingSink"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_T = TypeVar("_T")


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class _Phase:
    """What an artifact phase moved, and when it ended (None: it did not happen)."""

    outcome: TransferOutcome = field(default_factory=TransferOutcome)
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AttemptRequest:
    """A dispatched attempt: what the executor needs (`spec`) and what the Ant needs around it."""

    spec: TaskSpec
    correlation_id: str
    job_type_version: str = ""
    report_stdout: bool = False
    dependent_artifact_ids: tuple[str, ...] = ()
    artifact_paths: tuple[str, ...] = ()
    artifact_retention: timedelta | None = None
    """How long the Queen keeps the uploaded artifacts; None: its default."""
    traceparent: str = ""
    receive_time: datetime = field(default_factory=_now)
    ignored_options: tuple[str, ...] = ()
    """Options of the request this Ant does not implement; each becomes a warning of the result."""


class RedactingSink:
    """A log sink that masks secrets and splits over-long lines before passing lines on."""

    def __init__(self, inner: LogSink, redact: Redactor) -> None:
        self._inner = inner
        self._redact = redact

    async def emit(self, stream: LogStream, text: str) -> None:
        for piece in split_long_line(self._redact(text)):
            await self._inner.emit(stream, piece)


class AttemptRunner:
    """Runs attempts with the registry's executors, each in a directory of its own under `work_root`."""

    def __init__(
        self,
        executors: ExecutorRegistry,
        *,
        work_root: Path,
        artifacts: ArtifactTransfer,
        ant_id: str,
        host: str,
        logger: FilteringBoundLogger,
        keep_work_dirs: bool = False,
        default_cost_factor: float = 1.0,
    ) -> None:
        self._executors = executors
        self._work_root = work_root
        self._dirs = WorkDirectories(work_root, keep=keep_work_dirs)
        self._artifacts = artifacts
        self._ant_id = ant_id
        self._host = host
        self._logger = logger
        self._cost_factor = default_cost_factor

    def close(self) -> None:
        """Release what the runner keeps between attempts (the spare directories)."""
        self._dirs.close()

    async def run(
        self,
        request: AttemptRequest,
        sink: LogSink,
        cancel: asyncio.Event,
        *,
        report: Callable[[ExecutionResult], None] | None = None,
    ) -> ExecutionResult:
        """The attempt's result, secrets masked. A broken executor gives FAILED / ERR_EXECUTOR.

        `report` is given the result as soon as it is final, before the attempt's directory is removed
        (which `run` then waits for): the result need not wait for the file system. The attempt's spans
        continue the job's trace from `request.traceparent` (`ant.telemetry`).
        """
        with executor_span(request.traceparent, request.spec, ant_id=self._ant_id) as traced:
            result = await self._run(request, traced.track_phases(sink), cancel, report=report)
            traced.finished(result)
            return result

    async def _run(
        self,
        request: AttemptRequest,
        sink: LogSink,
        cancel: asyncio.Event,
        *,
        report: Callable[[ExecutionResult], None] | None = None,
    ) -> ExecutionResult:
        spec = request.spec
        redact = Redactor(spec.secrets)
        sink = RedactingSink(sink, redact)
        log = self._logger.bind(
            task_execution_id=spec.task_execution_id,
            job_request_id=spec.job_request_id,
            task_type=spec.task_type,
            method=str(spec.method),
            task_retry=spec.task_retry,
        )
        if redact.too_short:
            await sink.emit(
                LogStream.SYSTEM,
                f"warning: {redact.too_short} secret values shorter than {MIN_SECRET_LENGTH} characters "
                "cannot be masked",
            )
        work_dir = self._work_root / _directory_name(request)
        log.info("attempt_started", work_dir=str(work_dir))
        made: Path | None = None
        try:
            try:
                made = await self._dirs.fresh(work_dir.name)
                for ignored in request.ignored_options:
                    await sink.emit(LogStream.SYSTEM, f"warning: {ignored}")
                result = await self._run_in(made, request, sink, cancel, log)
            except OSError as exc:
                log.error("attempt_directory_failed", error=str(exc))
                result = _broken(f"cannot prepare the task's directory {work_dir}: {exc}", request)
            log.info(
                "attempt_finished",
                status=str(result.status),
                exit_code=result.exit_code,
                error_code=result.error_code,
            )
            result = _redacted(result, redact)
            if report is not None:
                report(result)
            return result
        finally:
            if made is not None:
                if report is not None:
                    await asyncio.sleep(0)  # the reported result goes out before the file system work
                await self._dirs.remove(made)

    async def _run_in(
        self,
        work_dir: Path,
        request: AttemptRequest,
        sink: LogSink,
        cancel: asyncio.Event,
        log: FilteringBoundLogger,
    ) -> ExecutionResult:
        """Dependencies in, the executor, artifacts out, in the attempt's (fresh) directory."""
        download = _Phase()
        if request.dependent_artifact_ids:
            try:
                fetched = await _unless_cancelled(
                    in_phase(
                        "dependencies", self._artifacts.download(request.dependent_artifact_ids, work_dir)
                    ),
                    cancel,
                )
            except ArtifactTransferError as exc:
                log.warning("dependencies_download_failed", error=str(exc), artifact=exc.artifact)
                await sink.emit(LogStream.SYSTEM, f"error: {exc}")
                return self._finished(request, _transfer_failed(exc, "the script did not run"))
            if fetched is None:
                return self._finished(request, _cancelled("while its dependencies were downloaded"))
            download = _Phase(fetched, _now())
            for artifact in fetched.artifacts:
                await sink.emit(LogStream.SYSTEM, f"artifact {_describe(artifact)} downloaded")
            await _emit_warnings(sink, fetched)

        result = await self._execute(request.spec, sink, cancel, work_dir, log)
        result, upload = await self._upload(
            request, result, work_dir=work_dir, sink=sink, cancel=cancel, log=log
        )
        return self._finished(
            request,
            replace(
                result,
                warnings=(*download.outcome.warnings, *result.warnings, *upload.outcome.warnings),
                artifacts=(*result.artifacts, *upload.outcome.artifacts),
                timings=replace(
                    result.timings,
                    dependencies_download_time=download.at,
                    artifacts_upload_time=upload.at,
                ),
            ),
        )

    async def _upload(
        self,
        request: AttemptRequest,
        result: ExecutionResult,
        *,
        work_dir: Path,
        sink: LogSink,
        cancel: asyncio.Event,
        log: FilteringBoundLogger,
    ) -> tuple[ExecutionResult, _Phase]:
        """Upload the task's artifacts after a COMPLETED or FAILED script; the result as it then is."""
        if not request.artifact_paths:
            return result, _Phase()
        if result.status is ExecutionStatus.CANCELLED:
            skipped = TransferOutcome(warnings=("artifacts were not uploaded: the task was cancelled",))
            await _emit_warnings(sink, skipped)
            return result, _Phase(skipped)
        spec = request.spec
        owner = ArtifactOwner(
            job_request_id=spec.job_request_id,
            task_execution_id=spec.task_execution_id,
            task_type=spec.task_type,
            retention=request.artifact_retention,
        )
        try:
            stored = await _unless_cancelled(
                in_phase("artifacts", self._artifacts.upload(request.artifact_paths, work_dir, owner=owner)),
                cancel,
            )
        except ArtifactTransferError as exc:
            log.warning("artifacts_upload_failed", error=str(exc), artifact=exc.artifact)
            await sink.emit(LogStream.SYSTEM, f"error: {exc}")
            if result.succeeded:
                return _transfer_failed(exc, "the script succeeded", base=result), _Phase()
            # The script's own failure is the story; the missing artifacts are a footnote to it.
            return replace(
                result, warnings=(*result.warnings, f"artifacts were not uploaded: {exc}")
            ), _Phase()
        if stored is None:
            return _cancelled("while its artifacts were uploaded", base=result), _Phase()
        for artifact in stored.artifacts:
            await sink.emit(LogStream.SYSTEM, f"artifact {_describe(artifact)} uploaded")
        await _emit_warnings(sink, stored)
        return result, _Phase(stored, _now())

    def _finished(self, request: AttemptRequest, result: ExecutionResult) -> ExecutionResult:
        """The result with what every attempt reports: the options ignored, cost factor, timings."""
        return replace(
            result,
            warnings=(*request.ignored_options, *result.warnings),
            cost_factor=request.spec.cost_factor or self._cost_factor,
            timings=replace(result.timings, receive_time=request.receive_time, finish_time=_now()),
        )

    async def _execute(
        self, spec: TaskSpec, sink: LogSink, cancel: asyncio.Event, work_dir: Path, log: FilteringBoundLogger
    ) -> ExecutionResult:
        if cancel.is_set():
            return ExecutionResult(
                status=ExecutionStatus.CANCELLED,
                exit_code=EXIT_CODE_FAILED,
                error_code=ErrorCode.TASK_CANCELLED,
                error_message="the task was cancelled before it started",
            )
        executor = self._executors[spec.method]
        ctx = ExecutionContext(
            logger=log, sink=sink, cancel=cancel, work_dir=work_dir, ant_id=self._ant_id, host=self._host
        )
        try:
            return await executor.run(spec, ctx)
        except Exception as exc:  # a broken executor must still produce a result
            log.exception("executor_failed")
            return ExecutionResult(
                status=ExecutionStatus.FAILED,
                exit_code=EXIT_CODE_FAILED,
                error_code=ErrorCode.EXECUTOR,
                error_message=f"the {spec.method} executor failed: {type(exc).__name__}: {exc}",
            )


async def _unless_cancelled(work: Awaitable[_T], cancel: asyncio.Event) -> _T | None:
    """`work`'s result, or None once `cancel` is set first (`work` is then cancelled and awaited)."""
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(cancel.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait({task})  # let it clean up (e.g. delete half a set of uploads)
    if task.cancelled():
        return None
    return task.result()


async def _emit_warnings(sink: LogSink, outcome: TransferOutcome) -> None:
    for warning in outcome.warnings:
        await sink.emit(LogStream.SYSTEM, f"warning: {warning}")


def _describe(artifact: ArtifactRef) -> str:
    return f"{artifact.name} ({artifact.content_length} bytes, sha256 {artifact.sha256[:12]})"


def _transfer_failed(
    error: ArtifactTransferError, context: str, *, base: ExecutionResult | None = None
) -> ExecutionResult:
    """FAILED with the transfer's error code; `base` (the script's result) keeps its output and contexts."""
    return replace(
        base or ExecutionResult(status=ExecutionStatus.FAILED, exit_code=EXIT_CODE_FAILED),
        status=ExecutionStatus.FAILED,
        # Not the script's "0": an on_exit_code route for success must not be taken.
        exit_code=EXIT_CODE_FAILED,
        error_code=error.error_code,
        error_message=f"{error} ({context})",
        artifacts=(),
    )


def _cancelled(moment: str, *, base: ExecutionResult | None = None) -> ExecutionResult:
    return replace(
        base or ExecutionResult(status=ExecutionStatus.CANCELLED, exit_code=EXIT_CODE_FAILED),
        status=ExecutionStatus.CANCELLED,
        exit_code=EXIT_CODE_FAILED,
        error_code=ErrorCode.TASK_CANCELLED,
        error_message=f"the task was cancelled {moment}",
        artifacts=(),
    )


def _directory_name(request: AttemptRequest) -> str:
    """`<task_execution_id>-<task_retry>-<correlation_id>`: two attempts of one task (a new attempt
    dispatched while the old one is still stopping) never share a directory."""
    attempt = _UNSAFE.sub("_", request.correlation_id)[:40] or secrets.token_hex(4)
    return f"{_UNSAFE.sub('_', request.spec.task_execution_id)}-{request.spec.task_retry}-{attempt}"


def _broken(message: str, request: AttemptRequest) -> ExecutionResult:
    return ExecutionResult(
        status=ExecutionStatus.FAILED,
        exit_code=EXIT_CODE_FAILED,
        error_code=ErrorCode.EXECUTOR,
        error_message=message,
        cost_factor=request.spec.cost_factor,
    )


def _redacted(result: ExecutionResult, redact: Redactor) -> ExecutionResult:
    if not redact:
        return result
    return replace(
        result,
        exit_message=redact(result.exit_message),
        error_message=redact(result.error_message),
        failed_command=redact(result.failed_command),
        stdout=tuple(redact(line) for line in result.stdout),
        task_context={k: redact(v) for k, v in result.task_context.items()},
        job_context={k: redact(v) for k, v in result.job_context.items()},
        warnings=tuple(redact(w) for w in result.warnings),
        fallback_note=redact(result.fallback_note),
    )
